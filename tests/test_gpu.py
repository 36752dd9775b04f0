"""The CUDA paths end to end: train, index, fine-tune, evaluate and serve on a GPU, and agree with the CPU.

Deselected by default (marker ``gpu``); run where a GPU is: ``pytest -m gpu``. CPU and GPU kernels round
differently, so rankings are compared allowing one swapped neighbour per user, not bit for bit.
"""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("faiss")

from raserec_core.cli.main import main  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

FINETUNE = ["finetune.epochs=2", "finetune.batch_size=32", "finetune.top_k=4", "finetune.inner_size=32"]


def run(args: list[str]) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(args) == 0
    return json.loads(out.getvalue()) if out.getvalue().strip() else {}


def close(a: dict, b: dict, n_users: int) -> None:
    """Metric dicts equal up to one rank flip per split: CPU and GPU round differently."""
    assert a.keys() == b.keys()
    for key in a:
        assert abs(a[key] - b[key]) <= 1 / n_users + 1e-6, key


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory, wide_dataset_dir, tiny_args):
    """Pre-train, index and fine-tune on CUDA; returns the folders."""
    root = tmp_path_factory.mktemp("gpu")
    cuda = lambda *extra: [*tiny_args(*extra), "--device", "cuda"]
    data = ["--data", str(wide_dataset_dir)]
    run(["pretrain", *data, "--output", str(root / "enc"), *cuda("pretrain.epochs=2")])
    run(["index", *data, "--model", str(root / "enc"), "--output", str(root / "bank"), "--index-type", "flat", *cuda()])
    run(["finetune", *data, "--model", str(root / "enc"), "--memory", str(root / "bank"), "--output", str(root / "ft"),
         *cuda(*FINETUNE)])
    return root


def test_a_cuda_trained_model_evaluates_alike_on_both_devices(cuda_run, wide_dataset_dir, tiny_args):
    n_users = json.loads((wide_dataset_dir / "stats.json").read_text())["instances"]["test"]
    for model, memory in (("enc", []), ("ft", ["--memory", str(cuda_run / "bank")])):
        args = ["evaluate", "--data", str(wide_dataset_dir), "--model", str(cuda_run / model), *memory, "--split", "both"]
        on_cuda = run([*args, *tiny_args(), "--device", "cuda"])
        on_cpu = run([*args, *tiny_args()])
        assert all(math.isfinite(v) for v in on_cuda.values())
        close(on_cuda, on_cpu, n_users)
    recorded = json.loads((cuda_run / "ft" / "metrics.json").read_text())
    close({k: v for k, v in recorded.items() if k.startswith("test/")},
          {k: v for k, v in on_cuda.items() if k.startswith("test/")}, n_users)


def test_the_recommender_serves_on_cuda_as_on_cpu(cuda_run, wide_dataset_dir):
    import pyarrow.parquet as pq

    from raserec_core.recommender import Recommender

    items = pq.read_table(wide_dataset_dir / "items.parquet").column("raw_id").to_pylist()[1:]
    histories = [items[i : i + 4] for i in range(0, 40, 2)]
    users = [None] * len(histories)
    served = {
        d: Recommender.load(cuda_run / "ft", cuda_run / "bank", d).recommend(histories, users, k=5)[0]
        for d in ("cuda", "cpu")
    }
    same = sum(a == b for a, b in zip(served["cuda"], served["cpu"]))
    assert all(len(r) == 5 for r in served["cuda"])
    assert same >= len(histories) - 2


def test_graphed_training_steps_train_as_eager_ones(wide_dataset_dir, tiny_args, tmp_path):
    """Without dropout, replayed CUDA-graph steps reach the weights eager steps reach (up to rounding:
    the graph pads every batch to max_len, the eager step to its longest window)."""
    no_dropout = ["model.hidden_dropout=0", "model.attn_dropout=0", "pretrain.epochs=2"]
    weights = {}
    for graph in ("true", "false"):
        out = tmp_path / graph
        run(["pretrain", "--data", str(wide_dataset_dir), "--output", str(out),
             *tiny_args(*no_dropout, f"pretrain.cuda_graph={graph}"), "--device", "cuda"])
        history = json.loads((out / "history.json").read_text())
        if graph == "true":
            assert history[-1]["graph_replays"] > 0
        else:
            assert "graph_replays" not in history[-1]
        weights[graph] = torch.load(out / "encoder.pt", map_location="cpu")
    for name, w in weights["true"].items():
        assert torch.allclose(w, weights["false"][name], atol=1e-4, rtol=1e-3), name


def test_a_beauty_sized_epoch_of_the_default_model_takes_at_most_two_seconds(tmp_path):
    """The default configuration on data of Beauty's size (22,363 users, 12,101 items, about 134k training
    prefixes): the second epoch (the first warms up and captures the graph) trains in ≤ 2 s."""
    from toy_data import make_seq_lines

    src = tmp_path / "beauty_sized.txt"
    src.write_text(make_seq_lines(22363, 12101, seed=3, min_len=5, max_len=13))
    run(["preprocess", "--input", str(src), "--output", str(tmp_path / "ds"), "--k-core", "0"])
    run(["pretrain", "--data", str(tmp_path / "ds"), "--output", str(tmp_path / "enc"), "--device", "cuda",
         "--set", "pretrain.epochs=2"])
    history = json.loads((tmp_path / "enc" / "history.json").read_text())
    assert history[-1]["graph_replays"] > 0
    assert history[-1]["train_time"] <= 2.0, history[-1]
