"""A training step as a Kubeflow Trainer job: a TrainJob (trainer.kubeflow.org/v1alpha1) with N worker
nodes on the ``torch-distributed`` ClusterTrainingRuntime, created and awaited by the pipeline step.

Why TrainJob and not PyTorchJob: Kubeflow Trainer v2 (kubeflow/trainer, v2.0 in July 2025, v2.3 now) is
what current Kubeflow ships; its TrainJob + ClusterTrainingRuntime replace the framework-specific CRDs of
Training Operator v1 (PyTorchJob, TFJob, MPIJob), which stays on its release-1.9 branch for fixes only
(kubeflow.org/docs/components/trainer/operator-guides/migration). The torch runtime sets torchrun's
``PET_*`` variables (nodes, processes per node, node rank, master address) in every node's container, so
a worker runs the same ``torchrun -m raserec_core.cli.main pretrain ...`` as ``--nproc-per-node`` does
on one machine, only across nodes. ``manifests/schemas/trainjob-v1alpha1.json`` is the CRD's own schema
(v2.3.0); a test validates ``manifest`` against it.

How the step and its job share files: through the checkpoint volume (``checkpoint_root``, a
ReadWriteMany PVC mounted by the step and by every node). The step copies its inputs there (the pipeline's
artifacts are local to its own pod) with the resolved config, the job trains in the work folder
``steps`` names by config and inputs, and the step then runs its ordinary call, which finds the run
finished there and publishes it. The job's name is derived from the step, its config and its input
artifacts, so a retried step attaches to its running job, or replaces a failed one, which resumes from
the last checkpoint.

The step's side is ``train_on_cluster``: the runtime calls it when the step was compiled with a Trainer
job, whose settings reach the step's pod as the environment variable ``TRAINJOB_ENV``
(``pipelines/cluster.py`` sets it).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runtime import StepTask

log = logging.getLogger("raserec.trainjob")

API_GROUP, API_VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
RUNTIME = "torch-distributed"  # the ClusterTrainingRuntime Kubeflow Trainer installs for torch
CONTAINER = "node"  # its trainer container (and replicated job) name
MANAGER = "raserec.io/pipeline"  # who owns our runtime patch (the CRD keys patches by manager)
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
TRAINJOB_ENV = "RASEREC_TRAINJOB"  # set on a training step compiled to run as a Kubeflow Trainer job


@dataclass(frozen=True)
class Toleration:
    key: str
    operator: str = "Equal"  # Equal | Exists
    value: str = ""
    effect: str = ""  # NoSchedule | PreferNoSchedule | NoExecute, empty: all

    def to_k8s(self) -> dict[str, str]:
        out = {"key": self.key, "operator": self.operator}
        if self.value:
            out["value"] = self.value
        if self.effect:
            out["effect"] = self.effect
        return out


@dataclass(frozen=True)
class JobSettings:
    """What a training step's TrainJob looks like; the pipeline's compile options fill it."""

    workers: int  # nodes
    image: str
    checkpoint_pvc: str
    mount_path: str
    gpus: int = 0  # nvidia.com/gpu per node; one process per GPU
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    runtime: str = RUNTIME
    poll_seconds: float = 30.0

    def to_env(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_env(cls, text: str) -> JobSettings:
        data = json.loads(text)
        data["tolerations"] = tuple(Toleration(**t) for t in data.get("tolerations", ()))
        return cls(**data)

    @property
    def procs_per_node(self) -> int:
        # Explicit: the torch runtime's "auto" would start one process per CPU on a CPU-only node.
        return max(1, self.gpus)


def manifest(name: str, settings: JobSettings, args: list[str]) -> dict[str, Any]:
    """The TrainJob that runs ``raserec <args>`` under torchrun on ``settings.workers`` nodes."""
    s = settings
    resources: dict[str, Any] = {}
    if s.gpus:
        resources = {"limits": {"nvidia.com/gpu": s.gpus}, "requests": {"nvidia.com/gpu": s.gpus}}
    pod: dict[str, Any] = {
        "volumes": [{"name": "checkpoints", "persistentVolumeClaim": {"claimName": s.checkpoint_pvc}}],
        "containers": [{"name": CONTAINER, "volumeMounts": [{"name": "checkpoints", "mountPath": s.mount_path}]}],
    }
    if s.node_selector:
        pod["nodeSelector"] = dict(s.node_selector)
    if s.tolerations:
        pod["tolerations"] = [t.to_k8s() for t in s.tolerations]
    trainer: dict[str, Any] = {
        "image": s.image,
        "command": ["torchrun", "-m", "raserec_core.cli.main"],
        "args": list(args),
        "numNodes": s.workers,
        "numProcPerNode": s.procs_per_node,
    }
    if resources:
        trainer["resourcesPerNode"] = resources
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "TrainJob",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "raserec"}},
        "spec": {
            "runtimeRef": {"name": s.runtime, "kind": "ClusterTrainingRuntime", "apiGroup": API_GROUP},
            "trainer": trainer,
            "runtimePatches": [{
                "manager": MANAGER,
                "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [
                    {"name": CONTAINER, "template": {"spec": {"template": {"spec": pod}}}},
                ]}}},
            }],
        },
    }


def stage(src: str | Path, dst: Path) -> Path:
    """Copy an input artifact (file or folder) onto the shared volume once; ``dst`` is kept if present."""
    if dst.exists():
        return dst
    tmp = dst.with_name(dst.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    if Path(src).is_dir():
        shutil.copytree(src, tmp)
    else:
        shutil.copyfile(src, tmp)
    tmp.rename(dst)  # whole or absent: a copy cut short is redone
    return dst


def condition(status: dict[str, Any] | None) -> str | None:
    """``Complete`` or ``Failed`` once the job has finished (its status conditions), else None."""
    for c in (status or {}).get("conditions", []):
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return c["type"]
    return None


def run(name: str, settings: JobSettings, args: list[str], namespace: str | None = None) -> None:
    """Create the TrainJob (or attach to the one of this name), wait for it; raise if it failed.

    A job of this name that failed before (a previous attempt of the step) is deleted and created again:
    it resumes from the checkpoint on the volume."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    config.load_incluster_config()
    namespace = namespace or NAMESPACE_FILE.read_text().strip()
    api = client.CustomObjectsApi()
    coords = {"group": API_GROUP, "version": API_VERSION, "namespace": namespace, "plural": PLURAL}
    try:
        existing = api.get_namespaced_custom_object(**coords, name=name)
    except ApiException as exc:
        if exc.status != 404:
            raise
        existing = None
    if existing is not None and condition(existing.get("status")) == "Failed":
        log.info("TrainJob %s failed before; replacing it (it resumes from its checkpoint)", name)
        api.delete_namespaced_custom_object(**coords, name=name, propagation_policy="Foreground")
        while _exists(api, coords, name):
            time.sleep(settings.poll_seconds / 6)
        existing = None
    if existing is None:
        api.create_namespaced_custom_object(**coords, body=manifest(name, settings, args))
        log.info("created TrainJob %s/%s: %d node(s) x %d process(es)", namespace, name, settings.workers,
                 settings.procs_per_node)
    while True:
        state = condition(api.get_namespaced_custom_object(**coords, name=name).get("status"))
        if state == "Complete":
            return
        if state == "Failed":
            raise RuntimeError(f"TrainJob {namespace}/{name} failed (kubectl describe trainjob -n {namespace} {name})")
        time.sleep(settings.poll_seconds)


