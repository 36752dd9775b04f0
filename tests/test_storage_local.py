"""Atomic local writes leave nothing of a killed writer behind for long: the next write of the same path
removes its temporaries, and never those of a live writer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from raserec_core.storage import atomic_dir, atomic_write_text
from raserec_core.storage.locks import remove_dead_temps, writer_is_dead, writer_tag

ROOT = Path(__file__).resolve().parent.parent


def _dead_tag() -> str:
    pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout
    return writer_tag().replace(f"{os.getpid()}@", f"{pid.strip()}@", 1)


def test_writer_tags():
    assert not writer_is_dead(f".ds.x.{writer_tag()}.tmp")  # this process
    assert writer_is_dead(f".ds.x.{_dead_tag()}.tmp")
    assert not writer_is_dead(".ds.x.1@another-host.tmp")  # another host's pid means nothing here
    assert not writer_is_dead(".ds.abc.tmp")  # no writer recorded: left alone


def test_a_killed_writers_temporary_folder_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "ds"
    script = (f"import sys, time; sys.path.insert(0, {str(ROOT)!r})\n"
              "from raserec_core.storage import atomic_dir\n"
              f"with atomic_dir({str(target)!r}) as tmp:\n"
              "    (tmp / 'half.bin').write_bytes(b'x' * 1000); print('ready', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".ds.") and left[0].endswith(f"{proc.pid}@{writer_tag().split('@')[1]}.tmp")

    live = tmp_path / f".ds.inflight.{writer_tag()}.tmp"  # a live writer's (this process): kept
    live.mkdir()
    other = tmp_path / ".other.x.1@h.tmp"  # another path's temporaries: not this write's business
    other.mkdir()
    with atomic_dir(target) as tmp:
        (tmp / "done.txt").write_text("ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ds", live.name, other.name])
    assert (target / "done.txt").read_text() == "ok"


def test_dead_temporary_files_are_removed_by_the_next_atomic_file_write(tmp_path):
    dead = tmp_path / f".stats.json.abc123.{_dead_tag()}.tmp"
    dead.write_text("half")
    atomic_write_text(tmp_path / "stats.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats.json"]
    assert remove_dead_temps(tmp_path / "missing", "x") == []
