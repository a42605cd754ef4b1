import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch_geometric.data import HeteroData
from torch_geometric.loader import DataLoader

from mmgraph.errors import InputError
from mmgraph.graph import (
    GraphBuilder,
    Sample,
    regions_from_detections,
    regions_from_feature_map,
    regions_from_scene_graph,
    sample_to_data,
    scene_graph_vocabularies,
)
from mmgraph.graph.vocab import Vocabulary
from mmgraph.typing import (
    DEP_EDGE,
    GEOMETRY_DIM,
    GROUNDING_EDGE,
    IMPLICIT_EDGE,
    NUM_DEP_LABELS,
    NUM_SPATIAL_CLASSES,
    REGION,
    REGION_TO_TOKEN,
    SEMANTIC_EDGE,
    SPATIAL_EDGE,
    TOKEN,
    TOKEN_TO_REGION,
)

TEXTS = [
    "what color is the cube left of the sphere?",
    "is there a red object?",
    "how many small things are there",
    "the large blue sphere is behind the cylinder",
]


def random_regions(num, dim=8, seed=0, size=(320.0, 240.0), sample_id=None):
    g = torch.Generator().manual_seed(seed)
    w, h = size
    xy = torch.rand(num, 2, generator=g) * torch.tensor([w * 0.8, h * 0.8])
    wh = (
        torch.rand(num, 2, generator=g) * torch.tensor([w * 0.2 - 2.0, h * 0.2 - 2.0]) + 2.0
    )  # inside the image
    boxes = torch.cat([xy, xy + wh], dim=1)
    return regions_from_detections(boxes, torch.randn(num, dim, generator=g), size, sample_id=sample_id)


@pytest.fixture(scope="module")
def seq_builder():
    b = GraphBuilder(parser="sequential", region_edges=("spatial", "knn"), knn_k=3)
    b.fit_vocab(TEXTS)
    return b


def test_builds_schema(seq_builder):
    data = seq_builder(Sample(random_regions(5), TEXTS[0], sample_id="q0", y=3))
    assert isinstance(data, HeteroData)
    data.validate(raise_on_error=True)
    assert data[REGION].x.shape == (5, 8)
    assert data[REGION].box.shape == (5, 4)
    assert float(data[REGION].box.min()) >= 0.0 and float(data[REGION].box.max()) <= 1.0
    assert data[TOKEN].x.dtype == torch.long and data[TOKEN].num_nodes == len(data.tokens)
    assert torch.equal(data[TOKEN].pos, torch.arange(data[TOKEN].num_nodes))
    t, r = data[TOKEN].num_nodes, data[REGION].num_nodes
    assert data[TOKEN_TO_REGION].edge_index.size(1) == t * r
    assert torch.equal(data[REGION_TO_TOKEN].edge_index, data[TOKEN_TO_REGION].edge_index.flip(0))
    assert data[SPATIAL_EDGE].edge_attr.shape == (data[SPATIAL_EDGE].edge_index.size(1), GEOMETRY_DIM)
    assert data[IMPLICIT_EDGE].edge_index.size(1) == 5 * 3
    assert data.sample_id == "q0" and data.y.tolist() == [3]
    assert repr(seq_builder) == (
        f"GraphBuilder(region_edges=['spatial', 'knn'], parser='sequential', cross='complete', "
        f"vocab={len(seq_builder.vocab)})"
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.integers(1, 12), min_size=1, max_size=5),
    texts=st.lists(st.sampled_from(TEXTS), min_size=5, max_size=5),
    seed=st.integers(0, 10_000),
)
def test_invariants_and_batching_equals_one_by_one(seq_builder, sizes, texts, seed):
    samples = [Sample(random_regions(n, seed=seed + i), texts[i], sample_id=i) for i, n in enumerate(sizes)]
    many = seq_builder.build_many(samples)
    again = seq_builder.build_many(samples)
    for s, d, d2 in zip(samples, many, again):
        one = seq_builder(s)
        for store_a, store_b, store_c in zip(d.stores, one.stores, d2.stores):
            assert set(store_a.keys()) == set(store_b.keys())
            for k in store_a.keys():
                a, b, c = store_a[k], store_b[k], store_c[k]
                if isinstance(a, torch.Tensor):
                    assert torch.equal(a, b), k  # batching = building one by one
                    assert torch.equal(a, c), k  # deterministic
                else:
                    assert a == b == c
        r, t = d[REGION].num_nodes, d[TOKEN].num_nodes
        for et in d.edge_types:
            ei = d[et].edge_index
            n_src = r if et[0] == REGION else t
            n_dst = r if et[2] == REGION else t
            if ei.numel():
                assert int(ei[0].max()) < n_src and int(ei[1].max()) < n_dst
                assert int(ei.min()) >= 0
        if d[SPATIAL_EDGE].edge_index.numel():
            types = d[SPATIAL_EDGE].edge_type
            assert int(types.min()) >= 1 and int(types.max()) < NUM_SPATIAL_CLASSES
        if d[DEP_EDGE].edge_index.numel():
            assert int(d[DEP_EDGE].edge_type.max()) < NUM_DEP_LABELS


