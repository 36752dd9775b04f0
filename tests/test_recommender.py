"""The assembled recommender (``raserec_core.recommender``) end to end on the tiny model: a fine-tuned
model owns its retrieval settings, seen items follow one setting (``eval.mask_history``) on every path
with both protocols reported, and serving excludes a history exactly."""

from __future__ import annotations

import json
import math

import pytest
from cli_helpers import run

torch = pytest.importorskip("torch")
pytest.importorskip("faiss")

from raserec_core.cli.main import main  # noqa: E402

FINETUNE = ["finetune.epochs=3", "finetune.batch_size=32", "finetune.top_k=4", "finetune.inner_size=32",
            "finetune.lr=0.1"]
# Non-default retrieval settings the model must keep: every one of them changes what evaluate computes.
OWN = ["memory.nprobe=4", "finetune.beta=0.5", "finetune.channel2_retrieval=target"]
KS = (5, 10, 20, 50)
NAMES = [f"{m}@{k}" for m in ("hr", "ndcg", "mrr") for k in KS]


def metric_part(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if "/" in k}


@pytest.fixture(scope="module")
def ivf_bank(tmp_path_factory, wide_dataset_dir, trained_model_dir, tiny_args):
    """An IVF bank with 3 lists over the 150 training entries (nprobe then matters)."""
    out = tmp_path_factory.mktemp("rec_bank") / "ivf"
    rc, manifest = run(["index", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--output",
                        str(out), "--index-type", "ivf", "--nlist", "3", *tiny_args()])
    assert rc == 0 and manifest["index_type_built"] == "ivf" and manifest["nlist"] == 3 and manifest["nprobe"] == 1
    return out


@pytest.fixture(scope="module")
def own_model(tmp_path_factory, wide_dataset_dir, trained_model_dir, ivf_bank, tiny_args):
    """Fine-tuned with non-default nprobe, β and channel-2 retrieval; returns its folder and metrics. No
    seen-item offset: the default's calibrated one sinks the tiny data's seen items so far that both
    protocols rank alike."""
    out = tmp_path_factory.mktemp("rec_ft") / "ft"
    rc, metrics = run(["finetune", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--memory",
                       str(ivf_bank), "--output", str(out), *tiny_args(*FINETUNE, *OWN, "finetune.history_bias=none")])
    assert rc == 0
    return out, metrics


def evaluate(data, model, bank, tiny_args, *extra, topk=None, config=None):
    args = ["evaluate", "--data", str(data), "--model", str(model), *(["--memory", str(bank)] if bank else [])]
    args += ["--topk-output", str(topk)] if topk else []
    args += ["--config", str(config)] if config else []
    return run([*args, *tiny_args(*extra)])


def test_the_model_records_its_retrieval_settings(own_model):
    out, _ = own_model
    manifest = json.loads((out / "model.json").read_text())
    assert manifest["retrieval"] == {"top_k": 4, "candidate_factor": 4, "channel2_retrieval": "target",
                                     "index_type": "ivf", "nlist": 3, "nprobe": 4, "pq_m": 8}
    assert manifest["ram"]["beta"] == 0.5
    assert manifest["memory"] == {"index_type": "ivf", "entries": 150}


def test_plain_evaluate_reproduces_finetune_with_the_models_settings(own_model, ivf_bank, wide_dataset_dir,
                                                                    tiny_args, tmp_path):
    """Regression: evaluate took nprobe, β and the channel-2 retrieval from its own (default) config."""
    out, ft_metrics = own_model
    path = tmp_path / "metrics.json"
    rc, metrics = run(["evaluate", "--data", str(wide_dataset_dir), "--model", str(out), "--memory", str(ivf_bank),
                       "--metrics-output", str(path), *tiny_args()])
    assert rc == 0
    assert metric_part(metrics) == metric_part(ft_metrics)  # exactly: the same computation
    assert set(metric_part(metrics)) == {f"{s}/{p}{n}" for s in ("valid", "test")
                                         for p in ("", "seen_kept/", "seen_excluded/") for n in NAMES}
    assert "overrides" not in metrics and json.loads(path.read_text()) == metrics


def test_a_config_file_does_not_override_the_model(own_model, ivf_bank, wide_dataset_dir, tiny_args, tmp_path):
    out, ft_metrics = own_model
    config = tmp_path / "c.yaml"
    config.write_text("memory: {nprobe: 1}\nfinetune: {beta: 1.0, channel2_retrieval: shared}\n")
    rc, metrics = evaluate(wide_dataset_dir, out, ivf_bank, tiny_args, config=config)
    assert rc == 0 and metric_part(metrics) == metric_part(ft_metrics) and "overrides" not in metrics


