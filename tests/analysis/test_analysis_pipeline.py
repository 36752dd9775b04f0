"""The analysis pipeline (a ParallelFor over the settings, then the report) through kfp's local runner:
the same rows as the command, from the same cache."""

from __future__ import annotations

import csv
import json

import pytest

OPTIONS = ["--shares", "0,0.3", "--where", "test"]


def rows(path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.integration
def test_the_pipeline_variant_reports_what_the_command_reports(analyze, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # kfp's local runner writes its workspace next to the working folder
    rc, direct, err = analyze("noise", tmp_path / "direct", *OPTIONS)
    assert rc == 0, err
    rc, piped, err = analyze("noise", tmp_path / "piped", *OPTIONS, "--pipeline")
    assert rc == 0, err[-4000:]
    assert piped["pipeline"] is True and piped["rows"] == direct["rows"] == 4
    assert rows(tmp_path / "piped" / "noise.csv") == rows(tmp_path / "direct" / "noise.csv")
    record = json.loads((tmp_path / "piped" / "result.json").read_text())
    assert [f["name"] for f in record["figures"]] == ["noise_test"]
    assert (tmp_path / "piped" / "noise_test.png").is_file()
    assert "analyze-point" in err  # one task per setting ran through the runner


def test_the_pipeline_compiles_to_a_parallel_for_and_a_collecting_report(tmp_path):
    import yaml
    from kfp import compiler

    from pipelines.analysis import analysis_pipeline

    compiler.Compiler().compile(analysis_pipeline, str(tmp_path / "analysis.yaml"))
    spec = yaml.safe_load((tmp_path / "analysis.yaml").read_text())
    tasks = spec["root"]["dag"]["tasks"]
    loop = next(t for t in tasks.values() if "parameterIterator" in t)
    assert loop["parameterIterator"]["items"]["inputParameter"].endswith("settings")
    assert loop["iteratorPolicy"]["parallelismLimit"] == 1
    report = tasks["analyze-report"]
    assert report["inputs"]["parameters"]["rows_json"]["taskOutputParameter"]["producerTask"] == next(
        name for name, t in tasks.items() if "parameterIterator" in t)
