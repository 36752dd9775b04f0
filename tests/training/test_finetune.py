"""Stage 2, ``raserec finetune`` end to end on the tiny model: only the RAM trains, the output folder is a
self-contained model, a bank of another encoder is refused, and resume after a crash is exact."""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("faiss")

from crash_helpers import crash_after_checkpoint, crash_in_epoch  # noqa: E402

from raserec_core.cli.main import main  # noqa: E402
from raserec_core.models.checkpoint import file_sha256  # noqa: E402
from raserec_core.models.ram import RAM, RAMConfig  # noqa: E402

FINETUNE = ["finetune.epochs=3", "finetune.batch_size=32", "finetune.top_k=4", "finetune.inner_size=32",
            "finetune.lr=0.1"]
TIMES = ("train_time", "valid_time")


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def same_weights(a, b) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def history(out):
    return [{k: v for k, v in r.items() if k not in TIMES} for r in json.loads((out / "history.json").read_text())]


@pytest.fixture(scope="module")
def ft_args(tiny_args):
    return tiny_args(*FINETUNE)


@pytest.fixture(scope="module")
def bank_dir(tmp_path_factory, wide_dataset_dir, trained_model_dir, tiny_args):
    out = tmp_path_factory.mktemp("ft_bank") / "bank"
    assert main(["index", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--output", str(out),
                 "--index-type", "flat", *tiny_args()]) == 0
    return out


def finetune_cmd(data, model, bank, out, args) -> list[str]:
    return ["finetune", "--data", str(data), "--model", str(model), "--memory", str(bank), "--output", str(out), *args]


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, wide_dataset_dir, trained_model_dir, bank_dir, ft_args):
    """Run A: an uninterrupted fine-tuning; returns its folder and the printed metrics."""
    out = tmp_path_factory.mktemp("ft_a") / "a"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(finetune_cmd(wide_dataset_dir, trained_model_dir, bank_dir, out, ft_args)) == 0
    return out, json.loads(printed.getvalue())


def test_encoder_is_byte_identical_and_recorded(finetuned, trained_model_dir):
    out, _ = finetuned
    assert (out / "encoder.pt").read_bytes() == (trained_model_dir / "encoder.pt").read_bytes()
    stage1 = json.loads((trained_model_dir / "model.json").read_text())
    manifest = json.loads((out / "model.json").read_text())
    assert manifest["kind"] == "raserec"
    assert manifest["encoder_sha256"] == file_sha256(trained_model_dir / "encoder.pt") == stage1["encoder_sha256"]
    assert manifest["encoder"] == stage1["encoder"]
    assert manifest["dataset_fingerprint"] == stage1["dataset_fingerprint"]


def test_only_the_ram_changes(finetuned):
    out, _ = finetuned
    manifest = json.loads((out / "model.json").read_text())
    cfg = RAMConfig.from_record(manifest["ram"])
    assert (cfg.hidden_size, cfg.inner_size, cfg.top_k, cfg.alpha, cfg.beta, cfg.dropout) == (16, 32, 4, 0.5, 1.0, 0.5)
    torch.manual_seed(2020)  # the config's seed: the RAM the run started from
    initial = RAM(cfg).state_dict()
    trained = weights(out / "ram.pt")
    assert trained.keys() == initial.keys()
    changed = {k for k in initial if not torch.equal(initial[k], trained[k])}
    assert any(k.startswith("seq_tar.") for k in changed)
    # beta = 1: the tar->seq channel gets no gradient, so Adam never moves it
    assert not any(k.startswith("tar_seq.") for k in changed)
    # the best epoch's weights, with the seen-item offset calibrated after training (the default)
    best = weights(out / "best.pt")
    assert all(torch.equal(best[k], trained[k]) for k in best if k != "seen_offset")
    assert float(best["seen_offset"]) == 0.0 and float(trained["seen_offset"]) == manifest["seen_offset"] < 0
    assert manifest["ram_sha256"] == file_sha256(out / "ram.pt")
    assert manifest["n_trainable_parameters"] == sum(v.numel() for k, v in initial.items() if k != "seen_offset")


def test_output_folder_is_self_contained(finetuned, wide_dataset_dir, bank_dir, tmp_path):
    import yaml

    from raserec_core.recommender import Recommender

    out, _ = finetuned
    names = {p.name for p in out.iterdir()}
    assert {"items.parquet", "users.parquet", "encoder.pt", "ram.pt", "model.json", "config.yaml", "metrics.json",
            "history.json", "checkpoint.pt", "best.pt"} <= names
    for name in ("items.parquet", "users.parquet"):
        assert (out / name).read_bytes() == (wide_dataset_dir / name).read_bytes()
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["finetune"]["top_k"] == 4 and cfg["finetune"]["epochs"] == 3 and cfg["finetune"]["lr"] == 0.1
    # a copy of the folder and the bank, away from the dataset and the stage-1 model, serves recommendations
    shutil.copytree(out, tmp_path / "model")
    shutil.copytree(bank_dir, tmp_path / "bank")
    rec = Recommender.load(tmp_path / "model", tmp_path / "bank", "cpu")
    items, scores = rec.recommend([["3", "4", "5"], ["nope"]], ["3", None], k=5)
    assert len(items[0]) == 5 and items[1] == [] and scores[1] == []
    assert all(s1 >= s2 for s1, s2 in zip(scores[0], scores[0][1:]))
    assert set(items[0]) <= set(rec.item_ids[1:].tolist())
    assert rec.top_k == 4 and rec.ram is not None