def test_an_explicit_override_is_applied_and_recorded(own_model, ivf_bank, wide_dataset_dir, tiny_args, tmp_path):
    from raserec_core.recommender import Recommender

    out, ft_metrics = own_model
    path = tmp_path / "metrics.json"
    rc, metrics = run(["evaluate", "--data", str(wide_dataset_dir), "--model", str(out), "--memory", str(ivf_bank),
                       "--metrics-output", str(path), *tiny_args("memory.nprobe=1", "finetune.beta=1.0")])
    assert rc == 0
    assert metrics["overrides"] == {"memory.nprobe": 1, "finetune.beta": 1.0}
    assert json.loads(path.read_text())["overrides"] == metrics["overrides"]
    assert metric_part(metrics) != metric_part(ft_metrics)  # the settings matter on this bank
    rec = Recommender.load(out, ivf_bank, "cpu", {"memory.nprobe": 1, "finetune.beta": 1.0})
    assert rec.bank.index.index.nprobe == 1 and rec.ram.cfg.beta == 1.0 and len(rec.retrievers) == 1
    with pytest.raises(ValueError, match="finetune.lr: not a retrieval setting"):
        Recommender.load(out, ivf_bank, "cpu", {"finetune.lr": 0.1})


def test_serving_reads_the_models_settings(own_model, ivf_bank):
    from raserec_core.recommender import Recommender

    out, _ = own_model
    rec = Recommender.load(out, ivf_bank, "cpu")
    assert rec.bank.index.index.nprobe == 4 and rec.ram.cfg.beta == 0.5
    assert len(rec.retrievers) == 2  # channel 2 retrieves by target similarity


def test_a_bank_with_another_index_is_refused(own_model, wide_dataset_dir, trained_model_dir, tiny_args, tmp_path,
                                              capsys):
    out, _ = own_model
    flat = tmp_path / "flat"
    assert run(["index", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--output", str(flat),
                "--index-type", "flat", *tiny_args()])[0] == 0
    capsys.readouterr()
    assert main(["evaluate", "--data", str(wide_dataset_dir), "--model", str(out), "--memory", str(flat),
                 *tiny_args()]) == 2
    err = capsys.readouterr().err
    assert "index built as (index_type, nlist, pq_m) = ('flat', 128, 8)" in err and "('ivf', 3, 8)" in err


# Seen-item exclusion: one setting, every path, both protocols reported.


def recompute(rows: list[dict]) -> dict[str, float]:
    """Metrics from the dumped ranked lists alone (eval.topk = 50 covers every K)."""
    ranks = [r["items"].index(r["target"]) + 1 if r["target"] in r["items"] else math.inf for r in rows]
    per = {"hr": lambda x: 1.0, "ndcg": lambda x: 1.0 / math.log2(x + 1), "mrr": lambda x: 1.0 / x}
    return {f"{m}@{k}": sum(f(x) for x in ranks if x <= k) / len(ranks) for m, f in per.items() for k in KS}


def check_dump(metrics: dict, path, mask: bool, dataset_dir) -> None:
    import pyarrow.parquet as pq

    from raserec_core.data import read_dataset

    ds = read_dataset(dataset_dir)
    rows = pq.read_table(path).to_pylist()
    protocol = "seen_excluded" if mask else "seen_kept"
    assert metrics["eval.mask_history"] is mask
    seen_in_lists = 0
    for split in ("valid", "test"):
        part = [r for r in rows if r["split"] == split]
        for name, value in recompute(part).items():
            assert metrics[f"{split}/{name}"] == pytest.approx(value, abs=1e-12)
            assert metrics[f"{split}/{protocol}/{name}"] == metrics[f"{split}/{name}"]
        inst = ds.splits[split]
        for row, r in enumerate(part):
            seen_in_lists += bool({ds.item_ids[i] for i in inst.history(row).tolist()} & set(r["items"]))
    assert (seen_in_lists == 0) if mask else (seen_in_lists > 0)


@pytest.mark.parametrize("mask", [False, True])
def test_stage1_metrics_recomputed_from_the_dump(mask, trained_model_dir, wide_dataset_dir, tiny_args, tmp_path):
    path = tmp_path / "top.parquet"
    rc, metrics = evaluate(wide_dataset_dir, trained_model_dir, None, tiny_args, f"eval.mask_history={mask}",
                           topk=path)
    assert rc == 0
    check_dump(metrics, path, mask, wide_dataset_dir)


