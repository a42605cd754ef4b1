"""Drawings of one sample's graph, and its export to networkx."""

from __future__ import annotations

from typing import Optional, Sequence

import networkx as nx
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from mmgraph.errors import InputError
from mmgraph.typing import (
    DEP_EDGE,
    DEP_LABELS,
    NUM_DEP_LABELS,
    REGION,
    REGION_EDGE_TYPES,
    SPATIAL_EDGE,
    TOKEN,
    TOKEN_TO_REGION,
    EdgeType,
)

# Short names of the ReGAT spatial classes, for legends and edge labels.
SPATIAL_CLASS_NAMES = {
    1: "inside",
    2: "covers",
    3: "overlap",
    **{3 + k: f"dir{k}" for k in range(1, 9)},
    12: "self",
}


def _dep_label(type_id: int) -> str:
    if type_id >= NUM_DEP_LABELS:
        return DEP_LABELS[type_id - NUM_DEP_LABELS] + "^-1"
    return DEP_LABELS[type_id]


def _single(data: HeteroData) -> HeteroData:
    if hasattr(data, "num_graphs") and getattr(data, "num_graphs", 1) > 1:
        raise InputError(
            f"draw_graph / to_networkx take one graph, got a batch of {data.num_graphs}; "
            "pick one with batch.get_example(i)"
        )
    return data


def to_networkx(data: HeteroData) -> nx.MultiDiGraph:
    """Exports one graph to a :class:`networkx.MultiDiGraph`.

    Nodes are ``(node_type, index)`` with attributes ``type``, ``index`` and,
    where known, ``word`` (tokens) and ``box`` (regions, normalised xyxy).
    Edges carry ``relation`` (the edge type's middle name) and ``edge_type``
    (the class id) where the graph has one.
    """
    data = _single(data)
    g = nx.MultiDiGraph()
    words = list(data.tokens) if "tokens" in data else None
    for node_type in data.node_types:
        store = data[node_type]
        boxes = store.get("box")
        for i in range(store.num_nodes):
            attrs = {"type": node_type, "index": i}
            if node_type == TOKEN and words is not None and i < len(words):
                attrs["word"] = words[i]
            if boxes is not None:
                attrs["box"] = tuple(float(v) for v in boxes[i])
            g.add_node((node_type, i), **attrs)
    for edge_type in data.edge_types:
        src_t, rel, dst_t = edge_type
        store = data[edge_type]
        types = store.get("edge_type")
        ei = store.edge_index.tolist()
        type_list = types.tolist() if types is not None else [None] * len(ei[0])
        for s, d, t in zip(ei[0], ei[1], type_list):
            attrs = {"relation": rel}
            if t is not None:
                attrs["edge_type"] = t
            g.add_edge((src_t, s), (dst_t, d), **attrs)
    return g


