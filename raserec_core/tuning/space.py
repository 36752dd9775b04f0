"""The search space: a YAML map of dotted config keys (``raserec_core/config.py``) to their ranges.

    pretrain.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    model.n_layers: {type: int, low: 1, high: 3}
    model.hidden_dropout: {type: float, low: 0.1, high: 0.5, step: 0.1}
    model.layer: {type: categorical, choices: [postln, ligr]}

Every bound and choice is checked against the config when the file is loaded (unknown key, wrong type,
a value outside the key's choices), so a typo fails before the first trial, not in it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..config import load_config
from ..errors import ConfigError

TYPES = ("float", "int", "categorical")
_FIELDS = {"type", "low", "high", "log", "step", "choices"}


@dataclass(frozen=True)
class Param:
    key: str  # dotted config key, e.g. pretrain.lr
    type: str  # float | int | categorical
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    def distribution(self):
        """The Optuna distribution that samples this parameter."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.type == "categorical":
            return CategoricalDistribution(self.choices)
        if self.type == "int":
            return IntDistribution(self.low, self.high, log=self.log, step=self.step or 1)
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one this parameter can take (inside the bounds, on the step grid)."""
        if self.type == "categorical":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not self.low <= value <= self.high:
            return False
        if self.step is None:
            return self.type == "float" or value == int(value)
        steps = (value - self.low) / self.step
        return abs(steps - round(steps)) < 1e-8

    def to_dict(self) -> dict[str, Any]:
        if self.type == "categorical":
            return {"type": self.type, "choices": list(self.choices)}
        out = {"type": self.type, "low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


def scalar_text(value: Any) -> str:
    """``value`` as the text of a ``--set key=<text>`` that parses back to the same value.

    ``str(1e-05)`` would not do: YAML 1.1 reads ``1e-05`` as a string; ``1.0e-05`` is a float.
    """
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf).strip()
    return text.removesuffix("...").strip()


def set_items(params: dict[str, Any]) -> list[str]:
    """``{"pretrain.lr": 0.001}`` -> ``["pretrain.lr=0.001"]``, the ``--set`` items of a trial."""
    return [f"{key}={scalar_text(value)}" for key, value in params.items()]


def _number(key: str, name: str, value: Any, typ: str) -> float | int:
    ok = isinstance(value, int) if typ == "int" else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok:
        raise ConfigError(f"search space '{key}': {name} must be {'an integer' if typ == 'int' else 'a number'}, got {value!r}")
    return value if typ == "int" else float(value)


def parse_param(key: str, spec: Any) -> Param:
    if not isinstance(spec, dict):
        raise ConfigError(f"search space '{key}': expected a mapping like {{type: float, low: .., high: ..}}, got {spec!r}")
    unknown = sorted(set(spec) - _FIELDS)
    if unknown:
        raise ConfigError(f"search space '{key}': unknown field '{unknown[0]}' (known: {', '.join(sorted(_FIELDS))})")
    typ = spec.get("type")
    if typ not in TYPES:
        raise ConfigError(f"search space '{key}': type must be one of {', '.join(TYPES)}, got {typ!r}")
    if typ == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices or set(spec) - {"type", "choices"}:
            raise ConfigError(f"search space '{key}': a categorical parameter takes a non-empty 'choices' list only")
        param = Param(key, typ, choices=tuple(choices))
        values = list(choices)
    else:
        if "choices" in spec or "low" not in spec or "high" not in spec:
            raise ConfigError(f"search space '{key}': a {typ} parameter needs 'low' and 'high' (and no 'choices')")
        low, high = _number(key, "low", spec["low"], typ), _number(key, "high", spec["high"], typ)
        log, step = spec.get("log", False), spec.get("step")
        if not isinstance(log, bool):
            raise ConfigError(f"search space '{key}': log must be true or false, got {log!r}")
        if step is not None:
            step = _number(key, "step", step, typ)
            if step <= 0:
                raise ConfigError(f"search space '{key}': step must be > 0, got {step!r}")
        if low >= high:
            raise ConfigError(f"search space '{key}': low ({low}) must be below high ({high})")
        if log and (low <= 0 or step is not None):
            raise ConfigError(f"search space '{key}': a log scale needs low > 0 and no step")
        param = Param(key, typ, low=low, high=high, log=log, step=step)
        values = [low, high]
    for value in values:  # the config says whether the key exists and takes this value
        try:
            load_config(None, [f"{key}={scalar_text(value)}"])
        except ConfigError as exc:
            raise ConfigError(f"search space '{key}': {exc}") from None
    return param


def load_space(path: str | Path) -> tuple[Param, ...]:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"search space {p}: not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"search space {p}: not valid YAML ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"search space {p}: expected a non-empty mapping of dotted config keys to ranges")
    try:
        return tuple(parse_param(str(key), spec) for key, spec in data.items())
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
