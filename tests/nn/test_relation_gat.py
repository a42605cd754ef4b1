import pytest
import torch
from torch import nn
from torch_geometric.data import HeteroData
from torch_geometric.nn import HeteroConv, to_hetero
from torch_geometric.utils import to_torch_coo_tensor, to_torch_csr_tensor

from mmgraph.errors import InputError
from mmgraph.nn import RelationGATConv
from mmgraph.nn import scatter as scatter_module
from mmgraph.nn.scatter import scatter_sum
from mmgraph.typing import (
    DEP_EDGE,
    GEOMETRY_DIM,
    NUM_SPATIAL_CLASSES,
    REGION,
    SPATIAL_EDGE,
    TOKEN,
    TOKEN_TO_REGION,
)


def _graph(num_nodes=8, num_edges=20, num_relations=NUM_SPATIAL_CLASSES, offset=0):
    """A random graph without duplicate edges (a sparse adjacency would merge them)."""
    edge_index = torch.randint(0, num_nodes, (2, num_edges))
    edge_index = torch.unique(edge_index, dim=1) + offset
    num = edge_index.size(1)
    return edge_index, torch.randint(0, num_relations, (num,)), torch.randn(num, GEOMETRY_DIM)


def _randomise(conv):
    # Relation parameters start at zero; give them values so that relations matter in tests.
    with torch.no_grad():
        for param in conv.parameters():
            if not isinstance(param, nn.parameter.UninitializedParameter):
                param.normal_(0.0, 0.3)
    return conv


def _full_conv(num_relations=NUM_SPATIAL_CLASSES, **kwargs):
    args = dict(heads=2, edge_dim=GEOMETRY_DIM, cond_dim=5, num_bases=3)
    args.update(kwargs)
    return _randomise(RelationGATConv(16, 8, num_relations, **args))


def test_output_shapes_and_repr():
    x = torch.randn(8, 16)
    edge_index, edge_type, edge_attr = _graph()
    conv = RelationGATConv(16, 8, num_relations=NUM_SPATIAL_CLASSES, heads=4)
    assert repr(conv) == "RelationGATConv(16, 8, num_relations=13, heads=4)"
    assert conv(x, edge_index, edge_type).shape == (8, 32)
    conv = RelationGATConv(16, 8, num_relations=NUM_SPATIAL_CLASSES, heads=4, concat=False)
    assert conv(x, edge_index, edge_type).shape == (8, 8)
    conv = RelationGATConv((16, 6), 8, num_relations=2, heads=2)
    assert repr(conv) == "RelationGATConv((16, 6), 8, num_relations=2, heads=2)"
    x_dst = torch.randn(5, 6)
    bip = torch.stack([torch.randint(0, 8, (12,)), torch.randint(0, 5, (12,))])
    assert conv((x, x_dst), bip).shape == (5, 16)


def test_lazy_in_channels():
    conv = RelationGATConv(-1, 8, num_relations=3, heads=2, edge_dim=GEOMETRY_DIM, cond_dim=-1)
    edge_index, edge_type, edge_attr = _graph(num_relations=3)
    out = conv(torch.randn(8, 11), edge_index, edge_type, edge_attr, cond=torch.randn(1, 7))
    assert out.shape == (8, 16)
    assert conv.lin_src.in_channels == 11


def test_gradients_reach_every_parameter():
    conv = _full_conv(add_self_loops=True)
    x = torch.randn(8, 16)
    edge_index, edge_type, edge_attr = _graph()
    batch = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    out = conv(x, edge_index, edge_type, edge_attr, cond=torch.randn(2, 5), batch=batch)
    (out**2).sum().backward()
    for name, param in conv.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_cond_geometry_starts_as_the_unconditioned_layer_and_trains():
    torch.manual_seed(0)
    plain = _full_conv()
    conditioned = RelationGATConv(
        16,
        8,
        NUM_SPATIAL_CLASSES,
        heads=2,
        edge_dim=GEOMETRY_DIM,
        cond_dim=5,
        num_bases=3,
        cond_geometry=True,
    )
    assert conditioned.lin_cond_geo.weight.abs().sum() == 0
    state = plain.state_dict()
    state["lin_cond_geo.weight"] = conditioned.lin_cond_geo.weight.detach().clone()
    conditioned.load_state_dict(state)
    x, edge_index, edge_type, edge_attr, batch = _batch_of_graphs()
    cond = torch.randn(2, 5)
    out = conditioned(x, edge_index, edge_type, edge_attr, cond, batch=batch)
    torch.testing.assert_close(out, plain(x, edge_index, edge_type, edge_attr, cond, batch=batch))
    out.pow(2).sum().backward()
    assert conditioned.lin_cond_geo.weight.grad.abs().sum() > 0


