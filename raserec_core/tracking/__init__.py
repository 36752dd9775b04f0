"""MLflow: runs per pipeline run and per step, plots, the pyfunc model, the registry and its aliases.

mlflow is imported in this package only, and only inside the modules that need it (``runs``,
``registry``, ``pyfunc``), so importing ``raserec_core.tracking`` itself is cheap. ``recommender``
holds the prediction interface the pyfunc model wraps; it needs torch, not mlflow.
"""
