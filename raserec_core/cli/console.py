"""What ``raserec run`` shows: our progress while it runs, the results when it ends.

kfp's local runner prints everything its task subprocesses write (among it each task's executor input
as a JSON dump) and its own log records. Without ``-v`` the console keeps, on stderr, a line per step
(started, served from the cache, finished with its time), our own log lines (loggers ``raserec.*``) and
the epochs, as a progress bar per training step on a terminal and as lines elsewhere; the rest is
kept per task and printed only if that task fails. With ``-v`` everything passes through to stderr.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_START = re.compile(r"Executing task '([\w-]+)'")
_CACHED = re.compile(r"Task '?([\w-]+)'? cache hit")
_END = re.compile(r"Task '([\w-]+)' finished with status (\w+)")
# A log line of a step (components/runtime.py's format): "<date> <time> <logger> <LEVEL> <message>".
_OURS = re.compile(r"^\s*\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (raserec[\w.]*) (INFO|WARNING|ERROR|CRITICAL) (.*)$")
_EPOCH = re.compile(r"^epoch (\d+)\s")
_CHATTY = ("mlflow", "alembic")  # their INFO records in this process (store creation, migrations)
_MLFLOW_LEVEL = "MLFLOW_LOGGING_LEVEL"


class RunConsole(io.TextIOBase):
    """Stands in for ``sys.stdout`` while kfp runs the pipeline; see the module docstring.

    ``epochs``: step -> its number of epochs (the progress bar's length).
    """

    def __init__(self, steps: tuple[str, ...], epochs: Mapping[str, int], out: TextIO | None = None,
                 verbose: bool = False):
        self.steps, self.epochs = steps, dict(epochs)
        self.out = out or sys.stderr
        self.verbose = verbose
        self.bars = self.out.isatty()
        self._partial = ""
        self._task = ""
        self._started = 0.0
        self._log: list[str] = []
        self._bar: Any = None

    # --- the stream kfp prints to -------------------------------------------------------------

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self.verbose:
            self.out.write(text)
            return len(text)
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self.line(line)
        return len(text)

    def flush(self) -> None:
        self.out.flush()

    # --- what it shows ------------------------------------------------------------------------

    def line(self, raw: str) -> None:
        """One line of kfp's output: a task event, one of our log lines, or chatter kept for a failure."""
        text = _ANSI.sub("", raw)
        if m := _START.search(text):
            self._begin(m.group(1))
        elif m := _CACHED.search(text):
            self._show(f"{self._number(m.group(1))} {m.group(1)}: from the cache")
        elif m := _END.search(text):
            self._finish(m.group(1), m.group(2))
        elif m := _OURS.match(text):
            self._log.append(text)
            self._ours(m.group(1), m.group(2), m.group(3))
        else:
            self._log.append(text)

    def kfp_record(self, record: logging.LogRecord) -> None:
        """A record of kfp's own logger (the root logger, outside a task): cache hits, warnings."""
        self.line(record.getMessage())

    def _number(self, step: str) -> str:
        return f"[{self.steps.index(step) + 1}/{len(self.steps)}]" if step in self.steps else "[?]"

    def _begin(self, step: str) -> None:
        self._task, self._started, self._log = step, time.perf_counter(), []
        self._show(f"{self._number(step)} {step} ...")

    def _ours(self, logger: str, level: str, message: str) -> None:
        epoch = _EPOCH.match(message) if logger == "raserec.train" else None
        total = self.epochs.get(self._task, 0)
        if epoch and self.bars:
            self._progress(int(epoch.group(1)), total, message)
            return
        if epoch and total:
            message = f"epoch {epoch.group(1)}/{total}{message[epoch.end() - 1:]}"
        prefix = "" if level == "INFO" else f"{level}: "
        self._show(f"      {prefix}{message}")

    def _progress(self, epoch: int, total: int, message: str) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total or None, desc=f"      {self._task}", unit="epoch", file=self.out,
                             leave=False)
        self._bar.set_postfix_str(message.split("  ", 1)[-1], refresh=False)
        self._bar.update(epoch - self._bar.n)

    def _finish(self, step: str, status: str) -> None:
        self._close_bar()
        seconds = time.perf_counter() - self._started if step == self._task else 0.0
        if status == "SUCCESS":
            self._show(f"{self._number(step)} {step}: done in {_duration(seconds)}")
            return
        self._show(f"{self._number(step)} {step}: {status} after {_duration(seconds)}; its log:")
        for text in self._log:
            self._show(f"    {text}")

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _show(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.out)
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def close(self) -> None:
        self._close_bar()
        super().close()


class _ToConsole(logging.Handler):
    def __init__(self, console: RunConsole):
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("raserec"):
            prefix = "" if record.levelno <= logging.INFO else f"{record.levelname}: "
            self.console._show(f"      {prefix}{record.getMessage()}")
        else:
            self.console.kfp_record(record)


def route_logs(console: RunConsole) -> Callable[[], None]:
    """Send the root logger's records (kfp's outside its tasks, ours) and Python's warnings (kfp warns that
    the local runner ignores resources) to ``console``, and keep MLflow's INFO records (store creation,
    migrations) out, here and in the step processes; returns the undo."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers = [_ToConsole(console)]
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    quiet = {name: logging.getLogger(name).level for name in _CHATTY}  # they log through handlers of their own
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
    mlflow_level = os.environ.get(_MLFLOW_LEVEL)
    os.environ.setdefault(_MLFLOW_LEVEL, "WARNING")  # MLflow sets its level from it when imported

    def restore() -> None:
        root.handlers = handlers
        root.setLevel(level)
        logging.captureWarnings(False)
        for name, previous in quiet.items():
            logging.getLogger(name).setLevel(previous)
        if mlflow_level is None:
            os.environ.pop(_MLFLOW_LEVEL, None)

    return restore


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def summary(result: Mapping[str, Any]) -> str:
    """The end of ``raserec run``: test metrics, the registered version and alias, where to look."""
    lines = []
    metrics = result.get("test_metrics") or {}
    if metrics:
        lines.append("test metrics:")
        width = max(len(k) for k in metrics)
        lines += [f"  {k:<{width}}  {v:.4f}" for k, v in sorted(metrics.items(), key=lambda kv: _metric_order(kv[0]))]
    reg = result.get("registration") or {}
    if reg:
        lines.append(f"registered: {reg.get('name', '')} version {reg.get('version', '')} as "
                     f"@{reg.get('alias', '')} ({reg.get('reason', '')})")
    lines.append(f"MLflow: {result.get('mlflow_tracking_uri', '')}  experiment {result.get('mlflow_experiment', '')}  "
                 f"run {result.get('mlflow_run_id', '')}")
    lines.append(f"artifacts: {result.get('artifacts', '')}")
    return "\n".join(lines) + "\n"


def _metric_order(name: str) -> tuple[str, int]:
    """``test/hr@5`` < ``test/hr@10``: by metric, then by cut-off as a number."""
    metric, _, k = name.partition("@")
    return metric, int(k) if k.isdigit() else 0
