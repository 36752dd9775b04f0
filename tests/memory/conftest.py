"""Per-folder fixtures for the memory tests: hand-made entries, and banks/fine-tuned models built by the
CLI on the session's tiny dataset (``wide_dataset_dir``) and model (``trained_model_dir``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("faiss")

from raserec_core.config import MemoryConfig  # noqa: E402
from raserec_core.memory.bank import UserState, build_bank  # noqa: E402
from raserec_core.memory.entries import Entries  # noqa: E402

# Stage 2 on the tiny model: a few quick epochs, 4 memories per query.
FINETUNE = [
    "finetune.epochs=3",
    "finetune.batch_size=32",
    "finetune.top_k=4",
    "finetune.inner_size=32",
    "finetune.lr=0.1",
]


def _make_entries(n: int, dim: int = 8, n_users: int = 4, n_items: int = 10, seed: int = 0) -> Entries:
    """``n`` entries with random keys/values and plausible metadata (user, length 1..5, position, target)."""
    g = torch.Generator().manual_seed(seed)
    user = torch.randint(0, n_users, (n,), generator=g)
    position = torch.randint(1, 20, (n,), generator=g)
    return Entries(
        keys=torch.randn(n, dim, generator=g),
        values=torch.randn(n, dim, generator=g),
        user=user,
        length=position.clamp(max=5),
        position=position,
        target=torch.randint(1, n_items, (n,), generator=g),
    )


def _make_bank(entries: Entries, index_type: str = "brute", n_users: int = 4, n_items: int = 10, **mem):
    """A bank over hand-made entries (no model): users u0..u{n-1}, items '' + i1..i{n-1}."""
    lasts = [torch.tensor([1 + u, 2 + u], dtype=torch.long) for u in range(n_users)]
    users = UserState(
        n_seen=torch.full((n_users,), 20, dtype=torch.long),
        last_offsets=torch.tensor([0] + [2 * (u + 1) for u in range(n_users)], dtype=torch.long),
        last_values=torch.cat(lasts),
    )
    user_ids = np.array([f"u{u}" for u in range(n_users)])
    item_ids = np.array([""] + [f"i{i}" for i in range(1, n_items)])
    return build_bank(entries, user_ids, item_ids, users, MemoryConfig(index_type=index_type, **mem), "e" * 64, "f" * 64, 5)


def _tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="session")
def make_entries():
    """``make_entries(n, dim=8, n_users=4, n_items=10, seed=0)``: hand-made entries."""
    return _make_entries


@pytest.fixture(scope="session")
def make_bank():
    """``make_bank(entries, index_type="brute", n_users=4, n_items=10, **memory_config)``: a bank without a model."""
    return _make_bank


@pytest.fixture(scope="session")
def tree_digest():
    """``tree_digest(folder)``: sha256 of every file under it, to show a folder is unchanged."""
    return _tree_digest


@pytest.fixture(scope="session")
def finetune_args(tiny_args):
    return lambda *extra: tiny_args(*FINETUNE, *extra)


@pytest.fixture(scope="session")
def flat_bank_dir(tmp_path_factory, wide_dataset_dir, trained_model_dir, tiny_args) -> Path:
    """``raserec index --index-type flat`` over the tiny model's training instances (150 entries)."""
    from raserec_core.cli.main import main

    out = tmp_path_factory.mktemp("bank") / "flat"
    assert main(["index", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--output", str(out),
                 "--index-type", "flat", *tiny_args()]) == 0
    return out


@pytest.fixture(scope="session")
def finetuned_dir(tmp_path_factory, wide_dataset_dir, trained_model_dir, flat_bank_dir, finetune_args) -> Path:
    """``raserec finetune`` of the tiny model over ``flat_bank_dir``."""
    from raserec_core.cli.main import main

    out = tmp_path_factory.mktemp("finetuned") / "ft"
    assert main(["finetune", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--memory",
                 str(flat_bank_dir), "--output", str(out), *finetune_args()]) == 0
    return out
