"""Per-folder fixtures for the data tests: write a tiny raw file into tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def write(tmp_path):
    """``write("x.csv", "a,b\\n1,2\\n")`` -> the path; bytes are written as they are."""

    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return _write


# One log in every text format: 3 users with string ids, 5 rows, timestamps out of file order for u2.
ROWS = [  # (user, item, timestamp)
    ("u1", "apple", 10),
    ("u2", "pear", 30),
    ("u1", "kiwi", 20),
    ("u2", "apple", 5),
    ("u3", "kiwi", 1),
]


@pytest.fixture
def rows():
    return list(ROWS)
