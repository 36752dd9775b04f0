"""What a served request gets around ``Recommender.recommend``: checked rows and parameters, the
request's own history left out of its answer, the most popular items for a cold start, unknown ids
reported back.

No mlflow here (the pyfunc model in ``pyfunc`` is the glue), so the rules are tested without a server:

- ``history``: a list of item ids, strings or integers (``None`` is an empty history); ``user_id``
  optional. Ids the model does not know are ignored and listed in ``ignored_ids``.
- ``k``: an integer >= 1, capped at the catalogue size. ``exclude_history`` (default true): items in
  the request's history never come back. The recommender is asked for ``k`` plus the history's
  distinct known items and those are dropped: the same top-``k`` as masking them before the top-k.
- A history with no known item gets the most popular items (``fallback`` true, scores are counts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_K = 10
COLUMNS = ("item_ids", "scores", "fallback", "ignored_ids")


class RequestError(ValueError):
    """A bad request; the message is one line naming the field."""


@dataclass(frozen=True)
class Popularity:
    """Items most popular first, with their interaction counts (ties in catalogue order)."""

    item_ids: np.ndarray  # (n,) str
    counts: np.ndarray  # (n,) int64

    @classmethod
    def from_counts(cls, item_ids: np.ndarray, counts: np.ndarray) -> Popularity:
        order = np.argsort(-counts, kind="stable")
        return cls(np.asarray(item_ids)[order], np.asarray(counts, dtype=np.int64)[order])


def parse_params(params: dict[str, Any] | None) -> tuple[int, bool]:
    """``k`` and ``exclude_history`` from a request's params, checked."""
    params = params or {}
    k = params.get("k", DEFAULT_K)
    if k is None:
        k = DEFAULT_K
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise RequestError(f"k: expected an integer >= 1, got {k!r}")
    if k < 1:
        raise RequestError(f"k: expected an integer >= 1, got {int(k)}")
    exclude = params.get("exclude_history", True)
    if exclude is None:
        exclude = True
    if not isinstance(exclude, (bool, np.bool_)):
        raise RequestError(f"exclude_history: expected true or false, got {exclude!r}")
    return int(k), bool(exclude)


def _ids(value: Any, row: int) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple, np.ndarray)):
        raise RequestError(f"history: row {row} is not a list of item ids (got {type(value).__name__})")
    for x in value:
        if isinstance(x, (bool, np.bool_)) or not isinstance(x, (str, int, np.integer, np.str_)):
            raise RequestError(f"history: row {row} holds {x!r}; item ids are strings or integers")
    return [str(x) for x in value]


def _user(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():  # an integer id in a column pandas made float
        return str(int(value))
    return str(value)


def parse_rows(frame: pd.DataFrame) -> tuple[list[list[str]], list[str | None]]:
    """Histories (ids as strings) and user ids (None where absent) of a request's rows, checked."""
    if "history" not in frame.columns:
        raise RequestError("history: missing (each row needs a list of item ids)")
    histories = [_ids(v, r) for r, v in enumerate(frame["history"].tolist())]
    users = frame["user_id"].tolist() if "user_id" in frame.columns else [None] * len(histories)
    return histories, [_user(u) for u in users]


def _split(values: np.ndarray, rows: np.ndarray, n: int) -> list[list]:
    """``values`` grouped by their (sorted) row numbers into ``n`` lists."""
    if n == 0:  # np.split would still return one (empty) part
        return []
    bounds = np.cumsum(np.bincount(rows, minlength=n))[:-1]
    return [part.tolist() for part in np.split(values, bounds)]


def answer(
    recommender, popularity: Popularity, histories: Sequence[Sequence[str]], user_ids: Sequence[str | None],
    k: int, exclude_history: bool = True,
) -> pd.DataFrame:
    """One row per history: ``item_ids``, ``scores``, ``fallback``, ``ignored_ids``."""
    n = len(histories)
    # The recommender's id map is built once per model: a request costs its own ids, never the catalogue's
    # (a pandas Index of the catalogue per request cost ~100 ms on Beauty's 12k items).
    catalogue = recommender.item_index
    lengths = np.fromiter(map(len, histories), dtype=np.int64, count=n)
    flat = np.asarray(list(chain.from_iterable(histories)), dtype=object)  # every history id, row by row
    row_of = np.repeat(np.arange(n), lengths)
    known = np.fromiter(map(catalogue.__contains__, flat), dtype=bool, count=len(flat))
    known_histories = _split(flat[known], row_of[known], n)
    ignored = _split(flat[~known], row_of[~known], n)

    # The recommender masks the history's items before its top-k (exact, one pass).
    items, scores = recommender.recommend(known_histories, list(user_ids), min(k, len(catalogue)), exclude_history)

    out_items: list[list[str]] = [[] for _ in range(n)]
    out_scores: list[list[float]] = [[] for _ in range(n)]
    served = np.flatnonzero([len(x) > 0 for x in items])
    for r in served:
        out_items[r], out_scores[r] = list(items[r]), list(scores[r])
    fallback = np.ones(n, dtype=bool)
    fallback[served] = False
    if fallback.any():
        m = min(k, len(popularity.item_ids))
        pop_items, pop_scores = popularity.item_ids[:m].tolist(), popularity.counts[:m].astype(float).tolist()
        for r in np.flatnonzero(fallback):
            out_items[r], out_scores[r] = list(pop_items), list(pop_scores)
    return pd.DataFrame({"item_ids": out_items, "scores": out_scores, "fallback": fallback.tolist(), "ignored_ids": ignored})
