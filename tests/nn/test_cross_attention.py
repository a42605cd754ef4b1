import pytest
import torch
from torch import nn

from mmgraph.errors import InputError
from mmgraph.nn import CrossModalAttention, complete_edge_index
from mmgraph.nn import cross_attention as ca
from mmgraph.nn import scatter as sc
from mmgraph.nn.scatter import scatter_sum

SIZES = [(3, 5), (4, 2), (1, 6), (5, 1)]  # (source nodes, target nodes) per graph


def _batch(sizes=SIZES, dim=16, kdim=16):
    x_src = torch.randn(sum(s for s, _ in sizes), kdim)
    x_dst = torch.randn(sum(t for _, t in sizes), dim)
    batch_src = torch.cat([torch.full((s,), g) for g, (s, _) in enumerate(sizes)])
    batch_dst = torch.cat([torch.full((t,), g) for g, (_, t) in enumerate(sizes)])
    return x_src, x_dst, batch_src, batch_dst


def test_repr_and_shapes():
    attn = CrossModalAttention(16, 4)
    assert repr(attn) == "CrossModalAttention(16, num_heads=4)"
    x_src, x_dst, batch_src, batch_dst = _batch()
    edge_index = complete_edge_index(batch_src, batch_dst)
    assert attn(x_src, x_dst, edge_index, batch_src, batch_dst).shape == x_dst.shape
    with pytest.raises(InputError, match="divisible"):
        CrossModalAttention(10, 4)


def test_complete_edge_index_and_detection():
    x_src, x_dst, batch_src, batch_dst = _batch()
    edge_index = complete_edge_index(batch_src, batch_dst)
    assert edge_index.size(1) == sum(s * t for s, t in SIZES)
    assert torch.equal(batch_src[edge_index[0]], batch_dst[edge_index[1]])
    assert len({tuple(e) for e in edge_index.t().tolist()}) == edge_index.size(1)
    assert ca._is_complete(edge_index, batch_src, batch_dst, len(SIZES))
    assert ca._is_complete(
        edge_index[:, torch.randperm(edge_index.size(1))], batch_src, batch_dst, len(SIZES)
    )
    # One edge dropped, or one replaced by a duplicate: not complete.
    assert not ca._is_complete(edge_index[:, 1:], batch_src, batch_dst, len(SIZES))
    duplicated = edge_index.clone()
    duplicated[:, 0] = duplicated[:, 1]
    assert not ca._is_complete(duplicated, batch_src, batch_dst, len(SIZES))
    # The same count of edges, one of them across graphs.
    crossing = edge_index.clone()
    crossing[0, 0] = batch_src.numel() - 1
    assert not ca._is_complete(crossing, batch_src, batch_dst, len(SIZES))


