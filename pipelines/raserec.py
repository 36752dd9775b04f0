"""The RaSeRec pipeline DAG, its per-step resources, retries, caching and object-store credentials.

``raserec_pipeline`` is what ``compile.py`` writes to ``raserec_pipeline.yaml`` for a cluster;
``build(retries=False)`` is the same DAG without retries, which ``raserec run`` uses locally (there a failure
is a bug to see at once, not a pre-empted node to wait for).

The pipeline's parameters and what each step receives come from the one table, ``components/params.py``:
a step receives only the parameters that change what it computes, so that, for instance, a new
``alpha`` re-runs fine-tuning but takes pre-training from the cache. Parameters left at their "unset"
value (``""``, ``0``, ``-1.0``) keep the value of ``config_yaml`` (or the built-in defaults).

``checkpoint_root`` (empty: off) is a folder that outlives a step's pod, e.g. a mounted volume: the two
training steps train there, in folders named by their config and inputs, so resubmitting an interrupted
run resumes them from their last epoch (a retry does too).

Object-store credentials come from the Kubernetes Secret ``raserec-object-store`` and endpoints and the
MLflow URI from the ConfigMap ``raserec-config`` (both in ``manifests/``), as environment variables
set by kfp-kubernetes: no credential is ever a pipeline parameter or a value in the compiled YAML.
"""

import inspect

from kfp import dsl, kubernetes
from kfp.dsl import Artifact

from components.factory import build_all
from components.params import PARAMS, REQUIRED, Param, step_params

from .cluster import ClusterOptions, apply

DEFAULT_CLUSTER = ClusterOptions()  # no GPU, placement, volume or Trainer job; the image of components/image.py

PIPELINE_NAME = "raserec"
SECRET = "raserec-object-store"
SECRET_ENV = {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"}
CONFIG_MAP = "raserec-config"
CONFIG_ENV = {
    "MLFLOW_TRACKING_URI": "MLFLOW_TRACKING_URI",
    "AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION": "AWS_DEFAULT_REGION",
}
# step -> (cpu request, cpu limit, memory request, memory limit, timeout in seconds)
RESOURCES = {
    "preprocess": ("1", "2", "4Gi", "8Gi", 2 * 3600),
    "pretrain": ("4", "8", "8Gi", "16Gi", 24 * 3600),
    "index": ("2", "4", "8Gi", "16Gi", 4 * 3600),
    "finetune": ("4", "8", "8Gi", "16Gi", 24 * 3600),
    "evaluate": ("2", "4", "8Gi", "16Gi", 4 * 3600),
    "register": ("1", "2", "4Gi", "8Gi", 3600),
}
RETRY = {"backoff_duration": "60s", "backoff_factor": 2.0, "backoff_max_duration": "900s"}
RETRIES = {"preprocess": 2, "pretrain": 2, "index": 2, "finetune": 2, "evaluate": 2, "register": 1}
# register has side effects (a new model version) and must log its run every time: never cached.
CACHED = {"preprocess": True, "pretrain": True, "index": True, "finetune": True, "evaluate": True, "register": False}


def _configure(task: dsl.PipelineTask, step: str, retries: bool) -> dsl.PipelineTask:
    cpu_req, cpu_lim, mem_req, mem_lim, timeout = RESOURCES[step]
    task.set_display_name(step)
    task.set_cpu_request(cpu_req).set_cpu_limit(cpu_lim).set_memory_request(mem_req).set_memory_limit(mem_lim)
    task.set_caching_options(enable_caching=CACHED[step])
    if retries:
        task.set_retry(num_retries=RETRIES[step], **RETRY)
    kubernetes.use_secret_as_env(task, secret_name=SECRET, secret_key_to_env=SECRET_ENV, optional=True)
    kubernetes.use_config_map_as_env(task, config_map_name=CONFIG_MAP, config_map_key_to_env=CONFIG_ENV, optional=True)
    kubernetes.set_timeout(task, timeout)
    return task


def signature(table: tuple[Param, ...] = PARAMS) -> inspect.Signature:
    """The pipeline function's typed signature: the table's pipeline parameters, required ones first."""
    rows = sorted((p for p in table if p.pipeline), key=lambda p: p.default is not REQUIRED)
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature(
        [inspect.Parameter(p.name, kind, annotation=p.type,
                           **({} if p.default is REQUIRED else {"default": p.default})) for p in rows],
        return_annotation=Artifact,
    )


def build(retries: bool = True, table: tuple[Param, ...] = PARAMS, cluster: ClusterOptions = DEFAULT_CLUSTER):
    """The pipeline function (retries on or off; everything else identical) over the parameter ``table``,
    its pods as ``cluster`` says (image, GPUs, placement, checkpoint volume, Trainer jobs)."""
    comps = build_all(table)
    sig = signature(table)

    def raserec(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        values = {**bound.arguments, "kfp_run_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER}

        def task(step: str, **ports):
            params = {p.name: values[p.name] for p in step_params(step, table)}
            return apply(_configure(comps[step](**ports, **params), step, retries), step, cluster)

        data = task("preprocess").outputs["dataset"]
        pre = task("pretrain", data=data)
        idx = task("index", data=data, model=pre.outputs["model"])
        fine = task("finetune", data=data, pretrained=pre.outputs["model"], memory=idx.outputs["memory"])
        ev = task("evaluate", data=data, model=fine.outputs["model"], memory=idx.outputs["memory"])
        reg = task("register", data=data, pretrained=pre.outputs["model"], memory=idx.outputs["memory"],
                   model=fine.outputs["model"], metrics=ev.outputs["metrics"],
                   valid_ndcg_at_10=ev.outputs["valid_ndcg_at_10"])
        return reg.outputs["registration"]

    raserec.__signature__ = sig
    return dsl.pipeline(
        name=PIPELINE_NAME,
        description="RaSeRec: retrieval-augmented sequential recommendation, from interactions to a registered model",
    )(raserec)


raserec_pipeline = build(retries=True)