def test_batches_collate_with_pyg_loader(seq_builder):
    datas = seq_builder.build_many(
        [Sample(random_regions(n, seed=n), TEXTS[n % 4], f"s{n}") for n in (3, 7, 1)]
    )
    batch = next(iter(DataLoader(datas, batch_size=3)))
    assert batch.num_graphs == 3
    assert batch[REGION].num_nodes == 11
    assert batch[REGION].batch.tolist() == [0] * 3 + [1] * 7 + [2]
    # Edge indices are offset per graph by PyG.
    assert int(batch[SPATIAL_EDGE].edge_index.max()) < 11
    assert batch.sample_id == ["s3", "s7", "s1"]
    assert batch.tokens[1] == datas[1].tokens


def test_transform_and_pre_transform_path(seq_builder):
    sample = Sample(random_regions(4), TEXTS[1], sample_id="raw", extra={"question_id": 17})
    raw = sample_to_data(sample)
    built = seq_builder(raw)
    direct = seq_builder(sample)
    assert torch.equal(built[TOKEN].x, direct[TOKEN].x)
    assert torch.equal(built[SPATIAL_EDGE].edge_index, direct[SPATIAL_EDGE].edge_index)
    assert built.question_id == 17


def test_feature_map_regions_build():
    b = GraphBuilder(parser="sequential", region_edges=("knn",), knn_k=4)
    b.fit_vocab(TEXTS)
    data = b(Sample(regions_from_feature_map(torch.randn(16, 3, 4)), TEXTS[2], "grid"))
    assert data[REGION].x.shape == (12, 16)
    assert data[IMPLICIT_EDGE].edge_index.size(1) == 12 * 4


def test_scene_graph_regions_semantic_edges_and_topk_cross():
    objects = [
        {"name": "cube", "attributes": ["red"], "box": [10, 10, 50, 50]},
        {"name": "sphere", "attributes": ["blue", "small"], "box": [80, 20, 120, 60]},
        {"name": "cylinder", "attributes": [], "box": [40, 70, 90, 110]},
    ]
    relations = [(0, "left of", 1), (2, "below", 0)]
    labels, attrs, preds = scene_graph_vocabularies([(objects, relations)])
    regions = regions_from_scene_graph(objects, relations, (128, 128), labels, attrs, preds)
    b = GraphBuilder(parser="sequential", cross="topk", cross_k=1)
    b.fit_vocab(["is the red cube left of the sphere"])
    data = b(Sample(regions, "is the red cube left of the sphere", "sg"))
    assert "x" not in data[REGION]
    assert data[REGION].num_nodes == 3
    assert data[SEMANTIC_EDGE].edge_index.tolist() == [[0, 2], [1, 0]]
    cross = data[TOKEN_TO_REGION].edge_index
    tokens = data.tokens
    # "cube" and "red" point at the cube, "sphere" at the sphere.
    by_token = {tokens[t]: r for t, r in cross.t().tolist()}
    assert by_token["cube"] == 0 and by_token["red"] == 0 and by_token["sphere"] == 1
    assert cross.size(1) == len(tokens)  # k = 1 region per token


def test_grounded_cross_edges():
    b = GraphBuilder(parser="sequential", cross="grounded")
    text = "a red cube and a sphere"
    b.fit_vocab([text])
    grounding = [{"start": 2, "end": 10, "object": 1}, {"start": 17, "end": 23, "object": 0}]
    data = b(Sample(random_regions(2), text, "g", grounding=grounding))
    pairs = {(data.tokens[t], r) for t, r in data[TOKEN_TO_REGION].edge_index.t().tolist()}
    assert pairs == {("red", 1), ("cube", 1), ("sphere", 0)}
    with pytest.raises(InputError, match="names region 5"):
        b(Sample(random_regions(2), text, "g", grounding=[{"start": 0, "end": 1, "object": 5}]))
    with pytest.raises(InputError, match="needs sample.grounding"):
        b(Sample(random_regions(2), text, "g"))


@pytest.mark.spacy
def test_spacy_dependency_edges_in_graph():
    pytest.importorskip("spacy")
    b = GraphBuilder(parser="spacy")
    b.fit_vocab(["the red cube is left of the sphere"])
    data = b(Sample(random_regions(3), "the red cube is left of the sphere", "dep"))
    tokens = data.tokens
    arcs = {(tokens[h], tokens[d]) for h, d in data[DEP_EDGE].edge_index.t().tolist()}
    assert ("cube", "red") in arcs  # amod
    assert ("of", "sphere") in arcs  # pobj


def test_add_cls_token(seq_builder):
    b = GraphBuilder(vocab=seq_builder.vocab, parser="sequential", add_cls=True)
    data = b(Sample(random_regions(3), TEXTS[1], "cls"))
    assert int(data[TOKEN].x[0]) == b.vocab["<cls>"]
    cross = data[TOKEN_TO_REGION].edge_index
    assert cross.size(1) == data[TOKEN].num_nodes * 3
    assert int(data[DEP_EDGE].edge_index.min()) >= 1  # the cls node has no dependency arcs