def test_dense_and_sparse_paths_agree():
    attn = CrossModalAttention(16, 4).eval()
    x_src, x_dst, batch_src, batch_dst = _batch()
    edge_index = complete_edge_index(batch_src, batch_dst)
    dense = attn(x_src, x_dst, edge_index, batch_src, batch_dst, complete=True)
    sparse = attn(x_src, x_dst, edge_index, batch_src, batch_dst, complete=False)
    auto = attn(x_src, x_dst, None, batch_src, batch_dst)
    torch.testing.assert_close(dense, sparse, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(auto, sparse, atol=1e-5, rtol=1e-5)


def test_graph_without_source_nodes_gives_bias_on_both_paths():
    attn = CrossModalAttention(16, 2).eval()
    with torch.no_grad():
        attn.out_proj.bias.normal_()
    x_src, x_dst, batch_src, batch_dst = _batch([(3, 2), (0, 3), (2, 2)])
    edge_index = complete_edge_index(batch_src, batch_dst)
    dense = attn(x_src, x_dst, edge_index, batch_src, batch_dst, complete=True)
    sparse = attn(x_src, x_dst, edge_index, batch_src, batch_dst, complete=False)
    assert torch.isfinite(dense).all()
    torch.testing.assert_close(dense, sparse, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dense[2:5], attn.out_proj.bias.expand(3, -1))


def _mha_reference(mha, x_src, x_dst, batch_src, batch_dst):
    outs = []
    for g in range(int(batch_dst.max()) + 1):
        out, _ = mha(x_dst[batch_dst == g][None], x_src[batch_src == g][None], x_src[batch_src == g][None])
        outs.append(out[0])
    return torch.cat(outs)


@pytest.mark.parametrize("sizes", [[(7, 4)], SIZES], ids=["one_graph", "batch"])
def test_equals_multihead_attention(sizes):
    mha = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    with torch.no_grad():
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    attn = CrossModalAttention.load_from_multihead(mha).eval()
    x_src, x_dst, batch_src, batch_dst = _batch(sizes)
    expected = _mha_reference(mha, x_src, x_dst, batch_src, batch_dst)
    edge_index = complete_edge_index(batch_src, batch_dst)
    for complete in (True, False):
        out = attn(x_src, x_dst, edge_index, batch_src, batch_dst, complete=complete)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_equals_multihead_attention_with_other_key_and_value_sizes():
    mha = nn.MultiheadAttention(16, 2, kdim=10, vdim=6, batch_first=True).eval()
    attn = CrossModalAttention.load_from_multihead(mha).eval()
    assert (attn.kdim, attn.vdim) == (10, 6)
    key, value, query = torch.randn(5, 10), torch.randn(5, 6), torch.randn(3, 16)
    expected = mha(query[None], key[None], value[None])[0][0]
    torch.testing.assert_close(attn((key, value), query, None), expected, atol=1e-5, rtol=1e-5)


def test_load_from_multihead_rejects_bias_kv():
    with pytest.raises(InputError, match="add_bias_kv"):
        CrossModalAttention.load_from_multihead(nn.MultiheadAttention(16, 2, add_bias_kv=True))


def test_sparse_edges_attention_weights():
    attn = CrossModalAttention(16, 4)
    x_src, x_dst = torch.randn(10, 16), torch.randn(6, 16)
    edge_index = torch.stack([torch.randint(0, 10, (25,)), torch.randint(0, 5, (25,))])  # target 5 has none
    out, (used, alpha) = attn(x_src, x_dst, edge_index, return_attention_weights=True)
    assert out.shape == (6, 16) and torch.equal(used, edge_index) and alpha.shape == (25, 4)
    sums = scatter_sum(alpha, edge_index[1], 6)
    has_edges = torch.bincount(edge_index[1], minlength=6) > 0
    torch.testing.assert_close(sums[has_edges], torch.ones(int(has_edges.sum()), 4))
    # The weights are the per-target softmax of scaled dot products.
    q = attn.q_proj(x_dst).view(6, 4, 4)
    k = attn.k_proj(x_src).view(10, 4, 4)
    target = edge_index[1] == 0
    logits = (q[0][None] * k[edge_index[0, target]]).sum(-1) / 2.0
    torch.testing.assert_close(alpha[target], torch.softmax(logits, dim=0))


def test_attention_weights_for_complete_edges_built_on_demand():
    attn = CrossModalAttention(16, 2)
    x_src, x_dst, batch_src, batch_dst = _batch()
    out, (used, alpha) = attn(x_src, x_dst, None, batch_src, batch_dst, return_attention_weights=True)
    assert used.size(1) == sum(s * t for s, t in SIZES) and alpha.shape == (used.size(1), 2)
    torch.testing.assert_close(out, attn(x_src, x_dst, None, batch_src, batch_dst), atol=1e-5, rtol=1e-5)


def test_permutation_equivariance_on_sparse_edges():
    attn = CrossModalAttention(16, 2).eval()
    x_src, x_dst = torch.randn(9, 16), torch.randn(7, 16)
    edge_index = torch.unique(torch.stack([torch.randint(0, 9, (30,)), torch.randint(0, 7, (30,))]), dim=1)
    out = attn(x_src, x_dst, edge_index)
    p_src, p_dst = torch.randperm(9), torch.randperm(7)
    inv_src, inv_dst = torch.argsort(p_src), torch.argsort(p_dst)
    moved = torch.stack([inv_src[edge_index[0]], inv_dst[edge_index[1]]])
    torch.testing.assert_close(attn(x_src[p_src], x_dst[p_dst], moved), out[p_dst], atol=1e-5, rtol=1e-5)


def test_graph_alone_equals_graph_in_batch():
    attn = CrossModalAttention(16, 4).eval()
    x_src, x_dst, batch_src, batch_dst = _batch()
    out = attn(x_src, x_dst, None, batch_src, batch_dst)
    alone = attn(x_src[batch_src == 1], x_dst[batch_dst == 1], None)
    torch.testing.assert_close(out[batch_dst == 1], alone, atol=1e-5, rtol=1e-5)


def test_zero_edges_and_zero_nodes():
    attn = CrossModalAttention(16, 2)
    x_dst = torch.randn(4, 16)
    out = attn(torch.randn(3, 16), x_dst, torch.empty(2, 0, dtype=torch.long))
    torch.testing.assert_close(out, attn.out_proj.bias.expand(4, -1))
    out = attn(torch.empty(0, 16), x_dst, None)
    torch.testing.assert_close(out, attn.out_proj.bias.expand(4, -1))
    assert attn(torch.randn(3, 16), torch.empty(0, 16), None).shape == (0, 16)


def test_gradients_reach_every_parameter_on_both_paths():
    for complete in (True, False):
        attn = CrossModalAttention(16, 4)
        x_src, x_dst, batch_src, batch_dst = _batch()
        edge_index = complete_edge_index(batch_src, batch_dst)
        out = attn(x_src, x_dst, edge_index, batch_src, batch_dst, complete=complete)
        (out**2).sum().backward()
        for name, param in attn.named_parameters():
            assert param.grad is not None and param.grad.abs().sum() > 0, (complete, name)


def test_trains_inside_a_plain_module():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = CrossModalAttention(16, 4)
            self.out = nn.Linear(16, 3)

        def forward(self, x_src, x_dst, batch_src, batch_dst):
            return self.out(torch.relu(self.attn(x_src, x_dst, None, batch_src, batch_dst)))

    model = Net()
    x_src, x_dst, batch_src, batch_dst = _batch()
    target = torch.randint(0, 3, (x_dst.size(0),))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x_src, x_dst, batch_src, batch_dst), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def _gathering_sparse_path(attn, x_src, x_dst, edge_index):
    """The sparse path as first written: per-edge [E, heads, d] gathers kept by autograd."""
    H, D = attn.num_heads, attn.head_dim
    src, dst = edge_index[0], edge_index[1]
    q = attn.q_proj(x_dst).view(-1, H, D)
    k = attn.k_proj(x_src).view(-1, H, D)
    v = attn.v_proj(x_src).view(-1, H, D)
    logit = (q[dst] * k[src]).sum(-1) / D**0.5  # [E, H]
    alpha = sc._softmax_reference(logit, dst, x_dst.size(0), True)
    out = scatter_sum(alpha.unsqueeze(-1) * v[src], dst, x_dst.size(0), pure=True)  # [N_dst, H, D]
    return attn.out_proj(out.reshape(-1, H * D))


