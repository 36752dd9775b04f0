"""Serving latency and throughput of a registered model: in-process (``mlflow.pyfunc.load_model``) and
over HTTP (``mlflow models serve``), single users and batches of users. The goals (issue #17): single-user
p99 <= 15 ms in-process and <= 30 ms over HTTP on the 2-core CPU, for the Beauty champion (the full bank).

    python benchmarks/serving_latency.py --model models:/raserec@champion \
        --tracking-uri sqlite:///runs/pipeline/mlflow.db --data benchmarks/runs/data/beauty \
        [--requests 1000] [--warmup 50] [--batch-size 100] [--batches 20] [--k 10] [--no-http] [--name NAME]

``--model``: a model URI (downloaded once; ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` for
``models:/``) or a local pyfunc model folder (the one holding ``MLmodel``). ``--data``: a dataset folder
of the model's dataset (its fingerprint is checked; ``raserec preprocess`` of the same interactions
gives it); the requests are its test users' inputs (their histories before the test item, with their
user ids), in a fixed shuffled order (``--seed``).

(a) in-process: ``--requests`` single-user ``predict`` calls after ``--warmup`` unrecorded ones, each a
one-row DataFrame built beforehand: p50/p90/p99/max ms of wall time, and of this process's CPU time (the
cost without the waits other processes add); (b) HTTP: the same requests as sequential POSTs to
``/invocations`` on one keep-alive session (body serialised beforehand; the answer read, not decoded,
inside the timing) against ``mlflow models serve --env-manager local --workers 1`` started by this script
on 127.0.0.1 with its interpreter and environment, and the server's CPU time per request (Linux /proc);
(c) throughput: ``--batches`` batches of ``--batch-size`` users (two more first, untimed), in-process and
over HTTP, as users per second. Every HTTP answer is compared with the in-process one
(``http_answers_identical``).

Both processes run the code the model carries (its ``code/raserec_core``). Threads are the
environment's (``OMP_NUM_THREADS``; torch's default is one per core), and the model's load makes OpenMP
wait passively unless ``OMP_WAIT_POLICY`` is set (``OMP_WAIT_POLICY=`` keeps the runtime's spinning
default); the record states ``torch.get_num_threads()`` and these variables. Run it on an otherwise idle
machine: the wall times count every other process's turn on the cores. One JSON record is appended to
benchmarks/results/serving_latency.jsonl (``--output``), and a table printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from records import append_jsonl, environment  # this folder

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "serving_latency.jsonl"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "RASEREC_DEVICE")


def local_model(uri: str, tracking_uri: str | None, tmp: Path) -> Path:
    """The pyfunc model folder of ``uri``: itself when it is a local folder, else downloaded into ``tmp``."""
    if (Path(uri) / "MLmodel").is_file():
        return Path(uri).resolve()
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    return Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp / "model")))


def request_pool(data: str, n: int, seed: int, fingerprint: str) -> list[dict]:
    """``n`` test users' inputs (history as raw item ids, user id), in a seeded random order, repeated
    when the dataset has fewer test users; the dataset must be the model's (``fingerprint``)."""
    from raserec_core.data import read_dataset

    ds = read_dataset(data)
    if fingerprint and ds.fingerprint != fingerprint:
        raise SystemExit(f"{data}: dataset fingerprint {ds.fingerprint[:12]}..., the model was trained on "
                         f"{fingerprint[:12]}...: pass the model's dataset folder")
    test = ds.splits["test"]
    rows = np.random.default_rng(seed).permutation(len(test))
    rows = np.resize(rows, n)
    return [
        {"history": ds.item_ids[test.values[test.offsets[r] : test.offsets[r + 1]]].tolist(),
         "user_id": str(ds.user_ids[test.user[r]])}
        for r in rows.tolist()
    ]


def summary_ms(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"n": len(ms), "p50_ms": round(p50, 2), "p90_ms": round(p90, 2), "p99_ms": round(p99, 2),
            "max_ms": round(float(ms.max()), 2), "mean_ms": round(float(ms.mean()), 2)}