def test_raserec_metrics_recomputed_from_the_dump_and_changed_by_the_setting(own_model, ivf_bank, wide_dataset_dir,
                                                                              tiny_args, tmp_path):
    out, _ = own_model
    results = {}
    for mask in (False, True):
        path = tmp_path / f"top-{mask}.parquet"
        rc, results[mask] = evaluate(wide_dataset_dir, out, ivf_bank, tiny_args, f"eval.mask_history={mask}",
                                     topk=path)
        assert rc == 0
        check_dump(results[mask], path, mask, wide_dataset_dir)
    kept, excluded = results[False], results[True]
    assert kept["test/ndcg@10"] != excluded["test/ndcg@10"]
    # both protocols come from the same scores whichever is chosen
    named = lambda m: {k: v for k, v in m.items() if "/seen_" in k}  # noqa: E731
    assert named(kept) == named(excluded)


def test_finetune_early_stops_and_reports_under_the_setting(wide_dataset_dir, trained_model_dir, ivf_bank,
                                                           tiny_args, tmp_path):
    out = tmp_path / "ft"
    args = [*FINETUNE, *OWN, "eval.mask_history=true"]
    rc, metrics = run(["finetune", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--memory",
                       str(ivf_bank), "--output", str(out), *tiny_args(*args)])
    assert rc == 0 and metrics["eval.mask_history"] is True
    for split in ("valid", "test"):
        assert metrics[f"{split}/hr@10"] == metrics[f"{split}/seen_excluded/hr@10"]
    history = json.loads((out / "history.json").read_text())
    best = json.loads((out / "model.json").read_text())["best_epoch"]
    assert history[best - 1]["valid/hr@10"] == metrics["valid/seen_excluded/hr@10"]
    rc, again = evaluate(wide_dataset_dir, out, ivf_bank, tiny_args, "eval.mask_history=true")
    assert rc == 0 and metric_part(again) == metric_part(metrics)


def test_serving_excludes_the_history_exactly(own_model, ivf_bank):
    from raserec_core.recommender import Recommender

    out, _ = own_model
    rec = Recommender.load(out, ivf_bank, "cpu")
    # the second history is longer than max_len (5): its early items are masked too
    histories = [["3", "4", "5"], ["10", "11", "12", "13", "14", "15", "16"], ["nope"]]
    users = ["3", None, None]
    every, every_scores = rec.recommend(histories, users, k=60, exclude_history=False)
    items, scores = rec.recommend(histories, users, k=60)
    for h, a, sa, b, sb in zip(histories, every, every_scores, items, scores):
        assert list(zip(b, sb)) == [(i, s) for i, s in zip(a, sa) if i not in h]
    assert len(items[1]) == 60 - 7 and items[2] == []
    assert any(i in histories[0] for i in every[0][:10])  # precondition: the model would recommend seen items
    top5, _ = rec.recommend(histories, users, k=5)
    assert top5[:2] == [items[0][:5], items[1][:5]]


def test_settings_of_a_model_folder_written_before_they_moved_into_retrieval():
    from raserec_core.recommender import RetrievalSettings

    old = {"retrieval": {"top_k": 4, "candidate_factor": 2, "channel2_retrieval": "target"},
           "memory": {"index_type_requested": "ivf", "nlist": 3, "nprobe": 2, "entries": 150}}
    assert RetrievalSettings.from_manifest(old) == RetrievalSettings(4, 2, "target", "ivf", 3, 2, 8)
    new = {"retrieval": {**old["retrieval"], "index_type": "flat", "nlist": 128, "nprobe": 1, "pq_m": 8},
           "memory": {"index_type": "flat", "entries": 150}}
    assert RetrievalSettings.from_manifest(new) == RetrievalSettings(4, 2, "target", "flat", 128, 1, 8)


@pytest.fixture(scope="module")
def offset_model(tmp_path_factory, wide_dataset_dir, trained_model_dir, ivf_bank, tiny_args):
    """Fine-tuned with the learned seen-item offset (``finetune.history_bias``)."""
    out = tmp_path_factory.mktemp("rec_seen") / "ft"
    rc, metrics = run(["finetune", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--memory",
                       str(ivf_bank), "--output", str(out), *tiny_args(*FINETUNE, "finetune.history_bias=learned")])
    assert rc == 0
    return out, metrics


