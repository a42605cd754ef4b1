import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch

from mmgraph.datasets.synthetic_graphs import SyntheticRetrieval, SyntheticVQA
from mmgraph.errors import ConfigError, InputError
from mmgraph.graph import GraphBuilder
from mmgraph.models import (
    BaselineVQAConfig,
    QuestionEncoder,
    RelationNetwork,
    create_model,
    model_kwargs_from_dataset,
)
from mmgraph.typing import REGION, TOKEN

GRID = 3
GENERATE = dict(num_images=8, questions_per_image=3, captions_per_image=2, seed=4, image_size=24)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines")
    builder = lambda: GraphBuilder(parser="sequential")  # noqa: E731
    return {
        "scene_graph": SyntheticVQA(root, "train", builder=builder(), generate=GENERATE),
        "pixels": SyntheticVQA(
            root, "train", regions="pixels", grid=GRID, builder=builder(), generate=GENERATE
        ),
        "retrieval": SyntheticRetrieval(root, "train", builder=builder(), generate=GENERATE),
    }


def _model(name, ds, **kwargs):
    return create_model(name, **model_kwargs_from_dataset(ds), **{"hidden": 16, "layers": 2, **kwargs}).eval()


def _batch(ds, indices):
    return Batch.from_data_list([ds[i] for i in indices])


def _relation_network_by_hand(model: RelationNetwork, graph):
    """g_theta on the explicit concatenation [o_i; o_j; q] of every ordered pair, one pair at a time."""
    batch = Batch.from_data_list([graph])
    objects, _, _ = model.objects(batch)
    question = model.encode_question(batch)[0]
    weight = torch.cat([model.g_first.weight, model.g_second.weight, model.g_question.weight], dim=1)
    total = 0
    for i in range(objects.size(0)):
        for j in range(objects.size(0)):
            x = torch.cat([objects[i], objects[j], question])
            total = total + model.g_rest(F.relu(weight @ x + model.g_question.bias))
    return model.forward_head(F.relu(model.f_first(total)).unsqueeze(0))


def test_relation_network_equals_the_pairwise_definition(datasets):
    ds = datasets["scene_graph"]
    model = _model("relation_network", ds)
    with torch.no_grad():
        expected = _relation_network_by_hand(model, ds[0])
        torch.testing.assert_close(model(_batch(ds, [0])), expected, atol=1e-5, rtol=1e-5)


def test_relation_network_masks_padding_per_graph(datasets):
    ds = datasets["scene_graph"]
    model = _model("relation_network", ds)
    sizes = [ds[i][REGION].num_nodes for i in range(len(ds))]
    small = min(range(len(ds)), key=sizes.__getitem__)
    large = max(range(len(ds)), key=sizes.__getitem__)
    assert sizes[small] < sizes[large]
    with torch.no_grad():
        alone = model(_batch(ds, [small]))
        together = model(_batch(ds, [large, small]))
    torch.testing.assert_close(together[1:], alone, atol=1e-5, rtol=1e-5)


def test_relation_network_on_pixels(datasets):
    ds = datasets["pixels"]
    model = _model("relation_network", ds)
    assert model.backbone is not None and model.region_encoder is None
    assert model(_batch(ds, [0, 1, 2])).shape == (3, len(ds.answers))
    wrong = create_model(
        "relation_network", **{**model_kwargs_from_dataset(ds), "grid": GRID + 1, "hidden": 16}
    )
    with pytest.raises(InputError, match="grid"):
        wrong(_batch(ds, [0]))


def test_cnn_mlp(datasets):
    ds = datasets["pixels"]
    model = _model("cnn_mlp", ds, object_dim=8)
    assert model.lin.in_features == 8 * GRID * GRID + model.config.question_dim
    assert model(_batch(ds, [0, 1])).shape == (2, len(ds.answers))
    with pytest.raises(ConfigError, match="pixels"):
        create_model("cnn_mlp", **model_kwargs_from_dataset(datasets["scene_graph"]), pixels=False)
    no_image = create_model("cnn_mlp", **model_kwargs_from_dataset(datasets["scene_graph"]))
    with pytest.raises(InputError, match="no image"):
        no_image(_batch(datasets["scene_graph"], [0]))


def test_question_only_ignores_the_image(datasets):
    ds = datasets["scene_graph"]
    model = _model("question_only", ds)
    batch = _batch(ds, [0, 1])
    changed = batch.clone()
    changed[REGION].label = torch.zeros_like(changed[REGION].label)
    changed[REGION].box = changed[REGION].box.flip(0)
    with torch.no_grad():
        torch.testing.assert_close(model(changed), model(batch))


@pytest.mark.parametrize("mode", ["lstm", "mean"])
def test_question_encoder_reads_each_graph_alone(mode):
    encoder = QuestionEncoder(20, 8, 6, mode=mode)
    ids = torch.tensor([3, 4, 5, 6, 7, 8, 2])
    batch = torch.tensor([0, 0, 0, 0, 0, 1, 1])
    out = encoder(ids, batch, 2)
    assert out.shape == (2, 6)
    alone = encoder(ids[5:], torch.zeros(2, dtype=torch.long), 1)
    torch.testing.assert_close(out[1:], alone)
    if mode == "mean":
        torch.testing.assert_close(alone[0], encoder.proj(encoder.embed(ids[5:]).mean(0)))
    assert repr(encoder) == f"QuestionEncoder(20, 8, 6, mode={mode!r})"


def test_baseline_config_errors():
    with pytest.raises(ConfigError, match="question"):
        BaselineVQAConfig(vocab_size=5, num_answers=2, question="gru")
    with pytest.raises(ConfigError, match="layers"):
        BaselineVQAConfig(vocab_size=5, num_answers=2, layers=0)
    with pytest.raises(ConfigError, match="vocab_size"):
        BaselineVQAConfig(num_answers=2)


def test_bow_retrieval_text_is_the_mean_of_word_embeddings(datasets):
    ds = datasets["retrieval"]
    model = create_model("bow_retrieval", **model_kwargs_from_dataset(ds), hidden=16, embed_dim=8)
    batch = _batch(ds, [0, 1, 2])
    out = model(batch)
    ids = batch[TOKEN].x[batch[TOKEN].batch == 1]
    expected = F.normalize(model.text_proj(model.word_emb(ids).mean(0)), dim=-1)
    torch.testing.assert_close(out.text[1], expected)
    loss, _ = model.loss(batch)
    assert torch.isfinite(loss)
    with pytest.raises(ConfigError, match="re-ranker"):
        model.loss(batch, negative_batch=batch)
