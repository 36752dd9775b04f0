"""Model configs derived from the config sections by field name (models/configs.py)."""

from __future__ import annotations

import dataclasses

import pytest

from raserec_core.config import FinetuneConfig, ModelConfig, load_config
from raserec_core.models.configs import from_section
from raserec_core.models.ram import RAMConfig
from raserec_core.models.sasrec import SASRecConfig


def _names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_every_model_setting_comes_from_its_section():
    # what the sections do not hold is passed by the caller or kept at the model's default, and only that
    assert _names(SASRecConfig) - _names(ModelConfig) == {"n_items", "max_len", "n_extra_tokens"}
    assert _names(RAMConfig) - _names(FinetuneConfig) == {"hidden_size", "layer_norm_eps", "initializer_range"}


def test_from_section_takes_fields_by_name_then_the_given_ones():
    cfg = load_config(None, ["finetune.top_k=7", "finetune.alpha=0.25", "finetune.length_gate=3",
                             "model.n_layers=3", "model.attn_dropout=0.1"])
    ram = from_section(RAMConfig, cfg.finetune, hidden_size=32)
    assert (ram.top_k, ram.alpha, ram.length_gate, ram.hidden_size) == (7, 0.25, 3, 32)
    assert ram.layer_norm_eps == RAMConfig().layer_norm_eps
    enc = from_section(SASRecConfig, cfg.model, n_items=10, max_len=5)
    assert (enc.n_layers, enc.attn_dropout, enc.n_items, enc.max_len) == (3, 0.1, 10, 5)
    with pytest.raises(TypeError, match="RAMConfig has no field 'hiden_size'"):
        from_section(RAMConfig, cfg.finetune, hiden_size=32)


def test_the_training_and_the_encoder_factory_use_it():
    import torch

    from raserec_core.models.encoder import build_encoder
    from raserec_core.recommender import ram_config

    cfg = load_config(None, ["finetune.beta=0.5", "model.hidden_size=16", "model.n_heads=4"])
    assert ram_config(cfg, 16) == from_section(RAMConfig, cfg.finetune, hidden_size=16)
    encoder = build_encoder("sasrec", 12, 6, cfg.model)
    assert encoder.cfg == from_section(SASRecConfig, cfg.model, n_items=12, max_len=6)
    assert isinstance(encoder, torch.nn.Module)
