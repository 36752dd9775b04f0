"""Typed configuration: nested frozen dataclasses, loaded from YAML plus dotted ``--set`` overrides.

Unknown keys are errors (never a silent ``None``); every numeric key declares its allowed interval next
to its default (``ranged``) and every named choice is in ``CHOICES``, both checked at load, so a bad
value fails naming the key, the value and what is allowed. The defaults are the fast configuration
(configs/fast.yaml, kept equal to them by a test): SASRec with next-item cross-entropy over sequence-packed
batches, the published RAM, seen items excluded from the ranking. The paper's published setting is
configs/paper.yaml (docs/method.md §2 for stage 1, §4 for stage 2).
"""

from __future__ import annotations

import dataclasses
import re
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
class Range:
    """An interval of allowed values; ``None`` leaves a side unbounded. Written as in mathematics:
    ``"[0, 1)"``, ``"(0, inf)"``; shown in errors as ``[0, 1)`` or ``>= 1``."""

    lo: float | None
    hi: float | None
    lo_open: bool = False
    hi_open: bool = False

    @classmethod
    def parse(cls, text: str) -> Range:
        m = re.fullmatch(r"\s*([\[(])\s*(\S+)\s*,\s*(\S+)\s*([\])])\s*", text)
        if not m:
            raise ValueError(f"not an interval: {text!r}")
        lo, hi = (None if v in ("-inf", "inf") else float(v) for v in m.group(2, 3))
        return cls(lo, hi, m.group(1) == "(", m.group(4) == ")")

    def __contains__(self, value: float) -> bool:
        above = self.lo is None or (value > self.lo if self.lo_open else value >= self.lo)
        below = self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)
        return above and below

    def __str__(self) -> str:
        num = lambda v: str(int(v)) if float(v).is_integer() else f"{v:g}"
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {num(self.lo)}"
        if self.lo is None:
            return f"{'<' if self.hi_open else '<='} {num(self.hi)}"
        return f"{'(' if self.lo_open else '['}{num(self.lo)}, {num(self.hi)}{')' if self.hi_open else ']'}"


def ranged(default: Any, interval: str) -> Any:
    """A numeric setting with its allowed interval, checked at load (for a tuple: each element)."""
    return field(default=default, metadata={"range": Range.parse(interval)})


@dataclass(frozen=True)
class DataConfig:
    k_core: int = ranged(5, "[0, inf)")  # iterative k-core on users and items; 0 switches it off (preprocess only)
    max_len: int = ranged(50, "[1, inf)")  # sliding window: only the last max_len items of a prefix are kept
    format: str = "auto"  # auto | seq | csv | tsv | parquet | inter
    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str = "timestamp"  # empty string: keep file order
    # memory: read the whole table into numpy (any format); duckdb: out-of-core for Parquet tables larger than
    # memory (data/outofcore.py, the `ooc` extra), same artifact. memory_limit_gb caps DuckDB, which spills past it.
    engine: str = "memory"  # memory | duckdb
    memory_limit_gb: float = ranged(4.0, "(0, inf)")


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "sasrec"  # sasrec | gru4rec
    hidden_size: int = ranged(64, "[1, inf)")
    n_layers: int = ranged(2, "[1, inf)")
    n_heads: int = ranged(2, "[1, inf)")
    inner_size: int = ranged(256, "[1, inf)")
    hidden_dropout: float = ranged(0.5, "[0, 1)")
    attn_dropout: float = ranged(0.5, "[0, 1)")
    layer_norm_eps: float = ranged(1e-12, "(0, inf)")
    initializer_range: float = ranged(0.02, "(0, inf)")
    gru_dropout: float = ranged(0.3, "[0, 1)")  # GRU4Rec embedding dropout
    layer: str = "bsa"  # SASRec block: bsa (BSARec's: + a low-pass filter) | postln (published) | ligr (pre-norm, gated residuals, SwiGLU)
    filter_alpha: float = ranged(0.7, "[0, 1]")  # bsa: weight of the low-pass filter beside attention (BSARec's alpha)
    filter_cutoff: int = ranged(5, "[1, inf)")  # bsa: BSARec's c; keeps the lowest cutoff // 2 + 1 frequencies of max_len
    # bsa: causal (position t filters the window ending at t: one pass answers every prefix) or window
    # (BSARec's: each prefix's whole window, later items included; per-prefix batching only).
    filter_scope: str = "causal"
    # How the encoder knows order: absolute (an embedding of each index from the sequence start, as
    # published), lag (a learned attention bias per head and lag t - s: the last item is at lag 0 in every
    # prefix; models/attention.py), or both.
    positions: str = "absolute"
    ff_multiplier: float = ranged(0.0, "[0, inf)")  # > 0: the feed-forward width is hidden_size × this, in place of inner_size

    @property
    def ffn_size(self) -> int:
        """The feed-forward width the blocks use."""
        return round(self.hidden_size * self.ff_multiplier) if self.ff_multiplier > 0 else self.inner_size


