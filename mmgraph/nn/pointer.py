"""Pointer attention: each source node's softmax over the target nodes of its graph, sent to them."""

from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from mmgraph.errors import InputError
from mmgraph.nn.cross_attention import (
    SMALL_BLOCK,
    _AttentionProjections,
    _heads_first,
    complete_edge_index,
)
from mmgraph.nn.dense import dense_layout
from mmgraph.nn.scatter import edge_dot, edge_weighted_sum, scatter_softmax
from mmgraph.nn.scatter import num_graphs as count_graphs
from mmgraph.typing import OptTensor

__all__ = ["PointerAttention"]


class PointerAttention(_AttentionProjections):
    r"""Multi-head attention whose softmax runs over the *targets* of each
    source node: every source (e.g. a token) distributes itself over the
    target nodes (e.g. the regions) of its graph, and each target receives
    the values of the sources that point at it:

    .. math::
        \alpha_{ij}^{h} = \operatorname{softmax}_{j \in \mathcal{N}(i)}
            \frac{(\mathbf{W}_Q^{h}\mathbf{x}_i)^\top \mathbf{W}_K^{h}\mathbf{x}_j}{\sqrt{d}},
        \qquad
        \mathbf{x}_j^{\prime} = \mathbf{W}_O \big\Vert_{h=1}^{H}
            \sum_{i : j \in \mathcal{N}(i)} \alpha_{ij}^{h}\,\mathbf{W}_V^{h}\mathbf{x}_i

    for source :math:`i`, its targets :math:`\mathcal{N}(i)` and
    :math:`d` = ``embed_dim // num_heads``. With ``readback=True`` each source
    also reads the targets it picks, with the same weights:

    .. math::
        \mathbf{x}_i^{\prime} = \mathbf{W}_{O'} \big\Vert_{h=1}^{H}
            \sum_{j \in \mathcal{N}(i)} \alpha_{ij}^{h}\,\mathbf{W}_{V'}^{h}\mathbf{x}_j

    so that a word whose weights are supervised to land on the object it
    names (the alignment loss) carries that object's state: "the small cube"
    holds the cube's colour, shape and box, which a comparison ("the same
    colour as the large sphere?") needs.

    :class:`~mmgraph.nn.CrossModalAttention` normalises over the sources of
    each target: a region reads a mixture of the words. Here a word picks
    the regions it names (a distribution per word, as in word-region
    alignment, e.g. SCAN, `Lee et al. 2018 <https://arxiv.org/abs/1803.08024>`_),
    and those regions receive the word: "the small green cone" marks the
    cone's node before the regions pass messages. The weights
    :math:`\alpha_{i\cdot}` are a per-source distribution that an alignment
    loss can supervise (:func:`mmgraph.heads.alignment_loss`).

    Two paths compute it, and agree to float precision: **dense** (padded
    per-graph blocks, laid out once per batch vector by
    :func:`~mmgraph.nn.dense.dense_layout`; complete edges or
    ``edge_index=None``; blocks of up to 64 x 64 nodes without dropout in
    contiguous batched products with a hand-written backward, as in
    :class:`~mmgraph.nn.CrossModalAttention`) and **sparse** (per-edge
    logits, a softmax grouped by source, a weighted scatter into the
    targets; any edges).

    Args:
        embed_dim (int): Size of source and target features and of the output.
        num_heads (int): Number of heads; must divide ``embed_dim``.
        dropout (float, optional): Dropout on the attention weights that carry
            the values (the returned weights are undropped). (default: :obj:`0.0`)
        bias (bool, optional): Biases in the projections. (default: :obj:`True`)
        readback (bool, optional): Also return each source's readback of the
            targets it picks (own value and output projections). (default:
            :obj:`False`)

    Shapes:
        - **input:** ``x_src`` :math:`(|\mathcal{V}_s|, F)`, ``x_dst``
          :math:`(|\mathcal{V}_t|, F)`, ``edge_index`` :math:`(2, |\mathcal{E}|)`
          (source, target) or ``None`` (complete within each graph),
          ``batch_src`` :math:`(|\mathcal{V}_s|)`, ``batch_dst``
          :math:`(|\mathcal{V}_t|)` *(optional, sorted)*
        - **output:** :math:`(|\mathcal{V}_t|, F)`; with
          ``return_attention_weights=True`` also ``(edge_index, alpha)`` of
          sizes :math:`(2, |\mathcal{E}|)` and :math:`(|\mathcal{E}|, H)`,
          ``alpha`` summing to 1 over each source's edges (for
          ``edge_index=None`` the complete edges, grouped by source). With
          ``readback=True`` the first output is the pair ``(x_dst', x_src')``
          of sizes :math:`(|\mathcal{V}_t|, F)` and :math:`(|\mathcal{V}_s|, F)`.
    """

    def __init__(
        self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True, readback: bool = False
    ):
        super().__init__(embed_dim, num_heads, dropout, bias)
        self.readback = readback
        self.back_v = nn.Linear(embed_dim, embed_dim, bias=bias) if readback else None
        self.back_out = nn.Linear(embed_dim, embed_dim, bias=bias) if readback else None
        self._reset_back()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self._reset_back()

    def __repr__(self) -> str:
        readback = ", readback=True" if self.readback else ""
        return f"{self.__class__.__name__}({self.embed_dim}, num_heads={self.num_heads}{readback})"

    def _reset_back(self) -> None:
        if getattr(self, "back_v", None) is None:
            return
        nn.init.xavier_uniform_(self.back_v.weight)
        self.back_out.reset_parameters()
        for lin in (self.back_v, self.back_out):
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)

    def forward(
        self,
        x_src: Tensor,
        x_dst: Tensor,
        edge_index: OptTensor = None,
        batch_src: OptTensor = None,
        batch_dst: OptTensor = None,
        return_attention_weights: bool = False,
        num_graphs: Optional[int] = None,
    ) -> Union[
        Tensor, Tuple[Tensor, Tensor], Tuple[Union[Tensor, Tuple[Tensor, Tensor]], Tuple[Tensor, Tensor]]
    ]:
        r"""Runs the layer.

        Args:
            x_src (torch.Tensor): Source features (queries and values) ``[N_src, embed_dim]``.
            x_dst (torch.Tensor): Target features (keys) ``[N_dst, embed_dim]``.
            edge_index (torch.Tensor, optional): Edges ``[2, E]`` (source,
                target); ``None`` means complete edges within each graph
                (the dense path). (default: :obj:`None`)
            batch_src (torch.Tensor, optional): Graph id of every source node,
                sorted; all ``0`` when ``None``. (default: :obj:`None`)
            batch_dst (torch.Tensor, optional): Graph id of every target node,
                sorted. (default: :obj:`None`)
            return_attention_weights (bool, optional): Also return
                ``(edge_index, alpha)``. (default: :obj:`False`)
            num_graphs (int, optional): Number of graphs; read from the batch
                vectors when ``None``. (default: :obj:`None`)
        """
        if x_src.size(-1) != self.embed_dim or x_dst.size(-1) != self.embed_dim:
            raise InputError(
                f"PointerAttention: expected source and target features of size {self.embed_dim}, got "
                f"{x_src.size(-1)} and {x_dst.size(-1)}; project them to embed_dim first."
            )
        if num_graphs is None:
            num_graphs = count_graphs(batch_src, batch_dst)
        if batch_src is None:
            batch_src = x_src.new_zeros(x_src.size(0), dtype=torch.long)
        if batch_dst is None:
            batch_dst = x_dst.new_zeros(x_dst.size(0), dtype=torch.long)
        q = self.q_proj(x_src)  # [N_src, E]
        k = self.k_proj(x_dst)  # [N_dst, E]
        v = self.v_proj(x_src)  # [N_src, E]
        vb = self.back_v(x_dst) if self.back_v is not None else None  # [N_dst, E], readback values
        if edge_index is None:
            weights = return_attention_weights
            out, alpha, back = self._dense(q, k, v, vb, batch_src, batch_dst, num_graphs, weights)
            if return_attention_weights:
                # complete_edge_index groups by its targets: pass the sources there, then flip.
                edge_index = complete_edge_index(batch_dst, batch_src, num_graphs).flip(0)
        else:
            out, alpha, back = self._sparse(q, k, v, vb, edge_index, x_dst.size(0))
        out = self.out_proj(out)
        if back is not None:
            out = (out, self.back_out(back))  # (targets' update, sources' readback)
        if return_attention_weights:
            return out, (edge_index, alpha)
        return out

    def _sparse(self, q: Tensor, k: Tensor, v: Tensor, vb: OptTensor, edge_index: Tensor, num_dst: int):
        H, D = self.num_heads, self.head_dim
        src, dst = edge_index[0], edge_index[1]
        q, k, v = q.view(-1, H, D), k.view(-1, H, D), v.view(-1, H, D)
        logit = edge_dot(q, k, src, dst) / math.sqrt(D)  # [E, H]
        alpha = scatter_softmax(logit, src, q.size(0))  # normalised over each source's targets
        weight = F.dropout(alpha, p=self.dropout, training=self.training)
        out = edge_weighted_sum(weight, v, src, dst, num_dst)  # [N_dst, H, D]
        back = None
        if vb is not None:
            # The same weights, the other way: each source sums the values of its targets.
            back = edge_weighted_sum(weight, vb.view(-1, H, D), dst, src, q.size(0)).reshape(-1, H * D)
        return out.reshape(-1, H * D), alpha, back

    def _dense(self, q, k, v, vb, batch_src, batch_dst, num_graphs: int, weights: bool):
        H, D = self.num_heads, self.head_dim
        if q.size(0) == 0 or k.size(0) == 0:
            alpha = q.new_zeros(0, H)
            back = None if vb is None else q.new_zeros(q.size(0), H * D)
            return q.new_zeros(k.size(0), H * D), alpha, back
        E = H * D
        # One padding per side: the rows that share a layout are padded together, then split.
        ls, ld = dense_layout(batch_src, num_graphs), dense_layout(batch_dst, num_graphs)
        src_pad = ls.pad(torch.cat([q, v], -1))  # [G, S, 2E]
        dst_pad = ld.pad(k if vb is None else torch.cat([k, vb], -1))  # [G, T, E or 2E]
        G, S, T = num_graphs, ls.size, ld.size
        if not (self.training and self.dropout > 0) and S * T <= SMALL_BLOCK:
            return self._small(src_pad, dst_pad, ls, ld, vb is not None, weights)
        src_mask, dst_mask = ls.mask, ld.mask
        q_pad = src_pad[..., :E].reshape(G, S, H, D).transpose(1, 2)  # [G, H, S, D]
        v_pad = src_pad[..., E:].reshape(G, S, H, D).transpose(1, 2)  # [G, H, S, D]
        k_pad = dst_pad[..., :E].reshape(G, T, H, D).transpose(1, 2)  # [G, H, T, D]
        logit = q_pad @ k_pad.transpose(-1, -2) / math.sqrt(D)  # [G, H, S, T]
        logit = logit.masked_fill(~dst_mask.view(G, 1, 1, T), float("-inf"))
        # A graph without targets: its sources' rows are all -inf; make them 0, not NaN.
        alpha = torch.softmax(logit, dim=-1).nan_to_num(0.0)
        # Padded sources send nothing.
        alpha = alpha * src_mask.view(G, 1, S, 1)
        weight = F.dropout(alpha, p=self.dropout, training=self.training)
        out = ld.unpad((weight.transpose(-1, -2) @ v_pad).transpose(1, 2).reshape(G, T, E))  # [N_dst, E]
        back = None
        if vb is not None:
            vb_pad = dst_pad[..., E:].reshape(G, T, H, D).transpose(1, 2)  # [G, H, T, D]
            back = ls.unpad((weight @ vb_pad).transpose(1, 2).reshape(G, S, E))  # [N_src, E]
        if not weights:
            return out, None, back
        pairs = ls.pair_index(ld)  # (source, target) pairs of each graph, grouped by source
        return out, alpha.permute(0, 2, 3, 1).reshape(G * S * T, H).index_select(0, pairs), back

    def _small(self, src_pad, dst_pad, ls, ld, readback: bool, weights: bool):
        """The dense path for small blocks without dropout, through :class:`_DensePointer`."""
        H, D = self.num_heads, self.head_dim
        E = H * D
        G, S, T = src_pad.size(0), src_pad.size(1), dst_pad.size(1)
        keep = ls.mask.to(src_pad.dtype).view(G, 1, 1, S).expand(G, H, 1, S)
        q, v = _heads_first(src_pad[..., :E], H), _heads_first(src_pad[..., E:], H)  # [G * H, S, D]
        k = _heads_first(dst_pad[..., :E], H)  # [G * H, T, D]
        vb = _heads_first(dst_pad[..., E:], H) if readback else None
        out, back, alpha = _DensePointer.apply(
            q, k, v, vb, ld.padding_bias(H, src_pad.dtype), keep.reshape(G * H, 1, S), D**-0.5
        )  # [G * H, T, D], [G * H, S, D] or None, [G * H, T, S]
        out = ld.unpad(out.view(G, H, T, D).transpose(1, 2).reshape(G, T, E))  # [N_dst, E]
        if back is not None:
            back = ls.unpad(back.view(G, H, S, D).transpose(1, 2).reshape(G, S, E))  # [N_src, E]
        if not weights:
            return out, None, back
        pairs = ls.pair_index(ld)  # (source, target) pairs of each graph, grouped by source
        return (
            out,
            alpha.view(G, H, T, S).permute(0, 3, 2, 1).reshape(G * S * T, H).index_select(0, pairs),
            back,
        )


