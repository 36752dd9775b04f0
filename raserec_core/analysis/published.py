"""The few published numbers our analyses can stand beside: test HR@10 / NDCG@10 on Beauty and Sports
(RaSeRec paper, Zhao et al. 2024, the main comparison table) and the DuoRec backbone's Beauty test from
the training log released with the paper's code. The backbone, partition, noise, long-tail and sensitivity
analyses are shown in the paper as figures (or only described) without numbers: for those the report
quotes the paper's claim."""

PUBLISHED = {
    "backbones": {
        "rows": [
            {"dataset": "Beauty", "variant": "duorec", "model": "alone", "hr@10": 0.0834, "ndcg@10": 0.0431,
             "source": "released training log"},
            {"dataset": "Beauty", "variant": "duorec", "model": "+raserec", "hr@10": 0.0863, "ndcg@10": 0.0462,
             "source": "released training log"},
            {"dataset": "Beauty", "variant": "duorec", "model": "+raserec", "hr@10": 0.0860, "ndcg@10": 0.0463,
             "source": "paper, main table"},
            {"dataset": "Sports", "variant": "duorec", "model": "+raserec", "hr@10": 0.0497, "ndcg@10": 0.0264,
             "source": "paper, main table"},
        ],
        "claim": "RaSeRec improves every backbone it is put on (paper, \"Improving Base Backbones\" figure).",
    },
    "longtail": {"claim": "Retrieval helps most on long-tail items, which implicit memory recalls poorly "
                          "(paper, introduction and abstract; no per-group numbers)."},
    "partitions": {"claim": "Quality depends on what the memory bank holds (paper, memory-bank ablation; "
                            "figure only)."},
    "noise": {"claim": "RaSeRec is robust to noisy inputs (paper, robustness analysis; protocol and numbers "
                       "not given)."},
    "sensitivity": {"claim": "RaSeRec is stable over top-K, α and β around the released K=20, α=0.5, β=1 "
                             "(paper, \"Parameter Sensitivity\" figure; no numbers)."},
}
