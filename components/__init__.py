"""One Kubeflow component per pipeline stage, built from its ports, its docstring and the parameter table.

Every component is a lightweight Python component (the only kind the local runner runs) on the one
image named in ``image.py``. ``params.py`` is the one table of the pipeline's parameters;
``factory.py`` writes each component's typed signature from it; the body of every component is
``runtime.run_component(<step>, locals())``, which resolves the config, picks the device, opens the
step's MLflow run, makes the step's one call into ``raserec_core.steps`` and records its results (artifact
metadata, MLflow, exports to ``artifact_root``).

Import a component from its module (``from components.pretrain import pretrain``); this package
re-exports nothing, so a module and its component never shadow each other.
"""
