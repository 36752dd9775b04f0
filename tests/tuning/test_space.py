"""tuning/space.py: the search-space file is checked against the config, and values survive ``--set``."""

from __future__ import annotations

import pytest

from raserec_core.config import parse_set
from raserec_core.errors import ConfigError
from raserec_core.tuning.space import load_space, scalar_text, set_items

optuna = pytest.importorskip("optuna")


def write(tmp_path, text: str):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_space_file_to_optuna_distributions(tmp_path):
    space = load_space(write(tmp_path, """
pretrain.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
model.n_layers: {type: int, low: 1, high: 3}
model.hidden_dropout: {type: float, low: 0.1, high: 0.5, step: 0.1}
model.layer: {type: categorical, choices: [postln, ligr]}
"""))
    assert [p.key for p in space] == ["pretrain.lr", "model.n_layers", "model.hidden_dropout", "model.layer"]
    d = {p.key: p.distribution() for p in space}
    assert d["pretrain.lr"] == optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    assert d["model.n_layers"] == optuna.distributions.IntDistribution(1, 3)
    assert d["model.hidden_dropout"] == optuna.distributions.FloatDistribution(0.1, 0.5, step=0.1)
    assert d["model.layer"] == optuna.distributions.CategoricalDistribution(("postln", "ligr"))


@pytest.mark.parametrize("text, message", [
    ("pretrain.lrr: {type: float, low: 0.1, high: 0.2}", "unknown config key 'pretrain.lrr'"),
    ("model.n_layers: {type: float, low: 1.5, high: 3}", "model.n_layers': expected an integer"),
    ("model.layer: {type: categorical, choices: [postln, bogus]}", "'bogus' is not one of"),
    ("pretrain.lr: {type: float, low: 0.0, high: 0.1, log: true}", "a log scale needs low > 0"),
    ("pretrain.lr: {type: float, low: 0.1, high: 0.1}", "low (0.1) must be below high (0.1)"),
    ("pretrain.lr: {type: uniform, low: 0.1, high: 0.2}", "type must be one of float, int, categorical"),
    ("pretrain.lr: {type: float, low: 0.1, hi: 0.2}", "unknown field 'hi'"),
    ("model.layer: {type: categorical, choices: []}", "non-empty 'choices'"),
])
def test_space_errors_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        load_space(write(tmp_path, text))
    assert message in str(err.value)


def test_contains_follows_bounds_steps_and_choices(tmp_path):
    lr, layers, dropout, layer = load_space(write(tmp_path, """
pretrain.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
model.n_layers: {type: int, low: 1, high: 3}
model.hidden_dropout: {type: float, low: 0.1, high: 0.5, step: 0.1}
model.layer: {type: categorical, choices: [postln, ligr]}
"""))
    assert lr.contains(1e-4) and lr.contains(1e-2) and not lr.contains(0.02) and not lr.contains("0.001")
    assert layers.contains(2) and not layers.contains(4) and not layers.contains(1.5) and not layers.contains(True)
    assert dropout.contains(0.5) and dropout.contains(0.30000000000000004) and not dropout.contains(0.25)
    assert layer.contains("ligr") and not layer.contains("bogus")
    # what the tuner enqueues as trial 0 must be a point Optuna accepts for the same distribution
    for p, v in ((lr, 1e-3), (layers, 2), (dropout, 0.5), (layer, "postln")):
        assert p.contains(v) and p.distribution()._contains(p.distribution().to_internal_repr(v))


def test_base_point_is_the_base_configs_values_or_none(tmp_path):
    from raserec_core.config import load_config
    from raserec_core.tuning.study import base_point

    space = load_space(write(tmp_path, """
pretrain.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
model.layer: {type: categorical, choices: [postln, ligr]}
"""))
    base = load_config(None, ["pretrain.lr=0.002", "model.layer=ligr"])
    assert base_point(space, base) == {"pretrain.lr": 0.002, "model.layer": "ligr"}
    assert base_point(space, load_config(None, ["pretrain.lr=0.05"])) is None


@pytest.mark.parametrize("value", [1e-05, 3.0e-4, 0.001, 0.30000000000000004, 3, True, "ce", "true", [5, 10]])
def test_set_items_parse_back_to_the_sampled_values(value):
    # str(1e-05) == "1e-05" reads back from YAML as a string; the trial would fail on its --set
    (item,) = set_items({"k": value})
    assert parse_set([item]) == {"k": value}
    assert "\n" not in scalar_text(value)


LR = {"pretrain.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}


def _running_trial(study):
    trial = study.ask(LR)
    trial.set_user_attr("run_dir", f"trials/{trial.number}")
    return trial


def test_recover_requeues_a_running_trial_once():
    from raserec_core.tuning.study import recover

    study = optuna.create_study(direction="maximize")
    done = _running_trial(study)
    study.tell(done, 0.5)
    stale = _running_trial(study)  # what a killed tuner leaves behind
    assert recover(study) == [stale.number]
    states = [t.state.name for t in study.get_trials()]
    assert states == ["COMPLETE", "FAIL", "WAITING"]
    assert recover(study) == []  # nothing left running, nothing enqueued twice
    retry = study.ask(LR)  # the next trial is the retry
    assert retry.params == stale.params
    assert retry.user_attrs == {"retry_of": stale.number, "run_dir": f"trials/{stale.number}"}


def test_recover_after_a_kill_inside_recovery_does_not_enqueue_twice():
    from raserec_core.tuning.study import recover

    study = optuna.create_study(direction="maximize")
    stale = _running_trial(study)
    # killed between enqueueing the retry and marking the trial FAIL
    study.enqueue_trial(stale.params, user_attrs={"retry_of": stale.number, "run_dir": f"trials/{stale.number}"})
    assert recover(study) == [stale.number]
    assert [t.state.name for t in study.get_trials()] == ["FAIL", "WAITING"]


def test_pruner_spares_a_slow_starter_and_stops_a_stalled_trial():
    from raserec_core.tuning.study import make_pruner, pruned_at

    fast = [[0.03, 0.05, 0.06, 0.063, 0.064, 0.064, 0.063]] * 5  # fast risers, as the high learning rates
    rising = [0.012, 0.020, 0.030, 0.039, 0.045, 0.052]  # the best trial's start: below them, still improving
    stalled = [0.010, 0.014, 0.013, 0.012, 0.013, 0.012, 0.013]  # best at epoch 2, then lower
    assert pruned_at(make_pruner("median", 3, 0), fast, rising) == 3  # the plain median rule cuts it
    assert pruned_at(make_pruner("median", 3, 3), fast, rising) is None
    assert pruned_at(make_pruner("median", 3, 3), fast, stalled) == 6  # its best (epoch 2) 4 epochs old
    assert pruned_at(make_pruner("none", 3, 3), fast, stalled) is None
