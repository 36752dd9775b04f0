"""One Kubeflow component per pipeline stage: a signature, a docstring and one call into ``raserec_core.steps``.

Every component is a lightweight Python component (the only kind the local runner runs) on the one
image named in ``image.py``. Its body runs inside ``raserec_core.cli.task.pipeline_task``, which resolves
the config, picks the device, opens the step's MLflow run and, through ``record``, logs the step's
results, fills the output artifacts' metadata and exports them to ``artifact_root``.

kfp ships only the function's source to the container, so imports live inside the bodies; the image
constant is used at decoration time, in this package. Import a component from its module
(``from components.pretrain import pretrain``); this package re-exports nothing, so a module and its
component never shadow each other.
"""
