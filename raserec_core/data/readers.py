"""Readers for interaction data.

Two shapes of input arrive here and leave as one: an interaction table of raw ids and an order key.
- sequence files (``user item item ...`` per line, items in time order; the S3-Rec/DuoRec format);
- interaction tables: CSV, TSV, Parquet and RecBole atomic ``.inter`` files (``user_id:token`` headers),
  with user, item and timestamp columns chosen by name. Ids may be strings.

Ids are held as numpy object arrays of ``str``: memory grows with the text of the ids, not with the
number of rows times the longest id (a fixed-width numpy string array pads every row to the longest).
An id longer than ``MAX_ID_LENGTH`` characters is refused, naming its file and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError

MAX_ID_LENGTH = 1024  # characters; longer user or item ids are an input error, not data

FORMAT_BY_SUFFIX = {
    ".txt": "seq",
    ".seq": "seq",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".inter": "inter",
}


@dataclass(frozen=True)
class Interactions:
    """One row per interaction. ``time`` orders a user's rows; ties keep file order."""

    user: np.ndarray  # (N,) object array of str raw ids
    item: np.ndarray  # (N,) object array of str raw ids
    time: np.ndarray  # (N,) float64

    def __len__(self) -> int:
        return len(self.user)


def detect_format(path: Path, fmt: str = "auto") -> str:
    if fmt != "auto":
        return fmt
    try:
        return FORMAT_BY_SUFFIX[path.suffix.lower()]
    except KeyError:
        raise DataError(
            f"{path}: cannot tell the format from the suffix '{path.suffix}'; "
            f"pass --format (one of seq, csv, tsv, parquet, inter)"
        ) from None


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None
    # A UTF-8 byte-order mark (spreadsheet exports) would otherwise become part of the first column's
    # name or the first user id; it holds no data.
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: not valid UTF-8 text (byte {raw[exc.start]:#04x})") from None


def read_sequences(path: Path) -> Interactions:
    """``user item item ...`` per line; the order of items on a line is their time order."""
    text = _read_text(path)
    users: list[str] = []
    items: list[str] = []
    counts: list[int] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise DataError(f"{path}, line {lineno}: expected 'user item [item ...]', got {line.strip()!r}")
        if len(line) > MAX_ID_LENGTH:  # only a long line can hold a long id: one check per line otherwise
            _check_id_lengths(path, f"line {lineno}", parts)
        users.append(parts[0])
        items.extend(parts[1:])
        counts.append(len(parts) - 1)
    if not users:
        raise DataError(f"{path}: no interactions (the file is empty)")
    counts_arr = np.asarray(counts)
    user = np.repeat(np.asarray(users, dtype=object), counts_arr)
    starts = np.repeat(np.cumsum(counts_arr) - counts_arr, counts_arr)
    time = (np.arange(len(items)) - starts).astype(np.float64)
    return Interactions(user=user, item=np.asarray(items, dtype=object), time=time)


def _check_id_lengths(path: Path, where: str, ids) -> None:
    for raw in ids:
        if len(raw) > MAX_ID_LENGTH:
            raise DataError(
                f"{path}, {where}: an id of {len(raw)} characters ({raw[:20]!r}...); ids may have at most "
                f"{MAX_ID_LENGTH} characters"
            )


def _strip_type(name: str) -> str:
    # RecBole atomic files name columns 'field:type' (user_id:token, timestamp:float).
    return name.split(":", 1)[0]


def _table_from_text(path: Path, delimiter: str, strip_types: bool):
    """The table and, for each data row, its 1-based line in the file (for error messages)."""
    import csv

    import pyarrow as pa
    import pyarrow.csv as pacsv

    text = _read_text(path)
    if not text.strip():
        raise DataError(f"{path}: no interactions (the file is empty)")
    lines = text.splitlines()
    reader = csv.reader(lines, delimiter=delimiter)
    header = next(reader)
    names = [_strip_type(h.strip()) if strip_types else h.strip() for h in header]
    _check_unique_columns(path, names, "line 1: ")
    width = len(header)
    row_lines = []
    try:
        start = reader.line_num + 1  # the line the next record starts on
        for fields in reader:
            if reader.line_num > start or (fields and len(fields) != width):
                # A record over several lines, or a short one ending inside quotes: a quote left open
                # on the line the record starts on (quotes come in pairs, escaped ones too).
                if lines[start - 1].count('"') % 2:
                    raise DataError(
                        f"{path}, line {start}: a quote opened on this line is not closed on it (values cannot span lines)"
                    )
            if fields and len(fields) != width:
                raise DataError(
                    f"{path}, line {start}: expected {width} fields separated by {delimiter!r}, got {len(fields)}"
                )
            if fields:  # blank lines carry no row (pyarrow skips them too)
                row_lines.append(start)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{path}, line {start}: malformed {delimiter!r}-separated line ({exc})") from None
    try:
        table = pacsv.read_csv(
            pa.py_buffer(text.encode("utf-8")),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=True, null_values=[""]
            ),
        )
    except pa.ArrowInvalid as exc:
        raise DataError(f"{path}: malformed {delimiter!r}-separated file ({exc})") from None
    return table, np.asarray(row_lines, dtype=np.int64)


def _check_unique_columns(path: Path, names: list[str], where: str = "") -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"{path}, {where}column '{name}' appears more than once in the header" if where
                            else f"{path}: column '{name}' appears more than once")
        seen.add(name)


