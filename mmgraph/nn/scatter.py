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
    "num_graphs",
]


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
    if not _use_pure(pure):
        return torch_scatter.scatter_softmax(src, index, dim=0, dim_size=size)
    # The max is a constant shift per group: no gradient needs to flow through it.
    group_max = scatter_max(src.detach(), index, size, pure=True)
    # A group of only -inf logits would give (-inf) - (-inf) = nan; shift it by 0.
    group_max = torch.where(torch.isfinite(group_max), group_max, torch.zeros_like(group_max))
    exp = (src - group_max.index_select(0, index)).exp()
    denom = scatter_sum(exp, index, size, pure=True).index_select(0, index)
    # The tiny floor only matters for groups whose every logit is -inf (all weights 0).
    return exp / denom.clamp(min=torch.finfo(exp.dtype).tiny)


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
