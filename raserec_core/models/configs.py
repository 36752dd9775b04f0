"""A model's config derived from a config section: fields taken by name, never copied one by one.

``SASRecConfig`` takes ``hidden_size``, ``n_layers``, ... from ``config.ModelConfig`` and the RAM's
``RAMConfig`` takes ``top_k``, ``alpha``, ``beta``, ... from ``config.FinetuneConfig``: a field added to
both reaches the model without an edit here. What the section does not hold (the item count, the
hidden size of the encoder a RAM sits on, a field named otherwise) is passed by the caller.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def from_section(cls: type[T], section: Any, **given: Any) -> T:
    """``cls`` (a dataclass) with every field that ``section`` (a dataclass) has by the same name, then
    ``given``; the remaining fields keep their defaults."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(given) - names)
    if unknown:
        raise TypeError(f"{cls.__name__} has no field {unknown[0]!r}")
    shared = {f.name: getattr(section, f.name) for f in dataclasses.fields(section) if f.name in names}
    return cls(**{**shared, **given})
