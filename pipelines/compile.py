"""Compile the pipeline to ``pipelines/raserec_pipeline.yaml`` (committed; a test fails when it is stale).

    python -m pipelines.compile [--output PATH]      # or: raserec pipeline compile
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_OUTPUT = Path(__file__).with_name("raserec_pipeline.yaml")


def compile_pipeline(output: str | Path = DEFAULT_OUTPUT, cluster=None) -> Path:
    """Write the pipeline's IR YAML; ``cluster`` (``pipelines.cluster.ClusterOptions``) for other pods than
    the defaults'."""
    from kfp import compiler

    from .raserec import build, raserec_pipeline

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(raserec_pipeline if cluster is None else build(retries=True, cluster=cluster), str(output))
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipelines.compile", description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT))
    args = parser.parse_args(argv)
    print(compile_pipeline(args.output))


if __name__ == "__main__":
    main()