def _where(row: int, row_lines: np.ndarray | None) -> str:
    return f"line {int(row_lines[row])}" if row_lines is not None else f"row {row}"


def _column(path: Path, table, name: str, role: str, row_lines: np.ndarray | None):
    """The column ``name`` (an Arrow chunked array) with no empty value."""
    if name not in table.column_names:
        raise DataError(
            f"{path}: no {role} column named '{name}' (columns: {', '.join(table.column_names)}); "
            f"set data.{role}_col"
        )
    col = table.column(name)
    if col.null_count:
        import pyarrow.compute as pc

        row = int(pc.index(pc.is_null(col), True).as_py())
        raise DataError(f"{path}, {_where(row, row_lines)}: column '{name}' is empty")
    return col


def _id_column(path: Path, table, name: str, role: str, row_lines: np.ndarray | None) -> np.ndarray:
    """Raw ids as an object array of str; a non-string column (integer ids) is formatted as numpy does."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = _column(path, table, name, role, row_lines)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        return np.asarray(col.to_pylist(), dtype=object).astype(str).astype(object)  # short: numbers
    lengths = pc.utf8_length(col)
    if len(col) and pc.max(lengths).as_py() > MAX_ID_LENGTH:
        row = int(pc.index(pc.greater(lengths, MAX_ID_LENGTH), True).as_py())
        _check_id_lengths(path, f"{_where(row, row_lines)}, column '{name}'", [col[row].as_py()])
    return col.to_numpy()  # object array of str


def read_table(
    path: Path, fmt: str, user_col: str, item_col: str, time_col: str
) -> Interactions:
    """CSV / TSV / Parquet / RecBole .inter with the named columns; ``time_col=''`` keeps file order."""
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not path.exists():
            raise DataError(f"{path}: file not found")
        try:
            _check_unique_columns(path, pq.read_schema(path).names)  # read_table fails on duplicates
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
        row_lines = None
    else:
        delimiter = "," if fmt == "csv" else "\t"
        table, row_lines = _table_from_text(path, delimiter, strip_types=(fmt == "inter"))
    if table.num_rows == 0:
        raise DataError(f"{path}: no interactions (the table has no rows)")
    user = _id_column(path, table, user_col, "user", row_lines)
    item = _id_column(path, table, item_col, "item", row_lines)
    if time_col:
        raw_time = np.asarray(_column(path, table, time_col, "time", row_lines).to_pylist(), dtype=object)
        try:
            time = raw_time.astype(np.float64)
        except (TypeError, ValueError):
            bad = next(i for i, v in enumerate(raw_time) if not _is_number(v))
            raise DataError(
                f"{path}, {_where(bad, row_lines)}: column '{time_col}' must be numeric, got {raw_time[bad]!r}"
            ) from None
        if not np.isfinite(time).all():
            bad = int(np.flatnonzero(~np.isfinite(time))[0])
            raise DataError(f"{path}, {_where(bad, row_lines)}: column '{time_col}' must be a finite number")
    else:
        time = np.zeros(len(user), dtype=np.float64)
    return Interactions(user=user, item=item, time=time)


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def read_interactions(
    path: str | Path, fmt: str = "auto", user_col: str = "user_id", item_col: str = "item_id",
    time_col: str = "timestamp",
) -> Interactions:
    path = Path(path)
    fmt = detect_format(path, fmt)
    if fmt == "seq":
        return read_sequences(path)
    if fmt in {"csv", "tsv", "parquet", "inter"}:
        return read_table(path, fmt, user_col, item_col, time_col)
    raise DataError(f"{path}: unknown format '{fmt}'")
