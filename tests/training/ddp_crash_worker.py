"""A torchrun worker that runs ``raserec`` and, on rank 1, crashes in the middle of epoch 2: one worker of
a data-parallel run dies, torch.distributed.run stops the others (the kill/resume test)."""

from __future__ import annotations

import os
import sys

import pytest
from crash_helpers import crash_in_epoch

import raserec_core.training.pretrain as pretrain
from raserec_core.cli.main import main

if __name__ == "__main__":
    if os.environ["RANK"] == "1":
        crash_in_epoch(pytest.MonkeyPatch(), pretrain, "window_batches", 2)  # the default pretrain.batching
    sys.exit(main(sys.argv[1:]))
