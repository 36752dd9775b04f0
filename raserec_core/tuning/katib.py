"""The search of ``raserec tune`` as a Katib Experiment (kubeflow.org/v1beta1), for clusters.

Generated from the same space file as the local study, so the search space lives in one place. Each
Katib trial is a Job running the local trial's command (``trial.trial_command``) in the project's image;
the base config travels as ``--set`` items (the keys that differ from the defaults), the trial's values
as ``--set key=${trialParameters.<name>}``.

Metrics: Katib's StdOut collector, because the trial command already prints what Katib needs there: the
training loop logs ``valid/<metric> <value>`` after every epoch and ``raserec pretrain`` ends with its
metrics JSON (``"valid/<metric>": <value>``); one regular expression reads both. The per-epoch values
are what medianstop early stopping compares (Katib stops early only with the StdOut or File collector);
the File collector would need a line-per-metric file the trial does not write (``history.json`` is one
JSON array, rewritten every epoch). Katib's TPE (hyperopt) mirrors Optuna's default sampler.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from ..config import Config, flatten, load_config
from .space import Param, load_space, scalar_text
from .trial import trial_command

OUTPUT_ROOT = "s3://raserec/katib"  # the raserec bucket of manifests/base/minio.yaml
CONTAINER = "training-container"
# Group 1 the metric name, group 2 its value: matches the epoch log line and the final metrics JSON.
METRICS_FORMAT = r'"?((?:valid|test)/[a-z]+@[0-9]+)"?:?\s+([-+]?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)'


def parameter_name(key: str) -> str:
    """Katib's name for a config key: ``pretrain.lr`` -> ``pretrain-lr``."""
    return key.replace(".", "-")


def base_items(cfg: Config) -> list[str]:
    """The ``--set`` items that rebuild ``cfg`` from the defaults (a trial pod has no config file)."""
    default, wanted = flatten(Config().to_dict()), flatten(cfg.to_dict())
    return [f"{k}={scalar_text(v)}" for k, v in sorted(wanted.items()) if default.get(k) != v]


def katib_parameter(p: Param) -> dict[str, Any]:
    if p.type == "categorical":
        return {"name": parameter_name(p.key), "parameterType": "categorical",
                "feasibleSpace": {"list": [scalar_text(c) for c in p.choices]}}
    space = {"min": scalar_text(p.low), "max": scalar_text(p.high)}
    if p.step is not None:
        space["step"] = scalar_text(p.step)
    if p.log:
        space["distribution"] = "logUniform"
    return {"name": parameter_name(p.key), "parameterType": "double" if p.type == "float" else "int",
            "feasibleSpace": space}


def experiment(
    data: str, space: Sequence[Param], cfg: Config, *, trials: int, warmup_epochs: int, image: str,
    name: str = "raserec-tune", parallel: int = 2,
) -> dict[str, Any]:
    metric = f"valid/{cfg.pretrain.valid_metric}"
    test_metric = f"test/{cfg.pretrain.valid_metric}"  # recorded, never selected on
    items = [*base_items(cfg), *(f"{p.key}=${{trialParameters.{parameter_name(p.key)}}}" for p in space)]
    command = ["raserec", *trial_command(data, f"{OUTPUT_ROOT}/{name}/${{trialSpec.Name}}", None, items)]
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": {"sidecar.istio.io/inject": "false"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": CONTAINER,
                        "image": image,
                        "command": command,
                        "envFrom": [{"secretRef": {"name": "raserec-object-store"}},
                                    {"configMapRef": {"name": "raserec-config"}}],
                        "resources": {"requests": {"cpu": "2", "memory": "4Gi"}},
                    }],
                },
            },
        },
    }
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": name},
        "spec": {
            "objective": {
                "type": "maximize",
                "objectiveMetricName": metric,
                "additionalMetricNames": [test_metric],
                # The best epoch's value, as the local study takes from metrics.json.
                "metricStrategies": [{"name": metric, "value": "max"}, {"name": test_metric, "value": "latest"}],
            },
            "algorithm": {"algorithmName": "tpe", "algorithmSettings": [{"name": "random_state", "value": str(cfg.seed)}]},
            "earlyStopping": {"algorithmName": "medianstop", "algorithmSettings": [
                {"name": "min_trials_required", "value": "3"},
                {"name": "start_step", "value": str(max(1, warmup_epochs))},
            ]},
            "maxTrialCount": trials,
            "parallelTrialCount": parallel,
            "maxFailedTrialCount": 3,
            "metricsCollectorSpec": {
                "collector": {"kind": "StdOut"},
                "source": {"filter": {"metricsFormat": [METRICS_FORMAT]}},
            },
            "parameters": [katib_parameter(p) for p in space],
            "trialTemplate": {
                "primaryContainerName": CONTAINER,
                "trialParameters": [
                    {"name": parameter_name(p.key), "reference": parameter_name(p.key), "description": p.key}
                    for p in space
                ],
                "trialSpec": job,
            },
        },
    }


def experiment_yaml(
    data: str, space_path: str, config: str | None, overrides: Sequence[str], *, trials: int, warmup_epochs: int,
    image: str, space_label: str,
) -> str:
    """The manifest text, headed by the command that wrote it (re-run it after changing the space)."""
    cfg = load_config(config, list(overrides))
    doc = experiment(data, load_space(space_path), cfg, trials=trials, warmup_epochs=warmup_epochs, image=image)
    flags = [f"--data {data}", f"--space {space_label}", *([f"--config {config}"] if config else []),
             *(f"--set {o}" for o in overrides), f"--trials {trials}", f"--warmup-epochs {warmup_epochs}"]
    header = (
        "# Generated by: raserec tune " + " ".join(flags) + " --katib-manifest <this file>\n"
        "# Do not edit: change the space file and generate it again (tests/tuning check it is up to date).\n"
        "# The same search and trial command as the local study. Metrics: StdOut collector (the epoch log lines and the\n"
        "# final metrics JSON; medianstop needs StdOut or File). Why, in raserec_core/tuning/katib.py.\n"
    )
    return header + yaml.safe_dump(doc, sort_keys=False, width=120)
