import pytest
import torch
from torch_geometric.loader import DataLoader

from mmgraph.datasets.sort_of_clevr import (
    SORT_OF_CLEVR_ANSWERS,
    SORT_OF_CLEVR_COLORS,
    SORT_OF_CLEVR_FAMILIES,
    SORT_OF_CLEVR_TEMPLATES,
    generate_sort_of_clevr,
    read_sort_of_clevr,
)
from mmgraph.datasets.sort_of_clevr_graphs import (
    SortOfClevr,
    colour_grounding,
    found_referents,
    referent_grounding,
    segment_colours,
    segment_shapes,
)
from mmgraph.errors import DataFormatError, InputError
from mmgraph.graph import GraphBuilder, Vocabulary, grid_boxes
from mmgraph.graph.segments import regions_from_segments, segment_feature_dim
from mmgraph.graph.vocab import PAD, UNK
from mmgraph.typing import GROUNDING_EDGE, REGION, TOKEN


def seq_builder():
    return GraphBuilder(parser="sequential", region_edges=("knn",), knn_k=4)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("soc")
    generate_sort_of_clevr(
        root / "sort_of_clevr.pickle",
        train_size=12,
        test_size=4,
        seed=5,
        ternary=True,
        questions_per_family=3,
    )
    return root


def test_graphs_match_the_pickle_and_answers_keep_the_fixed_order(root):
    ds = SortOfClevr(root, "test", grid=5, builder=seq_builder())
    _, test = read_sort_of_clevr(root / "sort_of_clevr.pickle")
    questions = [(i, q) for i, s in enumerate(test) for q in s.questions]
    assert len(ds) == len(questions) == 4 * 9
    assert ds.answers.itos[2:] == list(SORT_OF_CLEVR_ANSWERS)
    boxes = grid_boxes(5, 5, (75.0, 75.0)) / 75
    for data, (i, q) in zip(ds, questions):
        assert data.text == q.question and data.family == q.family and data.subtype == q.subtype
        assert int(data.y) == 2 + q.answer_index and ds.answers.itos[int(data.y)] == q.answer == data.answer
        assert data.image.shape == (1, 3, 75, 75) and data.image.dtype == torch.uint8
        assert torch.equal(data.image[0], test[i].image)
        assert data[REGION].num_nodes == 25 and "x" not in data[REGION]
        assert torch.allclose(data[REGION].box, boxes)
    assert {d.family for d in ds} == {"nonrel", "rel", "ternary"}
    # Each graph names its question's template, for per-template scores.
    names = {(d.family, int(d.subtype)): d.template for d in ds}
    for (family, subtype), name in names.items():
        assert name == SORT_OF_CLEVR_TEMPLATES[SORT_OF_CLEVR_FAMILIES.index(family)][subtype]
    assert len(set(names.values())) == len(names) > 3
    assert SORT_OF_CLEVR_TEMPLATES[1] == ("closest_shape", "furthest_shape", "count_same_shape")


def test_fixed_answer_order_is_not_frequency_order(root):
    train = SortOfClevr(root, "train", builder=seq_builder())
    answers = [d.answer for d in train]
    by_frequency = Vocabulary.build([answers], specials=(PAD, UNK))
    assert (
        by_frequency.itos != train.answers.itos
    )  # the fixture's answers are not in the fixed order by count
    assert train.answers.itos == [PAD, UNK, *SORT_OF_CLEVR_ANSWERS] and len(train.answers) == 12
    assert [train.answers.itos[int(d.y)] for d in train] == answers
    test = SortOfClevr(root, "test", builder=seq_builder())
    assert train.vocab == test.vocab and train.answers == test.answers


def test_val_is_carved_from_the_end_of_train(root):
    train = SortOfClevr(root, "train", val_images=3, builder=seq_builder())
    val = SortOfClevr(root, "val", val_images=3, builder=seq_builder())
    file_train, _ = read_sort_of_clevr(root / "sort_of_clevr.pickle")
    assert len(train) == 9 * 9 and len(val) == 3 * 9
    assert torch.equal(val.images, torch.stack([s.image for s in file_train[9:]]))
    assert torch.equal(train.images, torch.stack([s.image for s in file_train[:9]]))
    assert val[0].text == file_train[9].questions[0].question
    with pytest.raises(InputError, match="val_images=N"):
        SortOfClevr(root, "val", builder=seq_builder())


def test_batches_collate_with_the_images(root):
    ds = SortOfClevr(root, "test", grid=3, builder=seq_builder())
    batch = next(iter(DataLoader(ds, batch_size=6, shuffle=True)))
    assert batch.image.shape == (6, 3, 75, 75) and batch.y.shape == (6,)
    assert batch[REGION].num_nodes == 6 * 9 and batch[TOKEN].batch.max() == 5
    for k in range(6):
        assert torch.equal(batch.image[k], ds.images[int(batch.image_index[k])])


