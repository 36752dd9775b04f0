"""RecBole 1.2.1 side of the stage-1 speed benchmark (run by benchmarks/speed_stage1.py).

Runs in a separate interpreter that has RecBole 1.2.1 installed (not this project's environment):

    /work/recbole-venv/bin/python benchmarks/recbole_driver.py --data-path DIR --dataset NAME \
        [--epochs 3] [--threads 2] [--eval-batch-size 4096]

DIR/NAME/NAME.inter must be a RecBole atomic file (user_id:token, item_id:token, timestamp:float).
Builds the dataset and dataloaders once, then alternates ``--epochs`` training epochs
(``Trainer._train_epoch``) and full-ranking validations (``Trainer.evaluate`` on the validation split,
``load_best_model=False``), each timed with ``time.perf_counter``, exactly as ``Trainer.fit`` would run
them but without checkpoint saving. Prints one JSON object on stdout; RecBole's own log goes to stderr
and to ./log (run it with the working folder set to a scratch folder).

RecBole at its fastest: importing ``recbole.model.sequential_recommender`` calls
``torch.autograd.set_detect_anomaly(True)`` (in sine.py) for the whole process; we switch it off again
right after the import (reported as ``anomaly_after_import``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-path", required=True, help="folder that holds NAME/NAME.inter")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-batch-size", type=int, default=4096, help="users per full-ranking batch")
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--keep-anomaly", action="store_true", help="leave anomaly detection on (RecBole as installed)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)

    import recbole
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec

    anomaly_after_import = torch.is_anomaly_enabled()
    if not args.keep_anomaly:
        torch.autograd.set_detect_anomaly(False)
    from recbole.trainer import Trainer
    from recbole.utils import init_logger, init_seed

    config_dict = {
        # environment
        "data_path": os.path.abspath(args.data_path),
        "checkpoint_dir": os.path.abspath("saved"),
        "use_gpu": False,
        "seed": args.seed,
        "reproducibility": True,
        "worker": 0,
        "show_progress": False,
        "save_dataset": False,
        "save_dataloaders": False,
        "log_wandb": False,
        # data: the file is already 5-core and time-ordered; no filtering, no de-duplication
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "MAX_ITEM_LIST_LENGTH": 50,
        # model: SASRec as docs/method.md §2
        "n_layers": 2,
        "n_heads": 2,
        "hidden_size": 64,
        "inner_size": 256,
        "hidden_dropout_prob": 0.5,
        "attn_dropout_prob": 0.5,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "initializer_range": 0.02,
        "loss_type": "CE",
        # training
        "epochs": args.epochs,
        "train_batch_size": 256,
        "learner": "adam",
        "learning_rate": 0.001,
        "weight_decay": 0.0,
        "train_neg_sample_args": None,  # CE over all items: no negative sampling
        # evaluation: leave-one-out, full ranking
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        "metrics": ["Recall", "NDCG", "MRR"],
        "topk": [5, 10, 20, 50],
        "valid_metric": "MRR@10",
        "eval_batch_size": args.eval_batch_size,
    }
    config = Config(model="SASRec", dataset=args.dataset, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    import logging

    # init_logger also logs to the console (stdout in some versions): keep stdout for the JSON only.
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is sys.stdout:
            h.setStream(sys.stderr)

    t0 = time.perf_counter()
    dataset = create_dataset(config)
    counts = {  # before data_preparation, which trims the dataset's own interaction table
        "n_users": int(dataset.user_num - 1),  # RecBole counts the padding id 0
        "n_items": int(dataset.item_num - 1),
        "n_interactions": int(dataset.inter_num),
    }
    train_data, valid_data, test_data = data_preparation(config, dataset)
    prep_time = time.perf_counter() - t0

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = SASRec(config, train_data._dataset).to(config["device"])
    trainer = Trainer(config, model)
    trainer.eval_collector.data_collect(train_data)  # as Trainer.fit does first

    epochs = []
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        loss = trainer._train_epoch(train_data, epoch, show_progress=False)
        train_time = time.perf_counter() - t0
        t1 = time.perf_counter()
        result = trainer.evaluate(valid_data, load_best_model=False, show_progress=False)
        valid_time = time.perf_counter() - t1
        rec = {
            "epoch": epoch + 1,
            "loss": float(loss) / len(train_data),
            "train_time": train_time,
            "valid_time": valid_time,
            **{f"valid/{k}": float(v) for k, v in result.items()},
        }
        epochs.append(rec)
        print(
            f"recbole epoch {epoch + 1}: train {train_time:.1f}s  valid {valid_time:.1f}s  "
            f"mrr@10 {float(result['mrr@10']):.4f}",
            file=sys.stderr,
            flush=True,
        )

    out = {
        "recbole_version": recbole.__version__,
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "anomaly_after_import": anomaly_after_import,
        "anomaly_during_run": torch.is_anomaly_enabled(),
        "device": str(config["device"]),
        **counts,
        "instances": {
            "train": len(train_data._dataset),
            "valid": len(valid_data._dataset),
            "test": len(test_data._dataset),
        },
        "train_batches": len(train_data),
        "eval_batch_size": args.eval_batch_size,
        "prep_time": prep_time,
        "epochs": epochs,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
