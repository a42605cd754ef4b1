import pytest
import torch

from mmgraph.nn import scatter as sc
from mmgraph.nn.scatter import num_graphs, scatter_max, scatter_mean, scatter_softmax, scatter_sum


def _data():
    src = torch.randn(12, 3)
    index = torch.tensor([0, 0, 1, 3, 3, 3, 1, 0, 4, 4, 1, 0])  # group 2 and 5 empty
    return src, index


def test_sum_mean_max_match_loops():
    src, index = _data()
    size = 6
    out_sum = scatter_sum(src, index, size, pure=True)
    out_mean = scatter_mean(src, index, size, pure=True)
    out_max = scatter_max(src, index, size, pure=True)
    assert out_sum.shape == (size, 3)
    for g in range(size):
        rows = src[index == g]
        if rows.numel() == 0:
            for out in (out_sum, out_mean, out_max):
                assert torch.equal(out[g], torch.zeros(3))
        else:
            torch.testing.assert_close(out_sum[g], rows.sum(0))
            torch.testing.assert_close(out_mean[g], rows.mean(0))
            torch.testing.assert_close(out_max[g], rows.max(0).values)


def test_dim_size_defaults_to_max_index_plus_one():
    src, index = _data()
    assert scatter_sum(src, index, pure=True).shape == (5, 3)
    assert scatter_sum(src[:0], index[:0], pure=True).shape == (0, 3)


def test_softmax_sums_to_one_and_matches_torch():
    src, index = _data()
    alpha = scatter_softmax(src, index, 6, pure=True)
    sums = scatter_sum(alpha, index, 6, pure=True)
    torch.testing.assert_close(sums[torch.tensor([0, 1, 3, 4])], torch.ones(4, 3))
    for g in (0, 1, 3, 4):
        torch.testing.assert_close(alpha[index == g], torch.softmax(src[index == g], dim=0))


def test_softmax_is_stable_for_large_logits():
    src = torch.tensor([1000.0, 1001.0, -1000.0, 5.0])
    index = torch.tensor([0, 0, 1, 1])
    alpha = scatter_softmax(src, index, 2, pure=True)
    assert torch.isfinite(alpha).all()
    torch.testing.assert_close(alpha[:2], torch.softmax(src[:2], 0))


def test_softmax_all_minus_inf_group_gives_zeros_not_nan():
    src = torch.tensor([float("-inf"), float("-inf"), 0.5])
    index = torch.tensor([0, 0, 1])
    alpha = scatter_softmax(src, index, 2, pure=True)
    assert torch.equal(alpha, torch.tensor([0.0, 0.0, 1.0]))


def test_softmax_gradient_matches_dense_softmax():
    src = torch.randn(5, requires_grad=True)
    index = torch.zeros(5, dtype=torch.long)
    weight = torch.randn(5)
    (scatter_softmax(src, index, 1, pure=True) * weight).sum().backward()
    ref = src.detach().clone().requires_grad_()
    (torch.softmax(ref, 0) * weight).sum().backward()
    torch.testing.assert_close(src.grad, ref.grad)


def test_module_flag_forces_pure_path(monkeypatch):
    monkeypatch.setattr(sc, "FORCE_PURE_TORCH", True)
    assert sc._use_pure(None)
    assert not sc._use_pure(False)
    monkeypatch.setattr(sc, "FORCE_PURE_TORCH", False)
    assert sc._use_pure(None) == (not sc.HAS_TORCH_SCATTER)


@pytest.mark.skipif(not sc.HAS_TORCH_SCATTER, reason="torch-scatter is not installed")
@pytest.mark.parametrize("fn", [scatter_sum, scatter_mean, scatter_max, scatter_softmax])
def test_pure_torch_equals_torch_scatter(fn):
    src, index = _data()
    torch.testing.assert_close(fn(src, index, 6, pure=True), fn(src, index, 6, pure=False))


def test_num_graphs():
    assert num_graphs(None) == 1
    assert num_graphs(torch.tensor([], dtype=torch.long)) == 1
    assert num_graphs(torch.tensor([0, 0, 2]), None, torch.tensor([1, 4])) == 5


