r"""Retrieval heads: contrastive losses for dual encoders and the image-text
matching (ITM) head of a cross-encoder re-ranker.

* :func:`info_nce_loss` with :class:`LearnableTemperature`: the symmetric
  contrastive loss of CLIP (`Radford et al. 2021 <https://arxiv.org/abs/2103.00020>`_);
* :func:`vse_hinge_loss`: the hinge triplet loss of VSE++ (`Faghri et al.
  2018 <https://arxiv.org/abs/1707.05612>`_, ``ContrastiveLoss`` in
  ``fartashf/vsepp/model.py``), with its hardest-negative variant;
* :class:`ITMHead` and :func:`itm_loss`: a match / no-match classifier on the
  fused vector of a cross-encoder, as UNITER's and ALBEF's ITM objective;
* :func:`hard_negative_ranking_loss`: each caption against its own hard
  negatives (softmax cross-entropy over the group), the listwise form of
  NegCLIP's hard negatives (`Yuksekgonul et al. 2023
  <https://arxiv.org/abs/2210.01936>`_) for a re-ranker.

**Duplicate images.** With several captions per image (five in COCO and
Flickr30K) a batch of (image, caption) pairs may hold one image twice. Its
other caption is then a true match, not a negative. Both contrastive losses
take ``image_ids`` ``[N]``: every pair ``(i, j)`` with
``image_ids[i] == image_ids[j]`` is removed from the negatives (the diagonal
stays the positive), so the loss equals the loss of a batch without the
duplicate. Without ``image_ids`` the pairs are taken to show distinct images,
as the references assume.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmgraph.errors import InputError
from mmgraph.typing import OptTensor

__all__ = [
    "LearnableTemperature",
    "info_nce_loss",
    "vse_hinge_loss",
    "ITMHead",
    "itm_loss",
    "hard_negative_ranking_loss",
    "positive_mask",
]


class LearnableTemperature(nn.Module):
    r"""CLIP's learnable logit scale :math:`\exp(t)`, initialised to
    ``1 / init`` and capped at ``max_scale``:

    .. math::
        \mathrm{scale} = \min\big(\exp(t), \mathrm{max\_scale}\big),
        \qquad t_0 = \log(1 / \mathrm{init})

    CLIP clamps the parameter in place after every optimiser step; here the
    cap is applied in :meth:`forward`, so no training loop has to know of it
    (beyond the cap the gradient is zero, as the clamp leaves it).

    Args:
        init (float, optional): The initial temperature. (default: :obj:`0.07`)
        max_scale (float, optional): The largest scale. (default: :obj:`100.0`)

    Shapes:
        - **output:** a scalar
    """

    def __init__(self, init: float = 0.07, max_scale: float = 100.0):
        super().__init__()
        if init <= 0 or max_scale <= 0:
            raise InputError(
                f"LearnableTemperature: init and max_scale must be > 0, got {init} and {max_scale}."
            )
        self.init = init
        self.max_scale = max_scale
        self.log_scale = nn.Parameter(torch.empty(()))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.log_scale.fill_(math.log(1.0 / self.init))

    def forward(self) -> Tensor:
        return self.log_scale.exp().clamp(max=self.max_scale)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(init={self.init}, max_scale={self.max_scale})"


def _check_pair(name: str, img: Tensor, txt: Tensor, image_ids: OptTensor) -> None:
    if img.dim() != 2 or img.shape != txt.shape:
        raise InputError(
            f"{name}: image and text embeddings must both be [N, D] for N matched pairs, got "
            f"{list(img.shape)} and {list(txt.shape)}."
        )
    if image_ids is not None and (image_ids.dim() != 1 or image_ids.numel() != img.size(0)):
        raise InputError(
            f"{name}: image_ids must be [N] = [{img.size(0)}], got shape {list(image_ids.shape)}."
        )


def positive_mask(num_pairs: int, image_ids: OptTensor = None, device=None) -> Tensor:
    """``[N, N]`` bool: pair ``(i, j)`` matches (the diagonal, and equal image ids)."""
    if image_ids is None:
        return torch.eye(num_pairs, dtype=torch.bool, device=device)
    return image_ids.view(-1, 1) == image_ids.view(1, -1)


def info_nce_loss(img: Tensor, txt: Tensor, scale: Tensor | float, image_ids: OptTensor = None) -> Tensor:
    r"""The symmetric InfoNCE loss of CLIP on ``N`` matched pairs:

    .. math::
        \mathbf{S} = \tau\,\mathbf{I}\mathbf{T}^\top, \qquad
        \mathcal{L} = \tfrac{1}{2}\Big(\mathrm{CE}(\mathbf{S}, \mathrm{diag})
            + \mathrm{CE}(\mathbf{S}^\top, \mathrm{diag})\Big)

    where :math:`\tau` is the logit scale and CE the mean cross-entropy of
    each row against its diagonal entry. Off-diagonal pairs of one image
    (``image_ids``) are left out of both softmaxes (see the module doc).

    Args:
        img (torch.Tensor): ``[N, D]`` image embeddings (L2-normalised).
        txt (torch.Tensor): ``[N, D]`` text embeddings; row ``i`` matches image ``i``.
        scale (torch.Tensor or float): The logit scale (:class:`LearnableTemperature`).
        image_ids (torch.Tensor, optional): ``[N]`` image id of every pair.
            (default: :obj:`None`)
    """
    _check_pair("info_nce_loss", img, txt, image_ids)
    logits = scale * img @ txt.t()  # [N_img, N_txt]
    if image_ids is not None:
        duplicate = positive_mask(img.size(0), image_ids) & ~positive_mask(img.size(0), device=img.device)
        logits = logits.masked_fill(duplicate, float("-inf"))
    target = torch.arange(img.size(0), device=img.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def vse_hinge_loss(
    img: Tensor,
    txt: Tensor,
    margin: float = 0.2,
    max_violation: bool = True,
    image_ids: OptTensor = None,
    reduction: str = "sum",
) -> Tensor:
    r"""The hinge triplet loss of VSE++ on ``N`` matched pairs with
    similarities :math:`s(i, j) = \mathbf{i}_i^\top\mathbf{t}_j`:

    .. math::
        \mathcal{L} = \sum_{i} \big[\alpha - s(i, i) + s(i, j')\big]_+
            + \sum_{j} \big[\alpha - s(j, j) + s(i', j)\big]_+

    With ``max_violation=True`` (VSE++) :math:`j'` and :math:`i'` are the
    hardest negatives, the one caption and image of highest similarity;
    with ``False`` (VSE0) the terms are summed over every negative instead.
    As in the reference the result is a sum over the batch; ``reduction="mean"``
    divides it by ``N``. Pairs of one image (``image_ids``) are not negatives
    (see the module doc).

    Args:
        img (torch.Tensor): ``[N, D]`` image embeddings.
        txt (torch.Tensor): ``[N, D]`` text embeddings; row ``i`` matches image ``i``.
        margin (float, optional): The margin :math:`\alpha`. (default: :obj:`0.2`)
        max_violation (bool, optional): Only the hardest negatives. (default: :obj:`True`)
        image_ids (torch.Tensor, optional): ``[N]`` image id of every pair.
            (default: :obj:`None`)
        reduction (str, optional): ``"sum"`` or ``"mean"``. (default: ``"sum"``)
    """
    _check_pair("vse_hinge_loss", img, txt, image_ids)
    if reduction not in ("sum", "mean"):
        raise InputError(f"vse_hinge_loss: reduction must be 'sum' or 'mean', got {reduction!r}.")
    scores = img @ txt.t()  # [N_img, N_txt]
    diagonal = scores.diag()
    # Row i: image i against every caption (caption retrieval); column j: caption j against every image.
    cost_txt = (margin + scores - diagonal.view(-1, 1)).clamp(min=0)
    cost_img = (margin + scores - diagonal.view(1, -1)).clamp(min=0)
    positive = positive_mask(img.size(0), image_ids, device=img.device)
    cost_txt = cost_txt.masked_fill(positive, 0.0)
    cost_img = cost_img.masked_fill(positive, 0.0)
    if max_violation:
        cost_txt = cost_txt.max(1).values
        cost_img = cost_img.max(0).values
    loss = cost_txt.sum() + cost_img.sum()
    return loss / img.size(0) if reduction == "mean" else loss


class ITMHead(nn.Module):
    r"""Image-text matching: the fused vector of a (region set, text) pair ->
    one match logit, through a BERT-style pooler (UNITER's ITM output):

    .. math::
        z = \mathbf{w}^\top \tanh(\mathbf{W}\mathbf{f} + \mathbf{b}) + c

    Args:
        hidden (int): Size of the fused vector.

    Shapes:
        - **input:** :math:`(B, \mathrm{hidden})`
        - **output:** :math:`(B)` logits
    """

    def __init__(self, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.pool = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.pool.reset_parameters()
        self.out.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        return self.out(torch.tanh(self.pool(x))).squeeze(-1)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.hidden})"


def itm_loss(
    logits: Tensor, labels: Tensor, weight: Optional[Tensor] = None, balance: bool = False
) -> Tensor:
    r"""Binary cross-entropy of match logits ``[P]`` against labels ``[P]``
    (1 = the text describes the image, 0 = it does not), averaged over pairs;
    the one-logit form of UNITER's two-way ITM classifier.

    With ``balance=True`` the matches and the non-matches each weigh half
    (class-balanced cross-entropy), whatever their counts:

    .. math::
        \mathcal{L} = \tfrac{1}{2}\,\overline{\mathrm{BCE}}_{y=1}
            + \tfrac{1}{2}\,\overline{\mathrm{BCE}}_{y=0}

    A re-ranker sees several negatives per positive (two in-batch hardest,
    2-3 compositional on the synthetic data); unbalanced, the loss is lowest
    near the prior "no match", where a cross-encoder that has not yet learnt
    to ground the caption can sit for hundreds of steps.

    Args:
        logits (torch.Tensor): ``[P]`` match logits (:class:`ITMHead`).
        labels (torch.Tensor): ``[P]`` 0 / 1 (bool, int or float).
        weight (torch.Tensor, optional): ``[P]`` per-pair weights. (default: :obj:`None`)
        balance (bool, optional): Weigh the two classes equally. (default: :obj:`False`)
    """
    if logits.shape != labels.shape or logits.dim() != 1:
        raise InputError(
            f"itm_loss: logits and labels must both be [P], got {list(logits.shape)} and {list(labels.shape)}."
        )
    labels = labels.to(logits.dtype)
    if not balance:
        return F.binary_cross_entropy_with_logits(logits, labels, weight=weight)
    positives = labels.sum()
    negatives = labels.numel() - positives
    # Half the weight to each class present (all of it where only one is).
    classes = (positives > 0).to(logits.dtype) + (negatives > 0).to(logits.dtype)
    balanced = labels / (classes * positives.clamp(min=1)) + (1 - labels) / (classes * negatives.clamp(min=1))
    if weight is not None:
        balanced = balanced * weight
    return (F.binary_cross_entropy_with_logits(logits, labels, reduction="none") * balanced).sum()


def hard_negative_ranking_loss(positive: Tensor, negative: Tensor, owner: Tensor) -> Tensor:
    r"""Each positive against its own negatives: the softmax cross-entropy of
    the positive's logit within its group,

    .. math::
        \mathcal{L} = \frac{1}{|\mathcal{G}|}\sum_{i \in \mathcal{G}}
            \Big(\log\big(e^{p_i} + \textstyle\sum_{k:\,o_k = i} e^{n_k}\big) - p_i\Big)

    over the positives :math:`\mathcal{G}` that own at least one negative.
    Where the negatives of a caption use its own words (compositional hard
    negatives), the gradient is the difference between the caption and its
    variants, which the independent terms of :func:`itm_loss` spread
    over every pair.

    Args:
        positive (torch.Tensor): ``[B]`` logits of the true pairs.
        negative (torch.Tensor): ``[M]`` logits of the negatives.
        owner (torch.Tensor): ``[M]`` index in ``0 .. B - 1`` of each negative's positive.
    """
    if positive.dim() != 1 or negative.dim() != 1 or owner.shape != negative.shape:
        raise InputError(
            "hard_negative_ranking_loss: positive must be [B], negative and owner [M], got "
            f"{list(positive.shape)}, {list(negative.shape)} and {list(owner.shape)}."
        )
    if negative.numel() == 0:
        return positive.sum() * 0.0
    owner = owner.to(positive.device)
    if int(owner.min()) < 0 or int(owner.max()) >= positive.numel():
        raise InputError(
            f"hard_negative_ranking_loss: owner must lie in 0..{positive.numel() - 1}, got "
            f"{int(owner.min())}..{int(owner.max())}."
        )
    num = positive.numel()
    logits = torch.cat([positive, negative])  # [B + M]
    group = torch.cat([torch.arange(num, device=positive.device), owner])  # [B + M]
    # Stable log-sum-exp per group: shift by the group's maximum.
    top = logits.new_full((num,), float("-inf")).scatter_reduce(0, group, logits.detach(), "amax")
    total = logits.new_zeros(num).index_add(0, group, (logits - top[group]).exp())
    has = torch.zeros(num, dtype=torch.bool, device=positive.device)
    has[owner] = True
    return (total.log() + (top - positive))[has].mean()
