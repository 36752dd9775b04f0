"""Improving backbones (the paper's "Improving Base Backbones" figure): each stage-1 backbone alone and
with RaSeRec fine-tuned over its own memory bank. The backbones' other settings (sizes, epochs, batching)
are the stage-1 model's; a variant equal to it reuses it, and its bank and fine-tuned model."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .figures import Figure, gain
from .workspace import Workspace, with_settings

TITLE = "RaSeRec on several backbones"
ABOUT = "Test HR@10 / NDCG@10 of each stage-1 backbone alone and with RaSeRec on it; gain in percent."
VARIANTS: dict[str, dict[str, Any]] = {
    "sasrec": {"model.backbone": "sasrec", "model.layer": "postln", "pretrain.objective": "ce", "pretrain.softmax": "full"},
    "gru4rec": {"model.backbone": "gru4rec", "model.layer": "postln", "pretrain.objective": "ce", "pretrain.softmax": "full"},
    "cl4srec": {"model.backbone": "sasrec", "model.layer": "postln", "pretrain.objective": "cl4srec", "pretrain.softmax": "full"},
    "duorec": {"model.backbone": "sasrec", "model.layer": "postln", "pretrain.objective": "duorec", "pretrain.softmax": "full"},
    "sasrec-ligr": {"model.backbone": "sasrec", "model.layer": "ligr", "pretrain.objective": "ce", "pretrain.softmax": "full"},
    "sasrec-bsa": {"model.backbone": "sasrec", "model.layer": "bsa", "pretrain.objective": "ce", "pretrain.softmax": "full"},
    "sasrec-sampled": {"model.backbone": "sasrec", "model.layer": "postln", "pretrain.objective": "ce", "pretrain.softmax": "sampled"},
}
DEFAULTS = {"variants": list(VARIANTS)}


def settings(options: dict[str, Any]) -> list[dict[str, Any]]:
    unknown = sorted(set(options["variants"]) - set(VARIANTS))
    if unknown:
        raise ConfigError(f"unknown backbone variant {unknown[0]!r} (known: {', '.join(VARIANTS)})")
    return [{"variant": v} for v in options["variants"]]


def point(ws: Workspace, setting: dict[str, Any], options: dict[str, Any]) -> list[dict[str, Any]]:
    v = setting["variant"]
    cfg = with_settings(ws.cfg, VARIANTS[v])
    model = ws.pretrain(cfg)
    memory = ws.index(cfg, model)
    fine = ws.finetune(cfg, model, memory)
    return [{"variant": v, "model": "alone", **ws.evaluate(f"backbones-{v}-alone", model, cfg=cfg)},
            {"variant": v, "model": "+raserec", **ws.evaluate(f"backbones-{v}-raserec", fine, memory, cfg=cfg)}]


def figures(rows: list[dict[str, Any]], options: dict[str, Any]) -> list[Figure]:
    by = {(r["variant"], r["model"]): r for r in rows}
    gains = tuple({"variant": v, "metric": m, "gain (%)": gain(by[(v, "alone")][m], by[(v, "+raserec")][m])}
                  for v in dict.fromkeys(r["variant"] for r in rows) for m in ("hr@10", "ndcg@10"))
    return [Figure("backbones_quality", "Backbone alone and + RaSeRec", "bar", "variant", ("hr@10", "ndcg@10"),
                   "model", tuple(rows)),
            Figure("backbones_gain", "Gain of RaSeRec over its backbone", "bar", "variant", ("gain (%)",), "metric",
                   gains)]