def _edge_data(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(7, 3, 4, generator=g, dtype=dtype, requires_grad=True)  # [N_a, H, d]
    b = torch.randn(5, 3, 4, generator=g, dtype=dtype, requires_grad=True)  # [N_b, H, d]
    index_a = torch.randint(0, 6, (40,), generator=g)  # row 6 of a gets no edge
    index_b = torch.randint(0, 5, (40,), generator=g)
    weight = torch.randn(40, 3, generator=g, dtype=dtype, requires_grad=True)  # [E, H]
    return a, b, index_a, index_b, weight


def _grads(out, inputs):
    return torch.autograd.grad((out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum(), inputs)


@pytest.mark.parametrize("chunk_bytes", [16, 2**22], ids=["many_chunks", "one_chunk"])
def test_edge_dot_and_weighted_sum_equal_plain_gathers(monkeypatch, chunk_bytes):
    monkeypatch.setattr(sc, "EDGE_CHUNK_BYTES", chunk_bytes)
    a, b, index_a, index_b, weight = _edge_data()
    out = sc.edge_dot(a, b, index_a, index_b)
    ref = (a[index_a] * b[index_b]).sum(-1)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)
    for got, want in zip(_grads(out, (a, b)), _grads(ref, (a, b))):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)

    out = sc.edge_weighted_sum(weight, b, index_b, index_a, 7)
    ref = scatter_sum(weight.unsqueeze(-1) * b[index_b], index_a, 7, pure=True)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)
    assert torch.equal(out[6], torch.zeros(3, 4))
    for got, want in zip(_grads(out, (weight, b)), _grads(ref, (weight, b))):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


def test_edge_operators_are_deterministic_and_handle_no_edges(monkeypatch):
    monkeypatch.setattr(sc, "EDGE_CHUNK_BYTES", 64)
    a, b, index_a, index_b, weight = _edge_data()
    assert torch.equal(sc.edge_dot(a, b, index_a, index_b), sc.edge_dot(a, b, index_a, index_b))
    first = _grads(sc.edge_weighted_sum(weight, b, index_b, index_a, 7), (weight, b))
    second = _grads(sc.edge_weighted_sum(weight, b, index_b, index_a, 7), (weight, b))
    assert all(torch.equal(x, y) for x, y in zip(first, second))
    none = torch.empty(0, dtype=torch.long)
    assert sc.edge_dot(a, b, none, none).shape == (0, 3)
    assert torch.equal(sc.edge_weighted_sum(weight[:0], b, none, none, 4), torch.zeros(4, 3, 4))


def test_edge_operators_and_softmax_have_second_derivatives(monkeypatch):
    monkeypatch.setattr(sc, "EDGE_CHUNK_BYTES", 64)
    a, b, index_a, index_b, weight = _edge_data(torch.float64)
    a, b, weight = a[:6].detach().requires_grad_(), b.detach().requires_grad_(), weight.detach()
    weight = weight[:12].requires_grad_()
    index_a, index_b = index_a[:12], index_b[:12]
    assert torch.autograd.gradgradcheck(lambda x, y: sc.edge_dot(x, y, index_a, index_b), (a, b))
    assert torch.autograd.gradgradcheck(
        lambda w, y: sc.edge_weighted_sum(w, y, index_b, index_a, 6), (weight, b)
    )
    assert torch.autograd.gradgradcheck(lambda s: scatter_softmax(s, index_a, 6, pure=True), (weight,))


def test_softmax_keeps_only_its_output_for_backward():
    src, index = _data()
    src.requires_grad_()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t, lambda t: t):
        alpha = scatter_softmax(src, index, 6, pure=True)
    # The weights [E, *] and the index [E]: nothing else per edge.
    assert sorted(saved, key=len) == [index.shape, src.shape]
    grad = torch.autograd.grad((alpha * torch.arange(3.0)).sum(), src)[0]
    ref = src.detach().clone().requires_grad_()
    expected = torch.autograd.grad(
        (sc._softmax_reference(ref, index, 6, True) * torch.arange(3.0)).sum(), ref
    )
    torch.testing.assert_close(grad, expected[0], atol=1e-6, rtol=1e-6)


def test_softmax_gradient_of_all_minus_inf_group_is_zero():
    src = torch.tensor([float("-inf"), float("-inf"), 0.5, 1.0], requires_grad=True)
    index = torch.tensor([0, 0, 1, 1])
    (scatter_softmax(src, index, 2, pure=True) * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert torch.equal(src.grad[:2], torch.zeros(2)) and torch.isfinite(src.grad).all()
