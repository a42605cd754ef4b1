import pytest
import torch
from torch_geometric.data import Batch

from mmgraph.datasets.synthetic_graphs import SyntheticRetrieval
from mmgraph.errors import ConfigError, InputError
from mmgraph.graph import GraphBuilder
from mmgraph.graph.pairs import negative_pairs, pair_batch
from mmgraph.heads import alignment_loss, hard_negative_ranking_loss, info_nce_loss, itm_loss, vse_hinge_loss
from mmgraph.models import (
    MMGraphEncoderConfig,
    RetrievalModelConfig,
    create_model,
    model_kwargs_from_dataset,
)
from mmgraph.models.retrieval import image_codes
from mmgraph.typing import GROUNDING_EDGE

GENERATE = dict(num_images=8, questions_per_image=1, captions_per_image=2, seed=2, image_size=24)
SMALL = dict(hidden=32, layers=1, heads=2, dropout=0.0, embed_dim=16)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("retrieval_model")
    builder = GraphBuilder(parser="sequential", reverse_dep=True)
    return SyntheticRetrieval(root, "train", builder=builder, generate=GENERATE)


@pytest.fixture(scope="module")
def batch(dataset):
    return Batch.from_data_list([dataset[i] for i in range(6)])


def _model(dataset, name="graph_retrieval", **kwargs):
    return create_model(name, **model_kwargs_from_dataset(dataset), **{**SMALL, **kwargs})


def test_embeddings_are_normalised_and_independent(dataset, batch):
    model = _model(dataset).eval()
    out = model(batch)
    assert out.image.shape == out.text.shape == (6, 16)
    torch.testing.assert_close(out.image.norm(dim=-1), torch.ones(6))
    # Each graph's image with another graph's text: the image embeddings stay, the text ones move.
    perm = torch.tensor([3, 0, 5, 1, 2, 4])
    swapped = pair_batch(batch, batch, torch.stack([torch.arange(6), perm], 1))
    torch.testing.assert_close(model.embed_images(swapped), out.image)
    torch.testing.assert_close(model.embed_texts(swapped), out.text[perm])


def test_rank_takes_batches_iterables_and_embeddings(dataset, batch):
    model = _model(dataset).eval()
    sims = model.rank(batch, batch)
    out = model(batch)
    torch.testing.assert_close(sims, out.image @ out.text.t())
    halves = [Batch.from_data_list([dataset[i] for i in range(k, k + 3)]) for k in (0, 3)]
    torch.testing.assert_close(model.rank(halves, halves), sims)
    torch.testing.assert_close(model.rank(out.image, halves), sims)
    with pytest.raises(InputError):
        model.rank(torch.zeros(2, 16), torch.zeros(2, 8))


def test_infonce_loss_masks_the_batchs_duplicate_images(dataset, batch):
    model = _model(dataset)
    ids = image_codes(batch)
    assert ids.unique().numel() < 6  # two captions per image: the batch holds images twice
    loss, out = model.loss(batch)
    torch.testing.assert_close(loss, info_nce_loss(out["image"], out["text"], model.logit_scale(), ids))
    assert model.logit_scale().item() == pytest.approx(1 / 0.07, rel=1e-5)


def test_vse_loss(dataset, batch):
    model = _model(dataset, loss="vse", margin=0.1)
    assert model.logit_scale is None
    loss, out = model.loss(batch)
    expected = vse_hinge_loss(out["image"], out["text"], 0.1, True, image_codes(batch))
    torch.testing.assert_close(loss, expected)


def test_reset_head(dataset, batch):
    model = _model(dataset)
    model.reset_head(embed_dim=8)
    assert model(batch).image.shape == (6, 8)


def test_dual_encoder_config_must_have_no_cross_attention(dataset):
    with pytest.raises(ConfigError, match="no_cross"):
        RetrievalModelConfig(MMGraphEncoderConfig(vocab_size=10))
    with pytest.raises(ConfigError, match="variant"):
        _model(dataset, variant="graph")
    with pytest.raises(ConfigError, match="loss"):
        _model(dataset, loss="triplet")