@pytest.mark.parametrize("chunk_bytes", [512, 2**22], ids=["many_chunks", "one_chunk"])
def test_sparse_path_equals_gathering_reference_with_gradients(monkeypatch, chunk_bytes):
    monkeypatch.setattr(sc, "EDGE_CHUNK_BYTES", chunk_bytes)
    attn = CrossModalAttention(16, 4).eval()
    with torch.no_grad():
        for lin in (attn.q_proj, attn.k_proj, attn.v_proj):
            lin.bias.normal_()
    x_src, x_dst, batch_src, batch_dst = _batch()
    x_src.requires_grad_(), x_dst.requires_grad_()
    # A random subset of each graph's complete edges, so targets have different in-degrees.
    edge_index = complete_edge_index(batch_src, batch_dst)
    edge_index = edge_index[:, torch.rand(edge_index.size(1)) < 0.6]
    weight = torch.randn(x_dst.size(0), 16)
    inputs = (x_src, x_dst, *attn.parameters())
    out = attn(x_src, x_dst, edge_index, batch_src, batch_dst, complete=False)
    ref = _gathering_sparse_path(attn, x_src, x_dst, edge_index)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)
    got = torch.autograd.grad((out * weight).sum(), inputs)
    want = torch.autograd.grad((ref * weight).sum(), inputs)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_sparse_path_keeps_no_per_edge_feature_tensor_for_backward():
    attn = CrossModalAttention(32, 4)
    x_src, x_dst = torch.randn(40, 32, requires_grad=True), torch.randn(30, 32, requires_grad=True)
    edge_index = torch.stack([torch.randint(0, 40, (900,)), torch.randint(0, 30, (900,))])
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        attn(x_src, x_dst, edge_index, complete=False).sum().backward()
    # Per edge at most [E, heads] values are kept; [E, heads, d] would be 900 * 32 each.
    assert max(saved) == 900 * 4


def test_small_dense_path_matches_the_sparse_path_with_gradients():
    # Small blocks without dropout take a hand-written attention (_DenseAttention), with its own
    # backward; it agrees with the sparse path, gradients included.
    torch.manual_seed(0)
    layer = CrossModalAttention(16, 4).double()
    sizes_src, sizes_dst = (3, 5, 0, 2), (4, 1, 3, 2)  # graph 2 has no source nodes
    batch_src = torch.repeat_interleave(torch.arange(4), torch.tensor(sizes_src))
    batch_dst = torch.repeat_interleave(torch.arange(4), torch.tensor(sizes_dst))
    x_src = torch.randn(len(batch_src), 16, dtype=torch.double)
    x_dst = torch.randn(len(batch_dst), 16, dtype=torch.double)
    edge_index = complete_edge_index(batch_src, batch_dst, 4)
    grads = []
    for edges in (None, edge_index):  # dense, then sparse (complete=False: no detection)
        a, b = x_src.clone().requires_grad_(), x_dst.clone().requires_grad_()
        out = layer(a, b, edges, batch_src, batch_dst, num_graphs=4, complete=edges is None)
        layer.zero_grad()
        out.sin().sum().backward()
        grads.append([out, a.grad, b.grad] + [p.grad.clone() for p in layer.parameters()])
    for dense, sparse in zip(*grads):
        torch.testing.assert_close(dense, sparse)
    assert torch.equal(grads[0][0][5:8], layer.out_proj.bias.detach().expand(3, 16))  # no sources: bias only


def test_large_blocks_keep_scaled_dot_product_attention_without_dropout_in_eval():
    # Blocks over 64 x 64 nodes go to scaled_dot_product_attention; in eval mode it drops nothing.
    torch.manual_seed(0)
    layer = CrossModalAttention(16, 4, dropout=0.5).eval()
    x_src, x_dst = torch.randn(70, 16), torch.randn(70, 16)
    batch = torch.zeros(70, dtype=torch.long)
    edge_index = complete_edge_index(batch, batch, 1)
    dense = layer(x_src, x_dst, None, batch, batch, num_graphs=1)
    sparse = layer(x_src, x_dst, edge_index, batch, batch, num_graphs=1, complete=False)
    torch.testing.assert_close(dense, sparse)
