"""components/trainjob.py: the TrainJob a training step creates is valid against the CRD's own schema
(kubeflow/trainer v2.3.0, manifests/schemas/), carries GPUs, placement and the volume; the step creates,
awaits and replaces it; its workers' command line is one ``raserec`` understands."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from components import trainjob
from components.trainjob import JobSettings, Toleration, condition, manifest

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "manifests" / "schemas" / "trainjob-v1alpha1.json"
GPU = JobSettings(workers=4, image="registry.example/raserec:0.1.0", checkpoint_pvc="raserec-checkpoints",
                  mount_path="/checkpoints", gpus=2, node_selector={"gpu-type": "h100"},
                  tolerations=(Toleration("nvidia.com/gpu", "Exists", "", "NoSchedule"),))
CPU = JobSettings(workers=2, image="registry.example/raserec:0.1.0", checkpoint_pvc="raserec-checkpoints",
                  mount_path="/checkpoints")
ARGS = ["pretrain", "--data", "/checkpoints/jobs/j/data", "--output", "/checkpoints/jobs/j/output"]


def strict(schema):
    """The schema with unknown fields forbidden: the API server prunes them silently, so a misspelt field
    would be dropped, not refused."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@pytest.fixture(scope="module")
def validator():
    schema = strict(json.loads(SCHEMA.read_text()))
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize("settings", [GPU, CPU], ids=["gpu", "cpu"])
def test_the_job_is_valid_against_the_crd_schema(validator, settings):
    job = manifest("raserec-pretrain-0123456789ab", settings, ARGS)
    errors = [e.message for e in validator.iter_errors(job)]
    assert not errors


def test_the_schema_check_refuses_what_the_api_server_would_drop_or_refuse(validator):
    job = manifest("j", GPU, ARGS)
    typo = copy.deepcopy(job)
    typo["spec"]["trainer"]["numNode"] = typo["spec"]["trainer"].pop("numNodes")
    assert not validator.is_valid(typo)
    wrong_type = copy.deepcopy(job)
    wrong_type["spec"]["trainer"]["numNodes"] = "4"
    assert not validator.is_valid(wrong_type)
    no_runtime = copy.deepcopy(job)
    del no_runtime["spec"]["runtimeRef"]
    assert not validator.is_valid(no_runtime)


def test_gpus_placement_and_the_volume_go_on_every_node():
    job = manifest("j", GPU, ARGS)
    trainer = job["spec"]["trainer"]
    assert job["spec"]["runtimeRef"] == {"name": "torch-distributed", "kind": "ClusterTrainingRuntime",
                                         "apiGroup": "trainer.kubeflow.org"}
    assert trainer["numNodes"] == 4 and trainer["numProcPerNode"] == 2  # one process per GPU
    assert trainer["resourcesPerNode"]["limits"] == {"nvidia.com/gpu": 2}
    assert trainer["command"] == ["torchrun", "-m", "raserec_core.cli.main"] and trainer["args"] == ARGS
    (patch,) = job["spec"]["runtimePatches"]
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = node["template"]["spec"]["template"]["spec"]
    assert node["name"] == "node" and pod["containers"][0]["name"] == "node"
    assert pod["volumes"] == [{"name": "checkpoints", "persistentVolumeClaim": {"claimName": "raserec-checkpoints"}}]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "checkpoints", "mountPath": "/checkpoints"}]
    assert pod["nodeSelector"] == {"gpu-type": "h100"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_a_cpu_job_asks_for_no_gpu_and_one_process_per_node():
    job = manifest("j", CPU, ARGS)
    assert "resourcesPerNode" not in job["spec"]["trainer"]
    assert job["spec"]["trainer"]["numProcPerNode"] == 1  # "auto" would start one per CPU
    pod = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    assert not {"nodeSelector", "tolerations"} & set(pod["template"]["spec"]["template"]["spec"])


def test_settings_travel_as_json():
    assert JobSettings.from_env(GPU.to_env()) == GPU


class FakeApi:
    """The CustomObjectsApi calls ``trainjob.run`` makes, over a dict of jobs whose status advances one
    state per read."""

    def __init__(self, jobs=None, outcome="Complete"):
        self.jobs, self.outcome, self.created, self.deleted = dict(jobs or {}), outcome, [], []

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        from kubernetes.client.exceptions import ApiException

        if name not in self.jobs:
            raise ApiException(status=404)
        job = self.jobs[name]
        if job.get("status") is None:
            job["status"] = {"conditions": []}
        elif not job["status"]["conditions"]:
            job["status"]["conditions"] = [{"type": self.outcome, "status": "True"}]
        return job

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        assert (group, version, plural) == ("trainer.kubeflow.org", "v1alpha1", "trainjobs")
        self.created.append(body)
        self.jobs[body["metadata"]["name"]] = {**body, "status": None}

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, propagation_policy):
        self.deleted.append(name)
        del self.jobs[name]


