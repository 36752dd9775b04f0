"""Stage-1 speed benchmark: our SASRec (CE) vs RecBole 1.2.1's SASRec on Beauty, same machine, same run.

Issue "Core library, part 1": one training epoch plus a full validation over Beauty (SASRec, CE,
batch 256 training instances), median of 3 epochs, thread count stated, at least 8x faster than RecBole
1.2.1's SASRec with the same settings, RecBole at its fastest (autograd anomaly detection, which
importing RecBole's sequential models switches on, switched off again).

    python benchmarks/speed_stage1.py [--epochs 3] [--threads 2] [--skip-recbole] [--skip-ours] [--smoke]

- RecBole runs in its own interpreter (``--recbole-python``, default /work/recbole-venv/bin/python:
  python3.11 -m venv, then ``pip install torch==2.13.0``, ``pip install recbole==1.2.1``,
  ``pip install "numpy<2" "pandas<2.3" "scipy<1.14" "setuptools<81"``) through
  benchmarks/recbole_driver.py, on an atomic ``.inter`` copy of the data written under
  benchmarks/runs/recbole/ (gitignored).
- Ours runs the real CLI, ``raserec preprocess`` then ``raserec pretrain --set pretrain.objective=ce
  --set pretrain.batching=sequence`` (``--batching``; defaults otherwise), with this interpreter; per-epoch
  ``train_time`` / ``valid_time`` come from the run's history.json (timed with perf_counter in
  raserec_core/training/loop.py, the same spans the RecBole driver times).
- Both sides get ``torch.set_num_threads(--threads)`` and OMP_NUM_THREADS / MKL_NUM_THREADS = --threads.
- The result (medians, per-epoch times, ratio RecBole/ours, thread count, CPU, load average, exact
  commands) goes to benchmarks/results/speed_stage1.json; a markdown table row goes to stdout.

``--smoke`` checks the whole thing end to end in a few minutes: the first 2,000 users of Beauty, 1 epoch
each, no k-core on our side (so both sides see identical data); its result goes to
benchmarks/runs/speed/speed_stage1_smoke.json, never to the tracked file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "beauty.txt"
DEFAULT_RECBOLE_PY = "/work/recbole-venv/bin/python"
SMOKE_USERS = 2000

# Runs the real `raserec` CLI after fixing the intra-op thread count (the CLI has no thread option).
OURS_WRAPPER = (
    "import sys, torch; torch.set_num_threads(int(sys.argv.pop(1))); "
    "from raserec_core.cli.main import main; sys.exit(main())"
)


def log(msg: str) -> None:
    print(f"[speed_stage1 {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    for line in out.splitlines():
        if line.strip().startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except OSError:
        return "unknown"


def thread_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def shell_line(cmd: list[str], cwd: Path | None = None, threads: int | None = None) -> str:
    import shlex

    parts = []
    if cwd is not None:
        parts.append(f"cd {shlex.quote(str(cwd))} &&")
    if threads is not None:
        parts.append(f"OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads}")
    parts.append(shlex.join(cmd))
    return " ".join(parts)


def run(cmd: list[str], log_path: Path, cwd: Path | None = None, env: dict | None = None) -> str:
    """Run ``cmd``; stderr goes to ``log_path``, stdout is returned (and also logged)."""
    log("$ " + " ".join(cmd))
    with open(log_path, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=f, text=True)
        f.write(proc.stdout)
    if proc.returncode != 0:
        raise SystemExit(f"speed_stage1: command failed ({proc.returncode}), see {log_path}: {' '.join(cmd)}")
    return proc.stdout


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def summarize(epochs: list[dict]) -> dict:
    train = [e["train_time"] for e in epochs]
    valid = [e["valid_time"] for e in epochs]
    both = [t + v for t, v in zip(train, valid)]
    return {
        "train_times": train,
        "valid_times": valid,
        "median_train": median(train),
        "median_valid": median(valid),
        "median_epoch_plus_valid": median(both),
    }


# --- data ---------------------------------------------------------------------------------------------


def smoke_input(src: Path, work: Path) -> Path:
    """The first SMOKE_USERS lines of the sequence file, in the (gitignored) work folder."""
    dst = work / f"beauty_first{SMOKE_USERS}.txt"
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        with open(src) as f, open(dst.with_suffix(".tmp"), "w") as g:
            for i, line in enumerate(f):
                if i >= SMOKE_USERS:
                    break
                g.write(line)
        dst.with_suffix(".tmp").replace(dst)
    return dst


def write_inter(src: Path, data_path: Path, name: str) -> dict:
    """Sequence file -> RecBole atomic file data_path/name/name.inter. The timestamp is the global line-major
    position, so sorting by (user, timestamp) reproduces each line's order exactly."""
    out = data_path / name / f"{name}.inter"
    users = inters = 0
    items: set[str] = set()
    if out.exists():
        with open(out) as f:
            next(f)
            seen = set()
            for line in f:
                u, i, _ = line.rstrip("\n").split("\t")
                seen.add(u)
                items.add(i)
                inters += 1
        return {"path": str(out), "users": len(seen), "items": len(items), "interactions": inters}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    ts = 0
    with open(src) as f, open(tmp, "w") as g:
        g.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for line in f:
            parts = line.split()
            if not parts:
                continue
            users += 1
            for item in parts[1:]:
                g.write(f"{parts[0]}\t{item}\t{ts}\n")
                items.add(item)
                ts += 1
                inters += 1
    tmp.replace(out)
    return {"path": str(out), "users": users, "items": len(items), "interactions": inters}


