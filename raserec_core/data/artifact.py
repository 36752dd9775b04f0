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
    columns = [[[a] for a in (inst.user, inst.position, inst.target, inst.offsets, inst.values)]
               for inst in (splits[name] for name in SPLITS)]
    return _digest(columns, [[item_ids.tolist()], [user_ids.tolist()]])


def _digest(split_columns, id_columns) -> str:
    """The content hash, fed in chunks so a folder too large for memory hashes the same as one that fits.

    ``split_columns``: per split (SPLITS order), five iterables of int64 chunks: user, position, target,
    offsets (R + 1, from 0), values. ``id_columns``: items then users, each an iterable of lists of str,
    hashed as the whole column joined by NUL.
    """
    h = hashlib.sha256()
    for columns in split_columns:
        for chunks in columns:
            for arr in chunks:
                h.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
    for chunks in id_columns:
        sep = ""
        for ids in chunks:
            if ids:
                h.update((sep + "\x00".join(ids)).encode("utf-8"))
                sep = "\x00"
    return h.hexdigest()


def fingerprint_folder(path: str | Path, batch_rows: int = 1 << 16) -> str:
    """``fingerprint`` of a written dataset folder, read column by column in batches (bounded memory)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = Path(path)

    def column(file: str, name: str):
        for batch in pq.ParquetFile(path / file).iter_batches(batch_size=batch_rows, columns=[name]):
            yield batch.column(0)

    def offsets(file: str):
        base = 0
        yield np.zeros(1, dtype=np.int64)
        for hist in column(file, "history"):
            ends = base + np.cumsum(pc.list_value_length(hist).to_numpy(), dtype=np.int64)
            base = int(ends[-1]) if len(ends) else base
            yield ends

    def values(file: str):
        for hist in column(file, "history"):
            yield hist.flatten().to_numpy()  # flatten honours a sliced batch's offsets

    split_columns = [
        [(c.to_numpy() for c in column(f"{name}.parquet", key)) for key in ("user", "position", "target")]
        + [offsets(f"{name}.parquet"), values(f"{name}.parquet")]
        for name in SPLITS
    ]
    id_columns = [(c.to_pylist() for c in column(f"{name}.parquet", "raw_id")) for name in ("items", "users")]
    return _digest(split_columns, id_columns)


def instances_table(inst: Instances):
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


def ids_table(ids, start: int = 0):
    """Rows ``start..`` of users.parquet / items.parquet; ``ids``: an object array of str or an Arrow array."""
    import pyarrow as pa

    raw = pa.array(ids.tolist(), pa.string()) if isinstance(ids, np.ndarray) else ids.cast(pa.string())
    return pa.table({"index": pa.array(np.arange(start, start + len(raw), dtype=np.int64)), "raw_id": raw})


def write_stats(folder: Path, stats: dict) -> None:
    (folder / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")


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
            pq.write_table(instances_table(ds.splits[name]), tmp / f"{name}.parquet")
        pq.write_table(ids_table(ds.user_ids), tmp / "users.parquet")
        pq.write_table(ids_table(ds.item_ids), tmp / "items.parquet")
        write_stats(tmp, ds.stats)


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
