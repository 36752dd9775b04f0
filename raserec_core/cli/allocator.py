"""mimalloc for the processes ``raserec run`` starts, as the pipeline's container image does.

Under glibc's allocator a long CPU training process slows down as it ages (heap fragmentation: Beauty
DuoRec epochs went from 123 s fresh to 144 s on average and up to 194 s, against 106 s under mimalloc,
with bit-identical weights; benchmarks/RESULTS.md, Speed, "Allocator"). An allocator can only be
preloaded into a process before it starts, so the local runner's step subprocesses get it through
``LD_PRELOAD``; ``raserec`` itself keeps the allocator it started with.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import sysconfig
from collections.abc import Iterator, MutableMapping
from pathlib import Path

log = logging.getLogger("raserec.cli")

PRELOAD = "LD_PRELOAD"
LINUX = sys.platform.startswith("linux")  # LD_PRELOAD and the wheel's libmimalloc.so are Linux's


def mimalloc_library() -> Path | None:
    """The shared library of the ``cmeel-mimalloc`` wheel (``pip install -e .[all]`` on Linux), if installed."""
    if not LINUX:
        return None
    path = Path(sysconfig.get_paths()["purelib"]) / "cmeel.prefix" / "lib" / "libmimalloc.so"
    return path if path.is_file() else None


@contextlib.contextmanager
def mimalloc_for_children(environ: MutableMapping[str, str] = os.environ) -> Iterator[str | None]:
    """Within the block, child processes preload mimalloc; yields its path, or None where it is not used.

    A user's own ``LD_PRELOAD`` wins, even an empty one (``LD_PRELOAD= raserec run ...`` keeps glibc).
    """
    library = None if PRELOAD in environ else mimalloc_library()
    if library is None:
        if PRELOAD not in environ and LINUX:
            log.warning("mimalloc is not installed (pip install -e '.[all]'): long training steps run slower "
                        "under glibc's allocator")
        yield None
        return
    environ[PRELOAD] = str(library)
    log.info("pipeline steps preload %s", library)
    try:
        yield str(library)
    finally:
        environ.pop(PRELOAD, None)
