import pytest
import torch
from torch_geometric.data import Batch, HeteroData
from torch_geometric.loader import DataLoader

from mmgraph.datasets.synthetic_graphs import SyntheticRetrieval, SyntheticVQA
from mmgraph.graph import GraphBuilder
from mmgraph.graph.collate import GraphLoader, collate_graphs, collate_stored, to_device

GENERATE = dict(num_images=6, questions_per_image=3, captions_per_image=2, seed=3, image_size=24)


def _same(a, b, where="value"):
    """Deep equality of batch values: tensors (dtype and shape too), lists, dicts, scalars."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for key in a:
            _same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _assert_same_batch(fast, slow):
    assert type(fast) is type(slow) and fast.num_graphs == slow.num_graphs
    assert [s._key for s in fast.stores] == [s._key for s in slow.stores]
    for f, s in zip(fast.stores, slow.stores):
        assert list(f.keys()) == list(s.keys()), f._key
        for key in s.keys():
            _same(f[key], s[key], f"{f._key}.{key}")
    _same(fast._slice_dict, slow._slice_dict, "slice_dict")
    _same(fast._inc_dict, slow._inc_dict, "inc_dict")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    builder = GraphBuilder(parser="sequential", region_edges=("spatial", "knn"), knn_k=2, reverse_dep=True)
    return {
        "scene_graph": SyntheticVQA(root, "train", builder=builder, generate=GENERATE),
        "pixels": SyntheticVQA(root, "train", regions="pixels", grid=3, builder=builder, generate=GENERATE),
        "retrieval": SyntheticRetrieval(root, "train", builder=builder, generate=GENERATE),
    }


@pytest.mark.parametrize("name", ["scene_graph", "pixels", "retrieval"])
def test_equals_pyg_batching_field_for_field(datasets, name):
    ds = datasets[name]
    graphs = [ds[i] for i in torch.randperm(len(ds))[:7].tolist()]
    fast, slow = collate_graphs(graphs), Batch.from_data_list(graphs)
    _assert_same_batch(fast, slow)
    # The batch splits back into its graphs, edge indices decremented.
    for i, graph in enumerate(graphs):
        _assert_same_batch(collate_graphs([fast.get_example(i)]), Batch.from_data_list([graph]))
    _assert_same_batch(collate_graphs(graphs[:1]), Batch.from_data_list(graphs[:1]))


def test_graphs_without_nodes_or_edges_and_plain_values():
    def graph(regions, tokens, edges, label):
        data = HeteroData()
        data["region"].x = torch.randn(regions, 3)
        data["token"].x = torch.arange(tokens)
        data["token", "dep", "token"].edge_index = torch.randint(0, max(tokens, 1), (2, edges))
        data["token", "cross", "region"].edge_index = torch.stack(
            torch.meshgrid(torch.arange(tokens), torch.arange(regions), indexing="ij")
        ).flatten(1)
        data.y, data.weight, data.flag, data.text, data.tokens = label, 0.5, True, f"q{label}", ["a", "b"]
        return data

    graphs = [graph(3, 4, 2, 0), graph(0, 2, 1, 1), graph(2, 0, 0, 2), graph(1, 1, 1, 3)]
    fast = collate_graphs(graphs)
    _assert_same_batch(fast, Batch.from_data_list(graphs))
    assert fast.y.tolist() == [0, 1, 2, 3] and fast.text == ["q0", "q1", "q2", "q3"]


def test_other_graphs_go_to_pyg_and_empty_lists_fail(datasets):
    ds = datasets["scene_graph"]
    a, b = ds[0], ds[1].clone()
    b.extra = torch.ones(1)  # another schema
    _assert_same_batch(collate_graphs([a, b, a]), Batch.from_data_list([a, b, a]))
    with pytest.raises(ValueError, match="empty"):
        collate_graphs([])


@pytest.mark.parametrize("name", ["scene_graph", "retrieval", "pixels"])
def test_graph_loader_gives_pyg_loader_batches(datasets, name):
    ds = datasets[name]
    fast = list(GraphLoader(ds, batch_size=5))
    slow = list(DataLoader(ds, batch_size=5))
    assert len(fast) == len(slow)
    for f, s in zip(fast, slow):
        _assert_same_batch(f, s)
    # Shuffled, from a subset of the data set: the same order from the same generator.
    part = ds[torch.arange(1, len(ds), 2)]
    fast = list(GraphLoader(part, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(5)))
    slow = list(DataLoader(part, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(5)))
    for f, s in zip(fast, slow):
        _assert_same_batch(f, s)
    with pytest.raises(TypeError, match="collate_fn"):
        GraphLoader(ds, collate_fn=list)


@pytest.mark.parametrize("name", ["scene_graph", "pixels"])
def test_batches_gathered_from_storage_equal_graph_by_graph(datasets, name):
    ds = datasets[name]
    for ids in ([4, 0, 0, 9, len(ds) - 1], [2], list(range(len(ds)))):
        fast = collate_stored(ds._data, ds.slices, ids)
        assert fast is not None
        _assert_same_batch(fast, Batch.from_data_list([ds[i] for i in ids]))
        _assert_same_batch(ds.get_batch(ids), fast)
        # ...and splits back into the stored graphs.
        last = len(ids) - 1
        _assert_same_batch(collate_graphs([fast.get_example(last)]), collate_graphs([ds[ids[last]]]))
    with pytest.raises(IndexError, match="out of range"):
        ds.get_batch([0, len(ds)])


def test_get_batch_falls_back_graph_by_graph(datasets):
    # Lists of tensors (the retrieval negatives) are not gathered from storage...
    ds = datasets["retrieval"]
    assert collate_stored(ds._data, ds.slices, [0, 1]) is None
    _assert_same_batch(ds.get_batch([3, 1]), Batch.from_data_list([ds[3], ds[1]]))
    # ...nor graphs a transform changes.
    scene = datasets["scene_graph"]

    def mark(data):
        data = data.clone()
        data.y = data.y + 100
        return data

    scene.transform = mark
    try:
        batch = scene.get_batch([0, 2])
        assert batch.y.min() >= 100
        _assert_same_batch(batch, Batch.from_data_list([scene[0], scene[2]]))
    finally:
        scene.transform = None


def test_to_device_skips_a_batch_already_there_and_moves_one_that_is_not(datasets, monkeypatch):
    batch = collate_graphs([datasets["scene_graph"][i] for i in range(4)])
    pyg_to = type(batch).to

    def counted_to(self, *args, **kwargs):
        calls.append(args)
        return pyg_to(self, *args, **kwargs)

    calls = []
    monkeypatch.setattr(type(batch), "to", counted_to)
    assert to_device(batch, "cpu") is batch and to_device(batch, torch.device("cpu")) is batch
    assert calls == []  # nothing to move: PyG's walk over every store is skipped
    moved = to_device(batch, "meta")  # a device other than the tensors': PyG moves every store
    assert len(calls) == 1
    for store in moved.stores:
        for key, value in store.items():
            if isinstance(value, torch.Tensor):
                assert value.device.type == "meta", f"{store._key}.{key}"
    assert to_device(moved, "meta") is moved and len(calls) == 1  # now already there
    # One tensor elsewhere is enough to move the whole batch.
    moved["region"].box = torch.zeros(moved["region"].box.shape)
    assert to_device(moved, "meta")["region"].box.device.type == "meta" and len(calls) == 2
    assert to_device(torch.zeros(3), "meta").device.type == "meta"
