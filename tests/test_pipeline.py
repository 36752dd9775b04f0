"""The compiled pipeline: current, six components with resources/retries/caching, no secrets; the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from infra_fixtures import SECRET_VALUE

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "pipelines" / "raserec_pipeline.yaml"
STEPS = ("preprocess", "pretrain", "index", "finetune", "evaluate", "register")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    from pipelines.compile import compile_pipeline

    out = compile_pipeline(tmp_path_factory.mktemp("compiled") / "p.yaml")
    return out.read_text()


def test_committed_yaml_is_current(compiled):
    assert COMMITTED.read_text() == compiled, (
        "pipelines/raserec_pipeline.yaml is stale: run `raserec pipeline compile` (or python -m pipelines.compile)"
    )


def test_six_components_with_resources_retries_and_caching(compiled):
    from components.image import IMAGE
    from pipelines.raserec import RESOURCES, RETRIES

    spec, platform = list(yaml.safe_load_all(compiled))
    tasks = spec["root"]["dag"]["tasks"]
    assert sorted(tasks) == sorted(STEPS)
    executors = spec["deploymentSpec"]["executors"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for step in STEPS:
        task = tasks[step]
        assert task["componentRef"]["name"] == f"comp-{step}"
        assert task["cachingOptions"].get("enableCache", False) is (step != "register")
        assert task["retryPolicy"]["maxRetryCount"] == RETRIES[step]
        assert task["retryPolicy"]["backoffDuration"] == "60s" and task["retryPolicy"]["backoffFactor"] == 2.0
        container = executors[f"exec-{step}"]["container"]
        assert container["image"] == IMAGE
        cpu_req, cpu_lim, mem_req, mem_lim, timeout = RESOURCES[step]
        res = container["resources"]
        assert (res["resourceCpuRequest"], res["resourceCpuLimit"]) == (cpu_req, cpu_lim)
        assert (res["resourceMemoryRequest"], res["resourceMemoryLimit"]) == (mem_req, mem_lim)
        assert "pip install" not in " ".join(container["command"])
        secret = k8s[f"exec-{step}"]["secretAsEnv"][0]
        assert secret["secretName"] == "raserec-object-store"
        assert {e["envVar"] for e in secret["keyToEnv"]} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
        assert k8s[f"exec-{step}"]["activeDeadlineSeconds"] == str(timeout)
    # the DAG's edges
    deps = {s: set(tasks[s].get("dependentTasks", [])) for s in STEPS}
    assert deps["pretrain"] == {"preprocess"} and deps["index"] == {"preprocess", "pretrain"}
    assert deps["finetune"] == {"preprocess", "pretrain", "index"}
    assert deps["evaluate"] == {"preprocess", "index", "finetune"}
    assert deps["register"] == {"preprocess", "pretrain", "index", "finetune", "evaluate"}
    valid = tasks["register"]["inputs"]["parameters"]["valid_ndcg_at_10"]["taskOutputParameter"]
    assert valid == {"outputParameterKey": "valid_ndcg_at_10", "producerTask": "evaluate"}
    params = spec["root"]["inputDefinitions"]["parameters"]
    for name in ("data_uri", "config_yaml", "backbone", "objective", "pretrain_epochs", "finetune_epochs", "top_k",
                 "alpha", "beta", "index_type", "mlflow_tracking_uri", "pipeline_run_id", "artifact_root"):
        assert name in params
    assert params["alpha"]["parameterType"] == "NUMBER_DOUBLE" and params["top_k"]["parameterType"] == "NUMBER_INTEGER"


def test_a_new_table_row_reaches_every_component_that_takes_it(tmp_path):
    """One row in components/params.py is the whole change for a new setting: the real kfp compiler puts it
    in the pipeline's parameters and in the signature and inputs of exactly the components it names."""
    from kfp import compiler

    from components.params import PARAMS, Param
    from pipelines.raserec import build

    table = (*PARAMS, Param("nprobe", int, 0, ("index", "finetune"), key="memory.nprobe"))
    out = tmp_path / "p.yaml"
    compiler.Compiler().compile(build(retries=True, table=table), str(out))
    spec, _ = list(yaml.safe_load_all(out.read_text()))
    assert spec["root"]["inputDefinitions"]["parameters"]["nprobe"]["parameterType"] == "NUMBER_INTEGER"
    tasks = spec["root"]["dag"]["tasks"]
    for step in STEPS:
        takes = step in ("index", "finetune")
        inputs = spec["components"][f"comp-{step}"]["inputDefinitions"]["parameters"]
        assert ("nprobe" in inputs) is takes, step
        wired = tasks[step]["inputs"]["parameters"].get("nprobe")
        assert wired == ({"componentInputParameter": "nprobe"} if takes else None), step
        source = " ".join(spec["deploymentSpec"]["executors"][f"exec-{step}"]["container"]["command"])
        assert ("nprobe: int = 0" in source) is takes, step  # the function kfp ships to the container


def test_top_k_goes_one_way_from_the_pipeline_to_finetune(compiled):
    spec, _ = list(yaml.safe_load_all(compiled))
    tasks = spec["root"]["dag"]["tasks"]
    assert [s for s in STEPS if "top_k" in tasks[s]["inputs"].get("parameters", {})] == ["finetune"]


def test_no_secret_in_the_compiled_yaml(tmp_path, monkeypatch):
    for var in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "MLFLOW_TRACKING_TOKEN", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(var, SECRET_VALUE)
    out = tmp_path / "p.yaml"
    proc = subprocess.run([sys.executable, "-m", "pipelines.compile", "--output", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert SECRET_VALUE not in text
    assert text == COMMITTED.read_text()  # the environment does not leak into the YAML at all


def test_cli_compile_and_help_stay_light(tmp_path):
    script = f"""
import sys
from raserec_core.cli.main import build_parser
from raserec_core.cli import pipeline
args = build_parser().parse_args(["pipeline", "compile", "--output", {str(tmp_path / 'c.yaml')!r}])
print(pipeline.run(args)["output"])
heavy = sorted(m for m in ("torch", "mlflow", "boto3") if m in sys.modules)
assert not heavy, heavy
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "c.yaml").read_text() == COMMITTED.read_text()
    help_proc = subprocess.run([sys.executable, "-m", "raserec_core.cli.main", "--help"], capture_output=True,
                               text=True, timeout=60)
    assert help_proc.returncode == 0 and "run" in help_proc.stdout and "pipeline" in help_proc.stdout


def test_run_and_submit_arguments():
    from raserec_core.cli.main import build_parser
    from raserec_core.cli.pipeline import QUICK, resolved_config_yaml

    p = build_parser()
    args = p.parse_args(["run", "--data", "x.txt", "--quick", "--set", "pretrain.epochs=5", "--set", "seed=3"])
    cfg = yaml.safe_load(resolved_config_yaml(args))
    assert cfg["pretrain"]["epochs"] == 5  # --set beats --quick
    assert cfg["finetune"]["epochs"] == int(QUICK[1].split("=")[1]) and cfg["seed"] == 3
    assert args.artifact_root == "runs/pipeline" and args.model_name == "raserec"
    sub = p.parse_args(["pipeline", "submit", "--host", "http://kfp:8080", "--data", "s3://b/x", "--experiment", "e"])
    assert (sub.host, sub.experiment, sub.data) == ("http://kfp:8080", "e", "s3://b/x")
    with pytest.raises(SystemExit):
        p.parse_args(["pipeline", "submit", "--data", "x"])  # --host is required
