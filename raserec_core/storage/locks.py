"""Coordination between processes of one machine: an exclusive file lock, and who wrote a temporary file.

Temporary names that a crash can leave behind (local ``.<name>.*.tmp`` files and folders, S3 staging
keys) end with their writer, ``<pid>@<host>``, so that the next write beside them can tell a dead
writer's leftovers from a live writer's work in progress. A writer on another host is always taken as alive: its pid means nothing here.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:63] or "host"
_WRITER = re.compile(r"(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]+)$")  # ends a temporary name (before ".tmp")


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the block.

    The lock is released by the kernel when its holder dies, so a killed process never blocks the next.
    Not re-entrant: a process must not take the same lock twice.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:  # "a": never truncates a file another process holds
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def path_lock(path: str | Path):
    """``file_lock`` on a lock file in the temp folder named by ``path``'s hash: locks a folder without
    writing beside it (one machine's processes with the same ``TMPDIR``)."""
    digest = hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:16]
    return file_lock(Path(tempfile.gettempdir()) / "raserec-locks" / f"path-{digest}.lock")


def writer_tag() -> str:
    """``<pid>@<host>`` of this process, to end temporary names with."""
    return f"{os.getpid()}@{_HOST}"


def writer_is_dead(name: str) -> bool:
    """True only when ``name`` ends with (``writer_tag`` + an optional ``.tmp``) a writer of this host
    whose process no longer exists."""
    match = _WRITER.search(name.removesuffix(".tmp"))
    if match is None or match["host"] != _HOST:
        return False
    try:
        os.kill(int(match["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    return False


def remove_dead_temps(folder: str | Path, name: str) -> list[Path]:
    """Remove the hidden temporaries of ``name`` in ``folder`` (``.<name>.*``) that a dead writer of this
    host left (a killed atomic write); returns what was removed."""
    folder = Path(folder)
    removed = []
    for entry in folder.glob(f".{glob.escape(name)}.*") if folder.is_dir() else ():
        if writer_is_dead(entry.name):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed
