"""Long-tail items: test users grouped by the training popularity of their target item, into five groups
of equal user count (g1 = least popular targets) and a head/tail split (head: targets among the most
popular items that make up ``head_share`` of the training targets), HR@10 / NDCG@10 per group for the
stage-1 backbone and RaSeRec on it. Groups are computed from the top-K dumps the metrics came from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .figures import Figure
from .workspace import Workspace

TITLE = "Long-tail items"
ABOUT = ("Test users grouped by their target's popularity among training targets: five equal-size groups "
         "(g1 least popular) and head/tail; HR@10 / NDCG@10 of the backbone and of RaSeRec per group.")
DEFAULTS = {"groups": 5, "head_share": 0.2}


def settings(options: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"model": "backbone"}, {"model": "raserec"}]


def target_groups(targets: np.ndarray, train_targets: np.ndarray, n_items: int, n_groups: int,
                  head_share: float) -> tuple[np.ndarray, np.ndarray]:
    """(R,) item indices -> (R,) group 0..n_groups-1 of equal size by target popularity, and (R,) head flags."""
    counts = np.bincount(train_targets, minlength=n_items)
    order = np.argsort(counts[targets], kind="stable")  # least popular first; ties by row order
    group = np.empty(len(targets), dtype=np.int64)
    group[order] = np.arange(len(targets)) * n_groups // max(1, len(targets))
    by_pop = np.argsort(-counts, kind="stable")
    covered = np.cumsum(counts[by_pop]) / max(1, counts.sum())
    head_items = np.zeros(n_items, dtype=bool)
    head_items[by_pop[: int(np.searchsorted(covered, head_share)) + 1]] = True
    return group, head_items[targets]


def group_rows(dump: Path, data: Path, n_groups: int, head_share: float) -> list[dict[str, Any]]:
    """HR@10 / NDCG@10 per group from a dump's ``target``/``target_rank`` columns."""
    import pyarrow.parquet as pq

    from ..data.artifact import read_ids

    item_ids = read_ids(Path(data) / "items.parquet")
    index = {raw: i for i, raw in enumerate(item_ids.tolist())}
    table = pq.read_table(dump, columns=["target", "target_rank"])
    targets = np.array([index[t] for t in table.column("target").to_pylist()], dtype=np.int64)
    ranks = table.column("target_rank").to_numpy().astype(np.float64)
    train = pq.read_table(Path(data) / "train.parquet", columns=["target"]).column("target").to_numpy()
    group, head = target_groups(targets, train, len(item_ids), n_groups, head_share)
    masks = [(f"g{g + 1}", group == g) for g in range(n_groups)] + [("head", head), ("tail", ~head)]
    rows = []
    for name, sel in masks:
        r = ranks[sel]
        hit = r <= 10
        rows.append({"group": name, "users": int(sel.sum()), "hr@10": float(hit.mean()) if len(r) else 0.0,
                     "ndcg@10": float(np.where(hit, 1.0 / np.log2(r + 1.0), 0.0).mean()) if len(r) else 0.0})
    return rows


def point(ws: Workspace, setting: dict[str, Any], options: dict[str, Any]) -> list[dict[str, Any]]:
    m = setting["model"]
    if m == "backbone":
        whole = ws.evaluate("longtail-backbone", ws.inputs.baseline)
    else:
        whole = ws.evaluate("longtail-raserec", ws.raserec(), ws.inputs.memory)
    groups = group_rows(ws.output / whole["dump"], ws.inputs.data, options["groups"], options["head_share"])
    rows = [{"model": m, **g, "dump": whole["dump"]} for g in groups]
    return rows + [{"model": m, "group": "all", "users": sum(g["users"] for g in groups[: options["groups"]]),
                    "hr@10": whole["hr@10"], "ndcg@10": whole["ndcg@10"], "dump": whole["dump"]}]


def figures(rows: list[dict[str, Any]], options: dict[str, Any]) -> list[Figure]:
    return [Figure("longtail_groups", "Quality per target-popularity group (g1 = least popular)", "barline",
                   "group", ("hr@10", "ndcg@10"), "model", tuple(r for r in rows if r["group"] != "all"))]
