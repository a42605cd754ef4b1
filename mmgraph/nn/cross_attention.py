"""Multi-head attention from source nodes to target nodes along cross-modal edges."""

from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from mmgraph.errors import InputError
from mmgraph.nn.dense import dense_layout
from mmgraph.nn.scatter import edge_dot, edge_weighted_sum, scatter_softmax
from mmgraph.nn.scatter import num_graphs as count_graphs
from mmgraph.typing import OptTensor

__all__ = ["CrossModalAttention", "complete_edge_index"]


def complete_edge_index(batch_src: Tensor, batch_dst: Tensor, num_graphs: Optional[int] = None) -> Tensor:
    r"""The complete bipartite edges of every graph: each target node of graph
    :math:`g` receives an edge from each source node of graph :math:`g`.

    Args:
        batch_src (torch.Tensor): Graph id of every source node ``[N_src]``, sorted.
        batch_dst (torch.Tensor): Graph id of every target node ``[N_dst]``.
        num_graphs (int, optional): Number of graphs. (default: :obj:`None`)

    Returns:
        ``edge_index`` ``[2, E]`` (source, target), grouped by target node.
    """
    if num_graphs is None:
        num_graphs = count_graphs(batch_src, batch_dst)
    count_src = torch.bincount(batch_src, minlength=num_graphs)  # [G]
    ptr_src = torch.cumsum(count_src, 0) - count_src  # first source node of each graph
    deg = count_src.index_select(0, batch_dst)  # [N_dst] in-degree of each target
    dst = torch.repeat_interleave(torch.arange(batch_dst.numel(), device=batch_dst.device), deg)  # [E]
    # Position of each edge among its target's edges: 0 .. deg - 1.
    start = torch.cumsum(deg, 0) - deg
    rank = torch.arange(dst.numel(), device=dst.device) - start.index_select(0, dst)
    src = ptr_src.index_select(0, batch_dst.index_select(0, dst)) + rank
    return torch.stack([src, dst])


