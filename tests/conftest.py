"""Shared fixtures: tiny synthetic interaction logs, a preprocessed dataset, and one tiny trained model.

Everything is written under pytest's ``tmp_path``/``tmp_path_factory``; no test writes to the working
directory or reaches the network. Torch runs on one thread so the suite stays fast on a busy 2-core box.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from toy_data import TINY, make_seq_lines, set_args  # noqa: F401  (tests import them from here too)

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
