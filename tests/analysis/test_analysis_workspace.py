"""The analysis workspace reuses the command's own models only where they are what was asked for."""

from __future__ import annotations

from dataclasses import replace

from raserec_core.analysis.workspace import Inputs, Workspace, base_config
from raserec_core.config import from_dict


def _workspace(analysis_inputs, tmp_path):
    i = analysis_inputs
    inputs = Inputs(i["data"], i["model"], i["memory"], i["baseline"])
    return Workspace(inputs, from_dict(base_config(inputs)), tmp_path / "cache", tmp_path / "out", "cpu")


def test_the_given_models_are_reused_under_their_own_settings(analysis_inputs, tmp_path):
    ws = _workspace(analysis_inputs, tmp_path)
    assert ws.pretrain(ws.cfg) == ws.inputs.baseline
    assert ws.index(ws.cfg, ws.inputs.baseline) == ws.inputs.memory
    assert ws.finetune(ws.cfg, ws.inputs.baseline, ws.inputs.memory) == ws.inputs.model == ws.raserec()
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_a_stage1_model_selected_under_another_protocol_is_not_reused(analysis_inputs, tmp_path):
    ws = _workspace(analysis_inputs, tmp_path)
    assert ws.cfg.eval.mask_history  # the stage-1 model was early-stopped with seen items excluded
    other = replace(ws.cfg, eval=replace(ws.cfg.eval, mask_history=False))
    made = ws.pretrain(other)
    assert made != ws.inputs.baseline and made.parent == tmp_path / "cache" and (made / "metrics.json").exists()
    assert ws.pretrain(other) == made  # and made once


def test_a_given_model_that_fell_back_to_its_encoder_is_not_reused(analysis_inputs, tmp_path):
    import json
    import shutil

    i = analysis_inputs
    fell = tmp_path / "fell-back"
    shutil.copytree(i["model"], fell)
    manifest = json.loads((fell / "model.json").read_text())
    manifest["encoder_fallback"] = {"used": True, "metric": "valid/ndcg@10", "encoder": 0.2, "ram": 0.1}
    (fell / "model.json").write_text(json.dumps(manifest))
    inputs = Inputs(i["data"], fell, i["memory"], i["baseline"])
    ws = Workspace(inputs, from_dict(base_config(inputs)), tmp_path / "cache", tmp_path / "out", "cpu")
    made = ws.finetune(ws.cfg, ws.inputs.baseline, ws.inputs.memory)
    assert made != fell and made.parent == tmp_path / "cache"  # the analyses measure the RAM itself
    assert json.loads((made / "model.json").read_text())["encoder_fallback"] is None
    assert ws.raserec() == made  # what the analyses evaluate in its place
