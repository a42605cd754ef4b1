r"""Graphs of (image, text) pairs that the data set did not build: the region
side of one graph joined with the token side of another.

A retrieval data set holds matched pairs. Scoring an image with another
caption (a hard negative from the batch, a compositional negative, a
candidate of cross-encoder re-ranking) needs the graph of that pair: the
image's region nodes and region-region edges, the caption's token nodes and
dependency edges, and complete cross edges both ways. Both sides were built
by a :class:`~mmgraph.graph.GraphBuilder`, so the pair is the graph the
builder would build from that image and that text (with ``cross="complete"``);
nothing is parsed or computed again.

:func:`pair_batch` does it for many pairs at once on collated batches with
tensor gathers (no loop over nodes or edges) and returns a PyG
:class:`~torch_geometric.data.Batch` that unbatches (``to_data_list``) like
one made by ``Batch.from_data_list``; :func:`pair_graphs` and
:func:`pair_graph` are its list and single-graph forms.

Graph-level attributes of a pair: ``image``, ``image_size`` and ``image_id``
from the region side, ``text`` and ``tokens`` from the token side, and
``pair_index`` ``[1, 2]`` = (region-side graph, token-side graph) indices.
"""

from __future__ import annotations

import copy
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import Batch, HeteroData
from torch_geometric.utils import cumsum

from mmgraph.errors import InputError
from mmgraph.graph.builder import GraphBuilder, Sample
from mmgraph.graph.collate import collate_graphs
from mmgraph.graph.regions import Regions
from mmgraph.typing import REGION, REGION_TO_TOKEN, TOKEN, TOKEN_TO_REGION, EdgeType

__all__ = ["pair_batch", "pair_graphs", "pair_graph", "text_graphs", "negative_pairs", "as_batch"]

#: Graph-level attributes taken from the region side and from the token side.
IMAGE_KEYS: Tuple[str, ...] = ("image", "image_size", "image_id")
TEXT_KEYS: Tuple[str, ...] = ("text", "tokens")

Graphs = Union[Batch, HeteroData, Sequence[HeteroData]]
PairsLike = Union[Tensor, Sequence[Tuple[int, int]]]


def as_batch(graphs: Graphs) -> Batch:
    """A :class:`~torch_geometric.data.Batch` of one graph, a list of graphs, or a batch as it is."""
    if isinstance(graphs, Batch):
        return graphs
    if isinstance(graphs, HeteroData):
        return collate_graphs([graphs])
    graphs = list(graphs)
    if not graphs:
        raise InputError("pairs: got an empty list of graphs; give at least one.")
    return collate_graphs(graphs)


def _ptr(store, num_graphs: int) -> Tensor:
    """``[B + 1]`` node offsets of the graphs of a batch's node store."""
    ptr = store.get("ptr")
    if ptr is not None:
        return ptr
    return cumsum(torch.bincount(store.batch, minlength=num_graphs))