def test_cond_geometry_lets_each_graph_weigh_the_same_geometry_differently():
    # Two copies of one graph whose nodes all carry the same state and whose edges share one relation
    # class: only the geometry tells a node's edges apart, and only the conditions tell the copies apart.
    edge_index, _, edge_attr = _graph(6, 18)
    x = torch.randn(1, 16).expand(12, 16)
    batch = torch.arange(2).repeat_interleave(6)
    both = torch.cat([edge_index, edge_index + 6], dim=1)
    edge_type = torch.zeros(both.size(1), dtype=torch.long)
    cond = torch.randn(2, 5)
    alphas = {}
    for cond_geometry in (False, True):
        torch.manual_seed(0)
        conv = _full_conv(cond_geometry=cond_geometry, num_bases=None).eval()
        _, (_, alpha) = conv(
            x, both, edge_type, edge_attr.repeat(2, 1), cond, batch=batch, return_attention_weights=True
        )
        alphas[cond_geometry] = alpha.chunk(2)
    torch.testing.assert_close(*alphas[False])  # the plain condition cancels in each softmax
    assert not torch.allclose(*alphas[True])


def test_cond_geometry_needs_edge_dim_and_cond_dim():
    for kwargs in (dict(edge_dim=GEOMETRY_DIM), dict(cond_dim=5)):
        with pytest.raises(InputError, match="cond_geometry"):
            RelationGATConv(16, 8, 3, cond_geometry=True, **kwargs)


def test_relation_class_geometry_and_condition_change_the_output():
    conv = _full_conv().eval()
    x = torch.randn(8, 16)
    edge_index, edge_type, edge_attr = _graph()
    cond = torch.randn(1, 5)
    base = conv(x, edge_index, edge_type, edge_attr, cond)
    assert not torch.allclose(
        base, conv(x, edge_index, (edge_type + 1) % NUM_SPATIAL_CLASSES, edge_attr, cond)
    )
    assert not torch.allclose(base, conv(x, edge_index, edge_type, edge_attr + 1.0, cond))
    assert not torch.allclose(base, conv(x, edge_index, edge_type, edge_attr, cond + 1.0))


def test_condition_shifts_attention_not_only_by_a_target_constant():
    # A condition term that only depended on the target would cancel in the softmax.
    conv = _randomise(RelationGATConv(16, 8, 1, heads=2, cond_dim=5)).eval()
    x = torch.randn(8, 16)
    edge_index, _, _ = _graph()
    _, (_, a1) = conv(x, edge_index, cond=torch.randn(1, 5), return_attention_weights=True)
    _, (_, a2) = conv(x, edge_index, cond=torch.randn(1, 5), return_attention_weights=True)
    assert not torch.allclose(a1, a2)


def test_permutation_equivariance():
    conv = _full_conv(add_self_loops=True).eval()
    x = torch.randn(8, 16)
    edge_index, edge_type, edge_attr = _graph()
    cond = torch.randn(1, 5)
    out = conv(x, edge_index, edge_type, edge_attr, cond)
    perm = torch.randperm(8)
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(8)
    # New node k is old node perm[k]; an old id i becomes inverse[i]. Edge order is shuffled too.
    edge_perm = torch.randperm(edge_index.size(1))
    out_perm = conv(
        x[perm], inverse[edge_index][:, edge_perm], edge_type[edge_perm], edge_attr[edge_perm], cond
    )
    torch.testing.assert_close(out_perm, out[perm], atol=1e-5, rtol=1e-5)


