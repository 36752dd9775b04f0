"""A resumable Optuna study of ``raserec pretrain`` trials, each an MLflow run under one parent run.

The study folder holds everything: ``study.db`` (Optuna's SQLite storage), ``study.json`` (what is
searched: data, base config, overrides, space; a resumed study must search the same), ``trials/<n>``
(each trial's model folder) and ``trials/<n>.log``, ``mlflow.db`` (the default tracking store) and, at
the end, ``best.yaml``: the base config with the best values, which ``raserec pretrain --config`` takes.

``--trials N`` counts finished trials (complete or pruned) of the whole study, so re-running the same
command after a kill finishes the same study. A trial left RUNNING by a dead tuner is marked FAIL and
enqueued again with the same parameters and the same folder, where training resumes from its last
epoch checkpoint: no trial is lost, none is run twice. One tuner drives a study folder at a time (a
lock file says so).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config, flatten, load_config
from ..errors import StepError
from .space import Param, load_space, set_items
from .trial import COMPLETE, PRUNED, run_trial, trial_command

log = logging.getLogger("raserec.tune")

STUDY_NAME = "raserec"
TAG_TRIAL, TAG_STATE, TAG_RETRY_OF = "raserec.trial", "raserec.trial_state", "raserec.retry_of"


class TuneError(StepError):
    """A search cannot run as asked (another search in the folder, a failed trial, ...)."""


@dataclass(frozen=True)
class TuneRequest:
    data: str
    space: str  # the search-space YAML
    study_dir: Path
    config: str | None = None  # base config YAML
    overrides: tuple[str, ...] = ()  # base --set items
    trials: int = 20  # finished (complete or pruned) trials of the whole study
    timeout: float | None = None  # seconds after which no new trial starts
    pruner: str = "median"  # median | none
    warmup_epochs: int = 3  # epochs a trial runs before it may be pruned
    prune_patience: int = 3  # a trial below the median is pruned once its best epoch is more than this many epochs old
    tracking_uri: str | None = None  # default: sqlite:///<study_dir>/mlflow.db
    experiment: str = "raserec-tune"
    poll_s: float = 0.5


def base_config(req: TuneRequest) -> Config:
    return load_config(req.config, list(req.overrides))


def objective_metric(cfg: Config) -> str:
    return f"valid/{cfg.pretrain.valid_metric}"


@contextlib.contextmanager
def _study_lock(study_dir: Path) -> Iterator[None]:
    import fcntl

    with open(study_dir / "tune.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TuneError(f"{study_dir}: another 'raserec tune' is running on this study") from None
        yield


def _study_spec(req: TuneRequest, space: tuple[Param, ...], metric: str) -> dict[str, Any]:
    """What a resumed study must share with the one it continues (the trial count and timeout may change)."""
    return {
        "data": req.data,
        "config": str(Path(req.config).resolve()) if req.config else None,
        "config_text": Path(req.config).read_text() if req.config else None,
        "overrides": list(req.overrides),
        "space": {p.key: p.to_dict() for p in space},
        "metric": metric,
    }


def _load_or_write_spec(study_dir: Path, spec: dict[str, Any]) -> str:
    """The study's id (its MLflow parent-run key); a folder holding another search is an error."""
    from ..storage import atomic_write_text

    path = study_dir / "study.json"
    if path.exists():
        saved = json.loads(path.read_text())
        changed = sorted(k for k in spec if saved.get(k) != spec[k])
        if changed:
            raise TuneError(f"{study_dir}: holds another search (changed: {', '.join(changed)}); use another --study-dir")
        return saved["study_id"]
    study_id = f"tune-{uuid.uuid4().hex[:12]}"
    atomic_write_text(path, json.dumps({**spec, "study_id": study_id}, indent=2, sort_keys=True) + "\n")
    return study_id


def base_point(space: tuple[Param, ...], cfg: Config) -> dict[str, Any] | None:
    """The base config's values of the searched keys, or None when one lies outside the space."""
    values = flatten(cfg.to_dict())
    point = {p.key: values[p.key] for p in space}
    return point if all(p.contains(point[p.key]) for p in space) else None


