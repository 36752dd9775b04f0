"""``raserec run`` preloads mimalloc into the processes it starts, unless the user chose an LD_PRELOAD."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from raserec_core.cli import allocator
from raserec_core.cli.allocator import PRELOAD, mimalloc_for_children, mimalloc_library
from raserec_core.tracking.runs import process_allocator

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD is Linux's")
CHILD_ALLOCATOR = [sys.executable, "-c", "from raserec_core.tracking.runs import process_allocator; print(process_allocator())"]


@linux
def test_the_all_extra_installs_mimalloc():
    assert mimalloc_library() is not None, "pip install -e '.[all]' should have installed cmeel-mimalloc"


@linux
def test_children_started_in_the_block_run_on_mimalloc_and_the_environment_is_restored():
    env = {k: v for k, v in os.environ.items() if k != PRELOAD}
    with mimalloc_for_children(env) as library:
        assert library == str(mimalloc_library()) and env[PRELOAD] == library
        inside = subprocess.run(CHILD_ALLOCATOR, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert PRELOAD not in env
    outside = subprocess.run(CHILD_ALLOCATOR, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert (inside, outside) == ("mimalloc", "system")


@pytest.mark.parametrize("users", ["/opt/other/libjemalloc.so", ""])
def test_a_users_own_preload_wins_even_an_empty_one(users):
    env = {PRELOAD: users}
    with mimalloc_for_children(env) as library:
        assert library is None and env == {PRELOAD: users}
    assert env == {PRELOAD: users}


def test_without_mimalloc_nothing_is_preloaded(monkeypatch, caplog):
    monkeypatch.setattr(allocator, "mimalloc_library", lambda: None)
    env: dict[str, str] = {}
    with caplog.at_level("WARNING", logger="raserec.cli"), mimalloc_for_children(env) as library:
        assert library is None and env == {}
    if sys.platform.startswith("linux"):
        assert "mimalloc is not installed" in caplog.text


def test_the_environment_is_restored_when_the_block_fails():
    env: dict[str, str] = {}
    with pytest.raises(RuntimeError), mimalloc_for_children(env):
        raise RuntimeError("a step failed")
    assert env == {}


def test_this_process_reports_its_allocator():
    expected = "mimalloc" if "libmimalloc" in os.environ.get(PRELOAD, "") else "system"
    assert process_allocator() == expected
