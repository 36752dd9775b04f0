"""One function per pipeline stage. The CLI and the Kubeflow components both call these, and nothing else.

Each step reads its inputs from folders, writes its output folder, and returns a small dict of facts
(counts, metrics, hashes) for the caller to print or to put in artifact metadata.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from .config import Config

log = logging.getLogger("raserec")


class StepError(RuntimeError):
    """A step cannot run as asked (e.g. a changed config for an existing output); the message says why."""


def preprocess(input_path: str | Path, output: str | Path, cfg: Config) -> dict[str, Any]:
    from .data import build_dataset, read_interactions, write_dataset

    d = cfg.data
    inter = read_interactions(input_path, d.format, d.user_col, d.item_col, d.time_col)
    ds = build_dataset(inter, d.k_core, d.max_len, source=str(input_path))
    write_dataset(ds, output)
    log.info(
        "preprocessed %s: %d users, %d items, %d interactions -> %d/%d/%d train/valid/test instances",
        input_path, ds.stats["filtered"]["users"], ds.stats["filtered"]["items"],
        ds.stats["filtered"]["interactions"], *ds.stats["instances"].values(),
    )
    return ds.stats


def _prepare_output(out: Path, cfg: Config, sections: tuple[str, ...], restart: bool) -> dict | None:
    """Make ``out`` ready for a (resumed) run. Returns the finished metrics if there is nothing to do."""
    wanted = cfg.section(*sections)
    cfg_path = out / "config.yaml"
    if restart and out.exists():
        shutil.rmtree(out)
    if cfg_path.exists():
        import yaml

        from .config import from_dict

        previous = from_dict(yaml.safe_load(cfg_path.read_text())).section(*sections)
        if previous != wanted:
            changed = sorted(
                f"{s}.{k}" if isinstance(wanted[s], dict) else s
                for s in sections
                for k in (wanted[s] if isinstance(wanted[s], dict) else [None])
                if (previous[s].get(k) if k is not None else previous[s]) != (wanted[s].get(k) if k is not None else wanted[s])
            )
            raise StepError(
                f"{out}: holds a run with another config (changed: {', '.join(changed)}); "
                f"use another --output or pass --restart"
            )
        metrics_path = out / "metrics.json"
        if metrics_path.exists():
            log.info("%s: already finished; nothing to do (pass --restart to train again)", out)
            return json.loads(metrics_path.read_text())
    elif out.exists() and any(out.iterdir()):
        raise StepError(f"{out}: exists, is not empty and holds no run config; use another --output")
    out.mkdir(parents=True, exist_ok=True)
    from .storage import atomic_write_text

    atomic_write_text(cfg_path, cfg.to_yaml())
    return None


def _evaluator(cfg: Config, device):
    """(encoder, split tensors, prefix[, topk]) -> (metrics, RankResult) with the settings of ``cfg.eval``."""
    import torch

    from .evaluation import rank_all
    from .training.pretrain import encoder_scorer

    def evaluate_split(encoder, split, prefix: str, topk: int = 0):
        exclude = None
        if cfg.eval.mask_history:
            def exclude(rows: torch.Tensor) -> torch.Tensor:
                seqs, _ = split.fetch(rows)
                mask = torch.zeros(len(rows), encoder.n_items, dtype=torch.bool)
                return mask.scatter_(1, seqs, True)
        score = encoder_scorer(encoder, split, device, cfg.pretrain.length_chunks)
        result = rank_all(score, split.target, cfg.eval.batch_size, topk, exclude)
        return result.metrics(tuple(cfg.eval.ks), prefix), result

    return evaluate_split


def pretrain(data: str | Path, output: str | Path, cfg: Config, device, restart: bool = False) -> dict[str, Any]:
    from .data import read_dataset
    from .training.pretrain import pretrain as run_pretrain

    out = Path(output)
    done = _prepare_output(out, cfg, ("seed", "model", "pretrain", "data"), restart)
    if done is not None:
        return done
    ds = read_dataset(data)
    return run_pretrain(ds, cfg, out, device, _evaluator(cfg, device))


def evaluate(
    data: str | Path, model: str | Path, cfg: Config, device, split: str = "both",
    topk_output: str | Path | None = None, metrics_output: str | Path | None = None,
) -> dict[str, float]:
    from .data import read_dataset
    from .data.batching import InstanceTensors
    from .evaluation.dump import topk_table, write_topk
    from .models.checkpoint import load_encoder

    ds = read_dataset(data)
    encoder, manifest = load_encoder(model, device)
    if manifest["dataset_fingerprint"] != ds.fingerprint:
        raise StepError(f"{model}: trained on another dataset (fingerprint differs from {data})")
    evaluate_split = _evaluator(cfg, device)
    names = ("valid", "test") if split == "both" else (split,)
    metrics: dict[str, float] = {}
    tables = []
    for name in names:
        inst = ds.splits[name]
        split_metrics, result = evaluate_split(encoder, InstanceTensors(inst), f"{name}/", cfg.eval.topk if topk_output else 0)
        metrics.update(split_metrics)
        if topk_output:
            tables.append(topk_table(result, inst.user, inst.target, ds.user_ids, ds.item_ids))
    if topk_output:
        import pyarrow as pa

        if len(names) > 1:
            tables = [t.append_column("split", pa.array([n] * t.num_rows)) for t, n in zip(tables, names)]
        write_topk(pa.concat_tables(tables), topk_output)
    if metrics_output:
        from .storage import atomic_write_text

        atomic_write_text(metrics_output, json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics
