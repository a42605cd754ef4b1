import math

import pytest
import torch
from torch import nn

from mmgraph.errors import InputError
from mmgraph.graph import grid_boxes, normalize_boxes
from mmgraph.nn.encoders import (
    GridBackbone,
    PixelRegionEncoder,
    RegionEncoder,
    TokenEncoder,
    box_features,
    feature_map_to_nodes,
)


def _boxes(n):
    low = torch.rand(n, 2) * 0.5
    return torch.cat([low, low + 0.1 + torch.rand(n, 2) * 0.4], dim=1)


def test_region_encoder_takes_any_subset_of_inputs():
    enc = RegionEncoder(8, feature_dim=-1, num_labels=5, num_attrs=7)
    assert repr(enc) == "RegionEncoder(8, feature_dim=-1, num_labels=5, num_attrs=7, box_dim=5)"
    x, box = torch.randn(4, 6), _boxes(4)
    label, attr = torch.tensor([0, 1, 4, 2]), torch.tensor([[1, 2], [3, -1], [-1, -1], [6, 0]])
    outs = [
        enc(x=x, box=box),
        enc(label=label, attr=attr, box=box),
        enc(x=x, label=label),
        enc(box=box),
        enc(x=x, box=box, label=label, attr=attr),
    ]
    for out in outs:
        assert out.shape == (4, 8) and torch.isfinite(out).all()
    # LayerNorm without dropout: every row has zero mean.
    torch.testing.assert_close(outs[0].mean(-1), torch.zeros(4), atol=1e-5, rtol=0)
    assert not torch.allclose(outs[0], outs[4])


def test_box_frequencies_add_sinusoidal_bands_of_every_box_value():
    box = torch.tensor([[0.25, 0.5, 0.75, 1.0]])
    plain = box_features(box)  # xyxy + area
    assert plain.shape == (1, 5) and torch.allclose(plain[0, 4], torch.tensor(0.25))
    enc = box_features(box, frequencies=3)
    assert enc.shape == (1, 5 * 7)
    torch.testing.assert_close(enc[:, :5], plain)
    # sin(2^k pi p) for value p = x1 = 0.25 at k = 0, 1, 2, then the cosines after all sines.
    sines, cosines = enc[0, 5:20].view(5, 3), enc[0, 20:].view(5, 3)
    torch.testing.assert_close(sines[0], torch.tensor([math.sin(math.pi * 0.25 * 2**k) for k in range(3)]))
    torch.testing.assert_close(cosines[0], torch.tensor([math.cos(math.pi * 0.25 * 2**k) for k in range(3)]))
    assert box_features(box, box_dim=4, frequencies=2).shape == (1, 4 * 5)
    layer = RegionEncoder(8, feature_dim=None, box_frequencies=3)
    assert layer.lin_box.in_features == 35 and "box_frequencies=3" in repr(layer)
    # Two boxes a pixel apart in a 75-pixel image differ in the bands far more than in the raw values.
    near = torch.tensor([[37 / 75, 0.2, 47 / 75, 0.3], [38 / 75, 0.2, 48 / 75, 0.3]])
    gap = box_features(near, frequencies=8).diff(dim=0).abs()
    assert gap[0, 5:].max() > 20 * gap[0, :5].max()
    with pytest.raises(InputError, match="box_frequencies must be >= 0"):
        RegionEncoder(8, box_frequencies=-1)


def test_attribute_padding_is_ignored():
    for reduce, scale in (("mean", 0.5), ("sum", 1.0)):
        enc = RegionEncoder(8, feature_dim=None, num_attrs=7, box_dim=None, attr_reduce=reduce)
        enc.norm = nn.Identity()  # read the raw sum of embeddings
        padded = enc(attr=torch.tensor([[1, 2, -1, -1]]))
        torch.testing.assert_close(padded, enc(attr=torch.tensor([[1, 2]])))
        emb = enc.attr_emb.weight
        torch.testing.assert_close(padded[0], scale * (emb[1] + emb[2]))
        # A region with no valid attribute contributes zero.
        assert torch.equal(enc(attr=torch.tensor([[-1, -1]])), torch.zeros(1, 8))


