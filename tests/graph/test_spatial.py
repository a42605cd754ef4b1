import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmgraph.errors import InputError
from mmgraph.graph.spatial import (
    NUM_DIRECTIONS,
    SPATIAL_DIRECTION_FIRST,
    _direction_sector,
    complete_edges,
    complete_edges_batch,
    knn_edges,
    knn_edges_batch,
    pad_boxes,
    spatial_relations,
    spatial_relations_batch,
    spatial_relations_reference,
)
from mmgraph.typing import SPATIAL_COVER, SPATIAL_INSIDE, SPATIAL_OVERLAP, SPATIAL_SELF

BIG = (1000.0, 1000.0)


def label_table(boxes, image_size, self_loops=False, fn=spatial_relations):
    """{(i, j): label(i, j)} from the edges j -> i."""
    edge_index, edge_type = fn(torch.as_tensor(boxes, dtype=torch.float64), image_size, self_loops=self_loops)
    return {(i, j): c for (j, i), c in zip(edge_index.t().tolist(), edge_type.tolist())}


def pair_labels(box_i, box_j, image_size=BIG):
    """(label(i, j), label(j, i)) for a two-box image, None where there is no edge."""
    table = label_table([box_i, box_j], image_size)
    return table.get((0, 1)), table.get((1, 0))


def opposite(c):
    if c == SPATIAL_INSIDE:
        return SPATIAL_COVER
    if c == SPATIAL_COVER:
        return SPATIAL_INSIDE
    if c in (SPATIAL_OVERLAP, SPATIAL_SELF):
        return c
    return SPATIAL_DIRECTION_FIRST + (c - SPATIAL_DIRECTION_FIRST + 4) % NUM_DIRECTIONS


def box_at(cx, cy, half=1.0):
    return [cx - half, cy - half, cx + half, cy + half]


# ---------------------------------------------------------------- classes 1-3


def test_inside_and_cover():
    # +--------------+  i = [0, 0, 10, 10]
    # |   +------+   |  j = [2, 2, 8, 8], strictly inside on all four sides
    # |   |  j   |   |
    # |   +------+   |
    # +--------------+
    assert pair_labels([0, 0, 10, 10], [2, 2, 8, 8]) == (SPATIAL_INSIDE, SPATIAL_COVER)
    assert pair_labels([2, 2, 8, 8], [0, 0, 10, 10]) == (SPATIAL_COVER, SPATIAL_INSIDE)


def test_shared_side_is_not_strictly_inside():
    # +--------------+  i = [0, 0, 10, 10]
    # +---------+    |  j = [0, 1, 9, 9] touches i's left side: not strictly inside,
    # |    j    |    |      IoU = 72 / 100 >= 0.5, so overlap
    # +---------+    |
    # +--------------+
    assert pair_labels([0, 0, 10, 10], [0, 1, 9, 9]) == (SPATIAL_OVERLAP, SPATIAL_OVERLAP)


def test_overlap_at_exactly_half_iou():
    # +-----+--+--+   i = [0, 0, 3, 2], j = [1, 0, 4, 2]
    # |  i  |ij|j |   intersection 4, union 8: IoU = 0.5 exactly
    # +-----+--+--+
    assert pair_labels([0, 0, 3, 2], [1, 0, 4, 2]) == (SPATIAL_OVERLAP, SPATIAL_OVERLAP)


def test_low_iou_gets_a_direction():
    # +--+-+--+       i = [0, 0, 2, 2], j = [1, 0, 3, 2]: IoU = 1/3 < 0.5
    # |i |ij| j|      i's centre is left of j's: theta = 180 deg -> class 7
    # +--+-+--+
    assert pair_labels([0, 0, 2, 2], [1, 0, 3, 2]) == (7, 11)


def test_coincident_centres_without_overlap_class_get_overlap():
    #      +-+
    #  +---+-+---+     wide [0, 4, 10, 6] and tall [4, 0, 6, 10]: same centre (5, 5),
    #  +---+-+---+     IoU = 4 / 36 < 0.5, neither inside the other -> class 3 both ways
    #      +-+
    assert pair_labels([0, 4, 10, 6], [4, 0, 6, 10]) == (SPATIAL_OVERLAP, SPATIAL_OVERLAP)


def test_self_loops():
    boxes = [[0, 0, 2, 2], [5, 5, 7, 7], [100, 100, 110, 110]]
    table = label_table(boxes, BIG, self_loops=True)
    assert all(table[(i, i)] == SPATIAL_SELF for i in range(3))
    assert all((i, i) not in label_table(boxes, BIG) for i in range(3))


