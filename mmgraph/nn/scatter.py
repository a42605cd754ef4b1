"""Scatter reductions and the edge softmax, along the first (node or edge) dimension.

Every function reduces the rows of ``src`` into ``dim_size`` groups given by
``index`` (``src[e]`` goes to group ``index[e]``); trailing dimensions (heads,
channels) are carried along. Groups that receive nothing come out as zeros.

Two back ends compute the same numbers:

* `torch-scatter <https://github.com/rusty1s/pytorch_scatter>`_ when it can be
  imported (the ``scatter`` extra; fused CUDA/CPU kernels);
* plain PyTorch (:meth:`torch.Tensor.index_add_` and
  :meth:`torch.Tensor.scatter_reduce_`), always available.

Set the module flag :data:`FORCE_PURE_TORCH` to ``True``, or pass
``pure=True`` to a call, to use plain PyTorch even where torch-scatter is
installed (the tests compare both).

Attention over edges needs two more operators, the sampled dot product
(SDDMM) :func:`edge_dot` and the weighted gather-scatter sum (SpMM)
:func:`edge_weighted_sum`. Written as ``index_select`` + multiply + sum, autograd
keeps every gathered ``[E, heads, d]`` tensor for the backward pass, kilobytes
per edge; these two run over the edges in chunks of :data:`EDGE_CHUNK_BYTES`
and their backward passes are the same two operators again, so no ``[E, heads,
d]`` tensor is ever kept (per edge only ``[E, heads]`` values remain).
:func:`scatter_softmax` likewise keeps only its output for the backward pass.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

try:
    import torch_scatter

    HAS_TORCH_SCATTER = True
except ImportError:  # the optional ``scatter`` extra is not installed
    torch_scatter = None
    HAS_TORCH_SCATTER = False
except OSError:  # a torch-scatter binary built against another torch
    torch_scatter = None
    HAS_TORCH_SCATTER = False

#: Use plain PyTorch even where torch-scatter is importable.
FORCE_PURE_TORCH = False

__all__ = [
    "HAS_TORCH_SCATTER",
    "FORCE_PURE_TORCH",
    "scatter_sum",
    "scatter_mean",
    "scatter_max",
    "scatter_softmax",
    "edge_dot",
    "edge_weighted_sum",
    "EDGE_CHUNK_BYTES",
    "num_graphs",
]

#: Bytes of one gathered ``[chunk, heads, d]`` block in :func:`edge_dot` and
#: :func:`edge_weighted_sum`; the temporaries of one call are a few such blocks.
EDGE_CHUNK_BYTES = 2**20


def _use_pure(pure: Optional[bool]) -> bool:
    if pure is not None:
        return pure
    # torch-scatter's kernels have no fake-tensor rules, so torch.compile cannot trace them.
    return FORCE_PURE_TORCH or not HAS_TORCH_SCATTER or torch.compiler.is_compiling()


def _dim_size(index: Tensor, dim_size: Optional[int]) -> int:
    if dim_size is not None:
        return dim_size
    return int(index.max()) + 1 if index.numel() > 0 else 0


def _broadcast(index: Tensor, src: Tensor) -> Tensor:
    # index [E] -> [E, *] so that it addresses every trailing entry of src.
    shape = (-1,) + (1,) * (src.dim() - 1)
    return index.view(shape).expand_as(src)


def scatter_sum(
    src: Tensor, index: Tensor, dim_size: Optional[int] = None, pure: Optional[bool] = None
) -> Tensor:
    r"""Sums the rows of ``src`` per group: :math:`\mathbf{o}_i = \sum_{e : \mathrm{index}_e = i} \mathbf{s}_e`.

    Args:
        src (torch.Tensor): The values, ``[E, *]``.
        index (torch.Tensor): The group of each row, ``[E]`` (int64).
        dim_size (int, optional): The number of groups; ``index.max() + 1``
            when not given (a host-device synchronisation). (default: :obj:`None`)
        pure (bool, optional): ``True`` forces plain PyTorch, ``False``
            torch-scatter; ``None`` follows :data:`FORCE_PURE_TORCH` and
            whether torch-scatter is importable. (default: :obj:`None`)

    Shapes:
        - **input:** ``src`` :math:`(E, *)`, ``index`` :math:`(E)`
        - **output:** :math:`(N, *)` with :math:`N` = ``dim_size``
    """
    size = _dim_size(index, dim_size)
    if not _use_pure(pure):
        return torch_scatter.scatter_add(src, index, dim=0, dim_size=size)
    out = src.new_zeros((size,) + tuple(src.shape[1:]))
    return out.index_add_(0, index, src)


def scatter_mean(
    src: Tensor, index: Tensor, dim_size: Optional[int] = None, pure: Optional[bool] = None
) -> Tensor:
    r"""Averages the rows of ``src`` per group (empty groups give zeros).

    Args and shapes as in :func:`scatter_sum`.
    """
    size = _dim_size(index, dim_size)
    if not _use_pure(pure):
        return torch_scatter.scatter_mean(src, index, dim=0, dim_size=size)
    total = scatter_sum(src, index, size, pure=True)
    count = torch.zeros(size, dtype=src.dtype, device=src.device)
    count.index_add_(0, index, torch.ones_like(index, dtype=src.dtype))
    # clamp: empty groups divide 0 by 1, not by 0.
    return total / count.clamp(min=1).view((-1,) + (1,) * (src.dim() - 1))


def scatter_max(
    src: Tensor, index: Tensor, dim_size: Optional[int] = None, pure: Optional[bool] = None
) -> Tensor:
    r"""The per-group maximum of the rows of ``src`` (empty groups give zeros).

    Returns the values only (torch-scatter also returns the arg-max; use that
    directly where it is needed). Args and shapes as in :func:`scatter_sum`.
    """
    size = _dim_size(index, dim_size)
    if not _use_pure(pure):
        return torch_scatter.scatter_max(src, index, dim=0, dim_size=size)[0]
    out = src.new_zeros((size,) + tuple(src.shape[1:]))
    # include_self=False: the zeros only show where a group is empty.
    return out.scatter_reduce_(0, _broadcast(index, src), src, reduce="amax", include_self=False)


def scatter_softmax(
    src: Tensor, index: Tensor, num_nodes: Optional[int] = None, pure: Optional[bool] = None
) -> Tensor:
    r"""The softmax of ``src`` within each group, e.g. over the incoming edges of each target node.

    .. math::
        \alpha_e = \frac{\exp(s_e - m_{i})}{\sum_{e' : \mathrm{index}_{e'} = i} \exp(s_{e'} - m_{i})},
        \qquad i = \mathrm{index}_e,\; m_i = \max_{e' : \mathrm{index}_{e'} = i} s_{e'}

    Subtracting the per-group maximum :math:`m_i` keeps :math:`\exp` from
    overflowing; it leaves the result unchanged. Each trailing entry (head) is
    normalised on its own, so ``out`` sums to 1 over the rows of every
    non-empty group.

    Args:
        src (torch.Tensor): The logits, ``[E, *]`` (e.g. ``[E, heads]``).
        index (torch.Tensor): The group of each row (the target node), ``[E]``.
        num_nodes (int, optional): The number of groups. (default: :obj:`None`)
        pure (bool, optional): As in :func:`scatter_sum`. (default: :obj:`None`)

    Shapes:
        - **input:** ``src`` :math:`(E, *)`, ``index`` :math:`(E)`
        - **output:** :math:`(E, *)`
    """
    size = _dim_size(index, num_nodes)
    if torch.compiler.is_compiling():
        return _softmax_reference(src, index, size, pure=True)
    return _ScatterSoftmax.apply(src, index, size, _use_pure(pure))


def _softmax_reference(src: Tensor, index: Tensor, size: int, pure: bool) -> Tensor:
    # The max is a constant shift per group: no gradient needs to flow through it.
    group_max = scatter_max(src.detach(), index, size, pure=pure)
    # A group of only -inf logits would give (-inf) - (-inf) = nan; shift it by 0.
    group_max = torch.where(torch.isfinite(group_max), group_max, torch.zeros_like(group_max))
    exp = (src - group_max.index_select(0, index)).exp()
    denom = scatter_sum(exp, index, size, pure=pure).index_select(0, index)
    # The tiny floor only matters for groups whose every logit is -inf (all weights 0).
    return exp / denom.clamp(min=torch.finfo(exp.dtype).tiny)


class _ScatterSoftmax(torch.autograd.Function):
    r""":func:`_softmax_reference` keeping only its output for backward, not three ``[E, *]`` tensors.

    The backward pass, :math:`\partial s_e = \alpha_e (g_e - \sum_{e' \in i} \alpha_{e'} g_{e'})`,
    is made of differentiable operations, so double backward works too.
    """

    @staticmethod
    def forward(ctx, src: Tensor, index: Tensor, size: int, pure: bool) -> Tensor:
        alpha = _softmax_reference(src, index, size, pure)
        ctx.save_for_backward(alpha, index)
        ctx.size, ctx.pure = size, pure
        return alpha

    @staticmethod
    def backward(ctx, grad: Tensor):
        alpha, index = ctx.saved_tensors
        weighted = alpha * grad  # [E, *]
        total = scatter_sum(weighted, index, ctx.size, pure=ctx.pure).index_select(0, index)  # [E, *]
        return weighted - alpha * total, None, None, None


def _chunk_rows(row: Tensor) -> int:
    """Edges per chunk so that one gathered ``[chunk, *row.shape[1:]]`` block has about EDGE_CHUNK_BYTES."""
    return max(1, EDGE_CHUNK_BYTES // max(1, row[:1].numel() * row.element_size()))


def edge_dot(a: Tensor, b: Tensor, index_a: Tensor, index_b: Tensor) -> Tensor:
    r"""The per-head dot product of a row of ``a`` and a row of ``b`` for every edge
    (SDDMM, the attention logits of dot-product attention on a graph):

    .. math::
        \mathrm{out}_{e,h} = \sum_{c} a_{\mathrm{index\_a}_e, h, c}\; b_{\mathrm{index\_b}_e, h, c}

    Runs over the edges in chunks and keeps only ``a``, ``b`` and the indices
    for backward (the gradients are :func:`edge_weighted_sum` of the incoming
    gradient), so memory per edge is that of the ``[E, heads]`` output.
    Deterministic on the CPU; under ``torch.compile`` it is plain gathers.

    Args:
        a (torch.Tensor): Node features ``[N_a, heads, d]`` (e.g. queries).
        b (torch.Tensor): Node features ``[N_b, heads, d]`` (e.g. keys).
        index_a (torch.Tensor): Row of ``a`` for every edge ``[E]`` (int64).
        index_b (torch.Tensor): Row of ``b`` for every edge ``[E]`` (int64).

    Shapes:
        - **input:** ``a`` :math:`(N_a, H, d)`, ``b`` :math:`(N_b, H, d)`,
          ``index_a``, ``index_b`` :math:`(E)`
        - **output:** :math:`(E, H)`
    """
    if torch.compiler.is_compiling():
        return (a.index_select(0, index_a) * b.index_select(0, index_b)).sum(-1)
    return _EdgeDot.apply(a, b, index_a, index_b)


def edge_weighted_sum(weight: Tensor, x: Tensor, index_x: Tensor, index_out: Tensor, dim_size: int) -> Tensor:
    r"""Sums the rows of ``x``, weighted per edge and head, into their target rows
    (SpMM, the aggregation of attention on a graph):

    .. math::
        \mathrm{out}_{i,h,:} = \sum_{e : \mathrm{index\_out}_e = i} w_{e,h}\;
            \mathbf{x}_{\mathrm{index\_x}_e, h, :}

    Runs over the edges in chunks and keeps only ``weight``, ``x`` and the
    indices for backward (the gradients are :func:`edge_dot` and
    :func:`edge_weighted_sum` again). Targets without edges get zeros.

    Args:
        weight (torch.Tensor): Edge weights ``[E, heads]``.
        x (torch.Tensor): Rows to gather ``[N_x, heads, d]`` (e.g. values).
        index_x (torch.Tensor): Row of ``x`` for every edge ``[E]`` (int64).
        index_out (torch.Tensor): Target row of every edge ``[E]`` (int64).
        dim_size (int): Number of target rows.

    Shapes:
        - **input:** ``weight`` :math:`(E, H)`, ``x`` :math:`(N_x, H, d)`,
          ``index_x``, ``index_out`` :math:`(E)`
        - **output:** :math:`(N, H, d)` with :math:`N` = ``dim_size``
    """
    if torch.compiler.is_compiling():
        msg = weight.unsqueeze(-1) * x.index_select(0, index_x)  # [E, H, d]
        return scatter_sum(msg, index_out, dim_size, pure=True)
    return _EdgeWeightedSum.apply(weight, x, index_x, index_out, dim_size)


def _edge_dot(a: Tensor, b: Tensor, index_a: Tensor, index_b: Tensor) -> Tensor:
    out = a.new_empty((index_a.numel(),) + tuple(a.shape[1:-1]))  # [E, H]
    step = _chunk_rows(a)
    for start in range(0, index_a.numel(), step):
        rows_a = a.index_select(0, index_a[start : start + step])  # [chunk, H, d]
        rows_b = b.index_select(0, index_b[start : start + step])  # [chunk, H, d]
        torch.sum(rows_a * rows_b, dim=-1, out=out[start : start + step])
    return out


def _edge_weighted_sum(weight: Tensor, x: Tensor, index_x: Tensor, index_out: Tensor, size: int) -> Tensor:
    out = x.new_zeros((size,) + tuple(x.shape[1:]))  # [N, H, d]
    step = _chunk_rows(x)
    for start in range(0, index_x.numel(), step):
        rows = x.index_select(0, index_x[start : start + step])  # [chunk, H, d]
        rows.mul_(weight[start : start + step].unsqueeze(-1))
        out.index_add_(0, index_out[start : start + step], rows)
    return out


class _EdgeDot(torch.autograd.Function):
    # The backward passes call the autograd Functions (not the raw loops) so that
    # double backward works: with create_graph they are recorded like any op.

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, index_a: Tensor, index_b: Tensor) -> Tensor:
        ctx.save_for_backward(a, b, index_a, index_b)
        return _edge_dot(a, b, index_a, index_b)

    @staticmethod
    def backward(ctx, grad: Tensor):
        a, b, index_a, index_b = ctx.saved_tensors
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_a = _EdgeWeightedSum.apply(grad, b, index_b, index_a, a.size(0))
        if ctx.needs_input_grad[1]:
            grad_b = _EdgeWeightedSum.apply(grad, a, index_a, index_b, b.size(0))
        return grad_a, grad_b, None, None


class _EdgeWeightedSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight: Tensor, x: Tensor, index_x: Tensor, index_out: Tensor, size: int) -> Tensor:
        ctx.save_for_backward(weight, x, index_x, index_out)
        return _edge_weighted_sum(weight, x, index_x, index_out, size)

    @staticmethod
    def backward(ctx, grad: Tensor):
        weight, x, index_x, index_out = ctx.saved_tensors
        grad_weight = grad_x = None
        if ctx.needs_input_grad[0]:
            grad_weight = _EdgeDot.apply(grad, x, index_out, index_x)
        if ctx.needs_input_grad[1]:
            grad_x = _EdgeWeightedSum.apply(weight, grad, index_out, index_x, x.size(0))
        return grad_weight, grad_x, None, None, None


def num_graphs(*batch: Optional[Tensor]) -> int:
    """The number of graphs that batch vectors describe: one more than the largest graph id.

    ``None`` and empty vectors are skipped; with nothing to read the answer
    is 1 (a single graph). One host synchronisation per vector.
    """
    top = -1
    for vector in batch:
        if vector is not None and vector.numel() > 0:
            top = max(top, int(vector.max()))
    return max(top + 1, 1)
