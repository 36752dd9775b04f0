"""A synthetic interaction table (user_id, item_id, timestamp) as Parquet, written in chunks (bounded memory).

    python benchmarks/make_interactions.py --rows 100000000 --output benchmarks/runs/ooc/inter-100m.parquet

Shape: ``--users`` (default rows / 20) users whose activity is long-tailed (each row's user is drawn with
weight rank^-user_alpha: the most active user of the 100M table has ~22k rows, the median ~14); ``--items``
(default rows / 100, so 1M items at 100M rows) with Zipf-like popularity (weight rank^-item_alpha); ranks are
shuffled onto ids so id order says nothing about popularity. Timestamps are whole seconds, uniform over
three years (ties happen). Ids are int64, or strings (``u123``, ``i456``) with ``--string-ids``.
Each chunk of rows comes from its own seeded generator: the same arguments give the same file.
Memory: the two weight tables (8 bytes per user and per item) plus one chunk (~30 bytes a row).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

SPAN = 3 * 365 * 86400  # seconds of timestamps
T0 = 1_500_000_000


def power_law_sampler(n: int, alpha: float, rng: np.random.Generator):
    """Draws ids 0..n-1 with P(rank r) ~ (r + 1)^-alpha; ranks shuffled onto ids."""
    cdf = np.cumsum(np.arange(1, n + 1, dtype=np.float64) ** -alpha)
    cdf /= cdf[-1]
    ids = rng.permutation(n)
    return lambda g, size: ids[np.minimum(np.searchsorted(cdf, g.random(size)), n - 1)]


def chunk_table(sample_user, sample_item, seed: int, index: int, rows: int, string_ids: bool):
    import pyarrow as pa
    import pyarrow.compute as pc

    g = np.random.default_rng([seed, index])
    user, item = sample_user(g, rows), sample_item(g, rows)
    stamp = T0 + g.integers(0, SPAN, rows)
    if string_ids:
        user = pc.binary_join_element_wise("u", pa.array(user).cast(pa.string()), "")
        item = pc.binary_join_element_wise("i", pa.array(item).cast(pa.string()), "")
    return pa.table({"user_id": user, "item_id": item, "timestamp": stamp})


def main(argv: list[str] | None = None) -> None:
    import pyarrow.parquet as pq

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--users", type=int, help="default rows // 20")
    p.add_argument("--items", type=int, help="default rows // 100")
    p.add_argument("--user-alpha", type=float, default=0.5)
    p.add_argument("--item-alpha", type=float, default=1.0)
    p.add_argument("--string-ids", action="store_true")
    p.add_argument("--chunk", type=int, default=4_000_000, help="rows per chunk (and Parquet row group)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", required=True)
    args = p.parse_args(argv)
    users = args.users or max(args.rows // 20, 1)
    items = args.items or max(args.rows // 100, 1)
    rng = np.random.default_rng(args.seed)
    sample_user = power_law_sampler(users, args.user_alpha, rng)
    sample_item = power_law_sampler(items, args.item_alpha, rng)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    start = time.perf_counter()
    writer = None
    for index, first in enumerate(range(0, args.rows, args.chunk)):
        table = chunk_table(sample_user, sample_item, args.seed, index, min(args.chunk, args.rows - first),
                            args.string_ids)
        writer = writer or pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table)
    writer.close()
    tmp.replace(out)  # a killed run leaves no half-written table under the final name
    print(f"{out}: {args.rows} rows, {users} users, {items} items, {out.stat().st_size / 2**20:.0f} MiB, "
          f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
