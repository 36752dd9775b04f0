"""A component's config: the YAML string plus the step's typed overrides, and what each step computes from.

The YAML string is the whole resolved config, or empty for the defaults; the overrides are the step's
rows of the parameter table (``components/params.py``), and one left at its "unset" value (``""``,
``0``, a negative number) keeps the config's value. ``STEP_SECTIONS`` names the config sections each
step's result depends on, which its artifacts' metadata carries (``components/metadata.py``).
"""

from __future__ import annotations

from typing import Any

from raserec_core.config import Config

from .params import PARAMS, Param, is_unset, overrides

# The config sections each step computes from: its MLflow run logs them as parameters, and so does the
# parent run (first writer wins; they agree, because a step lists a section only when it takes every
# table parameter that overrides a key of it: a test checks this against the table).
STEP_SECTIONS = {
    "preprocess": ("data",),
    "pretrain": ("seed", "device", "data", "model", "pretrain", "eval"),
    "index": ("seed", "device", "data", "memory"),
    "finetune": ("seed", "device", "data", "finetune", "eval"),
    "evaluate": ("device", "eval"),
    "register": ("device",),
}


def pipeline_config(config_yaml: str = "", table: tuple[Param, ...] = PARAMS, **values: Any) -> Config:
    """The config from a YAML string plus the table's typed overrides (unset ones are skipped)."""
    import yaml

    from raserec_core.config import ConfigError, load_config

    keys = overrides(table)
    unknown = sorted(set(values) - set(keys))
    if unknown:
        raise ConfigError(f"unknown pipeline override '{unknown[0]}' (known: {', '.join(sorted(keys))})")
    data = yaml.safe_load(config_yaml) if config_yaml and config_yaml.strip() else {}
    if not isinstance(data, dict):
        raise ConfigError("config_yaml: expected a mapping at the top level")
    tree: dict[str, Any] = {}
    for name, value in values.items():
        if is_unset(value):
            continue
        section, key = keys[name].split(".")
        tree.setdefault(section, {})[key] = value
    return load_config(None, tree, base=data)
