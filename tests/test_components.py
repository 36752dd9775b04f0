"""The components' glue, in-process with the workers (``raserec_core.steps``) mocked: argument mapping,
config overrides, artifact metadata, MLflow runs, S3 input and export. No kfp runner involved."""

from __future__ import annotations

import ast
import inspect
import json
import textwrap
from pathlib import Path

import pytest
import yaml
from infra_fixtures import (  # noqa: F401  (fixtures)
    SECRET_VALUE,
    TINY_OVERRIDES,
    mlflow_store,
    moto_endpoint,
    s3_bucket,
    tiny_config,
)
from kfp.dsl import Artifact, Dataset, Markdown, Metrics, Model

from components.config import STEP_SECTIONS, pipeline_config
from components.params import PARAMS, STEPS, is_unset, overrides, step_params
from raserec_core import steps


def _component(step: str):
    import importlib

    return getattr(importlib.import_module(f"components.{step}"), step)


@pytest.mark.parametrize("step", STEPS)
def test_component_is_thin_and_on_the_one_image(step):
    from components.image import IMAGE

    comp = _component(step)
    container = comp.component_spec.implementation.container
    assert container.image == IMAGE
    assert "pip install" not in " ".join(container.command)  # install_kfp_package=False, nothing at run time
    assert comp.component_spec.description  # the docstring
    body = ast.parse(textwrap.dedent(inspect.getsource(comp.python_func)))
    statements = [ast.unparse(n) for n in body.body[0].body[1:]]  # after the docstring: the whole body
    assert statements == ["from components.runtime import run_component", f"return run_component({step!r}, locals())"]
    # its parameters are its rows of the table, typed as there
    params = {name: p for name, p in inspect.signature(comp.python_func).parameters.items()}
    for row in step_params(step):
        assert params[row.name].annotation is row.type
    table = {p.name for p in PARAMS}
    assert {n for n in params if n in table} == {p.name for p in step_params(step)}


def test_the_runtime_makes_one_call_into_steps_per_step():
    import components.runtime as runtime

    tree = ast.parse(inspect.getsource(runtime._call))
    calls = [n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and isinstance(n.func.value, ast.Name) and n.func.value.id == "steps"]
    assert sorted(calls) == sorted(STEPS)


def test_a_step_logs_only_config_sections_whose_overrides_it_takes():
    """A step logs a section (on its run and on the parent) only with every override of it, so that the
    parent's parameters are right whichever step logs them first; every override is logged somewhere."""
    for p in PARAMS:
        if not p.key:
            continue
        section = p.key.split(".")[0]
        loggers = [s for s, sections in STEP_SECTIONS.items() if section in sections]
        assert loggers, f"{p.name}: no step logs section {section!r}"
        assert set(loggers) <= set(p.steps), f"{p.name} ({p.key}) does not reach {set(loggers) - set(p.steps)}"
    assert sorted(STEP_SECTIONS) == sorted(STEPS)


def test_evaluate_and_register_take_no_retrieval_setting():
    # the fine-tuned model owns top-K, alpha and beta: they would only change logged params and cache keys
    for step in ("evaluate", "register"):
        assert not {"top_k", "alpha", "beta", "finetune_epochs"} & {p.name for p in step_params(step)}


def test_pipeline_config_overrides():
    base = tiny_config().to_yaml()
    cfg = pipeline_config(base, backbone="gru4rec", objective="", pretrain_epochs=3, alpha=0.0, beta=-1.0, top_k=0)
    assert (cfg.model.backbone, cfg.pretrain.objective, cfg.pretrain.epochs) == ("gru4rec", "ce", 3)
    assert (cfg.finetune.alpha, cfg.finetune.beta, cfg.finetune.top_k) == (0.0, 1.0, 4)
    assert pipeline_config("").to_dict() == type(cfg)().to_dict()
    assert set(overrides()) == {"backbone", "objective", "pretrain_epochs", "finetune_epochs", "top_k", "alpha", "beta",
                              "index_type"}
    assert is_unset("") and is_unset(0) and is_unset(-1.0) and not is_unset(0.0) and not is_unset(False)
    from raserec_core.config import ConfigError

    with pytest.raises(ConfigError, match="unknown pipeline override 'alpah'"):
        pipeline_config("", alpah=0.3)
    with pytest.raises(ConfigError, match="'model.backbone'"):
        pipeline_config("", backbone="transformer")


