"""Two pipeline runs of the same config share the training steps' work folder: the second waits for the
first under the folder's lock, then finds the result done, instead of training in it at the same time."""

from __future__ import annotations

import threading

import torch

from raserec_core import steps
from raserec_core.config import load_config
from raserec_core.storage.locks import path_lock

TINY = ["device=cpu", "model.hidden_size=16", "model.inner_size=32", "pretrain.batch_size=8", "pretrain.epochs=1",
        "data.max_len=5", "eval.batch_size=16"]


def test_a_concurrent_run_waits_for_the_work_folder(small_dataset_dir, tmp_path):
    cfg = load_config(None, TINY)
    work_root = tmp_path / "checkpoints"
    steps.pretrain(small_dataset_dir, tmp_path / "run1" / "model", cfg, torch.device("cpu"), work_root=work_root)
    (work,) = work_root.iterdir()

    second = threading.Thread(target=steps.pretrain, args=(small_dataset_dir, tmp_path / "run2" / "model", cfg,
                                                           torch.device("cpu")), kwargs={"work_root": work_root})
    with path_lock(work):  # a concurrent run is still using the folder
        second.start()
        second.join(timeout=3)
        assert second.is_alive() and not (tmp_path / "run2" / "model").exists()
    second.join(timeout=120)
    assert not second.is_alive()
    assert (tmp_path / "run2" / "model" / "encoder.pt").read_bytes() == (work / "encoder.pt").read_bytes()
