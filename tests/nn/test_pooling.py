import pytest
import torch
from torch import nn

from mmgraph.errors import InputError
from mmgraph.nn import AttentionPooling, GlobalNodePooling

HIDDEN = 16


def _batch(sizes=(4, 0, 6, 3)):
    x = torch.randn(sum(sizes), HIDDEN)
    batch = torch.cat([torch.full((n,), g) for g, n in enumerate(sizes)])
    return x, batch


@pytest.mark.parametrize("pool_cls", [AttentionPooling, GlobalNodePooling])
def test_shapes_empty_graphs_and_batch_consistency(pool_cls):
    pool = pool_cls(HIDDEN, cond_dim=8).eval()
    x, batch = _batch()
    cond = torch.randn(5, 8)  # a trailing graph without nodes as well
    out = pool(x, batch, cond)
    assert out.shape == (5, HIDDEN)
    assert torch.equal(out[1], torch.zeros(HIDDEN)) and torch.equal(out[4], torch.zeros(HIDDEN))
    assert torch.isfinite(out).all()
    alone = pool(x[batch == 2], None, cond[2:3])
    torch.testing.assert_close(out[2:3], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pool_cls", [AttentionPooling, GlobalNodePooling])
def test_permutation_invariance_and_condition(pool_cls):
    pool = pool_cls(HIDDEN, cond_dim=8).eval()
    x, batch = _batch((5, 7))
    cond = torch.randn(2, 8)
    out = pool(x, batch, cond)
    perm = torch.randperm(x.size(0))
    # GlobalNodePooling's dense path needs sorted graph ids; keep nodes grouped by graph.
    perm = perm[torch.argsort(batch[perm], stable=True)]
    torch.testing.assert_close(pool(x[perm], batch[perm], cond), out, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(pool(x, batch, cond + 1.0), out)


def test_attention_pooling_weights_and_repr():
    pool = AttentionPooling(HIDDEN)
    assert repr(pool) == "AttentionPooling(16, cond_dim=None)"
    x, batch = _batch()
    out, alpha = pool(x, batch, num_graphs=4, return_attention_weights=True)
    assert alpha.shape == (x.size(0),)
    sums = torch.zeros(4).index_add_(0, batch, alpha)
    torch.testing.assert_close(sums, torch.tensor([1.0, 0.0, 1.0, 1.0]))
    torch.testing.assert_close(out[0], (alpha[batch == 0, None] * x[batch == 0]).sum(0))
    with pytest.raises(InputError, match="cond_dim"):
        pool(x, batch, torch.randn(4, 3))


def test_global_node_repr_and_no_nodes_at_all():
    pool = GlobalNodePooling(HIDDEN, heads=2)
    assert repr(pool) == "GlobalNodePooling(16, heads=2, cond_dim=None)"
    out = pool(torch.empty(0, HIDDEN), torch.empty(0, dtype=torch.long), num_graphs=3)
    assert torch.equal(out, torch.zeros(3, HIDDEN))


@pytest.mark.parametrize("pool_cls", [AttentionPooling, GlobalNodePooling])
def test_gradients_and_training(pool_cls):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pool = pool_cls(HIDDEN, cond_dim=8)
            self.out = nn.Linear(HIDDEN, 3)

        def forward(self, x, batch, cond):
            return self.out(self.pool(x, batch, cond))

    model = Net()
    x, batch = _batch((4, 6, 3, 5))
    cond = torch.randn(4, 8)
    target = torch.tensor([0, 1, 2, 1])
    loss = nn.functional.cross_entropy(model(x, batch, cond), target)
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x, batch, cond), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_count_channel_tells_how_many_nodes_match():
    torch.manual_seed(0)
    node = torch.randn(1, HIDDEN)
    # One graph with the node once, one with it three times.
    x = torch.cat([node, node, node, node])
    batch = torch.tensor([0, 1, 1, 1])
    plain = AttentionPooling(HIDDEN).eval()
    out = plain(x, batch)
    # A softmax cannot tell one copy from three...
    torch.testing.assert_close(out[0], out[1])
    counting = AttentionPooling(HIDDEN, count=True).eval()
    assert repr(counting) == "AttentionPooling(16, cond_dim=None, count=True)"
    out = counting(x, batch)
    # ...the gated sum can: it adds W_c * gamma * x once for graph 0 and three times for graph 1.
    gamma = torch.sigmoid(counting.gate(torch.tanh(counting.proj(node))))
    extra = counting.count_proj(gamma * node)[0]
    torch.testing.assert_close(out[1] - out[0], 2 * extra, atol=1e-5, rtol=1e-5)
    # Empty graphs still pool to zeros.
    x, batch = _batch()
    assert torch.equal(counting(x, batch, num_graphs=4)[1], torch.zeros(HIDDEN))


def test_glimpses_pool_independently_and_project_back():
    torch.manual_seed(0)
    pool = AttentionPooling(HIDDEN, cond_dim=8, glimpses=3).eval()
    assert repr(pool) == "AttentionPooling(16, cond_dim=8, glimpses=3)"
    x, batch = _batch()
    cond = torch.randn(4, 8)
    out, alpha = pool(x, batch, cond, return_attention_weights=True)
    assert out.shape == (4, HIDDEN) and alpha.shape == (x.size(0), 3)
    # Each glimpse is a softmax of its own within every graph.
    sums = torch.zeros(4, 3).index_add_(0, batch, alpha)
    torch.testing.assert_close(sums, torch.tensor([[1.0] * 3, [0.0] * 3, [1.0] * 3, [1.0] * 3]))
    # The output is the projection of the concatenated per-glimpse sums.
    g0 = (alpha[batch == 0].unsqueeze(-1) * x[batch == 0].unsqueeze(1)).sum(0).flatten()
    torch.testing.assert_close(out[0], pool.glimpse_proj(g0), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(alpha[:, 0], alpha[:, 1])
    assert torch.equal(out[1], torch.zeros(HIDDEN))  # the graph without nodes pools to zeros
    with pytest.raises(InputError, match="glimpses"):
        AttentionPooling(HIDDEN, glimpses=0)
