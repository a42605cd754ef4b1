import pytest
import torch

from mmgraph.errors import InputError
from mmgraph.graph.regions import (
    Regions,
    regions_from_detections,
    regions_from_feature_map,
    regions_from_scene_graph,
    scene_graph_vocabularies,
)
from mmgraph.graph.vocab import Vocabulary

BOXES = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 2.0, 20.0, 8.0], [1.0, 1.0, 2.0, 2.0]])
SIZE = (20.0, 10.0)


@pytest.mark.parametrize("r, d", [(1, 1), (3, 2048)])
def test_regions_from_detections(r, d):
    regions = regions_from_detections(BOXES[:r], torch.randn(r, d), SIZE, sample_id="a")
    assert regions.num_regions == r
    assert regions.features.shape == (r, d)
    assert regions.image_size == SIZE
    assert torch.allclose(regions.normalized_boxes()[0], torch.tensor([0.0, 0.0, 0.5, 1.0]))


def test_boxes_within_a_pixel_are_clipped():
    boxes = torch.tensor([[-0.5, 0.0, 20.5, 10.0]])
    regions = regions_from_detections(boxes, torch.zeros(1, 4), SIZE)
    assert torch.equal(regions.boxes, torch.tensor([[0.0, 0.0, 20.0, 10.0]]))


def _bad(**fields):
    base = dict(boxes=BOXES.clone(), image_size=SIZE, features=torch.zeros(3, 4), sample_id="q42")
    base.update(fields)
    return base


@pytest.mark.parametrize(
    "fields, words",
    [
        (dict(boxes=torch.zeros(0, 4), features=torch.zeros(0, 4)), "zero regions"),
        (dict(features=torch.zeros(2, 4)), "features must have shape"),
        (dict(features=torch.zeros(3)), "features must have shape"),
        (dict(features=torch.tensor([[0.0], [float("nan")], [0.0]])), "region 1"),
        (dict(features=torch.tensor([[0.0], [0.0], [float("inf")]])), "region 2"),
        (dict(features=torch.zeros(3, 4, dtype=torch.long)), "floating point"),
        (dict(boxes=torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 50.0, 5.0], [0, 0, 1, 1]])), "box 1"),
        (dict(boxes=torch.tensor([[0.0, 0.0, 1.0, 1.0], [3.0, 0.0, 2.0, 5.0], [0, 0, 1, 1]])), "box 1"),
        (dict(image_size=(0, 10)), "image_size"),
        (dict(labels=torch.zeros(2, dtype=torch.long)), "labels must have shape"),
        (dict(labels=torch.zeros(3)), "integer ids"),
        (dict(attrs=torch.zeros(4, 3, dtype=torch.long)), "attrs must have shape"),
        (dict(attrs=torch.zeros(3, dtype=torch.long)), "attrs must have shape"),
        (dict(names=["a", "b"]), "2 names for 3 regions"),
        (
            dict(semantic_edge_index=torch.tensor([[0, 1], [1, 3]])),
            "semantic edge 1 joins regions \\[1, 3\\]",
        ),
        (dict(semantic_edge_index=torch.tensor([[0, -1], [1, 2]])), "semantic edge 1"),
        (dict(semantic_edge_index=torch.tensor([0, 1])), "shape \\[2, E\\]"),
        (
            dict(semantic_edge_index=torch.tensor([[0], [1]]), semantic_edge_type=torch.tensor([1, 2])),
            "semantic_edge_type must have shape \\[1\\]",
        ),
        (dict(semantic_edge_type=torch.tensor([1])), "without semantic_edge_index"),
    ],
)
def test_validation_errors_name_the_sample(fields, words):
    with pytest.raises(InputError, match=words) as info:
        Regions(**_bad(**fields))
    assert "q42" in str(info.value)


def test_feature_map_regions_row_major():
    fmap = torch.arange(3 * 2 * 4, dtype=torch.float32).reshape(3, 2, 4)  # [C=3, H=2, W=4]
    regions = regions_from_feature_map(fmap)
    assert regions.num_regions == 8
    assert regions.image_size == (4.0, 2.0)
    for r in range(2):
        for c in range(4):
            assert torch.equal(regions.features[r * 4 + c], fmap[:, r, c])
            assert torch.equal(
                regions.boxes[r * 4 + c], torch.tensor([c, r, c + 1, r + 1], dtype=torch.float32)
            )


