"""Memory banks at scale: build time, resident memory, recall@20 and query latency of the bank's index
kinds on synthetic banks of 1M-10M 64-dim entries, and the time `memory add` takes at that size.

    python benchmarks/bank_scale.py --sizes 1000000 10000000 [--kinds ivf ivfsq ivfpq16 ivfpq32 hnsw]
                                    [--nlist-factors 1 4] [--threads 2] [--cache benchmarks/runs/bank_scale]

The bank is a mixture of --clusters anisotropic clusters of Zipf-distributed popularity, L2-normalised
(what an encoder's sequence representations look like; i.i.d. Gaussian vectors flatter PQ and
make IVF look worse than it is). It is generated in chunks from --seed, so no process ever holds it
whole: each configuration runs in a fresh subprocess that trains on a sample (64 per list: faiss asks
for 30-256), adds the bank 200k at a time, and reports its peak resident memory (VmHWM; the Python,
torch and faiss it imports, ≈ 0.23 GB, included and recorded apart as ``base_rss_mb``). IVF-Flat,
IVF-SQ8 and IVF-PQ run through the project's ``FaissIndex`` (memory/index.py), so the figures are what
`raserec index` and `raserec memory add` build and search; HNSW is faiss's ``IndexHNSWFlat`` (inner
product, M 32), a comparison only: it keeps full vectors plus a graph, beyond the memory goal at 10M.
nlist is a power of two near each of --nlist-factors × √N.

Recall@20 is against exact search of 1,000 held-out queries from the same mixture (ground truth by
chunked matmul, cached under --cache). Latency: 1,000 queries in one batch (per query), and 100
queries one at a time, at each nprobe (efSearch for HNSW). `memory add`: 100k entries added to the
built index; for the configuration ``memory.index_type: auto`` picks at that size (memory/sizing.py),
up to --bank-io-max entries, also the whole bank's cycle around it: write, load with checksums, add
(index and entries), write back. Records go to benchmarks/results/bank_scale.jsonl, one per (size,
configuration); recorded ones are skipped. The table ends with the auto configuration's row.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from records import append_jsonl, environment, load_jsonl  # this folder

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "bank_scale.jsonl"
CHUNK = 200_000
QUERY_CHUNK = -1  # the queries' chunk index: a stream of the generator no bank chunk uses
K = 20
EF_SEARCH = (16, 32, 64, 128, 256)


# --- the synthetic bank ---------------------------------------------------------------------------------

def mixture(dim: int, clusters: int, seed: int) -> dict:
    """Cluster centres (themselves anisotropic: real embeddings fill a cone, not the sphere), eight
    covariance shapes with decaying spectra shared round-robin, per-cluster spreads, Zipf popularity."""
    import torch

    g = torch.Generator().manual_seed(seed)
    spectrum = (1.0 + torch.arange(dim, dtype=torch.float32) / 4).rsqrt()  # (D,)
    centres = torch.nn.functional.normalize(torch.randn(clusters, dim, generator=g) * spectrum, dim=1)  # (C, D)
    shapes = []
    for _ in range(8):
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g))
        decay = (1.0 + torch.arange(dim, dtype=torch.float32)) ** -0.8
        shapes.append(q * (decay / decay.norm()))  # (D, D): a unit-norm offset in expectation
    spread = 0.4 + 0.6 * torch.rand(clusters, generator=g)  # (C,)
    popularity = (1.0 + torch.arange(clusters, dtype=torch.float64)) ** -0.8
    return {"centres": centres, "shapes": torch.stack(shapes), "spread": spread, "popularity": popularity}


def chunk(mix: dict, index: int, n: int, seed: int):
    """``n`` normalised vectors of chunk ``index``: the same for a given (seed, index) in any process."""
    import torch

    g = torch.Generator().manual_seed(seed * 1_000_003 + index + 7)
    cid = torch.multinomial(mix["popularity"], n, replacement=True, generator=g)  # (n,)
    z = torch.randn(n, mix["centres"].shape[1], generator=g)  # (n, D)
    x = mix["centres"][cid]  # (n, D); built in place: two (n, D) buffers at most, so the chunk barely shows in RSS
    shape_of = cid % len(mix["shapes"])
    for s in range(len(mix["shapes"])):  # 8 shapes, not one per row
        rows = (shape_of == s).nonzero().flatten()
        x[rows] += (z[rows] @ mix["shapes"][s].T) * mix["spread"][cid[rows], None]
    del z
    return x.div_(x.norm(dim=1, keepdim=True).clamp_min_(1e-12))


def bank_chunks(mix: dict, n: int, seed: int, start: int = 0):
    """The bank's rows [start, start + n) chunk by chunk (``start`` a multiple of CHUNK)."""
    for first in range(start, start + n, CHUNK):
        yield chunk(mix, first // CHUNK, min(CHUNK, start + n - first), seed)


def exact_top(args, size: int):
    """Exact top-K ids of the queries over the bank, computed in chunks and cached."""
    import numpy as np
    import torch

    path = Path(args.cache) / f"truth-{size}-d{args.dim}-c{args.clusters}-s{args.seed}-q{args.queries}.npy"
    if path.exists():
        return np.load(path)
    mix = mixture(args.dim, args.clusters, args.seed)
    q = chunk(mix, QUERY_CHUNK, args.queries, args.seed)
    best_s, best_i, offset = torch.full((len(q), 0), -2.0), torch.zeros(len(q), 0, dtype=torch.long), 0
    for x in bank_chunks(mix, size, args.seed):
        s, i = (q @ x.T).topk(K, dim=1)  # (Q, K)
        best_s, pos = torch.cat([best_s, s], 1).topk(K, dim=1)
        best_i = torch.cat([best_i, i + offset], 1).gather(1, pos)
        offset += len(x)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, best_i.numpy())
    return best_i.numpy()


