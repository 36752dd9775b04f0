"""``raserec analyze <name>`` and ``raserec report`` end to end on toy data: the outputs, figures that match
the top-K dumps they came from, reuse of what is trained, MLflow."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

# Small settings per analysis: each runs in seconds on the toy data.
OPTIONS = {
    "backbones": ["--variants", "sasrec-bsa,sasrec,gru4rec,cl4srec,duorec,sasrec-sampled"],
    "longtail": [],
    "partitions": ["--fractions", "0.5,1", "--lengths", "3"],
    "noise": ["--shares", "0,0.3", "--where", "test,train"],
    "sensitivity": ["--top-k", "2,4", "--alpha", "0.3", "--beta", "0.5", "--nprobe", "1,3"],
}
ROWS = {"backbones": 12, "longtail": 16, "partitions": 5, "noise": 8, "sensitivity": 6}
FIGURES = {"backbones": ["backbones_quality", "backbones_gain"], "longtail": ["longtail_groups"],
           "partitions": ["partitions_size"], "noise": ["noise_test", "noise_train"],
           "sensitivity": ["sensitivity_top_k", "sensitivity_alpha", "sensitivity_beta", "sensitivity_nprobe"]}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, analyze):
    root = tmp_path_factory.mktemp("analyses")
    results = {}
    for name, options in OPTIONS.items():
        rc, result, err = analyze(name, root / name, *options)
        assert rc == 0, err[-3000:]
        results[name] = result
    return root, results


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def from_dump(path: Path) -> tuple[float, float]:
    ranks = pq.read_table(path, columns=["target_rank"]).column("target_rank").to_numpy().astype(float)
    return float((ranks <= 10).mean()), float(np.where(ranks <= 10, 1 / np.log2(ranks + 1), 0).mean())


@pytest.mark.parametrize("name", list(OPTIONS))
def test_each_analysis_writes_its_report_plots_and_csvs(outputs, name):
    root, results = outputs
    out = root / name
    assert results[name]["rows"] == ROWS[name]
    record = json.loads((out / "result.json").read_text())
    assert len(record["rows"]) == ROWS[name] == len(read_csv(out / f"{name}.csv"))
    assert [f["name"] for f in record["figures"]] == FIGURES[name]
    report = (out / "report.md").read_text()
    for fig in FIGURES[name]:
        assert (out / f"{fig}.png").read_bytes()[:4] == b"\x89PNG"
        assert f"]({fig}.png)" in report and f"]({fig}.csv)" in report
        assert read_csv(out / f"{fig}.csv")


@pytest.mark.parametrize("name", ["backbones", "noise", "sensitivity", "partitions"])
def test_reported_figures_are_the_metrics_of_the_top_k_dumps(outputs, name):
    out = outputs[0] / name
    rows = read_csv(out / f"{name}.csv")
    assert len({r["dump"] for r in rows}) == len(rows)  # one dump per reported point
    for row in rows:
        hr, ndcg = from_dump(out / row["dump"])
        assert float(row["hr@10"]) == pytest.approx(hr, abs=1e-12)
        assert float(row["ndcg@10"]) == pytest.approx(ndcg, abs=1e-12)
    for fig in FIGURES[name]:  # what each figure plots is what the table says
        for plotted in read_csv(out / f"{fig}.csv"):
            if "dump" in plotted:
                same = [r for r in rows if r["dump"] == plotted["dump"]]
                assert same and all(float(plotted[k]) == float(same[0][k]) for k in ("hr@10", "ndcg@10"))


def test_long_tail_groups_recompute_from_the_dumps(outputs, analysis_inputs):
    out = outputs[0] / "longtail"
    rows = read_csv(out / "longtail_groups.csv")
    data = analysis_inputs["data"]
    items = pq.read_table(data / "items.parquet").column("raw_id").to_pylist()
    train = pq.read_table(data / "train.parquet").column("target").to_numpy()
    counts = np.bincount(train, minlength=len(items))
    for model in ("backbone", "raserec"):
        table = pq.read_table(out / "dumps" / f"longtail-{model}.parquet")
        pop = counts[[items.index(t) for t in table.column("target").to_pylist()]]
        ranks = table.column("target_rank").to_numpy().astype(float)
        order = np.argsort(pop, kind="stable")
        groups = np.array_split(ranks[order], 5)  # 30 test users: five groups of 6
        for g, r in enumerate(groups):
            row = next(x for x in rows if x["model"] == model and x["group"] == f"g{g + 1}")
            assert int(row["users"]) == len(r) == 6
            assert float(row["hr@10"]) == pytest.approx((r <= 10).mean())
        head = next(x for x in rows if x["model"] == model and x["group"] == "head")
        tail = next(x for x in rows if x["model"] == model and x["group"] == "tail")
        assert int(head["users"]) + int(tail["users"]) == len(ranks)


def test_what_did_not_change_is_not_retrained(outputs, analyze, analysis_inputs, tmp_path):
    cache = analysis_inputs["cache"]
    # the given models are reused: the sasrec-bsa variant is the stage-1 model (the default's blocks), top_k=4 /
    # alpha 0.5 the fine-tuned one
    backbones = read_csv(outputs[0] / "backbones" / "backbones.csv")
    assert backbones[0]["variant"] == "sasrec-bsa"
    pretrains = {p.name for p in cache.glob("pretrain-*")}
    assert len(pretrains) == 5 + 1  # five other backbones, the noisy training data
    before = sorted(p.name for p in cache.iterdir())
    rc, _, err = analyze("sensitivity", tmp_path / "again", *OPTIONS["sensitivity"])
    assert rc == 0, err
    assert sorted(p.name for p in cache.iterdir()) == before
    assert read_csv(tmp_path / "again" / "sensitivity.csv")[0]["hr@10"] == \
        read_csv(outputs[0] / "sensitivity" / "sensitivity.csv")[0]["hr@10"]


def test_noise_in_the_test_inputs_changes_the_ranked_inputs_not_the_targets(outputs):
    dumps = outputs[0] / "noise" / "dumps"
    clean, noisy = (pq.read_table(dumps / f"noise-test-{s}-raserec.parquet") for s in ("0", "0.3"))
    assert clean.column("target").to_pylist() == noisy.column("target").to_pylist()
    assert clean.column("items").to_pylist() != noisy.column("items").to_pylist()


def test_nprobe_reports_retrieval_time(outputs):
    rows = [r for r in read_csv(outputs[0] / "sensitivity" / "sensitivity.csv") if r["param"] == "nprobe"]
    assert [int(r["value"]) for r in rows] == [1, 3] and all(float(r["retrieval_s"]) > 0 for r in rows)


def test_report_gathers_the_analyses_beside_the_published_numbers(outputs, raserec, tmp_path):
    root, _ = outputs
    target = tmp_path / "docs" / "analyses.md"
    rc, result, err = raserec(["report", *(str(root / n) for n in OPTIONS), "--output", str(target)])
    assert rc == 0, err
    assert result["analyses"] == list(OPTIONS)
    text = target.read_text()
    assert "| Beauty | duorec | +raserec | 0.0860 | 0.0463 | paper, main table |" in text
    links = [line[line.index("](") + 2 : -1] for line in text.splitlines() if line.startswith("![")]
    assert len(links) == sum(len(f) for f in FIGURES.values())
    assert all((target.parent / link).resolve().is_file() for link in links)


def test_an_option_of_another_analysis_is_an_error(analyze, tmp_path):
    rc, _, err = analyze("longtail", tmp_path / "x", "--shares", "0.1")
    assert rc == 2 and "analysis longtail: unknown option 'shares'" in err
    assert not (tmp_path / "x").exists()


def test_the_analysis_is_logged_to_mlflow(analyze, tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    rc, result, err = analyze("longtail", tmp_path / "lt", "--tracking-uri", uri, "--experiment", "analyses")
    assert rc == 0, err
    client = MlflowClient(uri)
    run = client.get_run(result["mlflow_run_id"])
    assert run.data.tags["raserec.analysis"] == "longtail" and run.info.status == "FINISHED"
    assert run.data.metrics["raserec_g1_hr_at_10"] == pytest.approx(float(read_csv(tmp_path / "lt" / "longtail.csv")[8]["hr@10"]))
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.md", "longtail.csv", "longtail_groups.png", "longtail_groups.csv"} <= names


def test_an_output_folder_holding_other_files_is_refused(analyze, tmp_path):
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    rc, _, err = analyze("longtail", out)
    assert rc == 2 and "holds 'thesis.tex', which no analysis writes" in err
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]
