"""Shared fixtures: tiny synthetic interaction logs, a preprocessed dataset, and one tiny trained model.

Everything is written under pytest's ``tmp_path``/``tmp_path_factory``; no test writes to the working
directory or reaches the network. Torch runs on one thread so the suite stays fast on a busy 2-core box.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # the light install (pyyaml, numpy, pyarrow) runs the non-torch tests only
    torch = None

# TMPDIR-safe: a TMPDIR that points at a missing folder would make every tempfile call (atomic writes,
# pytest's tmp_path) fail; create it rather than failing far from the cause.
_tmpdir = os.environ.get("TMPDIR")
if _tmpdir and not Path(_tmpdir).is_dir():
    Path(_tmpdir).mkdir(parents=True, exist_ok=True)
    tempfile.tempdir = None  # re-read TMPDIR

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
]


def set_args(items: list[str]) -> list[str]:
    """``["a=1", "b=2"]`` -> ``["--set", "a=1", "--set", "b=2"]``."""
    out: list[str] = []
    for item in items:
        out += ["--set", item]
    return out


@pytest.fixture(scope="session")
def tiny_args():
    """``tiny_args("pretrain.epochs=2")``: CLI ``--set`` arguments for a tiny CPU model, plus extras
    (later keys win)."""
    return lambda *extra: ["--device", "cpu", *set_args([*TINY, *extra])]


TESTS = Path(__file__).parent
# The core-library tests (this suite's part 1) also run inside their own tmp folder, so a stray relative
# path can never write into the checkout. Other tests keep the repository root as their working folder.
CORE_TESTS = {"data", "models", "training", "evaluation", "test_cli.py", "test_config.py"}


@pytest.fixture(autouse=True)
def _seed_and_cwd(request, monkeypatch):
    """Every test starts from the same global torch RNG state; core tests run in a tmp folder."""
    try:
        core = request.path.relative_to(TESTS).parts[0] in CORE_TESTS
    except ValueError:  # a test file outside tests/
        core = False
    if core:
        monkeypatch.chdir(request.getfixturevalue("tmp_path"))
    if torch is not None:
        torch.manual_seed(0)
    yield


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


@pytest.fixture(scope="session")
def small_dataset_dir(tmp_path_factory) -> Path:
    """A preprocessed dataset: 20 users, 12 items (fewer than the 50 of a top-K dump), max_len 5."""
    from raserec_core.cli.main import main

    root = tmp_path_factory.mktemp("small")
    src = root / "small.txt"
    src.write_text(make_seq_lines(20, 12, seed=1))
    out = root / "ds"
    assert main(["preprocess", "--input", str(src), "--output", str(out), "--k-core", "0",
                 "--set", "data.max_len=5"]) == 0
    return out


@pytest.fixture(scope="session")
def wide_dataset_dir(tmp_path_factory) -> Path:
    """A preprocessed dataset with 60 items, so a top-50 dump is full length."""
    from raserec_core.cli.main import main

    root = tmp_path_factory.mktemp("wide")
    src = root / "wide.txt"
    src.write_text(make_seq_lines(30, 60, seed=2, min_len=5, max_len=10))
    out = root / "ds"
    assert main(["preprocess", "--input", str(src), "--output", str(out), "--k-core", "0",
                 "--set", "data.max_len=5"]) == 0
    return out


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory, wide_dataset_dir) -> Path:
    """One tiny SASRec/DuoRec model trained for 2 epochs on ``wide_dataset_dir``."""
    pytest.importorskip("torch")
    from raserec_core.cli.main import main

    out = tmp_path_factory.mktemp("model") / "m"
    torch.manual_seed(0)
    rc = main(["pretrain", "--data", str(wide_dataset_dir), "--output", str(out), "--device", "cpu",
               *set_args([*TINY, "pretrain.epochs=2"])])
    assert rc == 0
    return out