def test_region_encoder_errors():
    with pytest.raises(InputError, match="feature_dim"):
        RegionEncoder(8, feature_dim=None, num_labels=3)(x=torch.randn(2, 4), label=torch.tensor([0, 1]))
    with pytest.raises(InputError, match="num_labels"):
        RegionEncoder(8, feature_dim=None, num_labels=3)(label=torch.tensor([0, 3]))
    with pytest.raises(InputError, match="num_attrs"):
        RegionEncoder(8, feature_dim=None, num_attrs=3)(attr=torch.tensor([[0, 5]]))
    with pytest.raises(InputError, match="none of the inputs"):
        RegionEncoder(8, feature_dim=None, num_labels=3, box_dim=None)(x=None)


def test_token_encoder_ids_positions_and_features():
    enc = TokenEncoder(10, 8, max_positions=4, dropout=0.0)
    assert repr(enc) == "TokenEncoder(10, 8, max_positions=4, feature_dim=None)"
    ids = torch.tensor([3, 3, 5])
    out = enc(ids, torch.tensor([0, 1, 2]))
    assert out.shape == (3, 8)
    # The same word at two positions differs only through the position embedding.
    assert not torch.allclose(out[0], out[1])
    torch.testing.assert_close(enc(ids)[0], enc(ids)[1])
    assert torch.equal(enc.word_emb.weight[0], torch.zeros(8))  # padding id
    with pytest.raises(InputError, match="max_positions"):
        enc(ids, torch.tensor([0, 1, 4]))
    with pytest.raises(InputError, match="vocab_size"):
        enc(torch.tensor([10]))
    with pytest.raises(InputError, match="feature_dim"):
        enc(torch.randn(3, 5))
    feat = TokenEncoder(None, 8, feature_dim=-1, dropout=0.0)
    assert feat(torch.randn(3, 5), torch.tensor([0, 1, 2])).shape == (3, 8)


def test_grid_backbone_gives_row_major_cells_and_takes_uint8():
    backbone = GridBackbone(6, grid=3, channels=(4,)).eval()
    assert repr(backbone) == "GridBackbone(6, grid=3, channels=(4,))"
    image = torch.randint(0, 256, (2, 3, 20, 24), dtype=torch.uint8)
    nodes = backbone(image)
    fmap = backbone.feature_map(image.float() / 255)
    assert nodes.shape == (2 * 9, 6) and fmap.shape == (2, 6, 3, 3)
    # Node b * 9 + r * 3 + c is cell (r, c) of image b: the order of grid_boxes.
    torch.testing.assert_close(nodes[1 * 9 + 2 * 3 + 1], fmap[1, :, 2, 1])
    boxes = grid_boxes(3, 3, (24.0, 20.0))
    assert boxes[2 * 3 + 1, 0] == 8.0 and boxes[2 * 3 + 1, 1] == 20.0 * 2 / 3
    torch.testing.assert_close(feature_map_to_nodes(fmap), nodes)
    with pytest.raises(InputError, match="images must be"):
        backbone(torch.zeros(2, 20, 24))


def test_pixel_region_encoder_with_a_user_backbone_trains_end_to_end():
    backbone = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.AdaptiveAvgPool2d((2, 3)))
    enc = PixelRegionEncoder(backbone, 8)
    assert repr(enc) == "PixelRegionEncoder(Sequential, 8)"
    image = torch.rand(2, 3, 16, 16)
    box = normalize_boxes(torch.cat([grid_boxes(2, 3, (16.0, 16.0))] * 2), (16.0, 16.0))
    batch = torch.arange(2).repeat_interleave(6)
    out = enc(image, box, batch, num_graphs=2)
    assert out.shape == (12, 8)
    out.square().sum().backward()
    assert backbone[0].weight.grad is not None and backbone[0].weight.grad.abs().sum() > 0
    with pytest.raises(InputError, match=r"2x3 map \(6 cells\) per image but graph 1 has 5 regions"):
        enc(image, box[:11], batch[:11])
    with pytest.raises(InputError, match="one image per graph"):
        enc(image, box, batch, num_graphs=3)
    with pytest.raises(InputError, match="feature map"):
        PixelRegionEncoder(nn.Flatten(0), 8)(image)
    # GridBackbone itself returns row-major node features: accepted as they are.
    grid_enc = PixelRegionEncoder(GridBackbone(5, grid=2, channels=(4,)), 8)
    assert grid_enc(image, box[:8], torch.arange(2).repeat_interleave(4)).shape == (8, 8)