# --- one configuration, in its own process --------------------------------------------------------------

def rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def configurations(size: int, kinds: list[str], hnsw_max: int, factors: list[float]) -> list[dict]:
    """Per size, the IVF kinds at nlist ≈ factor × √N (powers of two; faiss's guideline is 4-16 √N, whose
    top costs more to train and add than 2 cores allow at 10M) and HNSW up to ``hnsw_max``."""
    nlists = sorted({2 ** round(math.log2(f * math.sqrt(size))) for f in factors})
    out = []
    for kind in kinds:
        if kind == "hnsw":
            if size <= hnsw_max:
                out.append({"name": f"{size}-hnsw32", "kind": "hnsw", "size": size, "hnsw_m": 32})
            continue
        base, pq_m = ("ivfpq", int(kind[5:])) if kind.startswith("ivfpq") else (kind, 0)
        for nlist in nlists:
            out.append({"name": conf_name(size, base, nlist, pq_m), "kind": base, "size": size, "nlist": nlist, "pq_m": pq_m or 8})
    return out


def conf_name(size: int, kind: str, nlist: int, pq_m: int = 0) -> str:
    return f"{size}-{kind}-nlist{nlist}" + (f"-m{pq_m}" if kind == "ivfpq" else "")


def auto_name(size: int, dim: int) -> str:
    """The configuration ``memory.index_type: auto`` builds at this size."""
    from raserec_core.memory.sizing import auto_settings

    a = auto_settings(size, dim)
    return conf_name(size, a.kind, a.nlist, a.pq_m)


def synthetic_entries(keys, first_user: int, seed: int):
    """Entries over ``keys`` with plausible metadata (ten entries a user, lengths 1-50) and values."""
    import torch

    from raserec_core.memory.entries import Entries

    g = torch.Generator().manual_seed(seed)
    n = len(keys)
    user = first_user + torch.arange(n) // 10
    length = torch.randint(1, 51, (n,), generator=g)
    return Entries(keys=keys, values=keys.flip(1).contiguous(), user=user, length=length, position=length,
                   target=torch.randint(1, 10_000, (n,), generator=g))


