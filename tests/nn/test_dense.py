import pytest
import torch
from torch_geometric.utils import to_dense_batch

from mmgraph.errors import InputError
from mmgraph.nn.cross_attention import complete_edge_index
from mmgraph.nn.dense import DenseLayout, dense_layout


def _batch(counts):
    return torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))


@pytest.mark.parametrize("counts", [[3, 1, 4], [0, 2, 0, 3], [2], [0, 0]])
def test_pad_and_mask_equal_to_dense_batch_and_unpad_inverts(counts):
    batch = _batch(counts)
    x = torch.randn(batch.numel(), 3, 2, requires_grad=True)
    layout = DenseLayout(batch, len(counts))
    expected, mask = to_dense_batch(x, batch, batch_size=len(counts))
    padded = layout.pad(x)
    assert torch.equal(padded, expected)
    assert torch.equal(layout.mask, mask)
    assert layout.size == max(counts) and layout.empty == (0 in counts)
    assert torch.equal(layout.unpad(padded), x)
    # As keys: a graph without nodes keeps its first slot open (when there are slots at all).
    opened = mask.clone()
    if layout.size:
        opened[:, 0] |= ~mask.any(dim=1)
    assert torch.equal(layout.key_mask(open_empty=True), opened)
    assert torch.equal(layout.key_mask(), mask)
    bias = layout.padding_bias(2, torch.float32, open_empty=True).view(len(counts), 2, layout.size)
    assert torch.equal(bias == 0, opened.unsqueeze(1).expand_as(bias))
    # Gradients flow through both: d/dx of sum(unpad(pad(x)) * w) is w.
    weight = torch.randn_like(x)
    (grad,) = torch.autograd.grad((layout.unpad(layout.pad(x)) * weight).sum(), x)
    assert torch.equal(grad, weight)


def test_layout_is_cached_while_the_batch_vector_lives_unchanged():
    batch = _batch([2, 3])
    first = dense_layout(batch, 2)
    assert dense_layout(batch, 2) is first
    assert dense_layout(batch.clone(), 2) is not first  # another tensor: its own layout
    assert dense_layout(batch, 3) is not first  # another graph count
    batch[3:] = 2  # modified in place: the version counter moves, the layout is recomputed
    assert dense_layout(batch, 3).size == 2
    with torch.inference_mode():
        frozen = _batch([1, 1])
    assert dense_layout(frozen, 2) is not dense_layout(frozen, 2)  # no version counter: never cached


def test_pair_index_follows_complete_edge_index():
    batch_src, batch_dst = _batch([2, 0, 3]), _batch([1, 2, 2])
    src, dst = dense_layout(batch_src, 3), dense_layout(batch_dst, 3)
    pairs = src.pair_index(dst)
    edge_index = complete_edge_index(batch_dst, batch_src, 3).flip(0)  # (source, target), by source
    # The flat position of (s, t) in [G, S, T] is g * S * T + local(s) * T + local(t).
    local_src, local_dst = src.index % src.size, dst.index % dst.size
    graph = batch_src[edge_index[0]]
    expected = graph * src.size * dst.size + local_src[edge_index[0]] * dst.size + local_dst[edge_index[1]]
    assert torch.equal(pairs, expected)
    assert src.pair_index(dst) is pairs


def test_bad_input_names_the_problem():
    with pytest.raises(InputError, match="names graph 2"):
        DenseLayout(_batch([1, 1, 1]), 2)
    with pytest.raises(InputError, match="3 rows for a batch vector of 2 nodes"):
        DenseLayout(_batch([1, 1]), 2).pad(torch.randn(3, 4))
    with pytest.raises(InputError, match="1-D"):
        DenseLayout(torch.zeros(2, 2, dtype=torch.long), 1)