class _AttentionProjections(nn.Module):
    """The query, key, value and output projections of multi-head attention, initialised as
    :class:`torch.nn.MultiheadAttention` initialises them (Xavier projections, zero biases)."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        kdim: Optional[int] = None,
        vdim: Optional[int] = None,
    ):
        super().__init__()
        if embed_dim % num_heads != 0:
            raise InputError(
                f"{type(self).__name__}: embed_dim={embed_dim} is not divisible by num_heads={num_heads}; "
                "pick a head count that divides it."
            )
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(self.kdim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(self.vdim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.xavier_uniform_(lin.weight)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)
        self.out_proj.reset_parameters()
        if self.out_proj.bias is not None:
            nn.init.zeros_(self.out_proj.bias)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.embed_dim}, num_heads={self.num_heads})"


class CrossModalAttention(_AttentionProjections):
    r"""Multi-head scaled dot-product attention from source nodes (e.g. tokens)
    to target nodes (e.g. regions) along the edges between them, with the
    softmax taken over each target node's incoming edges (`Vaswani et al. 2017
    <https://arxiv.org/abs/1706.03762>`_, as a graph operator):

    .. math::
        \alpha_{ij}^{h} = \operatorname{softmax}_{j \in \mathcal{N}(i)}
            \frac{(\mathbf{W}_Q^{h}\mathbf{x}_i)^\top \mathbf{W}_K^{h}\mathbf{x}_j}{\sqrt{d}},
        \qquad
        \mathbf{x}_i^{\prime} = \mathbf{W}_O \big\Vert_{h=1}^{H}
            \sum_{j \in \mathcal{N}(i)} \alpha_{ij}^{h}\,\mathbf{W}_V^{h}\mathbf{x}_j

    with :math:`d` = ``embed_dim // num_heads``.

    Two paths compute it:

    * **dense** (fast): when every target node of graph :math:`g` has an edge
      from every source node of :math:`g` (complete cross edges; or
      ``edge_index=None``), the nodes are padded into per-graph blocks and
      :func:`torch.nn.functional.scaled_dot_product_attention` runs with a
      key-padding mask (blocks of up to 64 x 64 nodes without dropout: the
      same attention in contiguous batched matrix products with a hand-written
      backward, about twice as fast on the CPU at a few dozen nodes a graph).
      The padding comes from :func:`~mmgraph.nn.dense.dense_layout`, worked
      out once per batch vector and shared by every layer that pads it;
    * **sparse** (general): per-edge logits by
      :func:`~mmgraph.nn.scatter.edge_dot`, normalised with
      :func:`~mmgraph.nn.scatter.scatter_softmax`, and values summed per
      target by :func:`~mmgraph.nn.scatter.edge_weighted_sum`. Both run over
      the edges in chunks and recompute their gathers in backward, so memory
      grows by a few ``[E, heads]`` tensors per edge, not ``[E, heads, d]``.

    They agree to float precision. On complete edges the layer equals
    :class:`torch.nn.MultiheadAttention` (query = targets, key = value =
    sources, per graph) with the same weights; the projections are laid out
    as its ``q/k/v`` slices and ``out_proj`` so that
    :meth:`load_from_multihead` copies them exactly.

    Args:
        embed_dim (int): Size of target features and of the output.
        num_heads (int): Number of heads; must divide ``embed_dim``.
        dropout (float, optional): Dropout on the attention weights.
            (default: :obj:`0.0`)
        bias (bool, optional): Biases in the projections. (default: :obj:`True`)
        kdim (int, optional): Size of source features for keys;
            ``embed_dim`` when ``None``. (default: :obj:`None`)
        vdim (int, optional): Size of source features for values;
            ``embed_dim`` when ``None``. (default: :obj:`None`)

    Shapes:
        - **input:** ``x_src`` :math:`(|\mathcal{V}_s|, F_k)`, ``x_dst``
          :math:`(|\mathcal{V}_t|, F)`, ``edge_index`` :math:`(2, |\mathcal{E}|)`
          (source, target) or ``None``, ``batch_src`` :math:`(|\mathcal{V}_s|)`,
          ``batch_dst`` :math:`(|\mathcal{V}_t|)` *(optional, sorted)*
        - **output:** :math:`(|\mathcal{V}_t|, F)`; with
          ``return_attention_weights=True`` also ``(edge_index, alpha)`` of
          sizes :math:`(2, |\mathcal{E}|)` and :math:`(|\mathcal{E}|, H)`.

    Source nodes usually have one feature matrix for keys and values
    (``kdim == vdim``); where they differ pass ``x_src`` as a pair
    ``(x_key, x_value)``.
    """

    @classmethod
    def load_from_multihead(cls, mha: nn.MultiheadAttention) -> CrossModalAttention:
        """A layer with the weights of ``mha`` (which must not use ``add_bias_kv`` or ``add_zero_attn``)."""
        if mha.bias_k is not None or mha.add_zero_attn:
            raise InputError(
                "CrossModalAttention.load_from_multihead: add_bias_kv / add_zero_attn have no graph "
                "equivalent; build the MultiheadAttention without them."
            )
        has_bias = mha.in_proj_bias is not None
        layer = cls(
            mha.embed_dim, mha.num_heads, dropout=mha.dropout, bias=has_bias, kdim=mha.kdim, vdim=mha.vdim
        )
        E = mha.embed_dim
        if mha._qkv_same_embed_dim:
            weights = mha.in_proj_weight.split(E, dim=0)  # q, k, v rows of the packed [3E, E] matrix
        else:
            weights = (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight)
        with torch.no_grad():
            for lin, weight, part in zip((layer.q_proj, layer.k_proj, layer.v_proj), weights, range(3)):
                lin.weight.copy_(weight)
                if has_bias:
                    lin.bias.copy_(mha.in_proj_bias[part * E : (part + 1) * E])
            layer.out_proj.weight.copy_(mha.out_proj.weight)
            if has_bias:
                layer.out_proj.bias.copy_(mha.out_proj.bias)
        return layer.to(device=mha.out_proj.weight.device, dtype=mha.out_proj.weight.dtype)

    def forward(
        self,
        x_src: Union[Tensor, Tuple[Tensor, Tensor]],
        x_dst: Tensor,
        edge_index: OptTensor,
        batch_src: OptTensor = None,
        batch_dst: OptTensor = None,
        return_attention_weights: bool = False,
        complete: Optional[bool] = None,
        num_graphs: Optional[int] = None,
    ) -> Union[Tensor, Tuple[Tensor, Tuple[Tensor, Tensor]]]:
        r"""Runs the layer.

        Args:
            x_src (torch.Tensor or pair): Source node features (keys and values)
                ``[N_src, kdim]``, or ``(x_key, x_value)`` when ``kdim != vdim``.
            x_dst (torch.Tensor): Target node features (queries) ``[N_dst, embed_dim]``.
            edge_index (torch.Tensor, optional): Cross edges ``[2, E]`` (source,
                target); ``None`` means complete edges within each graph.
            batch_src (torch.Tensor, optional): Graph id of every source node,
                sorted (as in a PyG batch); all ``0`` when ``None``. (default: :obj:`None`)
            batch_dst (torch.Tensor, optional): Graph id of every target node,
                sorted. (default: :obj:`None`)
            return_attention_weights (bool, optional): Also return
                ``(edge_index, alpha)`` with ``alpha`` ``[E, heads]``; runs the
                sparse path. (default: :obj:`False`)
            complete (bool, optional): ``True``: the caller vouches that the
                edges are complete per graph (dense path, no check);
                ``False``: sparse path; ``None``: detect from counts.
                (default: :obj:`None`)
            num_graphs (int, optional): Number of graphs; read from the batch
                vectors when ``None``. (default: :obj:`None`)
        """
        x_key, x_value = (x_src, x_src) if isinstance(x_src, Tensor) else x_src
        if num_graphs is None:
            num_graphs = count_graphs(batch_src, batch_dst)
        if batch_src is None:
            batch_src = x_key.new_zeros(x_key.size(0), dtype=torch.long)
        if batch_dst is None:
            batch_dst = x_dst.new_zeros(x_dst.size(0), dtype=torch.long)
        if edge_index is None:
            if return_attention_weights:
                edge_index = complete_edge_index(batch_src, batch_dst, num_graphs)
            complete = True
        elif complete is None:
            complete = _is_complete(edge_index, batch_src, batch_dst, num_graphs)

        q = self.q_proj(x_dst)  # [N_dst, E]
        k = self.k_proj(x_key)  # [N_src, E]
        v = self.v_proj(x_value)  # [N_src, E]
        if complete and not return_attention_weights:
            out = self._dense(q, k, v, batch_src, batch_dst, num_graphs)
            return self.out_proj(out)
        out, alpha = self._sparse(q, k, v, edge_index)
        out = self.out_proj(out)
        if return_attention_weights:
            return out, (edge_index, alpha)
        return out

    def _sparse(self, q: Tensor, k: Tensor, v: Tensor, edge_index: Tensor) -> Tuple[Tensor, Tensor]:
        # edge_dot / edge_weighted_sum never keep per-edge [E, H, D] gathers for backward:
        # per edge only the [E, H] logits and weights remain.
        H, D = self.num_heads, self.head_dim
        src, dst = edge_index[0], edge_index[1]
        q, k, v = q.view(-1, H, D), k.view(-1, H, D), v.view(-1, H, D)  # [N, H, D]
        logit = edge_dot(q, k, dst, src) / math.sqrt(D)  # [E, H]
        alpha = scatter_softmax(logit, dst, q.size(0))
        weight = F.dropout(alpha, p=self.dropout, training=self.training)
        out = edge_weighted_sum(weight, v, src, dst, q.size(0))  # [N_dst, H, D]
        return out.reshape(-1, H * D), alpha

    def _dense(
        self, q: Tensor, k: Tensor, v: Tensor, batch_src: Tensor, batch_dst: Tensor, num_graphs: int
    ) -> Tensor:
        H, D = self.num_heads, self.head_dim
        if k.size(0) == 0:
            # No source node anywhere: every target has an empty neighbourhood.
            return q.new_zeros(q.shape)
        lq, lk = dense_layout(batch_dst, num_graphs), dense_layout(batch_src, num_graphs)
        q_pad, k_pad, v_pad = lq.pad(q), lk.pad(k), lk.pad(v)  # [G, Tq, E], [G, Tk, E], [G, Tk, E]
        G, Tq, Tk = num_graphs, lq.size, lk.size
        if (self.training and self.dropout > 0) or Tq * Tk > SMALL_BLOCK:
            q_pad = q_pad.view(G, Tq, H, D).transpose(1, 2)  # [G, H, Tq, D]
            k_pad = k_pad.view(G, Tk, H, D).transpose(1, 2)  # [G, H, Tk, D]
            v_pad = v_pad.view(G, Tk, H, D).transpose(1, 2)  # [G, H, Tk, D]
            # A graph without source nodes: let its queries see one zero-padded key, whose
            # value is 0, so the output is 0 (as in the sparse path) and never NaN.
            attn_mask = lk.key_mask(open_empty=True).view(G, 1, 1, Tk)  # True = attend
            out = F.scaled_dot_product_attention(
                q_pad, k_pad, v_pad, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
            )  # [G, H, Tq, D]
        else:
            # Small blocks without dropout: the same attention in contiguous matrix products, about
            # twice as fast as scaled_dot_product_attention's CPU kernel (forward and backward) for a
            # few dozen tokens and regions a graph.
            out = _DenseAttention.apply(
                _heads_first(q_pad, H),
                _heads_first(k_pad, H),
                _heads_first(v_pad, H),
                lk.padding_bias(H, q.dtype, open_empty=True),
                D**-0.5,
            ).view(G, H, Tq, D)
        return lq.unpad(out.transpose(1, 2).reshape(G, Tq, H * D))  # [N_dst, E]


# Largest queries x keys per graph for _DenseAttention, which keeps the [Tq, Tk] weights per head for
# backward; larger blocks go to scaled_dot_product_attention.
SMALL_BLOCK = 64 * 64


def _heads_first(x: Tensor, heads: int) -> Tensor:
    """``[G, T, H * D]`` -> contiguous ``[G * H, T, D]``."""
    G, T, E = x.shape
    return x.view(G, T, heads, E // heads).transpose(1, 2).reshape(G * heads, T, E // heads)


class _DenseAttention(torch.autograd.Function):
    r"""Softmax attention of ``[B, Tq, D]`` queries over ``[B, Tk, D]`` keys and values, with an
    additive key bias ``[B, Tk, 1]`` (``-inf`` masks a key), for many small blocks: the logits are
    laid out ``[B, Tk, Tq]`` so that the softmax runs over dim 1 (a softmax over a short last dim is
    slow on the CPU), and the backward pass multiplies contiguous matrices only (``bmm`` of
    transposed views falls back to a per-matrix loop). Same values as
    :func:`torch.nn.functional.scaled_dot_product_attention` to float precision; once
    differentiable."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, bias: Tensor, scale: float) -> Tensor:
        logit = torch.bmm(k, q.transpose(1, 2)).mul_(scale).add_(bias)  # [B, Tk, Tq]
        weight = torch.softmax(logit, dim=1).transpose(1, 2).contiguous()  # [B, Tq, Tk]
        ctx.save_for_backward(q, k, v, weight)
        ctx.scale = scale
        return torch.bmm(weight, v)  # [B, Tq, D]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        q, k, v, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_v = torch.bmm(weight.transpose(1, 2).contiguous(), grad)  # [B, Tk, D]
        grad_weight = torch.bmm(grad, v.transpose(1, 2).contiguous())  # [B, Tq, Tk]
        grad_logit = weight * (grad_weight - (grad_weight * weight).sum(-1, keepdim=True))
        grad_logit = grad_logit.mul_(ctx.scale)  # [B, Tq, Tk]
        grad_q = torch.bmm(grad_logit, k)  # [B, Tq, D]
        grad_k = torch.bmm(grad_logit.transpose(1, 2).contiguous(), q)  # [B, Tk, D]
        return grad_q, grad_k, grad_v, None, None


