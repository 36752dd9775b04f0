"""manifests/katib/experiment.yaml: generated from configs/tune/space.yaml, valid against the schema of
the Experiment CRD kept beside it, and running the local study's trial command."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

from raserec_core.cli.main import main
from raserec_core.tuning.katib import METRICS_FORMAT, parameter_name
from raserec_core.tuning.space import load_space
from raserec_core.tuning.trial import trial_command

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "manifests" / "katib" / "experiment.yaml"
SCHEMA = ROOT / "manifests" / "katib" / "experiment.schema.json"
SPACE = "configs/tune/space.yaml"
DATA = "s3://raserec/datasets/beauty"


def manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


def test_committed_manifest_is_up_to_date(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "experiment.yaml"
    assert main(["tune", "--data", DATA, "--space", SPACE, "--katib-manifest", str(out)]) == 0
    assert out.read_text() == MANIFEST.read_text(), (
        f"regenerate it: raserec tune --data {DATA} --space {SPACE} --katib-manifest {MANIFEST.relative_to(ROOT)}"
    )


def test_manifest_matches_the_experiment_schema():
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(manifest(), schema)
    broken = copy.deepcopy(manifest())
    broken["spec"]["parameters"][0]["feasibleSpace"]["mim"] = "0.1"  # a typo Katib would drop silently
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_parameters_and_command_come_from_the_space_file():
    spec = manifest()["spec"]
    space = load_space(ROOT / SPACE)
    assert [p["name"] for p in spec["parameters"]] == [parameter_name(p.key) for p in space]
    by_name = {p["name"]: p for p in spec["parameters"]}
    for p in space:
        katib = by_name[parameter_name(p.key)]
        if p.type == "categorical":
            assert katib["feasibleSpace"]["list"] == list(p.choices)
        else:
            assert (float(katib["feasibleSpace"]["min"]), float(katib["feasibleSpace"]["max"])) == (p.low, p.high)
            assert (katib["feasibleSpace"].get("distribution") == "logUniform") == p.log
    container = spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    items = [f"{p.key}=${{trialParameters.{parameter_name(p.key)}}}" for p in space]
    output = "s3://raserec/katib/raserec-tune/${trialSpec.Name}"
    assert container["command"] == ["raserec", *trial_command(DATA, output, None, items)]
    assert spec["objective"]["objectiveMetricName"] == "valid/ndcg@10"  # pretrain.valid_metric's default
    assert spec["earlyStopping"]["algorithmName"] == "medianstop"
    assert spec["metricsCollectorSpec"]["collector"]["kind"] == "StdOut"


def test_metrics_format_reads_the_epoch_log_and_the_final_json():
    rx = re.compile(METRICS_FORMAT)
    epoch = ("2026-12-03 15:07:45,361 raserec.train INFO epoch 1  loss 4.0582  train 0.2s  valid 0.0s  "
             "valid/mrr@10 0.1392  (best 0.1392 @1)")
    assert rx.search(epoch).group(1, 2) == ("valid/mrr@10", "0.1392")
    assert rx.search('  "valid/mrr@10": 0.17206349206349206,').group(1, 2) == ("valid/mrr@10", "0.17206349206349206")
    assert rx.search('  "test/ndcg@10": 1.5e-05').group(1, 2) == ("test/ndcg@10", "1.5e-05")
    assert rx.search("2026-12-03 raserec.train INFO resuming after epoch 2") is None