def test_metrics_cover_both_splits(finetuned):
    out, printed = finetuned
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == printed
    for split in ("valid", "test"):
        for m in ("hr", "ndcg", "mrr"):
            for k in (5, 10, 20, 50):
                assert 0.0 <= metrics[f"{split}/{m}@{k}"] <= 1.0
    assert metrics["test/hr@5"] <= metrics["test/hr@10"] <= metrics["test/hr@50"]
    manifest = json.loads((out / "model.json").read_text())
    assert manifest["epochs_run"] == 3 and 1 <= manifest["best_epoch"] <= 3
    assert manifest["memory"] == {"index_type": "flat", "entries": 150}
    assert manifest["retrieval"] == {"top_k": 4, "candidate_factor": 4, "channel2_retrieval": "shared",
                                     "index_type": "flat", "nlist": 128, "nprobe": 1, "pq_m": 8}
    # both protocols, named; the usual keys follow eval.mask_history (true by default: seen items excluded)
    assert metrics["eval.mask_history"] is True
    for key in ("valid/hr@10", "test/ndcg@10", "test/mrr@50"):
        split, name = key.split("/")
        assert metrics[key] == metrics[f"{split}/seen_excluded/{name}"]
        assert metrics[f"{split}/seen_kept/{name}"] <= metrics[key]
    hist = history(out)
    assert [r["epoch"] for r in hist] == [1, 2, 3]
    assert max(r["valid/ndcg@10"] for r in hist) == hist[manifest["best_epoch"] - 1]["valid/ndcg@10"]
    # validation at the best epoch is what metrics.json reports
    assert metrics["valid/ndcg@10"] == pytest.approx(hist[manifest["best_epoch"] - 1]["valid/ndcg@10"])


