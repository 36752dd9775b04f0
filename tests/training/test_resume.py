"""The resume checkpoint: plain data only (no code runs from it), its sha256 recorded and checked."""

from __future__ import annotations

import io
import logging

import pytest

torch = pytest.importorskip("torch")

from test_train_loop import cfg, loss_fn_for, make_module, validate_for  # noqa: E402

from raserec_core.cli.main import main  # noqa: E402
from raserec_core.errors import CheckpointError  # noqa: E402
from raserec_core.training.loop import fit  # noqa: E402
from raserec_core.training.resume import digest_path  # noqa: E402


class _Payload:
    """Unpickling this writes a marker file: what an attacker's checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _crafted_checkpoint(path, marker) -> None:
    buf = io.BytesIO()
    torch.save({"module": {}, "optimizer": {}, "generator": _Payload(marker), "rng": {}, "state": {}}, buf)
    path.write_bytes(buf.getvalue())


def _fit(out, epochs):
    module = make_module()
    return fit(module, loss_fn_for(module), 40, validate_for(module), cfg(epochs=epochs), out)


@pytest.mark.parametrize("with_digest", [False, True], ids=["no-digest", "digest-forged-too"])
def test_crafted_checkpoint_runs_no_code_and_names_the_file(tmp_path, with_digest):
    out, marker = tmp_path / "run", tmp_path / "PWNED"
    _fit(out, 1)
    _crafted_checkpoint(out / "checkpoint.pt", marker)
    if with_digest:  # whoever can write the checkpoint can write its hash: weights_only must still hold
        import hashlib

        digest_path(out / "checkpoint.pt").write_text(hashlib.sha256((out / "checkpoint.pt").read_bytes()).hexdigest())
    else:
        digest_path(out / "checkpoint.pt").unlink(missing_ok=True)
    with pytest.raises(CheckpointError) as err:
        _fit(out, 2)
    assert not marker.exists()
    assert str(out / "checkpoint.pt") in str(err.value) and "--restart" in str(err.value)


def test_crafted_checkpoint_through_the_cli_is_one_clean_error(small_dataset_dir, tmp_path, tiny_args, capsys):
    out, marker = tmp_path / "model", tmp_path / "PWNED"
    args = ["pretrain", "--data", str(small_dataset_dir), "--output", str(out), *tiny_args("pretrain.epochs=1")]
    assert main(args) == 0
    (out / "metrics.json").unlink()  # an unfinished run: the next call resumes from checkpoint.pt
    _crafted_checkpoint(out / "checkpoint.pt", marker)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert not marker.exists()
    assert len(err.splitlines()) == 1 and str(out / "checkpoint.pt") in err and "--restart" in err


def test_a_checkpoint_records_its_sha256(tmp_path):
    import hashlib

    _fit(tmp_path, 2)
    recorded = digest_path(tmp_path / "checkpoint.pt").read_text().split()
    assert recorded == [hashlib.sha256((tmp_path / "checkpoint.pt").read_bytes()).hexdigest()]


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_modified_checkpoint_is_refused_with_what_to_do(tmp_path, damage):
    _fit(tmp_path, 1)
    path = tmp_path / "checkpoint.pt"
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01  # one bit inside a tensor: a valid file, silently different weights
    else:
        data = data[: len(data) // 2]
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its recorded sha256") as err:
        _fit(tmp_path, 2)
    assert str(path) in str(err.value) and "--restart" in str(err.value)


def test_a_truncated_checkpoint_without_a_digest_names_the_file(tmp_path):
    _fit(tmp_path, 1)
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:1000])
    digest_path(path).unlink()
    with pytest.raises(CheckpointError, match="not a readable training checkpoint") as err:
        _fit(tmp_path, 2)
    assert str(path) in str(err.value)


def test_a_checkpoint_without_a_recorded_digest_still_resumes(tmp_path, caplog):
    """Checkpoints written before digests were recorded resume (with a warning): they are plain data."""
    _fit(tmp_path, 1)
    digest_path(tmp_path / "checkpoint.pt").unlink()
    caplog.set_level(logging.WARNING)
    assert _fit(tmp_path, 2).epoch == 2
    assert "no recorded sha256" in caplog.text


def test_a_crash_between_the_checkpoint_and_its_digest_still_resumes(tmp_path, monkeypatch):
    """The checkpoint is renamed into place before its digest record is narrowed to it: a crash in
    between leaves a record naming both the old and the new checkpoint, and either verifies."""
    import raserec_core.training.resume as resume

    _fit(tmp_path, 1)
    real, calls = resume.atomic_write_text, {"n": 0}

    def crash_on_the_second_digest_write(path, text):
        if path.name == "checkpoint.pt.sha256":
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("simulated crash")
        real(path, text)

    monkeypatch.setattr(resume, "atomic_write_text", crash_on_the_second_digest_write)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(tmp_path, 2)
    monkeypatch.undo()
    assert len(digest_path(tmp_path / "checkpoint.pt").read_text().split()) == 2
    state = _fit(tmp_path, 3)
    assert state.epoch == 3
    assert len(digest_path(tmp_path / "checkpoint.pt").read_text().split()) == 1


def test_the_best_weights_are_verified_before_they_become_the_model(tmp_path):
    from raserec_core.training.resume import read_weights

    _fit(tmp_path, 2)
    assert set(read_weights(tmp_path / "best.pt")) == set(make_module().state_dict())
    state = torch.load(tmp_path / "best.pt", weights_only=True)
    torch.save({k: torch.full_like(v, 0.5) for k, v in state.items()}, tmp_path / "best.pt")  # a valid file
    with pytest.raises(CheckpointError, match="best.pt: content does not match its recorded sha256"):
        read_weights(tmp_path / "best.pt")


def test_two_crashes_before_the_checkpoint_is_renamed_still_resume(tmp_path, monkeypatch):
    import raserec_core.training.resume as resume

    _fit(tmp_path, 1)
    real = resume.atomic_write_bytes

    def crash_before_the_checkpoint_rename(path, data):
        if path.name == "checkpoint.pt":
            raise RuntimeError("simulated crash")
        real(path, data)

    monkeypatch.setattr(resume, "atomic_write_bytes", crash_before_the_checkpoint_rename)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="simulated crash"):
            _fit(tmp_path, 2)
    monkeypatch.undo()
    assert _fit(tmp_path, 2).epoch == 2
