"""Top-K dumps: every evaluated user's ranked list as Parquet, enough to recompute every metric."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .ranker import RankResult


def topk_table(result: RankResult, users: np.ndarray, targets: np.ndarray, user_ids: np.ndarray, item_ids: np.ndarray):
    """Columns: user, items (raw ids in rank order), scores, target (raw id), target_rank (1-based)."""
    import pyarrow as pa

    items = result.topk_items.numpy()
    k = items.shape[1]
    offsets = np.arange(0, items.size + 1, k, dtype=np.int64)
    return pa.table(
        {
            "user": pa.array(user_ids[users].tolist(), pa.string()),
            "items": pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(item_ids[items.ravel()].tolist(), pa.string())),
            "scores": pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(result.topk_scores.numpy().ravel().astype(np.float64))),
            "target": pa.array(item_ids[targets].tolist(), pa.string()),
            "target_rank": pa.array(result.ranks.numpy().astype(np.int64)),
        }
    )


def write_topk(table, path: str | Path) -> None:
    import io

    import pyarrow.parquet as pq

    from ..storage import atomic_write_bytes

    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(path, buf.getvalue())
