"""The pipeline on a cluster: the image, GPUs, node selectors, tolerations and the checkpoint volume of
``raserec pipeline compile|submit`` reach the training steps' pods when asked and not otherwise; with a
Kubeflow Trainer job they reach the job's settings instead."""

from __future__ import annotations

import json

import pytest
import yaml

from components.image import IMAGE
from components.trainjob import TRAINJOB_ENV, JobSettings, Toleration
from pipelines.cluster import ClusterOptions, parse_node_selector, parse_toleration
from raserec_core.cli.main import main

TRAINING = ("pretrain", "finetune")
STEPS = ("preprocess", "pretrain", "index", "finetune", "evaluate", "register")
GPU_NODES = ["--gpus", "2", "--node-selector", "cloud.google.com/gke-accelerator=nvidia-h100",
             "--toleration", "nvidia.com/gpu:NoSchedule", "--toleration", "team=recsys:NoExecute",
             "--checkpoint-pvc", "raserec-checkpoints", "--image", "registry.example/raserec:0.1.0"]


def compile_with(tmp_path, *flags: str) -> tuple[dict, dict]:
    """step -> its container spec, step -> its kubernetes platform spec (empty if none)."""
    out = tmp_path / "p.yaml"
    assert main(["pipeline", "compile", "--output", str(out), *flags]) == 0
    spec, platform = list(yaml.safe_load_all(out.read_text()))
    containers = {s: spec["deploymentSpec"]["executors"][f"exec-{s}"]["container"] for s in STEPS}
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    return containers, {s: k8s.get(f"exec-{s}", {}) for s in STEPS}


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def test_by_default_no_step_asks_for_gpus_placement_or_a_volume(tmp_path):
    containers, k8s = compile_with(tmp_path)
    for step in STEPS:
        assert containers[step]["image"] == IMAGE
        assert "accelerator" not in containers[step]["resources"]
        assert not {"nodeSelector", "tolerations", "pvcMount"} & set(k8s[step]), step
        assert TRAINJOB_ENV not in env_of(containers[step])


def test_gpus_placement_and_the_volume_reach_the_training_steps_only(tmp_path):
    containers, k8s = compile_with(tmp_path, *GPU_NODES)
    for step in STEPS:
        assert containers[step]["image"] == "registry.example/raserec:0.1.0"  # every step: one image
    for step in TRAINING:
        assert containers[step]["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
        assert containers[step]["resources"]["accelerator"]["resourceCount"] == "2"
        assert k8s[step]["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-h100"}
        assert k8s[step]["tolerations"] == [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "team", "operator": "Equal", "value": "recsys", "effect": "NoExecute"},
        ]
        assert [(m["constant"], m["mountPath"]) for m in k8s[step]["pvcMount"]] == [("raserec-checkpoints", "/checkpoints")]
    for step in set(STEPS) - set(TRAINING):
        assert "accelerator" not in containers[step]["resources"]
        assert not {"nodeSelector", "tolerations", "pvcMount"} & set(k8s[step]), step


def test_with_trainer_workers_the_job_gets_the_gpus_and_the_step_waits_on_the_volume(tmp_path):
    containers, k8s = compile_with(tmp_path, *GPU_NODES, "--trainer-workers", "4")
    for step in TRAINING:
        assert "accelerator" not in containers[step]["resources"]  # the step's own pod only waits
        assert not {"nodeSelector", "tolerations"} & set(k8s[step])
        assert k8s[step]["pvcMount"][0]["mountPath"] == "/checkpoints"
        settings = JobSettings.from_env(env_of(containers[step])[TRAINJOB_ENV])
        assert settings == JobSettings(
            workers=4, image="registry.example/raserec:0.1.0", checkpoint_pvc="raserec-checkpoints",
            mount_path="/checkpoints", gpus=2, node_selector={"cloud.google.com/gke-accelerator": "nvidia-h100"},
            tolerations=(Toleration("nvidia.com/gpu", "Exists", "", "NoSchedule"),
                         Toleration("team", "Equal", "recsys", "NoExecute")),
        )
    for step in set(STEPS) - set(TRAINING):
        assert TRAINJOB_ENV not in env_of(containers[step])


def test_a_trainer_job_needs_the_volume(tmp_path, capsys):
    with pytest.raises(SystemExit, match="--checkpoint-pvc"):
        main(["pipeline", "compile", "--output", str(tmp_path / "p.yaml"), "--trainer-workers", "2"])
    with pytest.raises(ValueError, match="checkpoint volume"):
        ClusterOptions(trainer_workers=2)


def test_toleration_and_node_selector_syntax():
    assert parse_toleration("gpu=yes:NoSchedule") == Toleration("gpu", "Equal", "yes", "NoSchedule")
    assert parse_toleration("gpu") == Toleration("gpu", "Exists", "", "")
    with pytest.raises(ValueError, match="effect"):
        parse_toleration("gpu:Sometimes")
    assert parse_node_selector(["a=b", "c="]) == {"a": "b", "c": ""}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_node_selector(["nolabel"])


def test_submit_trains_on_the_volume_it_mounts(monkeypatch):
    """submit with --checkpoint-pvc and no --checkpoint-root: the training steps train on the volume."""
    import kfp

    sent = {}

    class Client:
        def __init__(self, host):
            sent["host"] = host

        def create_run_from_pipeline_package(self, package, arguments, run_name, experiment_name):
            sent["arguments"], sent["yaml"] = arguments, open(package).read()
            return type("Run", (), {"run_id": "r1"})()

    monkeypatch.setattr(kfp, "Client", Client)
    assert main(["pipeline", "submit", "--host", "http://127.0.0.1:1", "--data", "s3://raserec/x.csv",
                 "--checkpoint-pvc", "raserec-checkpoints", "--gpus", "1"]) == 0
    assert sent["arguments"]["checkpoint_root"] == "/checkpoints"
    assert "pvcMount" in sent["yaml"] and "nvidia.com/gpu" in sent["yaml"]
    assert json.loads(json.dumps(sent["arguments"]))  # plain values only
