"""Typed configuration: nested frozen dataclasses, loaded from YAML plus dotted ``--set`` overrides.

Unknown keys are errors (never a silent ``None``). Defaults are those of the logged runs that produced
the paper's numbers (SPEC §2 for stage 1, §4 for stage 2).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .device import DEVICES
from .errors import ConfigError


@dataclass(frozen=True)
class DataConfig:
    k_core: int = 5  # iterative k-core on users and items; 0 switches it off (preprocess only)
    max_len: int = 50  # sliding window: only the last max_len items of a prefix are kept
    format: str = "auto"  # auto | seq | csv | tsv | parquet | inter
    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str = "timestamp"  # empty string: keep file order


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "sasrec"  # sasrec | gru4rec
    hidden_size: int = 64
    n_layers: int = 2
    n_heads: int = 2
    inner_size: int = 256
    hidden_dropout: float = 0.5
    attn_dropout: float = 0.5
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    gru_dropout: float = 0.3  # GRU4Rec embedding dropout


@dataclass(frozen=True)
class PretrainConfig:
    objective: str = "duorec"  # ce | duorec | cl4srec
    contrast: str = "us_x"  # un | su | us | us_x (DuoRec)
    lmd: float = 0.1  # weight of the unsupervised (dropout-view) term, and of CL4SRec's term
    lmd_sem: float = 0.1  # weight of the supervised (same-target) term
    tau: float = 1.0
    sim: str = "dot"  # dot | cos
    crop_ratio: float = 0.6
    mask_ratio: float = 0.3
    reorder_ratio: float = 0.6
    epochs: int = 75
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 10
    valid_metric: str = "mrr@10"
    # random: uniformly shuffled instances, as the reference (RecBole) trained the logged DuoRec run;
    # bucket: batches of similar-length instances (shuffled pools sorted by length); its
    # length-homogeneous in-batch negatives cost DuoRec test quality (benchmarks/RESULTS.md);
    # sequence: a user's prefixes answered by one causal pass over their longest one (data/packing.py).
    batching: str = "random"
    # Encode a batch of mixed lengths in at most this many length-sorted groups, each padded only to its
    # own longest sequence (models.encoder.length_groups picks the cheapest cut). Exact: with a causal
    # mask and right padding, position len-1 never sees padding.
    length_chunks: int = 4


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 100
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 10
    valid_metric: str = "hr@10"
    top_k: int = 20
    candidate_factor: int = 4  # ask the index for candidate_factor * top_k before the leakage filter
    alpha: float = 0.5
    beta: float = 1.0
    attn_tau: float = 1.0
    dropout: float = 0.5
    n_heads: int = 2
    inner_size: int = 256
    # Deviations of the reference code from the paper, as named options (SPEC §4). Defaults: the code.
    cross_attn_residual_ln: bool = False
    retrieval_position_embedding: bool = False
    length_gate: int = 0  # 0 = off; >0: sequences longer than this keep h (the code's low_popular)
    channel2_retrieval: str = "shared"  # shared (the code) | target: tar->seq retrieves by target similarity


@dataclass(frozen=True)
class MemoryConfig:
    index_type: str = "ivf"  # brute | flat | ivf | ivfpq
    nlist: int = 128
    nprobe: int = 1
    pq_m: int = 8
    # Which training entries the bank keeps (memory-bank partition ablation; see memory/partition.py).
    partition: str = "none"  # none | length | popularity | random | time
    partition_fraction: float = 1.0
    partition_side: str = "head"  # head | tail
    len_lower_bound: int = 0  # 0 = unset; the reference code's length rule, applied in every partition
    len_upper_bound: int = 0
    len_bound_reverse: bool = True


@dataclass(frozen=True)
class EvalConfig:
    ks: tuple[int, ...] = (5, 10, 20, 50)
    mask_history: bool = False
    batch_size: int = 256  # queries scored at once: a (256, 12k) score block stays in cache
    topk: int = 50  # length of the dumped top-K lists


@dataclass(frozen=True)
class Config:
    seed: int = 2020
    device: str = "auto"  # one of device.DEVICES, resolved at the edge
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=True)

    def section(self, *names: str) -> dict[str, Any]:
        """The named sections as a plain dict, e.g. to compare the parts a stage depends on."""
        full = self.to_dict()
        return {n: full[n] for n in names}


CHOICES = {
    "device": set(DEVICES),  # names from the module that resolves them (device.py)
    "data.format": {"auto", "seq", "csv", "tsv", "parquet", "inter"},
    "model.backbone": {"sasrec", "gru4rec"},
    "pretrain.objective": {"ce", "duorec", "cl4srec"},
    "pretrain.contrast": {"un", "su", "us", "us_x"},
    "pretrain.sim": {"dot", "cos"},
    "pretrain.batching": {"bucket", "random", "sequence"},
    "memory.index_type": {"brute", "flat", "ivf", "ivfpq"},
    "finetune.channel2_retrieval": {"shared", "target"},
    "memory.partition": {"none", "length", "popularity", "random", "time"},
    "memory.partition_side": {"head", "tail"},
}


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


def flatten(tree: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (``sep`` joins the keys); lists stay values."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, name, sep))
        else:
            out[name] = value
    return out


def _coerce(path: str, value: Any, typ: Any) -> Any:
    origin = typing.get_origin(typ)
    if origin is tuple:
        (inner, _ellipsis) = typing.get_args(typ)
        if not isinstance(value, (list, tuple)):
            value = [value]
        return tuple(_coerce(path, v, inner) for v in value)
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{path}': expected true/false, got {value!r}")
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{path}': expected an integer, got {value!r}")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{path}': expected a number, got {value!r}")
        return float(value)
    if typ is str:
        if value is None:
            value = ""
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"config key '{path}': expected a string, got {value!r}")
        return str(value)
    if isinstance(typ, types.UnionType):
        raise ConfigError(f"config key '{path}': unsupported type {typ}")
    return value


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or '<root>'}': expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}' (known keys here: {', '.join(sorted(names))})"
        )
    kwargs = {}
    for name, value in data.items():
        typ = hints[name]
        path = prefix + name
        if dataclasses.is_dataclass(typ):
            kwargs[name] = _build(typ, value, path + ".")
        else:
            kwargs[name] = _coerce(path, value, typ)
            allowed = CHOICES.get(path)
            if allowed and kwargs[name] not in allowed:
                raise ConfigError(f"config key '{path}': {kwargs[name]!r} is not one of {sorted(allowed)}")
    return cls(**kwargs)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_set(items: list[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into a nested dict; values are parsed as YAML scalars."""
    tree: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"--set {item!r}: empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc})") from None
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: '{part}' is both a value and a section")
        node[parts[-1]] = value
    return tree


def from_dict(data: dict[str, Any]) -> Config:
    base = Config().to_dict()
    return _build(Config, _merge(base, data or {}), "")


def load_config(path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None) -> Config:
    """Defaults, then the YAML file, then the overrides (``key=value`` strings or a nested dict)."""
    data: dict[str, Any] = {}
    if path:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"config file {p}: not found") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p}: not valid YAML ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {p}: expected a mapping at the top level")
    if overrides:
        extra = parse_set(overrides) if isinstance(overrides, list) else overrides
        data = _merge(data, extra)
    try:
        return from_dict(data)
    except ConfigError as exc:
        where = f"config file {path}: " if path else ""
        raise ConfigError(f"{where}{exc}") from None
