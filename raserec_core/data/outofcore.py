"""Out-of-core preprocessing: a Parquet interaction table larger than memory -> the dataset artifact.

The result is the folder ``build_dataset`` + ``write_dataset`` write for the same table (same splits, ids
and fingerprint; tests/data/test_outofcore.py compares them), made in bounded memory:

1. DuckDB reads the Parquet file (with each row's position in the file, the tie-break of equal times) into
   a table of integer codes: integer ids are their own codes, string ids get their rank in the in-memory
   path's order (numeric when every id is an integer, else UTF-8 byte order), so code order is id order.
2. Iterative k-core: per round one group-by on users and one on items, then a semi-join keeps the rows
   of users and items with at least k interactions, until no row goes. Users with fewer than 3 are
   then dropped and counted, as in ``build_dataset``.
3. Dense indices by code order (users from 0, items from 1), then one sort by (user, time, file row):
   the users' chronological sequences stream out in Arrow batches; each batch of whole users goes
   through ``split.leave_one_out`` (the in-memory split itself) and into the split files row group by
   row group. The id maps stream out the same way; the fingerprint is read back column by column.

Why DuckDB: iterative k-core is repeated hash aggregations and semi-joins over the whole table, and the
split needs one global sort; DuckDB's aggregates, joins and sort spill to disk under ``memory_limit``,
keep intermediate tables in its own file, and stream results to Arrow without copying the table into
Python. Polars' streaming engine would do the group-by, but its joins and sort spill less predictably
and each k-core round would be a new lazy query over files we write ourselves; pyarrow's Acero has
neither a spilling hash join nor an external sort. The cost: one optional dependency (``raserec[ooc]``).

Only Parquet is read here (numeric time column, integer or string ids); text formats go through the
in-memory readers, which check them line by line.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..storage import atomic_dir, may_replace
from .artifact import fingerprint_folder, ids_table, instances_table, is_dataset, write_stats
from .preprocess import dataset_stats
from .readers import MAX_ID_LENGTH, _check_unique_columns
from .split import SPLITS, Instances, leave_one_out

log = logging.getLogger("raserec")

BATCH_ROWS = 1 << 19  # interactions per batch streamed out of DuckDB into the split
GROUP_ROWS = 1 << 18  # instances per Parquet row group (a train row holds up to max_len items)


def preprocess_parquet(
    path: str | Path, out_dir: str | Path, k_core: int, max_len: int, user_col: str = "user_id",
    item_col: str = "item_id", time_col: str = "timestamp", memory_limit_gb: float = 4.0,
    overwrite: bool = False, source: str = "",
) -> dict:
    """Write the dataset folder for the Parquet table ``path``; returns its stats (stats.json)."""
    try:
        import duckdb
    except ImportError:
        raise DataError("data.engine=duckdb needs DuckDB: pip install 'raserec[ooc]'") from None
    path = Path(path)
    kinds = _check_schema(path, user_col, item_col, time_col)
    replace = may_replace(out_dir, is_dataset, "a dataset folder", overwrite)
    with atomic_dir(out_dir, replace=replace) as tmp:
        work = tmp / ".duckdb"  # DuckDB's database and spill files: inside the temporary output, so a
        work.mkdir()  # killed run's leftovers go with it (storage.remove_dead_temps)
        con = duckdb.connect(str(work / "work.db"), config={
            "memory_limit": f"{memory_limit_gb}GB", "temp_directory": str(work / "spill"),
            "preserve_insertion_order": False,
        })
        _run(con, "SET enable_progress_bar = false")
        try:
            stats = _build(con, path, tmp, kinds, k_core, max_len, (user_col, item_col, time_col), source or str(path))
        finally:
            con.close()
        shutil.rmtree(work)
        start = time.perf_counter()
        stats["fingerprint"] = fingerprint_folder(tmp)
        log.info("out-of-core: fingerprint read back in %.1f s", time.perf_counter() - start)
        write_stats(tmp, stats)
    return stats


def _check_schema(path: Path, user_col: str, item_col: str, time_col: str) -> dict[str, str]:
    """Each role's kind of column (``int`` / ``str`` ids, ``num`` time); a clear error for anything else."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    _check_unique_columns(path, schema.names)
    kinds = {}
    roles = [("user", user_col), ("item", item_col)] + ([("time", time_col)] if time_col else [])
    for role, name in roles:
        if name not in schema.names:
            raise DataError(
                f"{path}: no {role} column named '{name}' (columns: {', '.join(schema.names)}); set data.{role}_col"
            )
        t = schema.field(name).type
        if role == "time" and (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)):
            kinds[role] = "num"
        elif role != "time" and pa.types.is_integer(t):
            kinds[role] = "int"
        elif role != "time" and (pa.types.is_string(t) or pa.types.is_large_string(t)):
            kinds[role] = "str"
        else:
            wanted = "a numeric" if role == "time" else "an integer or string"
            raise DataError(f"{path}: column '{name}' is {t}; data.engine=duckdb needs {wanted} {role} column")
    return kinds


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _run(con, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()  # fetching completes the statement (DuckDB 2 refuses the next one before)


def _scalar(con, sql: str):
    return _run(con, sql)[0][0]


def _build(con, path: Path, out: Path, kinds: dict, k_core: int, max_len: int, cols: tuple, source: str) -> dict:
    user_col, item_col, time_col = cols
    src = f"read_parquet('{str(path).replace(chr(39), chr(39) * 2)}', file_row_number = true)"
    u, i = _quote(user_col), _quote(item_col)
    t = f"CAST({_quote(time_col)} AS DOUBLE)" if time_col else "0.0"
    start = time.perf_counter()
    _validate(con, path, src, kinds, cols, t)

    # 1. Integer codes in id order; string ids through a map of their distinct values.
    select, joins = [], []
    for role, col in (("user", u), ("item", i)):
        if kinds[role] == "int":
            select.append(f"src.{col}")
            continue
        _run(con, f"CREATE TABLE {role}_raw AS SELECT DISTINCT {col} AS raw FROM {src}")
        numeric = _scalar(con, f"SELECT bool_and(regexp_full_match(raw, '-?[0-9]+') AND TRY_CAST(raw AS BIGINT) "
                               f"IS NOT NULL) FROM {role}_raw")  # the ids pyarrow casts to int64, as preprocess
        key = "CAST(raw AS BIGINT), raw" if numeric else "raw"
        _run(con, f"CREATE TABLE {role}_all AS SELECT raw, row_number() OVER (ORDER BY {key}) AS code FROM {role}_raw")
        _run(con, f"DROP TABLE {role}_raw")
        select.append(f"{role}_all.code")
        joins.append(f"JOIN {role}_all ON src.{col} = {role}_all.raw")
    _run(con, f"CREATE TABLE inter AS SELECT {select[0]} AS u, {select[1]} AS i, {t} AS t, src.file_row_number AS r "
            f"FROM {src} AS src {' '.join(joins)}")
    n_raw = _scalar(con, "SELECT count(*) FROM inter")
    log.info("out-of-core: %d interactions read in %.1f s", n_raw, time.perf_counter() - start)

    # 2. Iterative k-core (the k-core is unique: dropping all short users and items at once per round
    # reaches the same fixpoint as kcore.kcore_mask).
    raw_counts, rounds, start = None, 0, time.perf_counter()
    while True:
        _run(con, "CREATE OR REPLACE TABLE ucnt AS SELECT u, count(*) AS n FROM inter GROUP BY u")
        _run(con, "CREATE OR REPLACE TABLE icnt AS SELECT i, count(*) AS n FROM inter GROUP BY i")
        raw_counts = raw_counts or (_scalar(con, "SELECT count(*) FROM ucnt"), _scalar(con, "SELECT count(*) FROM icnt"))
        short = _scalar(con, f"SELECT (SELECT count(*) FROM ucnt WHERE n < {k_core}) "
                             f"+ (SELECT count(*) FROM icnt WHERE n < {k_core})")
        if k_core <= 0 or short == 0:
            break
        _run(con, f"CREATE TABLE kept AS SELECT * FROM inter WHERE u IN (SELECT u FROM ucnt WHERE n >= {k_core}) "
                f"AND i IN (SELECT i FROM icnt WHERE n >= {k_core})")
        _run(con, "DROP TABLE inter")
        _run(con, "ALTER TABLE kept RENAME TO inter")
        rounds += 1
    log.info("out-of-core: %d-core in %d rounds, %.1f s", k_core, rounds, time.perf_counter() - start)
    if not _scalar(con, "SELECT count(*) FROM inter"):
        raise DataError(
            f"{source}: no interaction survives the {k_core}-core filter "
            f"({raw_counts[0]} users, {raw_counts[1]} items, {n_raw} interactions before it)"
        )
    # Users with fewer than 3 items cannot give a history, a validation and a test item (preprocess.py).
    too_short = _scalar(con, "SELECT count(*) FROM ucnt WHERE n < 3")
    if too_short:
        _run(con, "DELETE FROM inter WHERE u IN (SELECT u FROM ucnt WHERE n < 3)")
        if not _scalar(con, "SELECT count(*) FROM inter"):
            raise DataError(f"{source}: no user has the 3 interactions a leave-one-out split needs")

    # 3. Dense indices in code order; items from 1 (0 is padding).
    start = time.perf_counter()
    _run(con, "CREATE TABLE umap AS SELECT u AS code, row_number() OVER (ORDER BY u) - 1 AS idx FROM ucnt WHERE n >= 3")
    _run(con, "CREATE TABLE imap AS SELECT i AS code, row_number() OVER (ORDER BY i) AS idx "
            "FROM (SELECT DISTINCT i FROM inter)")
    n_users, n_items, n_kept = (_scalar(con, f"SELECT count(*) FROM {x}") for x in ("umap", "imap", "inter"))
    for role, table, first in (("user", "umap", []), ("item", "imap", [""])):
        raw = "CAST(m.code AS VARCHAR)" if kinds[role] == "int" else "a.raw"
        join = "" if kinds[role] == "int" else f"JOIN {role}_all AS a ON m.code = a.code"
        ids = con.sql(f"SELECT {raw} AS raw_id FROM {table} AS m {join} ORDER BY m.idx").to_arrow_reader(BATCH_ROWS)
        _write_ids(out / f"{role}s.parquet", ids, first)

    seq = con.sql("SELECT umap.idx AS u, imap.idx AS i FROM inter JOIN umap ON inter.u = umap.code "
                  "JOIN imap ON inter.i = imap.code ORDER BY inter.u, inter.t, inter.r").to_arrow_reader(BATCH_ROWS)
    counts = _write_splits(out, _user_batches(seq), max_len)
    log.info("out-of-core: id maps, sort and split written in %.1f s", time.perf_counter() - start)
    return dataset_stats(
        source, k_core, max_len, raw=(*raw_counts, n_raw), filtered=(n_users, n_items, n_kept),
        users_too_short=too_short, instances=counts, fingerprint="",
    )


def _validate(con, path: Path, src: str, kinds: dict, cols: tuple, t: str) -> None:
    """One pass over the file: the first empty value, over-long id or non-finite time, named by row."""
    user_col, item_col, time_col = cols
    checks = [(f"{_quote(c)} IS NULL", f"column '{c}' is empty") for c in cols if c]
    checks += [(f"length({_quote(c)}) > {MAX_ID_LENGTH}",
                f"column '{c}' holds an id longer than {MAX_ID_LENGTH} characters")
               for role, c in (("user", user_col), ("item", item_col)) if kinds[role] == "str"]
    if time_col:
        checks.append((f"NOT isfinite({t})", f"column '{time_col}' must be a finite number"))
    firsts = _run(
        con,
        "SELECT count(*), " + ", ".join(f"min(file_row_number) FILTER (WHERE {cond})" for cond, _ in checks)
        + f" FROM {src}"
    )[0]
    if firsts[0] == 0:
        raise DataError(f"{path}: no interactions (the table has no rows)")
    for (_, message), row in zip(checks, firsts[1:]):
        if row is not None:
            raise DataError(f"{path}, row {row}: {message}")


def _write_ids(path: Path, reader, first: list[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = 0
    with pq.ParquetWriter(path, ids_table(pa.array([], pa.string())).schema) as writer:
        if first:
            writer.write_table(ids_table(pa.array(first, pa.string())))
            start = len(first)
        for batch in reader:
            writer.write_table(ids_table(batch.column(0), start))
            start += batch.num_rows


def _user_batches(reader):
    """(first user, flat item indices, per-user offsets) for batches of whole users of the sorted stream."""
    users = items = np.zeros(0, dtype=np.int64)
    for batch in reader:
        users = np.concatenate([users, batch.column(0).to_numpy()])
        items = np.concatenate([items, batch.column(1).to_numpy()])
        cut = int(np.searchsorted(users, users[-1]))  # the last user may go on in the next batch
        if cut:
            yield _sequences(users[:cut], items[:cut])
            users, items = users[cut:], items[cut:]
    if len(users):
        yield _sequences(users, items)


def _sequences(users: np.ndarray, items: np.ndarray):
    first = int(users[0])
    counts = np.bincount(users - first)  # indices are dense: every user in between has rows
    return first, items.astype(np.int64), np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def _write_splits(out: Path, batches, max_len: int) -> dict[str, int]:
    """Stream each batch's leave-one-out instances into the three split files; instances per split."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    empty = np.zeros(0, dtype=np.int64)
    schema = instances_table(Instances(empty, empty, empty, np.zeros(1, dtype=np.int64), empty)).schema
    writers = {name: pq.ParquetWriter(out / f"{name}.parquet", schema) for name in SPLITS}
    pending = {name: [] for name in SPLITS}
    counts = dict.fromkeys(SPLITS, 0)

    def flush(name: str) -> None:
        if pending[name]:
            writers[name].write_table(pa.concat_tables(pending[name]), row_group_size=GROUP_ROWS)
            pending[name].clear()

    try:
        for first_user, seq_items, seq_offsets in batches:
            splits, _ = leave_one_out(seq_items, seq_offsets, max_len)
            for name in SPLITS:
                inst = splits[name]
                table = instances_table(
                    Instances(inst.user + first_user, inst.position, inst.target, inst.offsets, inst.values)
                )
                pending[name].append(table)
                counts[name] += table.num_rows
                if sum(t.num_rows for t in pending[name]) >= GROUP_ROWS:
                    flush(name)
        for name in SPLITS:
            flush(name)
    finally:
        for writer in writers.values():
            writer.close()
    return counts
