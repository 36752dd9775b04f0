"""The one table of the pipeline's parameters: each row is a pipeline parameter and the components it reaches.

Every component signature (``components/factory.py``), the pipeline's signature and wiring
(``pipelines/raserec.py``) and the components' config overrides (``components/config.py``) are read from
``PARAMS``, so a new setting is one row here (then ``raserec pipeline compile``).

A row names only the steps whose computation the parameter changes: kfp keys its cache on a task's
inputs, so a parameter a step does not use would re-run it (and a new ``alpha`` would re-train the
encoder). A config override (``key`` set) left at its unset value (``""``, ``0``, a negative number)
keeps the value of ``config_yaml``. The table lives here, with the components, because the runtime reads
it inside every step's container; ``pipelines/`` reads it from here, so imports run one way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STEPS = ("preprocess", "pretrain", "index", "finetune", "evaluate", "register")
REQUIRED = object()  # a default meaning "the caller must pass it"


@dataclass(frozen=True)
class Param:
    name: str
    type: type  # str, int or float: what kfp types the parameter as
    default: Any
    steps: tuple[str, ...]  # the components that take it
    key: str = ""  # the config key it overrides (empty: not a config setting)
    pipeline: bool = True  # False: the pipeline fills it itself (kfp's job id), it is no pipeline parameter


PARAMS: tuple[Param, ...] = (
    Param("data_uri", str, REQUIRED, ("preprocess",)),
    Param("config_yaml", str, "", STEPS),
    Param("backbone", str, "", ("pretrain",), key="model.backbone"),
    Param("objective", str, "", ("pretrain",), key="pretrain.objective"),
    Param("pretrain_epochs", int, 0, ("pretrain",), key="pretrain.epochs"),
    Param("index_type", str, "", ("index",), key="memory.index_type"),
    Param("finetune_epochs", int, 0, ("finetune",), key="finetune.epochs"),
    Param("top_k", int, 0, ("finetune",), key="finetune.top_k"),
    Param("alpha", float, -1.0, ("finetune",), key="finetune.alpha"),
    Param("beta", float, -1.0, ("finetune",), key="finetune.beta"),
    Param("model_name", str, "raserec", ("register",)),
    Param("mlflow_tracking_uri", str, "", STEPS),
    Param("mlflow_experiment", str, "raserec", STEPS),
    Param("pipeline_run_id", str, "", STEPS),
    Param("kfp_run_id", str, "", STEPS, pipeline=False),
    Param("artifact_root", str, "", STEPS),
    Param("checkpoint_root", str, "", ("pretrain", "finetune")),
)


def step_params(step: str, table: tuple[Param, ...] = PARAMS) -> tuple[Param, ...]:
    """The rows ``step`` takes, in table order."""
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r} (steps: {', '.join(STEPS)})")
    return tuple(p for p in table if step in p.steps)


def overrides(table: tuple[Param, ...] = PARAMS) -> dict[str, str]:
    """Parameter name -> the config key it overrides, for the rows that override one."""
    return {p.name: p.key for p in table if p.key}


def is_unset(value: Any) -> bool:
    """``""``/None, an int <= 0 or a float < 0: the parameter was left at "keep the config"."""
    if value is None or value == "":
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value <= 0
    return isinstance(value, float) and value < 0
