"""Heads: fused vectors -> answers (VQA) and match scores (retrieval), with their losses."""

from mmgraph.heads.alignment import alignment_loss, alignment_mass, mean_alignment_loss
from mmgraph.heads.retrieval import (
    ITMHead,
    LearnableTemperature,
    hard_negative_ranking_loss,
    info_nce_loss,
    itm_loss,
    positive_mask,
    vse_hinge_loss,
)
from mmgraph.heads.vqa import VQAHead, predict_answers, vqa_bce_loss, vqa_ce_loss

__all__ = [
    "VQAHead",
    "vqa_bce_loss",
    "vqa_ce_loss",
    "predict_answers",
    "LearnableTemperature",
    "info_nce_loss",
    "vse_hinge_loss",
    "positive_mask",
    "ITMHead",
    "itm_loss",
    "hard_negative_ranking_loss",
    "alignment_loss",
    "alignment_mass",
    "mean_alignment_loss",
]
