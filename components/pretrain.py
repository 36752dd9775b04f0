"""Component: stage 1, pre-train the sequence encoder."""

from .factory import component

pretrain = component(
    "pretrain",
    ("data: Input[Dataset]", "model: Output[Model]"),
    """Train the encoder (SASRec/GRU4Rec) with its objective (CE/DuoRec/CL4SRec), early-stopped on validation.

    Writes the model folder (encoder.pt, model.json, history.json, metrics.json); metadata: the valid and
    test metrics of the best epoch. With ``checkpoint_root`` (a folder that outlives the pod: local disk, a
    mounted volume) it trains in a folder there named by its config and inputs, so a rerun of an
    interrupted pipeline resumes from the last epoch.
    """,
)
