"""MLflow: runs per pipeline run and per step, plots, the pyfunc model, the registry and its aliases.

mlflow is imported in this package only, and only inside the modules that need it (``store``,
``runs``, ``registry``, ``pyfunc``), so importing ``raserec_core.tracking`` itself is cheap. ``secrets``
decides what may reach MLflow. ``model_folder`` packs and loads the folder the pyfunc model
carries and ``serving`` holds the rules of a served request; neither imports mlflow.
"""
