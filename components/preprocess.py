"""Component: interactions -> dataset artifact."""

from .factory import component

preprocess = component(
    "preprocess",
    ("dataset: Output[Dataset]",),
    """Read interactions (a local path or an s3:// URI), apply the k-core filter and the leave-one-out split.

    Writes the dataset folder (train/valid/test Parquet, id maps, stats.json); metadata: user, item and
    interaction counts, instances per split and the dataset fingerprint.
    """,
)
