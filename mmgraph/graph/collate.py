"""Fast batching of many small graphs of one schema: :func:`collate_graphs` and :class:`GraphLoader`.

PyG's :meth:`Batch.from_data_list <torch_geometric.data.Batch.from_data_list>`
is general: for every attribute of every graph it asks the graph how to
concatenate and increment it, and adds each graph's increment in a tensor
operation of its own. Our graphs are small (a synthetic question has ~5
regions and ~10 tokens), so that per-graph Python work, not the copying, is
what a batch costs. :func:`collate_graphs` does the work once per attribute:
one concatenation, one increment vector added in a single operation. On one
thread it batches 64 scene-graph questions 2.7-3.4 times as fast as PyG
(``python benchmarks/collation.py``, ``benchmarks/results/collation.md``).

Its output equals ``Batch.from_data_list``'s field for field (values,
``batch`` / ``ptr``, and the slice and increment dicts that
:meth:`~torch_geometric.data.Batch.get_example` reads), as the tests check.
Graphs it does not cover go to PyG's own collation unchanged: another class
(custom ``__inc__`` / ``__cat_dim__``), sparse or nested tensors, attributes
that hold lists of tensors or dicts (the retrieval captions' negatives), or
graphs that differ in their attributes.

:func:`collate_stored` builds the same batch straight from the collated
storage of a PyG :class:`~torch_geometric.data.InMemoryDataset` (its
``_data`` and ``slices``), without making one graph per index first. PyG's
``dataset[i]`` separates a graph out of that storage in about 0.4 ms, so a
first epoch paid ~27 ms a batch of 64 before collation; a large data set
(128,000 questions) never left its first epoch in a 180 s budget.
:class:`GraphLoader` uses it for data sets with a ``get_batch`` method
(:class:`~mmgraph.datasets.GraphDataset`).
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader as TorchDataLoader
from torch.utils.data import Dataset as TorchDataset
from torch_geometric.data import Batch, HeteroData
from torch_geometric.loader.dataloader import Collater

_pyg_collate = Collater(None)  # PyG DataLoader's collation: graphs, tensors, numbers, dicts, ...

__all__ = ["collate_graphs", "collate_stored", "GraphLoader", "to_device"]


def to_device(data: Any, device: Any) -> Any:
    """``data.to(device)``, or ``data`` itself where every tensor attribute of its stores is
    already on ``device``.

    PyG's :meth:`~torch_geometric.data.HeteroData.to` rebuilds every store, walking every
    attribute (lists and dicts too), even when nothing moves: 4.7 ms for a CPU batch of 64
    synthetic questions bound for the CPU (``benchmarks/collation.py``), about 5% of a small
    model's CPU training step. Checking the stores' own tensors first costs 0.02 ms. Tensors
    nested in lists or dicts are not checked: move a batch whose only off-device tensors sit
    there (none of the package's graphs has such) with ``.to``.
    """
    device = torch.device(device)
    stores = getattr(data, "stores", None)
    if stores is None:  # a plain tensor or another object with .to
        return data.to(device)
    for store in stores:
        for value in store.values():
            if isinstance(value, Tensor) and value.device != device:
                return data.to(device)
    return data


def _cumsum(sizes: Tensor) -> Tensor:
    """``[0, s0, s0 + s1, ...]`` along dim 0 (PyG's ``cumsum``)."""
    out = sizes.new_zeros((sizes.size(0) + 1,) + tuple(sizes.shape[1:]))
    torch.cumsum(sizes, dim=0, out=out[1:])
    return out


def _plain(value: Any) -> bool:
    return (
        isinstance(value, Tensor) and value.layout == torch.strided and not getattr(value, "is_nested", False)
    )


def _layout(data: HeteroData) -> List[Any]:
    """Store keys and their attribute names, in order (read off the stores' dicts: the public
    views cost more than the whole concatenation for small graphs)."""
    return [(store._key, tuple(store._mapping)) for store in data.stores]


def _fast_path_ok(data_list: Sequence[Any]) -> bool:
    first = data_list[0]
    if type(first) is not HeteroData:  # subclasses may define their own __inc__ / __cat_dim__
        return False
    layout = _layout(first)
    for data in data_list:
        if type(data) is not HeteroData or _layout(data) != layout:
            return False
    for store in first.stores:
        for key, value in store.items():
            if key == "ptr" or "batch" in key:
                return False  # PyG increments batch vectors by their max; rare in our graphs
            if isinstance(value, Tensor) and not _plain(value):
                return False
            if isinstance(value, (dict, tuple)) or (
                isinstance(value, list) and value and isinstance(value[0], Tensor)
            ):
                return False
    return True


def _increment_edges(edge_index: Tensor, key: Any, node_counts: Dict[Any, Tensor], sizes: Tensor):
    """Adds each graph's node offsets (source, target) to its edges; returns them and PyG's increments."""
    src, _, dst = key
    incs = _cumsum(torch.stack([node_counts[src], node_counts[dst]], dim=1)[:-1]).unsqueeze(-1)
    if sizes.numel() > 1:
        per_edge = incs.squeeze(-1).repeat_interleave(sizes, dim=0).t()  # [2, E]
        edge_index = edge_index + per_edge.to(edge_index.dtype)
    return edge_index, incs


def collate_graphs(data_list: Sequence[Any]) -> Batch:
    """``Batch.from_data_list(data_list)``, faster for many small graphs of one schema.

    Args:
        data_list (sequence): :class:`~torch_geometric.data.HeteroData` graphs
            (anything else goes to PyG's own collation, as its ``DataLoader`` does).

    Returns:
        torch_geometric.data.Batch: The same batch ``Batch.from_data_list``
        returns (values, ``batch`` / ``ptr`` vectors, slice and increment
        dicts).
    """
    data_list = list(data_list)
    if not data_list:
        raise ValueError("collate_graphs: data_list is empty; give at least one graph.")
    if not _fast_path_ok(data_list):
        return _pyg_collate(data_list)
    first = data_list[0]
    out = Batch(_base_cls=HeteroData)
    out.stores_as(first)
    num_graphs = len(data_list)
    stores_by_key: Dict[Any, List[Any]] = {store._key: [] for store in first.stores}
    for data in data_list:
        for store in data.stores:
            stores_by_key[store._key].append(store)

    slice_dict: Dict[Any, Any] = {}
    inc_dict: Dict[Any, Any] = {}
    # Node counts first: edge indices are incremented by them.
    node_counts: Dict[Any, Tensor] = {}
    for key, stores in stores_by_key.items():
        if isinstance(key, str):  # a node type (edge types are tuples, the global store is None)
            node_counts[key] = torch.tensor([store.num_nodes or 0 for store in stores])

    for out_store in out.stores:
        key = out_store._key
        stores = stores_by_key[key]
        slices_of: Dict[str, Any] = {}
        incs_of: Dict[str, Any] = {}
        for attr in stores[0].keys():
            values = [store[attr] for store in stores]
            if attr == "num_nodes":
                out_store._num_nodes = values
                out_store.num_nodes = sum(values)
                continue
            elem = values[0]
            if isinstance(elem, Tensor):
                is_index = isinstance(key, tuple) and "index" in attr
                cat_dim = -1 if is_index else 0
                if elem.dim() == 0:
                    values = [value.unsqueeze(0) for value in values]
                sizes = torch.tensor([value.size(cat_dim) for value in values])
                slices = _cumsum(sizes)
                value = torch.cat(values, dim=cat_dim)
                if is_index:
                    value, incs = _increment_edges(value, key, node_counts, sizes)
                else:
                    incs = torch.zeros(num_graphs, dtype=torch.long)
            elif isinstance(elem, (int, float)):
                value = torch.tensor(values)
                slices = torch.arange(num_graphs + 1)
                incs = torch.zeros(num_graphs, dtype=torch.long)
            else:  # strings, lists of strings, anything else: a list with one entry per graph
                value, slices, incs = values, torch.arange(num_graphs + 1), None
            out_store[attr] = value
            slices_of[attr] = slices
            incs_of[attr] = incs
        if key is None:  # the global store's attributes sit at the top of the dicts
            slice_dict.update(slices_of)
            inc_dict.update(incs_of)
        else:
            slice_dict[key] = slices_of
            inc_dict[key] = incs_of
        if isinstance(key, str) and stores[0].can_infer_num_nodes:
            counts = node_counts[key]
            out_store.batch = torch.repeat_interleave(torch.arange(num_graphs), counts)
            out_store.ptr = _cumsum(counts)

    out._num_graphs = num_graphs
    out._slice_dict = slice_dict
    out._inc_dict = inc_dict
    return out


def _stored_layout_ok(data: Any, slices: Dict[Any, Any]) -> bool:
    """Whether :func:`collate_stored` covers this storage (else the caller separates graph by graph)."""
    if type(data) is not HeteroData:
        return False
    for store in data.stores:
        key = store._key
        attrs = slices if key is None else slices.get(key)
        if not isinstance(attrs, dict):
            return False
        if isinstance(key, str) and not isinstance(getattr(store, "_num_nodes", None), list):
            return False  # node counts inferred from tensors: leave it to PyG
        for attr, value in store._mapping.items():
            if attr == "num_nodes":
                continue
            if attr not in attrs or attr == "ptr" or "batch" in attr:
                return False
            if isinstance(value, Tensor):
                if not _plain(value) or (value.dim() == 0):
                    return False
            elif isinstance(value, list):
                if value and isinstance(value[0], (Tensor, dict, tuple)):
                    return False
                if value and isinstance(value[0], list) and value[0] and isinstance(value[0][0], Tensor):
                    return False
            else:
                return False
    return True


def _gather_rows(starts: Tensor, sizes: Tensor) -> Tensor:
    """Row ids ``starts[g] .. starts[g] + sizes[g] - 1`` of every graph ``g``, concatenated."""
    total = int(sizes.sum())
    offsets = _cumsum(sizes)[:-1]
    return torch.arange(total) + (starts - offsets).repeat_interleave(sizes, output_size=total)


def collate_stored(data: HeteroData, slices: Dict[Any, Any], indices: Sequence[int]) -> Any:
    """The batch of graphs ``indices`` of a PyG in-memory storage, built at once.

    ``collate_stored(ds._data, ds.slices, idx)`` equals
    ``collate_graphs([ds[i] for i in idx])`` field for field for an
    :class:`~torch_geometric.data.InMemoryDataset` ``ds`` of
    :class:`~torch_geometric.data.HeteroData` graphs without a transform,
    but gathers each attribute's rows for all the graphs in one
    ``index_select`` instead of separating graph by graph.

    Args:
        data (HeteroData): The collated storage (``dataset._data``).
        slices (dict): Its slices (``dataset.slices``).
        indices (sequence of int): Stored graph ids (after any ``index_select``).

    Returns:
        The :class:`~torch_geometric.data.Batch`, or :obj:`None` when the
        storage holds what this does not cover (other classes, sparse
        tensors, lists of tensors, batch vectors, node counts not stored):
        separate those graph by graph.
    """
    if not _stored_layout_ok(data, slices):
        return None
    index = torch.as_tensor(indices, dtype=torch.long).view(-1)
    num_graphs = index.numel()
    if num_graphs == 0:
        raise ValueError("collate_stored: indices is empty; give at least one graph.")
    out = Batch(_base_cls=HeteroData)
    out.stores_as(data)
    node_counts: Dict[Any, Tensor] = {}
    for store in data.stores:
        if isinstance(store._key, str):
            node_counts[store._key] = torch.tensor([store._num_nodes[i] for i in index.tolist()])
    positions = index.tolist()
    slice_dict: Dict[Any, Any] = {}
    inc_dict: Dict[Any, Any] = {}
    for store, out_store in zip(data.stores, out.stores):
        key = store._key
        store_slices = slices if key is None else slices[key]
        slices_of: Dict[str, Any] = {}
        incs_of: Dict[str, Any] = {}
        # The attributes in the order PyG's separate() sets them: the slices' order.
        for attr in store_slices:
            if attr not in store._mapping or (key is None and isinstance(store_slices[attr], dict)):
                continue
            value = store._mapping[attr]
            if isinstance(value, Tensor):
                bounds = store_slices[attr]
                starts = bounds.index_select(0, index)
                sizes = bounds.index_select(0, index + 1) - starts
                is_index = isinstance(key, tuple) and "index" in attr
                cat_dim = -1 if is_index else 0
                rows = _gather_rows(starts, sizes)
                gathered = value.index_select(cat_dim % value.dim(), rows)
                if is_index:
                    gathered, incs = _increment_edges(gathered, key, node_counts, sizes)
                else:
                    incs = torch.zeros(num_graphs, dtype=torch.long)
                out_store[attr] = gathered
                slices_of[attr] = _cumsum(sizes)
                incs_of[attr] = incs
            else:  # one entry per graph
                out_store[attr] = [value[i] for i in positions]
                slices_of[attr] = torch.arange(num_graphs + 1)
                incs_of[attr] = None
        if isinstance(key, str):
            counts = node_counts[key]
            out_store._num_nodes = counts.tolist()
            out_store.num_nodes = int(counts.sum())
            out_store.batch = torch.repeat_interleave(torch.arange(num_graphs), counts)
            out_store.ptr = _cumsum(counts)
        if key is None:
            slice_dict.update(slices_of)
            inc_dict.update(incs_of)
        else:
            slice_dict[key] = slices_of
            inc_dict[key] = incs_of
    out._num_graphs = num_graphs
    out._slice_dict = slice_dict
    out._inc_dict = inc_dict
    return out


class _Prebatched:
    """A batch that the data set built itself; the loader's collation passes it through."""

    __slots__ = ("batch",)

    def __init__(self, batch: Batch):
        self.batch = batch


class _BatchedView(TorchDataset):
    """What :class:`GraphLoader` hands torch for a data set with ``get_batch``: torch's fetcher
    asks ``__getitems__`` for a whole batch of indices at once."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> Any:
        return self.dataset[idx]

    def __getitems__(self, indices: Sequence[int]) -> Any:
        return _Prebatched(self.dataset.get_batch(indices))

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)


def _collate(data: Any) -> Batch:
    return data.batch if isinstance(data, _Prebatched) else collate_graphs(data)


class GraphLoader(TorchDataLoader):
    r"""A :class:`torch.utils.data.DataLoader` that batches graphs with
    :func:`collate_graphs`: PyG's :class:`~torch_geometric.loader.DataLoader`
    with the faster collation (same batches, same arguments).

    Args:
        dataset (Dataset or sequence): The graphs.
        batch_size (int, optional): Graphs per batch. (default: :obj:`1`)
        shuffle (bool, optional): Reshuffle every epoch. (default: :obj:`False`)
        **kwargs: Other :class:`torch.utils.data.DataLoader` arguments
            (``sampler``, ``num_workers``, ``generator``, ...), except ``collate_fn``.

    A data set with a ``get_batch(indices)`` method (every
    :class:`~mmgraph.datasets.GraphDataset`) is asked for whole batches,
    which it builds from its storage at once (:func:`collate_stored`);
    ``loader.graphs`` is the data set either way.
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False, **kwargs: Any):
        if "collate_fn" in kwargs:
            raise TypeError(
                "GraphLoader: collate_fn is fixed (collate_graphs); use a DataLoader for your own."
            )
        self.graphs = dataset
        source = _BatchedView(dataset) if callable(getattr(dataset, "get_batch", None)) else dataset
        super().__init__(source, batch_size=batch_size, shuffle=shuffle, collate_fn=_collate, **kwargs)
