"""The analyses' inputs on the session's tiny dataset and stage-1 model: an IVF bank (nlist 3, so nprobe
matters) and a model fine-tuned over it; and ``analyze``, which runs ``raserec analyze`` on them."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("faiss")

FINETUNE = ["finetune.epochs=2", "finetune.batch_size=32", "finetune.top_k=4", "finetune.inner_size=32",
            "finetune.lr=0.1"]


def cli(args: list[str]) -> tuple[int, dict | None, str]:
    from raserec_core.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(args)
    return rc, (json.loads(out.getvalue()) if rc == 0 else None), err.getvalue()


@pytest.fixture(scope="session")
def analysis_inputs(tmp_path_factory, wide_dataset_dir, trained_model_dir, tiny_args):
    root = tmp_path_factory.mktemp("analysis-inputs")
    bank, fine = root / "bank", root / "ft"
    rc, _, err = cli(["index", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--output", str(bank),
                      "--index-type", "ivf", "--nlist", "3", *tiny_args()])
    assert rc == 0, err
    rc, _, err = cli(["finetune", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--memory",
                      str(bank), "--output", str(fine), *tiny_args(*FINETUNE)])
    assert rc == 0, err
    return {"data": wide_dataset_dir, "model": fine, "memory": bank, "baseline": trained_model_dir,
            "cache": root / "cache"}


@pytest.fixture(scope="session")
def raserec():
    """``raserec(args)`` -> (rc, stdout as JSON, stderr) of the command line."""
    return cli


@pytest.fixture(scope="session")
def analyze(analysis_inputs):
    """``analyze(name, output, *options)`` -> (rc, result, stderr) of ``raserec analyze`` on the inputs."""

    def run(name: str, output, *options: str):
        i = analysis_inputs
        return cli(["analyze", name, "--data", str(i["data"]), "--model", str(i["model"]), "--memory", str(i["memory"]),
                    "--baseline", str(i["baseline"]), "--output", str(output), "--cache", str(i["cache"]),
                    "--device", "cpu", *options])

    return run
