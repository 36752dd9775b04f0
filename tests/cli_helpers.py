"""The ``raserec`` command line called in-process, its JSON answer read back."""

from __future__ import annotations

import contextlib
import io
import json

from raserec_core.cli.main import main


def run(args: list[str]) -> tuple[int, dict | None]:
    """(exit code, the JSON the command printed, or None when it failed)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(args)
    return rc, (json.loads(out.getvalue()) if rc == 0 else None)
