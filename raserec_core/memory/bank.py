"""The memory bank artifact: entries + index + what is needed to grow it, loadable without training data.

Folder layout::

    manifest.json      counts, dimension, index type requested and built, its parameters, encoder and dataset hashes
    keys.npy values.npy  un-normalised (E, D) float32 keys and values
    entries.parquet    user, length, position, target per entry (row i = index id i)
    index.faiss|index.pt
    users.parquet items.parquet   raw id maps (the bank's users grow with new users)
    user_state.parquet user, n_seen (items known), last (the user's last max_len items)
    added.parquet      (user, item, time) of every interaction added later, to refuse duplicates
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..errors import MemoryBankError
from ..storage import atomic_dir, read_json
from .entries import Entries
from .index import VectorIndex, build_index, load_index, save_index
from .retrieval import Retriever
from .sizing import resolve

FORMAT_VERSION = 1


@dataclass
class UserState:
    n_seen: torch.Tensor  # (U,) int64 items known per user
    last_offsets: torch.Tensor  # (U + 1,) int64
    last_values: torch.Tensor  # item indices, each user's last max_len items, oldest first

    def last(self, u: int) -> torch.Tensor:
        return self.last_values[self.last_offsets[u] : self.last_offsets[u + 1]]


@dataclass
class MemoryBank:
    entries: Entries
    index: VectorIndex
    user_ids: np.ndarray  # (U,) raw ids
    item_ids: np.ndarray  # (n_items,) raw ids, "" = padding
    users: UserState
    added: dict[str, np.ndarray]  # user, item (raw ids) and time of interactions added after building
    meta: dict  # index parameters, encoder_sha256, dataset_fingerprint, max_len

    def __len__(self) -> int:
        return len(self.entries)

    def retriever(self, candidate_factor: int = 4) -> Retriever:
        return Retriever(self.index, self.entries.user, self.entries.length, candidate_factor)

    def target_retriever(self, candidate_factor: int = 4) -> Retriever:
        """Searches the memories' target embeddings instead of their keys (built on demand, not saved)."""
        index = self._index_over(self.entries.values)
        return Retriever(index, self.entries.user, self.entries.length, candidate_factor)

    def _index_over(self, vectors: torch.Tensor) -> VectorIndex:
        """A fresh index of the bank's requested type and parameters."""
        m = self.meta
        return build_index(vectors, m["index_type_requested"], m["nlist"], m["nprobe"], m["pq_m"], m["allow_fallback"])

    def with_entries(self, extra: Entries) -> MemoryBank:
        """A bank over these entries plus ``extra`` with a freshly built index (never written)."""
        entries = self.entries.concat(extra)
        index = self._index_over(entries.keys)
        return replace(self, entries=entries, index=index)

    def select(self, rows: torch.Tensor) -> MemoryBank:
        """A bank over the entries ``rows`` with a freshly built index (never written)."""
        entries = self.entries.select(rows)
        return replace(self, entries=entries, index=self._index_over(entries.keys))

    def manifest(self) -> dict:
        return {
            **self.meta,
            "format_version": FORMAT_VERSION,
            "entries": len(self.entries),
            "users": len(self.user_ids),
            "dim": int(self.entries.keys.shape[1]),
            "index_type_built": self.index.kind,
            "interactions_added": int(len(self.added["user"])),
        }


def build_bank(
    entries: Entries, user_ids: np.ndarray, item_ids: np.ndarray, users: UserState, mem_cfg, encoder_sha256: str,
    dataset_fingerprint: str, max_len: int,
) -> MemoryBank:
    settings, chosen = resolve(mem_cfg, len(entries), int(entries.keys.shape[1]))
    index = build_index(entries.keys, settings.kind, settings.nlist, settings.nprobe, settings.pq_m, mem_cfg.allow_fallback)
    meta = {
        # What was built with (auto settings resolved: a bank that grows keeps them); chosen_by_size names those.
        "index_type_requested": settings.kind,
        "allow_fallback": mem_cfg.allow_fallback,
        "nlist": settings.nlist,
        "nprobe": settings.nprobe,
        "pq_m": settings.pq_m,
        "chosen_by_size": chosen,
        "encoder_sha256": encoder_sha256,
        "dataset_fingerprint": dataset_fingerprint,
        "max_len": max_len,
    }
    empty = np.zeros(0, dtype=str)
    return MemoryBank(entries, index, user_ids, item_ids, users, {"user": empty, "item": empty, "time": np.zeros(0)}, meta)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _ids_table(ids: np.ndarray):
    import pyarrow as pa

    return pa.table({"index": np.arange(len(ids), dtype=np.int64), "raw_id": pa.array(ids.tolist(), pa.string())})