def test_hardest_negatives_are_other_images(dataset, batch):
    model = _model(dataset).eval()
    out = model(batch)
    ids = image_codes(batch)
    pairs = model.hardest_negatives(out.image, out.text, ids)
    assert pairs.size(0) == 12
    assert bool((ids[pairs[:, 0]] != ids[pairs[:, 1]]).all())
    sims = out.image @ out.text.t()
    # The first six are, per text, the most similar image of another picture.
    for j in range(6):
        others = (ids != ids[j]).nonzero().flatten()
        assert int(pairs[j, 0]) == int(others[sims[others, j].argmax()])
    one_image = torch.zeros(6, dtype=torch.long)
    assert model.hardest_negatives(out.image, out.text, one_image).size(0) == 0


def test_rerank_training_uses_hard_and_compositional_negatives(dataset, batch):
    model = _model(dataset, "graph_retrieval_rerank")
    negatives = negative_pairs(batch, dataset.builder)
    loss, out = model.loss(batch, negative_batch=negatives)
    labels = out["itm_labels"]
    assert labels.numel() == 6 + 12 + negatives.num_graphs
    assert labels[:6].tolist() == [1.0] * 6 and labels[6:].sum() == 0
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.cross_encoder.parameters())
    assert model.itm_head.out.weight.grad.abs().sum() > 0
    without, _ = model.loss(batch)
    assert torch.isfinite(without)


def test_rerank_loss_is_balanced_itm_plus_ranking_of_each_caption(dataset, batch):
    torch.manual_seed(0)
    model = _model(dataset, "graph_retrieval_rerank").eval()
    negatives = negative_pairs(batch, dataset.builder)
    contrastive = model.contrastive_loss(model(batch), image_codes(batch))
    loss, out = model.loss(batch, negative_batch=negatives)
    logits, labels = out["itm_logits"], out["itm_labels"]
    composed = logits[-negatives.num_graphs :]
    ranking = hard_negative_ranking_loss(logits[:6], composed, negatives.pair_index[:, 0])
    torch.testing.assert_close(loss, contrastive + itm_loss(logits, labels, balance=True) + ranking)
    model.config.itm_rank_weight, model.config.itm_balance = 0.0, False
    plain, _ = model.loss(batch, negative_batch=negatives)
    torch.testing.assert_close(plain, contrastive + itm_loss(logits, labels))


def test_rerank_shares_the_dual_encoders_input_encoders(dataset, batch):
    shared = _model(dataset, "graph_retrieval_rerank")
    own = _model(dataset, "graph_retrieval_rerank", share_inputs=False)
    for name in ("token_encoder", "region_encoder"):
        assert getattr(shared.cross_encoder, name) is getattr(shared.encoder, name)
        assert getattr(own.cross_encoder, name) is not getattr(own.encoder, name)
    count = sum(p.numel() for p in shared.parameters())
    own_inputs = sum(
        p.numel() for n in ("token_encoder", "region_encoder") for p in getattr(own.encoder, n).parameters()
    )
    assert count == sum(p.numel() for p in own.parameters()) - own_inputs
    # The ITM loss trains the shared embeddings too.
    shared.loss(batch, negative_batch=negative_pairs(batch, dataset.builder))[0].backward()
    assert shared.encoder.token_encoder.word_emb.weight.grad.abs().sum() > 0


def test_rerank_needs_the_cross_encoder(dataset, batch):
    model = _model(dataset)
    sims = model.rank(batch, batch)
    with pytest.raises(ConfigError, match="rerank=True"):
        model.rerank(sims, batch, batch)
    with pytest.raises(ConfigError, match="rerank=True"):
        model.loss(batch, negative_batch=negative_pairs(batch, dataset.builder))


