"""Metrics: VQA accuracy (the official evaluation), retrieval recall@K, per-family accuracy."""

from mmgraph.metrics.accuracy import AccuracyMeter, per_family_accuracy
from mmgraph.metrics.retrieval import (
    coco_1k_5fold,
    hard_negative_accuracy,
    retrieval_metrics,
    retrieval_ranks,
)
from mmgraph.metrics.vqa import VQAEvaluator, normalize_answer, vqa_score, vqa_soft_scores

__all__ = [
    "AccuracyMeter",
    "VQAEvaluator",
    "coco_1k_5fold",
    "hard_negative_accuracy",
    "normalize_answer",
    "per_family_accuracy",
    "retrieval_metrics",
    "retrieval_ranks",
    "vqa_score",
    "vqa_soft_scores",
]
