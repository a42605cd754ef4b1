import pytest
import torch
from torch import nn

from mmgraph.errors import InputError
from mmgraph.nn import FusionBlock, complete_edge_index
from mmgraph.typing import (
    DEP_EDGE,
    GEOMETRY_DIM,
    NUM_SPATIAL_CLASSES,
    REGION,
    REGION_TO_TOKEN,
    SEMANTIC_EDGE,
    SPATIAL_EDGE,
    TOKEN,
    TOKEN_TO_REGION,
)

HIDDEN = 16
NUM_RELATIONS = {SPATIAL_EDGE: NUM_SPATIAL_CLASSES, SEMANTIC_EDGE: 5, DEP_EDGE: 6}
EDGE_DIM = {SPATIAL_EDGE: GEOMETRY_DIM}


def _sample(num_regions, num_tokens):
    """One graph: dicts as a PyG HeteroData batch would give them."""
    x = {REGION: torch.randn(num_regions, HIDDEN), TOKEN: torch.randn(num_tokens, HIDDEN)}
    edges, types, attrs = {}, {}, {}
    for edge_type, n, rel in (
        (SPATIAL_EDGE, num_regions, 13),
        (SEMANTIC_EDGE, num_regions, 5),
        (DEP_EDGE, num_tokens, 6),
    ):
        edge_index = torch.unique(torch.randint(0, n, (2, 2 * n)), dim=1)
        edges[edge_type] = edge_index
        types[edge_type] = torch.randint(1 if rel == 13 else 0, rel, (edge_index.size(1),))
    attrs[SPATIAL_EDGE] = torch.randn(edges[SPATIAL_EDGE].size(1), GEOMETRY_DIM)
    zeros_r, zeros_t = torch.zeros(num_regions, dtype=torch.long), torch.zeros(num_tokens, dtype=torch.long)
    edges[TOKEN_TO_REGION] = complete_edge_index(zeros_t, zeros_r)
    edges[REGION_TO_TOKEN] = complete_edge_index(zeros_r, zeros_t)
    return x, edges, types, attrs


def _collate(samples):
    """Concatenate samples the way PyG's Batch does (offsets per node type, batch vectors)."""
    x = {nt: torch.cat([s[0][nt] for s in samples]) for nt in (REGION, TOKEN)}
    batch = {nt: torch.cat([torch.full((s[0][nt].size(0),), g) for g, s in enumerate(samples)]) for nt in x}
    edges, types, attrs = {}, {}, {}
    for edge_type in samples[0][1]:
        src, _, dst = edge_type
        parts, off_src, off_dst = [], 0, 0
        for s in samples:
            parts.append(s[1][edge_type] + torch.tensor([[off_src], [off_dst]]))
            off_src += s[0][src].size(0)
            off_dst += s[0][dst].size(0)
        edges[edge_type] = torch.cat(parts, dim=1)
    for edge_type in samples[0][2]:
        types[edge_type] = torch.cat([s[2][edge_type] for s in samples])
    attrs[SPATIAL_EDGE] = torch.cat([s[3][SPATIAL_EDGE] for s in samples])
    return x, edges, types, attrs, batch


def _block(**kwargs):
    args = dict(edge_dim=EDGE_DIM, cond_dim=8, dropout=0.0)
    args.update(kwargs)
    return FusionBlock(HIDDEN, 4, NUM_RELATIONS, **args)


def test_shapes_repr_and_input_not_modified():
    block = _block()
    assert repr(block) == (
        "FusionBlock(16, heads=4, relations=(spatial=13, semantic=5, dep=6), intra=True, cross=True)"
    )
    x, edges, types, attrs = _sample(5, 7)
    before = {k: v.clone() for k, v in x.items()}
    out = block(x, edges, types, attrs, cond=torch.randn(1, 8))
    assert out[REGION].shape == (5, HIDDEN) and out[TOKEN].shape == (7, HIDDEN)
    assert all(torch.equal(x[k], before[k]) for k in x)


