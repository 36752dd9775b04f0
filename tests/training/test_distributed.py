"""Data-parallel training (``--nproc-per-node``, torch.distributed.run, gloo on the CPU): two processes
train what one does, and a killed two-process run resumes to the run it would have been."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("faiss")

from raserec_core.cli.main import main  # noqa: E402
from raserec_core.training.distributed import launch_command  # noqa: E402

# No random draws while training (dropout off, full-softmax CE): two processes must match one. A global
# batch of 7 splits 4 + 3, so the weighting of uneven shards is covered.
DETERMINISTIC = ["model.hidden_dropout=0", "model.attn_dropout=0", "pretrain.objective=ce", "pretrain.epochs=3",
                 "pretrain.batch_size=7"]
# lr stays at its default: at a large one, Adam turns the float noise of near-zero gradients (summed in
# another order across ranks) into full-size steps of either sign.
FINETUNE = ["finetune.epochs=2", "finetune.batch_size=7", "finetune.top_k=4", "finetune.inner_size=32",
            "finetune.dropout=0"]


def weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_close_weights(a: Path, b: Path, atol: float) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=atol, rtol=0, msg=k)


def losses(out: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k.startswith("loss") or k.startswith("valid/")}
            for r in json.loads((out / "history.json").read_text())]


def assert_same_losses(a: Path, b: Path) -> None:
    la, lb = losses(a), losses(b)
    assert len(la) == len(lb) and la[0].keys() == lb[0].keys()
    for ra, rb in zip(la, lb):
        for k in ra:
            assert rb[k] == pytest.approx(ra[k], rel=1e-5, abs=1e-6), k


def pretrain(data: Path, out: Path, args: list[str], *extra: str) -> Path:
    assert main(["pretrain", "--data", str(data), "--output", str(out), *args, *extra]) == 0
    return out


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory, wide_dataset_dir, tiny_args):
    root = tmp_path_factory.mktemp("ddp")
    args = tiny_args(*DETERMINISTIC)
    return (pretrain(wide_dataset_dir, root / "one", args),
            pretrain(wide_dataset_dir, root / "two", args, "--nproc-per-node", "2"))


def test_two_processes_pretrain_the_losses_and_weights_of_one(one_and_two):
    one, two = one_and_two
    assert_same_losses(one, two)
    assert_close_weights(one / "encoder.pt", two / "encoder.pt", atol=1e-5)
    assert json.loads((two / "model.json").read_text())["epochs_run"] == 3
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in one_and_two)
    assert m2["test/ndcg@10"] == pytest.approx(m1["test/ndcg@10"], abs=1e-4)


def test_two_processes_finetune_the_losses_of_one(one_and_two, wide_dataset_dir, tiny_args, tmp_path):
    one, _ = one_and_two
    args = tiny_args(*FINETUNE)
    bank = tmp_path / "bank"
    assert main(["index", "--data", str(wide_dataset_dir), "--model", str(one), "--output", str(bank),
                 "--index-type", "flat", *args]) == 0
    runs = []
    for name, extra in (("one", []), ("two", ["--nproc-per-node", "2"])):
        out = tmp_path / name
        assert main(["finetune", "--data", str(wide_dataset_dir), "--model", str(one), "--memory", str(bank),
                     "--output", str(out), *args, *extra]) == 0
        runs.append(out)
    assert_same_losses(*runs)
    assert_close_weights(runs[0] / "ram.pt", runs[1] / "ram.pt", atol=1e-5)


def test_a_killed_two_process_run_resumes_to_the_uninterrupted_one(wide_dataset_dir, tiny_args, tmp_path):
    """Dropout on: each rank's masks come from its (seed, epoch, rank) stream, so a resumed run draws
    what the uninterrupted one drew. Rank 1 dies in epoch 2; torch.distributed.run stops rank 0."""
    args = tiny_args("pretrain.objective=ce", "pretrain.epochs=3", "pretrain.batch_size=7")
    whole = pretrain(wide_dataset_dir, tmp_path / "whole", args, "--nproc-per-node", "2")

    out = tmp_path / "killed"
    cmd = ["pretrain", "--data", str(wide_dataset_dir), "--output", str(out), *args]
    tests = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent),
                                                        os.environ.get("PYTHONPATH", "")])}
    crashed = subprocess.run(launch_command(2, "ddp_crash_worker", cmd), env=env, capture_output=True, text=True)
    assert crashed.returncode != 0
    assert "simulated crash" in crashed.stderr
    assert torch.load(out / "checkpoint.pt", weights_only=True)["state"]["epoch"] == 1
    assert not (out / "metrics.json").exists()

    assert main([*cmd, "--nproc-per-node", "2"]) == 0
    assert losses(out) == losses(whole)
    assert_close_weights(whole / "encoder.pt", out / "encoder.pt", atol=0)
    assert (out / "metrics.json").read_text() == (whole / "metrics.json").read_text()


def test_a_torchrun_worker_refuses_an_s3_output(small_dataset_dir, tiny_args, monkeypatch, capsys):
    """Each worker would write its own local stand-in of it; --nproc-per-node localizes it once instead."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["pretrain", "--data", str(small_dataset_dir), "--output", "s3://bucket/model", *tiny_args()]) == 2
    assert "needs a local --output that every worker shares" in capsys.readouterr().err