# ---------------------------------------------------------------- directions
# Box i sits at centre (500 + dx, 500 + dy), box j at (500, 500); both 2 x 2, far
# enough apart not to overlap. y grows downward (pixel coordinates):
#
#            dy < 0 (i above j)
#       8 (225]  9 (270]  10 (315]
#   7 (180]        j         11 (360 = 0]
#       6 (135]  5 (90]    4 (45]
#            dy > 0 (i below j)
#
# Sector k covers (45(k-1), 45k] degrees; the class is 3 + k.

BOUNDARIES = [
    ((10, 0), 11),  # 0 deg counts as 360: last sector, never class 3
    ((10, 10), 4),  # 45
    ((0, 10), 5),  # 90
    ((-10, 10), 6),  # 135
    ((-10, 0), 7),  # 180
    ((-10, -10), 8),  # 225
    ((0, -10), 9),  # 270
    ((10, -10), 10),  # 315
]
INTERIORS = [
    ((10, 4), 4),  # ~22 deg
    ((4, 10), 5),  # ~68
    ((-4, 10), 6),  # ~112
    ((-10, 4), 7),  # ~158
    ((-10, -4), 8),  # ~202
    ((-4, -10), 9),  # ~248
    ((4, -10), 10),  # ~292
    ((10, -4), 11),  # ~338
]


@pytest.mark.parametrize("offset, expected", BOUNDARIES + INTERIORS)
@pytest.mark.parametrize("fn", [spatial_relations, spatial_relations_reference])
def test_direction_sectors(offset, expected, fn):
    dx, dy = offset
    table = label_table([box_at(500 + dx, 500 + dy), box_at(500, 500)], BIG, fn=fn)
    assert table[(0, 1)] == expected
    assert table[(1, 0)] == opposite(expected)


def test_direction_sector_agrees_with_atan2_away_from_boundaries():
    g = torch.Generator().manual_seed(1)
    d = (torch.rand(20000, 2, generator=g, dtype=torch.float64) - 0.5) * 100
    theta = torch.atan2(d[:, 1], d[:, 0]) % (2 * math.pi)
    theta = torch.where(theta == 0, 2 * math.pi, theta)
    step = math.pi / 4
    clear = ((theta / step) - (theta / step).round()).abs() > 1e-9
    expected = torch.ceil(theta / step).long() - 1  # sector 0..7
    got = _direction_sector(d[:, 0], d[:, 1]).long()
    assert torch.equal(got[clear], expected[clear])


def test_distance_cut_off_is_strict():
    # 60 x 80 image: half the diagonal is exactly 50. Centres 50 apart (30, 40): no edge.
    size = (60.0, 80.0)
    j = box_at(5, 5, half=0.5)
    assert pair_labels(box_at(35, 45, half=0.5), j, size) == (None, None)
    assert pair_labels(box_at(45, 35, half=0.5), j, size) == (None, None)
    assert pair_labels(box_at(35, 44, half=0.5), j, size) == (5, 9)  # 49.2 apart, ~56 deg
    assert pair_labels(box_at(44, 35, half=0.5), j, size) == (4, 8)  # ~38 deg


# ---------------------------------------------------------------- properties


def _random_boxes(draw, n, grid):
    boxes = []
    for _ in range(n):
        if grid:
            x1, y1 = draw(st.integers(0, 8)), draw(st.integers(0, 8))
            w, h = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        else:
            x1, y1 = draw(st.floats(0, 90)), draw(st.floats(0, 90))
            w, h = draw(st.floats(0.01, 60)), draw(st.floats(0.01, 60))
        boxes.append([x1, y1, x1 + w, y1 + h])
    return boxes


@st.composite
def images(draw):
    grid = draw(st.booleans())
    n = draw(st.integers(1, 9))
    size = (12.0, 12.0) if grid else (draw(st.floats(20, 200)), draw(st.floats(20, 200)))
    return _random_boxes(draw, n, grid), size


@settings(max_examples=150, deadline=None)
@given(images(), st.booleans())
def test_labels_are_geometrically_consistent(image, self_loops):
    boxes, size = image
    for fn in (spatial_relations, spatial_relations_reference):
        table = label_table(boxes, size, self_loops=self_loops, fn=fn)
        for (i, j), c in table.items():
            assert 1 <= c <= 12
            assert table.get((j, i)) == opposite(c), (i, j, c)


@settings(max_examples=150, deadline=None)
@given(images(), st.booleans())
def test_vectorised_equals_reference(image, self_loops):
    boxes, size = image
    b64 = torch.tensor(boxes, dtype=torch.float64)
    ref = spatial_relations_reference(b64, size, self_loops=self_loops)
    for dtype in (torch.float64, torch.float32) if float(b64.frac().abs().sum()) == 0 else (torch.float64,):
        out = spatial_relations(b64.to(dtype), size, self_loops=self_loops)
        assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])