def _finished(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def recover(study, mlflow_client=None) -> list[int]:
    """Mark the trials a dead tuner left RUNNING as FAIL, each enqueued again (same parameters, same
    folder). Enqueue first: a kill between the two steps leaves a RUNNING trial whose retry is already
    waiting, and the next recovery does not enqueue it twice. Returns the recovered trial numbers."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    waiting = {t.user_attrs.get("retry_of") for t in trials if t.state == TrialState.WAITING}
    recovered = []
    for t in trials:
        if t.state != TrialState.RUNNING:
            continue
        if t.number not in waiting:
            run_dir = t.user_attrs.get("run_dir", f"trials/{t.number}")
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number, "run_dir": run_dir})
        study.tell(t.number, state=TrialState.FAIL)
        run_id = t.user_attrs.get("mlflow_run_id")
        if mlflow_client is not None and run_id:
            mlflow_client.set_tag(run_id, TAG_STATE, "FAIL")
            mlflow_client.set_terminated(run_id, status="FAILED")
        log.warning("trial %d was left running by a stopped tuner: enqueued again, resuming in its folder", t.number)
        recovered.append(t.number)
    return recovered


def make_pruner(kind: str, warmup_epochs: int, patience: int):
    """Optuna's median rule, applied only to a trial whose validation value has stalled.

    The plain median rule prunes slow starters: on Beauty (benchmarks/RESULTS.md, "Tuning study") the
    default config and the best trial, both at a low learning rate, sat below the median at epoch 3 of
    curves that peak after epoch 20, under trials that rose fast and overfitted. So a trial is pruned
    only once its best value is more than ``patience`` epochs old (Optuna's PatientPruner): one still
    improving never is. ``patience`` 0 gives the plain rule.
    """
    import optuna

    if kind == "none":
        return optuna.pruners.NopPruner()
    median = optuna.pruners.MedianPruner(n_warmup_steps=warmup_epochs)
    if patience == 0:
        return median
    with warnings.catch_warnings():  # "experimental" since Optuna 2.8, unchanged since
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.pruners.PatientPruner(median, patience=patience)


def pruned_at(pruner, finished: list[list[float]], curve: list[float]) -> int | None:
    """The epoch at which ``pruner`` stops a trial with validation ``curve`` (one value an epoch) in an
    in-memory study whose other trials finished with the ``finished`` curves; None when it never does.
    Replays a pruning rule on recorded curves, asking Optuna as the tuner asks it."""
    import optuna

    study = optuna.create_study(direction="maximize", pruner=pruner)
    for other in finished:
        trial = study.ask()
        for epoch, value in enumerate(other, 1):
            trial.report(value, epoch)
        study.tell(trial, max(other))
    trial = study.ask()
    for epoch, value in enumerate(curve, 1):
        trial.report(value, epoch)
        if trial.should_prune():
            return epoch
    return None


def _open_study(req: TuneRequest, seed: int):
    import optuna

    pruner = make_pruner(req.pruner, req.warmup_epochs, req.prune_patience)
    storage = f"sqlite:///{(req.study_dir / 'study.db').resolve()}"
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage, direction="maximize", pruner=pruner,
                                load_if_exists=True)
    # Seeded by the study's length: a resumed study must not draw its first samples again.
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.get_trials(deepcopy=False)))
    return study


def write_best_config(req: TuneRequest, params: dict[str, Any], header: str) -> Path:
    """``best.yaml``: the base config with ``params`` merged, fully resolved."""
    from ..storage import atomic_write_text

    cfg = load_config(req.config, [*req.overrides, *set_items(params)])
    path = req.study_dir / "best.yaml"
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    atomic_write_text(path, comment + cfg.to_yaml())
    return path


def tune(req: TuneRequest) -> dict[str, Any]:
    """Run (or resume) the study until it has ``req.trials`` finished trials or ``req.timeout`` passes."""
    from ..tracking import runs
    from ..tracking.secrets import scrub
    from ..tracking.store import client, ensure_experiment

    space = load_space(req.space)
    cfg = base_config(req)
    metric = objective_metric(cfg)
    if any(p.key == "pretrain.valid_metric" for p in space):
        raise TuneError("the search space may not vary pretrain.valid_metric: it is what trials are compared on")
    req.study_dir.mkdir(parents=True, exist_ok=True)
    with _study_lock(req.study_dir):
        study_id = _load_or_write_spec(req.study_dir, _study_spec(req, space, metric))
        uri = req.tracking_uri or f"sqlite:///{(req.study_dir / 'mlflow.db').resolve()}"
        mlflow = client(uri)
        exp_id = ensure_experiment(mlflow, req.experiment)
        parent = runs.parent_run(
            mlflow, exp_id, study_id, params={"base": cfg.to_dict()},
            tags={"raserec.study_dir": str(req.study_dir.resolve()), "raserec.metric": metric,
                  "raserec.space": json.dumps({p.key: p.to_dict() for p in space})},
        )
        study = _open_study(req, cfg.seed)
        recover(study, mlflow)
        if not study.get_trials(deepcopy=False):
            # The base config is trial 0: the study's best is then never worse on validation than
            # what it started from, and the pruner's first reference is the known configuration.
            point = base_point(space, cfg)
            if point is None:
                log.info("the base config lies outside the search space: it is not a trial")
            else:
                study.enqueue_trial(point)
        distributions = {p.key: p.distribution() for p in space}
        started = time.monotonic()
        try:
            while _finished(study) < req.trials:
                if req.timeout is not None and time.monotonic() - started >= req.timeout:
                    log.info("timeout: no new trial after %.0f s", req.timeout)
                    break
                _run_one(req, study, distributions, metric, uri, study_id)
        except Exception:
            mlflow.set_terminated(parent, status="FAILED")
            raise
        finished = _finished(study) >= req.trials
        result = _result(req, study, metric, finished)
        result["mlflow"] = {"tracking_uri": scrub(uri), "experiment": req.experiment, "parent_run_id": parent}
        if finished:
            summaries = runs.step_runs(mlflow, exp_id, study_id).get("best", [])
            if not summaries or summaries[-1].data.tags.get(TAG_TRIAL) != str(result.get("best_trial")):
                _log_summary(req, uri, study_id, result)
            mlflow.set_terminated(parent, status="FINISHED")
        else:
            mlflow.set_terminated(parent, status="KILLED")  # stopped by the timeout; the same command resumes it
    return result


def _run_one(req: TuneRequest, study, distributions: dict, metric: str, uri: str, study_id: str) -> None:
    from optuna.trial import TrialState

    from ..tracking import runs

    trial = study.ask(distributions)
    params = dict(trial.params)
    run_dir = trial.user_attrs.get("run_dir", f"trials/{trial.number}")
    trial.set_user_attr("run_dir", run_dir)
    out = req.study_dir / run_dir
    tags = {TAG_TRIAL: trial.number, TAG_STATE: "RUNNING", "raserec.run_dir": str(out)}
    if "retry_of" in trial.user_attrs:
        tags[TAG_RETRY_OF] = trial.user_attrs["retry_of"]
    run = runs.start_step(uri, req.experiment, study_id, f"trial-{trial.number}", params=params, tags=tags)
    trial.set_user_attr("mlflow_run_id", run.run_id)
    argv = trial_command(req.data, str(out), req.config, [*req.overrides, *set_items(params)])
    log.info("trial %d: %s", trial.number, " ".join(set_items(params)))

    def report(epoch: int, value: float) -> bool:
        trial.report(value, epoch)
        run.log_metrics({metric: value}, step=epoch)
        return trial.should_prune()

    try:
        outcome = run_trial(argv, out, out.with_name(out.name + ".log"), metric, report, req.poll_s)
    except Exception:  # an interrupt (Ctrl-C) leaves the trial RUNNING: the next run resumes it, as after a kill
        study.tell(trial, state=TrialState.FAIL)
        run.set_tags({TAG_STATE: "FAIL"})
        run.end("FAILED")
        raise
    if outcome.state == COMPLETE:
        # Test metrics are recorded with the trial; only the validation value reaches the sampler.
        trial.set_user_attr("metrics", outcome.metrics)
        run.log_metrics(outcome.metrics)
        study.tell(trial, outcome.value)
        run.set_tags({TAG_STATE: "COMPLETE"})
        run.end("FINISHED")
    elif outcome.state == PRUNED:
        study.tell(trial, state=TrialState.PRUNED)
        run.set_tags({TAG_STATE: "PRUNED"})
        run.end("KILLED")
    else:
        study.tell(trial, state=TrialState.FAIL)
        run.set_tags({TAG_STATE: "FAIL"})
        run.end("FAILED")
        raise TuneError(f"trial {trial.number} failed (exit code {outcome.returncode}); see {out}.log")


def _result(req: TuneRequest, study, metric: str, finished: bool) -> dict[str, Any]:
    from optuna.trial import TrialState

    counts = {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,)))
              for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    result: dict[str, Any] = {"study_dir": str(req.study_dir), "metric": metric, "trials": counts,
                              "trials_requested": req.trials, "finished": finished}
    if counts["complete"] == 0:
        return result
    best = study.best_trial
    header = (f"raserec tune: best of {counts['complete']} complete trials in {req.study_dir}\n"
              f"trial {best.number}: {metric} = {best.value:.6f} (selected on validation)")
    result.update(
        best_trial=best.number, best_value=best.value, best_params=best.params,
        best_test_metrics={k: v for k, v in best.user_attrs.get("metrics", {}).items() if k.startswith("test/")},
        best_config=str(write_best_config(req, best.params, header)),
    )
    return result


def _log_summary(req: TuneRequest, uri: str, study_id: str, result: dict[str, Any]) -> None:
    """A "best" run beside the trials: the winning values, the best config file, the counts."""
    from ..tracking import runs

    if "best_trial" not in result:
        return
    run = runs.start_step(uri, req.experiment, study_id, "best", params=result["best_params"],
                          tags={TAG_TRIAL: result["best_trial"]})
    run.log_metrics({result["metric"]: result["best_value"], **result["best_test_metrics"]}, to_parent=True)
    run.log_metrics({f"trials_{k}": v for k, v in result["trials"].items()}, to_parent=True)
    run.log_artifact(result["best_config"])
    run.end("FINISHED")
