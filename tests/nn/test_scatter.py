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
