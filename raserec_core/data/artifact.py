"""The preprocessed dataset artifact: a folder read back without recomputation.

Layout::

    train.parquet valid.parquet test.parquet   user (int64), position (int64), history (list<int64>), target (int64)
    users.parquet items.parquet                index (int64), raw_id (string); index 0 of items is padding
    stats.json                                 counts before/after filtering, instances per split, fingerprint

Indices: users from 0, items from 1 (0 = padding). Reading checks the schema, the row counts against
``stats.json`` and the content fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..storage import atomic_dir, may_replace
from .split import SPLITS, Instances

FORMAT_VERSION = 1


@dataclass(frozen=True)
class SeqDataset:
    splits: dict[str, Instances]
    user_ids: np.ndarray  # (n_users,) raw ids, object array of str (unpadded)
    item_ids: np.ndarray  # (n_items + 1,) raw ids, object array of str; item_ids[0] = "" is padding
    stats: dict

    @property
    def n_items(self) -> int:
        """Rows of the item table, padding included (scores are computed over all of them)."""
        return len(self.item_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def fingerprint(self) -> str:
        return self.stats["fingerprint"]


def fingerprint(splits: dict[str, Instances], item_ids: np.ndarray, user_ids: np.ndarray) -> str:
    h = hashlib.sha256()
    for name in SPLITS:
        inst = splits[name]
        for arr in (inst.user, inst.position, inst.target, inst.offsets, inst.values):
            h.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
    for ids in (item_ids, user_ids):
        h.update("\x00".join(ids.tolist()).encode("utf-8"))
    return h.hexdigest()


def _instances_table(inst: Instances):
    import pyarrow as pa

    history = pa.LargeListArray.from_arrays(pa.array(inst.offsets), pa.array(inst.values))
    return pa.table(
        {
            "user": pa.array(inst.user),
            "position": pa.array(inst.position),
            "history": history,
            "target": pa.array(inst.target),
        }
    )


def _ids_table(ids: np.ndarray):
    import pyarrow as pa

    return pa.table({"index": pa.array(np.arange(len(ids), dtype=np.int64)), "raw_id": pa.array(ids.tolist(), pa.string())})


def is_dataset(path: str | Path) -> bool:
    """Whether ``path`` holds a dataset folder (its ``stats.json``), which a new dataset may replace."""
    try:
        stats = json.loads((Path(path) / "stats.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(stats, dict) and "format_version" in stats and "fingerprint" in stats


def write_dataset(ds: SeqDataset, out_dir: str | Path, overwrite: bool = False) -> None:
    """Write the dataset folder atomically. An existing dataset there is replaced; any other non-empty
    folder only with ``overwrite`` (see ``storage.may_replace``)."""
    import pyarrow.parquet as pq

    replace = may_replace(out_dir, is_dataset, "a dataset folder", overwrite)
    with atomic_dir(out_dir, replace=replace) as tmp:
        for name in SPLITS:
            pq.write_table(_instances_table(ds.splits[name]), tmp / f"{name}.parquet")
        pq.write_table(_ids_table(ds.user_ids), tmp / "users.parquet")
        pq.write_table(_ids_table(ds.item_ids), tmp / "items.parquet")
        (tmp / "stats.json").write_text(json.dumps(ds.stats, indent=2, sort_keys=True) + "\n")


def _read_parquet(path: Path, columns: list[str]):
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.exists():
        raise DataError(f"{path}: missing from the dataset folder")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise DataError(f"{path}: missing column '{missing[0]}' (expected {', '.join(columns)})")
    return table


def _read_instances(path: Path) -> Instances:
    import pyarrow as pa

    table = _read_parquet(path, ["user", "position", "history", "target"])
    hist = table.column("history").combine_chunks()
    if not pa.types.is_large_list(hist.type):
        hist = hist.cast(pa.large_list(pa.int64()))
    hist_offsets = hist.offsets.to_numpy().astype(np.int64)
    values = hist.values.to_numpy().astype(np.int64)
    base = hist_offsets[0]
    return Instances(
        user=table.column("user").to_numpy().astype(np.int64),
        position=table.column("position").to_numpy().astype(np.int64),
        target=table.column("target").to_numpy().astype(np.int64),
        offsets=hist_offsets - base,
        values=values[base : hist_offsets[-1]],
    )


def read_ids(path: Path) -> np.ndarray:
    table = _read_parquet(path, ["index", "raw_id"])
    index = table.column("index").to_numpy()
    if not np.array_equal(index, np.arange(len(index))):
        raise DataError(f"{path}: column 'index' must be 0..n-1 in order")
    return table.column("raw_id").to_numpy()  # object array of str: no padding to the longest id


def read_dataset(path: str | Path, verify: bool = True) -> SeqDataset:
    path = Path(path)
    stats_path = path / "stats.json"
    if not path.is_dir():
        raise DataError(f"{path}: not a dataset folder (run 'raserec preprocess' first)")
    try:
        stats = json.loads(stats_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{stats_path}: missing; {path} is not a complete dataset folder") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{stats_path}, line {exc.lineno}: not valid JSON") from None
    if stats.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{stats_path}: format_version {stats.get('format_version')!r}, expected {FORMAT_VERSION}")
    splits = {name: _read_instances(path / f"{name}.parquet") for name in SPLITS}
    ds = SeqDataset(
        splits=splits,
        user_ids=read_ids(path / "users.parquet"),
        item_ids=read_ids(path / "items.parquet"),
        stats=stats,
    )
    for name in SPLITS:
        expected = stats["instances"][name]
        if len(splits[name]) != expected:
            raise DataError(f"{path / (name + '.parquet')}: {len(splits[name])} rows, stats.json says {expected}")
    if verify and fingerprint(splits, ds.item_ids, ds.user_ids) != stats["fingerprint"]:
        raise DataError(f"{path}: content does not match the fingerprint in stats.json (modified or corrupt)")
    return ds
