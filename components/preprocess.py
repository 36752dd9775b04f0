"""Component: interactions -> dataset artifact."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from .image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def preprocess(
    data_uri: str,
    dataset: Output[Dataset],
    config_yaml: str = "",
    mlflow_tracking_uri: str = "",
    mlflow_experiment: str = "raserec",
    pipeline_run_id: str = "",
    kfp_run_id: str = "",
    artifact_root: str = "",
):
    """Read interactions (a local path or an s3:// URI), apply the k-core filter and the leave-one-out split.

    Writes the dataset folder (train/valid/test Parquet, id maps, stats.json); metadata: user, item and
    interaction counts, instances per split and the dataset fingerprint.
    """
    from raserec_core import steps
    from raserec_core.cli.task import pipeline_task

    with pipeline_task(
        "preprocess", config_yaml, tracking_uri=mlflow_tracking_uri, experiment=mlflow_experiment,
        pipeline_run_id=pipeline_run_id, kfp_run_id=kfp_run_id, artifact_root=artifact_root, needs_device=False,
        params={"data_uri": data_uri},
    ) as t:
        t.record(steps.preprocess(t.local_input(data_uri), dataset.path, t.cfg), dataset=dataset)
