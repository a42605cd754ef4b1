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