def _exists(api, coords: dict[str, str], name: str) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        api.get_namespaced_custom_object(**coords, name=name)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def train_on_cluster(step: str, t: StepTask, a: Mapping[str, Any], v: Mapping[str, Any]) -> str:
    """Train ``step`` as a Kubeflow Trainer job; returns the checkpoint root it trained in, where the
    step's own call then finds the finished run and publishes it."""
    import hashlib

    settings = JobSettings.from_env(os.environ[TRAINJOB_ENV])
    root = Path(v["checkpoint_root"] or settings.mount_path)
    ports = {"data": a["data"]} if step == "pretrain" else {"data": a["data"], "model": a["pretrained"],
                                                             "memory": a["memory"]}
    config_yaml = t.cfg.to_yaml()
    identity = json.dumps([step, config_yaml, {k: art.uri for k, art in ports.items()}], sort_keys=True)
    name = f"raserec-{step}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"
    job = root / "jobs" / name
    args = [step, "--output", str(job / "output"), "--work-root", str(root), "--config", str(job / "config.yaml")]
    for port, art in ports.items():
        args += [f"--{port}", str(stage(art.path, job / port))]
    from raserec_core.storage import atomic_write_text

    atomic_write_text(job / "config.yaml", config_yaml)
    run(name, settings, args)
    return str(root)