def test_gradients_reach_every_parameter():
    block = _block(num_bases=2)
    x, edges, types, attrs, batch = _collate([_sample(5, 7), _sample(3, 4)])
    out = block(x, edges, types, attrs, batch, cond=torch.randn(2, 8))
    (out[REGION].pow(2).sum() + out[TOKEN].pow(2).sum()).backward()
    for name, param in block.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_graph_alone_equals_graph_in_batch():
    block = _block().eval()
    samples = [_sample(5, 7), _sample(3, 4), _sample(6, 2)]
    cond = torch.randn(3, 8)
    x, edges, types, attrs, batch = _collate(samples)
    out = block(x, edges, types, attrs, batch, cond)
    alone = block(*samples[1], cond=cond[1:2])
    torch.testing.assert_close(out[REGION][5:8], alone[REGION], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[TOKEN][7:11], alone[TOKEN], atol=1e-5, rtol=1e-5)


def test_permutation_equivariance():
    block = _block().eval()
    x, edges, types, attrs = _sample(6, 5)
    cond = torch.randn(1, 8)
    out = block(x, edges, types, attrs, cond=cond)
    perm = {REGION: torch.randperm(6), TOKEN: torch.randperm(5)}
    inv = {nt: torch.argsort(p) for nt, p in perm.items()}
    x_p = {nt: x[nt][perm[nt]] for nt in x}
    edges_p = {et: torch.stack([inv[et[0]][e[0]], inv[et[2]][e[1]]]) for et, e in edges.items()}
    out_p = block(x_p, edges_p, types, attrs, cond=cond)
    for nt in x:
        torch.testing.assert_close(out_p[nt], out[nt][perm[nt]], atol=1e-5, rtol=1e-5)


def test_complete_cross_edges_as_none_equal_explicit_edges():
    block = _block().eval()
    x, edges, types, attrs, batch = _collate([_sample(5, 7), _sample(3, 4)])
    explicit = block(x, edges, types, attrs, batch)
    implicit = block(x, {**edges, TOKEN_TO_REGION: None, REGION_TO_TOKEN: None}, types, attrs, batch)
    for nt in x:
        torch.testing.assert_close(explicit[nt], implicit[nt], atol=1e-5, rtol=1e-5)


def test_missing_edge_types_and_ablations():
    x, edges, types, attrs = _sample(5, 7)
    block = _block()
    only_dep = {DEP_EDGE: edges[DEP_EDGE]}
    out = block(x, only_dep, types)
    assert out[REGION].shape == (5, HIDDEN)
    # Without cross edges regions see only their own graph: tokens do not matter.
    changed = {REGION: x[REGION], TOKEN: x[TOKEN] + 1.0}
    block.eval()
    torch.testing.assert_close(block(x, only_dep)[REGION], block(changed, only_dep)[REGION])
    # With cross=False the cross edges are ignored too.
    no_cross = _block(cross=False).eval()
    assert len(no_cross.attn) == 0
    torch.testing.assert_close(
        no_cross(x, edges, types, attrs)[REGION], no_cross(changed, edges, types, attrs)[REGION]
    )
    # With intra=False relation layers are not built and region edges do not matter.
    no_intra = _block(intra=False).eval()
    assert len(no_intra.convs) == 0
    shuffled = {**edges, SPATIAL_EDGE: edges[SPATIAL_EDGE].flip(0)}
    torch.testing.assert_close(no_intra(x, edges)[REGION], no_intra(x, shuffled)[REGION])


def test_zero_edges_and_a_graph_without_tokens():
    block = _block()
    x = {REGION: torch.randn(4, HIDDEN), TOKEN: torch.randn(0, HIDDEN)}
    empty = torch.empty(2, 0, dtype=torch.long)
    edges = {SPATIAL_EDGE: empty, DEP_EDGE: empty, TOKEN_TO_REGION: empty, REGION_TO_TOKEN: empty}
    out = block(x, edges, {SPATIAL_EDGE: torch.empty(0, dtype=torch.long)})
    assert out[REGION].shape == (4, HIDDEN) and out[TOKEN].shape == (0, HIDDEN)
    assert torch.isfinite(out[REGION]).all()