def timed(calls, warmup: int) -> tuple[list[float], list[float], list]:
    """Wall and CPU seconds (this process, all threads) of each call after the first ``warmup`` ones, and
    every call's result. The CPU time is the cost without the waits a busy machine adds to the wall time."""
    wall, cpu, results = [], [], []
    for i, call in enumerate(calls):
        t0, c0 = time.perf_counter(), time.process_time()
        out = call()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        results.append(out)
        if i >= warmup:
            wall.append(dt)
            cpu.append(dc)
    return wall, cpu, results


def session_cpu_s(sid: int) -> float:
    """CPU seconds used so far by the live processes of session ``sid`` (the server's; Linux /proc)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # the fields after the command name
        except OSError:  # a process that just ended
            continue
        if int(fields[3]) == sid:  # session; then utime and stime (proc(5) fields 6, 14, 15)
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def body(rows: list[dict], k: int) -> bytes:
    return json.dumps({"dataframe_records": rows, "params": {"k": k}}).encode()


def http_phase(model: Path, singles: list[dict], batches: list[list[dict]], k: int, warmup: int, batch_warmup: int,
               log: Path) -> tuple[list[float], list[float], list[list[list[str]]], dict]:
    """Single-user and batch POST times, every answer's item ids, and the server's start-up seconds and
    CPU seconds over the single-user and the batch requests."""
    import requests

    from raserec_core.tracking.local_server import mlflow_serve

    t0 = time.perf_counter()
    with mlflow_serve(sys.executable, model, dict(os.environ), log, startup_s=300) as (url, proc):
        startup = time.perf_counter() - t0
        with requests.Session() as session:  # one keep-alive connection for every request
            def post(data: bytes):
                def call():
                    resp = session.post(url + "/invocations", data=data, headers={"Content-Type": "application/json"})
                    _ = resp.content  # the whole answer is read inside the timing
                    return resp
                return call

            c0 = session_cpu_s(proc.pid)
            single_t, _, single_r = timed([post(body([r], k)) for r in singles], warmup)
            c1 = session_cpu_s(proc.pid)
            batch_t, _, batch_r = timed([post(body(b, k)) for b in batches], batch_warmup)
            c2 = session_cpu_s(proc.pid)
    answers = []
    for resp in [*single_r, *batch_r]:
        if resp.status_code != 200:
            raise SystemExit(f"HTTP {resp.status_code}: {resp.text[:500]}")
        answers.append([p["item_ids"] for p in resp.json()["predictions"]])
    return single_t, batch_t, answers, {"startup_s": startup, "single_cpu_s": c1 - c0, "batch_cpu_s": c2 - c1}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="model URI or local pyfunc model folder")
    ap.add_argument("--data", required=True, help="the model's dataset folder (requests: its test users)")
    ap.add_argument("--tracking-uri", help="for a models:/ or runs:/ URI (default: MLFLOW_TRACKING_URI)")
    ap.add_argument("--requests", type=int, default=1000, help="timed single-user requests")
    ap.add_argument("--warmup", type=int, default=50, help="untimed single-user requests first")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--batches", type=int, default=20, help="timed batches (two more first, untimed)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0, help="order of the test users")
    ap.add_argument("--no-http", action="store_true", help="in-process only")
    ap.add_argument("--name", default="", help="record name (default serving-<time>)")
    ap.add_argument("--output", default=str(RESULTS))
    args = ap.parse_args()
    batch_warmup = 2

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one line per file otherwise
    with tempfile.TemporaryDirectory(prefix="serving-latency-") as tmp:
        tmp = Path(tmp)
        import mlflow.pyfunc
        import pandas as pd

        folder = local_model(args.model, args.tracking_uri, tmp)
        t0 = time.perf_counter()
        # The model's code goes first on sys.path, and its load sets the OpenMP policy before torch loads:
        # torch is imported after it here, as in the server.
        model = mlflow.pyfunc.load_model(str(folder))
        load_s = time.perf_counter() - t0
        manifest = json.loads(next(folder.glob("artifacts/*/recommender.json")).read_text())
        n_single = args.warmup + args.requests
        n_pool = n_single + (args.batches + batch_warmup) * args.batch_size
        pool = request_pool(args.data, n_pool, args.seed, manifest.get("dataset_fingerprint", ""))
        singles = pool[:n_single]
        rest = pool[n_single:]
        batches = [rest[i * args.batch_size : (i + 1) * args.batch_size] for i in range(args.batches + batch_warmup)]
        params = {"k": args.k}

        def predict(rows: list[dict]):
            frame = pd.DataFrame({"history": [r["history"] for r in rows], "user_id": [r["user_id"] for r in rows]})
            return lambda: model.predict(frame, params=params)

        single_t, single_cpu, single_r = timed([predict([r]) for r in singles], args.warmup)
        batch_t, _, batch_r = timed([predict(b) for b in batches], batch_warmup)
        local_answers = [out["item_ids"].tolist() for out in [*single_r, *batch_r]]

        record = {
            "name": args.name or f"serving-{time.strftime('%Y%m%dT%H%M%S')}",
            "command": " ".join(["python", "benchmarks/serving_latency.py", *sys.argv[1:]]),
            **environment(),  # its "threads" is torch.get_num_threads() here, after the model's load
            "env": {v: os.environ[v] for v in THREAD_VARS if v in os.environ},
            "model": args.model, "kind": manifest["kind"], "bank_entries": manifest.get("entries", 0),
            "data": args.data, "k": args.k, "warmup": args.warmup, "batch_size": args.batch_size,
            "load_s": round(load_s, 2),
            "in_process": summary_ms(single_t),
            "in_process_cpu": summary_ms(single_cpu),
            "in_process_batch": {**summary_ms(batch_t), "users_per_s": round(args.batch_size * len(batch_t) / sum(batch_t), 1)},
            "mean_history": round(float(np.mean([len(r["history"]) for r in singles])), 1),
        }
        if not args.no_http:
            h_single, h_batch, h_answers, server = http_phase(
                folder, singles, batches, args.k, args.warmup, batch_warmup, tmp / "server.log")
            n_batch_users = args.batch_size * (args.batches + batch_warmup)
            record |= {
                "http": summary_ms(h_single),
                "http_batch": {**summary_ms(h_batch), "users_per_s": round(args.batch_size * len(h_batch) / sum(h_batch), 1)},
                "server_startup_s": round(server["startup_s"], 1),
                # Warm-up included (the server's clock is read around all of them): mean CPU per request.
                "server_cpu_ms_per_request": round(server["single_cpu_s"] * 1000 / n_single, 2),
                "server_cpu_ms_per_batch_user": round(server["batch_cpu_s"] * 1000 / n_batch_users, 2),
                "http_answers_identical": h_answers == local_answers,
            }
    append_jsonl(Path(args.output), record)
    print_table(record)
    return 0


def print_table(r: dict) -> None:
    print(f"{r['name']}: {r['kind']}, {r['bank_entries']} memories, k={r['k']}, {r['device']}, "
          f"torch threads {r['threads']}, env {r['env']}")
    print(f"{'':22} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'users/s':>9}")
    for key, label in (("in_process", "in-process, 1 user"), ("in_process_cpu", "  (its CPU time)"),
                       ("http", "HTTP, 1 user"),
                       ("in_process_batch", f"in-process, {r['batch_size']} users"),
                       ("http_batch", f"HTTP, {r['batch_size']} users")):
        if key in r:
            s = r[key]
            ups = s.get("users_per_s", round(1000 / s["mean_ms"], 1))
            print(f"{label:22} {s['p50_ms']:8.2f} {s['p90_ms']:8.2f} {s['p99_ms']:8.2f} {s['max_ms']:8.2f} {ups:9.1f}")
    if "server_cpu_ms_per_request" in r:
        print(f"server CPU: {r['server_cpu_ms_per_request']} ms per single-user request, "
              f"{r['server_cpu_ms_per_batch_user']} ms per user in batches")
    if "http_answers_identical" in r:
        print(f"HTTP answers identical to in-process: {r['http_answers_identical']}")


if __name__ == "__main__":
    sys.exit(main())