def test_generate_when_missing_and_missing_file(tmp_path):
    with pytest.raises(DataFormatError, match="downloads nothing"):
        SortOfClevr(tmp_path / "none", "train", builder=seq_builder())
    ds = SortOfClevr(
        tmp_path / "gen",
        "train",
        builder=seq_builder(),
        generate={"train_size": 3, "test_size": 1, "seed": 0, "questions_per_family": 2},
    )
    assert (tmp_path / "gen" / "sort_of_clevr.pickle").exists()
    assert len(ds) == 3 * 4 and {d.family for d in ds} == {"nonrel", "rel"}


def test_found_objects_are_the_six_objects_with_their_colour_grounded(root):
    builder = GraphBuilder(parser="sequential", region_edges=("spatial",), grounding=True)
    ds = SortOfClevr(root, "test", regions="segments", builder=builder)
    assert ds.processed_paths[0] != SortOfClevr(root, "test", builder=seq_builder()).processed_paths[0]
    _, test = read_sort_of_clevr(root / "sort_of_clevr.pickle")
    questions = [q for s in test for q in s.questions]
    assert len(ds) == len(questions)
    for data, q in zip(ds, questions):
        assert "image" not in data and data.text == q.question
        assert data[REGION].num_nodes == 6 and data[REGION].x.shape == (6, segment_feature_dim(8))
        colours = segment_colours(data[REGION].x, 8)
        assert sorted(colours) == sorted(SORT_OF_CLEVR_COLORS)  # one object of each colour, all found
        # Each named colour's phrase points at the region of that colour; the phrase that names the
        # answer's referents ("object closest", "other objects") at those regions.
        tokens = data.tokens
        named = {colours.index(c) for c in q.colors}
        by_word: dict = {}
        for t, r in data[GROUNDING_EDGE].edge_index.t().tolist():
            by_word.setdefault(tokens[t], set()).add(r)
        colour_words = {c for c in q.colors}
        assert set().union(*[v for w, v in by_word.items() if w in colour_words]) == named
        referents = by_word.get("object" if q.family == "rel" and q.subtype < 2 else "objects", set())
        if q.family == "ternary" and q.subtype == 1:
            referents = by_word.get("other", set())
        if q.family == "nonrel":
            assert set(by_word) <= colour_words | {"object"} and set().union(*by_word.values()) == named
        elif q.family == "rel" and q.subtype < 2:
            (closest,) = by_word["closest" if q.subtype == 0 else "furthest"]
            assert segment_shapes(data[REGION].x, 8)[closest] == (q.answer == "rectangle")
        elif q.answer in ("yes", "no"):
            assert bool(referents - named) == (q.answer == "yes")
        else:
            assert len(referents - named) == int(q.answer)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch[REGION].x.shape == (24, 256) and "image" not in batch


def test_colour_grounding_spans():
    text = "What is the shape of the object closest to the red object?"
    spans = colour_grounding(text, ["red"], ["blue", "red", None])
    assert spans == [{"start": 47, "end": 57, "object": 1}] and text[47:57] == "red object"
    assert colour_grounding(text, ["green"], ["blue", "red"]) == []  # no green region: nothing grounded
    assert colour_grounding("Is the gray one left?", ["gray"], ["gray"]) == [
        {"start": 7, "end": 11, "object": 0}
    ]


def test_referent_grounding_spans():
    from types import SimpleNamespace

    closest = SimpleNamespace(
        question="What is the shape of the object closest to the red object?", template="closest_shape"
    )
    spans = referent_grounding(closest, [3])
    assert spans == [{"start": 25, "end": 39, "object": 3}] and closest.question[25:39] == "object closest"
    count = SimpleNamespace(
        question="How many other objects have the same shape as the red object?", template="count_same_shape"
    )
    words = [count.question[g["start"] : g["end"]] for g in referent_grounding(count, [1, 4])]
    assert words == ["other objects", "other objects"]
    assert referent_grounding(count, []) == []  # a count of 0 names nothing
    shape = SimpleNamespace(question="What is the shape of the red object?", template="shape")
    assert referent_grounding(shape, [2]) == []  # non-relational questions have no referent phrase


def test_found_referents_need_every_colour_once(root):
    _, test = read_sort_of_clevr(root / "sort_of_clevr.pickle")
    sample = test[0]
    regions = regions_from_segments(sample.image, crop=8)
    colours = segment_colours(regions.features, 8)
    found = found_referents(regions, colours, sample.questions, 8)
    assert found is not None and len(found) == len(sample.questions)
    for q, picked in zip(sample.questions, found):
        assert q.template == SORT_OF_CLEVR_TEMPLATES[SORT_OF_CLEVR_FAMILIES.index(q.family)][q.subtype]
        if q.template in ("closest_shape", "furthest_shape"):
            assert len(picked) == 1 and segment_shapes(regions.features, 8)[picked[0]] == (
                q.answer == "rectangle"
            )
    # A colour not found (or found twice): no referents, the colour phrases alone are grounded.
    assert found_referents(regions, [None] + colours[1:], sample.questions, 8) is None
    assert found_referents(regions, [colours[1]] + colours[1:], sample.questions, 8) is None


def test_unknown_regions_mode_is_refused(root):
    with pytest.raises(InputError, match="regions mode"):
        SortOfClevr(root, "test", regions="scene_graph", builder=seq_builder())