def test_cross_modal_edge_types_are_refused_in_num_relations():
    with pytest.raises(InputError, match="intra-modal"):
        FusionBlock(HIDDEN, 4, {TOKEN_TO_REGION: 1})


def test_trains_inside_a_plain_module():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([_block(cond_dim=None)])
            self.out = nn.Linear(HIDDEN, 3)

        def forward(self, x, edges, types, attrs, batch):
            for block in self.blocks:
                x = block(x, edges, types, attrs, batch)
            return self.out(x[REGION])

    model = Net()
    x, edges, types, attrs, batch = _collate([_sample(5, 7), _sample(4, 3)])
    target = torch.randint(0, 3, (9,))
    opt = torch.optim.Adam(model.parameters(), lr=0.003)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x, edges, types, attrs, batch), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_intra_gate_starts_as_cross_attention_alone_and_learns():
    torch.manual_seed(0)
    gated = _block(intra_gate=True)
    plain = _block(intra=False)
    # Same cross-attention and FFN weights; the gated block also has the convs and their norms.
    missing = plain.load_state_dict(gated.state_dict(), strict=False).unexpected_keys
    assert missing and all(k.startswith(("convs.", "norm_intra.", "intra_gate.")) for k in missing)
    x, edges, types, attrs, batch = _collate([_sample(5, 7), _sample(3, 4)])
    cond = torch.randn(2, 8)
    out = gated(x, edges, types, attrs, batch, cond)
    expected = plain(x, edges, types, attrs, batch, cond)
    for node_type in (REGION, TOKEN):
        torch.testing.assert_close(out[node_type], expected[node_type])
    # The gates get a gradient at zero, so the graph messages can come in.
    (out[REGION].pow(2).sum() + out[TOKEN].pow(2).sum()).backward()
    assert all(gate.grad is not None and gate.grad.abs().sum() > 0 for gate in gated.intra_gate.values())
    with torch.no_grad():
        for gate in gated.intra_gate.values():
            gate.fill_(1.0)
    assert not torch.allclose(gated(x, edges, types, attrs, batch, cond)[REGION], expected[REGION])


def test_pointer_channel_returns_its_weights_and_agrees_on_both_paths():
    block = _block(pointer=True, cross_first=True).eval()
    assert repr(block).endswith("cross_first=True, pointer=True)")
    x, edges, types, attrs, batch = _collate([_sample(5, 7), _sample(3, 4)])
    out, (edge_index, alpha) = block(x, edges, types, attrs, batch, torch.randn(2, 8), return_pointer=True)
    assert edge_index.shape == (2, 5 * 7 + 3 * 4) and alpha.shape == (5 * 7 + 3 * 4, 4)
    # Every token's weights are a distribution over the regions of its own graph.
    sums = torch.zeros(11, 4).index_add_(0, edge_index[0], alpha)
    torch.testing.assert_close(sums, torch.ones(11, 4))
    assert bool((batch[TOKEN][edge_index[0]] == batch[REGION][edge_index[1]]).all())
    cond = torch.randn(2, 8)
    explicit = block(x, edges, types, attrs, batch, cond)
    implicit = block(x, {**edges, TOKEN_TO_REGION: None, REGION_TO_TOKEN: None}, types, attrs, batch, cond)
    for nt in x:
        torch.testing.assert_close(explicit[nt], implicit[nt], atol=1e-5, rtol=1e-5)
    # The channel changes the regions' update; without it the block returns no weights.
    without = _block(cross_first=True).eval()
    without.load_state_dict({k: v for k, v in block.state_dict().items() if not k.startswith("point.")})
    other = without(x, edges, types, attrs, batch, cond)
    assert not torch.allclose(other[REGION], explicit[REGION])
    assert without(x, edges, types, attrs, batch, cond, return_pointer=True)[1] is None


