"""Word-region alignment: a training-only loss on attention that points from words to regions."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from mmgraph.errors import InputError

__all__ = ["alignment_loss", "alignment_mass", "mean_alignment_loss"]


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
        edge_index, alpha, target: The attention's edges, their weights and the
            wanted (source, target) pairs, as :func:`alignment_mass` takes them.
        eps (float, optional): Floor of the mass inside the log. (default: ``1e-6``)

    Returns:
        A scalar; ``0`` (with a gradient path) when no source has a target.
    """
    sources, mass = alignment_mass(edge_index, alpha, target)
    if sources.numel() == 0:
        return alpha.sum() * 0.0
    return -torch.log(mass.clamp_min(eps)).mean()


def alignment_mass(edge_index: Tensor, alpha: Tensor, target: Tensor) -> Tuple[Tensor, Tensor]:
    r"""The attention mass that each source puts on the targets it should
    point at: :math:`\sum_{j \in \mathcal{G}(i)} \bar{\alpha}_{ij}` for every
    source :math:`i \in \mathcal{S}` (the quantity inside
    :func:`alignment_loss`'s log). As a metric it is GQA's *grounding* score,
    the share of a word's attention that lands on the objects it names
    (`Hudson & Manning 2019 <https://arxiv.org/abs/1902.09506>`_): 1 for a
    word that points at its phrase's objects alone, about ``k / R`` for one
    that spreads evenly over ``R`` regions, ``k`` of them right.

    Args:
        edge_index (torch.Tensor): The attention's edges ``[2, E]`` (source, target).
        alpha (torch.Tensor): Their weights ``[E]`` or ``[E, H]`` (averaged over
            heads), summing to 1 over each source's edges.
        target (torch.Tensor): The wanted (source, target) pairs ``[2, M]``.
            Pairs that are not among the attention's edges are skipped.

    Returns:
        ``(sources, mass)``: the sources with at least one target among the
        edges, ascending ``[S]``, and the mass each puts on its targets ``[S]``.
    """
    if edge_index.dim() != 2 or edge_index.size(0) != 2 or target.dim() != 2 or target.size(0) != 2:
        raise InputError(
            f"alignment_mass: edge_index and target must be [2, E] and [2, M] (source, target) pairs, got "
            f"{list(edge_index.shape)} and {list(target.shape)}."
        )
    if alpha.size(0) != edge_index.size(1):
        raise InputError(
            f"alignment_mass: alpha has {alpha.size(0)} rows for {edge_index.size(1)} edges; pass the weights "
            "that the attention returned with its edge_index."
        )
    weight = alpha.mean(-1) if alpha.dim() == 2 else alpha  # [E]
    matched = _match(edge_index, target)  # [M] edge id of each target pair, -1 where absent
    keep = matched >= 0
    if not bool(keep.any()):
        return target.new_zeros(0), weight.new_zeros(0)
    src = target[0, keep]
    sources = torch.unique(src)  # ascending
    mass = weight.new_zeros(int(sources[-1]) + 1).index_add_(0, src, weight.index_select(0, matched[keep]))
    return sources, mass.index_select(0, sources)


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