def bank_cycle(args, index, mix, conf: dict) -> dict:
    """What `raserec memory add` does around the encoder, on a bank of this size over the built index:
    write it, load it (checksums verified), add 100k more entries (index and entries), write it back.
    The bank's un-normalised keys and values (2 × N × D × 4 bytes) are loaded whole, so this runs after
    the index's own memory is recorded."""
    import dataclasses
    import shutil

    import numpy as np
    import torch

    from raserec_core.memory.bank import MemoryBank, UserState, load_bank, save_bank

    size = conf["size"]
    extra_start = math.ceil(size / CHUNK) * CHUNK
    # The index holds the bank and the 100k entries the index-only add timed: so do the entries.
    keys = torch.cat([*bank_chunks(mix, size, args.seed), *bank_chunks(mix, args.add, args.seed, extra_start)])
    entries = synthetic_entries(keys, 0, args.seed)
    del keys
    n_users = int(entries.user[-1]) + 1
    users = UserState(n_seen=torch.full((n_users,), 10), last_offsets=torch.arange(n_users + 1),
                      last_values=torch.ones(n_users, dtype=torch.long))
    meta = {"index_type_requested": conf["kind"], "allow_fallback": False, "nlist": conf["nlist"], "nprobe": 16,
            "pq_m": conf["pq_m"], "chosen_by_size": [], "encoder_sha256": "0" * 64, "dataset_fingerprint": "0" * 64,
            "max_len": 50}
    empty = np.zeros(0, dtype=str)
    bank = MemoryBank(entries, index, np.array([f"u{u}" for u in range(n_users)]),
                      np.array([""] + [f"i{i}" for i in range(1, 10_000)]), users,
                      {"user": empty, "item": empty, "time": np.zeros(0)}, meta)
    folder = Path(args.cache) / f"{conf['name']}-bank"
    shutil.rmtree(folder, ignore_errors=True)
    save_s = timed(lambda: save_bank(bank, folder))
    del bank, entries
    out = {}
    out["bank_load_s"] = timed(lambda: out.setdefault("bank", load_bank(folder)))
    bank = out.pop("bank")
    later = extra_start + math.ceil(args.add / CHUNK) * CHUNK  # rows neither the bank nor the index add used
    new = synthetic_entries(torch.cat(list(bank_chunks(mix, args.add, args.seed, later))), n_users, args.seed + 1)

    def add():
        bank.index.add(new.keys)
        return dataclasses.replace(bank, entries=bank.entries.concat(new))

    add_s = timed(lambda: out.setdefault("grown", add()))
    resave_s = timed(lambda: save_bank(out["grown"], folder, replace_existing=True))
    files_mb = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
    shutil.rmtree(folder)
    return {"bank_save_s": save_s, "bank_load_s": out["bank_load_s"], f"bank_add{args.add // 1000}k_s": add_s,
            "bank_resave_s": resave_s, "bank_files_mb": files_mb}


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def worker(args, conf: dict) -> dict:
    import faiss
    import numpy as np
    import torch

    from raserec_core.memory.index import FaissIndex

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    base_rss = rss_mb("VmRSS")
    size, dim = conf["size"], args.dim
    mix = mixture(dim, args.clusters, args.seed)
    truth = exact_top(args, size)
    queries = chunk(mix, QUERY_CHUNK, args.queries, args.seed)

    if conf["kind"] == "hnsw":
        index = faiss.IndexHNSWFlat(dim, conf["hnsw_m"], faiss.METRIC_INNER_PRODUCT)
        train_s, params = 0.0, EF_SEARCH

        def add(x):
            index.add(x.numpy())

        def search(q, k):
            return index.search(q.numpy(), k)

        def set_param(p):
            index.hnsw.efSearch = p
    else:
        index = FaissIndex.empty(conf["kind"], dim, conf["nlist"], 1, conf["pq_m"])
        # A sample of 64 per list from the bank's own chunks (the first ones: the bank is shuffled).
        n_train = min(size, 64 * conf["nlist"])
        sample = torch.cat(list(bank_chunks(mix, n_train, args.seed)))
        train_s = timed(lambda: index.train(sample))
        del sample
        params = [p for p in args.nprobes if p <= conf["nlist"]]
        add, search, set_param = index.add, index.search, index.set_nprobe

    add_s = sum(timed(lambda x=x: add(x)) for x in bank_chunks(mix, size, args.seed))
    peak_build, after_build = rss_mb("VmHWM"), rss_mb("VmRSS")
    rows = []
    for p in params:
        set_param(p)
        batch = statistics.median(timed(lambda: search(queries, K)) for _ in range(args.repeats))
        _, ids = search(queries, K)
        ids = np.asarray(ids)
        recall = float(np.mean([len(np.intersect1d(ids[r], truth[r])) for r in range(len(truth))]) / K)
        single = timed(lambda: [search(queries[r : r + 1], K) for r in range(args.single)])
        rows.append({"param": p, "recall@20": round(recall, 4), "batch_ms_per_query": 1000 * batch / len(queries),
                     "single_ms": 1000 * single / args.single})
    # `raserec memory add` appends to the trained index: 100k new entries, rows the bank has not used.
    extra_start = math.ceil(size / CHUNK) * CHUNK
    add100k_s = sum(timed(lambda x=x: add(x)) for x in bank_chunks(mix, args.add, args.seed, extra_start))
    peak = rss_mb("VmHWM")
    file = Path(args.cache) / f"{conf['name']}.index"
    faiss.write_index(index if conf["kind"] == "hnsw" else index.index, str(file))
    index_mb = file.stat().st_size / 2**20
    file.unlink()
    cycle = {}
    if size <= args.bank_io_max and conf["name"] == auto_name(size, dim):
        cycle = bank_cycle(args, index, mix, conf)
    return {**cycle, **conf, "dim": dim, "clusters": args.clusters, "seed": args.seed, "queries": len(queries),
            "threads": args.threads, "train_s": train_s, "add_s": add_s, "build_s": train_s + add_s,
            "base_rss_mb": base_rss, "rss_after_build_mb": after_build, "peak_rss_build_mb": peak_build, "peak_rss_mb": peak, "index_file_mb": index_mb,
            "search": rows, f"add{args.add // 1000}k_s": add100k_s}


# --- driver ---------------------------------------------------------------------------------------------

