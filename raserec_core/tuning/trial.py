"""One trial: the ``raserec pretrain`` command a cluster runs, in a subprocess, watched epoch by epoch.

The training loop rewrites ``history.json`` (atomically) after every epoch; the runner polls it, hands
each new epoch's validation value to ``report`` and stops the process when ``report`` says to prune.
``metrics.json`` appears only when the run has finished; the trial's value is read from it. A trial
folder left by a killed trial resumes from its last epoch checkpoint when the same command runs again.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("raserec.tune")

COMPLETE, PRUNED, FAILED = "complete", "pruned", "failed"


def trial_command(data: str, output: str, config: str | None, overrides: Sequence[str]) -> list[str]:
    """The arguments after ``raserec`` of one trial: the same for a local study and a Katib trial."""
    argv = ["pretrain", "--data", data, "--output", output]
    if config:
        argv += ["--config", config]
    for item in overrides:
        argv += ["--set", item]
    return argv


@dataclass
class TrialOutcome:
    state: str  # complete | pruned | failed
    value: float | None = None  # the objective: the final validation metric (complete trials)
    metrics: dict[str, float] = field(default_factory=dict)  # metrics.json: valid/* and test/*
    epochs: int = 0  # epochs seen in history.json
    returncode: int | None = None


def read_history(out_dir: Path) -> list[dict]:
    path = out_dir / "history.json"
    return json.loads(path.read_text()) if path.exists() else []


def _die_with_parent() -> None:
    """Ask Linux to kill the trial if the tuner dies: a killed tuner must not leave a trial training on
    in a folder that its resumed study trains again. Elsewhere there is no such call; nothing is done."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the tuner died before the call
        os._exit(1)


def _stop(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_trial(
    argv: Sequence[str], out_dir: Path, log_path: Path, metric: str, report: Callable[[int, float], bool],
    poll_s: float = 0.5,
) -> TrialOutcome:
    """Run ``raserec <argv>`` (this interpreter, this package) writing to ``out_dir``; its output goes to
    ``log_path`` (appended: a resumed trial keeps the killed attempt's log). ``report(epoch, value)``
    receives every epoch's ``metric`` once and returns True to prune."""
    cmd = [sys.executable, "-m", "raserec_core.cli.main", *argv]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    seen = 0
    with open(log_path, "ab") as sink:
        sink.write(f"$ raserec {' '.join(argv)}\n".encode())
        sink.flush()
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=_die_with_parent)
        try:
            while True:
                rc = proc.poll()  # before reading: a finished process has written its last epoch
                history = read_history(out_dir)
                for record in history[seen:]:
                    seen += 1
                    if report(int(record["epoch"]), float(record[metric])):
                        log.info("pruning %s after epoch %d", out_dir, record["epoch"])
                        _stop(proc)
                        return TrialOutcome(PRUNED, epochs=seen, returncode=proc.returncode)
                if rc is not None:
                    break
                time.sleep(poll_s)
        except BaseException:
            _stop(proc)
            raise
    metrics_path = out_dir / "metrics.json"
    if rc != 0 or not metrics_path.exists():
        return TrialOutcome(FAILED, epochs=seen, returncode=rc)
    metrics = json.loads(metrics_path.read_text())
    return TrialOutcome(COMPLETE, value=float(metrics[metric]), metrics=metrics, epochs=seen, returncode=rc)
