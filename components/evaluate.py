"""Component: full-ranking evaluation on the validation and test splits."""

from .factory import component

evaluate = component(
    "evaluate",
    ("data: Input[Dataset]", "model: Input[Model]", "metrics: Output[Metrics]", "topk: Output[Artifact]",
     "memory: Optional[Input[Artifact]] = None"),
    """Rank every item for every valid/test user (with retrieval when ``memory`` is given).

    The retrieval settings are the fine-tuned model's own. Outputs: the metrics (also written as JSON to
    the Metrics artifact's file, so the local runner can cache this step), every user's top-K list as
    Parquet, and the validation NDCG@10 as a float for the register step's gate. MLflow also gets the
    metrics per item-popularity group, with a plot.
    """,
    returns='NamedTuple("EvaluateOutputs", [("valid_ndcg_at_10", float)])',
)
