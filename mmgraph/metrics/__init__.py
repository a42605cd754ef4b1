"""Metrics: VQA accuracy (the official evaluation), retrieval recall@K."""

from mmgraph.metrics.vqa import VQAEvaluator, normalize_answer, vqa_score, vqa_soft_scores

__all__ = ["VQAEvaluator", "normalize_answer", "vqa_score", "vqa_soft_scores"]