# --- the two sides ------------------------------------------------------------------------------------


def run_recbole(args, src: Path, recbole_work: Path, name: str, epochs: int) -> dict:
    inter = write_inter(src, recbole_work, name)
    log(f"RecBole data: {inter}")
    cmd = [
        args.recbole_python, str(HERE / "recbole_driver.py"),
        "--data-path", str(recbole_work), "--dataset", name,
        "--epochs", str(epochs), "--threads", str(args.threads),
        "--eval-batch-size", str(args.recbole_eval_batch_size),
    ]
    t0 = time.perf_counter()
    out = run(cmd, recbole_work / f"{name}-driver.log", cwd=recbole_work, env=thread_env(args.threads))
    wall = time.perf_counter() - t0
    res = json.loads(out.strip().splitlines()[-1])
    expected = inter["interactions"] - 3 * inter["users"]
    res["expected_train_instances"] = expected
    res["train_instances_ok"] = res["instances"]["train"] == expected
    if not res["train_instances_ok"]:
        log(f"WARNING: RecBole has {res['instances']['train']} training instances, expected {expected}")
    res["wall_time"] = wall
    res["command"] = shell_line(cmd, cwd=recbole_work, threads=args.threads)
    res.update(summarize(res["epochs"]))
    return res


def run_ours(args, src: Path, work: Path, tag: str, epochs: int) -> dict:
    env = thread_env(args.threads)
    data_dir = work / tag
    pre_cmd = [sys.executable, "-m", "raserec_core.cli.main", "preprocess", "--input", str(src), "--output", str(data_dir)]
    if args.smoke:
        pre_cmd += ["--k-core", "0"]  # the truncated file is no longer 5-core; RecBole filters nothing either
    if not (data_dir / "stats.json").exists():
        run(pre_cmd, work / f"{tag}-preprocess.log", env=env)
    stats = json.loads((data_dir / "stats.json").read_text())
    out_dir = work / f"ours-{tag}-sasrec-ce"
    if out_dir.exists():
        shutil.rmtree(out_dir)  # a fresh run, never a resume
    cmd = [
        sys.executable, "-c", OURS_WRAPPER, str(args.threads),
        "pretrain", "--data", str(data_dir), "--output", str(out_dir), "--device", "cpu",
        "--set", "pretrain.objective=ce", "--set", f"pretrain.epochs={epochs}", "--set", "pretrain.patience=100",
        "--set", f"pretrain.batching={args.batching}",
    ]
    t0 = time.perf_counter()
    run(cmd, work / f"ours-{tag}.log", env=env)
    wall = time.perf_counter() - t0
    history = json.loads((out_dir / "history.json").read_text())
    import torch

    res = {
        "torch_version": torch.__version__,
        "threads": args.threads,
        "instances": stats["instances"],
        "n_users": stats["filtered"]["users"],
        "n_items": stats["filtered"]["items"],
        "n_interactions": stats["filtered"]["interactions"],
        "settings": f"SASRec, objective ce, batch 256 training instances, pretrain.batching={args.batching}",
        "epochs": [
            {k: v for k, v in r.items() if k in ("epoch", "loss", "train_time", "valid_time") or k.startswith("valid/")}
            for r in history
        ],
        "wall_time": wall,
        "preprocess_command": shell_line(pre_cmd, cwd=ROOT, threads=args.threads),
        "command": shell_line(cmd, cwd=ROOT, threads=args.threads),
    }
    res.update(summarize(res["epochs"]))
    return res


