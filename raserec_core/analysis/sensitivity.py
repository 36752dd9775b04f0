"""Sensitivity (the paper's "Parameter Sensitivity" figure): RaSeRec re-fine-tuned with each top-K, α and
β (the other settings the fine-tuned model's own; its own value reuses it), and evaluated with each
nprobe (an evaluation override of the same model: quality and the time to retrieve every test query's
memories). nprobe changes anything only over an IVF bank."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .figures import Figure
from .workspace import Workspace, with_settings

TITLE = "Sensitivity to RaSeRec's settings"
ABOUT = "Test HR@10 / NDCG@10 against top-K, α, β (each re-fine-tuned) and nprobe (with retrieval time)."
KEYS = {"top_k": "finetune.top_k", "alpha": "finetune.alpha", "beta": "finetune.beta", "nprobe": "memory.nprobe"}
DEFAULTS = {"top_k": [1, 5, 10, 20, 40], "alpha": [0.1, 0.3, 0.5, 0.7, 0.9], "beta": [0.0, 0.5, 1.0],
            "nprobe": [1, 2, 4, 8, 16], "params": list(KEYS)}


def settings(options: dict[str, Any]) -> list[dict[str, Any]]:
    unknown = sorted(set(options["params"]) - set(KEYS))
    if unknown:
        raise ConfigError(f"unknown sensitivity parameter {unknown[0]!r} (known: {', '.join(KEYS)})")
    return [{"param": p, "value": v} for p in options["params"] for v in options[p]]


def point(ws: Workspace, setting: dict[str, Any], options: dict[str, Any]) -> list[dict[str, Any]]:
    p, v = setting["param"], setting["value"]
    label = f"sensitivity-{p}-{v}"
    if p == "nprobe":
        overrides = {KEYS[p]: int(v)}
        model = ws.raserec()
        metrics = ws.evaluate(label, model, ws.inputs.memory, overrides=overrides)
        seconds = ws.retrieval_seconds(model, ws.inputs.memory, overrides)
        return [{"param": p, "value": v, **metrics, "retrieval_s": seconds}]
    cfg = with_settings(ws.cfg, {KEYS[p]: v})
    fine = ws.finetune(cfg, ws.inputs.baseline, ws.inputs.memory)
    return [{"param": p, "value": v, **ws.evaluate(label, fine, ws.inputs.memory, cfg=cfg)}]


def figures(rows: list[dict[str, Any]], options: dict[str, Any]) -> list[Figure]:
    out = []
    for p in dict.fromkeys(r["param"] for r in rows):
        mine = tuple({**r, "model": "raserec"} for r in rows if r["param"] == p)
        y = ("hr@10", "ndcg@10", "retrieval_s") if p == "nprobe" else ("hr@10", "ndcg@10")
        out.append(Figure(f"sensitivity_{p}", f"Sensitivity to {p}", "line", "value", y, "model", mine))
    return out
