"""Component: stage 2, fine-tune the retrieval-augmented module."""

from .factory import component

finetune = component(
    "finetune",
    ("data: Input[Dataset]", "pretrained: Input[Model]", "memory: Input[Artifact]", "model: Output[Model]"),
    """Train the RAM over memories retrieved for each query, with the encoder frozen.

    Writes a self-contained model folder (encoder, RAM, id maps, model.json, history.json); metadata:
    the valid and test metrics of the best epoch. ``checkpoint_root``: resumable training, as for
    pre-training.
    """,
)
