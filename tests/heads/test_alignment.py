import math

import pytest
import torch

from mmgraph.errors import InputError
from mmgraph.heads import alignment_loss, alignment_mass, mean_alignment_loss
from mmgraph.nn import scatter_softmax


def test_value_by_hand():
    # Source 0 -> targets 0, 1, 2; source 1 -> targets 0, 1.
    edge_index = torch.tensor([[0, 0, 0, 1, 1], [0, 1, 2, 0, 1]])
    alpha = torch.tensor([[0.2, 0.4], [0.3, 0.3], [0.5, 0.3], [0.9, 0.5], [0.1, 0.5]])  # heads are averaged
    # Source 0 names targets 1 and 2 (mass 0.3 + 0.4); source 1 names target 1 (mass 0.3);
    # the pair (1, 2) is not an edge and is skipped.
    target = torch.tensor([[0, 0, 1, 1], [1, 2, 1, 2]])
    loss = alignment_loss(edge_index, alpha, target)
    torch.testing.assert_close(loss, torch.tensor(-(math.log(0.7) + math.log(0.3)) / 2))
    # One weight per edge works too, and the order of the pairs does not matter.
    loss_1d = alignment_loss(edge_index, alpha.mean(-1), target.flip(1))
    torch.testing.assert_close(loss_1d, loss)
    # The masses themselves, per source that has a target among the edges.
    sources, mass = alignment_mass(edge_index, alpha, target)
    assert sources.tolist() == [0, 1]
    torch.testing.assert_close(mass, torch.tensor([0.7, 0.3]))
    sources, mass = alignment_mass(edge_index, alpha, torch.tensor([[1], [0]]))
    assert sources.tolist() == [1]
    torch.testing.assert_close(mass, torch.tensor([0.7]))


def test_no_target_gives_zero_with_a_gradient():
    edge_index = torch.tensor([[0, 0], [0, 1]])
    alpha = torch.tensor([0.5, 0.5], requires_grad=True)
    loss = alignment_loss(edge_index, alpha, torch.empty(2, 0, dtype=torch.long))
    assert float(loss.detach()) == 0.0
    loss.backward()
    loss = alignment_loss(edge_index, alpha, torch.tensor([[3], [0]]))  # a source without edges
    assert float(loss.detach()) == 0.0
    sources, mass = alignment_mass(edge_index, alpha, torch.tensor([[3], [0]]))
    assert sources.numel() == 0 and mass.numel() == 0


def test_minimising_it_moves_the_mass_onto_the_named_targets():
    edge_index = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 1, 2, 0, 1, 2]])
    logits = torch.zeros(6, requires_grad=True)
    target = torch.tensor([[0, 1], [2, 0]])
    optimizer = torch.optim.SGD([logits], lr=1.0)
    for _ in range(50):
        alpha = scatter_softmax(logits, edge_index[0], 2)
        loss = alignment_loss(edge_index, alpha, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    alpha = scatter_softmax(logits.detach(), edge_index[0], 2)
    assert alpha[2] > 0.9 and alpha[3] > 0.9


def test_bad_shapes():
    edge_index = torch.tensor([[0, 0], [0, 1]])
    with pytest.raises(InputError, match="rows for 2 edges"):
        alignment_loss(edge_index, torch.ones(3), torch.tensor([[0], [0]]))
    with pytest.raises(InputError, match=r"\[2, E\] and \[2, M\]"):
        alignment_loss(edge_index, torch.ones(2), torch.tensor([0, 1]))
    with pytest.raises(InputError, match="alignment_mass: alpha has 3 rows for 2 edges"):
        alignment_mass(edge_index, torch.ones(3), torch.tensor([[0], [0]]))


def test_mean_over_blocks():
    edge_index = torch.tensor([[0, 0], [0, 1]])
    target = torch.tensor([[0], [1]])
    blocks = [(edge_index, torch.tensor([0.5, 0.5])), (edge_index, torch.tensor([0.9, 0.1]))]
    expected = -(math.log(0.5) + math.log(0.1)) / 2
    torch.testing.assert_close(mean_alignment_loss(blocks, target), torch.tensor(expected))
    assert float(mean_alignment_loss(None, target)) == 0.0
