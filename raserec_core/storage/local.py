"""Atomic local writes: a reader sees the old state or the complete new one, never a partial artifact.

Temporary names end with their writer (``storage.locks.writer_tag``): the next write of the same path
removes what a killed writer of this host left beside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .locks import remove_dead_temps, writer_tag


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temps(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".{writer_tag()}.tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def read_json(path: str | Path, error: type[Exception]) -> Any:
    """The JSON document at ``path``. A missing, unreadable, truncated or invalid file raises ``error``
    (the caller's error class) naming the file, instead of a traceback that names none."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot be read ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg}); the file is truncated or corrupt") from None


def may_replace(path: str | Path, is_own: Callable[[Path], bool], what: str, overwrite: bool = False) -> bool:
    """Whether writing ``what`` (e.g. "a dataset folder") to ``path`` replaces a folder there; pass the
    answer to ``atomic_dir(path, replace=...)``. Outputs never delete what they did not write: a non-empty
    folder is replaced only when ``is_own(path)`` recognises an artifact of the same kind, or with
    ``overwrite``; anything else is a ``FileExistsError`` and is left untouched."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path}: already exists and is a file, not {what}; use another --output")
    if not path.exists() or not any(path.iterdir()):
        return False
    if overwrite or is_own(path):
        return True
    raise FileExistsError(
        f"{path}: already exists and is not empty, and is not {what} (nothing was changed); "
        f"use another --output or pass --overwrite to replace it"
    )


@contextlib.contextmanager
def atomic_dir(path: str | Path, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it is renamed to ``path``, on error removed.

    With ``replace=False`` an existing non-empty ``path`` is an error (``FileExistsError``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and any(path.iterdir()) and not replace:
        raise FileExistsError(f"{path}: already exists and is not empty")
    remove_dead_temps(path.parent, path.name)  # what a killed writer of this host left
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=f".{writer_tag()}.tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{writer_tag()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
