"""Component: log the model to MLflow, register a version, champion/challenger gate."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from .image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def register(
    data: Input[Dataset],
    pretrained: Input[Model],
    memory: Input[Artifact],
    model: Input[Model],
    metrics: Input[Metrics],
    valid_ndcg_at_10: float,
    registration: Output[Artifact],
    model_name: str = "raserec",
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
):
    """Log the model (encoder, RAM, memory bank, id maps) as an MLflow pyfunc model and register a version.

    The version becomes ``@champion`` only if ``valid_ndcg_at_10`` beats the champion's on the same
    dataset, else ``@challenger``. Also logs an MLflow run for every upstream step served from the cache,
    and closes the pipeline run's parent run. Metadata: model name, version, alias and the reason.
    """
    from raserec_core import steps
    from raserec_core.cli.task import pipeline_task

    with pipeline_task(
        "register", config_yaml,
        dict(backbone=backbone, objective=objective, pretrain_epochs=pretrain_epochs, finetune_epochs=finetune_epochs,
             top_k=top_k, alpha=alpha, beta=beta, index_type=index_type),
        tracking_uri=mlflow_tracking_uri, experiment=mlflow_experiment, pipeline_run_id=pipeline_run_id,
        kfp_run_id=kfp_run_id, artifact_root=artifact_root, final=True,
        upstream={"preprocess": data.metadata, "pretrain": pretrained.metadata, "index": memory.metadata,
                  "finetune": model.metadata, "evaluate": metrics.metadata},
        params={"model_name": model_name},
    ) as t:
        t.record(
            steps.register(data.path, model.path, t.device, valid_ndcg_at_10, model_name=model_name, memory=memory.path,
                           tracking_uri=t.run.tracking_uri, run_id=t.run.run_id),
            registration=registration,
        )
