"""Tiny synthetic data and tiny-model settings shared by the tests (a module, so tests can import it by name;
``conftest`` is not one: pytest loads a conftest per folder under that same name)."""

from __future__ import annotations

import numpy as np

# Tiny models for every CLI training run: fast on a shared CPU, and one place to change them.
TINY = [
    "model.hidden_size=16",
    "model.inner_size=32",
    "model.hidden_dropout=0.2",
    "model.attn_dropout=0.2",
    "pretrain.batch_size=8",
    "pretrain.epochs=3",
    "pretrain.patience=10",
    "data.max_len=5",
    "eval.batch_size=16",
    # Tiny RAMs seldom beat their encoder; the tests that are about the RAM keep it (test_finetune covers the fallback).
    "finetune.encoder_fallback=false",
]


def set_args(items: list[str]) -> list[str]:
    """``["a=1", "b=2"]`` -> ``["--set", "a=1", "--set", "b=2"]``."""
    out: list[str] = []
    for item in items:
        out += ["--set", item]
    return out


def make_seq_lines(n_users: int, n_items: int, seed: int = 0, min_len: int = 4, max_len: int = 9) -> str:
    """A sequence file (``user item item ...``) whose users each see min_len..max_len items."""
    rng = np.random.default_rng(seed)
    lines = []
    for u in range(1, n_users + 1):
        n = int(rng.integers(min_len, max_len + 1))
        # a little structure (item i tends to be followed by i+1) so training has something to learn
        start = int(rng.integers(1, n_items + 1))
        items = [(start + j - 1) % n_items + 1 for j in range(n)]
        lines.append(" ".join(map(str, [u, *items])))
    return "\n".join(lines) + "\n"
