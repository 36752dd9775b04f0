"""Component: build the memory bank from the stage-1 encoder."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from .image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def index(
    data: Input[Dataset],
    model: Input[Model],
    memory: Output[Artifact],
    config_yaml: str = "",
    backbone: str = "",
    objective: str = "",
    pretrain_epochs: int = 0,
    index_type: str = "",
    mlflow_tracking_uri: str = "",
    mlflow_experiment: str = "raserec",
    pipeline_run_id: str = "",
    kfp_run_id: str = "",
    artifact_root: str = "",
):
    """Encode every training prefix with the frozen encoder and index (representation, next item) pairs.

    Writes the memory-bank folder (keys, values, entries, the faiss index, manifest.json); metadata: the
    bank's size, index type and checksums.
    """
    from raserec_core import steps
    from raserec_core.cli.task import pipeline_task

    with pipeline_task(
        "index", config_yaml,
        dict(backbone=backbone, objective=objective, pretrain_epochs=pretrain_epochs, index_type=index_type),
        tracking_uri=mlflow_tracking_uri, experiment=mlflow_experiment, pipeline_run_id=pipeline_run_id,
        kfp_run_id=kfp_run_id, artifact_root=artifact_root,
        upstream={"preprocess": data.metadata, "pretrain": model.metadata},
    ) as t:
        t.record(steps.index(data.path, model.path, memory.path, t.cfg, t.device), memory=memory)
