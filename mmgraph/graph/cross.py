"""Cross-modal edges between token nodes and region nodes.

Three ways to join the two modalities, chosen by ``GraphBuilder(cross=...)``:

- ``complete``: every token to every region (the default; what cross-attention
  in UNITER-style models sees).
- ``topk``: each token to the ``k`` regions it scores highest with, from a
  score matrix ``[T, R]`` (feature similarity, or the lexical match of tokens
  against region names and attributes).
- ``grounded``: each token to the regions it is known to name, from character
  spans (``{"start", "end", "object"}``) such as the synthetic data sets keep.

Every function returns the token -> region ``edge_index``; the region -> token
edges are its flip (:func:`flip`), so both directions always agree.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from mmgraph.errors import InputError, sample_prefix

CROSS_MODES = ("complete", "topk", "grounded")


def complete_cross_edges(num_tokens: int, num_regions: int, device=None) -> Tensor:
    """All ``num_tokens * num_regions`` token -> region edges, token-major.

    Shapes:
        - **output:** ``[2, T * R]`` (row 0 token index, row 1 region index)
    """
    tok = torch.arange(num_tokens, device=device).repeat_interleave(num_regions)
    reg = torch.arange(num_regions, device=device).repeat(num_tokens)
    return torch.stack([tok, reg])


def topk_cross_edges(scores: Tensor, k: int) -> Tensor:
    """For each token, edges to the ``k`` regions with the highest score.

    Ties go to the lower region index (a stable sort), so the result is
    deterministic. ``k`` larger than the number of regions keeps them all.

    Shapes:
        - **scores:** ``[T, R]``
        - **output:** ``[2, T * min(k, R)]``
    """
    if scores.dim() != 2:
        raise InputError(f"topk cross edges need a [T, R] score matrix, got shape {tuple(scores.shape)}")
    if k < 1:
        raise InputError(f"topk cross edges need k >= 1, got {k}")
    num_tokens, num_regions = scores.shape
    kk = min(k, num_regions)
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :kk]  # [T, kk]
    tok = torch.arange(num_tokens, device=scores.device).repeat_interleave(kk)
    return torch.stack([tok, order.reshape(-1)])


def grounded_cross_edges(
    token_spans: Sequence[tuple],
    grounding: Sequence[dict],
    num_regions: int,
    sample_id: Optional[object] = None,
) -> Tensor:
    """Edges from each token to the regions whose grounding span it overlaps.

    Args:
        token_spans: ``(start, end)`` character offsets of each token in the text.
        grounding: ``{"start": int, "end": int, "object": int}`` items: the
            characters ``text[start:end]`` name region ``object``.
        num_regions: number of region nodes, to check the object indices.
    """
    items = []
    for g_i, g in enumerate(grounding):
        try:
            items.append((int(g["start"]), int(g["end"]), int(g["object"])))
        except (KeyError, TypeError, ValueError):
            raise InputError(
                f"{sample_prefix(sample_id)}grounding item {g_i} must be a dict with integer "
                f"'start', 'end' and 'object', got {g!r}"
            ) from None
        if not 0 <= items[-1][2] < num_regions:
            raise InputError(
                f"{sample_prefix(sample_id)}grounding item {g_i} names region {items[-1][2]}, but the sample "
                f"has {num_regions} regions; fix the grounding or the region list"
            )
    if not items or not token_spans:
        return torch.empty(2, 0, dtype=torch.long)
    spans = torch.tensor(token_spans, dtype=torch.long).reshape(-1, 2)  # [T, 2]
    g = torch.tensor(items, dtype=torch.long)  # [G, 3]
    overlap = (spans[:, :1] < g[:, 1]) & (g[:, 0] < spans[:, 1:])  # [T, G]
    tok, item = overlap.nonzero(as_tuple=True)
    pairs = torch.stack([tok, g[item, 2]])
    # Two grounding items may name the same region from one token: keep one edge.
    return torch.unique(pairs, dim=1)


def lexical_scores(tokens: Sequence[str], region_words: Sequence[Sequence[str]]) -> Tensor:
    """Score ``[T, R]``: how many of a region's words (name, attributes) equal the token.

    A simple, parameter-free scorer for ``topk`` edges on scene-graph regions.
    """
    ids: dict = {}
    tok_ids = torch.tensor([ids.setdefault(t.lower(), len(ids)) for t in tokens], dtype=torch.long)
    rows = [r for r, ws in enumerate(region_words) for _ in ws]
    cols = [ids.setdefault(w.lower(), len(ids)) for ws in region_words for w in ws]
    has_word = torch.zeros(len(region_words), len(ids))  # [R, V]
    has_word[torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long)] = 1.0
    return has_word[:, tok_ids].t().contiguous()  # [T, R]


def cosine_scores(token_features: Tensor, region_features: Tensor) -> Tensor:
    """Cosine similarity ``[T, R]`` between token and region feature vectors of one space."""
    if token_features.size(-1) != region_features.size(-1):
        raise InputError(
            f"cosine cross scores need token and region features of one size, got "
            f"{token_features.size(-1)} and {region_features.size(-1)}; project them to one space first"
        )
    a = torch.nn.functional.normalize(token_features.float(), dim=-1)
    b = torch.nn.functional.normalize(region_features.float(), dim=-1)
    return a @ b.t()


def flip(edge_index: Tensor) -> Tensor:
    """The reverse edges: ``[src, dst]`` -> ``[dst, src]``."""
    return edge_index.flip(0)
