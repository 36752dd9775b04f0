"""Sequence encoders, objectives, the retrieval-augmented module and the assembled model."""
