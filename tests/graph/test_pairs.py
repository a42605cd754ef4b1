import pytest
import torch
from torch_geometric.data import Batch

from mmgraph.datasets.synthetic_graphs import SyntheticRetrieval
from mmgraph.errors import InputError
from mmgraph.graph import GraphBuilder, Regions, Sample
from mmgraph.graph.pairs import negative_pairs, pair_batch, pair_graph, pair_graphs, text_graphs
from mmgraph.typing import (
    DEP_EDGE,
    REGION,
    REGION_TO_TOKEN,
    SEMANTIC_EDGE,
    SPATIAL_EDGE,
    TOKEN,
    TOKEN_TO_REGION,
)

GENERATE = dict(num_images=6, questions_per_image=1, captions_per_image=2, seed=3, image_size=24)
TEXTS = ["a red cube left of a small sphere", "is there a blue cone", "two spheres"]


def _builder(**kwargs):
    return GraphBuilder(
        parser="sequential", region_edges=("spatial", "knn"), knn_k=2, reverse_dep=True, **kwargs
    )


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    return {
        mode: SyntheticRetrieval(root, "train", regions=mode, grid=2, builder=_builder(), generate=GENERATE)
        for mode in ("scene_graph", "pixels")
    }


def _regions(seed, num):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(num, 2, generator=g) * 60
    boxes = torch.cat([xy, xy + 5 + torch.rand(num, 2, generator=g) * 30], 1)
    return Regions(
        boxes,
        (100.0, 100.0),
        features=torch.randn(num, 6, generator=g),
        labels=torch.randint(0, 4, (num,), generator=g),
        semantic_edge_index=torch.tensor([[0, 1], [1, 2]]),
        semantic_edge_type=torch.tensor([3, 1]),
    )


def _assert_same_graph(a, b):
    assert set(a.node_types) == set(b.node_types)
    assert set(a.edge_types) == set(b.edge_types)
    for store_a in a.node_stores + a.edge_stores:
        store_b = b[store_a._key]
        assert set(store_a.keys()) == set(store_b.keys()), store_a._key
        for key, value in store_a.items():
            if isinstance(value, torch.Tensor):
                torch.testing.assert_close(value, store_b[key], msg=f"{store_a._key}.{key}")
            else:
                assert value == store_b[key]


def _assert_schema(graph):
    graph.validate(raise_on_error=True)
    num_regions, num_tokens = graph[REGION].num_nodes, graph[TOKEN].num_nodes
    for edge_type in graph.edge_types:
        edge_index = graph[edge_type].edge_index
        src, _, dst = edge_type
        assert edge_index.dtype == torch.long
        if edge_index.numel():
            assert int(edge_index[0].max()) < graph[src].num_nodes
            assert int(edge_index[1].max()) < graph[dst].num_nodes
            assert int(edge_index.min()) >= 0
    assert graph[TOKEN_TO_REGION].edge_index.size(1) == num_regions * num_tokens
    torch.testing.assert_close(graph[REGION_TO_TOKEN].edge_index, graph[TOKEN_TO_REGION].edge_index.flip(0))


@pytest.mark.parametrize("add_cls", [False, True])
def test_pair_equals_building_the_pair_directly(add_cls):
    builder = _builder(add_cls=add_cls)
    builder.fit_vocab(TEXTS)
    first, second = _regions(0, 4), _regions(1, 3)
    a = builder(Sample(first, TEXTS[0], "a"))
    b = builder(Sample(second, TEXTS[1], "b"))
    direct = builder(Sample(first, TEXTS[1], "a|b"))
    pair = pair_graph(a, b)
    _assert_schema(pair)
    _assert_same_graph(pair, direct)
    assert pair.text == TEXTS[1] and pair.tokens == direct.tokens
    torch.testing.assert_close(pair.image_size, direct.image_size)
    assert pair.pair_index.tolist() == [[0, 0]]


