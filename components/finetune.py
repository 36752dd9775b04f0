"""Component: stage 2, fine-tune the retrieval-augmented module."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from .image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def finetune(
    data: Input[Dataset],
    pretrained: Input[Model],
    memory: Input[Artifact],
    model: Output[Model],
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
    checkpoint_root: str = "",
):
    """Train the RAM over memories retrieved for each query, with the encoder frozen.

    Writes a self-contained model folder (encoder, RAM, id maps, model.json, history.json); metadata:
    the valid and test metrics of the best epoch. Empty/zero/negative overrides keep the config's values.
    ``checkpoint_root``: resumable training, as for pre-training.
    """
    from raserec_core import steps
    from raserec_core.cli.task import pipeline_task

    with pipeline_task(
        "finetune", config_yaml,
        dict(backbone=backbone, objective=objective, pretrain_epochs=pretrain_epochs, finetune_epochs=finetune_epochs,
             top_k=top_k, alpha=alpha, beta=beta, index_type=index_type),
        tracking_uri=mlflow_tracking_uri, experiment=mlflow_experiment, pipeline_run_id=pipeline_run_id,
        kfp_run_id=kfp_run_id, artifact_root=artifact_root,
        upstream={"preprocess": data.metadata, "pretrain": pretrained.metadata, "index": memory.metadata},
    ) as t:
        t.record(
            steps.finetune(data.path, pretrained.path, memory.path, model.path, t.cfg, t.device,
                           work_root=checkpoint_root or None),
            model=model,
        )
