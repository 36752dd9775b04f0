"""Component: build the memory bank from the stage-1 encoder."""

from .factory import component

index = component(
    "index",
    ("data: Input[Dataset]", "model: Input[Model]", "memory: Output[Artifact]"),
    """Encode every training prefix with the frozen encoder and index (representation, next item) pairs.

    Writes the memory-bank folder (keys, values, entries, the faiss index, manifest.json); metadata: the
    bank's size, index type and checksums.
    """,
)