def test_dense_integer_grid_hits_every_class_and_matches_reference():
    # All boxes with corners on a 0..6 grid: many exact sector boundaries and ties.
    coords = torch.arange(7.0)
    x1, x2 = torch.meshgrid(coords, coords, indexing="ij")
    spans = torch.stack([x1.flatten(), x2.flatten()], 1)
    spans = spans[spans[:, 0] < spans[:, 1]][::3]  # [S, 2]
    boxes = torch.cat([spans.repeat_interleave(len(spans), 0), spans.repeat(len(spans), 1)], 1)[
        :, [0, 2, 1, 3]
    ]
    out = spatial_relations(boxes, (6.0, 6.0), self_loops=True)
    ref = spatial_relations_reference(boxes, (6.0, 6.0), self_loops=True)
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])
    assert set(out[1].tolist()) == set(range(1, 13))


# ---------------------------------------------------------------- batch path


def _random_image_list(seed, sizes):
    g = torch.Generator().manual_seed(seed)
    out = []
    for r in sizes:
        xy = torch.randint(0, 40, (r, 2), generator=g).float()
        wh = torch.randint(1, 20, (r, 2), generator=g).float()
        out.append(torch.cat([xy, xy + wh], 1))
    return out


@pytest.mark.parametrize("self_loops", [False, True])
def test_batch_equals_per_image_with_offsets(self_loops):
    counts = [3, 1, 7, 5, 2]
    boxes = _random_image_list(0, counts)
    sizes = [(60.0, 60.0), (60.0, 60.0), (40.0, 80.0), (100.0, 30.0), (60.0, 60.0)]
    out = spatial_relations_batch(boxes, sizes, self_loops=self_loops)
    assert out.node_ptr.tolist() == [0, 3, 4, 11, 16, 18]
    padded, mask = pad_boxes(boxes)
    out_padded = spatial_relations_batch(padded, torch.tensor(sizes), mask=mask, self_loops=self_loops)
    assert torch.equal(out.edge_index, out_padded.edge_index) and torch.equal(
        out.edge_type, out_padded.edge_type
    )
    edge_batch = out.edge_batch()
    for b, (local_index, local_type) in enumerate(out.split()):
        ref_index, ref_type = spatial_relations(boxes[b], sizes[b], self_loops=self_loops)
        assert torch.equal(local_index, ref_index) and torch.equal(local_type, ref_type)
        lo, hi = out.edge_ptr[b], out.edge_ptr[b + 1]
        assert torch.equal(out.edge_index[:, lo:hi], ref_index + out.node_ptr[b])
        assert (edge_batch[lo:hi] == b).all()
    assert edge_batch.numel() == out.edge_index.size(1)


def test_batch_chunks_agree(monkeypatch):
    import mmgraph.graph.spatial as spatial

    boxes = _random_image_list(3, [6] * 40)
    sizes = [(60.0, 60.0)] * 40
    whole = spatial_relations_batch(boxes, sizes)
    monkeypatch.setattr(spatial, "_CHUNK_PAIRS", 100)  # 2 graphs a chunk
    chunked = spatial_relations_batch(boxes, sizes)
    assert torch.equal(whole.edge_index, chunked.edge_index) and torch.equal(
        whole.edge_type, chunked.edge_type
    )


def test_batch_input_errors():
    boxes = _random_image_list(0, [2, 3])
    with pytest.raises(InputError, match="mask"):
        spatial_relations_batch(boxes, [(60, 60)] * 2, mask=torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(InputError, match="image sizes"):
        spatial_relations_batch(boxes, [(60, 60)] * 3)
    with pytest.raises(InputError, match="B, R_max, 4"):
        spatial_relations_batch(torch.zeros(3, 4), [(60, 60)])
    with pytest.raises(InputError, match="mask must have shape"):
        spatial_relations_batch(torch.zeros(2, 3, 4), [(60, 60)] * 2, mask=torch.ones(2, 2, dtype=torch.bool))


@pytest.mark.parametrize("max_distance", [None, 0.25, 0.5, 2.0])
def test_max_distance_sets_the_cut_off(max_distance):
    boxes = _random_image_list(5, [7, 1, 6])
    sizes = [(60.0, 60.0), (60.0, 60.0), (40.0, 80.0)]
    out = spatial_relations_batch(boxes, sizes, max_distance=max_distance)
    for b, (index, types) in enumerate(out.split()):
        ref_index, ref_type = spatial_relations_reference(boxes[b], sizes[b], max_distance=max_distance)
        assert torch.equal(index, ref_index) and torch.equal(types, ref_type)
        centres = (boxes[b][:, :2] + boxes[b][:, 2:]) / 2
        gap = (centres[index[1]] - centres[index[0]]).norm(dim=1)
        direction = types >= SPATIAL_DIRECTION_FIRST
        if max_distance is not None:
            diagonal = math.hypot(*sizes[b])
            assert (gap[direction] < max_distance * diagonal).all()
        n = boxes[b].size(0)
        if max_distance is None or max_distance >= 2.0:  # no pair is that far apart: every ordered pair
            assert index.size(1) == n * (n - 1)
    default = spatial_relations_batch(boxes, sizes)
    half = spatial_relations_batch(boxes, sizes, max_distance=0.5)
    assert torch.equal(default.edge_index, half.edge_index) and torch.equal(default.edge_type, half.edge_type)


def test_max_distance_drops_only_far_direction_edges():
    # Two small boxes in opposite corners of a 100 x 100 image (centres 84.9 apart, the half diagonal is
    # 70.7): no edge by default, both directions without the cut-off.
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [90.0, 90.0, 100.0, 100.0]])
    assert spatial_relations(boxes, (100.0, 100.0))[0].size(1) == 0
    index, types = spatial_relations(boxes, (100.0, 100.0), max_distance=None)
    assert index.tolist() == [[0, 1], [1, 0]]
    assert all(
        SPATIAL_DIRECTION_FIRST <= c < SPATIAL_DIRECTION_FIRST + NUM_DIRECTIONS for c in types.tolist()
    )