def _segments(ptr: Tensor, index: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Concatenates the segments ``ptr[g] .. ptr[g + 1]`` of the graphs ``index`` ``[P]``:
    ``(gather [N'], new_ptr [P + 1], owner [N'])`` where row ``n`` of the result is
    row ``gather[n]`` of the source and belongs to pair ``owner[n]``."""
    start = ptr[index]  # [P]
    counts = ptr[index + 1] - start  # [P]
    new_ptr = cumsum(counts)  # [P + 1]
    owner = torch.arange(index.numel(), device=ptr.device).repeat_interleave(counts)  # [N']
    gather = start[owner] + torch.arange(owner.numel(), device=ptr.device) - new_ptr[owner]
    return gather, new_ptr, owner


def _intra_edge_types(batch: Batch, node_type: str) -> List[EdgeType]:
    return [t for t in batch.edge_types if t[0] == node_type and t[2] == node_type]


def _check_pairs(pairs: PairsLike, num_images: int, num_texts: int, device) -> Tensor:
    pairs = torch.as_tensor(pairs, dtype=torch.long, device=device)
    if pairs.numel() == 0:
        raise InputError("pair_batch: no pairs given; pass [(image_graph, text_graph), ...].")
    if pairs.dim() != 2 or pairs.size(1) != 2:
        raise InputError(
            f"pair_batch: pairs must be [P, 2] (image, text) indices, got shape {list(pairs.shape)}."
        )
    for column, size, what in ((0, num_images, "region-side"), (1, num_texts, "token-side")):
        values = pairs[:, column]
        if int(values.min()) < 0 or int(values.max()) >= size:
            raise InputError(
                f"pair_batch: {what} graph indices must lie in 0..{size - 1}, got "
                f"{int(values.min())}..{int(values.max())}."
            )
    return pairs


def pair_batch(images: Graphs, texts: Graphs, pairs: PairsLike) -> Batch:
    r"""The graphs of the pairs ``(i, j)``: the region side of graph ``i`` of
    ``images`` with the token side of graph ``j`` of ``texts``, as one batch.

    Region nodes (every node attribute), the region-region edge types of
    ``images`` and their attributes come from graph ``i``; token nodes, the
    token-token edge types of ``texts`` and their attributes from graph
    ``j``; the cross edges are complete, token-major as
    :func:`~mmgraph.graph.complete_cross_edges` lays them out, with
    (region, cross, token) their flip.

    Args:
        images (Batch or HeteroData or list): Graphs whose region side is used.
        texts (Batch or HeteroData or list): Graphs whose token side is used.
        pairs (torch.Tensor or list): ``[P, 2]`` (image graph, text graph) indices.

    Returns:
        A :class:`~torch_geometric.data.Batch` of ``P`` graphs (``to_data_list``
        and ``get_example`` work on it).
    """
    images, texts = as_batch(images), as_batch(texts)
    device = images[REGION].box.device if "box" in images[REGION] else None
    pairs = _check_pairs(pairs, images.num_graphs, texts.num_graphs, device)
    num_pairs = pairs.size(0)
    out = Batch(_base_cls=HeteroData)
    slice_dict: dict = {}
    inc_dict: dict = {}
    new_ptrs = {}
    for node_type, source, index in ((REGION, images, pairs[:, 0]), (TOKEN, texts, pairs[:, 1])):
        src_store = source[node_type]
        ptr = _ptr(src_store, source.num_graphs)
        gather, new_ptr, owner = _segments(ptr, index)
        new_ptrs[node_type] = new_ptr
        store = out[node_type]
        slice_dict[node_type], inc_dict[node_type] = {}, {}
        for key, value in src_store.items():
            if key in ("batch", "ptr", "num_nodes") or not isinstance(value, Tensor):
                continue
            store[key] = value.index_select(0, gather)
            slice_dict[node_type][key] = new_ptr
            inc_dict[node_type][key] = torch.zeros(num_pairs, dtype=torch.long)
        store._num_nodes = new_ptr.diff().tolist()
        store.num_nodes = int(new_ptr[-1])
        store.batch = owner
        store.ptr = new_ptr
        for edge_type in _intra_edge_types(source, node_type):
            _gather_edges(out, source, edge_type, index, ptr, new_ptr, slice_dict, inc_dict)
    _complete_cross(out, new_ptrs[REGION], new_ptrs[TOKEN], slice_dict, inc_dict)
    graph_slices = torch.arange(num_pairs + 1)
    for source, index, keys in ((images, pairs[:, 0], IMAGE_KEYS), (texts, pairs[:, 1], TEXT_KEYS)):
        for key in keys:
            value = source.get(key)
            if value is None:
                continue
            if isinstance(value, Tensor):
                if value.size(0) != source.num_graphs:
                    raise InputError(
                        f"pair_batch: graph-level {key!r} has {value.size(0)} rows for {source.num_graphs} "
                        "graphs; it must hold one row per graph."
                    )
                out[key] = value.index_select(0, index.to(value.device))
                inc_dict[key] = torch.zeros(num_pairs, dtype=torch.long)
            else:
                out[key] = [value[i] for i in index.tolist()]
                inc_dict[key] = None
            slice_dict[key] = graph_slices
    out.pair_index = pairs
    slice_dict["pair_index"] = graph_slices
    inc_dict["pair_index"] = torch.zeros(num_pairs, dtype=torch.long)
    out._num_graphs = num_pairs
    out._slice_dict = slice_dict
    out._inc_dict = inc_dict
    return out


def _gather_edges(out, source, edge_type, index, node_ptr, new_node_ptr, slice_dict, inc_dict) -> None:
    """Copies the edges of ``edge_type`` of the graphs ``index`` of ``source`` into ``out``."""
    src_store = source[edge_type]
    edge_index = src_store.edge_index
    node_batch = source[edge_type[0]].batch
    edge_graph = node_batch[edge_index[0]]  # [E]
    # A collated batch keeps each graph's edges together; sort to rely on nothing.
    order = torch.argsort(edge_graph, stable=True)
    edge_ptr = cumsum(torch.bincount(edge_graph, minlength=source.num_graphs))
    gather, new_edge_ptr, owner = _segments(edge_ptr, index)
    rows = order[gather]  # [E']
    shift = new_node_ptr[owner] - node_ptr[index[owner]]  # [E']
    store = out[edge_type]
    store.edge_index = edge_index.index_select(1, rows) + shift.view(1, -1)
    slice_dict[edge_type] = {"edge_index": new_edge_ptr}
    inc_dict[edge_type] = {"edge_index": torch.stack([new_node_ptr[:-1], new_node_ptr[:-1]], 1).unsqueeze(-1)}
    for key, value in src_store.items():
        if key == "edge_index" or not isinstance(value, Tensor):
            continue
        store[key] = value.index_select(0, rows)
        slice_dict[edge_type][key] = new_edge_ptr
        inc_dict[edge_type][key] = torch.zeros(index.numel(), dtype=torch.long)


def _complete_cross(out, region_ptr: Tensor, token_ptr: Tensor, slice_dict, inc_dict) -> None:
    """Complete token -> region edges of every pair, token-major, and their flip."""
    num_regions, num_tokens = region_ptr.diff(), token_ptr.diff()  # [P]
    counts = num_regions * num_tokens  # [P]
    edge_ptr = cumsum(counts)  # [P + 1]
    owner = torch.arange(counts.numel(), device=counts.device).repeat_interleave(counts)  # [E]
    local = torch.arange(owner.numel(), device=counts.device) - edge_ptr[owner]  # [E]
    regions = num_regions[owner]
    token = torch.div(local, regions, rounding_mode="floor") + token_ptr[owner]
    region = local % regions + region_ptr[owner]
    cross = torch.stack([token, region])  # [2, E]
    for edge_type, edge_index, (src_ptr, dst_ptr) in (
        (TOKEN_TO_REGION, cross, (token_ptr, region_ptr)),
        (REGION_TO_TOKEN, cross.flip(0), (region_ptr, token_ptr)),
    ):
        out[edge_type].edge_index = edge_index
        slice_dict[edge_type] = {"edge_index": edge_ptr}
        inc_dict[edge_type] = {"edge_index": torch.stack([src_ptr[:-1], dst_ptr[:-1]], 1).unsqueeze(-1)}


def pair_graphs(images: Graphs, texts: Graphs, pairs: PairsLike) -> List[HeteroData]:
    """:func:`pair_batch` as a list of graphs."""
    return pair_batch(images, texts, pairs).to_data_list()


def pair_graph(region_source: HeteroData, token_source: HeteroData) -> HeteroData:
    """The graph of the region side of ``region_source`` with the token side
    of ``token_source`` (see :func:`pair_batch`)."""
    for name, graph in (("region_source", region_source), ("token_source", token_source)):
        if not isinstance(graph, HeteroData) or isinstance(graph, Batch):
            raise InputError(
                f"pair_graph: {name} must be one HeteroData graph, got {type(graph).__name__}; use "
                "pair_batch for batches."
            )
    return pair_graphs([region_source], [token_source], [(0, 0)])[0]


def text_graphs(
    texts: Sequence[str], builder: GraphBuilder, sample_ids: Optional[Iterable[object]] = None
) -> List[HeteroData]:
    """Graphs whose token side is each text as ``builder`` builds it (one
    parser call for all), ready to be paired with region sides by
    :func:`pair_batch`. Their own region side is a one-region placeholder.

    The builder's vocabulary, parser, ``max_tokens``, ``add_cls`` and
    ``reverse_dep`` decide the token side, exactly as for the data set's
    graphs; its region edges and cross edges are not used here.
    """
    texts = list(texts)
    if not texts:
        return []
    token_builder = copy.copy(builder)  # shares the parser (and its cache) and the vocabulary
    token_builder.region_edges = ()
    token_builder.cross = "complete"
    placeholder = Regions(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), (1.0, 1.0))
    ids = list(sample_ids) if sample_ids is not None else list(range(len(texts)))
    return token_builder.build_many([Sample(placeholder, text, sid) for text, sid in zip(texts, ids)])


def negative_pairs(batch: Graphs, builder: GraphBuilder, key: str = "negatives") -> Optional[Batch]:
    """The graphs of every graph's image with each of its negative captions
    (graph-level ``key``, a list of texts per graph, as
    :class:`~mmgraph.datasets.synthetic_graphs.SyntheticRetrieval` keeps its
    compositional negatives), built with ``builder`` (the data set's:
    ``dataset.builder``) and paired by :func:`pair_batch`. ``pair_index[:, 0]``
    is the graph each pair belongs to. :obj:`None` when there is no negative.
    """
    batch = as_batch(batch)
    negatives = batch.get(key)
    if negatives is None:
        return None
    owner = [g for g, texts in enumerate(negatives) for _ in texts]
    texts = [text for texts in negatives for text in texts]
    if not texts:
        return None
    graphs = text_graphs(texts, builder, sample_ids=(f"{key}/{g}/{n}" for n, g in enumerate(owner)))
    pairs = torch.stack([torch.tensor(owner), torch.arange(len(texts))], dim=1)
    return pair_batch(batch, graphs, pairs)
