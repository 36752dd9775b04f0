"""The paper's analyses beyond its main table, each runnable on its own (RaSeRec, arXiv 2412.18378):

- ``backbones``: every stage-1 backbone alone and + RaSeRec (the paper's "improving backbones");
- ``longtail``: quality per target-popularity group, backbone against RaSeRec;
- ``partitions``: fine-tuning over banks restricted by length, popularity, a random fraction or time;
- ``noise``: seeded item replacement in the test inputs, and separately in the training sequences;
- ``sensitivity``: top-K, α, β (re-fine-tuned) and nprobe (quality and retrieval time).

An analysis is a list of settings (``settings``), one result per setting (``point``: its rows) and the
figures drawn from all rows (``figures``); ``run.run_analysis`` runs them in turn, the pipeline variant
(``pipelines/analysis.py``) fans the settings out with a ParallelFor. Trained models and banks are kept in
cache folders named by what determines them (``workspace.Workspace``), so nothing unchanged is retrained.
"""

NAMES = ("backbones", "longtail", "partitions", "noise", "sensitivity")
