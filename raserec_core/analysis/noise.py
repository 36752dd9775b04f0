"""Noise robustness: a seeded share of items replaced by random items, in the test inputs (the trained
models unchanged) or, separately, in the training sequences (stage 1, the bank and RaSeRec retrained on
the noisy data, each cached). The paper reports robustness to noise without its protocol; this is ours.

Whether the item at a (user, position) is replaced, and by which item, is a hash of the seed, the user and
the position, so an item replaced in one training prefix is replaced, by the same item, in every
prefix that holds it. Training noise touches the training instances only (their histories and targets);
validation and test instances are left as they are.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..data.split import Instances
from ..errors import ConfigError
from .figures import Figure
from .workspace import Workspace

TITLE = "Noise robustness"
ABOUT = ("A share of items replaced by random items (seeded), in the test inputs or in the training "
         "sequences; test HR@10 / NDCG@10 of the backbone and of RaSeRec.")
DEFAULTS = {"shares": [0.0, 0.05, 0.1, 0.15, 0.2, 0.25], "where": ["test", "train"], "noise_seed": 0}


def _hash(seed: int, user: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """splitmix64 of (seed, user, position): uniform uint64 per element."""
    with np.errstate(over="ignore"):
        x = (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)) ^ (user.astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9))
        x = x ^ (pos.astype(np.uint64) * np.uint64(0x94D049BB133111EB)) + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def replaced(user: np.ndarray, pos: np.ndarray, items: np.ndarray, share: float, n_items: int, seed: int) -> np.ndarray:
    """``items`` at (user, pos) with a ``share`` of them replaced by random items 1..n_items-1 (0 is padding)."""
    draw = (_hash(2 * seed, user, pos) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    new = 1 + (_hash(2 * seed + 1, user, pos) % np.uint64(n_items - 1)).astype(np.int64)
    return np.where(draw < share, new, items)


def corrupt(inst: Instances, share: float, n_items: int, seed: int, targets: bool = False) -> Instances:
    """``inst`` with a share of its history items (and with ``targets`` its targets) replaced."""
    lengths = inst.lengths
    row = np.repeat(np.arange(len(inst)), lengths)
    pos = inst.position[row] - lengths[row] + (np.arange(len(inst.values)) - inst.offsets[:-1][row])
    values = replaced(inst.user[row], pos, inst.values, share, n_items, seed)
    target = replaced(inst.user, inst.position, inst.target, share, n_items, seed) if targets else inst.target
    return replace(inst, values=values, target=target)


def noisy_dataset(data: Path, share: float, seed: int, cache: Path) -> Path:
    """The dataset with noisy training instances, written once into ``cache``."""
    from ..data import read_dataset, write_dataset
    from ..data.artifact import SeqDataset, fingerprint

    out = cache / f"data-{Path(data).name}-{_source(data)[:12]}-train-noise-{share:g}-seed{seed}"
    if (out / "stats.json").exists():
        return out
    ds = read_dataset(data)
    splits = {**ds.splits, "train": corrupt(ds.splits["train"], share, ds.n_items, seed, targets=True)}
    stats = {**ds.stats, "fingerprint": fingerprint(splits, ds.item_ids, ds.user_ids),
             "noise": {"share": share, "seed": seed, "source": ds.fingerprint}}
    write_dataset(SeqDataset(splits, ds.user_ids, ds.item_ids, stats), out)
    return out


def _source(data: Path) -> str:
    import json

    return json.loads((Path(data) / "stats.json").read_text())["fingerprint"]


def settings(options: dict[str, Any]) -> list[dict[str, Any]]:
    bad = sorted(set(options["where"]) - {"test", "train"})
    if bad:
        raise ConfigError(f"noise where {bad[0]!r}: expected test or train")
    return [{"where": w, "share": float(s)} for w in options["where"] for s in options["shares"]]


def point(ws: Workspace, setting: dict[str, Any], options: dict[str, Any]) -> list[dict[str, Any]]:
    where, share, seed = setting["where"], setting["share"], options["noise_seed"]
    label = f"noise-{where}-{share:g}"
    if where == "test":
        from ..data import read_dataset

        n_items = read_dataset(ws.inputs.data, verify=False).n_items
        inputs = (lambda name, inst: corrupt(inst, share, n_items, seed)) if share > 0 else None
        base = ws.evaluate(f"{label}-backbone", ws.inputs.baseline, inputs=inputs)
        rag = ws.evaluate(f"{label}-raserec", ws.raserec(), ws.inputs.memory, inputs=inputs)
    else:
        data = noisy_dataset(ws.inputs.data, share, seed, ws.cache) if share > 0 else ws.inputs.data
        model = ws.pretrain(ws.cfg, data)
        memory = ws.index(ws.cfg, model, data)
        fine = ws.finetune(ws.cfg, model, memory, data)
        base = ws.evaluate(f"{label}-backbone", model, data=data)
        rag = ws.evaluate(f"{label}-raserec", fine, memory, data=data)
    return [{"where": where, "share": share, "model": "backbone", **base},
            {"where": where, "share": share, "model": "raserec", **rag}]


def figures(rows: list[dict[str, Any]], options: dict[str, Any]) -> list[Figure]:
    return [Figure(f"noise_{w}", f"Noise in the {'test inputs' if w == 'test' else 'training sequences'}", "line",
                   "share", ("hr@10", "ndcg@10"), "model", tuple(r for r in rows if r["where"] == w))
            for w in dict.fromkeys(r["where"] for r in rows)]
