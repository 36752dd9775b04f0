"""Component: log the model to MLflow, register a version, champion/challenger gate."""

from .factory import component

register = component(
    "register",
    ("data: Input[Dataset]", "pretrained: Input[Model]", "memory: Input[Artifact]", "model: Input[Model]",
     "metrics: Input[Metrics]", "valid_ndcg_at_10: float", "registration: Output[Artifact]",
     "summary: Output[Markdown]"),
    """Log the model (encoder, RAM, memory bank, id maps) as an MLflow pyfunc model and register a version.

    The version becomes ``@champion`` only if ``valid_ndcg_at_10`` beats the champion's on the same
    dataset, else ``@challenger``. Also logs an MLflow run for every upstream step served from the cache,
    and closes the pipeline run's parent run. Metadata: model name, version, alias and the reason.
    ``summary``: the run's test metrics, the registered version and the link to its MLflow run, as
    Markdown for the Kubeflow UI.
    """,
)