@dataclass(frozen=True)
class PretrainConfig:
    objective: str = "ce"  # ce | duorec | cl4srec
    # The next-item term of every objective: full softmax over all items, or sampled softmax against
    # n_negatives items drawn uniformly per batch (models/sampled_softmax.py).
    softmax: str = "full"  # full | sampled
    n_negatives: int = ranged(256, "[1, inf)")
    contrast: str = "us_x"  # un | su | us | us_x (DuoRec)
    lmd: float = ranged(0.1, "[0, inf)")  # weight of the unsupervised (dropout-view) term, and of CL4SRec's term
    lmd_sem: float = ranged(0.1, "[0, inf)")  # weight of the supervised (same-target) term
    tau: float = ranged(1.0, "(0, inf)")
    sim: str = "dot"  # dot | cos
    crop_ratio: float = ranged(0.6, "(0, 1]")
    mask_ratio: float = ranged(0.3, "[0, 1]")
    reorder_ratio: float = ranged(0.6, "[0, 1]")
    epochs: int = ranged(100, "[1, inf)")
    batch_size: int = ranged(256, "[1, inf)")
    lr: float = ranged(1e-3, "(0, inf)")
    weight_decay: float = ranged(0.0, "[0, inf)")
    patience: int = ranged(5, "[1, inf)")
    # Step the learning rate down on a plateau: after every lr_patience epochs without a validation gain
    # it is multiplied by lr_decay (1: constant, as published); patience still stops the run. Halving it
    # lifted stage 1's validation NDCG@10 by 1.6% on Beauty, 3 seeds (benchmarks/RESULTS.md, "The default
    # since 2026-12-05").
    lr_decay: float = ranged(0.5, "(0, 1]")
    lr_patience: int = ranged(2, "[1, inf)")
    valid_metric: str = "ndcg@10"
    # random: uniformly shuffled instances, as the reference (RecBole) trained the logged DuoRec run;
    # bucket: batches of similar-length instances (shuffled pools sorted by length); its
    # length-homogeneous in-batch negatives cost DuoRec test quality (benchmarks/RESULTS.md);
    # sequence: a user's prefixes answered by one causal pass over their longest one (data/packing.py).
    batching: str = "sequence"
    # Encode a batch of mixed lengths in at most this many length-sorted groups, each padded only to its
    # own longest sequence (models.encoder.length_groups picks the cheapest cut). Exact: with a causal
    # mask and right padding, position len-1 never sees padding.
    length_chunks: int = ranged(4, "[1, inf)")
    # On one CUDA device, the full batches of packed cross-entropy training (the default) replay as one
    # CUDA graph per step (training/cuda_graph.py); other objectives, batchings and the CPU ignore it.
    cuda_graph: bool = True


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = ranged(100, "[1, inf)")
    batch_size: int = ranged(1024, "[1, inf)")
    lr: float = ranged(1e-3, "(0, inf)")
    weight_decay: float = ranged(0.0, "[0, inf)")
    patience: int = ranged(5, "[1, inf)")
    valid_metric: str = "ndcg@10"
    top_k: int = ranged(20, "[1, inf)")
    candidate_factor: int = ranged(4, "[1, inf)")  # ask the index for candidate_factor * top_k before the leakage filter
    alpha: float = ranged(0.5, "[0, 1]")
    beta: float = ranged(1.0, "[0, 1]")
    attn_tau: float = ranged(1.0, "(0, inf)")
    dropout: float = ranged(0.5, "[0, 1)")
    n_heads: int = ranged(2, "[1, inf)")
    inner_size: int = ranged(256, "[1, inf)")
    # Deviations of the reference code from the paper, as named options (docs/method.md §4). Defaults: the code.
    cross_attn_residual_ln: bool = False
    retrieval_position_embedding: bool = False
    length_gate: int = ranged(0, "[0, inf)")  # 0 = off; >0: sequences longer than this keep h (the code's low_popular)
    channel2_retrieval: str = "shared"  # shared (the code) | target: tar->seq retrieves by target similarity
    # Offset for the query's own items (models/seen.py): none (the paper) | learned | calibrated after training
    history_bias: str = "calibrated"
    # Model selection on validation: when the best fine-tuned epoch does not beat the frozen encoder alone, the
    # model folder ranks by the encoder (alpha 1: h_aug = h). Off in the paper's configurations (always the RAM).
    encoder_fallback: bool = True