def test_bad_input_errors(seq_builder):
    r = random_regions(3)
    with pytest.raises(InputError, match="sample 'e'.*empty or whitespace"):
        seq_builder(Sample(r, "   ", "e"))
    with pytest.raises(InputError, match="sample 'b2'.*size 4.*'b1'.*has 8"):
        seq_builder.build_many([Sample(r, TEXTS[0], "b1"), Sample(random_regions(3, dim=4), TEXTS[0], "b2")])
    with pytest.raises(InputError, match="no vocabulary"):
        GraphBuilder(parser="sequential")(Sample(r, TEXTS[0], "v"))
    with pytest.raises(InputError, match="unknown region edge kinds"):
        GraphBuilder(parser="sequential", region_edges=("spatial", "radius"))
    with pytest.raises(InputError, match="choose one"):
        GraphBuilder(parser="sequential", region_edges=("knn", "complete"))
    with pytest.raises(InputError, match="unknown cross mode"):
        GraphBuilder(parser="sequential", cross="all")
    with pytest.raises(InputError, match="spatial_max_distance"):
        GraphBuilder(parser="sequential", spatial_max_distance=0)
    with pytest.raises(InputError, match="takes Sample objects"):
        seq_builder("not a sample")


def test_long_text_is_truncated_with_a_warning():
    b = GraphBuilder(vocab=Vocabulary(["word"]), parser="sequential", max_tokens=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = b(Sample(random_regions(2), " ".join(["word"] * 12), "long"))
    assert data[TOKEN].num_nodes == 5
    assert any("sample 'long'" in str(w.message) and "truncated" in str(w.message) for w in caught)
    assert int(data[DEP_EDGE].edge_index.max()) < 5


def test_build_many_in_chunks_equals_one_by_one(seq_builder, monkeypatch):
    import mmgraph.graph.builder as builder_module

    monkeypatch.setattr(builder_module, "_PAIRS_PER_CHUNK", 50)  # a few graphs per chunk, one when large
    samples = [Sample(random_regions(n, seed=n), TEXTS[n % 4], n) for n in (3, 9, 4, 2, 8, 5)]
    for many, s in zip(seq_builder.build_many(samples), samples):
        one = seq_builder(s)
        for et in one.edge_types:
            assert torch.equal(many[et].edge_index, one[et].edge_index)
            if "edge_attr" in one[et]:
                assert torch.equal(many[et].edge_attr, one[et].edge_attr)


def test_spatial_max_distance_reaches_the_spatial_edges():
    # Regions spread over the whole image: some pairs lie beyond ReGAT's half-diagonal cut-off.
    regions = random_regions(8, seed=4)  # 16 of its 56 ordered pairs lie beyond the cut-off
    text = TEXTS[0]
    graphs = {}
    for cut in (0.5, None):
        b = GraphBuilder(parser="sequential", spatial_max_distance=cut)
        b.fit_vocab([text])
        assert b.config["spatial_max_distance"] == cut
        graphs[cut] = b(Sample(regions, text, "s"))[SPATIAL_EDGE]
    assert graphs[None].edge_index.size(1) == 8 * 7
    assert graphs[0.5].edge_index.size(1) == 8 * 7 - 16
    assert graphs[None].edge_attr.shape == (8 * 7, GEOMETRY_DIM)


def test_grounding_edges_are_stored_apart_from_the_cross_edges():
    text = "a red cube and a sphere"
    grounding = [{"start": 2, "end": 10, "object": 1}, {"start": 17, "end": 23, "object": 0}]
    b = GraphBuilder(parser="sequential", grounding=True)
    b.fit_vocab([text])
    assert b.config["grounding"] is True
    data = b(Sample(random_regions(2), text, "g", grounding=grounding))
    pairs = {(data.tokens[t], r) for t, r in data[GROUNDING_EDGE].edge_index.t().tolist()}
    assert pairs == {("red", 1), ("cube", 1), ("sphere", 0)}
    assert data[TOKEN_TO_REGION].edge_index.size(1) == len(data.tokens) * 2  # cross edges stay complete
    # A sample without grounding gets no pairs, and batches with grounded ones.
    bare = b(Sample(random_regions(3), text, "bare"))
    assert bare[GROUNDING_EDGE].edge_index.shape == (2, 0)
    batch = next(iter(DataLoader([data, bare], batch_size=2)))
    assert batch[GROUNDING_EDGE].edge_index.size(1) == 3
    # With a <cls> node in front, token ids shift by one.
    cls = GraphBuilder(vocab=b.vocab, parser="sequential", grounding=True, add_cls=True)
    shifted = cls(Sample(random_regions(2), text, "g", grounding=grounding))[GROUNDING_EDGE].edge_index
    assert torch.equal(shifted, data[GROUNDING_EDGE].edge_index + torch.tensor([[1], [0]]))
    # Off by default: no such edge type.
    plain = GraphBuilder(vocab=b.vocab, parser="sequential")
    assert GROUNDING_EDGE not in plain(Sample(random_regions(2), text, "g", grounding=grounding)).edge_types
