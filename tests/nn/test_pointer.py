import pytest
import torch

from mmgraph.errors import InputError
from mmgraph.nn import PointerAttention, complete_edge_index, scatter_sum


def _graphs(sizes_src=(3, 5, 2), sizes_dst=(4, 1, 3), dim=16):
    batch_src = torch.repeat_interleave(torch.arange(len(sizes_src)), torch.tensor(sizes_src))
    batch_dst = torch.repeat_interleave(torch.arange(len(sizes_dst)), torch.tensor(sizes_dst))
    return torch.randn(len(batch_src), dim), torch.randn(len(batch_dst), dim), batch_src, batch_dst


def _complete(batch_src, batch_dst):
    return complete_edge_index(batch_dst, batch_src).flip(0)  # (source, target), grouped by source


def test_dense_and_sparse_paths_agree_and_weights_sum_to_one_per_source():
    x_src, x_dst, batch_src, batch_dst = _graphs()
    layer = PointerAttention(16, 4)
    out_dense, (edges_dense, alpha_dense) = layer(
        x_src, x_dst, None, batch_src, batch_dst, return_attention_weights=True
    )
    edge_index = _complete(batch_src, batch_dst)
    out_sparse, (edges_sparse, alpha_sparse) = layer(
        x_src, x_dst, edge_index, batch_src, batch_dst, return_attention_weights=True
    )
    assert out_dense.shape == (x_dst.size(0), 16)
    assert torch.equal(edges_dense, edge_index) and torch.equal(edges_sparse, edge_index)
    torch.testing.assert_close(out_dense, out_sparse)
    torch.testing.assert_close(alpha_dense, alpha_sparse)
    totals = scatter_sum(alpha_dense, edge_index[0], x_src.size(0))
    torch.testing.assert_close(totals, torch.ones(x_src.size(0), 4))
    # Without weights the dense path gives the same output.
    torch.testing.assert_close(layer(x_src, x_dst, None, batch_src, batch_dst), out_dense)


def test_targets_receive_the_values_of_the_sources_that_point_at_them():
    # One source, two targets: the source's value is split between them by its softmax.
    layer = PointerAttention(4, 1, bias=False)
    with torch.no_grad():
        for lin in (layer.q_proj, layer.k_proj, layer.v_proj, layer.out_proj):
            lin.weight.copy_(torch.eye(4))
    x_src = torch.tensor([[2.0, 0.0, 0.0, 0.0]])
    x_dst = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    out, (_, alpha) = layer(x_src, x_dst, return_attention_weights=True)
    expected = torch.softmax(torch.tensor([2.0 / 2.0, 0.0]), 0)  # logits q.k / sqrt(d), d = 4
    torch.testing.assert_close(alpha.view(-1), expected)
    torch.testing.assert_close(out, expected.view(2, 1) * x_src)


def test_a_subset_of_edges_and_a_graph_without_targets():
    x_src, x_dst, batch_src, batch_dst = _graphs(sizes_src=(2, 3), sizes_dst=(3, 0))
    layer = PointerAttention(16, 2)
    out, (_, alpha) = layer(x_src, x_dst, None, batch_src, batch_dst, return_attention_weights=True)
    assert torch.isfinite(out).all() and alpha.size(0) == 2 * 3
    edge_index = torch.tensor([[0, 0, 1], [0, 2, 1]])
    out, (_, alpha) = layer(x_src, x_dst, edge_index, batch_src, batch_dst, return_attention_weights=True)
    torch.testing.assert_close(alpha[:2].sum(0), torch.ones(2))
    torch.testing.assert_close(alpha[2], torch.ones(2))  # the only edge of source 1
    assert out.shape == (3, 16)


def test_gradients_reach_every_projection():
    x_src, x_dst, batch_src, batch_dst = _graphs()
    layer = PointerAttention(16, 4)
    out, (_, alpha) = layer(x_src, x_dst, None, batch_src, batch_dst, return_attention_weights=True)
    (out.sum() + alpha[:, 0].pow(2).sum()).backward()
    for name, param in layer.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_errors_and_repr():
    with pytest.raises(InputError, match="divisible"):
        PointerAttention(10, 3)
    layer = PointerAttention(8, 2)
    with pytest.raises(InputError, match="size 8"):
        layer(torch.randn(2, 4), torch.randn(3, 8))
    assert repr(layer) == "PointerAttention(8, num_heads=2)"


