"""Uniting outputs of one analysis measured for different settings (run.merge)."""

import json

import pytest

from raserec_core.analysis import run
from raserec_core.errors import ConfigError


def _write(folder, name, options, rows):
    m = run.module(name)
    run.finish(name, folder, rows, {**m.DEFAULTS, **options})
    return folder


def _row(param, value, hr):
    return {"param": param, "value": value, "hr@10": hr, "ndcg@10": hr / 2, "dump": f"dumps/{param}-{value}.parquet"}


def test_merge_unites_settings_and_the_last_folder_wins(tmp_path):
    a = _write(tmp_path / "a", "sensitivity", {"params": ["top_k", "alpha"], "top_k": [20, 1], "alpha": [0.5]},
               [_row("top_k", 20, 0.09), _row("top_k", 1, 0.08), _row("alpha", 0.5, 0.09)])
    b = _write(tmp_path / "b", "sensitivity", {"params": ["top_k", "beta"], "top_k": [40], "beta": [0.0]},
               [_row("top_k", 40, 0.07), _row("beta", 0.0, 0.06), _row("alpha", 0.5, 0.1)])
    record = run.merge([a, b], tmp_path / "all")
    got = {(r["param"], r["value"]): r["hr@10"] for r in record["rows"]}
    assert got == {("top_k", 1): 0.08, ("top_k", 20): 0.09, ("top_k", 40): 0.07, ("alpha", 0.5): 0.1, ("beta", 0.0): 0.06}
    assert [r["value"] for r in record["rows"] if r["param"] == "top_k"] == [1, 20, 40]
    assert record["options"]["top_k"] == [1, 20, 40] and record["options"]["params"] == ["top_k", "alpha", "beta"]
    saved = json.loads((tmp_path / "all" / "result.json").read_text())
    assert saved["rows"] == record["rows"]
    top_k = next(f for f in saved["figures"] if f["name"] == "sensitivity_top_k")
    assert [r["value"] for r in top_k["rows"]] == [1, 20, 40]
    assert (tmp_path / "all" / "sensitivity_beta.png").stat().st_size > 0


def test_merge_refuses_different_analyses(tmp_path):
    a = _write(tmp_path / "a", "sensitivity", {"params": ["top_k"], "top_k": [1]}, [_row("top_k", 1, 0.08)])
    b = _write(tmp_path / "b", "partitions", {"kinds": ["random"], "fractions": [0.5]},
               [{"kind": "none", "value": 1.0, "entries": 10, "hr@10": 0.1, "ndcg@10": 0.05}])
    with pytest.raises(ConfigError, match="different analyses"):
        run.merge([a, b], tmp_path / "all")
