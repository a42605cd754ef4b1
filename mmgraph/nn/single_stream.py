"""The single-stream baseline: full self-attention over a graph's regions and tokens together."""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor, nn

from mmgraph.errors import InputError
from mmgraph.nn.cross_attention import CrossModalAttention
from mmgraph.nn.fusion import FeedForward
from mmgraph.nn.scatter import num_graphs as count_graphs

__all__ = ["SingleStreamBlock", "ModalityEmbedding"]


class ModalityEmbedding(nn.Module):
    r"""Adds a learned modality (type) embedding to region and token states,
    as UNITER's and VisualBERT's token-type embeddings do; a single-stream
    encoder applies it once, before its first :class:`SingleStreamBlock`,
    so that attention over the mixed node set can tell the modalities apart.

    Args:
        hidden (int): Size of the node states.

    Shapes:
        - **input:** ``x_region`` :math:`(R, F)`, ``x_token`` :math:`(T, F)`
        - **output:** the same shapes
    """

    def __init__(self, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.embedding = nn.Embedding(2, hidden)  # row 0: region, row 1: token
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.embedding.weight, std=0.02)

    def forward(self, x_region: Tensor, x_token: Tensor) -> Tuple[Tensor, Tensor]:
        return x_region + self.embedding.weight[0], x_token + self.embedding.weight[1]

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.hidden})"


class SingleStreamBlock(nn.Module):
    r"""A pre-norm transformer block over the union of each graph's region
    and token nodes, the single-stream design of `UNITER
    <https://arxiv.org/abs/1909.11740>`_ (Chen et al. 2020): every node
    attends to every node of its own graph, whatever its modality, and to
    nothing else; graph structure (edges) is not used.

    .. math::
        \mathbf{X} &\leftarrow \mathbf{X} + \mathrm{Dropout}\big(\mathrm{MHA}(\mathrm{LN}(\mathbf{X}))\big),
        \qquad \mathbf{X} = [\mathbf{X}_{\mathrm{region}}; \mathbf{X}_{\mathrm{token}}] \text{ per graph}

        \mathbf{X} &\leftarrow \mathbf{X} + \mathrm{Dropout}\big(\mathrm{FFN}(\mathrm{LN}(\mathbf{X}))\big)

    The attention is :class:`~mmgraph.nn.CrossModalAttention` on complete
    per-graph edges (its padded SDPA path with a padding mask). Modality
    embeddings are *not* added here; use :class:`ModalityEmbedding` once
    before the stack.

    Args:
        hidden (int): Size of the node states.
        heads (int): Attention heads (must divide ``hidden``).
        dropout (float, optional): Dropout on attention weights, residual
            branches and inside the FFN. (default: :obj:`0.1`)
        ffn_ratio (int, optional): FFN inner size over ``hidden``. (default: :obj:`4`)

    Shapes:
        - **input:** ``x_region`` :math:`(R, F)`, ``x_token`` :math:`(T, F)`,
          ``batch_region`` :math:`(R)`, ``batch_token`` :math:`(T)` (sorted graph ids)
        - **output:** ``(x_region, x_token)`` of the same shapes
    """

    def __init__(self, hidden: int, heads: int, dropout: float = 0.1, ffn_ratio: int = 4):
        super().__init__()
        if hidden % heads != 0:
            raise InputError(f"SingleStreamBlock: hidden={hidden} is not divisible by heads={heads}.")
        self.hidden = hidden
        self.heads = heads
        self.dropout = dropout
        self.ffn_ratio = ffn_ratio
        self.norm_attn = nn.LayerNorm(hidden)
        self.attn = CrossModalAttention(hidden, heads, dropout=dropout)
        self.norm_ffn = nn.LayerNorm(hidden)
        self.ffn = FeedForward(hidden, ffn_ratio, dropout)
        self.drop = nn.Dropout(dropout)

    def reset_parameters(self) -> None:
        self.norm_attn.reset_parameters()
        self.attn.reset_parameters()
        self.norm_ffn.reset_parameters()
        self.ffn.reset_parameters()

    def forward(
        self, x_region: Tensor, x_token: Tensor, batch_region: Tensor, batch_token: Tensor
    ) -> Tuple[Tensor, Tensor]:
        num_region = x_region.size(0)
        # Regions and tokens of one graph side by side: the dense path needs sorted graph ids.
        batch = torch.cat([batch_region, batch_token])  # [R + T]
        perm = torch.argsort(batch, stable=True)
        x = torch.cat([x_region, x_token]).index_select(0, perm)  # [R + T, F], grouped by graph
        batch = batch.index_select(0, perm)
        h = self.norm_attn(x)
        graphs = count_graphs(batch)
        x = x + self.drop(self.attn(h, h, None, batch_src=batch, batch_dst=batch, num_graphs=graphs))
        x = x + self.drop(self.ffn(self.norm_ffn(x)))
        out = torch.empty_like(x).index_copy_(0, perm, x)  # back to [regions; tokens] order
        return out[:num_region], out[num_region:]

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.hidden}, heads={self.heads})"
