"""Vector indexes behind one interface: ``add``, ``search(queries, k) -> (scores, ids)``, ``save``, ``load``.

Similarity is the inner product of L2-normalised vectors (cosine), as the reference (docs/method.md §3). The brute
force torch index is the reference implementation; the faiss ones (Flat, IVF-Flat, IVF-SQ8, IVF-PQ) are what runs
in production. Missing results are id -1 with score -inf. faiss is imported in this module only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F

from ..errors import MemoryBankError

log = logging.getLogger("raserec.memory")

# faiss warns below 39 training points per centroid; IVF then clusters poorly.
MIN_POINTS_PER_LIST = 39


class VectorIndex(Protocol):
    kind: str

    @property
    def ntotal(self) -> int: ...

    def add(self, vectors: torch.Tensor) -> None: ...

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]: ...

    def save(self, path: Path) -> None: ...


def normalize(x: torch.Tensor) -> torch.Tensor:
    """L2-normalised float32 copy on the CPU (the live tensor is never normalised in place)."""
    return F.normalize(x.detach().float().cpu(), dim=-1)


class BruteForceIndex:
    """Exact cosine search with torch: the reference the faiss indexes are tested against."""

    kind = "brute"

    def __init__(self, dim: int):
        self.dim = dim
        self.vectors = torch.zeros(0, dim)

    @property
    def ntotal(self) -> int:
        return len(self.vectors)

    def add(self, vectors: torch.Tensor) -> None:
        self.vectors = torch.cat([self.vectors, normalize(vectors)])

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        q = normalize(queries)
        kk = min(k, self.ntotal)
        scores, ids = (q @ self.vectors.T).topk(kk, dim=1) if kk else (torch.zeros(len(q), 0), torch.zeros(len(q), 0, dtype=torch.long))
        if kk < k:
            pad = k - kk
            scores = torch.cat([scores, torch.full((len(q), pad), float("-inf"))], 1)
            ids = torch.cat([ids, torch.full((len(q), pad), -1, dtype=torch.long)], 1)
        return scores, ids

    def save(self, path: Path) -> None:
        torch.save(self.vectors, path)

    @classmethod
    def load(cls, path: Path) -> BruteForceIndex:
        vectors = torch.load(path, weights_only=True)
        index = cls(vectors.shape[1])
        index.vectors = vectors
        return index


class FaissIndex:
    """faiss Flat / IVF-Flat / IVF-SQ8 / IVF-PQ over normalised vectors with inner-product metric."""

    def __init__(self, index, kind: str):
        self.index, self.kind = index, kind

    @classmethod
    def empty(cls, kind: str, dim: int, nlist: int = 128, nprobe: int = 1, pq_m: int = 8) -> FaissIndex:
        """An untrained index: ``train`` it on a sample, then ``add`` the bank in chunks (bounded memory)."""
        import faiss

        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
        elif kind == "ivf":
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        elif kind == "ivfsq":  # one byte per dimension: a quarter of IVF-Flat's memory, little recall lost
            index = faiss.IndexIVFScalarQuantizer(
                faiss.IndexFlatIP(dim), dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
            )
        elif kind == "ivfpq":
            if dim % pq_m:
                raise MemoryBankError(f"memory.pq_m={pq_m} does not divide the key dimension {dim} (IVF-PQ splits each key into pq_m parts)")
            index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, pq_m, 8, faiss.METRIC_INNER_PRODUCT)
        else:
            raise ValueError(f"unknown faiss index type {kind!r}")
        out = cls(index, kind)
        out.set_nprobe(nprobe)
        return out

    @classmethod
    def build(
        cls, vectors: torch.Tensor, kind: str, nlist: int = 128, nprobe: int = 1, pq_m: int = 8,
        allow_fallback: bool = False,
    ) -> FaissIndex:
        """``allow_fallback``: build an exact Flat index (with a warning) where ``kind`` needs more
        training entries than the bank holds; without it that is an error."""
        x = normalize(vectors).numpy()
        n, dim = x.shape
        # PQ trains 2**8 centroids per sub-quantizer: faiss refuses fewer training points than that.
        needed = max(MIN_POINTS_PER_LIST * nlist, 256) if kind == "ivfpq" else MIN_POINTS_PER_LIST * nlist
        if kind in {"ivf", "ivfsq", "ivfpq"} and n < needed:
            if not allow_fallback:
                raise MemoryBankError(
                    f"memory bank has {n} entries, fewer than the {needed} that {kind} with nlist={nlist} needs "
                    f"({MIN_POINTS_PER_LIST} per list{', 256 for PQ training' if kind == 'ivfpq' else ''}): lower "
                    f"memory.nlist, use memory.index_type=flat, or set memory.allow_fallback=true to build an exact "
                    f"Flat index instead"
                )
            log.warning(
                "memory bank has %d entries, fewer than the %d that %s with nlist=%d needs: using an exact "
                "Flat index instead (memory.allow_fallback)", n, needed, kind, nlist,
            )
            kind = "flat"
        out = cls.empty(kind, dim, nlist, nprobe, pq_m)
        # The whole bank goes to faiss, which draws its own sample of at most 256 per list (seeded): the
        # indexes of banks built before `empty`/`train` existed are rebuilt bit for bit.
        out.index.train(x)
        out.index.add(x)
        return out

    def train(self, vectors: torch.Tensor) -> None:
        """Train the coarse quantizer (and PQ codebooks) on a sample; a no-op for Flat."""
        self.index.train(normalize(vectors).numpy())

    def set_nprobe(self, nprobe: int) -> None:
        """IVF lists visited per query (no effect on Flat)."""
        if hasattr(self.index, "nprobe"):
            self.index.nprobe = nprobe

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def add(self, vectors: torch.Tensor) -> None:
        self.index.add(normalize(vectors).numpy())

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        import faiss

        # This build's default BLAS threshold makes exact search 6-7x slower (docs/method.md §7).
        faiss.cvar.distance_compute_blas_threshold = 20
        scores, ids = self.index.search(normalize(queries).numpy(), k)
        scores = torch.from_numpy(scores)
        ids = torch.from_numpy(ids)
        return scores.masked_fill(ids < 0, float("-inf")), ids

    def save(self, path: Path) -> None:
        import faiss

        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, kind: str, nprobe: int | None = None) -> FaissIndex:
        import faiss

        out = cls(faiss.read_index(str(path)), kind)
        if nprobe:  # None or 0: the nprobe the index was saved with
            out.set_nprobe(nprobe)
        return out


def build_index(
    vectors: torch.Tensor, kind: str, nlist: int = 128, nprobe: int = 1, pq_m: int = 8, allow_fallback: bool = False,
) -> VectorIndex:
    if kind == "brute":
        index = BruteForceIndex(vectors.shape[1])
        index.add(vectors)
        return index
    return FaissIndex.build(vectors, kind, nlist, nprobe, pq_m, allow_fallback)


def save_index(index: VectorIndex, folder: Path) -> dict:
    name = "index.pt" if index.kind == "brute" else "index.faiss"
    index.save(folder / name)
    return {"index_type_built": index.kind, "index_file": name}


def load_index(folder: Path, meta: dict, nprobe: int | None = None) -> VectorIndex:
    path = folder / meta["index_file"]
    kind = meta.get("index_type_built") or meta["index_type"]  # banks written before 2026-12-03 say index_type
    if kind == "brute":
        return BruteForceIndex.load(path)
    return FaissIndex.load(path, kind, nprobe)


__all__ = ["BruteForceIndex", "FaissIndex", "VectorIndex", "build_index", "load_index", "save_index"]
