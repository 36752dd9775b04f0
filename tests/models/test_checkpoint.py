"""Verified model folders: every weight file is checked against model.json before it is read, and a
truncated or corrupt file (weights or JSON) is a one-line error naming it, at load time, never later."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("faiss")

from raserec_core.cli.main import main  # noqa: E402
from raserec_core.errors import CheckpointError  # noqa: E402
from raserec_core.models.checkpoint import load_encoder  # noqa: E402
from raserec_core.recommender import Recommender  # noqa: E402

FINETUNE = ["finetune.epochs=1", "finetune.batch_size=32", "finetune.top_k=4", "finetune.inner_size=32"]


@pytest.fixture(scope="module")
def bank(tmp_path_factory, wide_dataset_dir, trained_model_dir, tiny_args):
    out = tmp_path_factory.mktemp("ckpt_bank") / "bank"
    assert main(["index", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--output", str(out),
                 "--index-type", "flat", *tiny_args()]) == 0
    return out


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, wide_dataset_dir, trained_model_dir, bank, tiny_args):
    out = tmp_path_factory.mktemp("ckpt_ft") / "ft"
    assert main(["finetune", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--memory", str(bank),
                 "--output", str(out), *tiny_args(*FINETUNE)]) == 0
    return out


def _copy(folder, tmp_path):
    return shutil.copytree(folder, tmp_path / folder.name)


def _flip_a_bit(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _halve_every_weight(path):
    """A valid weights file with other values: what silently changed answers before ram.pt was checked."""
    state = torch.load(path, weights_only=True)
    torch.save({k: torch.full_like(v, 0.5) if v.is_floating_point() else v for k, v in state.items()}, path)


@pytest.mark.parametrize("damage", [_flip_a_bit, _halve_every_weight], ids=["flipped-bit", "all-0.5"])
def test_a_modified_ram_fails_evaluate_naming_the_file(damage, finetuned, bank, wide_dataset_dir, tiny_args, tmp_path,
                                                       capsys):
    model = _copy(finetuned, tmp_path)
    damage(model / "ram.pt")
    capsys.readouterr()
    rc = main(["evaluate", "--data", str(wide_dataset_dir), "--model", str(model), "--memory", str(bank),
               *tiny_args(*FINETUNE)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert str(model / "ram.pt") in err[-1] and "does not match model.json" in err[-1]


def test_a_modified_ram_fails_when_the_recommender_loads(finetuned, bank, tmp_path):
    model = _copy(finetuned, tmp_path)
    _halve_every_weight(model / "ram.pt")
    with pytest.raises(CheckpointError, match="ram.pt: sha256"):
        Recommender.load(model, bank, "cpu")


def test_a_corrupt_registered_model_fails_at_load_not_at_answer_time(finetuned, bank, wide_dataset_dir, tmp_path):
    """The pyfunc model rebuilds itself through the same verified loaders."""
    pytest.importorskip("mlflow")
    from raserec_core.tracking import model_folder as recommender
    from raserec_core.tracking.pyfunc import ARTIFACT, RecommenderModel

    folder = tmp_path / "packed"
    recommender.pack(finetuned, wide_dataset_dir, folder, bank, "cpu")
    RecommenderModel().load_context(SimpleNamespace(artifacts={ARTIFACT: str(folder)}))  # intact: loads
    _halve_every_weight(folder / "model" / "ram.pt")
    with pytest.raises(CheckpointError, match="ram.pt: sha256"):
        RecommenderModel().load_context(SimpleNamespace(artifacts={ARTIFACT: str(folder)}))


def test_a_truncated_recommender_manifest_names_the_file(finetuned, bank, wide_dataset_dir, tmp_path):
    from raserec_core.tracking import model_folder as recommender

    folder = tmp_path / "packed"
    recommender.pack(finetuned, wide_dataset_dir, folder, bank, "cpu")
    text = (folder / recommender.MANIFEST).read_text()
    (folder / recommender.MANIFEST).write_text(text[:-5])
    with pytest.raises(CheckpointError, match="not valid JSON") as err:
        recommender.load(folder, "cpu")
    assert str(folder / recommender.MANIFEST) in str(err.value)


def test_a_truncated_model_json_is_one_line_naming_it(trained_model_dir, wide_dataset_dir, tiny_args, tmp_path, capsys):
    model = _copy(trained_model_dir, tmp_path)
    text = (model / "model.json").read_text()
    (model / "model.json").write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_encoder(model, "cpu")
    capsys.readouterr()
    assert main(["evaluate", "--data", str(wide_dataset_dir), "--model", str(model), *tiny_args()]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert str(model / "model.json") in err[-1] and "Traceback" not in "\n".join(err)


def test_truncated_encoder_weights_name_the_file_and_what_to_do(trained_model_dir, tmp_path):
    model = _copy(trained_model_dir, tmp_path)
    (model / "encoder.pt").write_bytes((model / "encoder.pt").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated or was modified") as err:
        load_encoder(model, "cpu")
    assert str(model / "encoder.pt") in str(err.value)


def test_an_intact_model_loads(trained_model_dir):
    encoder, manifest = load_encoder(trained_model_dir, "cpu")
    assert not encoder.training and manifest["kind"] == "encoder"


def test_a_manifest_from_before_the_layer_option_loads_post_ln_blocks(tmp_path):
    import json

    from raserec_core.config import ModelConfig
    from raserec_core.models.checkpoint import encoder_spec, file_sha256
    from raserec_core.models.encoder import build_encoder
    from raserec_core.models.sasrec import Block

    old = build_encoder("sasrec", 30, 8, ModelConfig(layer="postln"))
    torch.save(old.state_dict(), tmp_path / "encoder.pt")
    spec = encoder_spec("sasrec", 30, 8, 0, ModelConfig(layer="postln"))
    del spec["model"]["layer"], spec["model"]["filter_alpha"], spec["model"]["filter_cutoff"]  # as written then
    manifest = {"kind": "encoder", "encoder": spec, "encoder_sha256": file_sha256(tmp_path / "encoder.pt")}
    (tmp_path / "model.json").write_text(json.dumps(manifest))
    encoder, _ = load_encoder(tmp_path, "cpu")
    assert isinstance(encoder.blocks[0], Block)
    torch.testing.assert_close(encoder.state_dict(), old.state_dict())
