"""Pure metric functions, the batched full ranker, split evaluation and top-K dumps."""

from .metrics import METRICS, mlflow_key, summarize
from .ranker import EXCLUDED, KEPT, RankResult, rank_all
from .ranking import stable_topk, target_ranks

__all__ = ["EXCLUDED", "KEPT", "METRICS", "RankResult", "mlflow_key", "rank_all", "stable_topk", "summarize", "target_ranks"]
