"""Typed config: defaults, YAML + ``--set`` layering, unknown keys, types, choices, flag shorthands."""

from __future__ import annotations

import dataclasses

import pytest

from raserec_core.cli.main import build_parser, load
from raserec_core.config import Config, ConfigError, from_dict, load_config, parse_set


def test_defaults_are_the_fast_configuration():
    cfg = load_config()
    assert cfg == Config()
    assert (cfg.model.hidden_size, cfg.model.n_layers, cfg.model.n_heads, cfg.model.inner_size) == (64, 2, 2, 256)
    assert (cfg.pretrain.objective, cfg.pretrain.batching, cfg.pretrain.batch_size) == ("ce", "sequence", 256)
    assert cfg.eval.mask_history is True
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


# ---- ranges ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("item", "message"), [
    ("finetune.alpha=5", "'finetune.alpha': 5.0 is out of range (allowed: [0, 1])"),  # closed interval
    ("finetune.beta=-2", "'finetune.beta': -2.0 is out of range (allowed: [0, 1])"),
    ("model.hidden_dropout=1.5", "'model.hidden_dropout': 1.5 is out of range (allowed: [0, 1))"),
    ("finetune.dropout=1", "'finetune.dropout': 1.0 is out of range (allowed: [0, 1))"),  # open upper end
    ("memory.partition_fraction=1.7", "'memory.partition_fraction': 1.7 is out of range (allowed: (0, 1])"),
    ("memory.partition_fraction=0", "'memory.partition_fraction': 0.0 is out of range (allowed: (0, 1])"),
    ("pretrain.lr=0", "'pretrain.lr': 0.0 is out of range (allowed: > 0)"),  # open lower end, no upper
    ("finetune.top_k=0", "'finetune.top_k': 0 is out of range (allowed: >= 1)"),
    ("memory.nprobe=-1", "'memory.nprobe': -1 is out of range (allowed: >= 0)"),  # 0: from the bank's size
    ("memory.nlist=-2", "'memory.nlist': -2 is out of range (allowed: >= 0)"),
    ("data.max_len=0", "'data.max_len': 0 is out of range (allowed: >= 1)"),
    ("data.max_len=-3", "'data.max_len': -3 is out of range (allowed: >= 1)"),
    ("data.k_core=-5", "'data.k_core': -5 is out of range (allowed: >= 0)"),
    ("pretrain.epochs=-1", "'pretrain.epochs': -1 is out of range (allowed: >= 1)"),
    ("finetune.batch_size=0", "'finetune.batch_size': 0 is out of range (allowed: >= 1)"),
    ("eval.ks=[5,0,10]", "'eval.ks': 0 is out of range (allowed: >= 1)"),  # each element of a tuple
    ("seed=-1", "'seed': -1 is out of range (allowed: [0, 4294967295])"),
])
def test_ranges_are_enforced_naming_key_value_and_range(item, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [item])
    assert f"config key {message}" in str(err.value)


def test_range_ends_are_inclusive_where_declared():
    cfg = load_config(None, [
        "finetune.alpha=0", "finetune.beta=1", "model.hidden_dropout=0", "memory.partition_fraction=1",
        "data.k_core=0", "data.max_len=1", "finetune.top_k=1", "eval.ks=[1]",
    ])
    assert (cfg.finetune.alpha, cfg.finetune.beta, cfg.memory.partition_fraction) == (0.0, 1.0, 1.0)
    assert (cfg.data.k_core, cfg.data.max_len, cfg.eval.ks) == (0, 1, (1,))


def test_range_error_in_a_yaml_file_names_the_file(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("memory:\n  nprobe: -1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and "'memory.nprobe': -1 is out of range" in str(err.value)


def test_every_numeric_setting_declares_its_range():
    import typing

    def walk(cls, prefix=""):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            typ = hints[f.name]
            if dataclasses.is_dataclass(typ):
                yield from walk(typ, f"{prefix}{f.name}.")
            elif typ in (int, float) or typing.get_origin(typ) is tuple:
                yield f"{prefix}{f.name}", f.metadata.get("range")

    settings = dict(walk(Config))
    assert len(settings) > 40
    assert [k for k, r in settings.items() if r is None] == []
    # the defaults lie inside their own ranges
    default = Config().to_dict()
    for key, allowed in settings.items():
        value = default
        for part in key.split("."):
            value = value[part]
        assert all(v in allowed for v in (value if isinstance(value, list) else [value])), key


def test_range_parses_and_prints_intervals():
    from raserec_core.config import Range

    assert str(Range.parse("[0, 1)")) == "[0, 1)"
    assert str(Range.parse("(0, inf)")) == "> 0"
    assert str(Range.parse("[1, inf)")) == ">= 1"
    assert str(Range.parse("(-inf, 2.5]")) == "<= 2.5"
    assert 0 in Range.parse("[0, 1)") and 1 not in Range.parse("[0, 1)") and 0 not in Range.parse("(0, 1]")
    with pytest.raises(ValueError, match="not an interval"):
        Range.parse("0..1")


def test_a_base_lies_under_the_config_file_and_the_overrides(tmp_path):
    """An artifact's own settings (``base``) replace the defaults; a config file and --set replace them."""
    path = tmp_path / "c.yaml"
    path.write_text("finetune:\n  alpha: 0.3\n")
    base = {"finetune": {"alpha": 0.9, "top_k": 7}, "model": {"hidden_size": 16}}
    cfg = load_config(path, ["model.hidden_size=32"], base=base)
    assert (cfg.finetune.alpha, cfg.finetune.top_k, cfg.model.hidden_size) == (0.3, 7, 32)
    args = build_parser().parse_args(["pretrain", "--data", "d", "--output", "o", "--seed", "5"])
    assert (load(args, base={"seed": 1, "finetune": {"top_k": 7}}).seed, load(args, base=base).finetune.top_k) == (5, 7)
    with pytest.raises(ConfigError, match="unknown config key 'finetune.nope'"):
        load_config(None, None, base={"finetune": {"nope": 1}})


@pytest.mark.parametrize("value", [True, "off", "always"])
def test_the_seen_item_offset_is_named_not_a_flag(value):
    """none | learned | calibrated; the true/false of earlier versions fails naming the choices."""
    with pytest.raises(ConfigError, match=r"'finetune.history_bias'.*\['calibrated', 'learned', 'none'\]"):
        from_dict({"finetune": {"history_bias": value}})
