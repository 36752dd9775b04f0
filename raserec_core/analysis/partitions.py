"""Memory-bank partitions (the paper's memory-bank ablation): RaSeRec fine-tuned and evaluated over banks
restricted, with ``memory.partition`` (memory/partition.py), to prefixes shorter than a length, to the
targets among the most popular items, to a seeded random fraction, or to each user's oldest entries; the
quality against the bank's size. Test queries also read the validation memories, unpartitioned, as in
the reference code."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .figures import Figure
from .workspace import Workspace, with_settings

TITLE = "Memory-bank partitions"
ABOUT = "RaSeRec fine-tuned over partial memory banks: test HR@10 / NDCG@10 against the bank's entries."
DEFAULTS = {"kinds": ["length", "popularity", "random", "time"], "fractions": [0.1, 0.25, 0.5, 0.75, 1.0],
            "lengths": [5, 10, 20, 50]}


def _memory_settings(kind: str, value: float) -> dict[str, Any]:
    if kind == "none":
        return {"memory.partition": "none"}
    if kind == "length":  # the reference code's rule with only an upper bound, not inverted: length < value
        return {"memory.partition": "length", "memory.len_upper_bound": int(value), "memory.len_bound_reverse": False}
    return {"memory.partition": kind, "memory.partition_fraction": float(value), "memory.partition_side": "head"}


def settings(options: dict[str, Any]) -> list[dict[str, Any]]:
    out = [{"kind": "none", "value": 1.0}]
    for kind in options["kinds"]:
        if kind not in ("length", "popularity", "random", "time"):
            raise ConfigError(f"unknown partition {kind!r}")
        values = options["lengths"] if kind == "length" else [f for f in options["fractions"] if f < 1.0]
        out += [{"kind": kind, "value": v} for v in values]
    return out


def point(ws: Workspace, setting: dict[str, Any], options: dict[str, Any]) -> list[dict[str, Any]]:
    import json

    kind, value = setting["kind"], setting["value"]
    cfg = with_settings(ws.cfg, _memory_settings(kind, value))
    memory = ws.index(cfg, ws.inputs.baseline)
    entries = json.loads((memory / "manifest.json").read_text())["entries"]
    fine = ws.finetune(cfg, ws.inputs.baseline, memory)
    return [{"kind": kind, "value": value, "entries": entries,
             **ws.evaluate(f"partitions-{kind}-{value}", fine, memory, cfg=cfg)}]


def figures(rows: list[dict[str, Any]], options: dict[str, Any]) -> list[Figure]:
    full = [r for r in rows if r["kind"] == "none"]
    curves = tuple(r for r in rows if r["kind"] != "none") + tuple({**r, "kind": k} for r in full for k in options["kinds"])
    return [Figure("partitions_size", "Quality against memory-bank size", "line", "entries", ("hr@10", "ndcg@10"),
                   "kind", curves)]