def save_bank(bank: MemoryBank, folder: str | Path, replace_existing: bool = False) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    e = bank.entries
    with atomic_dir(folder, replace=replace_existing) as tmp:
        np.save(tmp / "keys.npy", e.keys.numpy().astype(np.float32))
        np.save(tmp / "values.npy", e.values.numpy().astype(np.float32))
        pq.write_table(
            pa.table({"user": e.user.numpy(), "length": e.length.numpy(), "position": e.position.numpy(), "target": e.target.numpy()}),
            tmp / "entries.parquet",
        )
        pq.write_table(_ids_table(bank.user_ids), tmp / "users.parquet")
        pq.write_table(_ids_table(bank.item_ids), tmp / "items.parquet")
        st = bank.users
        pq.write_table(
            pa.table({
                "user": np.arange(len(st.n_seen), dtype=np.int64),
                "n_seen": st.n_seen.numpy(),
                "last": pa.LargeListArray.from_arrays(pa.array(st.last_offsets.numpy()), pa.array(st.last_values.numpy())),
            }),
            tmp / "user_state.parquet",
        )
        pq.write_table(
            pa.table({
                "user": pa.array(bank.added["user"].tolist(), pa.string()),
                "item": pa.array(bank.added["item"].tolist(), pa.string()),
                "time": pa.array(bank.added["time"].astype(np.float64)),
            }),
            tmp / "added.parquet",
        )
        manifest = {**bank.manifest(), **save_index(bank.index, tmp)}
        protected = ("keys.npy", "values.npy", "entries.parquet", "users.parquet", "items.parquet", "user_state.parquet", "added.parquet")
        manifest["sha256"] = {name: _sha256(tmp / name) for name in (*protected, manifest["index_file"])}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def is_bank(folder: str | Path) -> bool:
    """Whether ``folder`` holds a memory bank (its ``manifest.json``), which a new bank may replace."""
    try:
        manifest = json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(manifest, dict) and "format_version" in manifest and "sha256" in manifest


def load_bank(folder: str | Path, nprobe: int | None = None, verify: bool = True) -> MemoryBank:
    """``nprobe`` (None or 0: the bank's own) is the one its index searches with."""
    import pyarrow.parquet as pq

    from ..data.artifact import read_ids

    folder = Path(folder)
    mpath = folder / "manifest.json"
    if not mpath.exists():
        raise MemoryBankError(f"{folder}: no manifest.json (not a memory bank written by 'raserec index')")
    manifest = read_json(mpath, MemoryBankError)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise MemoryBankError(f"{mpath}: format_version {manifest.get('format_version')!r}, expected {FORMAT_VERSION}")
    if verify:
        for name, digest in manifest["sha256"].items():
            if not (folder / name).is_file():
                raise MemoryBankError(f"{folder / name}: missing (listed in manifest.json); rebuild the bank with 'raserec index'")
            if _sha256(folder / name) != digest:
                raise MemoryBankError(f"{folder / name}: content does not match manifest.json (modified or corrupt)")
    meta_table = pq.read_table(folder / "entries.parquet")
    col = lambda name: torch.from_numpy(meta_table.column(name).to_numpy().astype(np.int64))
    entries = Entries(
        keys=torch.from_numpy(np.load(folder / "keys.npy")),
        values=torch.from_numpy(np.load(folder / "values.npy")),
        user=col("user"), length=col("length"), position=col("position"), target=col("target"),
    )
    st = pq.read_table(folder / "user_state.parquet")
    last = st.column("last").combine_chunks()
    users = UserState(
        n_seen=torch.from_numpy(st.column("n_seen").to_numpy().astype(np.int64)),
        last_offsets=torch.from_numpy(last.offsets.to_numpy().astype(np.int64) - int(last.offsets[0].as_py())),
        last_values=torch.from_numpy(last.values.to_numpy().astype(np.int64)),
    )
    added_t = pq.read_table(folder / "added.parquet")
    added = {
        "user": np.asarray(added_t.column("user").to_pylist(), dtype=str),
        "item": np.asarray(added_t.column("item").to_pylist(), dtype=str),
        "time": added_t.column("time").to_numpy().astype(np.float64),
    }
    index = load_index(folder, manifest, nprobe)
    if index.ntotal != len(entries):
        raise MemoryBankError(f"{folder}: index holds {index.ntotal} vectors but entries.parquet has {len(entries)} rows")
    meta_keys = ("index_type_requested", "nlist", "nprobe", "pq_m", "encoder_sha256", "dataset_fingerprint", "max_len")
    meta = {k: manifest[k] for k in meta_keys}
    meta["allow_fallback"] = manifest.get("allow_fallback", True)  # banks written before the key fell back
    meta["chosen_by_size"] = manifest.get("chosen_by_size", [])  # banks written before memory.index_type auto
    if nprobe:  # None or 0: the nprobe the bank was built with
        meta["nprobe"] = nprobe
    return MemoryBank(entries, index, read_ids(folder / "users.parquet"), read_ids(folder / "items.parquet"), users, added, meta)