def test_feature_map_regions_scale_to_the_image_and_keep_gradients():
    fmap = torch.randn(5, 7, 7, requires_grad=True)
    regions = regions_from_feature_map(fmap, image_size=(640, 480), sample_id="img")
    assert regions.features.shape == (49, 5)
    assert torch.allclose(regions.boxes[48], torch.tensor([640 * 6 / 7, 480 * 6 / 7, 640.0, 480.0]))
    regions.features.sum().backward()
    assert torch.equal(fmap.grad, torch.ones_like(fmap))


def test_feature_map_errors():
    with pytest.raises(InputError, match="img3.*C, H, W"):
        regions_from_feature_map(torch.zeros(4, 4), sample_id="img3")
    with pytest.raises(InputError, match="img3.*region 5"):
        fmap = torch.zeros(2, 3, 3)
        fmap[1, 1, 2] = float("nan")  # cell (1, 2) = region 5
        regions_from_feature_map(fmap, sample_id="img3")


OBJECTS = [
    {"name": "dog", "attributes": ["brown", "small", "furry", "happy"], "box": [0, 0, 10, 10]},
    {"name": "frisbee", "attributes": ["red"], "x": 12, "y": 3, "w": 4, "h": 2},
    {"name": "unicorn", "box": [1, 1, 5, 5]},
]
RELATIONS = [(0, "holding", 1), (1, "near", 2), (2, "levitating", 0)]


def _vocabs():
    train = [(OBJECTS[:2], RELATIONS[:1]), ([{"name": "dog", "attributes": ["red"]}], [(0, "near", 0)])]
    return scene_graph_vocabularies(train)


def test_scene_graph_vocabularies():
    labels, attrs, predicates = _vocabs()
    assert labels.itos == ["<pad>", "<unk>", "dog", "frisbee"]  # dog twice, first
    assert attrs.itos[:3] == ["<pad>", "<unk>", "red"]
    assert set(attrs.itos[3:]) == {"brown", "small", "furry", "happy"}
    assert set(predicates.itos) == {"<pad>", "<unk>", "holding", "near"}
    labels2, _, _ = scene_graph_vocabularies([(OBJECTS[:2], []), ([{"name": "dog"}], [])], min_count=2)
    assert labels2.itos == ["<pad>", "<unk>", "dog"]


def test_regions_from_scene_graph():
    labels, attrs, predicates = _vocabs()
    regions = regions_from_scene_graph(
        OBJECTS, RELATIONS, (20, 12), labels, attrs, predicates, sample_id="sg1"
    )
    assert regions.names == ["dog", "frisbee", "unicorn"]
    assert regions.labels.tolist() == [labels["dog"], labels["frisbee"], labels.unk_id]
    # at most 3 attributes, in order; -1 padded
    assert regions.attrs.tolist() == [
        [attrs["brown"], attrs["small"], attrs["furry"]],
        [attrs["red"], -1, -1],
        [-1, -1, -1],
    ]
    assert torch.equal(regions.boxes[1], torch.tensor([12.0, 3.0, 16.0, 5.0]))  # x, y, w, h -> xyxy
    assert regions.semantic_edge_index.tolist() == [[0, 1, 2], [1, 2, 0]]
    assert regions.semantic_edge_type.tolist() == [
        predicates["holding"],
        predicates["near"],
        predicates.unk_id,
    ]
    assert regions.features is None


def test_scene_graph_max_attributes_and_no_relations():
    labels, attrs, predicates = _vocabs()
    regions = regions_from_scene_graph(OBJECTS, [], (20, 12), labels, attrs, predicates, max_attributes=1)
    assert regions.attrs.shape == (3, 1)
    assert regions.semantic_edge_index.shape == (2, 0) and regions.semantic_edge_type.shape == (0,)


@pytest.mark.parametrize(
    "objects, relations, words",
    [
        ([{"name": "dog"}], [], "object 0 .* has no box"),
        ([{"box": [0, 0, 1, 1]}], [], "object 0 has no 'name'"),
        ([{"name": "dog", "box": [0, 0, 1]}], [], "'box' must be"),
        ([{"name": "dog", "box": [0, 0, 1, 1]}], [(0, "near")], "relation 0 must be"),
        ([{"name": "dog", "box": [0, 0, 1, 1]}], [("a", "near", 0)], "relation 0 must be"),
        ([{"name": "dog", "box": [0, 0, 1, 1]}], [(0, "near", 4)], "semantic edge 0"),
        ([{"name": "dog", "box": [0, 0, 30, 1]}], [], "box 0"),
    ],
)
def test_scene_graph_errors(objects, relations, words):
    v = Vocabulary()
    with pytest.raises(InputError, match=words) as info:
        regions_from_scene_graph(objects, relations, (20, 12), v, v, v, sample_id="sg9")
    assert "sg9" in str(info.value)
