"""The registered model's entry point, logged as MLflow "models from code": MLflow runs this file to build
the model, so loading a registered model unpickles nothing (a pickled ``PythonModel`` would run whatever
the registry's bytes say). The model's ``code/raserec_core`` (``code_paths``) is on the path by then."""

from mlflow.models import set_model

from raserec_core.tracking.pyfunc import RecommenderModel

set_model(RecommenderModel())
