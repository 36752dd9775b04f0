"""The frozen experiment configs in configs/ load and say what their comments claim."""

from pathlib import Path

import pytest

from raserec_core.config import load_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize(("name", "expected"), [
    ("duorec.yaml", {"pretrain.objective": "duorec", "pretrain.contrast": "us_x", "pretrain.batch_size": 256,
                     "pretrain.epochs": 75, "pretrain.valid_metric": "mrr@10", "model.backbone": "sasrec",
                     "pretrain.batching": "random"}),
    ("sasrec.yaml", {"pretrain.objective": "ce", "model.backbone": "sasrec", "pretrain.batching": "sequence"}),
    ("gru4rec.yaml", {"pretrain.objective": "ce", "model.backbone": "gru4rec", "model.gru_dropout": 0.3,
                     "pretrain.batching": "sequence"}),
    ("raserec.yaml", {"finetune.top_k": 20, "finetune.beta": 1.0, "finetune.alpha": 0.5, "memory.index_type": "ivf",
                      "memory.nprobe": 1, "finetune.batch_size": 1024, "finetune.valid_metric": "hr@10"}),
])
def test_experiment_configs(name, expected):
    cfg = load_config(CONFIGS / name).to_dict()
    for key, value in expected.items():
        section, field = key.split(".")
        assert cfg[section][field] == value, key


def test_fast_yaml_is_the_default_configuration():
    from raserec_core.config import Config

    assert load_config(CONFIGS / "fast.yaml") == Config()


@pytest.mark.parametrize(("name", "layer"), [("fast_ligr.yaml", "ligr"), ("fast_postln.yaml", "postln")])
def test_layer_variants_are_the_default_with_other_blocks(name, layer):
    from raserec_core.config import Config

    cfg = load_config(CONFIGS / name).to_dict()
    assert cfg["model"]["layer"] == layer != Config().model.layer
    assert cfg["pretrain"]["lr_decay"] == 1.0  # a constant learning rate, as their recorded runs
    cfg["model"]["layer"] = Config().model.layer
    cfg["pretrain"]["lr_decay"] = Config().pretrain.lr_decay
    assert cfg == Config().to_dict()


def test_paper_yaml_is_the_published_setting_of_both_stages():
    import yaml

    from raserec_core.config import from_dict

    stage1 = yaml.safe_load((CONFIGS / "duorec.yaml").read_text())
    stage2 = yaml.safe_load((CONFIGS / "raserec.yaml").read_text())
    paper = load_config(CONFIGS / "paper.yaml")
    assert paper == from_dict({**stage1, **stage2})
    assert paper.pretrain.objective == "duorec" and paper.finetune.valid_metric == "hr@10"


@pytest.mark.parametrize("name", ["paper.yaml", "duorec.yaml", "raserec.yaml", "sasrec.yaml", "gru4rec.yaml"])
def test_published_experiments_keep_seen_items_in_the_ranking(name):
    assert load_config(CONFIGS / name).eval.mask_history is False


@pytest.mark.parametrize("name", ["paper.yaml", "duorec.yaml", "sasrec.yaml", "gru4rec.yaml", "sasrec_ss.yaml"])
def test_published_experiments_train_at_a_constant_learning_rate(name):
    assert load_config(CONFIGS / name).pretrain.lr_decay == 1.0


@pytest.mark.parametrize("name", ["paper.yaml", "raserec.yaml"])
def test_the_published_ram_has_no_learned_seen_offset(name):
    assert load_config(CONFIGS / name).finetune.history_bias == "none"