@pytest.mark.parametrize("bad", [0.0, -0.5, float("nan")])
def test_max_distance_must_be_positive(bad):
    boxes = _random_image_list(0, [3])
    with pytest.raises(InputError, match="max_distance"):
        spatial_relations_batch(boxes, [(60.0, 60.0)], max_distance=bad)
    with pytest.raises(InputError, match="max_distance"):
        spatial_relations_reference(boxes[0], (60.0, 60.0), max_distance=bad)


# ---------------------------------------------------------------- knn / complete


def _knn_brute(boxes, k, self_loops):
    c = ((boxes[:, :2] + boxes[:, 2:]) / 2).tolist()
    edges = []
    for i in range(len(c)):
        if self_loops:
            edges.append((i, i))
        others = sorted(
            (j for j in range(len(c)) if j != i),
            key=lambda j: ((c[i][0] - c[j][0]) ** 2 + (c[i][1] - c[j][1]) ** 2, j),
        )
        edges.extend((j, i) for j in others[:k])
    return torch.tensor(edges, dtype=torch.long).t().reshape(2, -1)


@pytest.mark.parametrize("k", [0, 1, 3, 10])
@pytest.mark.parametrize("self_loops", [False, True])
def test_knn_counts_ties_and_brute_force(k, self_loops):
    # Centres on a line 0, 2, 4, 6, 8, plus duplicates: many equal distances.
    boxes = torch.tensor([[x, 0.0, x + 2, 2.0] for x in (0, 2, 4, 6, 8, 2, 4)])
    edge_index = knn_edges(boxes, k, self_loops=self_loops)
    r = boxes.size(0)
    assert edge_index.size(1) == r * min(k, r - 1) + (r if self_loops else 0)
    assert torch.equal(edge_index, _knn_brute(boxes, k, self_loops))
    assert torch.equal(edge_index, knn_edges(boxes, k, self_loops=self_loops))


def test_knn_picks_lower_index_on_ties():
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [2.0, 0.0, 3.0, 1.0], [4.0, 0.0, 5.0, 1.0]])
    edge_index = knn_edges(boxes, 1)
    # node 1 has nodes 0 and 2 at the same distance: it takes 0.
    assert edge_index[:, edge_index[1] == 1].tolist() == [[0], [1]]


@pytest.mark.parametrize("self_loops", [False, True])
def test_knn_batch_equals_per_image(self_loops):
    boxes = _random_image_list(5, [4, 1, 6, 2])
    out = knn_edges_batch(boxes, 3, self_loops=self_loops)
    assert out.edge_type is None
    for b, (local, _) in enumerate(out.split()):
        assert torch.equal(local, knn_edges(boxes[b], 3, self_loops=self_loops))
    with pytest.raises(InputError):
        knn_edges_batch(boxes, -1)


@pytest.mark.parametrize("self_loops", [False, True])
def test_complete_edges(self_loops):
    edge_index = complete_edges(4, self_loops=self_loops)
    pairs = edge_index.t().tolist()
    expected = [[j, i] for j in range(4) for i in range(4) if self_loops or i != j]
    assert pairs == expected
    out = complete_edges_batch([3, 0, 2], self_loops=self_loops)
    assert out.node_ptr.tolist() == [0, 3, 3, 5]
    per_graph = [n * n if self_loops else n * (n - 1) for n in (3, 0, 2)]
    assert out.edge_ptr.diff().tolist() == per_graph
    assert torch.equal(out.split()[2][0], complete_edges(2, self_loops=self_loops))
    assert out.edge_index[:, out.edge_ptr[1] :].min() >= 3