def test_the_learned_seen_offset_is_recorded_and_evaluate_reproduces_finetune(offset_model, ivf_bank,
                                                                             wide_dataset_dir, tiny_args):
    out, metrics = offset_model
    offset = json.loads((out / "model.json").read_text())["seen_offset"]
    state = torch.load(out / "ram.pt", map_location="cpu", weights_only=True)
    assert offset == pytest.approx(float(state["seen_offset"])) and offset < -0.1  # these users never come back
    rc, again = evaluate(wide_dataset_dir, out, ivf_bank, tiny_args)
    assert rc == 0 and metric_part(again) == metric_part(metrics)


def test_serving_applies_the_learned_seen_offset(offset_model, ivf_bank):
    from raserec_core.recommender import Recommender

    out, _ = offset_model
    rec = Recommender.load(out, ivf_bank, "cpu")
    offset = float(rec.seen_offset)
    histories = [["3", "4", "5"], ["10", "11", "12", "13", "14", "15", "16"]]  # max_len 5: 10 and 11 not input
    biased, biased_scores = rec.recommend(histories, k=60, exclude_history=False)  # every item
    with torch.no_grad():
        rec.ram.seen_offset.zero_()
    plain, plain_scores = rec.recommend(histories, k=60, exclude_history=False)
    for h, a, sa, b, sb in zip(histories, biased, biased_scores, plain, plain_scores):
        inputs = set(h[-5:])
        shift = {i: s for i, s in zip(a, sa)}
        for i, s in zip(b, sb):
            assert shift[i] == pytest.approx(s + (offset if i in inputs else 0.0), abs=1e-5)


@pytest.fixture(scope="module")
def calibrated_models(tmp_path_factory, wide_dataset_dir, trained_model_dir, ivf_bank, tiny_args):
    """The same fine-tuning twice: without a seen-item offset, and with it calibrated after training."""
    out = {}
    for mode in ("none", "calibrated"):
        folder = tmp_path_factory.mktemp(f"rec_{mode}") / "ft"
        rc, metrics = run(["finetune", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--memory",
                           str(ivf_bank), "--output", str(folder),
                           *tiny_args(*FINETUNE, f"finetune.history_bias={mode}")])
        assert rc == 0
        out[mode] = folder, metrics
    return out


def test_a_calibrated_offset_moves_only_the_rankings_with_seen_items(calibrated_models):
    """Set after training with the rest frozen: the training and every ranking without seen items are
    those of the model without an offset, to the last digit; the rankings with seen items differ."""
    (plain, plain_metrics), (calibrated, metrics) = calibrated_models["none"], calibrated_models["calibrated"]
    excluded = lambda m: {k: v for k, v in m.items() if "/seen_excluded/" in k}
    kept = lambda m: {k: v for k, v in m.items() if "/seen_kept/" in k}
    assert excluded(metrics) and excluded(metrics) == excluded(plain_metrics)
    assert kept(metrics) != kept(plain_metrics)
    state = torch.load(calibrated / "ram.pt", map_location="cpu", weights_only=True)
    plain_state = torch.load(plain / "ram.pt", map_location="cpu", weights_only=True)
    assert all(torch.equal(plain_state[k], state[k]) for k in plain_state)
    manifest = json.loads((calibrated / "model.json").read_text())
    record = manifest["seen_calibration"]
    assert manifest["seen_offset"] == float(state["seen_offset"])
    # Users of the tiny data never come back: a strongly negative offset, from the 150 training queries.
    assert record["repeat_targets"] == 0 and record["queries"] == 150 and manifest["seen_offset"] < -2.0
    assert json.loads((plain / "model.json").read_text())["seen_calibration"] is None


def test_evaluate_and_serving_apply_the_calibrated_offset(calibrated_models, ivf_bank, wide_dataset_dir, tiny_args):
    from raserec_core.recommender import Recommender

    out, metrics = calibrated_models["calibrated"]
    rc, again = evaluate(wide_dataset_dir, out, ivf_bank, tiny_args)
    assert rc == 0 and metric_part(again) == metric_part(metrics)
    rec = Recommender.load(out, ivf_bank, "cpu")
    offset = float(rec.seen_offset)
    assert offset == json.loads((out / "model.json").read_text())["seen_offset"]
    history = ["3", "4", "5"]
    items, scores = rec.recommend([history], k=60, exclude_history=False)  # every item of the tiny catalogue
    assert set(history) <= set(items[0])
    with torch.no_grad():
        rec.ram.seen_offset.zero_()
    plain = dict(zip(*[x[0] for x in rec.recommend([history], k=60, exclude_history=False)]))
    for i, s in zip(items[0], scores[0]):
        assert s == pytest.approx(plain[i] + (offset if i in history else 0.0), abs=1e-4)
