"""Word-region alignment: a training-only loss on attention that points from words to regions."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from mmgraph.errors import InputError

__all__ = ["alignment_loss", "mean_alignment_loss"]


def alignment_loss(edge_index: Tensor, alpha: Tensor, target: Tensor, eps: float = 1e-6) -> Tensor:
    r"""The negative log of the attention mass that each source node puts on
    the target nodes it should point at, averaged over the sources that have
    such targets:

    .. math::
        \mathcal{L} = -\frac{1}{|\mathcal{S}|} \sum_{i \in \mathcal{S}}
            \log \sum_{j \in \mathcal{G}(i)} \bar{\alpha}_{ij},
        \qquad \bar{\alpha}_{ij} = \frac{1}{H} \sum_h \alpha^h_{ij}

    where :math:`\mathcal{G}(i)` are the targets that the pairs in ``target``
    give source :math:`i` (e.g. the regions a word's phrase names, from the
    data's grounding) and :math:`\mathcal{S}` the sources with at least one
    of them among the attention's edges. A phrase that names several objects
    ("the red cubes") is satisfied by any split of the mass among them. This
    is the supervised word-region alignment of grounding-supervised VQA
    (e.g. the attention supervision of `Qiao et al. 2018
    <https://arxiv.org/abs/1709.05770>`_ and GQA's grounding annotations),
    applied to :class:`~mmgraph.nn.PointerAttention`'s per-word distribution
    over the regions.

    Args:
        edge_index (torch.Tensor): The attention's edges ``[2, E]`` (source, target).
        alpha (torch.Tensor): Their weights ``[E]`` or ``[E, H]`` (averaged over
            heads), summing to 1 over each source's edges.
        target (torch.Tensor): The wanted (source, target) pairs ``[2, M]``.
            Pairs that are not among the attention's edges are skipped.
        eps (float, optional): Floor of the mass inside the log. (default: ``1e-6``)

    Returns:
        A scalar; ``0`` (with a gradient path) when no source has a target.
    """
    if edge_index.dim() != 2 or edge_index.size(0) != 2 or target.dim() != 2 or target.size(0) != 2:
        raise InputError(
            f"alignment_loss: edge_index and target must be [2, E] and [2, M] (source, target) pairs, got "
            f"{list(edge_index.shape)} and {list(target.shape)}."
        )
    if alpha.size(0) != edge_index.size(1):
        raise InputError(
            f"alignment_loss: alpha has {alpha.size(0)} rows for {edge_index.size(1)} edges; pass the weights "
            "that the attention returned with its edge_index."
        )
    weight = alpha.mean(-1) if alpha.dim() == 2 else alpha  # [E]
    matched = _match(edge_index, target)  # [M] edge id of each target pair, -1 where absent
    keep = matched >= 0
    if not bool(keep.any()):
        return weight.sum() * 0.0
    src = target[0, keep]
    num_src = int(src.max()) + 1
    mass = weight.new_zeros(num_src).index_add_(0, src, weight.index_select(0, matched[keep]))
    has = torch.zeros(num_src, dtype=torch.bool, device=src.device)
    has[src] = True
    return -torch.log(mass[has].clamp_min(eps)).mean()


def mean_alignment_loss(pointers: Optional[Sequence[Tuple[Tensor, Tensor]]], target: Tensor) -> Tensor:
    """:func:`alignment_loss` averaged over several attentions' ``(edge_index, alpha)`` (e.g. one per
    encoder block, as :class:`~mmgraph.models.EncoderOutput` holds them in ``pointer``); ``0`` for none."""
    terms = [alignment_loss(edge_index, alpha, target) for edge_index, alpha in pointers or []]
    if not terms:
        return torch.zeros((), device=target.device)
    return torch.stack(terms).mean()


def _match(edge_index: Tensor, pairs: Tensor) -> Tensor:
    """The column of ``edge_index`` equal to each column of ``pairs`` ``[M]``; ``-1`` where there is none."""
    if edge_index.size(1) == 0 or pairs.size(1) == 0:
        return torch.full((pairs.size(1),), -1, dtype=torch.long, device=pairs.device)
    size = int(torch.cat([edge_index[1], pairs[1]]).max()) + 1
    keys = edge_index[0] * size + edge_index[1]
    wanted = pairs[0] * size + pairs[1]
    order = torch.argsort(keys)
    sorted_keys = keys[order]
    pos = torch.searchsorted(sorted_keys, wanted).clamp_max(keys.numel() - 1)
    found = sorted_keys[pos] == wanted
    return torch.where(found, order[pos], torch.full_like(pos, -1))