def table(records: list[dict]) -> str:
    lines = ["| config | build s | peak RSS MB | index MB | nprobe/ef: recall@20, batch ms/q, single ms |", "|---|---|---|---|---|"]
    for r in records:
        cells = "; ".join(f"{s['param']}: {s['recall@20']:.3f}, {s['batch_ms_per_query']:.3f}, {s['single_ms']:.2f}" for s in r["search"])
        lines.append(f"| {r['name']} | {r['build_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['index_file_mb']:.0f} | {cells} |")
    return "\n".join(lines)


def auto_line(size: int, dim: int, records) -> str:
    """What ``memory.index_type: auto`` builds for this size, with its measured row where there is one."""
    from raserec_core.memory.sizing import auto_settings

    a = auto_settings(size, dim)
    head = f"auto at {size}: {a.kind}, nlist {a.nlist}, nprobe {a.nprobe}" + (f", pq_m {a.pq_m}" if a.kind == "ivfpq" else "")
    r = records.get(auto_name(size, dim))
    row = next((x for x in r["search"] if x["param"] == a.nprobe), None) if r and r["dim"] == dim else None
    if row is None:
        return f"{head}: not measured here"
    return (f"{head}: recall@20 {row['recall@20']:.3f}, {row['batch_ms_per_query']:.3f} ms a query batched, "
            f"built in {r['build_s']:.0f} s, peak RSS {r['peak_rss_mb']:.0f} MB ({r['name']})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--kinds", nargs="+", default=["ivf", "ivfsq", "ivfpq16", "ivfpq32", "hnsw"],
                    help="ivf, ivfsq (8-bit scalar quantizer), ivfpqM (M bytes per code), hnsw")
    ap.add_argument("--hnsw-max", type=int, default=2_000_000,
                    help="largest bank HNSW is built for (at 10M it needs ≈ 5 GB and hours on 2 cores)")
    ap.add_argument("--nlist-factors", type=float, nargs="+", default=[1, 4], help="nlist ≈ factor × √N")
    ap.add_argument("--bank-io-max", type=int, default=2_000_000,
                    help="largest bank whose auto configuration also times `memory add` on the whole bank (write, "
                    "load, add, write back); it holds the bank's keys and values, 2 × 256 B an entry, twice")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--clusters", type=int, default=4000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--single", type=int, default=100, help="queries timed one at a time")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--add", type=int, default=100_000, help="entries added to the built index (memory add)")
    ap.add_argument("--nprobes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=str(HERE / "runs" / "bank_scale"))
    ap.add_argument("--output", default=str(RESULTS))
    ap.add_argument("--only", nargs="+", help="configuration names to run (default: all)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # one configuration (JSON), in a fresh process
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args, json.loads(args.worker))))
        return 0

    bad = [k for k in args.kinds if k not in ("ivf", "ivfsq", "hnsw") and not (k.startswith("ivfpq") and k[5:].isdigit())]
    if bad:
        raise SystemExit(f"bank_scale.py: --kinds {bad[0]!r}: expected ivf, ivfsq, ivfpqM (M bytes a code) or hnsw")
    out = Path(args.output)
    for size in args.sizes:
        confs = [c for c in configurations(size, args.kinds, args.hnsw_max, args.nlist_factors) if not args.only or c["name"] in args.only]
        todo = [c for c in confs if c["name"] not in load_jsonl(out)]
        if todo:
            t = timed(lambda size=size: exact_top(args, size))
            print(f"{size}: exact top-{K} of {args.queries} queries ready ({t:.0f} s)", flush=True)
        for conf in todo:
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            cmd = [sys.executable, __file__, *sys.argv[1:], "--worker", json.dumps(conf)]
            t0 = time.perf_counter()
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode:
                sys.stderr.write(done.stderr)
                raise SystemExit(f"bank_scale.py: {conf['name']} failed (exit {done.returncode})")
            record = json.loads(done.stdout.strip().splitlines()[-1])
            record.update(wall_s=time.perf_counter() - t0, environment=environment(),
                          command=" ".join(["python", "benchmarks/bank_scale.py", *sys.argv[1:]]))
            append_jsonl(out, record)
            print(f"{conf['name']}: built in {record['build_s']:.1f} s, peak {record['peak_rss_mb']:.0f} MB", flush=True)
        recorded = load_jsonl(out)
        print(table([recorded[c["name"]] for c in confs if c["name"] in recorded]), flush=True)
        print(auto_line(size, args.dim, recorded), flush=True)
        for r in (recorded[c["name"]] for c in confs if "bank_save_s" in recorded.get(c["name"], {})):
            print(f"memory add at {size} ({r['name']}): load {r['bank_load_s']:.1f} s, add {args.add} entries "
                  f"{r[f'bank_add{args.add // 1000}k_s']:.1f} s, write back {r['bank_resave_s']:.1f} s "
                  f"({r['bank_files_mb']:.0f} MB of bank files)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
