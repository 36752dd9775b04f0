"""Simulated crashes for the resume tests of both training stages."""


class CrashingBatches(list):
    """An epoch's batches that raise after two optimizer steps: a crash in the middle of an epoch."""

    def __iter__(self):
        for i, rows in enumerate(super().__iter__()):
            if i == 2:
                raise RuntimeError("simulated crash")
            yield rows


def crash_in_epoch(monkeypatch, module, batches_fn: str, epoch: int) -> None:
    """Make ``module.<batches_fn>`` return crashing batches on its ``epoch``-th call."""
    real, calls = getattr(module, batches_fn), {"n": 0}

    def crashing(*args, **kwargs):
        calls["n"] += 1
        batches = real(*args, **kwargs)
        return CrashingBatches(batches) if calls["n"] == epoch else batches

    monkeypatch.setattr(module, batches_fn, crashing)


def crash_after_checkpoint(monkeypatch, epoch: int) -> None:
    """Raise right after the ``epoch``-th checkpoint has been written."""
    import raserec_core.training.loop as loop

    real, calls = loop.save_checkpoint, {"n": 0}

    def crashing(*args, **kwargs):
        real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == epoch:
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(loop, "save_checkpoint", crashing)