def _is_complete(edge_index: Tensor, batch_src: Tensor, batch_dst: Tensor, num_graphs: int) -> bool:
    """Whether the edges are exactly the complete bipartite edges of every graph (and the batches sorted).

    ``O(E + N_dst * max_src)`` vectorised work and a few host synchronisations.
    """
    src, dst = edge_index[0], edge_index[1]
    count_src = torch.bincount(batch_src, minlength=num_graphs)  # [G]
    count_dst = torch.bincount(batch_dst, minlength=num_graphs)  # [G]
    if src.numel() != int((count_src * count_dst).sum()):
        return False
    if src.numel() == 0:
        return True
    sorted_ok = bool((batch_src[1:] >= batch_src[:-1]).all()) and bool(
        (batch_dst[1:] >= batch_dst[:-1]).all()
    )
    graph_src, graph_dst = batch_src.index_select(0, src), batch_dst.index_select(0, dst)
    if not sorted_ok or not bool((graph_src == graph_dst).all()):
        return False
    # E edges that all stay within a graph and are pairwise distinct are all of them.
    ptr_src = torch.cumsum(count_src, 0) - count_src
    local_src = src - ptr_src.index_select(0, graph_src)
    max_src = int(count_src.max())
    seen = torch.zeros(batch_dst.numel() * max_src, dtype=torch.bool, device=src.device)
    seen[dst * max_src + local_src] = True
    return int(seen.sum()) == src.numel()