def test_pair_graph_sides_and_edge_counts(datasets):
    ds = datasets["scene_graph"]
    image, text = ds[0], ds[3]
    pair = pair_graph(image, text)
    _assert_schema(pair)
    for key in ("box", "label", "attr"):
        torch.testing.assert_close(pair[REGION][key], image[REGION][key])
    torch.testing.assert_close(pair[TOKEN].x, text[TOKEN].x)
    for edge_type, source in ((SPATIAL_EDGE, image), (SEMANTIC_EDGE, image), (DEP_EDGE, text)):
        assert pair[edge_type].edge_index.size(1) == source[edge_type].edge_index.size(1)
        torch.testing.assert_close(pair[edge_type].edge_type, source[edge_type].edge_type)
    assert pair[TOKEN_TO_REGION].edge_index.size(1) == image[REGION].num_nodes * text[TOKEN].num_nodes
    assert pair.image_id == image.image_id and pair.text == text.text
    assert "negatives" not in pair


def test_pair_batch_equals_pairing_one_by_one(datasets):
    ds = datasets["scene_graph"]
    graphs = [ds[i] for i in range(5)]
    batch = Batch.from_data_list(graphs)
    pairs = [(0, 4), (3, 3), (4, 0), (2, 1), (2, 2)]
    out = pair_batch(batch, batch, pairs)
    assert out.num_graphs == len(pairs)
    assert out.pair_index.tolist() == [list(p) for p in pairs]
    assert out[REGION].batch.tolist() == sorted(out[REGION].batch.tolist())
    for (i, j), graph in zip(pairs, out.to_data_list()):
        _assert_schema(graph)
        _assert_same_graph(graph, pair_graph(graphs[i], graphs[j]))
    # Collating the unbatched pairs again gives the same batch.
    again = Batch.from_data_list(pair_graphs(graphs, graphs, pairs))
    for edge_type in out.edge_types:
        torch.testing.assert_close(out[edge_type].edge_index, again[edge_type].edge_index)


def test_pixel_pairs_carry_the_image(datasets):
    ds = datasets["pixels"]
    pair = pair_graph(ds[0], ds[2])
    torch.testing.assert_close(pair.image, ds[0].image)
    _assert_schema(pair)


def test_pair_errors(datasets):
    ds = datasets["scene_graph"]
    with pytest.raises(InputError, match="token-side"):
        pair_batch([ds[0]], [ds[1]], [(0, 1)])
    with pytest.raises(InputError, match=r"\[P, 2\]"):
        pair_batch([ds[0]], [ds[1]], [0, 0])
    with pytest.raises(InputError, match="one HeteroData"):
        pair_graph(Batch.from_data_list([ds[0]]), ds[1])


def test_negative_pairs_use_the_builder(datasets):
    ds = datasets["scene_graph"]
    batch = Batch.from_data_list([ds[i] for i in range(3)])
    negatives = negative_pairs(batch, ds.builder)
    expected = [(g, text) for g in range(3) for text in ds[g].negatives]
    assert negatives.num_graphs == len(expected) > 0
    for (g, text), graph in zip(expected, negatives.to_data_list()):
        _assert_schema(graph)
        assert graph.text == text and int(graph.pair_index[0, 0]) == g
        torch.testing.assert_close(graph[REGION].label, ds[g][REGION].label)
        built = ds.builder(Sample(_regions(5, 3), text))
        torch.testing.assert_close(graph[TOKEN].x, built[TOKEN].x)
        torch.testing.assert_close(graph[DEP_EDGE].edge_index, built[DEP_EDGE].edge_index)


def test_text_graphs_ignore_the_builders_cross_mode():
    builder = _builder(cross="grounded")
    builder.fit_vocab(TEXTS)
    graphs = text_graphs(TEXTS, builder)
    assert [g.text for g in graphs] == TEXTS
    assert builder.cross == "grounded"  # the builder itself is left as it was
    assert text_graphs([], builder) == []
