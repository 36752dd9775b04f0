"""Hyperparameter search over stage-1 training (``raserec tune``), on Optuna.

- ``space``: the search space, a YAML map of dotted config keys to ranges, checked against the config;
- ``trial``: one trial is the command a cluster would run (``raserec pretrain ... --set key=value``) in a
  subprocess, watched through the ``history.json`` it writes after every epoch (pruning);
- ``study``: the resumable Optuna study (SQLite in the study folder), an MLflow run per trial under one
  parent, and the frozen best config;
- ``katib``: the same search as a Katib Experiment, generated from the same space file.

Selection is on the validation metric the config trains on (``pretrain.valid_metric``); test metrics are
recorded with each trial and never used to choose.
"""
