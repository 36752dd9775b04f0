"""Component: full-ranking evaluation on the validation and test splits."""

from typing import NamedTuple, Optional

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from .image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(
    data: Input[Dataset],
    model: Input[Model],
    metrics: Output[Metrics],
    topk: Output[Artifact],
    memory: Optional[Input[Artifact]] = None,
    config_yaml: str = "",
    backbone: str = "",
    objective: str = "",
    pretrain_epochs: int = 0,
    finetune_epochs: int = 0,
    top_k: int = 0,
    alpha: float = -1.0,
    beta: float = -1.0,
    index_type: str = "",
    mlflow_tracking_uri: str = "",
    mlflow_experiment: str = "raserec",
    pipeline_run_id: str = "",
    kfp_run_id: str = "",
    artifact_root: str = "",
) -> NamedTuple("EvaluateOutputs", [("valid_ndcg_at_10", float)]):
    """Rank every item for every valid/test user (with retrieval when ``memory`` is given).

    Outputs: the metrics (also written as JSON to the Metrics artifact's file, so the local runner can
    cache this step), every user's top-K list as Parquet, and the validation NDCG@10 as a float for the
    register step's gate. MLflow also gets the metrics per item-popularity group, with a plot.
    """
    from raserec_core import steps
    from raserec_core.cli.task import VALID_METRIC, pipeline_task

    with pipeline_task(
        "evaluate", config_yaml,
        dict(backbone=backbone, objective=objective, pretrain_epochs=pretrain_epochs, finetune_epochs=finetune_epochs,
             top_k=top_k, alpha=alpha, beta=beta, index_type=index_type),
        tracking_uri=mlflow_tracking_uri, experiment=mlflow_experiment, pipeline_run_id=pipeline_run_id,
        kfp_run_id=kfp_run_id, artifact_root=artifact_root, dataset_path=data.path,
        upstream={"preprocess": data.metadata, **({"index": memory.metadata, "finetune": model.metadata} if memory
                                                   else {"pretrain": model.metadata})},
    ) as t:
        t.record(
            steps.evaluate(data.path, model.path, t.cfg, t.device, topk_output=topk.path, metrics_output=metrics.path,
                           memory=memory.path if memory else None),
            metrics=metrics, topk=topk,
        )
    return (t.value(VALID_METRIC),)
