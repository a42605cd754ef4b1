r"""Region-region edges: the spatial relation graph of ReGAT, k-nearest and
complete graphs, each for one image and for a whole batch in one go.

The spatial classes follow `"Relation-Aware Graph Attention Network for Visual
Question Answering" <https://arxiv.org/abs/1903.12314>`_ (Li et al., ICCV
2019), Sec. 3.2: for an ordered pair of regions :math:`(i, j)`, :math:`i \neq j`,

====  ==========================================================================
1     box :math:`j` strictly inside box :math:`i` (all four sides strictly inside)
2     box :math:`j` strictly covers box :math:`i`
3     :math:`\mathrm{IoU}(i, j) \geq 0.5`
4-11  :math:`3 + \lceil \theta / 45^\circ \rceil`, the direction of :math:`i`
      seen from :math:`j`, when the centres are less than half the image
      diagonal apart (ReGAT's cut-off; ``max_distance`` sets it); no edge otherwise
12    self-loop (:data:`~mmgraph.typing.SPATIAL_SELF`), only when asked for
====  ==========================================================================

The first rule that applies wins. The edge from source :math:`j` to target
:math:`i` carries :math:`\mathrm{label}(i, j)` (PyG convention:
``edge_index[0]`` is the source, ``edge_index[1]`` the target).
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from mmgraph.errors import InputError
from mmgraph.graph.boxes import box_centers
from mmgraph.typing import (
    SPATIAL_COVER,
    SPATIAL_INSIDE,
    SPATIAL_OVERLAP,
    SPATIAL_SELF,
    ImageSize,
    OptTensor,
)

#: First direction class (sector :math:`(0^\circ, 45^\circ]`); classes 4..11.
SPATIAL_DIRECTION_FIRST = SPATIAL_OVERLAP + 1
NUM_DIRECTIONS = 8

# Graphs per chunk of the batched spatial path: keeps the [chunk, R, R]
# temporaries in cache-sized pieces instead of one huge allocation.
_CHUNK_PAIRS = 1 << 18

BoxesLike = Union[Tensor, Sequence[Tensor]]
SizesLike = Union[Tensor, Sequence[ImageSize]]


class EdgeBatch(NamedTuple):
    r"""Edges of a batch of graphs, with node indices offset as in a PyG
    :class:`~torch_geometric.data.Batch` (graph ``b``'s nodes start at
    ``node_ptr[b]``). The edges of graph ``b`` are the contiguous slice
    ``edge_ptr[b]:edge_ptr[b + 1]``.

    Shapes:
        - **edge_index:** :math:`(2, E)`; **edge_type:** :math:`(E)` or :obj:`None`
        - **edge_ptr:** :math:`(B + 1)`; **node_ptr:** :math:`(B + 1)`
    """

    edge_index: Tensor
    edge_type: OptTensor
    edge_ptr: Tensor
    node_ptr: Tensor

    def edge_batch(self) -> Tensor:
        """The graph id of every edge, ``[E]``."""
        counts = self.edge_ptr.diff()
        return torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)

    def split(self) -> List[Tuple[Tensor, OptTensor]]:
        """Per graph ``(edge_index, edge_type)`` with local node indices."""
        out = []
        bounds = self.edge_ptr.tolist()
        for b, node_start in enumerate(self.node_ptr[:-1].tolist()):
            lo, hi = bounds[b], bounds[b + 1]
            edge_type = None if self.edge_type is None else self.edge_type[lo:hi]
            out.append((self.edge_index[:, lo:hi] - node_start, edge_type))
        return out


def pad_boxes(boxes_list: Sequence[Tensor]) -> Tuple[Tensor, Tensor]:
    r"""Stacks per-image boxes ``[R_b, 4]`` into a zero-padded ``[B, R_max, 4]``
    tensor and a ``[B, R_max]`` validity mask."""
    if len(boxes_list) == 0:
        raise InputError("need at least one image of boxes, got an empty list")
    padded = torch.nn.utils.rnn.pad_sequence(list(boxes_list), batch_first=True)  # [B, R_max, 4]
    counts = torch.tensor([b.size(0) for b in boxes_list], device=padded.device)
    mask = torch.arange(padded.size(1), device=padded.device) < counts[:, None]  # [B, R_max]
    return padded, mask


def _batch_inputs(boxes: BoxesLike, mask: OptTensor) -> Tuple[Tensor, Tensor]:
    if not isinstance(boxes, Tensor):
        if mask is not None:
            raise InputError("pass a mask only with padded boxes [B, R_max, 4], not with a list of boxes")
        return pad_boxes(boxes)
    if boxes.dim() != 3 or boxes.size(-1) != 4:
        raise InputError(f"batched boxes must have shape [B, R_max, 4], got {list(boxes.shape)}")
    if mask is None:
        mask = boxes.new_ones(boxes.shape[:2], dtype=torch.bool)
    elif mask.shape != boxes.shape[:2]:
        raise InputError(
            f"mask must have shape {list(boxes.shape[:2])} (boxes [B, R_max]), got {list(mask.shape)}"
        )
    return boxes, mask.bool()


def _node_ptr(mask: Tensor) -> Tensor:
    return torch.cat([mask.new_zeros(1, dtype=torch.long), mask.sum(1).cumsum(0)])


def _edges_from_dense(label: Tensor, mask: Tensor, with_type: bool) -> EdgeBatch:
    """Edges where the dense ``[B, R, R]`` ``label[b, j, i]`` (source ``j``,
    target ``i``) is non-zero, ordered by graph, then source, then target.

    The output is allocated once and filled chunk by chunk, so that every
    temporary stays small (large temporaries cost more in page faults than
    in arithmetic here).
    """
    num_graphs, r = mask.shape
    node_ptr = _node_ptr(mask)
    first = node_ptr[:-1].repeat_interleave(r)  # [B*R] global id of node 0 of the graph of padded node p
    node_id = first + torch.arange(r, device=mask.device).repeat(num_graphs)  # [B*R] global id of p
    counts = torch.count_nonzero(label.reshape(num_graphs, -1), dim=1)  # [B]
    edge_ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    bounds = edge_ptr.tolist()
    edge_index = torch.empty(2, bounds[-1], dtype=torch.long, device=mask.device)
    edge_type = torch.empty(bounds[-1], dtype=torch.long, device=mask.device) if with_type else None
    chunk = _chunk_size(r)
    for s in range(0, num_graphs, chunk):
        lo, hi = bounds[s], bounds[min(s + chunk, num_graphs)]
        flat = label[s : s + chunk].reshape(-1)
        pair = flat.nonzero().squeeze(1)  # (p_local * R + i), [E_chunk]
        p = pair // r  # padded source node, chunk-local
        target = pair - p * r
        p += s * r
        torch.index_select(node_id, 0, p, out=edge_index[0, lo:hi])
        torch.add(first.index_select(0, p), target, out=edge_index[1, lo:hi])
        if edge_type is not None:
            edge_type[lo:hi] = flat.index_select(0, pair)
    return EdgeBatch(edge_index, edge_type, edge_ptr, node_ptr)


def _chunk_size(num_regions: int) -> int:
    return max(1, _CHUNK_PAIRS // max(1, num_regions * num_regions))


def _direction_sector(dx: Tensor, dy: Tensor) -> Tensor:
    r"""Sector :math:`k \in \{0..7\}` (``uint8``) with :math:`\theta \in (45k, 45(k+1)]`
    degrees, :math:`\theta = \mathrm{atan2}(dy, dx) \in [0, 360)` and
    :math:`\theta = 0` counted as 360 (so it falls into the last sector).
    Undefined at ``(0, 0)``.

    Only sign and magnitude comparisons are used. They amount to rotating
    ``(dx, dy)`` by 180 degrees (negation) into the upper half plane, then by
    -90 degrees (``(x, y) -> (y, -x)``) into the first quadrant, and comparing
    ``y > x`` there; both rotations are exact in floating point, so the sector
    of ``(-dx, -dy)`` is exactly that of ``(dx, dy)`` plus 4, modulo 8, on
    sector boundaries too.
    """
    right = dx > 0
    lower = (dy < 0) | ((dy == 0) & right)  # theta in (180, 360]
    left = torch.where(lower, right, dx < 0)  # after the half turn: theta in (90, 180]
    ax, ay = dx.abs(), dy.abs()
    steep = torch.where(left, ax > ay, ay > ax)  # after the quarter turn: theta in (45, 90]
    return (lower.view(torch.uint8) << 2) | (left.view(torch.uint8) << 1) | steep.view(torch.uint8)


def check_max_distance(max_distance: Optional[float], name: str = "max_distance") -> None:
    """Raises :class:`~mmgraph.errors.InputError` unless ``max_distance`` is positive or :obj:`None`."""
    if max_distance is not None and not max_distance > 0:
        raise InputError(
            f"{name} must be a positive fraction of the image diagonal or None (no cut-off), got {max_distance!r}"
        )


def _spatial_labels(boxes: Tensor, mask: Tensor, image_wh: Tensor, max_distance: Optional[float]) -> Tensor:
    r"""Dense labels ``[B, R, R]`` (``uint8``), entry ``[b, j, i]`` =
    :math:`\mathrm{label}(i, j)` of graph ``b``; 0 = no edge (also on the
    diagonal and for padded regions)."""
    x1, y1, x2, y2 = boxes.unbind(-1)  # [B, R] each

    def src(t: Tensor) -> Tensor:  # box j, varies along dim 1
        return t[:, :, None]

    def tgt(t: Tensor) -> Tensor:  # box i, varies along dim 2
        return t[:, None, :]

    inside = (tgt(x1) < src(x1)) & (tgt(y1) < src(y1)) & (tgt(x2) > src(x2)) & (tgt(y2) > src(y2))
    inter_w = (torch.minimum(tgt(x2), src(x2)) - torch.maximum(tgt(x1), src(x1))).clamp_(min=0)
    inter_h = (torch.minimum(tgt(y2), src(y2)) - torch.maximum(tgt(y1), src(y1))).clamp_(min=0)
    inter = inter_w.mul_(inter_h)  # [B, R, R]
    area = (x2 - x1) * (y2 - y1)
    union = (tgt(area) + src(area)).sub_(inter)
    # IoU >= 0.5 as 2 * inter >= union: no division, and symmetric bit for bit.
    overlap = inter.mul_(2) >= union

    cx, cy = (x1 + x2) * 0.5, (y1 + y2) * 0.5
    dx, dy = tgt(cx) - src(cx), tgt(cy) - src(cy)  # c_i - c_j, [B, R, R]
    same_center = (dx == 0) & (dy == 0)
    label = _direction_sector(dx, dy).add_(SPATIAL_DIRECTION_FIRST)
    if max_distance is not None:
        max_dist2 = (image_wh * image_wh).sum(-1) * (max_distance * max_distance)  # [B]
        label.masked_fill_((dx * dx).add_(dy * dy) >= max_dist2[:, None, None], 0)
    label.masked_fill_(overlap | same_center, SPATIAL_OVERLAP)
    label.masked_fill_(inside.transpose(1, 2), SPATIAL_COVER)  # j covers i  <=>  i inside j
    label.masked_fill_(inside, SPATIAL_INSIDE)
    pair_ok = mask[:, :, None] & mask[:, None, :]
    pair_ok.diagonal(dim1=1, dim2=2).fill_(False)
    return label.masked_fill_(~pair_ok, 0)


def spatial_relations_batch(
    boxes: BoxesLike,
    image_sizes: SizesLike,
    mask: OptTensor = None,
    self_loops: bool = False,
    max_distance: Optional[float] = 0.5,
) -> EdgeBatch:
    r"""The ReGAT spatial graph (see the module docstring) of every image of a
    batch at once, fully vectorised over images and pairs.

    **Direction classes.** :math:`\theta = \mathrm{atan2}(c^y_i - c^y_j,
    c^x_i - c^x_j) \in [0, 2\pi)` in pixel coordinates, where :math:`y` grows
    downward: class 4 means :math:`i` lies right of :math:`j` and at most
    45 degrees below it, and the classes turn clockwise on screen. Sectors are
    half-open, :math:`(45(k-1), 45k]` degrees for class :math:`3 + k`, with
    :math:`\theta = 0` taken as 360 degrees, so a pair directly to the right
    gets class 11 rather than colliding with class 3 (as
    :math:`\lceil 0 \rceil + 3` does in the reference code). The sector is
    found from sign and magnitude comparisons of :math:`dx, dy`, not from
    ``atan2``, so the labels are exactly consistent in floating point:
    :math:`\mathrm{label}(j, i)` is always the opposite of
    :math:`\mathrm{label}(i, j)` (direction :math:`c \leftrightarrow 4 + (c - 4 + 4) \bmod 8`,
    1 :math:`\leftrightarrow` 2, 3 :math:`\leftrightarrow` 3), also on sector
    boundaries. The public reference code (``build_graph`` in
    linjieli222/VQA_ReGAT) works the angle out by quadrant from ``arcsin`` /
    ``arccos`` and gets the reverse label wrong in several quadrants (a
    mirror image, :math:`2\pi - \theta`, instead of the opposite direction,
    :math:`\theta + \pi`, and ``arccos`` of the sine in the third); ours
    follows the geometry.

    **Coincident centres.** When two centres coincide and no class 1-3
    applies (a cross made of a wide and a tall box), there is no direction
    to give; both boxes contain the shared centre, so they overlap, and the
    pair gets class 3 in both directions.

    **Distance cut-off.** A direction edge needs
    :math:`\lVert c_i - c_j \rVert < d \sqrt{W^2 + H^2}` (compared
    squared), :math:`d` = ``max_distance``, ReGAT's :math:`\tfrac12` by
    default. Classes 1-3 need no cut-off. With ``max_distance=None`` every
    pair gets an edge (the graph is complete): "left of" in CLEVR-style
    questions holds between objects at any distance, which the cut-off
    leaves without an edge.

    IoU uses continuous coordinates (the reference code adds one pixel to
    widths and heights). Arithmetic is done in the dtype of ``boxes``;
    integer-valued pixel boxes are exact in ``float32``.

    Args:
        boxes (torch.Tensor or list of torch.Tensor): pixel ``xyxy`` boxes,
            either padded ``[B, R_max, 4]`` (with ``mask``) or a list of
            ``[R_b, 4]`` tensors. Boxes should be validated
            (:func:`~mmgraph.graph.boxes.validate_boxes`).
        image_sizes (torch.Tensor or list of (float, float)): ``[B, 2]``
            ``(width, height)`` per image.
        mask (torch.Tensor, optional): ``[B, R_max]`` boolean, which padded
            rows are real regions; real regions must come first in each row.
            (default: :obj:`None`, all real)
        self_loops (bool, optional): add an edge :math:`(i, i)` of class 12
            per region. (default: :obj:`False`)
        max_distance (float, optional): the direction classes' cut-off, a
            fraction of the image diagonal; :obj:`None`: none. (default: ``0.5``)

    Returns:
        :class:`EdgeBatch`: ``edge_index`` with PyG batch offsets, ``edge_type``
        in 1..12, ``edge_ptr`` and ``node_ptr``; per graph the edges are sorted
        by source, then target.

    Shapes:
        - **input:** boxes :math:`(B, R_{max}, 4)`, image_sizes :math:`(B, 2)`
        - **output:** edge_index :math:`(2, E)`, edge_type :math:`(E)`
    """
    check_max_distance(max_distance)
    boxes, mask = _batch_inputs(boxes, mask)
    if not boxes.is_floating_point():
        boxes = boxes.float()
    image_wh = torch.as_tensor(image_sizes, dtype=boxes.dtype, device=boxes.device).reshape(-1, 2)
    if image_wh.size(0) != boxes.size(0):
        raise InputError(f"got {boxes.size(0)} images of boxes but {image_wh.size(0)} image sizes")
    chunk = _chunk_size(boxes.size(1))
    label = torch.cat(
        [
            _spatial_labels(boxes[s : s + chunk], mask[s : s + chunk], image_wh[s : s + chunk], max_distance)
            for s in range(0, boxes.size(0), chunk)
        ]
    )  # [B, R(j), R(i)]
    if self_loops:
        label.diagonal(dim1=1, dim2=2).masked_fill_(mask, SPATIAL_SELF)
    return _edges_from_dense(label, mask, with_type=True)


def spatial_relations(
    boxes: Tensor, image_size: ImageSize, self_loops: bool = False, max_distance: Optional[float] = 0.5
) -> Tuple[Tensor, Tensor]:
    r"""The ReGAT spatial graph of one image; the rules and conventions are
    those of :func:`spatial_relations_batch`, which this calls with a batch of
    one.

    Args:
        boxes (torch.Tensor): ``[R, 4]`` pixel ``xyxy`` boxes.
        image_size ((float, float)): ``(width, height)``.
        self_loops (bool, optional): add self-loops of class 12. (default: :obj:`False`)
        max_distance (float, optional): the direction classes' cut-off, a
            fraction of the image diagonal; :obj:`None`: none. (default: ``0.5``)

    Returns:
        ``(edge_index [2, E], edge_type [E])``, sorted by source, then target.
    """
    out = spatial_relations_batch(
        boxes[None], [tuple(image_size)], self_loops=self_loops, max_distance=max_distance
    )
    return out.edge_index, out.edge_type


def _pair_label_reference(bi: List[float], bj: List[float], max_dist2: Optional[float]) -> int:
    """label(i, j) of one pair by the rules, written out for reading."""
    if bi[0] < bj[0] and bi[1] < bj[1] and bi[2] > bj[2] and bi[3] > bj[3]:
        return SPATIAL_INSIDE
    if bj[0] < bi[0] and bj[1] < bi[1] and bj[2] > bi[2] and bj[3] > bi[3]:
        return SPATIAL_COVER
    inter_w = max(0.0, min(bi[2], bj[2]) - max(bi[0], bj[0]))
    inter_h = max(0.0, min(bi[3], bj[3]) - max(bi[1], bj[1]))
    inter = inter_w * inter_h
    area_i = (bi[2] - bi[0]) * (bi[3] - bi[1])
    area_j = (bj[2] - bj[0]) * (bj[3] - bj[1])
    if 2 * inter >= area_i + area_j - inter:
        return SPATIAL_OVERLAP
    dx = (bi[0] + bi[2]) * 0.5 - (bj[0] + bj[2]) * 0.5
    dy = (bi[1] + bi[3]) * 0.5 - (bj[1] + bj[3]) * 0.5
    if dx == 0 and dy == 0:
        return SPATIAL_OVERLAP
    if max_dist2 is not None and dx * dx + dy * dy >= max_dist2:
        return 0
    # Sector k of theta = atan2(dy, dx) in (45(k-1), 45k] degrees, theta = 0 as 360.
    if dy > 0:
        if dx > 0:
            k = 1 if dy <= dx else 2  # (0, 45] or (45, 90)
        elif dx == 0:
            k = 2  # exactly 90
        else:
            k = 3 if dy >= -dx else 4  # (90, 135] or (135, 180)
    elif dy == 0:
        k = 4 if dx < 0 else 8  # exactly 180, or exactly 0 = 360
    elif dx < 0:
        k = 5 if -dy <= -dx else 6  # (180, 225] or (225, 270)
    elif dx == 0:
        k = 6  # exactly 270
    else:
        k = 7 if -dy >= dx else 8  # (270, 315] or (315, 360)
    return SPATIAL_OVERLAP + k


def spatial_relations_reference(
    boxes: Union[Tensor, Sequence[Sequence[float]]],
    image_size: ImageSize,
    self_loops: bool = False,
    max_distance: Optional[float] = 0.5,
) -> Tuple[Tensor, Tensor]:
    r"""A readable per-pair implementation of :func:`spatial_relations`: the
    same rules, the same edge order, computed in Python ``float`` (float64).
    It loops over pairs on purpose; tests and benchmarks use it as the
    baseline. Returns ``(edge_index [2, E], edge_type [E])``."""
    rows = boxes.tolist() if isinstance(boxes, Tensor) else [list(map(float, b)) for b in boxes]
    width, height = float(image_size[0]), float(image_size[1])
    check_max_distance(max_distance)
    max_dist2 = None if max_distance is None else (width * width + height * height) * max_distance**2
    edges = []
    for j, bj in enumerate(rows):
        for i, bi in enumerate(rows):
            label = SPATIAL_SELF if i == j and self_loops else 0
            if i != j:
                label = _pair_label_reference(bi, bj, max_dist2)
            if label:
                edges.append((j, i, label))
    if not edges:
        return torch.empty(2, 0, dtype=torch.long), torch.empty(0, dtype=torch.long)
    table = torch.tensor(edges, dtype=torch.long)  # [E, 3]
    return table[:, :2].t().contiguous(), table[:, 2].contiguous()


def knn_edges_batch(boxes: BoxesLike, k: int, mask: OptTensor = None, self_loops: bool = False) -> EdgeBatch:
    r"""Edges from the :math:`k` regions nearest to each region (by centre
    distance) to that region, for every image of a batch at once.

    :math:`k` is clamped to :math:`R_b - 1` per image. Ties are broken by the
    lower region index, so the result is deterministic. With ``self_loops``,
    each region also gets the edge :math:`(i, i)`, in addition to its
    :math:`k` neighbours. Per graph the edges are sorted by target, then by
    distance (the self-loop first).

    Args:
        boxes (torch.Tensor or list of torch.Tensor): ``xyxy`` boxes, padded
            ``[B, R_max, 4]`` (with ``mask``) or a list of ``[R_b, 4]``.
        k (int): neighbours per region, ``>= 0``.
        mask (torch.Tensor, optional): ``[B, R_max]`` real regions, first in
            each row. (default: :obj:`None`, all real)
        self_loops (bool, optional): add self-loops. (default: :obj:`False`)

    Returns:
        :class:`EdgeBatch` with ``edge_type=None``.
    """
    if k < 0:
        raise InputError(f"k must be >= 0, got {k}")
    boxes, mask = _batch_inputs(boxes, mask)
    center = box_centers(boxes.float() if not boxes.is_floating_point() else boxes)
    d = center[:, :, None, :] - center[:, None, :, :]  # c_i - c_j, [B, R(i), R(j), 2]
    dist2 = (d * d).sum(-1)  # [B, R(i), R(j)]
    dist2 = dist2.masked_fill(~mask[:, None, :], float("inf"))
    # The self pair sorts first when wanted, after every real neighbour otherwise.
    dist2.diagonal(dim1=1, dim2=2).fill_(-float("inf") if self_loops else float("inf"))
    order = dist2.argsort(dim=-1, stable=True)  # [B, R(i), R(j)], nearest first
    per_node = (mask.sum(1) - 1).clamp(max=k) + int(self_loops)  # [B]
    take = min(k + int(self_loops), boxes.size(1))
    rank = torch.arange(take, device=boxes.device)
    keep = (rank < per_node[:, None, None]) & mask[:, :, None]  # [B, R(i), take]
    node_ptr = _node_ptr(mask)
    b, i, r = keep.nonzero(as_tuple=True)
    offset = node_ptr[b]
    edge_index = torch.stack([offset + order[b, i, r], offset + i])
    edge_ptr = torch.cat([node_ptr.new_zeros(1), keep.sum((1, 2)).cumsum(0)])
    return EdgeBatch(edge_index, None, edge_ptr, node_ptr)


def knn_edges(boxes: Tensor, k: int, self_loops: bool = False) -> Tensor:
    r"""Edges from the :math:`k` nearest regions (by centre distance) to each
    region of one image, ``[2, R * min(k, R - 1)]`` (plus :math:`R` self-loops
    when asked). See :func:`knn_edges_batch` for ties, order and clamping."""
    return knn_edges_batch(boxes[None], k, self_loops=self_loops).edge_index


def complete_edges_batch(
    num_nodes: Union[Sequence[int], Tensor], self_loops: bool = False, device: Optional[torch.device] = None
) -> EdgeBatch:
    r"""All ordered pairs of nodes of each graph of a batch, with PyG offsets;
    per graph sorted by source, then target.

    Args:
        num_nodes (list of int or torch.Tensor): :math:`R_b` per graph.
        self_loops (bool, optional): include the pairs :math:`(i, i)`. (default: :obj:`False`)
        device (torch.device, optional): where to make the tensors. (default: :obj:`None`)

    Returns:
        :class:`EdgeBatch` with ``edge_type=None``;
        :math:`\sum_b R_b (R_b - 1)` edges, or :math:`\sum_b R_b^2` with self-loops.
    """
    counts = torch.as_tensor(num_nodes, dtype=torch.long, device=device).reshape(-1)
    if (counts < 0).any():
        raise InputError(f"num_nodes must be >= 0, got {counts.tolist()}")
    r_max = int(counts.max()) if counts.numel() else 0
    mask = torch.arange(r_max, device=counts.device) < counts[:, None]  # [B, R_max]
    keep = mask[:, :, None] & mask[:, None, :]  # [B, R(j), R(i)]
    if not self_loops:
        keep.diagonal(dim1=1, dim2=2).fill_(False)
    return _edges_from_dense(keep, mask, with_type=False)


def complete_edges(num_nodes: int, self_loops: bool = False, device: Optional[torch.device] = None) -> Tensor:
    r"""All ordered pairs of ``num_nodes`` nodes, ``[2, R (R - 1)]`` (``[2, R^2]``
    with self-loops), sorted by source, then target."""
    return complete_edges_batch([num_nodes], self_loops=self_loops, device=device).edge_index
