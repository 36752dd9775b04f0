"""Component: stage 1, pre-train the sequence encoder."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from .image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def pretrain(
    data: Input[Dataset],
    model: Output[Model],
    config_yaml: str = "",
    backbone: str = "",
    objective: str = "",
    pretrain_epochs: int = 0,
    mlflow_tracking_uri: str = "",
    mlflow_experiment: str = "raserec",
    pipeline_run_id: str = "",
    kfp_run_id: str = "",
    artifact_root: str = "",
    checkpoint_root: str = "",
):
    """Train the encoder (SASRec/GRU4Rec) with its objective (CE/DuoRec/CL4SRec), early-stopped on validation.

    Writes the model folder (encoder.pt, model.json, history.json, metrics.json); metadata: the valid and
    test metrics of the best epoch. Empty/zero overrides keep the config's values. With ``checkpoint_root``
    (a folder that outlives the pod: local disk, a mounted volume) it trains in a folder there named by its
    config and inputs, so a rerun of an interrupted pipeline resumes from the last epoch.
    """
    from raserec_core import steps
    from raserec_core.cli.task import pipeline_task

    with pipeline_task(
        "pretrain", config_yaml, dict(backbone=backbone, objective=objective, pretrain_epochs=pretrain_epochs),
        tracking_uri=mlflow_tracking_uri, experiment=mlflow_experiment, pipeline_run_id=pipeline_run_id,
        kfp_run_id=kfp_run_id, artifact_root=artifact_root, upstream={"preprocess": data.metadata},
    ) as t:
        t.record(steps.pretrain(data.path, model.path, t.cfg, t.device, work_root=checkpoint_root or None), model=model)