@pytest.mark.parametrize("k", [2, 20])
def test_rerank_changes_only_the_top_k(dataset, k):
    torch.manual_seed(1)
    model = _model(dataset, "graph_retrieval_rerank").eval()
    graphs = [dataset[i] for i in range(len(dataset))]
    seen, images = set(), []
    for graph in graphs:
        if graph.image_id not in seen:
            seen.add(graph.image_id)
            images.append(graph)
    sims = model.rank(Batch.from_data_list(images), Batch.from_data_list(graphs))
    result = model.rerank(sims, images, graphs, k=k, batch_size=7)
    num_images, num_texts = sims.shape
    for matrix, dim in ((result.i2t, 1), (result.t2i, 0)):
        kk = min(k, sims.size(dim))
        top = sims.topk(kk, dim=dim).indices
        in_top = torch.zeros_like(sims, dtype=torch.bool).scatter_(dim, top, True)
        torch.testing.assert_close(matrix[~in_top], sims[~in_top])
        # The top-k stay the top-k...
        new_top = matrix.topk(kk, dim=dim).indices
        assert torch.equal(new_top.sort(dim=dim).values, top.sort(dim=dim).values)
        # ... ordered by the cross-encoder's scores.
        queries = range(num_images) if dim == 1 else range(num_texts)
        for q in queries:
            candidates = top[q] if dim == 1 else top[:, q]
            pairs = [(q, int(c)) if dim == 1 else (int(c), q) for c in candidates]
            with torch.no_grad():
                scores = model.rerank_scores(pair_batch(images, graphs, pairs))
            row = matrix[q, candidates] if dim == 1 else matrix[candidates, q]
            assert torch.equal(row.argsort(descending=True), scores.argsort(descending=True))
    with pytest.raises(InputError, match="N_img, N_txt"):
        model.rerank(sims.t(), images, graphs)


def test_rerank_alignment_loss_on_the_true_pairs(tmp_path):
    builder = GraphBuilder(parser="sequential", reverse_dep=True, grounding=True)
    dataset = SyntheticRetrieval(tmp_path, "train", builder=builder, generate=GENERATE)
    batch = Batch.from_data_list([dataset[i] for i in range(6)])
    assert batch[GROUNDING_EDGE].edge_index.size(1) > 0
    torch.manual_seed(0)
    model = _model(dataset, "graph_retrieval_rerank", align_weight=1.0)
    assert model.cross_encoder.config.pointer and not model.encoder.config.pointer
    loss, outputs = model.loss(batch)
    # The same alignment loss, from the true pairs alone: the pointer of pair b reads graph b's grounding.
    pointer = model.cross_encoder(pair_batch(batch, batch, torch.arange(6).unsqueeze(1).expand(-1, 2)), True)
    target = batch[GROUNDING_EDGE].edge_index
    expected = torch.stack([alignment_loss(e, a, target) for e, a in pointer.pointer]).mean()
    torch.testing.assert_close(outputs["align_loss"], expected)
    without = _model(dataset, "graph_retrieval_rerank")
    without.load_state_dict({k: v for k, v in model.state_dict().items() if ".point." not in k})
    loss_without, _ = without.loss(batch)
    assert not torch.allclose(loss, loss_without)
    with pytest.raises(ConfigError, match="rerank=True"):
        _model(dataset, align_weight=1.0)
    plain = SyntheticRetrieval(tmp_path, "train", builder=GraphBuilder(parser="sequential", reverse_dep=True))
    with pytest.raises(InputError, match=r"GraphBuilder\(grounding=True\)"):
        model.loss(Batch.from_data_list([plain[0], plain[1]]))


def test_rerank_edge_types_set_the_re_rankers_graph_only(dataset, batch):
    spatial = (("region", "spatial", "region"),)
    model = _model(dataset, "graph_retrieval_rerank", rerank_edge_types=[list(spatial[0])])
    assert model.cross_encoder.config.edge_types == spatial
    assert (
        model.encoder.config.edge_types == _model(dataset, "graph_retrieval_rerank").encoder.config.edge_types
    )
    assert len(model.encoder.config.edge_types) > 1
    # Only the spatial relation layers in the re-ranker's blocks.
    assert {key for block in model.cross_encoder.blocks for key in block.convs} == {"region__spatial__region"}
    loss, _ = model.loss(batch)
    assert torch.isfinite(loss)
    with pytest.raises(ConfigError, match="rerank=True"):
        _model(dataset, rerank_edge_types=spatial)
