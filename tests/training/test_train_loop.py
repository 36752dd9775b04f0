"""The shared training loop on a toy regression: early stopping, best weights, bit-identical resume."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from raserec_core.models.dropout import Dropout  # noqa: E402
from raserec_core.training.loop import LoopConfig, fit  # noqa: E402

X = torch.linspace(-1, 1, 40)[:, None]
Y = 3 * X + 0.5
TIMES = ("train_time", "valid_time")


def make_module():
    torch.manual_seed(123)
    return torch.nn.Sequential(torch.nn.Linear(1, 8), Dropout(0.5), torch.nn.Linear(8, 1))


def loss_fn_for(module):
    def loss_fn(rows, generator):
        loss = torch.nn.functional.mse_loss(module(X[rows]), Y[rows])
        return loss, {"mse": loss.detach()}
    return loss_fn


def validate_for(module):
    def validate():
        with torch.no_grad():
            return {"valid/neg_mse": -float(torch.nn.functional.mse_loss(module(X), Y))}
    return validate


def cfg(epochs=4, patience=10, **decay):
    return LoopConfig(epochs=epochs, batch_size=8, lr=0.05, weight_decay=0.0, patience=patience,
                      valid_metric="valid/neg_mse", seed=5, **decay)


def strip_times(history):
    return [{k: v for k, v in r.items() if k not in TIMES} for r in history]


def test_fit_trains_records_history_and_saves_best(tmp_path):
    module = make_module()
    state = fit(module, loss_fn_for(module), len(X), validate_for(module), cfg(epochs=3), tmp_path)
    assert state.epoch == 3 and len(state.history) == 3
    assert [r["epoch"] for r in state.history] == [1, 2, 3]
    assert set(state.history[0]) == {"epoch", "lr", "loss", "loss_mse", "train_time", "valid_time", "valid/neg_mse"}
    assert state.history[-1]["loss"] < state.history[0]["loss"]
    assert state.best == max(r["valid/neg_mse"] for r in state.history)
    assert (tmp_path / "best.pt").exists() and (tmp_path / "checkpoint.pt").exists()
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert set(best) == set(module.state_dict())


def test_early_stopping_after_patience_bad_epochs(tmp_path):
    module = make_module()
    scores = iter([0.5, 0.4, 0.45, 0.3, 0.9])
    state = fit(module, loss_fn_for(module), len(X), lambda: {"valid/neg_mse": next(scores)},
                cfg(epochs=10, patience=3), tmp_path)
    assert state.stopped and state.epoch == 4
    assert state.best == 0.5 and state.best_epoch == 1 and state.bad_epochs == 3


def test_best_weights_are_those_of_the_best_epoch(tmp_path):
    module = make_module()
    snapshots = []
    scores = iter([0.1, 0.7, 0.2])

    def validate():
        snapshots.append({k: v.clone() for k, v in module.state_dict().items()})
        return {"valid/neg_mse": next(scores)}

    fit(module, loss_fn_for(module), len(X), validate, cfg(epochs=3), tmp_path)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert all(torch.equal(best[k], snapshots[1][k]) for k in best)
    assert not all(torch.equal(best[k], snapshots[2][k]) for k in best)


@pytest.fixture
def step_lrs(monkeypatch):
    """The learning rate of every optimizer step, in order (torch.optim.Adam.step wrapped)."""
    lrs: list[float] = []
    step = torch.optim.Adam.step

    def recording(self, *args, **kwargs):
        lrs.append(float(self.param_groups[0]["lr"]))
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording)
    return lrs


def test_learning_rate_steps_down_after_every_lr_patience_epochs_without_a_gain(tmp_path, step_lrs):
    module = make_module()
    scores = iter([0.5, 0.4, 0.45, 0.6, 0.3, 0.2, 0.1, 0.0, 0.1])
    used = []

    def validate():
        used.append(step_lrs[-1])  # the lr of the epoch's last step
        return {"valid/neg_mse": next(scores)}

    decay = cfg(epochs=20, patience=5, lr_decay=0.5, lr_patience=2)
    state = fit(module, loss_fn_for(module), len(X), validate, decay, tmp_path)
    # bad epochs 2, 3 (halved after 3), a gain at 4 resets the count, 5, 6 (halved), 7, 8 (halved), 9 stops
    assert [r["lr"] for r in state.history] == [0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.0125, 0.0125, 0.00625]
    assert used == [r["lr"] for r in state.history]
    assert state.stopped and state.epoch == 9 and state.lr_scale == 0.125


def test_the_loop_keeps_the_learning_rate_unless_told_to_decay_it(tmp_path, step_lrs):
    """LoopConfig's own default is a constant rate: stage 2 passes no decay and relies on it."""
    module = make_module()
    scores = iter([0.5, 0.4, 0.3, 0.2])
    fit(module, loss_fn_for(module), len(X), lambda: {"valid/neg_mse": next(scores)}, cfg(epochs=4), tmp_path)
    assert set(step_lrs) == {0.05}


