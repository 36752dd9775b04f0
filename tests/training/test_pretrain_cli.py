"""``raserec pretrain`` end to end on a tiny dataset: the model folder, resume after a crash, reruns."""

from __future__ import annotations

import json
import logging

import pytest

torch = pytest.importorskip("torch")

from crash_helpers import crash_after_checkpoint, crash_in_epoch  # noqa: E402

from raserec_core.cli.main import main  # noqa: E402
from raserec_core.data import read_dataset  # noqa: E402
from raserec_core.models.checkpoint import file_sha256, load_encoder  # noqa: E402

TIMES = ("train_time", "valid_time")


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def same_weights(a, b) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def history(out):
    return [{k: v for k, v in r.items() if k not in TIMES} for r in json.loads((out / "history.json").read_text())]


def test_model_folder_contents(trained_model_dir, wide_dataset_dir):
    out = trained_model_dir
    names = {p.name for p in out.iterdir()}
    assert {"encoder.pt", "model.json", "metrics.json", "config.yaml", "checkpoint.pt", "best.pt",
            "history.json"} <= names
    manifest = json.loads((out / "model.json").read_text())
    ds = read_dataset(wide_dataset_dir)
    assert manifest["kind"] == "encoder"
    assert manifest["encoder"]["backbone"] == "sasrec"
    assert manifest["encoder"]["n_items"] == ds.n_items == 61
    assert manifest["encoder"]["max_len"] == 5
    assert manifest["encoder"]["model"]["hidden_size"] == 16
    assert manifest["encoder_sha256"] == file_sha256(out / "encoder.pt")
    assert manifest["dataset_fingerprint"] == ds.fingerprint
    assert manifest["epochs_run"] == 2 and manifest["best_epoch"] in (1, 2)
    encoder, _ = load_encoder(out, "cpu")
    assert manifest["n_parameters"] == sum(p.numel() for p in encoder.parameters())
    assert same_weights(out / "encoder.pt", out / "best.pt")

    metrics = json.loads((out / "metrics.json").read_text())
    for split in ("valid", "test"):
        for m in ("hr", "ndcg", "mrr"):
            for k in (5, 10, 20, 50):
                assert 0.0 <= metrics[f"{split}/{m}@{k}"] <= 1.0
    assert metrics["test/hr@5"] <= metrics["test/hr@10"] <= metrics["test/hr@50"]
    assert metrics["test/ndcg@10"] <= metrics["test/hr@10"]
    assert [r["epoch"] for r in json.loads((out / "history.json").read_text())] == [1, 2]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, small_dataset_dir, tiny_args):
    """Run A: 3 epochs without interruption (DuoRec us_x, dropout on)."""
    out = tmp_path_factory.mktemp("run_a") / "a"
    torch.manual_seed(0)
    args = tiny_args("pretrain.epochs=3", "pretrain.batch_size=16")
    assert main(["pretrain", "--data", str(small_dataset_dir), "--output", str(out), *args]) == 0
    return out, args


def _crash_in_epoch(monkeypatch, epoch):
    import raserec_core.training.pretrain as pretrain

    crash_in_epoch(monkeypatch, pretrain, "window_batches", epoch)  # the default pretrain.batching (sequence)


def _crash_after_checkpoint(monkeypatch, epoch):
    crash_after_checkpoint(monkeypatch, epoch)


def crash_then_resume(data, out, args, crash):
    """Run B: crash (inside ``crash``'s patch), then rerun the same command in a 'new process'."""
    cmd = ["pretrain", "--data", str(data), "--output", str(out), *args]
    with pytest.MonkeyPatch.context() as m:
        crash(m)
        torch.manual_seed(0)  # same init as run A (see test_two_fresh_runs_with_one_seed_are_identical)
        with pytest.raises(RuntimeError, match="simulated crash"):
            main(cmd)
    assert (out / "checkpoint.pt").exists()
    assert not (out / "metrics.json").exists() and not (out / "encoder.pt").exists()
    torch.manual_seed(12345)  # the restarted process has another global RNG state
    assert main(cmd) == 0
    return out


@pytest.fixture(scope="module")
def resumed_after_last_checkpoint(tmp_path_factory, small_dataset_dir, uninterrupted):
    """Run B crashed right after the checkpoint of its last epoch (3), then resumed."""
    _, args = uninterrupted
    out = tmp_path_factory.mktemp("run_b") / "b"
    return crash_then_resume(small_dataset_dir, out, args, lambda m: _crash_after_checkpoint(m, 3))


def assert_same_run(out_a, out_b):
    assert same_weights(out_a / "encoder.pt", out_b / "encoder.pt")
    assert same_weights(out_a / "best.pt", out_b / "best.pt")
    assert (out_a / "metrics.json").read_text() == (out_b / "metrics.json").read_text()
    manifest_a = json.loads((out_a / "model.json").read_text())
    manifest_b = json.loads((out_b / "model.json").read_text())
    assert manifest_b["best_epoch"] == manifest_a["best_epoch"] and manifest_b["epochs_run"] == 3
    assert manifest_b["encoder_sha256"] == file_sha256(out_b / "encoder.pt")