class _Recorder:
    """Stands in for one ``steps`` function: records its arguments, writes its output, returns a result."""

    def __init__(self, result, write=None):
        self.calls, self.result, self.write = [], result, write

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        if self.write:
            self.write(*args, **kwargs)
        return self.result


def _folder(files, position):
    def write(*args, **kwargs):
        out = Path(args[position])
        out.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (out / name).write_text(text)
    return write


def _art(cls, tmp_path, name, metadata=None):
    return cls(name=name, uri=str(tmp_path / "out" / name), metadata=dict(metadata or {}))


@pytest.mark.integration
def test_six_components_log_one_parent_and_six_nested_runs(mlflow_store, s3_bucket, tmp_path, monkeypatch):
    import boto3
    from mlflow import MlflowClient

    from raserec_core.tracking import runs
    from raserec_core.tracking.store import ensure_experiment

    uri, art = mlflow_store
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY_EXTRA", SECRET_VALUE)
    ensure_experiment(MlflowClient(uri), "glue", (art / "glue").as_uri())
    s3 = boto3.client("s3")
    s3.put_object(Bucket=s3_bucket, Key="raw/toy.txt", Body=b"u1 i1 i2 i3\n")
    common = dict(config_yaml=tiny_config().to_yaml(), mlflow_tracking_uri=uri, mlflow_experiment="glue",
                  pipeline_run_id="glue-1", kfp_run_id="{{$.pipeline_job_uuid}}",
                  artifact_root=f"s3://{s3_bucket}/exports")
    stats = {"filtered": {"users": 24, "items": 15}, "fingerprint": "fp-1", "source": "x"}
    history = json.dumps([{"epoch": 1, "loss": 2.0, "valid/ndcg@10": 0.1}, {"epoch": 2, "loss": 1.0, "valid/ndcg@10": 0.2}])
    metrics = {"valid/ndcg@10": 0.25, "valid/hr@10": 0.5, "test/ndcg@10": 0.2}
    seen = {}

    def read_input(path, *a, **k):
        seen["input"] = Path(path).read_text()

    fakes = {
        "preprocess": _Recorder(stats, lambda p, out, cfg: (read_input(p), _folder({"stats.json": "{}"}, 0)(out))),
        "pretrain": _Recorder({"valid/ndcg@10": 0.2}, _folder({"history.json": history, "model.json": "{}"}, 1)),
        "index": _Recorder({"entries": 120, "index_type": "brute"}, _folder({"manifest.json": "{}"}, 2)),
        "finetune": _Recorder({"valid/ndcg@10": 0.25}, _folder({"history.json": history, "model.json": "{}"}, 3)),
        "evaluate": _Recorder(metrics),
        "register": _Recorder({"name": "raserec", "version": "3", "alias": "challenger"}),
    }
    for name, fake in fakes.items():
        monkeypatch.setattr(steps, name, fake, raising=False)

    data = _art(Dataset, tmp_path, "dataset")
    _component("preprocess").python_func(data_uri=f"s3://{s3_bucket}/raw/toy.txt", dataset=data, **common)
    assert seen["input"] == "u1 i1 i2 i3\n"  # the s3:// input was downloaded for the step
    assert data.metadata["filtered_users"] == 24 and data.metadata["fingerprint"] == "fp-1"
    assert data.metadata["export_uri"] == f"s3://{s3_bucket}/exports/glue-1/preprocess/dataset"
    assert json.loads(data.metadata["config"]) == tiny_config().section("data")  # its sections, for later steps

    model = _art(Model, tmp_path, "model")
    _component("pretrain").python_func(data=data, model=model, backbone="gru4rec", pretrain_epochs=3, **common)
    args, _ = fakes["pretrain"].calls[0]
    assert args[:2] == (data.path, model.path)
    assert (args[2].model.backbone, args[2].pretrain.epochs, args[2].pretrain.objective) == ("gru4rec", 3, "ce")
    assert str(args[3]) == "cpu"

    memory = _art(Artifact, tmp_path, "memory")
    _component("index").python_func(data=data, model=model, memory=memory, index_type="flat", **common)
    assert fakes["index"].calls[0][0][3].memory.index_type == "flat"

    tuned = _art(Model, tmp_path, "tuned")
    _component("finetune").python_func(data=data, pretrained=model, memory=memory, model=tuned, alpha=0.3, **common)
    args, _ = fakes["finetune"].calls[0]
    assert args[:4] == (data.path, model.path, memory.path, tuned.path) and args[4].finetune.alpha == 0.3

    met, topk = _art(Metrics, tmp_path, "metrics"), _art(Artifact, tmp_path, "topk")
    (valid_ndcg,) = _component("evaluate").python_func(data=data, model=tuned, metrics=met, topk=topk, memory=memory,
                                                       **common)
    _, kw = fakes["evaluate"].calls[0]
    assert kw == {"topk_output": topk.path, "metrics_output": met.path, "memory": memory.path}
    assert valid_ndcg == 0.25
    assert met.metadata == {"valid_ndcg_at_10": 0.25, "valid_hr_at_10": 0.5, "test_ndcg_at_10": 0.2}

    reg, summary = _art(Artifact, tmp_path, "registration"), _art(Markdown, tmp_path, "summary")
    _component("register").python_func(
        data=data, pretrained=model, memory=memory, model=tuned, metrics=met, valid_ndcg_at_10=valid_ndcg,
        registration=reg, summary=summary, model_name="toy", **common,
    )
    args, kw = fakes["register"].calls[0]
    assert args == (data.path, tuned.path, args[2], 0.25) and str(args[2]) == "cpu"
    assert kw["model_name"] == "toy" and kw["memory"] == memory.path and kw["tracking_uri"] == uri
    assert json.loads(Path(reg.path).read_text())["alias"] == "challenger"  # facts kept as the artifact's file
    assert reg.metadata["alias"] == "challenger"

    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("glue").experiment_id
    parent = runs.find_parent(c, exp, "glue-1")
    assert parent.info.status == "FINISHED"  # closed by register
    children = runs.step_runs(c, exp, "glue-1")
    assert sorted(children) == sorted(STEPS) and all(len(v) == 1 for v in children.values())
    assert not any(runs.TAG_CACHED in v[0].data.tags for v in children.values())
    parent = c.get_run(parent.info.run_id)
    assert parent.data.params["config.finetune.alpha"] == "0.3"  # each step logs its sections on the parent
    assert parent.data.params["config.model.backbone"] == "gru4rec"
    assert parent.data.params["config.memory.index_type"] == "flat"
    assert (parent.data.tags["raserec.version"], len(parent.data.tags["raserec.git_commit"])) == ("0.1.0", 40)
    resolved = yaml.safe_load(Path(c.download_artifacts(parent.info.run_id, "config/resolved.yaml", str(tmp_path))).read_text())
    assert (resolved["finetune"]["alpha"], resolved["model"]["backbone"], resolved["memory"]["index_type"]) == (
        0.3, "gru4rec", "flat")  # the whole config, put together by the last step from its inputs' metadata
    (dataset,) = parent.inputs.dataset_inputs  # the data as an MLflow input, by source and fingerprint
    assert json.loads(dataset.dataset.source) == {"uri": f"s3://{s3_bucket}/raw/toy.txt"}  # as given, not the local copy
    assert dataset.dataset.digest == "fp-1"
    text = Path(summary.path).read_text()  # the Kubeflow run's Markdown: metrics, version, the MLflow run
    assert "| ndcg@10 | 0.2000 |" in text and "version **3** as `@challenger`" in text
    assert f"run {parent.info.run_id}" in text
    assert parent.data.metrics["valid_ndcg_at_10"] == 0.25
    assert parent.data.tags["raserec.dataset_fingerprint"] == "fp-1"
    pre = children["preprocess"][0]
    assert set(pre.data.params) == {"config.data." + k for k in tiny_config().to_dict()["data"]} | {"data_uri"}
    assert [m.step for m in c.get_metric_history(children["pretrain"][0].info.run_id, "valid_ndcg_at_10")] == [1, 2]
    everything = [parent, *(v[0] for v in children.values())]
    assert not any(SECRET_VALUE in json.dumps({**r.data.params, **r.data.tags}) for r in everything)

    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="exports/")["Contents"]}
    for step, name in [("preprocess", "dataset"), ("pretrain", "model"), ("index", "memory"), ("finetune", "model")]:
        assert f"exports/glue-1/{step}/{name}/_MANIFEST.json" in keys
    assert "exports/glue-1/register/registration" in keys


