import math

import pytest
import torch

from mmgraph.errors import InputError
from mmgraph.graph.boxes import (
    GEOMETRY_EPS,
    box_centers,
    box_geometry,
    box_iou,
    check_image_size,
    grid_boxes,
    normalize_boxes,
    pairwise_geometry,
    validate_boxes,
)
from mmgraph.graph.spatial import complete_edges
from mmgraph.typing import GEOMETRY_DIM


def test_normalize_boxes_single_and_batched():
    boxes = torch.tensor([[0.0, 0.0, 64.0, 48.0], [32.0, 12.0, 64.0, 24.0]])
    out = normalize_boxes(boxes, (64, 48))
    assert torch.allclose(out, torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.5, 0.25, 1.0, 0.5]]))
    batched = torch.stack([boxes, boxes * 2])  # [2, 2, 4]
    sizes = torch.tensor([[64.0, 48.0], [128.0, 96.0]])
    out_b = normalize_boxes(batched, sizes)
    assert out_b.shape == (2, 2, 4)
    assert torch.allclose(out_b[0], out) and torch.allclose(out_b[1], out)


def test_box_centers():
    boxes = torch.tensor([[0.0, 0.0, 4.0, 2.0], [1.0, 3.0, 2.0, 5.0]])
    assert torch.equal(box_centers(boxes), torch.tensor([[2.0, 1.0], [1.5, 4.0]]))
    assert box_centers(boxes.expand(3, 2, 4)).shape == (3, 2, 2)


def test_box_iou_values_and_batching():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 0.0, 3.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    iou = box_iou(a, b)
    expected = torch.tensor([[1.0, 2.0 / 6.0, 0.0], [0.25, 0.0, 0.0]])
    assert iou.shape == (2, 3)
    assert torch.allclose(iou, expected)
    batched = box_iou(a.expand(4, 2, 4), b.expand(4, 3, 4))
    assert batched.shape == (4, 2, 3) and torch.allclose(batched[3], expected)


def test_box_iou_of_two_empty_boxes_is_zero():
    empty = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    assert box_iou(empty, empty).item() == 0.0


def test_validate_boxes_clips_within_tolerance():
    boxes = torch.tensor([[-0.5, -1.0, 10.5, 5.0], [2.0, 2.0, 4.0, 4.0]])
    out = validate_boxes(boxes, (10, 8), tolerance=1.0)
    assert torch.equal(out, torch.tensor([[0.0, 0.0, 10.0, 5.0], [2.0, 2.0, 4.0, 4.0]]))


def test_validate_boxes_converts_integers():
    out = validate_boxes(torch.tensor([[0, 0, 3, 3]]), (4, 4))
    assert out.dtype == torch.float32


@pytest.mark.parametrize(
    "bad_box, words",
    [
        ([float("nan"), 0.0, 1.0, 1.0], "non-finite"),
        ([0.0, 0.0, float("inf"), 1.0], "non-finite"),
        ([0.0, 0.0, 12.0, 5.0], "outside"),  # 2 px past the right border
        ([-3.0, 0.0, 5.0, 5.0], "outside"),
        ([5.0, 1.0, 3.0, 4.0], "width or height"),  # x2 < x1
        ([1.0, 4.0, 3.0, 2.0], "width or height"),  # y2 < y1
        ([3.0, 1.0, 3.0, 4.0], "width or height"),  # zero width
        ([-0.8, 1.0, -0.2, 4.0], "width or height"),  # clipped to zero width
    ],
)
def test_validate_boxes_errors_name_sample_and_box(bad_box, words):
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0], bad_box])
    with pytest.raises(InputError) as info:
        validate_boxes(boxes, (10, 8), sample_id="img-7")
    message = str(info.value)
    assert "img-7" in message and "box 2" in message and words in message


@pytest.mark.parametrize("shape", [(3,), (3, 5), (2, 3, 4)])
def test_validate_boxes_wrong_shape(shape):
    with pytest.raises(InputError, match="img-1.*shape"):
        validate_boxes(torch.zeros(shape), (10, 10), sample_id="img-1")


@pytest.mark.parametrize("size", [(0, 10), (10, -1), (float("inf"), 3), (10,), "ab"])
def test_bad_image_size(size):
    with pytest.raises(InputError, match="s9.*image_size"):
        check_image_size(size, sample_id="s9")


def test_geometry_hand_computed():
    # target i: centre (1, 2), 2 x 4.  source j: centre (6, 1), 4 x 2.
    boxes = torch.tensor([[0.0, 0.0, 2.0, 4.0], [4.0, 0.0, 8.0, 2.0]], dtype=torch.float64)
    edge_index = torch.tensor([[1], [0]])  # j = 1 -> i = 0
    g = box_geometry(boxes, edge_index)
    expected = torch.tensor(
        [[math.log(5 / 2), math.log(1 / 4), math.log(4 / 2), math.log(2 / 4)]], dtype=torch.float64
    )
    assert g.shape == (1, GEOMETRY_DIM)
    assert torch.allclose(g, expected)


def test_geometry_clamps_coincident_centres():
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 3.0, 3.0]])
    g = box_geometry(boxes, torch.tensor([[1], [0]]))
    assert torch.allclose(g[0, :2], torch.full((2,), math.log(GEOMETRY_EPS)))
    assert torch.allclose(g[0, 2:], torch.full((2,), math.log(0.5)))


def test_pairwise_geometry_matches_per_edge_and_is_scale_invariant():
    boxes = torch.tensor(
        [[0.0, 0.0, 10.0, 20.0], [5.0, 5.0, 30.0, 9.0], [12.0, 1.0, 13.0, 40.0]], dtype=torch.float64
    )
    dense = pairwise_geometry(boxes)  # [R, R, 4]
    edge_index = complete_edges(3, self_loops=True)
    per_edge = box_geometry(boxes, edge_index)
    assert torch.allclose(dense[edge_index[1], edge_index[0]], per_edge)
    normalised = normalize_boxes(boxes, (40.0, 50.0))
    assert torch.allclose(pairwise_geometry(normalised), dense)
    assert torch.allclose(pairwise_geometry(boxes.expand(2, 3, 4))[1], dense)


def test_grid_boxes_row_major_and_cover_the_image():
    boxes = grid_boxes(2, 3, (30, 20))
    assert boxes.shape == (6, 4)
    assert torch.equal(boxes[0], torch.tensor([0.0, 0.0, 10.0, 10.0]))
    assert torch.equal(boxes[1], torch.tensor([10.0, 0.0, 20.0, 10.0]))  # next column, same row
    assert torch.equal(boxes[3], torch.tensor([0.0, 10.0, 10.0, 20.0]))  # next row
    assert torch.equal(boxes[5], torch.tensor([20.0, 10.0, 30.0, 20.0]))
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert areas.sum().item() == pytest.approx(600.0)


def test_grid_boxes_last_edge_is_the_border():
    boxes = grid_boxes(7, 7, (640, 480))
    assert boxes[:, 2].max().item() == 640.0 and boxes[:, 3].max().item() == 480.0
    validate_boxes(boxes, (640, 480), tolerance=0.0)


def test_grid_boxes_rejects_empty_grid():
    with pytest.raises(InputError):
        grid_boxes(0, 3, (10, 10))