class _DensePointer(torch.autograd.Function):
    r""":class:`PointerAttention`'s dense path for many small blocks ``B`` (graphs x heads): each
    source's softmax over the targets, ``alpha`` ``[B, T, S]`` (laid out so that the softmax runs
    over dim 1: a softmax over a short last dim is slow on the CPU), the targets' sums of the
    sources' values ``alpha @ v`` and, with ``vb``, the sources' readback ``alpha^T @ vb``. ``bias``
    ``[B, T, 1]`` is ``-inf`` at padded targets, ``keep`` ``[B, 1, S]`` 0 at padded sources. The
    backward pass multiplies contiguous matrices only (``bmm`` of transposed views falls back to a
    per-matrix loop) and takes gradients on all three outputs (``alpha``: the alignment loss).
    Once differentiable."""

    @staticmethod
    def forward(ctx, q, k, v, vb, bias, keep, scale: float):
        ctx.set_materialize_grads(False)  # outputs nobody uses get no gradient work
        logit = torch.bmm(k, q.transpose(1, 2)).mul_(scale).add_(bias)  # [B, T, S]
        # A graph without targets: its sources' columns are all -inf; make them 0, not NaN.
        soft = torch.softmax(logit, dim=1).nan_to_num_(0.0)
        alpha = soft * keep  # padded sources send nothing
        out = torch.bmm(alpha, v)  # [B, T, D]
        alpha_t = alpha.transpose(1, 2).contiguous()  # [B, S, T]
        back = torch.bmm(alpha_t, vb) if vb is not None else None  # [B, S, D]
        ctx.save_for_backward(q, k, v, vb, keep, soft, alpha_t)
        ctx.scale = scale
        return out, back, alpha

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, grad_back, grad_alpha):
        q, k, v, vb, keep, soft, alpha_t = ctx.saved_tensors
        grad_v = grad_vb = None  # None: no gradient from an output nobody used
        grad_a = torch.zeros_like(soft) if grad_alpha is None else grad_alpha.contiguous().clone()
        if grad_out is not None:
            grad_out = grad_out.contiguous()
            grad_v = torch.bmm(alpha_t, grad_out)  # [B, S, D]
            grad_a += torch.bmm(grad_out, v.transpose(1, 2).contiguous())  # [B, T, S]
        if grad_back is not None and vb is not None:
            grad_back = grad_back.contiguous()
            grad_vb = torch.bmm(alpha_t.transpose(1, 2).contiguous(), grad_back)  # [B, T, D]
            grad_a += torch.bmm(vb, grad_back.transpose(1, 2).contiguous())  # [B, T, S]
        grad_soft = grad_a * keep
        grad_logit = soft * (grad_soft - (grad_soft * soft).sum(1, keepdim=True))
        grad_logit = grad_logit.mul_(ctx.scale)  # [B, T, S]
        grad_k = torch.bmm(grad_logit, q)  # [B, T, D]
        grad_q = torch.bmm(grad_logit.transpose(1, 2).contiguous(), k)  # [B, S, D]
        return grad_q, grad_k, grad_v, grad_vb, None, None, None
