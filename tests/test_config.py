"""Typed config: defaults, YAML + ``--set`` layering, unknown keys, types, choices, flag shorthands."""

from __future__ import annotations

import dataclasses

import pytest

from raserec_core.cli.main import build_parser, load
from raserec_core.config import Config, ConfigError, from_dict, load_config, parse_set


def test_defaults_are_the_logged_run():
    cfg = load_config()
    assert cfg == Config()
    assert (cfg.model.hidden_size, cfg.model.n_layers, cfg.model.n_heads, cfg.model.inner_size) == (64, 2, 2, 256)
    assert (cfg.pretrain.batch_size, cfg.pretrain.epochs, cfg.pretrain.contrast) == (256, 75, "us_x")
    assert cfg.data.k_core == 5 and cfg.data.max_len == 50
    assert cfg.eval.ks == (5, 10, 20, 50)


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().model.hidden_size = 3  # type: ignore[misc]


def test_parse_set_builds_a_nested_dict_of_yaml_scalars():
    assert parse_set(["a.b=1", "c=x", "d.e.f=[1, 2]", "a.g=0.5", "h=true", "i="]) == {
        "a": {"b": 1, "g": 0.5}, "c": "x", "d": {"e": {"f": [1, 2]}}, "h": True, "i": "",
    }


def test_parse_set_value_may_hold_an_equals_sign():
    assert parse_set(["data.user_col=a=b"]) == {"data": {"user_col": "a=b"}}


@pytest.mark.parametrize(("item", "message"), [
    ("model.hidden_size", "expected key=value"),
    ("=3", "empty key"),
    ("a=[1,", "not valid YAML"),
])
def test_parse_set_errors(item, message):
    with pytest.raises(ConfigError, match=message):
        parse_set([item])


def test_parse_set_value_and_section_conflict():
    with pytest.raises(ConfigError, match="'a' is both a value and a section"):
        parse_set(["a=1", "a.b=2"])


def test_overrides_layer_on_yaml(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("seed: 7\nmodel:\n  hidden_size: 32\n  n_heads: 4\npretrain:\n  lr: 0.01\n")
    cfg = load_config(path, ["model.hidden_size=16", "pretrain.objective=ce", "eval.ks=[10]"])
    assert cfg.seed == 7
    assert cfg.model.hidden_size == 16 and cfg.model.n_heads == 4
    assert cfg.pretrain.lr == 0.01 and cfg.pretrain.objective == "ce"
    assert cfg.eval.ks == (10,)
    assert cfg.model.inner_size == 256  # untouched keys keep defaults


def test_later_set_wins():
    assert load_config(None, ["seed=1", "seed=2"]).seed == 2


def test_unknown_key_in_yaml_names_key_and_file(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("model:\n  hiden_size: 32\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "'model.hiden_size'" in str(err.value)
    assert str(path) in str(err.value)
    assert "hidden_size" in str(err.value)  # lists the known keys


def test_unknown_key_in_set_names_the_key():
    with pytest.raises(ConfigError, match=r"unknown config key 'pretrain\.lmbda'"):
        load_config(None, ["pretrain.lmbda=0.1"])


def test_unknown_top_level_section():
    with pytest.raises(ConfigError, match="unknown config key 'modle'"):
        load_config(None, ["modle.hidden_size=3"])


@pytest.mark.parametrize(("item", "message"), [
    ("model.hidden_size=abc", "'model.hidden_size': expected an integer, got 'abc'"),
    ("model.hidden_size=1.5", "'model.hidden_size': expected an integer"),
    ("model.hidden_size=true", "'model.hidden_size': expected an integer"),
    ("pretrain.lr=fast", "'pretrain.lr': expected a number"),
    ("finetune.cross_attn_residual_ln=maybe", "'finetune.cross_attn_residual_ln': expected true/false"),
    ("data.user_col=[1]", "'data.user_col': expected a string"),
    ("model=3", "config section 'model': expected a mapping"),
])
def test_type_errors_name_the_key(item, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [item])
    assert message in str(err.value)


def test_ints_are_accepted_for_floats_and_scalars_for_strings():
    cfg = load_config(None, ["pretrain.lr=1", "data.user_col=42"])
    assert cfg.pretrain.lr == 1.0 and isinstance(cfg.pretrain.lr, float)
    assert cfg.data.user_col == "42"


def test_empty_time_col_is_allowed():
    assert load_config(None, ["data.time_col="]).data.time_col == ""


@pytest.mark.parametrize(("item", "key"), [
    ("model.backbone=foo", "model.backbone"),
    ("pretrain.contrast=both", "pretrain.contrast"),
    ("pretrain.objective=bpr", "pretrain.objective"),
    ("data.format=xlsx", "data.format"),
    ("device=tpu", "device"),
])
def test_choices_are_enforced(item, key):
    with pytest.raises(ConfigError) as err:
        load_config(None, [item])
    value = item.split("=")[1]
    assert f"'{key}': '{value}' is not one of" in str(err.value)


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        load_config(top)


def test_empty_yaml_gives_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(path) == Config()


def test_yaml_round_trip():
    cfg = load_config(None, ["model.backbone=gru4rec", "eval.ks=[1,2]", "seed=3", "data.time_col="])
    assert from_dict(__import__("yaml").safe_load(cfg.to_yaml())) == cfg
    assert cfg.section("seed", "eval") == {"seed": 3, "eval": {**Config().to_dict()["eval"], "ks": [1, 2]}}


def test_cli_flag_shorthands_map_to_config_keys(tmp_path):
    args = build_parser().parse_args([
        "preprocess", "--input", "x.txt", "--output", "out", "--format", "seq", "--k-core", "3",
        "--seed", "9", "--device", "cpu", "--set", "data.max_len=7",
    ])
    cfg = load(args)
    assert cfg.data.format == "seq"
    assert cfg.data.k_core == 3
    assert cfg.seed == 9
    assert cfg.device == "cpu"
    assert cfg.data.max_len == 7


def test_cli_flags_win_over_set_and_yaml(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("seed: 1\ndata:\n  k_core: 10\n")
    args = build_parser().parse_args([
        "preprocess", "--input", "x", "--output", "o", "--config", str(path), "--set", "seed=2", "--seed", "3",
        "--k-core", "0",
    ])
    cfg = load(args)
    assert cfg.seed == 3 and cfg.data.k_core == 0


def test_resolve_device():
    import torch

    from raserec_core.device import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="expected one of auto, cpu, cuda, got 'gpu'"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")


def test_cli_without_flags_keeps_defaults():
    cfg = load(build_parser().parse_args(["pretrain", "--data", "d", "--output", "o"]))
    assert cfg == Config()