def test_resume_after_a_crash_in_the_middle_equals_an_uninterrupted_run(uninterrupted, small_dataset_dir, tmp_path):
    out_a, args = uninterrupted
    out_b = crash_then_resume(small_dataset_dir, tmp_path / "b", args, lambda m: _crash_in_epoch(m, 2))
    assert_same_run(out_a, out_b)
    assert history(out_b) == history(out_a)


def test_resume_after_the_last_checkpoint_equals_an_uninterrupted_run(uninterrupted, resumed_after_last_checkpoint):
    assert_same_run(uninterrupted[0], resumed_after_last_checkpoint)


def test_resume_after_the_last_checkpoint_keeps_the_full_history(uninterrupted, resumed_after_last_checkpoint):
    assert history(resumed_after_last_checkpoint) == history(uninterrupted[0])


def _finished_run(small_dataset_dir, out, tiny_args):
    args = ["pretrain", "--data", str(small_dataset_dir), "--output", str(out),
            *tiny_args("pretrain.epochs=1", "pretrain.batch_size=16")]
    assert main(args) == 0
    return out, args


@pytest.fixture(scope="module")
def finished(small_dataset_dir, tmp_path_factory, tiny_args):
    """A finished 1-epoch run; the tests using it must leave it unchanged."""
    return _finished_run(small_dataset_dir, tmp_path_factory.mktemp("done") / "done", tiny_args)


def _mtimes(out):
    return {p.name: p.stat().st_mtime_ns for p in out.iterdir()}


def test_rerun_of_a_finished_output_changes_nothing(finished, capsys, caplog):
    out, args = finished
    before = _mtimes(out)
    enc_bytes = (out / "encoder.pt").read_bytes()
    capsys.readouterr()
    caplog.set_level(logging.INFO)
    assert main(args) == 0
    assert "already finished" in caplog.text
    assert json.loads(capsys.readouterr().out) == json.loads((out / "metrics.json").read_text())
    assert _mtimes(out) == before
    assert (out / "encoder.pt").read_bytes() == enc_bytes


def test_changed_config_for_an_existing_output_is_an_error(finished, capsys):
    out, args = finished
    before = _mtimes(out)
    capsys.readouterr()
    assert main([*args, "--set", "pretrain.lr=0.01", "--seed", "7"]) == 2
    err = capsys.readouterr().err
    assert str(out) in err
    assert "changed: pretrain.lr, seed" in err
    assert "--restart" in err
    assert _mtimes(out) == before