def test_pointer_readback_updates_the_tokens_only():
    block = _block(pointer=True, cross_first=True, pointer_readback=True).eval()
    assert repr(block).endswith("pointer=True, pointer_readback=True)")
    x, edges, types, attrs, batch = _collate([_sample(5, 7), _sample(3, 4)])
    cond = torch.randn(2, 8)
    out, (_, alpha) = block(x, edges, types, attrs, batch, cond, return_pointer=True)
    assert alpha.shape == (5 * 7 + 3 * 4, 4)
    plain = _block(pointer=True, cross_first=True).eval()
    plain.load_state_dict({k: v for k, v in block.state_dict().items() if ".back_" not in k})
    other = plain(x, edges, types, attrs, batch, cond)
    # Cross attention runs first: the regions' states after it are the same, the tokens' are not.
    assert not torch.allclose(other[TOKEN], out[TOKEN])
    out[TOKEN].pow(2).sum().backward()
    assert block.point.back_v.weight.grad.abs().sum() > 0
    with pytest.raises(InputError, match="set pointer=True"):
        _block(pointer_readback=True)


def test_cond_geometry_reaches_the_relation_layers_with_geometry_only():
    block = _block(cond_geometry=True)
    with_geometry = {key for key, conv in block.convs.items() if conv.lin_cond_geo is not None}
    assert with_geometry == {"region__spatial__region"}  # the only type with an edge_dim here
    x, edges, types, attrs, batch = _collate([_sample(5, 7), _sample(3, 4)])
    cond = torch.randn(2, 8)
    # It starts as the plain block and its conditioning trains.
    plain = _block()
    plain.load_state_dict(block.state_dict(), strict=False)
    out = block(x, edges, types, attrs, batch, cond)
    torch.testing.assert_close(out[REGION], plain(x, edges, types, attrs, batch, cond)[REGION])
    out[REGION].pow(2).sum().backward()
    assert block.convs["region__spatial__region"].lin_cond_geo.weight.grad.abs().sum() > 0
    # Without a condition the block has nothing to steer the geometry with.
    assert all(conv.lin_cond_geo is None for conv in _block(cond_geometry=True, cond_dim=None).convs.values())


def test_cond_gate_starts_as_the_plain_gate_and_opens_per_question():
    torch.manual_seed(0)
    conditioned = _block(intra_gate=True, cond_gate=True)
    plain = _block(intra_gate=True)
    unexpected = plain.load_state_dict(conditioned.state_dict(), strict=False).unexpected_keys
    assert unexpected and all(k.startswith("gate_cond.") for k in unexpected)
    x, edges, types, attrs, batch = _collate([_sample(5, 7), _sample(3, 4)])
    cond = torch.randn(2, 8)
    out = conditioned(x, edges, types, attrs, batch, cond)
    for node_type in (REGION, TOKEN):
        torch.testing.assert_close(out[node_type], plain(x, edges, types, attrs, batch, cond)[node_type])
    (out[REGION].pow(2).sum() + out[TOKEN].pow(2).sum()).backward()
    assert all(lin.weight.grad.abs().sum() > 0 for lin in conditioned.gate_cond.values())
    # With the scalar gate closed, a question whose gate is open lets its graph's messages in, and
    # only its graph's: the other graph, whose question keeps its gate at zero, has no intra update.
    closed = _block(intra=False)
    closed.load_state_dict(conditioned.state_dict(), strict=False)
    with torch.no_grad():
        for lin in conditioned.gate_cond.values():
            lin.weight.copy_(torch.eye(8)[:1])  # gate = cond[:, 0]
    cond = torch.tensor([[1.0] + [0.0] * 7, [0.0] * 8])
    out = conditioned(x, edges, types, attrs, batch, cond)
    reference = closed(x, edges, types, attrs, batch, cond)
    first = batch[REGION] == 0
    assert not torch.allclose(out[REGION][first], reference[REGION][first])
    torch.testing.assert_close(out[REGION][~first], reference[REGION][~first])


def test_cond_gate_needs_the_gate_and_a_condition():
    with pytest.raises(InputError, match="cond_gate"):
        _block(cond_gate=True)
    with pytest.raises(InputError, match="cond_gate"):
        _block(intra_gate=True, cond_gate=True, cond_dim=None)
