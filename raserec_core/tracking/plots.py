"""Figures logged as MLflow artifacts: training curves from a training loop's ``history.json``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def training_curves(history: Sequence[Mapping[str, Any]], title: str = ""):
    """Loss terms (left) and validation metrics (right) per epoch; returns a matplotlib Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [int(r.get("epoch", i + 1)) for i, r in enumerate(history)]
    keys = sorted({k for r in history for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    losses = [k for k in keys if k == "loss" or k.startswith("loss_")]
    valid = [k for k in keys if k.startswith("valid/")]
    fig, (ax_loss, ax_valid) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, names, label in ((ax_loss, losses, "loss"), (ax_valid, valid, "validation metric")):
        for name in names:
            ax.plot(epochs, [r.get(name, float("nan")) for r in history], marker="o", markersize=3, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if names:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def popularity_groups(topk_path, dataset_dir, n_groups: int = 5, k: int = 10) -> dict[str, float]:
    """HR@k and NDCG@k of the users whose target lies in each item-popularity group.

    Items are ranked by how often they are a training target and cut into ``n_groups`` groups of equal
    item count (``g1`` = least popular). Uses the ``target``/``target_rank`` columns of a top-K dump
    (``evaluation.dump``), so it reproduces exactly the ranks the metrics came from. Keys:
    ``{split}_{hr|ndcg}_at_{k}_pop_g{i}`` and ``{split}_users_pop_g{i}``.
    """
    from pathlib import Path

    import numpy as np
    import pyarrow.parquet as pq

    from ..data.artifact import read_ids

    item_ids = read_ids(Path(dataset_dir) / "items.parquet")
    train_targets = pq.read_table(Path(dataset_dir) / "train.parquet", columns=["target"]).column("target").to_numpy()
    counts = np.bincount(train_targets, minlength=len(item_ids))[1:]  # (n_items,) without padding
    order = np.argsort(counts, kind="stable")  # least popular first
    group_of = np.empty(len(order), dtype=np.int64)
    group_of[order] = np.arange(len(order)) * n_groups // max(1, len(order))
    index = {raw: i for i, raw in enumerate(item_ids.tolist()[1:])}
    table = pq.read_table(topk_path)
    splits = table.column("split").to_pylist() if "split" in table.column_names else ["test"] * table.num_rows
    targets = np.array([group_of[index[t]] for t in table.column("target").to_pylist()])
    ranks = table.column("target_rank").to_numpy().astype(np.float64)
    splits = np.asarray(splits)
    out: dict[str, float] = {}
    for split in sorted(set(splits.tolist())):
        for g in range(n_groups):
            sel = (splits == split) & (targets == g)
            r = ranks[sel]
            hit = r <= k
            out[f"{split}_users_pop_g{g + 1}"] = float(sel.sum())
            out[f"{split}_hr_at_{k}_pop_g{g + 1}"] = float(hit.mean()) if len(r) else 0.0
            out[f"{split}_ndcg_at_{k}_pop_g{g + 1}"] = float(np.where(hit, 1.0 / np.log2(r + 1.0), 0.0).mean()) if len(r) else 0.0
    return out


def popularity_figure(groups: dict[str, float], k: int = 10):
    """Bars of NDCG@k and HR@k per popularity group and split (from ``popularity_groups``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    splits = sorted({key.split("_")[0] for key in groups})
    n = len({key.rsplit("_g", 1)[1] for key in groups})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / max(1, len(splits))
    for ax, metric in zip(axes, ("ndcg", "hr")):
        for j, split in enumerate(splits):
            values = [groups.get(f"{split}_{metric}_at_{k}_pop_g{g}", 0.0) for g in range(1, n + 1)]
            ax.bar(np.arange(n) + j * width, values, width, label=split)
        ax.set_xticks(np.arange(n) + width * (len(splits) - 1) / 2, [f"g{g}" for g in range(1, n + 1)])
        ax.set_xlabel("item popularity group (g1 = least popular)")
        ax.set_ylabel(f"{metric.upper()}@{k}")
        ax.legend()
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig
