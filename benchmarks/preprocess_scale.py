"""Out-of-core preprocessing at scale: wall time, peak RSS and disk of `raserec preprocess --engine duckdb`.

    python benchmarks/make_interactions.py --rows 10000000 --output benchmarks/runs/ooc/inter-10m.parquet
    python benchmarks/preprocess_scale.py --input benchmarks/runs/ooc/inter-10m.parquet --name duckdb-10m \
        [--engine duckdb] [--memory-limit-gb 4] [--keep]

The preprocessing runs as a child process (the real CLI); its peak RSS is the child's own maximum
(``os.wait4``), its scratch disk the largest size seen of the temporary output folder (DuckDB's
database and spill files plus the growing artifact), polled every second. One record per run goes to
benchmarks/results/preprocess_scale.jsonl: input rows and bytes, wall seconds, peak RSS, peak scratch,
the artifact's bytes per file, the dataset's stats (filtered counts, instances per split) and the
machine's load average at start and end (other work on the machine stretches the wall time). The
artifact is deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from records import append_jsonl  # this folder

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "preprocess_scale.jsonl"


def folder_bytes(paths) -> int:
    total = 0
    for root in paths:
        for dirpath, _, files in os.walk(root):
            for f in files:
                try:
                    total += os.path.getsize(os.path.join(dirpath, f))
                except OSError:  # a spill file removed between listing and stat
                    pass
    return total


def history_items(path: Path) -> int:
    """Items stored in a split's histories, from the Parquet footer (every history holds at least one)."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    col = [meta.schema.column(j).path for j in range(meta.num_columns)].index("history.list.element")
    return sum(meta.row_group(g).column(col).num_values for g in range(meta.num_row_groups))


def main(argv: list[str] | None = None) -> int:
    import pyarrow.parquet as pq

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", required=True)
    ap.add_argument("--name", required=True, help="the record's name, e.g. duckdb-10m")
    ap.add_argument("--engine", default="duckdb", choices=("duckdb", "memory"))
    ap.add_argument("--memory-limit-gb", type=float, default=4.0)
    ap.add_argument("--output", help="dataset folder (default benchmarks/runs/ooc/ds-<name>)")
    ap.add_argument("--keep", action="store_true", help="keep the dataset folder")
    args = ap.parse_args(argv)
    src = Path(args.input)
    out = Path(args.output or HERE / "runs" / "ooc" / f"ds-{args.name}")
    cmd = [sys.executable, "-m", "raserec_core.cli.main", "preprocess", "--input", str(src), "--output", str(out),
           "--engine", args.engine, "--set", f"data.memory_limit_gb={args.memory_limit_gb}", "--overwrite"]
    load_start = os.getloadavg()[0]
    peak_disk = 0
    done = threading.Event()

    def poll() -> None:  # the temporary output (.<name>.*.tmp) holds DuckDB's files and the artifact
        nonlocal peak_disk
        while not done.wait(1.0):
            peak_disk = max(peak_disk, folder_bytes(out.parent.glob(f".{out.name}.*")))

    threading.Thread(target=poll, daemon=True).start()
    start = time.perf_counter()
    child = subprocess.Popen(cmd)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    done.set()
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"preprocess_scale.py: {' '.join(cmd)} exited with {child.returncode}")
    stats = json.loads((out / "stats.json").read_text())
    files = {p.name: p.stat().st_size for p in sorted(out.iterdir())}
    record = {
        "name": args.name,
        "engine": args.engine,
        "memory_limit_gb": args.memory_limit_gb,
        "input": str(src),
        "input_rows": pq.ParquetFile(src).metadata.num_rows,
        "input_bytes": src.stat().st_size,
        "wall_s": round(wall, 1),
        "peak_rss_gb": round(usage.ru_maxrss / 2**20, 3),  # ru_maxrss is in KiB on Linux
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_scratch_gb": round(peak_disk / 2**30, 3),
        "artifact_bytes": files,
        "artifact_gb": round(sum(files.values()) / 2**30, 3),
        "filtered": stats["filtered"],
        "instances": stats["instances"],
        "fingerprint": stats["fingerprint"],  # equal across engines for the same input
        "history_items": {s: history_items(out / f"{s}.parquet") for s in ("train", "valid", "test")},
        "cpus": os.cpu_count(),
        "loadavg_start": round(load_start, 2),
        "loadavg_end": round(os.getloadavg()[0], 2),
        "command": " ".join(cmd[1:]),
        "date": time.strftime("%Y-%m-%d"),
    }
    append_jsonl(RESULTS, record)
    print(json.dumps(record, indent=1))
    if not args.keep:
        shutil.rmtree(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
