"""Coordination between processes of one machine: an exclusive file lock, and who wrote a temporary file.

Temporary names that a crash can leave behind (local ``.<name>.*.tmp`` folders, S3 staging keys) carry
their writer as ``<pid>@<host>`` so that the next start can tell a dead writer's leftovers from a live
writer's work in progress. A writer on another host is always taken as alive: its pid means nothing here.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:63] or "host"
_WRITER = re.compile(r"(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]+)")


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


def writer_tag() -> str:
    """``<pid>@<host>`` of this process, for temporary names."""
    return f"{os.getpid()}@{_HOST}"


def writer_is_dead(name: str) -> bool:
    """True only when ``name`` carries a writer tag of this host whose process no longer exists."""
    match = _WRITER.search(name)
    if match is None or match["host"] != _HOST:
        return False
    try:
        os.kill(int(match["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    return False