def test_resume_after_a_crash_keeps_the_decayed_learning_rate(tmp_path):
    plateau = [0.5, 0.4, 0.3, 0.2, 0.1, 0.6]
    decay = cfg(epochs=6, lr_decay=0.5, lr_patience=1)
    a = make_module()
    scores_a = iter(plateau)
    state_a = fit(a, loss_fn_for(a), len(X), lambda: {"valid/neg_mse": next(scores_a)}, decay, tmp_path / "a")

    b = make_module()
    scores_b = iter(plateau[:3])  # the fourth validation raises StopIteration: the crash
    with pytest.raises(StopIteration):
        fit(b, loss_fn_for(b), len(X), lambda: {"valid/neg_mse": next(scores_b)}, decay, tmp_path / "b")
    b2 = make_module()
    scores_b2 = iter(plateau[3:])
    state_b = fit(b2, loss_fn_for(b2), len(X), lambda: {"valid/neg_mse": next(scores_b2)}, decay, tmp_path / "b")
    assert [r["lr"] for r in state_a.history] == [0.05, 0.05, 0.025, 0.0125, 0.00625, 0.003125]
    assert strip_times(state_b.history) == strip_times(state_a.history)
    assert all(torch.equal(v, b2.state_dict()[k]) for k, v in a.state_dict().items())


@pytest.mark.parametrize("crash_at", [1, 2, 3])
def test_resume_after_a_crash_is_bit_identical(tmp_path, monkeypatch, crash_at):
    a = make_module()
    state_a = fit(a, loss_fn_for(a), len(X), validate_for(a), cfg(), tmp_path / "a")

    b = make_module()
    calls = {"n": 0}

    def crashing_validate():
        calls["n"] += 1
        if calls["n"] == crash_at + 1:
            raise RuntimeError("simulated crash during validation")
        return validate_for(b)()

    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(b, loss_fn_for(b), len(X), crashing_validate, cfg(), tmp_path / "b")
    torch.manual_seed(999)  # the resumed process starts with another global RNG state
    b2 = make_module()  # fresh weights: the checkpoint must bring back everything
    with torch.no_grad():
        for p in b2.parameters():
            p.add_(1.0)
    state_b = fit(b2, loss_fn_for(b2), len(X), validate_for(b2), cfg(), tmp_path / "b")

    assert all(torch.equal(v, b2.state_dict()[k]) for k, v in a.state_dict().items())
    assert strip_times(state_b.history) == strip_times(state_a.history)
    assert (state_b.best, state_b.best_epoch, state_b.epoch) == (state_a.best, state_a.best_epoch, state_a.epoch)
    best_a = torch.load(tmp_path / "a" / "best.pt", weights_only=True)
    best_b = torch.load(tmp_path / "b" / "best.pt", weights_only=True)
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)


def test_finished_checkpoint_runs_no_more_epochs(tmp_path):
    module = make_module()
    fit(module, loss_fn_for(module), len(X), validate_for(module), cfg(epochs=2), tmp_path)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    called = []

    def must_not_train(rows, generator):
        called.append(rows)
        raise AssertionError("trained again")

    state = fit(module, must_not_train, len(X), validate_for(module), cfg(epochs=2), tmp_path)
    assert called == [] and state.epoch == 2
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_on_epoch_gets_the_growing_history(tmp_path):
    module = make_module()
    seen = []
    fit(module, loss_fn_for(module), len(X), validate_for(module), cfg(epochs=3), tmp_path,
        on_epoch=lambda h: seen.append(json.loads(json.dumps([r["epoch"] for r in h]))))
    # once per epoch, then once more at the end (covers a resume with nothing left to train)
    assert seen == [[1], [1, 2], [1, 2, 3], [1, 2, 3]]


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    module = make_module()
    fit(module, loss_fn_for(module), len(X), validate_for(module), cfg(epochs=1), tmp_path)
    good = (tmp_path / "checkpoint.pt").read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("raserec_core.training.resume.torch.save", boom)
    with pytest.raises(OSError, match="disk full"):
        fit(module, loss_fn_for(module), len(X), validate_for(module), cfg(epochs=2), tmp_path)
    assert (tmp_path / "checkpoint.pt").read_bytes() == good
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_cuda_graph_plan_is_ignored_off_cuda(tmp_path):
    """On the CPU a graph plan is never consulted: the run equals one without it, record for record."""
    from raserec_core.training.cuda_graph import GraphPlan

    def refuse(*_):
        raise AssertionError("a CUDA graph plan was used on the CPU")

    runs = []
    for graph in (None, GraphPlan(prepare=refuse, loss=refuse)):
        module = make_module()
        state = fit(module, loss_fn_for(module), len(X), validate_for(module), cfg(epochs=2),
                    tmp_path / str(graph is None), graph=graph)
        runs.append(strip_times(state.history))
    assert runs[0] == runs[1]
    assert "graph_replays" not in runs[1][0]
