r"""The VQA head: fused vectors -> answer logits, its two losses, and decoding.

VQA is answer classification over a fixed answer vocabulary, as in
bottom-up-attention VQA (`Anderson et al. 2018 <https://arxiv.org/abs/1707.07998>`_;
`Teney et al. 2018 <https://arxiv.org/abs/1708.02711>`_, code:
``hengyuan-hu/bottom-up-attention-vqa``). Two targets are common:

* soft scores ``[B, A]`` in ``[0, 1]`` (VQA v2: 0.3, 0.6, 0.9, 1 for an answer
  given by 1, 2, 3, 4+ of the ten annotators), trained with
  :func:`vqa_bce_loss`;
* one answer id per question ``[B]`` (GQA, CLEVR, the synthetic data sets),
  trained with :func:`vqa_ce_loss`; ``-1`` marks an answer outside the
  vocabulary and is ignored.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch.nn.functional as F
from torch import Tensor, nn

from mmgraph.errors import InputError

__all__ = ["VQAHead", "vqa_bce_loss", "vqa_ce_loss", "predict_answers"]


class VQAHead(nn.Module):
    r"""The answer classifier of bottom-up-attention VQA: a two-layer MLP on
    the fused vector,

    .. math::
        \mathbf{s} = \mathbf{W}_2\,\mathrm{Dropout}\big(\mathrm{ReLU}(\mathbf{W}_1\mathbf{f} + \mathbf{b}_1)\big)
            + \mathbf{b}_2

    The reference wraps both linear layers in weight normalisation; here they
    are plain :class:`~torch.nn.Linear` layers (the encoder already ends in a
    layer norm).

    Args:
        hidden (int): Size of the fused vector.
        num_answers (int): Number of answer classes.
        mult (int, optional): Inner size over ``hidden`` (the reference's
            ``2 * num_hid``). (default: :obj:`2`)
        dropout (float, optional): Dropout between the layers (the reference
            uses 0.5). (default: :obj:`0.1`)

    Shapes:
        - **input:** :math:`(B, \mathrm{hidden})`
        - **output:** :math:`(B, \mathrm{num\_answers})` logits
    """

    def __init__(self, hidden: int, num_answers: int, mult: int = 2, dropout: float = 0.1):
        super().__init__()
        if num_answers < 1:
            raise InputError(f"VQAHead: num_answers must be >= 1, got {num_answers}.")
        self.hidden = hidden
        self.num_answers = num_answers
        self.mult = mult
        self.dropout = dropout
        self.lin1 = nn.Linear(hidden, mult * hidden)
        self.drop = nn.Dropout(dropout)
        self.lin2 = nn.Linear(mult * hidden, num_answers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lin1.reset_parameters()
        self.lin2.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        return self.lin2(self.drop(F.relu(self.lin1(x))))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.hidden}, {self.num_answers}, mult={self.mult})"


def _check_logits(name: str, logits: Tensor, target: Tensor, target_dims: int) -> None:
    if logits.dim() != 2:
        raise InputError(f"{name}: logits must be [B, A], got shape {list(logits.shape)}.")
    if target.dim() != target_dims or target.size(0) != logits.size(0):
        want = "[B, A] soft scores" if target_dims == 2 else "[B] answer ids"
        raise InputError(
            f"{name}: the target must be {want} for logits {list(logits.shape)}, got shape "
            f"{list(target.shape)}."
        )


def vqa_bce_loss(logits: Tensor, soft_scores: Tensor) -> Tensor:
    r"""Binary cross-entropy on the soft answer scores, summed over answers
    and averaged over questions:

    .. math::
        \mathcal{L} = -\frac{1}{B}\sum_{b=1}^{B}\sum_{a=1}^{A}
            \big[s_{ba}\log\sigma(z_{ba}) + (1 - s_{ba})\log(1 - \sigma(z_{ba}))\big]

    This is ``instance_bce_with_logits`` of bottom-up-attention-vqa: the mean
    of :func:`~torch.nn.functional.binary_cross_entropy_with_logits` over all
    ``B * A`` entries multiplied by ``A``, which keeps the gradient of one
    answer independent of the size of the answer vocabulary.

    Args:
        logits (torch.Tensor): ``[B, A]`` answer logits.
        soft_scores (torch.Tensor): ``[B, A]`` targets in ``[0, 1]``.
    """
    _check_logits("vqa_bce_loss", logits, soft_scores, 2)
    if soft_scores.size(1) != logits.size(1):
        raise InputError(
            f"vqa_bce_loss: {logits.size(1)} answer logits but soft scores over {soft_scores.size(1)} "
            "answers; set num_answers to len(dataset.answers)."
        )
    loss = F.binary_cross_entropy_with_logits(logits, soft_scores.to(logits.dtype))
    return loss * soft_scores.size(1)


def vqa_ce_loss(logits: Tensor, ids: Tensor, ignore_index: int = -1) -> Tensor:
    r"""Softmax cross-entropy on one answer id per question, averaged over
    the questions whose answer is in the vocabulary (``ids != ignore_index``);
    zero (with a gradient path) when there is none.

    Args:
        logits (torch.Tensor): ``[B, A]`` answer logits.
        ids (torch.Tensor): ``[B]`` answer ids.
        ignore_index (int, optional): The id of an unknown answer. (default: :obj:`-1`)
    """
    ids = ids.view(-1) if ids.dim() == 2 and ids.size(1) == 1 else ids
    _check_logits("vqa_ce_loss", logits, ids, 1)
    valid = ids != ignore_index
    if not bool(valid.any()):
        return logits.sum() * 0.0
    high = int(ids[valid].max())
    if high >= logits.size(1) or int(ids[valid].min()) < 0:
        raise InputError(
            f"vqa_ce_loss: answer ids must lie in 0..{logits.size(1) - 1} (or be {ignore_index}), got "
            f"{int(ids[valid].min())}..{high}; set num_answers to len(dataset.answers)."
        )
    return F.cross_entropy(logits, ids, ignore_index=ignore_index)


def predict_answers(
    logits: Tensor, answers: Sequence[str], k: int = 1, activation: str = "softmax"
) -> List[List[Tuple[str, float]]]:
    """The ``k`` best answers of every question with their probabilities.

    Args:
        logits (torch.Tensor): ``[B, A]`` answer logits.
        answers (Sequence[str]): The answer strings in class order (``dataset.answers.itos``).
        k (int, optional): Answers per question. (default: :obj:`1`)
        activation (str, optional): ``"softmax"`` (a model trained with
            :func:`vqa_ce_loss`) or ``"sigmoid"`` (with :func:`vqa_bce_loss`).
            (default: ``"softmax"``)

    Returns:
        ``[[(answer, probability), ...k], ...B]``, best first.
    """
    if logits.dim() != 2:
        raise InputError(f"predict_answers: logits must be [B, A], got shape {list(logits.shape)}.")
    if len(answers) != logits.size(1):
        raise InputError(
            f"predict_answers: {logits.size(1)} answer logits but {len(answers)} answer strings; pass "
            "the answer vocabulary the model was trained with (dataset.answers.itos)."
        )
    if activation not in ("softmax", "sigmoid"):
        raise InputError(f"predict_answers: activation must be 'softmax' or 'sigmoid', got {activation!r}.")
    if not 1 <= k <= logits.size(1):
        raise InputError(f"predict_answers: k must lie in 1..{logits.size(1)}, got {k}.")
    probs = (
        logits.detach().float().softmax(-1) if activation == "softmax" else logits.detach().float().sigmoid()
    )
    top = probs.topk(k, dim=-1)
    values, indices = top.values.tolist(), top.indices.tolist()
    return [[(answers[i], p) for i, p in zip(row_i, row_p)] for row_i, row_p in zip(indices, values)]