# --- main ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=None, help="epochs per side (default 3; 1 with --smoke)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batching", default="sequence", choices=["sequence", "bucket", "random"],
                    help="our pretrain.batching (sequence: a user's prefixes in one causal pass, data/packing.py)")
    ap.add_argument("--skip-recbole", action="store_true")
    ap.add_argument("--skip-ours", action="store_true")
    ap.add_argument("--smoke", action="store_true", help=f"first {SMOKE_USERS} users, 1 epoch: checks the script end to end")
    ap.add_argument("--input", default=str(DEFAULT_DATA), help="Beauty sequence file (user item item ...)")
    ap.add_argument("--recbole-python", default=DEFAULT_RECBOLE_PY)
    ap.add_argument("--recbole-eval-batch-size", type=int, default=4096)
    ap.add_argument("--work", default=str(HERE / "runs"), help="scratch root (gitignored)")
    ap.add_argument("--output", default=None, help="result JSON (default: benchmarks/results/speed_stage1.json; "
                    "runs/speed/speed_stage1_smoke.json with --smoke)")
    args = ap.parse_args()
    epochs = args.epochs if args.epochs is not None else (1 if args.smoke else 3)
    work_root = Path(args.work).resolve()
    ours_work = work_root / "speed"
    recbole_work = work_root / "recbole"
    ours_work.mkdir(parents=True, exist_ok=True)
    recbole_work.mkdir(parents=True, exist_ok=True)
    src = Path(args.input).resolve()
    if not src.exists():
        raise SystemExit(f"speed_stage1: no input file {src}")
    if args.smoke:
        src = smoke_input(src, ours_work / "smoke")
        tag, name = "beauty_smoke", "beauty_smoke"
    else:
        tag, name = "beauty", "beauty"
    output = Path(args.output) if args.output else (
        ours_work / "speed_stage1_smoke.json" if args.smoke else HERE / "results" / "speed_stage1.json"
    )

    started = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    load_before = os.getloadavg()
    result: dict = {
        "benchmark": "stage-1 speed: SASRec CE, one training epoch + full validation, median over epochs",
        "started": started,
        "smoke": args.smoke,
        "input": str(Path(args.input).resolve()) + (f" (first {SMOKE_USERS} users)" if args.smoke else ""),
        "epochs": epochs,
        "threads": args.threads,
        "cpu": cpu_model(),
        "nproc": os.cpu_count(),
        "git": git_rev(),
        "benchmark_command": shell_line([sys.executable, *sys.argv], cwd=Path.cwd()),
        "loadavg_before": list(load_before),
    }
    recbole = ours = None
    if not args.skip_recbole:
        log(f"RecBole 1.2.1 SASRec, {epochs} epoch(s), {args.threads} thread(s)")
        recbole = run_recbole(args, src, recbole_work, name, epochs)
        result["loadavg_after_recbole"] = list(os.getloadavg())
    if not args.skip_ours:
        log(f"raserec SASRec (ce), {epochs} epoch(s), {args.threads} thread(s)")
        ours = run_ours(args, src, ours_work, tag, epochs)
    result["loadavg_after"] = list(os.getloadavg())
    result["recbole"] = recbole
    result["ours"] = ours
    if recbole and ours:
        result["ratio"] = {
            "epoch_plus_valid": recbole["median_epoch_plus_valid"] / ours["median_epoch_plus_valid"],
            "train": recbole["median_train"] / ours["median_train"],
            "valid": recbole["median_valid"] / ours["median_valid"],
        }
        result["same_train_instances"] = recbole["instances"]["train"] == ours["instances"]["train"]
        result["meets_8x"] = result["ratio"]["epoch_plus_valid"] >= 8.0
    else:
        result["ratio"] = None
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(output)
    log(f"result written to {output}")

    def cell(side, key):
        return f"{side[key]:.1f}" if side else "–"

    ratio = f"{result['ratio']['epoch_plus_valid']:.1f}×" if result["ratio"] else "–"
    print("| date | CPU | threads | epochs | RecBole train s | RecBole valid s | RecBole sum s "
          "| ours train s | ours valid s | ours sum s | RecBole/ours |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {started[:10]}{' (smoke)' if args.smoke else ''} | {result['cpu']} ({result['nproc']} cores) "
        f"| {args.threads} | {epochs} (median) "
        f"| {cell(recbole, 'median_train')} | {cell(recbole, 'median_valid')} | {cell(recbole, 'median_epoch_plus_valid')} "
        f"| {cell(ours, 'median_train')} | {cell(ours, 'median_valid')} | {cell(ours, 'median_epoch_plus_valid')} "
        f"| {ratio} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