def test_eval_settings_are_not_part_of_the_run_identity(finished, capsys):
    out, args = finished
    before = _mtimes(out)
    capsys.readouterr()
    assert main([*args, "--set", "eval.batch_size=4"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads((out / "metrics.json").read_text())
    assert _mtimes(out) == before


def test_the_seen_item_protocol_is_part_of_the_run_identity(finished, capsys):
    """Early stopping selects by it, so a finished run under the other protocol is not reused."""
    out, args = finished
    before = _mtimes(out)
    capsys.readouterr()
    assert main([*args, "--set", "eval.mask_history=false"]) == 2
    assert "holds a run on other inputs (changed: eval.mask_history)" in capsys.readouterr().err
    assert _mtimes(out) == before


def test_early_stopping_and_final_metrics_follow_the_seen_item_setting(small_dataset_dir, tmp_path, tiny_args):
    out = tmp_path / "masked"
    assert main(["pretrain", "--data", str(small_dataset_dir), "--output", str(out),
                 *tiny_args("pretrain.epochs=2", "pretrain.batch_size=16", "eval.mask_history=true")]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["eval.mask_history"] is True
    for key in ("valid/ndcg@10", "test/hr@5", "test/mrr@20"):
        split, name = key.split("/")
        assert metrics[key] == metrics[f"{split}/seen_excluded/{name}"] >= metrics[f"{split}/seen_kept/{name}"]
    best = json.loads((out / "model.json").read_text())["best_epoch"]
    assert history(out)[best - 1]["valid/ndcg@10"] == metrics["valid/seen_excluded/ndcg@10"]


def test_restart_retrains_with_the_new_config(small_dataset_dir, tmp_path, tiny_args):
    out, args = _finished_run(small_dataset_dir, tmp_path / "done", tiny_args)
    old = _mtimes(out)["encoder.pt"]
    assert main([*args, "--set", "pretrain.epochs=2", "--restart"]) == 0
    manifest = json.loads((out / "model.json").read_text())
    assert manifest["epochs_run"] == 2
    assert "epochs: 2" in (out / "config.yaml").read_text()
    assert len(json.loads((out / "history.json").read_text())) == 2
    assert (out / "encoder.pt").stat().st_mtime_ns != old


def test_non_empty_output_without_a_run_is_refused(small_dataset_dir, tmp_path, tiny_args, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["pretrain", "--data", str(small_dataset_dir), "--output", str(out), *tiny_args()]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("objective", ["ce", "cl4srec"])
def test_other_objectives_and_backbones_train(small_dataset_dir, tmp_path, tiny_args, objective):
    out = tmp_path / objective
    backbone = "gru4rec" if objective == "ce" else "sasrec"
    assert main(["pretrain", "--data", str(small_dataset_dir), "--output", str(out),
                 *tiny_args("pretrain.epochs=1", f"pretrain.objective={objective}",
                            f"model.backbone={backbone}", "pretrain.batching=random")]) == 0
    manifest = json.loads((out / "model.json").read_text())
    assert manifest["encoder"]["backbone"] == backbone
    assert manifest["encoder"]["n_extra_tokens"] == (1 if objective == "cl4srec" else 0)
    assert "test/ndcg@10" in json.loads((out / "metrics.json").read_text())


def test_two_fresh_runs_with_one_seed_are_identical(small_dataset_dir, tmp_path, tiny_args):
    outs = []
    for i, process_seed in enumerate([1, 2]):  # two processes start with different global RNG states
        torch.manual_seed(process_seed)
        out = tmp_path / f"run{i}"
        assert main(["pretrain", "--data", str(small_dataset_dir), "--output", str(out),
                     *tiny_args("pretrain.epochs=1")]) == 0
        outs.append(out)
    assert same_weights(outs[0] / "encoder.pt", outs[1] / "encoder.pt")


def test_dataset_without_training_instances_is_a_clear_error(tmp_path, tiny_args, capsys):
    src = tmp_path / "three.txt"
    src.write_text("1 1 2 3\n2 2 3 1\n3 3 1 2\n")
    data = tmp_path / "ds"
    assert main(["preprocess", "--input", str(src), "--output", str(data), "--k-core", "0"]) == 0
    assert main(["pretrain", "--data", str(data), "--output", str(tmp_path / "m"), *tiny_args()]) == 2
    assert str(data) in capsys.readouterr().err


def test_encoder_reproduces_the_logged_test_metrics(trained_model_dir, wide_dataset_dir, tiny_args, capsys):
    assert main(["evaluate", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir),
                 "--split", "test", *tiny_args()]) == 0
    printed = json.loads(capsys.readouterr().out)
    logged = json.loads((trained_model_dir / "metrics.json").read_text())
    assert printed.pop("eval.mask_history") is logged["eval.mask_history"] is True
    assert printed == pytest.approx({k: v for k, v in logged.items() if k.startswith("test/")}, abs=1e-12)


def test_a_pipeline_style_rerun_resumes_in_the_work_folder(uninterrupted, small_dataset_dir, tmp_path, caplog):
    """Each pipeline run gets a new output folder; with ``work_root`` the interrupted training is found
    again by its config and inputs, resumed, and published to the new output."""
    from raserec_core import steps
    from raserec_core.config import load_config

    out_a, args = uninterrupted
    overrides = [value for flag, value in zip(args, args[1:]) if flag == "--set"]
    cfg = load_config(None, overrides)
    work_root = tmp_path / "checkpoints"
    with pytest.MonkeyPatch.context() as m:
        _crash_in_epoch(m, 2)
        torch.manual_seed(0)
        with pytest.raises(RuntimeError, match="simulated crash"):
            steps.pretrain(small_dataset_dir, tmp_path / "run1" / "model", cfg, torch.device("cpu"), work_root=work_root)
    (work,) = work_root.iterdir()
    assert work.name.startswith("pretrain-") and (work / "checkpoint.pt").exists()
    torch.manual_seed(12345)
    with caplog.at_level(logging.INFO, logger="raserec.train"):
        steps.pretrain(small_dataset_dir, tmp_path / "run2" / "model", cfg, torch.device("cpu"), work_root=work_root)
    assert "resuming after epoch 1" in caplog.text
    out = tmp_path / "run2" / "model"
    assert_same_run(out_a, out)
    assert not (out / "checkpoint.pt").exists()  # the resume state stays in the work folder
    # a third run finds the finished work folder: nothing is trained, the same model is published
    caplog.clear()
    with caplog.at_level(logging.INFO):
        steps.pretrain(small_dataset_dir, tmp_path / "run3" / "model", cfg, torch.device("cpu"), work_root=work_root)
    assert "already finished" in caplog.text
    assert_same_run(out_a, tmp_path / "run3" / "model")
    # another config trains in another folder
    other = load_config(None, [*overrides, "pretrain.epochs=1"])
    steps.pretrain(small_dataset_dir, tmp_path / "run4" / "model", other, torch.device("cpu"), work_root=work_root)
    assert len(list(work_root.iterdir())) == 2