def test_a_ram_that_does_not_beat_the_encoder_falls_back_to_it(wide_dataset_dir, trained_model_dir, bank_dir,
                                                               tiny_args, tmp_path):
    from raserec_core.recommender import Recommender

    out = tmp_path / "fallback"
    # one epoch at lr 10 wrecks the RAM, so the encoder alone wins on validation; no seen-item offset, so
    # that the seen-kept ranking too is the encoder's
    args = tiny_args(*FINETUNE, "finetune.epochs=1", "finetune.lr=10", "finetune.encoder_fallback=true",
                     "finetune.history_bias=none")
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(finetune_cmd(wide_dataset_dir, trained_model_dir, bank_dir, out, args)) == 0
    manifest = json.loads((out / "model.json").read_text())
    chosen = manifest["encoder_fallback"]
    assert chosen["used"] is True and chosen["metric"] == "valid/ndcg@10" and chosen["encoder"] >= chosen["ram"]
    assert manifest["ram"]["alpha"] == 1.0
    # the model now ranks exactly as its encoder: the stage-1 model's metrics, both splits, both protocols
    stage1 = json.loads((trained_model_dir / "metrics.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert chosen["encoder"] == stage1["valid/ndcg@10"]
    for key in ("valid/hr@10", "test/hr@10", "test/ndcg@10", "test/seen_kept/ndcg@10", "test/mrr@50"):
        assert metrics[key] == stage1[key], key
    served = Recommender.load(out, bank_dir, "cpu")
    assert served.retrievers == ()  # h_aug = h: nothing is retrieved for it
    alone = Recommender(served.encoder, served.item_ids, served.max_len)  # no RAM: the encoder's ranking
    queries = ([["3", "4", "5"], ["7", "8"]], ["3", "9"])
    assert served.recommend(*queries, k=5) == alone.recommend(*queries, k=5)


def test_a_ram_that_beats_the_encoder_is_kept():
    from raserec_core.training.finetune import select_over_encoder

    ram = RAM(RAMConfig(hidden_size=8, inner_size=16, top_k=2))
    calls = []

    def validate():  # the encoder alone scores 0.2 (called with alpha 1)
        calls.append(ram.cfg.alpha)
        return {"valid/ndcg@10": 0.2}

    assert select_over_encoder(ram, validate, "valid/ndcg@10", 0.3) == {
        "used": False, "metric": "valid/ndcg@10", "encoder": 0.2, "ram": 0.3}
    assert calls == [1.0] and ram.cfg.alpha == 0.5
    assert select_over_encoder(ram, validate, "valid/ndcg@10", 0.2)["used"] is True and ram.cfg.alpha == 1.0


def test_a_ram_with_alpha_one_returns_the_user_representation_exactly():
    ram = RAM(RAMConfig(hidden_size=8, inner_size=16, top_k=2, alpha=1.0)).eval()
    h, S, T = torch.randn(3, 8), torch.randn(3, 2, 8), torch.randn(3, 2, 8)
    assert torch.equal(ram(h, S, T, torch.ones(3, 2, dtype=torch.bool)), h)


def test_encoder_and_item_table_are_frozen_in_memory(wide_dataset_dir, trained_model_dir, bank_dir, tmp_path):
    from raserec_core.config import load_config
    from raserec_core.data import read_dataset
    from raserec_core.memory.bank import load_bank
    from raserec_core.models.checkpoint import load_encoder
    from raserec_core.training.finetune import finetune

    cfg = load_config(None, ["model.hidden_size=16", "finetune.epochs=1", "finetune.batch_size=64",
                             "finetune.top_k=4", "finetune.inner_size=32", "finetune.lr=0.1"])
    encoder, manifest = load_encoder(trained_model_dir, "cpu")
    encoder.train()  # finetune must switch it to eval itself
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    metrics = finetune(read_dataset(wide_dataset_dir), encoder, manifest, load_bank(bank_dir), cfg, tmp_path / "ft", "cpu")
    after = encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in encoder.parameters())
    assert not encoder.training
    assert set(metrics) >= {"valid/hr@10", "test/hr@10", "test/ndcg@10"}
    assert not any(k.startswith(("item", "encoder")) for k in weights(tmp_path / "ft" / "ram.pt"))


def test_bank_of_another_encoder_is_an_error(wide_dataset_dir, trained_model_dir, ft_args, tmp_path, capsys):
    # another stage-1 model: the same architecture with perturbed weights (and its own hash)
    other = tmp_path / "other_model"
    shutil.copytree(trained_model_dir, other)
    state = weights(other / "encoder.pt")
    torch.save({k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}, other / "encoder.pt")
    manifest = json.loads((other / "model.json").read_text())
    manifest["encoder_sha256"] = file_sha256(other / "encoder.pt")
    (other / "model.json").write_text(json.dumps(manifest))
    other_bank = tmp_path / "other_bank"
    assert main(["index", "--data", str(wide_dataset_dir), "--model", str(other), "--output", str(other_bank),
                 "--index-type", "flat", *ft_args]) == 0
    capsys.readouterr()

    out = tmp_path / "ft"
    assert main(finetune_cmd(wide_dataset_dir, trained_model_dir, other_bank, out, ft_args)) == 2
    err = capsys.readouterr().err
    assert f"{other_bank}: memory bank built by another encoder ({manifest['encoder_sha256'][:12]}" in err
    assert str(trained_model_dir) in err and "rebuild it with 'raserec index'" in err
    assert not out.exists()


def test_rerun_of_a_finished_run_does_nothing_and_a_changed_config_is_refused(
    finetuned, wide_dataset_dir, trained_model_dir, bank_dir, ft_args, tiny_args, capsys
):
    out, printed = finetuned
    before = (out / "ram.pt").read_bytes()
    capsys.readouterr()
    assert main(finetune_cmd(wide_dataset_dir, trained_model_dir, bank_dir, out, ft_args)) == 0
    assert json.loads(capsys.readouterr().out) == printed
    assert (out / "ram.pt").read_bytes() == before
    assert main(finetune_cmd(wide_dataset_dir, trained_model_dir, bank_dir, out,
                             tiny_args(*FINETUNE, "finetune.alpha=0.3"))) == 2
    assert "holds a run with another config (changed: finetune.alpha)" in capsys.readouterr().err


def _crash_in_epoch(monkeypatch, epoch):
    import raserec_core.training.loop as loop

    crash_in_epoch(monkeypatch, loop, "random_batches", epoch)


def _crash_after_checkpoint(monkeypatch, epoch):
    crash_after_checkpoint(monkeypatch, epoch)


@pytest.mark.parametrize("crash", [lambda m: _crash_in_epoch(m, 2), lambda m: _crash_after_checkpoint(m, 3)],
                         ids=["in-epoch-2", "after-last-checkpoint"])
def test_resume_after_a_crash_gives_identical_ram_weights(
    crash, finetuned, wide_dataset_dir, trained_model_dir, bank_dir, ft_args, tmp_path
):
    out_a, _ = finetuned
    out = tmp_path / "b"
    cmd = finetune_cmd(wide_dataset_dir, trained_model_dir, bank_dir, out, ft_args)
    with pytest.MonkeyPatch.context() as m:
        crash(m)
        with pytest.raises(RuntimeError, match="simulated crash"):
            main(cmd)
    assert (out / "checkpoint.pt").exists()
    assert not (out / "metrics.json").exists() and not (out / "ram.pt").exists()
    torch.manual_seed(12345)  # the restarted process has another global RNG state
    assert main(cmd) == 0
    assert same_weights(out_a / "ram.pt", out / "ram.pt")
    assert same_weights(out_a / "best.pt", out / "best.pt")
    assert (out_a / "metrics.json").read_text() == (out / "metrics.json").read_text()
    assert history(out) == history(out_a)
    assert (out / "encoder.pt").read_bytes() == (trained_model_dir / "encoder.pt").read_bytes()
