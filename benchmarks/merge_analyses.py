"""Unite outputs of one `raserec analyze` run over the same inputs but different settings into one
folder (rows, figures, CSVs, report), so an analysis is extended without recomputing what was measured:
a setting measured in several folders takes the last folder's rows.

    python benchmarks/merge_analyses.py --output OUT FOLDER [FOLDER ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from raserec_core.analysis.run import merge


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--output", required=True, type=Path)
    args = ap.parse_args()
    record = merge(args.folders, args.output)
    print(f"{record['name']}: {len(record['rows'])} rows -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