@pytest.mark.integration
def test_register_logs_runs_for_cached_upstream_steps(mlflow_store, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from raserec_core.tracking import runs
    from raserec_core.tracking.store import ensure_experiment

    uri, art = mlflow_store
    ensure_experiment(MlflowClient(uri), "cached", (art / "cached").as_uri())
    monkeypatch.setattr(steps, "register", _Recorder({"version": "1", "alias": "champion"}), raising=False)
    meta = {"valid_ndcg_at_10": 0.3, "pipeline_run_id": "older-run", "config": json.dumps({"model": {"backbone": "gru4rec", "n_layers": 3}})}
    _component("register").python_func(
        data=_art(Dataset, tmp_path, "d", {"filtered_users": 24.0}), pretrained=_art(Model, tmp_path, "p", meta),
        memory=_art(Artifact, tmp_path, "m", {"entries": 120.0}), model=_art(Model, tmp_path, "f", meta),
        metrics=_art(Metrics, tmp_path, "e", {"valid_ndcg_at_10": 0.3}), valid_ndcg_at_10=0.3,
        registration=_art(Artifact, tmp_path, "r"), summary=_art(Markdown, tmp_path, "s"), config_yaml=tiny_config().to_yaml(), mlflow_tracking_uri=uri,
        mlflow_experiment="cached", kfp_run_id="12345678",
    )
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("cached").experiment_id
    children = runs.step_runs(c, exp, "kfp-12345678")  # no pipeline_run_id: kfp's job id groups the runs
    assert sorted(children) == sorted(STEPS)
    cached = sorted(k for k, v in children.items() if v[0].data.tags.get(runs.TAG_CACHED) == "true")
    assert cached == sorted(set(STEPS) - {"register"})
    assert children["index"][0].data.metrics == {"entries": 120.0}
    assert children["pretrain"][0].data.tags["raserec.artifact.pipeline_run_id"] == "older-run"
    assert "config_model_backbone" not in children["pretrain"][0].data.metrics
    parent = runs.find_parent(c, exp, "kfp-12345678")  # the cached steps' config sections reach the parent
    params = c.get_run(parent.info.run_id).data.params
    assert (params["config.model.backbone"], params["config.model.n_layers"]) == ("gru4rec", "3")


def test_task_rejects_missing_tracking_and_run_id(monkeypatch):
    from components.runtime import pipeline_task, resolve_run_id

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ValueError, match="no MLflow tracking URI"):
        with pipeline_task("preprocess", "", pipeline_run_id="x", needs_device=False):
            pass
    with pytest.raises(ValueError, match="no pipeline run id"):
        resolve_run_id("", "{{$.pipeline_job_uuid}}")
    assert resolve_run_id("mine", "123") == "mine" and resolve_run_id("", "123") == "kfp-123"
    assert TINY_OVERRIDES["device"] == "cpu"
