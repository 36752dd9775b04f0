"""Raw interactions -> the dataset artifact: k-core, chronological order, id maps, leave-one-out split."""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from .artifact import FORMAT_VERSION, SeqDataset, fingerprint
from .kcore import kcore_mask
from .readers import Interactions
from .split import SPLITS, leave_one_out


def _sorted_unique(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique raw ids in a stable order (numeric when all ids are integers) and each row's code.

    Arrow's hash-based dictionary encoding keeps the ids unpadded (a numpy string sort would copy every
    row at the width of the longest id). Strings sort by UTF-8 bytes, which is code-point order.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    encoded = pa.array(raw, pa.large_string()).dictionary_encode()
    uniq = encoded.dictionary
    keys = [("text", "ascending")]
    columns = {"text": uniq}
    try:
        columns["number"] = pc.cast(uniq, pa.int64())
        keys.insert(0, ("number", "ascending"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass  # not all integers: string order
    order = pc.sort_indices(pa.table(columns), sort_keys=keys).to_numpy()
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return uniq.take(order).to_numpy(zero_copy_only=False), rank[encoded.indices.to_numpy()]


def dataset_stats(
    source: str, k_core: int, max_len: int, raw: tuple[int, int, int], filtered: tuple[int, int, int],
    users_too_short: int, instances: dict[str, int], fingerprint: str,
) -> dict:
    """stats.json: (users, items, interactions) before and after filtering, instances per split."""
    keys = ("users", "items", "interactions")
    return {
        "format_version": FORMAT_VERSION,
        "source": source,
        "k_core": k_core,
        "max_len": max_len,
        "raw": {k: int(v) for k, v in zip(keys, raw)},
        "filtered": {k: int(v) for k, v in zip(keys, filtered)},
        "users_too_short": int(users_too_short),
        "instances": {name: int(instances[name]) for name in SPLITS},
        "fingerprint": fingerprint,
    }


def build_dataset(inter: Interactions, k_core: int, max_len: int, source: str = "") -> SeqDataset:
    n_raw = len(inter)
    raw_users, user_code = _sorted_unique(inter.user)
    raw_items, item_code = _sorted_unique(inter.item)
    keep = kcore_mask(user_code, item_code, k_core)
    if not keep.any():
        raise DataError(
            f"{source or 'input'}: no interaction survives the {k_core}-core filter "
            f"({len(raw_users)} users, {len(raw_items)} items, {n_raw} interactions before it)"
        )
    # Users with fewer than 3 items cannot give a history, a validation and a test item: they are
    # dropped here (and counted), so every user in the artifact has all three splits.
    user_counts = np.bincount(user_code[keep], minlength=len(raw_users))
    too_short = keep & (user_counts[user_code] < 3)
    n_too_short = int(((user_counts > 0) & (user_counts < 3)).sum())
    keep = keep & ~too_short
    if not keep.any():
        raise DataError(f"{source or 'input'}: no user has the 3 interactions a leave-one-out split needs")
    rows = np.flatnonzero(keep)
    # Re-index survivors densely; items from 1 (0 is padding).
    kept_users, user_idx = np.unique(user_code[rows], return_inverse=True)
    kept_items, item_idx = np.unique(item_code[rows], return_inverse=True)
    item_idx = item_idx + 1
    # Chronological per user, ties broken by original row order.
    order = np.lexsort((rows, inter.time[rows], user_idx))
    seq_items = item_idx[order].astype(np.int64)
    counts = np.bincount(user_idx, minlength=len(kept_users))
    seq_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    splits, _ = leave_one_out(seq_items, seq_offsets, max_len)
    user_ids = raw_users[kept_users]
    item_ids = np.concatenate([np.array([""], dtype=object), raw_items[kept_items]])
    stats = dataset_stats(
        source, k_core, max_len, raw=(len(raw_users), len(raw_items), n_raw),
        filtered=(len(kept_users), len(kept_items), len(rows)), users_too_short=n_too_short,
        instances={name: len(splits[name]) for name in SPLITS},
        fingerprint=fingerprint(splits, item_ids, user_ids),
    )
    return SeqDataset(splits=splits, user_ids=user_ids, item_ids=item_ids, stats=stats)
