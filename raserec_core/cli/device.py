"""The ``--device`` flag; the names and their resolution live in ``raserec_core.device``."""

from __future__ import annotations

import argparse

from ..device import DEVICES


def add_device_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=DEVICES, help="auto = CUDA when present")