def test_tied_concepts_use_the_word_rows_and_fall_back_to_their_own():
    words = TokenEncoder(10, 8, dropout=0.0)
    enc = RegionEncoder(
        8,
        feature_dim=None,
        num_labels=3,
        num_attrs=4,
        box_dim=None,
        concept_emb=words.word_emb,
        label_token_ids=[-1, 7, 4],
        attr_token_ids=[-1, 2, -1, 9],
    )
    assert enc.tied and repr(enc).endswith("box_dim=None, tied)")
    enc.norm = nn.Identity()  # read the raw sum of embeddings
    table = words.word_emb.weight
    torch.testing.assert_close(enc(label=torch.tensor([1, 2])), table[[7, 4]])
    # Unmapped ids (-1) keep the layer's own learned rows.
    torch.testing.assert_close(enc(label=torch.tensor([0])), enc.label_emb.weight[[0]])
    mixed = enc(attr=torch.tensor([[1, 2, -1]]))  # mean of word row 2 and own row 2; -1 is padding
    torch.testing.assert_close(mixed[0], 0.5 * (table[2] + enc.attr_emb.weight[2]))
    # One table: the region side's gradient reaches the token encoder's word embedding.
    enc(label=torch.tensor([1]), attr=torch.tensor([[3]])).sum().backward()
    grad = words.word_emb.weight.grad
    assert grad[7].abs().sum() > 0 and grad[9].abs().sum() > 0 and grad[5].abs().sum() == 0
    # Not registered twice: the word table is not among the region encoder's parameters.
    assert all(p is not table for p in enc.parameters())
    assert "label_token_ids" not in enc.state_dict()


def test_tied_concept_errors():
    table = nn.Embedding(6, 8)
    with pytest.raises(InputError, match="without concept_emb"):
        RegionEncoder(8, feature_dim=None, num_labels=2, label_token_ids=[0, 1])
    with pytest.raises(InputError, match="3 entries but num_labels=2"):
        RegionEncoder(8, feature_dim=None, num_labels=2, concept_emb=table, label_token_ids=[0, 1, 2])
    with pytest.raises(InputError, match=r"attr_token_ids\[1\] = 6"):
        RegionEncoder(8, feature_dim=None, num_attrs=2, concept_emb=table, attr_token_ids=[0, 6])
    with pytest.raises(InputError, match="size 4"):
        RegionEncoder(8, feature_dim=None, num_labels=1, concept_emb=nn.Embedding(6, 4), label_token_ids=[0])


def test_part_norm_gives_every_input_the_same_scale():
    enc = RegionEncoder(8, feature_dim=None, num_labels=3, num_attrs=4, part_norm=True)
    assert set(enc.part_norm) == {"label", "attr", "box"}
    enc.norm = nn.Identity()  # read the raw sum of the normalised parts
    with torch.no_grad():
        enc.lin_box.weight.mul_(100.0)  # a box term 100x larger cannot drown the label
    label, box = torch.tensor([1, 2]), _boxes(2)
    out = enc(label=label, box=box)
    norm = nn.functional.layer_norm
    expected = norm(enc.label_emb(label), (8,)) + norm(enc.lin_box(box_features(box)), (8,))
    torch.testing.assert_close(out, expected)
    # A region without attributes still gets no attribute term.
    torch.testing.assert_close(
        enc(label=label, attr=torch.tensor([[-1, -1], [3, -1]]))[0], norm(enc.label_emb.weight[1], (8,))
    )
    plain = RegionEncoder(8, feature_dim=None, num_labels=3)
    assert plain.part_norm is None
