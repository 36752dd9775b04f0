"""The MLflow pyfunc model: a recommender folder as its one artifact, rebuilt in ``load_context``.

Input: a DataFrame with a ``history`` column (list of raw item ids, as strings) and an optional
``user_id`` column; parameter ``k`` (default 10). Output: a DataFrame with ``item_ids`` (list of
string) and ``scores`` (list of float) per input row. The artifact's layout is
``tracking.model_folder``'s and serving is ``raserec_core.recommender.Recommender``; this class is glue.
It serves on the device named by the environment variable ``RASEREC_DEVICE`` (``auto``, the default, is
CUDA when present; ``cpu``; ``cuda``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

ARTIFACT = "recommender"
DEFAULT_K = 10


class RecommenderModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from ..cli.device import serving_device
        from .model_folder import load

        self.recommender = load(context.artifacts[ARTIFACT], serving_device())

    # The DataFrame hint tells MLflow not to infer a schema from hints: ``signature()`` is the contract.
    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        k = int((params or {}).get("k", DEFAULT_K))
        if k < 1:
            raise ValueError(f"parameter k must be >= 1, got {k}")
        histories = [[str(i) for i in h] if h is not None else [] for h in model_input["history"]]
        user_ids = list(model_input["user_id"]) if "user_id" in model_input else None
        items, scores = self.recommender.recommend(histories, user_ids, k)
        return pd.DataFrame({"item_ids": items, "scores": scores})

def signature():
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec(Array("string"), "history"), ColSpec("string", "user_id", required=False)]),
        outputs=Schema([ColSpec(Array("string"), "item_ids"), ColSpec(Array("double"), "scores")]),
        params=ParamSchema([ParamSpec("k", "long", DEFAULT_K)]),
    )


def pip_requirements() -> list[str]:
    """Pinned like the image (inferred requirements would pin ``torch==…+cpu``, which pip cannot find)."""
    from importlib.metadata import version

    import torch

    return [
        f"raserec=={version('raserec')}",
        f"torch=={torch.__version__.split('+')[0]}",
        f"faiss-cpu=={version('faiss-cpu')}",
        f"mlflow=={mlflow.__version__}",
        f"pandas=={version('pandas')}",
        f"pyarrow=={version('pyarrow')}",
        f"numpy=={version('numpy')}",
    ]


def log_recommender(folder: str | Path, name: str = "model", example_history: list[str] | None = None):
    """Log the recommender folder as a pyfunc model in the active run; returns MLflow's ModelInfo."""
    example = pd.DataFrame({"history": [example_history or []], "user_id": ["example-user"]})
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=RecommenderModel(),
        artifacts={ARTIFACT: str(folder)},
        signature=signature(),
        input_example=(example, {"k": DEFAULT_K}),
        pip_requirements=pip_requirements(),
    )
