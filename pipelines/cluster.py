"""Where the pipeline's pods run on a cluster: options of ``raserec pipeline compile|submit``.

The image (default ``components.image.IMAGE``, the one place its tag is defined) applies to every step;
GPUs, node selectors, tolerations, the checkpoint volume and a Kubeflow Trainer job apply to the two
training steps. They shape the compiled pod specs, so they are compile options, not pipeline
parameters: kfp fixes a pod's accelerators, placement and volumes when it compiles.

Without a Trainer job, the GPU request, node selector and tolerations go on the training step's own pod.
With ``trainer_workers`` N, the step's pod only stages its inputs and waits; they go on the N nodes of
its TrainJob (``components/trainjob.py``), whose settings reach the step as one environment variable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from components.image import IMAGE
from components.trainjob import TRAINJOB_ENV, JobSettings, Toleration

TRAINING_STEPS = ("pretrain", "finetune")
GPU = "nvidia.com/gpu"
EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


@dataclass(frozen=True)
class ClusterOptions:
    image: str = IMAGE
    gpus: int = 0  # per training pod, or per Trainer node
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    checkpoint_pvc: str = ""  # a PersistentVolumeClaim mounted by the training steps (manifests/base)
    mount_path: str = "/checkpoints"
    trainer_workers: int = 0  # > 0: train each training step as a TrainJob of this many nodes

    def __post_init__(self):
        if self.gpus < 0 or self.trainer_workers < 0:
            raise ValueError("gpus and trainer_workers must be >= 0")
        if self.trainer_workers and not self.checkpoint_pvc:
            raise ValueError("a Kubeflow Trainer job shares its files with the step through the checkpoint "
                             "volume: pass --checkpoint-pvc too")

    def job_settings(self) -> JobSettings:
        return JobSettings(workers=self.trainer_workers, image=self.image, checkpoint_pvc=self.checkpoint_pvc,
                           mount_path=self.mount_path, gpus=self.gpus, node_selector=dict(self.node_selector),
                           tolerations=self.tolerations)


def apply(task, step: str, opts: ClusterOptions):
    """Set ``opts`` on the kfp task of ``step``."""
    from kfp import kubernetes

    task.container_spec.image = opts.image
    if step not in TRAINING_STEPS:
        return task
    if opts.checkpoint_pvc:
        kubernetes.mount_pvc(task, pvc_name=opts.checkpoint_pvc, mount_path=opts.mount_path)
    if opts.trainer_workers:
        task.set_env_variable(TRAINJOB_ENV, opts.job_settings().to_env())
        return task
    if opts.gpus:
        task.set_accelerator_type(GPU).set_accelerator_limit(opts.gpus)
    for key, value in sorted(opts.node_selector.items()):
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for t in opts.tolerations:
        kubernetes.add_toleration(task, key=t.key, operator=t.operator, value=t.value or None, effect=t.effect or None)
    return task


def parse_node_selector(items: list[str]) -> dict[str, str]:
    """``["key=value", ...]`` -> a node selector."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--node-selector {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def parse_toleration(text: str) -> Toleration:
    """kubectl's taint syntax: ``key=value:Effect``, ``key:Effect`` or ``key`` (the last two: any value)."""
    body, _, effect = text.partition(":")
    if effect and effect not in EFFECTS:
        raise ValueError(f"--toleration {text!r}: effect must be one of {', '.join(EFFECTS)}")
    key, sep, value = body.partition("=")
    if not key:
        raise ValueError(f"--toleration {text!r}: expected KEY[=VALUE][:EFFECT]")
    return Toleration(key=key, operator="Equal" if sep else "Exists", value=value, effect=effect)
