"""Padded layouts of PyG batches, computed once per batch vector and shared by the layers.

The cross-modal and pointer attention of small graphs run on padded ``[G, T, ...]`` blocks
(one row of ``T`` slots per graph). :func:`torch_geometric.utils.to_dense_batch` works the
layout out again on every call (node counts, offsets, the largest graph: about 0.45 ms for
64 questions on one CPU core), and the blocks of one forward pass pad the same two batch
vectors (regions, tokens) a dozen times or more. :func:`dense_layout` works it out once per
batch vector and keeps it for as long as that tensor lives (and is not modified in place);
padding is then one gather (:meth:`DenseLayout.pad`, about 25 us) and unpadding one
``index_select`` (:meth:`DenseLayout.unpad`), both with the same values as
``to_dense_batch`` and boolean-mask indexing.
"""

from __future__ import annotations

import weakref
from typing import Any, Dict, Tuple

import torch
from torch import Tensor

from mmgraph.errors import InputError

__all__ = ["DenseLayout", "dense_layout"]


class DenseLayout:
    """Where each node of a sorted batch vector sits in a ``[G, T]`` padding.

    Attributes:
        index (torch.Tensor): Slot of every node in the flattened padding ``[N]``.
        gather (torch.Tensor): Node of every slot, ``N`` at padding ``[G * T]``.
        mask (torch.Tensor): ``True`` at nodes ``[G, T]`` (as ``to_dense_batch`` returns it).
        num_graphs (int): ``G``.
        size (int): ``T``, the node count of the largest graph.
        empty (bool): Whether some graph has no node.
    """

    __slots__ = ("index", "gather", "mask", "num_graphs", "size", "empty", "_memo")

    def __init__(self, batch: Tensor, num_graphs: int):
        if batch.dim() != 1:
            raise InputError(f"dense_layout: the batch vector must be 1-D, got shape {list(batch.shape)}.")
        n = batch.numel()
        counts = torch.bincount(batch, minlength=num_graphs) if n else batch.new_zeros(num_graphs)
        if counts.numel() != num_graphs:
            raise InputError(
                f"dense_layout: the batch vector names graph {counts.numel() - 1} but num_graphs is "
                f"{num_graphs}; pass the batch's num_graphs."
            )
        size = int(counts.max()) if n else 0
        node = torch.arange(n, device=batch.device)
        ptr = torch.cumsum(counts, 0) - counts  # first node of each graph
        self.index = batch * size + (node - ptr.index_select(0, batch))  # [N]
        self.gather = torch.full((num_graphs * size,), n, dtype=torch.long, device=batch.device)
        self.gather.index_copy_(0, self.index, node)
        self.mask = (self.gather < n).view(num_graphs, size)
        self.num_graphs = num_graphs
        self.size = size
        self.empty = bool((counts == 0).any()) if num_graphs else False
        self._memo: Dict[Any, Any] = {}  # per-layout constants: biases, masks, pair indices

    @property
    def num_nodes(self) -> int:
        return self.index.numel()

    def pad(self, x: Tensor) -> Tensor:
        """``[N, ...]`` node rows -> ``[G, T, ...]``, zeros at padding (differentiable)."""
        if x.size(0) != self.num_nodes:
            raise InputError(
                f"DenseLayout.pad: {x.size(0)} rows for a batch vector of {self.num_nodes} nodes; pad the "
                "rows of the node type the batch vector belongs to."
            )
        rows = torch.cat([x, x.new_zeros((1,) + x.shape[1:])])
        return rows.index_select(0, self.gather).view((self.num_graphs, self.size) + x.shape[1:])

    def unpad(self, x: Tensor) -> Tensor:
        """``[G, T, ...]`` -> the ``[N, ...]`` rows of the nodes, in the batch's order (differentiable)."""
        return x.reshape((self.num_graphs * self.size,) + x.shape[2:]).index_select(0, self.index)

    def key_mask(self, open_empty: bool = False) -> Tensor:
        """The slots that attention may read as keys, ``[G, T]``: :attr:`mask`, and with
        ``open_empty`` also the first slot of a graph without nodes (a zero key whose value is
        zero), so that its queries get 0 rather than NaN."""
        if not (open_empty and self.empty and self.size):
            return self.mask
        mask = self._memo.get("open_empty")
        if mask is None:
            mask = self.mask.clone()
            mask[:, 0] |= ~mask.any(dim=1)
            self._memo["open_empty"] = mask
        return mask

    def padding_bias(self, heads: int, dtype: torch.dtype, open_empty: bool = False) -> Tensor:
        """Additive attention bias over the slots as keys, ``[G * heads, T, 1]``: 0 at the slots
        of :meth:`key_mask`, ``-inf`` elsewhere."""
        key = ("bias", heads, dtype, open_empty)
        bias = self._memo.get(key)
        if bias is None:
            mask = self.key_mask(open_empty)
            G, T = mask.shape
            bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, float("-inf"))
            bias = bias.view(G, 1, T, 1).expand(G, heads, T, 1).reshape(G * heads, T, 1)
            self._memo[key] = bias
        return bias

    def pair_index(self, other: DenseLayout) -> Tensor:
        """Flat positions in a ``[G, T_self, T_other]`` block of every (node, node of ``other``) pair
        of the same graph, grouped by this layout's node: the order of
        ``complete_edge_index(other_batch, self_batch).flip(0)``."""
        if other.num_graphs != self.num_graphs:
            raise InputError(
                f"DenseLayout.pair_index: layouts of {self.num_graphs} and {other.num_graphs} graphs."
            )
        key = ("pairs", id(other))
        hit = self._memo.get(key)
        if hit is None:
            pairs = self.mask.unsqueeze(2) & other.mask.unsqueeze(1)  # [G, S, T]
            hit = (pairs.view(-1).nonzero().view(-1), other)  # keep other alive: its id stays its own
            self._memo[key] = hit
        return hit[0]


# id(batch vector) -> (weak reference to it, its version, num_graphs, layout)
_CACHE: Dict[int, Tuple[weakref.ref, int, int, DenseLayout]] = {}


def dense_layout(batch: Tensor, num_graphs: int) -> DenseLayout:
    """The padded layout of a sorted batch vector (graph id of every node) with ``num_graphs``
    graphs, from a cache that holds it while ``batch`` lives unchanged; see the module docstring."""
    if torch.compiler.is_compiling() or batch.is_inference():
        return DenseLayout(batch, num_graphs)  # no version counter to trust (or nothing to trace)
    key = id(batch)
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is batch and hit[1] == batch._version and hit[2] == num_graphs:
        return hit[3]
    layout = DenseLayout(batch, num_graphs)
    ref = weakref.ref(batch, lambda _, key=key: _CACHE.pop(key, None))
    _CACHE[key] = (ref, batch._version, num_graphs, layout)
    return layout