@pytest.fixture
def fake_api(monkeypatch):
    from kubernetes import client, config

    holder = {}
    monkeypatch.setattr(config, "load_incluster_config", lambda: None)
    monkeypatch.setattr(client, "CustomObjectsApi", lambda: holder["api"])
    return holder


def test_run_creates_the_job_and_waits_for_it(fake_api):
    fake_api["api"] = api = FakeApi()
    trainjob.run("j", JobSettings(**{**CPU.__dict__, "poll_seconds": 0}), ARGS, namespace="ns")
    assert [b["metadata"]["name"] for b in api.created] == ["j"] and not api.deleted


def test_run_attaches_to_a_running_job_and_replaces_a_failed_one(fake_api):
    settings = JobSettings(**{**CPU.__dict__, "poll_seconds": 0})
    fake_api["api"] = api = FakeApi({"j": {"metadata": {"name": "j"}, "status": {"conditions": []}}})
    trainjob.run("j", settings, ARGS, namespace="ns")
    assert not api.created  # a retried step waits for the job it started before
    failed = {"metadata": {"name": "j"}, "status": {"conditions": [{"type": "Failed", "status": "True"}]}}
    fake_api["api"] = api = FakeApi({"j": failed})
    trainjob.run("j", settings, ARGS, namespace="ns")
    assert api.deleted == ["j"] and len(api.created) == 1


def test_run_raises_when_the_job_fails(fake_api):
    fake_api["api"] = FakeApi(outcome="Failed")
    with pytest.raises(RuntimeError, match="TrainJob ns/j failed"):
        trainjob.run("j", JobSettings(**{**CPU.__dict__, "poll_seconds": 0}), ARGS, namespace="ns")


def test_condition():
    assert condition(None) is None and condition({"conditions": []}) is None
    assert condition({"conditions": [{"type": "Suspended", "status": "True"}]}) is None
    assert condition({"conditions": [{"type": "Complete", "status": "False"},
                                     {"type": "Failed", "status": "True"}]}) == "Failed"


def test_the_step_stages_its_inputs_and_publishes_what_the_job_trained(
    small_dataset_dir, tiny_args, tmp_path, monkeypatch, caplog
):
    """The pipeline step with a Trainer job: its inputs and config land on the volume, the job's command
    line is one ``raserec`` runs (here in this process, standing in for the cluster's workers), and the
    step's own call then finds the finished run in the work folder and publishes it without training."""
    pytest.importorskip("torch")
    from kfp.dsl import Dataset, Model

    from components import runtime
    from raserec_core.cli.main import build_parser, load
    from raserec_core.cli.main import main as raserec

    volume = tmp_path / "volume"
    settings = JobSettings(workers=2, image="i:1", checkpoint_pvc="c", mount_path=str(volume))
    monkeypatch.setenv(trainjob.TRAINJOB_ENV, settings.to_env())
    jobs = []

    def job_on_this_machine(name, job_settings, args, namespace=None):
        assert job_settings == settings
        assert manifest(name, job_settings, args)["metadata"]["name"] == name
        jobs.append((name, args))
        assert raserec(args) == 0

    monkeypatch.setattr(trainjob, "run", job_on_this_machine)
    cfg = load(build_parser().parse_args(["pretrain", "--data", "x", "--output", "y", *tiny_args("pretrain.epochs=1")]))
    t = type("Task", (), {"cfg": cfg, "device": "cpu"})()
    data = Dataset(name="dataset", uri="s3://pipeline-root/preprocess/dataset")
    data.path = str(small_dataset_dir)  # where kfp's launcher put the artifact in the step's pod
    model = Model(name="model", uri=str(tmp_path / "model"))
    model.path = str(tmp_path / "model")
    values = {"checkpoint_root": ""}  # unset: the step trains on the volume it mounts

    with caplog.at_level("INFO", logger="raserec"):
        result, outputs = runtime._call("pretrain", t, {"data": data, "model": model}, values)
    (name, args), = jobs
    assert name.startswith("raserec-pretrain-") and len(name) <= 63
    staged = volume / "jobs" / name
    assert args[args.index("--data") + 1] == str(staged / "data") and (staged / "data").is_dir()
    assert args[args.index("--work-root") + 1] == str(volume)
    assert (staged / "config.yaml").read_text() == cfg.to_yaml()
    assert "already finished" in caplog.text  # the step published the job's run, it did not train again
    assert json.loads((tmp_path / "model" / "metrics.json").read_text()) == result
    assert outputs == {"model": model}
