"""One function per pipeline stage. The CLI and the Kubeflow components both call these, and nothing else.

Each step reads its inputs from folders, writes its output folder, and returns a small dict of facts
(counts, metrics, hashes) for the caller to print or to put in artifact metadata.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from .config import Config
from .errors import StepError

log = logging.getLogger("raserec")


def preprocess(input_path: str | Path, output: str | Path, cfg: Config, overwrite: bool = False) -> dict[str, Any]:
    """Interactions -> dataset folder. ``output`` may hold a dataset (replaced atomically); any other
    non-empty folder is refused unless ``overwrite``, before any work is done."""
    from .data import DataError, build_dataset, read_interactions, write_dataset
    from .data.artifact import is_dataset
    from .storage import may_replace

    may_replace(output, is_dataset, "a dataset folder", overwrite)  # fail fast; write_dataset checks again
    d = cfg.data
    if d.engine == "duckdb":
        from .data.outofcore import preprocess_parquet
        from .data.readers import detect_format

        if detect_format(Path(input_path), d.format) != "parquet":
            raise DataError(f"{input_path}: data.engine=duckdb reads Parquet only; use data.engine=memory")
        stats = preprocess_parquet(
            input_path, output, d.k_core, d.max_len, d.user_col, d.item_col, d.time_col, d.memory_limit_gb,
            overwrite=overwrite, source=str(input_path),
        )
    else:
        inter = read_interactions(input_path, d.format, d.user_col, d.item_col, d.time_col)
        ds = build_dataset(inter, d.k_core, d.max_len, source=str(input_path))
        write_dataset(ds, output, overwrite=overwrite)
        stats = ds.stats
    log.info(
        "preprocessed %s (%s engine): %d users, %d items, %d interactions -> %d/%d/%d train/valid/test instances",
        input_path, d.engine, stats["filtered"]["users"], stats["filtered"]["items"],
        stats["filtered"]["interactions"], *stats["instances"].values(),
    )
    return stats


def _prepare_output(
    out: Path, cfg: Config, sections: tuple[str, ...], restart: bool, inputs: dict[str, str]
) -> dict | None:
    """Make ``out`` ready for a (resumed) run. Returns the finished metrics if there is nothing to do.

    ``inputs`` (e.g. the dataset fingerprint) must match too: resuming on other data is an error.
    """
    from .storage import atomic_write_text

    wanted = cfg.section(*sections)
    inputs_path = out / "inputs.json"
    cfg_path = out / "config.yaml"
    if restart and out.exists():
        shutil.rmtree(out)
    if cfg_path.exists():
        import yaml

        from .config import flatten, from_dict

        previous = flatten(from_dict(yaml.safe_load(cfg_path.read_text())).section(*sections))
        current = flatten(wanted)
        changed = sorted(k for k in current if previous.get(k) != current[k])
        if changed:
            raise StepError(
                f"{out}: holds a run with another config (changed: {', '.join(changed)}); "
                f"use another --output or pass --restart"
            )
        previous_inputs = json.loads(inputs_path.read_text()) if inputs_path.exists() else {}
        if previous_inputs != inputs:
            changed = sorted(k for k in set(previous_inputs) | set(inputs) if previous_inputs.get(k) != inputs.get(k))
            raise StepError(
                f"{out}: holds a run on other inputs (changed: {', '.join(changed)}); "
                f"use another --output or pass --restart"
            )
        metrics_path = out / "metrics.json"
        if metrics_path.exists():
            log.info("%s: already finished; nothing to do (pass --restart to train again)", out)
            return json.loads(metrics_path.read_text())
    elif out.exists() and any(out.iterdir()):
        raise StepError(f"{out}: exists, is not empty and holds no run config; use another --output")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(inputs_path, json.dumps(inputs, indent=2, sort_keys=True) + "\n")
    atomic_write_text(cfg_path, cfg.to_yaml())
    return None


def _work_folder(out: Path, work_root, step: str, cfg: Config, sections: tuple[str, ...], inputs: dict) -> Path:
    """Where a training step runs: ``out`` itself, or, with ``work_root``, a folder there named by all that
    determines its result (the config sections and the inputs' identities). A pipeline's output folders
    are new on every run; this one is found again, so re-running an interrupted pipeline resumes the
    step from its last epoch, and re-running a finished one reuses it."""
    if not work_root:
        return out
    import hashlib

    from .config import flatten

    identity = json.dumps({"config": flatten(cfg.section(*sections)), "inputs": inputs}, sort_keys=True, default=str)
    return Path(work_root) / f"{step}-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"


def _claim(work: Path, work_root):
    """With ``work_root``, an exclusive lock on the shared work folder for the step's whole use of it: a
    concurrent run of the same step and inputs (two ``raserec run`` at once) waits, then finds it done."""
    if not work_root:
        return contextlib.nullcontext()
    from .storage.locks import path_lock

    return path_lock(work)


def _publish(work: Path, out: Path) -> None:
    """Copy a finished work folder to ``out``, without its resume checkpoint (and its recorded hash)."""
    if work.resolve() == out.resolve():
        return
    shutil.copytree(work, out, ignore=shutil.ignore_patterns("checkpoint.pt*"), dirs_exist_ok=True)


def _selection(cfg: Config) -> dict[str, Any]:
    """What of ``cfg.eval`` changes a training run: the protocol its early stopping selects by. Recorded
    only when seen items are excluded, so runs made under the paper's protocol before the setting existed
    keep their identity (and their resumable work folders)."""
    return {"eval.mask_history": True} if cfg.eval.mask_history else {}


def _evaluator(cfg: Config, device):
    """(encoder, split tensors, prefix[, topk, protocols]) -> (metrics, RankResult) under ``cfg.eval``."""
    from .evaluation.split import encoder_scores, evaluate_split

    def evaluate_encoder(encoder, split, prefix: str, topk: int = 0, protocols: bool = True):
        return evaluate_split(encoder_scores(encoder, split, device), split, prefix, cfg.eval, topk, protocols)

    return evaluate_encoder


def pretrain(
    data: str | Path, output: str | Path, cfg: Config, device, restart: bool = False, work_root: str | Path | None = None
) -> dict[str, Any]:
    """Stage 1. With ``work_root`` it trains in a resumable folder there and copies the result to ``output``."""
    from .data import read_dataset
    from .training.distributed import is_main, on_main
    from .training.pretrain import pretrain as run_pretrain

    out = Path(output)
    ds = read_dataset(data)
    if len(ds.splits["train"]) == 0:
        raise StepError(f"{data}: the dataset has no training instances (every user needs at least 4 items)")
    sections, inputs = ("seed", "model", "pretrain", "data"), {"dataset": ds.fingerprint, **_selection(cfg)}
    work = _work_folder(out, work_root, "pretrain", cfg, sections, inputs)
    # Data-parallel (under torchrun), rank 0 alone claims, prepares, writes and publishes the folder.
    with _claim(work, work_root if is_main() else None):
        done = on_main(lambda: _prepare_output(work, cfg, sections, restart, inputs))
        result = done if done is not None else run_pretrain(ds, cfg, work, device, _evaluator(cfg, device))
        on_main(lambda: _publish(work, out))
    return result


def _load_model(model: str | Path, ds, device):
    from .models.checkpoint import load_encoder

    encoder, manifest = load_encoder(model, device)
    if manifest["dataset_fingerprint"] != ds.fingerprint:
        raise StepError(f"{model}: trained on another dataset (fingerprint differs from the dataset's)")
    return encoder, manifest


def _load_memory(memory: str | Path, manifest: dict, cfg: Config, model: str | Path):
    from .memory.bank import load_bank

    bank = load_bank(memory, nprobe=cfg.memory.nprobe)
    if bank.meta["encoder_sha256"] != manifest["encoder_sha256"]:
        raise StepError(
            f"{memory}: memory bank built by another encoder ({bank.meta['encoder_sha256'][:12]}…) than "
            f"{model} uses ({manifest['encoder_sha256'][:12]}…); rebuild it with 'raserec index'"
        )
    return bank


def _bank_digest(bank) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(bank.manifest(), sort_keys=True).encode()).hexdigest()


def index(data: str | Path, model: str | Path, output: str | Path, cfg: Config, device, overwrite: bool = False) -> dict[str, Any]:
    """Memory bank over the training instances, encoded by the frozen stage-1 encoder. ``output`` may hold
    a bank (replaced atomically); any other non-empty folder is refused unless ``overwrite``."""
    from .data import read_dataset
    from .memory.bank import is_bank, save_bank
    from .memory.build import bank_from_dataset
    from .storage import may_replace

    replace = may_replace(output, is_bank, "a memory bank", overwrite)  # fails before the encoding work
    ds = read_dataset(data)
    encoder, manifest = _load_model(model, ds, device)
    bank = bank_from_dataset(ds, encoder, manifest["encoder_sha256"], cfg.memory, cfg.seed, device)
    return save_bank(bank, output, replace_existing=replace)


def finetune(
    data: str | Path, model: str | Path, memory: str | Path, output: str | Path, cfg: Config, device,
    restart: bool = False, work_root: str | Path | None = None,
) -> dict[str, Any]:
    """Stage 2: train the RAM over the memory bank; the output folder is a self-contained model.
    ``work_root`` as for ``pretrain``."""
    from .data import read_dataset
    from .models.checkpoint import file_sha256
    from .training.distributed import is_main, on_main
    from .training.finetune import finetune as run_finetune

    out = Path(output)
    ds = read_dataset(data)
    encoder, manifest = _load_model(model, ds, device)
    bank = _load_memory(memory, manifest, cfg, model)
    from dataclasses import replace

    # Record the bank's real index settings (not the command's defaults or autos) in the run's config.
    cfg = replace(cfg, memory=replace(cfg.memory, index_type=bank.meta["index_type_requested"], nlist=bank.meta["nlist"],
                                      nprobe=bank.meta["nprobe"], pq_m=bank.meta["pq_m"]))
    inputs = {"dataset": ds.fingerprint, "encoder": manifest["encoder_sha256"], "memory": _bank_digest(bank),
              **_selection(cfg)}
    sections = ("seed", "finetune", "memory")
    work = _work_folder(out, work_root, "finetune", cfg, sections, inputs)

    def prepare() -> dict | None:  # rank 0 alone, as for pretrain
        done = _prepare_output(work, cfg, sections, restart, inputs)
        if done is None:
            shutil.copyfile(Path(model) / "encoder.pt", work / "encoder.pt")
            if file_sha256(work / "encoder.pt") != manifest["encoder_sha256"]:
                raise StepError(f"{model}/encoder.pt changed while it was being copied")
            for name in ("items.parquet", "users.parquet"):
                shutil.copyfile(Path(data) / name, work / name)
        return done

    with _claim(work, work_root if is_main() else None):
        result = on_main(prepare)
        if result is None:
            result = run_finetune(ds, encoder, manifest, bank, cfg, work, device)
        on_main(lambda: _publish(work, out))
    return result


def _recommender_split(rec, inst, prefix: str, cfg: Config, device, topk: int = 0):
    """(metrics, RankResult) of the retrieval-augmented ``rec`` on ``inst`` (``InstanceTensors``)."""
    from .evaluation.split import evaluate_split, recommender_scores

    return evaluate_split(recommender_scores(rec, rec.precompute(inst, device), device), inst, prefix, cfg.eval, topk)


def evaluate(
    data: str | Path, model: str | Path, cfg: Config, device, split: str = "both",
    topk_output: str | Path | None = None, metrics_output: str | Path | None = None,
    memory: str | Path | None = None, overrides: dict[str, Any] | None = None, inputs=None,
) -> dict[str, Any]:
    """Full ranking of a stage-1 model, or with ``memory`` of a fine-tuned one with retrieval (test
    queries retrieve from training plus validation memories, built in memory, never written).

    A fine-tuned model retrieves with its own settings (``model.json``); ``overrides`` (dotted keys of
    ``recommender.OVERRIDABLE``, e.g. ``{"memory.nprobe": 4}``) replace them and are recorded in the result
    under ``overrides``. Seen items follow ``cfg.eval.mask_history``; both protocols are reported.
    ``inputs(split_name, instances) -> instances`` replaces a split's queries before ranking (the noise
    analysis corrupts the test inputs with it); the memories are the dataset's own."""
    from .data import read_dataset
    from .data.batching import InstanceTensors
    from .evaluation.dump import topk_table, write_topk

    ds = read_dataset(data)
    encoder, manifest = _load_model(model, ds, device)
    names = ("valid", "test") if split == "both" else (split,)
    topk = cfg.eval.topk if topk_output else 0
    overrides = dict(overrides or {})
    if memory is not None:
        from .recommender import Recommender

        if manifest.get("kind") != "raserec":
            raise StepError(f"{model}: --memory needs a fine-tuned model ('raserec finetune' output)")
        rec = Recommender.load(model, memory, device, overrides)

        def run_split(name: str, inst):
            return _recommender_split(rec.for_test(ds, device) if name == "test" else rec, inst, f"{name}/", cfg, device, topk)
    else:
        if manifest.get("kind") == "raserec":
            log.warning("%s is a fine-tuned model; without --memory only its encoder is evaluated", model)
        if overrides:  # nothing of a stage-1 ranking retrieves: they change nothing, so none is recorded
            log.warning("retrieval settings %s apply with --memory only; ignored", ", ".join(sorted(overrides)))
            overrides = {}
        evaluate_encoder = _evaluator(cfg, device)

        def run_split(name: str, inst):
            return evaluate_encoder(encoder, inst, f"{name}/", topk)

    metrics: dict[str, Any] = {}
    tables = []
    for name in names:
        inst = inputs(name, ds.splits[name]) if inputs is not None else ds.splits[name]
        split_metrics, result = run_split(name, InstanceTensors(inst))
        metrics.update(split_metrics)
        if topk_output:
            tables.append(topk_table(result, inst.user, inst.target, ds.user_ids, ds.item_ids))
    metrics["eval.mask_history"] = cfg.eval.mask_history
    if overrides:
        metrics["overrides"] = overrides
    if topk_output:
        import pyarrow as pa

        if len(names) > 1:
            tables = [t.append_column("split", pa.array([n] * t.num_rows)) for t, n in zip(tables, names)]
        write_topk(pa.concat_tables(tables), topk_output)
    if metrics_output:
        from .storage import atomic_write_text

        atomic_write_text(metrics_output, json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics


def register(
    data: str | Path, model: str | Path, device, valid_ndcg_at_10: float, model_name: str = "raserec",
    memory: str | Path | None = None, tracking_uri: str = "", run_id: str = "",
) -> dict[str, Any]:
    """Log the model (with a serving memory bank of everything known) as an MLflow pyfunc model in run
    ``run_id`` and register a version of ``model_name``; alias ``champion`` moves to it only if
    ``valid_ndcg_at_10`` beats the champion's on the same dataset fingerprint, else ``challenger``."""
    from .tracking.registry import register_model

    return register_model(
        data, model, valid_ndcg_at_10=valid_ndcg_at_10, tracking_uri=tracking_uri, run_id=run_id, device=device,
        model_name=model_name, memory=memory,
    )