def draw_graph(
    data: HeteroData,
    image: Optional[object] = None,
    edge_types: Sequence[EdgeType] = (SPATIAL_EDGE, DEP_EDGE),
    max_region_edges: int = 200,
    max_cross_edges: int = 60,
    figsize=(9, 9),
):
    """Draws one sample's graph with matplotlib and returns the figure.

    Top: the regions' boxes over the image (or a blank canvas), with the
    chosen region-region edges as arrows between box centres coloured by
    relation class. Bottom: the tokens in reading order with their dependency
    arcs (head -> dependent) labelled. Cross edges, when chosen, are drawn
    from each token to the box centre of its region.

    Args:
        data: one graph built by :class:`~mmgraph.graph.builder.GraphBuilder`.
        image: a PIL image, an ``[H, W, 3]`` array, or a ``[3, H, W]`` tensor.
        edge_types: which edge types to draw.
        max_region_edges / max_cross_edges: at most this many edges of each
            kind are drawn (the first ones), so that large graphs stay legible.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import ConnectionPatch, FancyArrowPatch, Rectangle

    data = _single(data)
    fig, (ax_img, ax_txt) = plt.subplots(2, 1, figsize=figsize, gridspec_kw={"height_ratios": [3, 1]})
    w, h = (float(v) for v in data.image_size.view(-1)[:2])
    if image is not None:
        if isinstance(image, Tensor):
            image = image.detach().cpu()
            if image.dim() == 3 and image.size(0) in (1, 3):
                image = image.permute(1, 2, 0)
            image = image.numpy()
        ax_img.imshow(image, extent=(0, w, h, 0))
    ax_img.set_xlim(0, w)
    ax_img.set_ylim(h, 0)
    ax_img.set_aspect("equal")
    ax_img.set_title(str(data.get("text", "")))

    cmap = plt.get_cmap("tab20")
    boxes = data[REGION].box * torch.tensor([w, h, w, h])  # [R, 4] pixels
    centers = (boxes[:, :2] + boxes[:, 2:]) / 2
    names = data.get("region_names")
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        ax_img.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.5, ec=cmap(i % 20)))
        label = f"{i}" if not names else f"{i}:{names[i]}"
        ax_img.text(x1, y1, label, fontsize=7, color="white", bbox={"fc": cmap(i % 20), "pad": 1, "lw": 0})

    for edge_type in edge_types:
        if edge_type not in data.edge_types or edge_type not in REGION_EDGE_TYPES:
            continue
        store = data[edge_type]
        types = store.get("edge_type")
        for k, (s, d) in enumerate(store.edge_index.t().tolist()[:max_region_edges]):
            if s == d:
                continue
            cls = int(types[k]) if types is not None else 0
            ax_img.add_patch(
                FancyArrowPatch(
                    tuple(centers[s].tolist()),
                    tuple(centers[d].tolist()),
                    arrowstyle="-|>",
                    mutation_scale=8,
                    lw=0.6,
                    alpha=0.6,
                    color=plt.get_cmap("tab20b")(cls % 20),
                )
            )

    tokens = list(data.get("tokens", [])) or [str(int(t)) for t in data[TOKEN].x.view(-1)]
    n = len(tokens)
    xs = [(i + 0.5) / max(n, 1) for i in range(n)]
    ax_txt.set_xlim(0, 1)
    ax_txt.set_ylim(-0.4, 1.2)
    ax_txt.axis("off")
    for x, tok in zip(xs, tokens):
        ax_txt.text(x, 0, tok, ha="center", va="center", fontsize=9, bbox={"fc": "0.92", "lw": 0, "pad": 2})
    if DEP_EDGE in edge_types and DEP_EDGE in data.edge_types:
        store = data[DEP_EDGE]
        for (s, d), t in zip(store.edge_index.t().tolist(), store.edge_type.tolist()):
            if s >= n or d >= n or s == d:
                continue
            height = 0.15 + 0.9 * abs(s - d) / max(n, 1)
            ax_txt.annotate(
                "",
                xy=(xs[d], 0.1),
                xytext=(xs[s], 0.1),
                arrowprops={
                    "arrowstyle": "-|>",
                    "connectionstyle": f"arc,angleA=90,angleB=90,armA={40 * height},armB={40 * height},rad=5",
                    "lw": 0.7,
                },
            )
            ax_txt.text((xs[s] + xs[d]) / 2, 0.1 + height * 0.55, _dep_label(t), ha="center", fontsize=6)
    if TOKEN_TO_REGION in edge_types and TOKEN_TO_REGION in data.edge_types:
        for s, d in data[TOKEN_TO_REGION].edge_index.t().tolist()[:max_cross_edges]:
            if s >= n:
                continue
            fig.add_artist(
                ConnectionPatch(
                    xyA=(xs[s], 0),
                    coordsA=ax_txt.transData,
                    xyB=tuple(centers[d].tolist()),
                    coordsB=ax_img.transData,
                    lw=0.4,
                    alpha=0.3,
                    color="tab:red",
                )
            )
    fig.tight_layout()
    return fig