def test_readback_sends_each_source_the_targets_it_picks_on_both_paths():
    x_src, x_dst, batch_src, batch_dst = _graphs()
    layer = PointerAttention(16, 4, readback=True)
    assert repr(layer) == "PointerAttention(16, num_heads=4, readback=True)"
    (out, back), (edge_index, alpha) = layer(
        x_src, x_dst, None, batch_src, batch_dst, return_attention_weights=True
    )
    assert out.shape == (x_dst.size(0), 16) and back.shape == (x_src.size(0), 16)
    # The targets' update is the plain layer's: readback adds its own projections only.
    plain = PointerAttention(16, 4)
    plain.load_state_dict({k: v for k, v in layer.state_dict().items() if not k.startswith("back_")})
    torch.testing.assert_close(plain(x_src, x_dst, None, batch_src, batch_dst), out)
    # Each source's readback is its weights over its targets' readback values, by head.
    values = layer.back_v(x_dst).view(-1, 4, 4)
    src, dst = edge_index
    expected = scatter_sum(alpha.unsqueeze(-1) * values[dst], src, x_src.size(0)).reshape(-1, 16)
    torch.testing.assert_close(back, layer.back_out(expected))
    sparse_out, sparse_back = layer(x_src, x_dst, _complete(batch_src, batch_dst), batch_src, batch_dst)
    torch.testing.assert_close(sparse_out, out)
    torch.testing.assert_close(sparse_back, back)
    (back.pow(2).sum()).backward()
    assert layer.back_v.weight.grad.abs().sum() > 0 and layer.q_proj.weight.grad.abs().sum() > 0


def test_readback_of_a_graph_without_targets_is_zero():
    x_src, x_dst, batch_src, batch_dst = _graphs(sizes_src=(2, 3), sizes_dst=(3, 0))
    layer = PointerAttention(16, 2, readback=True, bias=False)
    _, back = layer(x_src, x_dst, None, batch_src, batch_dst)
    assert torch.equal(back[2:], torch.zeros(3, 16))  # graph 1 has no regions
    _, back = layer(x_src[:0], x_dst, None, batch_src[:0], batch_dst)
    assert back.shape == (0, 16)


@pytest.mark.parametrize("targets", [(4, 1, 3), (3, 0, 2)])  # the second has a graph without targets
def test_small_dense_path_matches_the_sparse_path_with_gradients(targets):
    # The dense path of small blocks has its own backward (_DensePointer): its values and the
    # gradients of all three outputs (targets, readback, weights) match the sparse path's autograd.
    torch.manual_seed(0)
    x_src, x_dst, batch_src, batch_dst = _graphs(sizes_dst=targets)
    x_src, x_dst = x_src.double(), x_dst.double()
    layer = PointerAttention(16, 4, readback=True).double()
    edge_index = _complete(batch_src, batch_dst)
    grads = []
    for edges in (None, edge_index):
        a, b = x_src.clone().requires_grad_(), x_dst.clone().requires_grad_()
        (out, back), (_, alpha) = layer(a, b, edges, batch_src, batch_dst, return_attention_weights=True)
        loss = out.sin().sum() + back.cos().sum() + (alpha * torch.arange(alpha.numel()).view_as(alpha)).sum()
        layer.zero_grad()
        loss.backward()
        grads.append([out, back, alpha, a.grad, b.grad] + [p.grad.clone() for p in layer.parameters()])
    for dense, sparse in zip(*grads):
        torch.testing.assert_close(dense, sparse)
    # An output left unused gets no gradient work and the others' gradients stay right.
    a = x_src.clone().requires_grad_()
    (out, _), _ = layer(a, x_dst, None, batch_src, batch_dst, return_attention_weights=True)
    out.sum().backward()
    b = x_src.clone().requires_grad_()
    out, _ = layer(b, x_dst, _complete(batch_src, batch_dst), batch_src, batch_dst)
    out.sum().backward()
    torch.testing.assert_close(a.grad, b.grad)