def test_graph_alone_equals_graph_in_batch():
    conv = _full_conv(add_self_loops=True).eval()
    x1, x2 = torch.randn(6, 16), torch.randn(9, 16)
    g1, g2 = _graph(6, 15), _graph(9, 25)
    cond = torch.randn(2, 5)
    alone = conv(x1, g1[0], g1[1], g1[2], cond[:1])
    edge_index = torch.cat([g1[0], g2[0] + 6], dim=1)
    batch = torch.cat([torch.zeros(6, dtype=torch.long), torch.ones(9, dtype=torch.long)])
    both = conv(
        torch.cat([x1, x2]),
        edge_index,
        torch.cat([g1[1], g2[1]]),
        torch.cat([g1[2], g2[2]]),
        cond,
        batch=batch,
    )
    torch.testing.assert_close(both[:6], alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both[6:], conv(x2, g2[0], g2[1], g2[2], cond[1:]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_edge_index_and_sparse_adjacency_agree(layout):
    conv = _full_conv(cond_dim=None, edge_dim=None).eval()
    x = torch.randn(8, 16)
    edge_index, edge_type, _ = _graph()
    to_sparse = to_torch_coo_tensor if layout == "coo" else to_torch_csr_tensor
    # Uniform relations: a plain 0/1 adjacency (PyG's adj_t: rows are targets).
    adj_t = to_sparse(edge_index.flip(0), size=(8, 8))
    torch.testing.assert_close(conv(x, adj_t), conv(x, edge_index), atol=1e-5, rtol=1e-5)
    # Relation classes carried as the integer values of the adjacency.
    adj_t = to_sparse(edge_index.flip(0), edge_type, size=(8, 8))
    torch.testing.assert_close(conv(x, adj_t), conv(x, edge_index, edge_type), atol=1e-5, rtol=1e-5)


def test_sparse_adjacency_of_wrong_orientation_is_rejected():
    conv = RelationGATConv((16, 6), 8, 1)
    adj = to_torch_coo_tensor(torch.tensor([[0, 1], [2, 3]]), size=(8, 5))  # (src, dst), not adj_t
    with pytest.raises(InputError, match="adj_t"):
        conv((torch.randn(8, 16), torch.randn(5, 6)), adj)


def test_attention_weights_sum_to_one_per_target_and_head():
    conv = _full_conv(add_self_loops=True)
    x = torch.randn(8, 16)
    edge_index, edge_type, edge_attr = _graph()
    out, (used, alpha) = conv(
        x, edge_index, edge_type, edge_attr, torch.randn(1, 5), return_attention_weights=True
    )
    num_loops = 8
    assert used.shape == (2, edge_index.size(1) - int((edge_index[0] == edge_index[1]).sum()) + num_loops)
    assert alpha.shape == (used.size(1), 2)
    torch.testing.assert_close(scatter_sum(alpha, used[1], 8), torch.ones(8, 2))


def test_zero_edges_do_not_crash():
    conv = _full_conv()
    x = torch.randn(8, 16)
    empty = torch.empty(2, 0, dtype=torch.long)
    out, (used, alpha) = conv(
        x, empty, torch.empty(0, dtype=torch.long), torch.empty(0, GEOMETRY_DIM), torch.randn(1, 5),
        return_attention_weights=True,
    )  # fmt: skip
    assert out.shape == (8, 16) and alpha.shape == (0, 2)
    torch.testing.assert_close(out, conv.bias.expand(8, -1))
    out.sum().backward()


def test_bad_edge_type_is_rejected():
    conv = RelationGATConv(16, 8, num_relations=3)
    edge_index, _, _ = _graph()
    with pytest.raises(InputError, match="num_relations"):
        conv(torch.randn(8, 16), edge_index, torch.full((edge_index.size(1),), 3))
    with pytest.raises(InputError, match="shape"):
        conv(torch.randn(8, 16), edge_index, torch.zeros(edge_index.size(1) + 1, dtype=torch.long))


def test_cond_with_several_graphs_needs_batch():
    conv = _full_conv()
    edge_index, edge_type, edge_attr = _graph()
    with pytest.raises(InputError, match="batch"):
        conv(torch.randn(8, 16), edge_index, edge_type, edge_attr, cond=torch.randn(2, 5))


def _hetero_data():
    data = HeteroData()
    data[REGION].x = torch.randn(6, 16)
    data[TOKEN].x = torch.randn(5, 12)
    data[SPATIAL_EDGE].edge_index = _graph(6, 14)[0]
    data[DEP_EDGE].edge_index = _graph(5, 8)[0]
    data[TOKEN_TO_REGION].edge_index = torch.stack([torch.randint(0, 5, (10,)), torch.randint(0, 6, (10,))])
    return data


def test_inside_to_hetero():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = RelationGATConv(-1, 8, num_relations=1, heads=2)

        def forward(self, x, edge_index):
            return self.conv(x, edge_index)

    data = _hetero_data()
    model = to_hetero(Net(), data.metadata(), aggr="sum")
    out = model(data.x_dict, data.edge_index_dict)
    assert out[REGION].shape == (6, 16) and out[TOKEN].shape == (5, 16)
    out[REGION].sum().backward()


def test_inside_hetero_conv():
    data = _hetero_data()
    conv = HeteroConv(
        {
            SPATIAL_EDGE: RelationGATConv(16, 8, NUM_SPATIAL_CLASSES, heads=2, edge_dim=GEOMETRY_DIM),
            DEP_EDGE: RelationGATConv(12, 8, 4, heads=2),
            TOKEN_TO_REGION: RelationGATConv((12, 16), 8, 1, heads=2),
        },
        aggr="sum",
    )
    num_spatial = data[SPATIAL_EDGE].edge_index.size(1)
    edge_type_dict = {
        SPATIAL_EDGE: torch.randint(1, NUM_SPATIAL_CLASSES, (num_spatial,)),
        DEP_EDGE: torch.randint(0, 4, (data[DEP_EDGE].edge_index.size(1),)),
    }
    out = conv(
        data.x_dict,
        data.edge_index_dict,
        edge_type_dict=edge_type_dict,
        edge_attr_dict={SPATIAL_EDGE: torch.randn(num_spatial, GEOMETRY_DIM)},
    )
    assert out[REGION].shape == (6, 16) and out[TOKEN].shape == (5, 16)


def test_trains_inside_a_plain_module():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = RelationGATConv(16, 8, 4, heads=2, edge_dim=GEOMETRY_DIM)
            self.conv2 = RelationGATConv(16, 3, 4, heads=1)

        def forward(self, x, edge_index, edge_type, edge_attr):
            return self.conv2(
                torch.relu(self.conv1(x, edge_index, edge_type, edge_attr)), edge_index, edge_type
            )

    model = Net()
    x = torch.randn(20, 16)
    edge_index, edge_type, edge_attr = _graph(20, 60, num_relations=4)
    target = torch.randint(0, 3, (20,))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x, edge_index, edge_type, edge_attr), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.skipif(not scatter_module.HAS_TORCH_SCATTER, reason="torch-scatter is not installed")
def test_pure_torch_and_torch_scatter_give_the_same_layer_output(monkeypatch):
    conv = _full_conv().eval()
    x = torch.randn(8, 16)
    edge_index, edge_type, edge_attr = _graph()
    cond = torch.randn(1, 5)
    fast = conv(x, edge_index, edge_type, edge_attr, cond)
    monkeypatch.setattr(scatter_module, "FORCE_PURE_TORCH", True)
    pure = conv(x, edge_index, edge_type, edge_attr, cond)
    torch.testing.assert_close(fast, pure, atol=1e-5, rtol=1e-5)


def _batch_of_graphs():
    x1, x2 = torch.randn(6, 16), torch.randn(9, 16)
    g1, g2 = _graph(6, 15), _graph(9, 25)
    x = torch.cat([x1, x2]).requires_grad_()
    edge_index = torch.cat([g1[0], g2[0] + 6], dim=1)
    edge_type, edge_attr = torch.cat([g1[1], g2[1]]), torch.cat([g1[2], g2[2]])
    batch = torch.cat([torch.zeros(6, dtype=torch.long), torch.ones(9, dtype=torch.long)])
    return x, edge_index, edge_type, edge_attr, batch


@pytest.mark.parametrize("cond_geometry", [False, True], ids=["", "cond_geometry"])
@pytest.mark.parametrize("num_bases", [None, 3])
@pytest.mark.parametrize("chunk_bytes", [512, 2**22], ids=["many_chunks", "one_chunk"])
# 13 classes: the relation biases are weighted per target and class ([N, R, heads]); 200: per edge.
@pytest.mark.parametrize("num_relations", [NUM_SPATIAL_CLASSES, 200], ids=["per_class", "per_edge"])
def test_memory_efficient_path_equals_propagate_with_gradients(
    monkeypatch, num_bases, chunk_bytes, num_relations, cond_geometry
):
    monkeypatch.setattr(scatter_module, "EDGE_CHUNK_BYTES", chunk_bytes)
    args = dict(num_bases=num_bases, add_self_loops=True, cond_geometry=cond_geometry)
    conv = _full_conv(num_relations, **args)
    reference = _full_conv(num_relations, memory_efficient=False, **args)
    reference.load_state_dict(conv.state_dict())
    x, edge_index, edge_type, edge_attr, batch = _batch_of_graphs()
    edges = edge_index.size(1) + x.size(0)  # with self-loops
    per_edge = edges * 8 <= x.size(0) * (num_relations + 1)
    assert per_edge == (num_relations == 200)
    cond = torch.randn(2, 5)
    weight = torch.randn(x.size(0), 16)
    outs, grads = [], []
    for layer in (conv, reference):
        out, (_, alpha) = layer(
            x, edge_index, edge_type, edge_attr, cond, batch=batch, return_attention_weights=True
        )
        outs.append((out, alpha))
        grads.append(torch.autograd.grad((out * weight).sum(), (x, *layer.parameters())))
    for a, b in zip(outs[0], outs[1]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    for a, b in zip(*grads):  # sums over edges in another order: float32 rounding
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_memory_efficient_path_keeps_no_per_edge_message_for_backward(monkeypatch):
    # Edges over many chunks (32 a chunk): each chunk's geometry is recomputed in backward.
    monkeypatch.setattr(scatter_module, "EDGE_CHUNK_BYTES", 32 * 4 * 8 * 4)
    conv = _full_conv(heads=4, num_bases=None)
    x = torch.randn(30, 16, requires_grad=True)
    edge_index = torch.stack([torch.randint(0, 30, (900,)), torch.randint(0, 30, (900,))])
    edge_type = torch.randint(0, NUM_SPATIAL_CLASSES, (900,))
    edge_attr = torch.randn(900, GEOMETRY_DIM)
    for memory_efficient, bound in ((True, 900 * 4), (False, 900 * 4 * 8)):
        conv.memory_efficient = memory_efficient
        saved = []

        def pack(t, saved=saved):
            saved.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            conv(x, edge_index, edge_type, edge_attr, torch.randn(1, 5)).sum().backward()
        # [E, heads] values per edge at most; messages [E, heads, out] on the general path.
        assert max(saved) == bound


def test_memory_efficient_path_keeps_the_geometry_of_edges_that_fit_one_chunk():
    conv = _full_conv(heads=4, num_bases=None)
    x = torch.randn(30, 16, requires_grad=True)
    edge_index = torch.stack([torch.randint(0, 30, (900,)), torch.randint(0, 30, (900,))])
    edge_type = torch.randint(0, NUM_SPATIAL_CLASSES, (900,))
    edge_attr = torch.randn(900, GEOMETRY_DIM)
    assert 900 * 4 * 8 * 4 <= scatter_module.EDGE_CHUNK_BYTES
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        out = conv(x, edge_index, edge_type, edge_attr, torch.randn(1, 5))
    # One chunk: its [E, heads, out] hidden layer is kept (no recomputation), nothing larger.
    # (test_memory_efficient_path_equals_propagate_with_gradients compares its values, one_chunk.)
    assert max(saved) == 900 * 4 * 8
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("num_relations, num_edges", [(200, 40), (NUM_SPATIAL_CLASSES, 900)])
def test_fused_path_weights_relation_biases_per_edge_where_edges_are_few(
    monkeypatch, num_relations, num_edges
):
    # Several chunks (the fused path); with 200 classes over 40 edges the [N, R, heads] attention per class
    # would be far larger than the [E, heads, out] biases per edge.
    monkeypatch.setattr(scatter_module, "EDGE_CHUNK_BYTES", 512)
    conv = _full_conv(num_relations, num_bases=None)
    x = torch.randn(30, 16, requires_grad=True)
    edge_index = torch.randint(0, 30, (2, num_edges))
    edge_type = torch.randint(0, num_relations, (num_edges,))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        out = conv(x, edge_index, edge_type, torch.randn(num_edges, GEOMETRY_DIM), torch.randn(1, 5))
    per_class = 30 * num_relations * 2  # [N, R, heads]
    per_edge = num_edges * 8 <= 30 * num_relations
    assert (per_class in saved) != per_edge
    assert (num_edges * 2 * 8 in saved) == per_edge  # [E, heads, out]
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_message_hooks_and_other_aggregations_take_the_general_path():
    conv = _full_conv().eval()
    x = torch.randn(8, 16)
    edge_index, edge_type, edge_attr = _graph()
    cond = torch.randn(1, 5)
    fused = conv(x, edge_index, edge_type, edge_attr, cond)
    seen = []
    handle = conv.register_message_forward_hook(lambda module, inputs, msg: seen.append(msg.shape))
    torch.testing.assert_close(conv(x, edge_index, edge_type, edge_attr, cond), fused, atol=1e-6, rtol=1e-6)
    assert seen == [(edge_index.size(1), 2, 8)]
    handle.remove()
    mean = _randomise(RelationGATConv(16, 8, NUM_SPATIAL_CLASSES, heads=2, aggr="mean"))
    assert not mean._can_fuse()
    assert conv._can_fuse()