@dataclass(frozen=True)
class MemoryConfig:
    # auto, and 0 for nlist/nprobe/pq_m: chosen from the bank's size when it is built (memory/sizing.py: up to
    # 1M entries the paper's IVF-Flat, nlist 128, nprobe 1); the bank records the settings it was built with.
    index_type: str = "auto"  # auto | brute | flat | ivf | ivfsq (8-bit codes) | ivfpq
    nlist: int = ranged(0, "[0, inf)")
    nprobe: int = ranged(0, "[0, inf)")  # later steps: 0 = the bank's own
    pq_m: int = ranged(0, "[0, inf)")  # IVF-PQ bytes per code; must divide the key dimension
    # A bank too small for ivf/ivfpq (39 entries per list; 256 for PQ): an error, or with this an exact Flat index.
    allow_fallback: bool = False
    # Which training entries the bank keeps (memory-bank partition ablation; see memory/partition.py).
    partition: str = "none"  # none | length | popularity | random | time
    partition_fraction: float = ranged(1.0, "(0, 1]")
    partition_side: str = "head"  # head | tail
    len_lower_bound: int = ranged(0, "[0, inf)")  # 0 = unset; the reference code's length rule, applied in every partition
    len_upper_bound: int = ranged(0, "[0, inf)")
    len_bound_reverse: bool = True


@dataclass(frozen=True)
class EvalConfig:
    ks: tuple[int, ...] = ranged((5, 10, 20, 50), "[1, inf)")
    # Exclude the items of the user's input sequence from the ranking (the protocol of eSASRec's benchmark
    # and of RecTools); false is the paper's protocol. Final metrics carry both, named seen_kept/seen_excluded.
    mask_history: bool = True
    batch_size: int = ranged(256, "[1, inf)")  # queries scored at once: a (256, 12k) score block stays in cache
    topk: int = ranged(50, "[1, inf)")  # length of the dumped top-K lists


@dataclass(frozen=True)
class Config:
    seed: int = ranged(2020, "[0, 4294967295]")
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
    "data.engine": {"memory", "duckdb"},
    "model.backbone": {"sasrec", "gru4rec"},
    "model.layer": {"postln", "ligr", "bsa"},
    "model.positions": {"absolute", "lag", "both"},
    "model.filter_scope": {"causal", "window"},
    "pretrain.softmax": {"full", "sampled"},
    "pretrain.objective": {"ce", "duorec", "cl4srec"},
    "pretrain.contrast": {"un", "su", "us", "us_x"},
    "pretrain.sim": {"dot", "cos"},
    "pretrain.batching": {"bucket", "random", "sequence"},
    "memory.index_type": {"auto", "brute", "flat", "ivf", "ivfsq", "ivfpq"},
    "finetune.channel2_retrieval": {"shared", "target"},
    "finetune.history_bias": {"none", "learned", "calibrated"},
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


def _check_range(path: str, value: Any, allowed: Range | None) -> None:
    for v in value if isinstance(value, tuple) else (value,):
        if allowed is not None and v not in allowed:
            raise ConfigError(f"config key '{path}': {v!r} is out of range (allowed: {allowed})")


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or '<root>'}': expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    ranges = {f.name: f.metadata.get("range") for f in dataclasses.fields(cls)}
    names = set(ranges)
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
            _check_range(path, kwargs[name], ranges[name])
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


def load_config(
    path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> Config:
    """Defaults, then ``base`` (e.g. the settings an artifact was trained with), then the YAML file, then
    the overrides (``key=value`` strings or a nested dict)."""
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
    if base:
        data = _merge(base, data)
    if overrides:
        extra = parse_set(overrides) if isinstance(overrides, list) else overrides
        data = _merge(data, extra)
    try:
        return from_dict(data)
    except ConfigError as exc:
        where = f"config file {path}: " if path else ""
        raise ConfigError(f"{where}{exc}") from None
