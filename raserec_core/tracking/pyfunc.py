"""The MLflow pyfunc model: a recommender folder as its one artifact, rebuilt in ``load_context``.

Input: a DataFrame with a ``history`` column (list of raw item ids, strings or integers) and an
optional ``user_id`` column; parameters ``k`` (default 10) and ``exclude_history`` (default true).
Output per row: ``item_ids`` (list of string), ``scores`` (list of float), ``fallback`` (true when the
history had no known item and the answer is the most popular items) and ``ignored_ids`` (the unknown
ids). The rules are ``tracking.serving``'s, the artifact's layout ``tracking.model_folder``'s; this
module is glue. The model carries the ``raserec_core`` package (``code_paths``), so it loads wherever
its requirements install, with no raserec installed; it is logged as code (``pyfunc_entry.py``), so
loading it unpickles nothing. It serves on the device named by the environment
variable ``RASEREC_DEVICE`` (``auto``, the default, is CUDA when present; ``cpu``; ``cuda``). Its OpenMP
threads wait passively unless ``OMP_WAIT_POLICY`` says otherwise (``device.wait_passively``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from .serving import DEFAULT_K

ARTIFACT = "recommender"


class BadRequest(MlflowException):
    """HTTP 400 whose message stays the one line it was made with.

    MLflow's scoring server rewrites ``message`` of any MlflowException from ``predict`` to prefix the
    whole input DataFrame's repr; a client needs the field at fault, and the input has no place in a
    server log. So the first assignment (MlflowException's own) is kept and later ones are ignored.
    """

    def __init__(self, line: str):
        super().__init__(line, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._line

    @message.setter
    def message(self, value: str) -> None:
        if not hasattr(self, "_line"):
            self._line = value


class RecommenderModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from ..device import serving_device, wait_passively
        from .model_folder import load, load_popularity

        wait_passively()  # before torch loads (serving_device imports it), as the CLI does
        self.recommender = load(context.artifacts[ARTIFACT], serving_device())
        self.popularity = load_popularity(context.artifacts[ARTIFACT])

    # The DataFrame hint tells MLflow not to infer a schema from hints: ``signature()`` is the contract.
    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from .serving import RequestError, answer, parse_params, parse_rows

        try:
            k, exclude_history = parse_params(params)
            histories, user_ids = parse_rows(model_input)
        except RequestError as exc:
            raise BadRequest(str(exc)) from None
        return answer(self.recommender, self.popularity, histories, user_ids, k, exclude_history)


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, Array, ColSpec, ParamSchema, ParamSpec, Schema

    # Any type and optional for the inputs: ids may be strings or integers, and ``tracking.serving``
    # checks each row (a missing history too) with one line naming the field, where MLflow's schema
    # errors repeat the whole input.
    return ModelSignature(
        inputs=Schema([ColSpec(AnyType(), "history", required=False), ColSpec(AnyType(), "user_id", required=False)]),
        outputs=Schema([
            ColSpec(Array("string"), "item_ids"), ColSpec(Array("double"), "scores"), ColSpec("boolean", "fallback"),
            ColSpec(Array("string"), "ignored_ids"),
        ]),
        params=ParamSchema([ParamSpec("k", "long", DEFAULT_K), ParamSpec("exclude_history", "boolean", True)]),
    )


def pip_requirements() -> list[str]:
    """What the carried code imports, pinned as installed here: all on PyPI (torch as the plain version,
    whose local ``+cpu`` label pip could not find), nothing of this project."""
    from importlib.metadata import version

    import torch

    return [
        f"torch=={torch.__version__.split('+')[0]}",
        f"faiss-cpu=={version('faiss-cpu')}",
        f"mlflow=={mlflow.__version__}",
        f"pandas=={version('pandas')}",
        f"pyarrow=={version('pyarrow')}",
        f"numpy=={version('numpy')}",
    ]


def code_path() -> str:
    """The ``raserec_core`` package folder, carried in the model (``code/raserec_core``)."""
    import raserec_core

    return str(Path(raserec_core.__file__).resolve().parent)


def log_recommender(folder: str | Path, name: str = "model", example_history: list[str] | None = None):
    """Log the recommender folder as a pyfunc model in the active run; returns MLflow's ModelInfo."""
    example = pd.DataFrame({"history": [example_history or []], "user_id": ["example-user"]})
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=str(Path(__file__).with_name("pyfunc_entry.py")),  # models from code: no pickle
        artifacts={ARTIFACT: str(folder)},
        code_paths=[code_path()],
        signature=signature(),
        input_example=(example, {"k": DEFAULT_K}),
        pip_requirements=pip_requirements(),
    )
