"""Per-folder fixtures for the model tests: tiny encoder configs and right-padded toy batches."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from raserec_core.config import ModelConfig  # noqa: E402


@pytest.fixture
def tiny_cfg() -> ModelConfig:
    return ModelConfig(hidden_size=16, n_layers=2, n_heads=2, inner_size=32, hidden_dropout=0.1, attn_dropout=0.1,
                       gru_dropout=0.1)


def padded(histories: list[list[int]], width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (B, width) item tensor and (B,) lengths."""
    width = width or max(map(len, histories))
    seqs = torch.zeros(len(histories), width, dtype=torch.long)
    for r, h in enumerate(histories):
        seqs[r, : len(h)] = torch.tensor(h)
    return seqs, torch.tensor([len(h) for h in histories])


@pytest.fixture
def make_padded():
    return padded
