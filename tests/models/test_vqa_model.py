import pytest
import torch
from torch_geometric.data import Batch

from mmgraph.datasets.synthetic_graphs import SyntheticVQA
from mmgraph.errors import ConfigError, InputError
from mmgraph.graph import GraphBuilder
from mmgraph.heads import alignment_mass, vqa_bce_loss, vqa_ce_loss
from mmgraph.models import (
    EncoderOutput,
    MMGraphEncoderConfig,
    VQAModel,
    VQAModelConfig,
    create_model,
    model_kwargs_from_dataset,
)
from mmgraph.train.tasks import evaluate_vqa
from mmgraph.typing import GROUNDING_EDGE, REGION

GENERATE = dict(num_images=10, questions_per_image=5, captions_per_image=1, seed=1, image_size=24)
SMALL = dict(hidden=32, layers=1, heads=2, dropout=0.0, head_dropout=0.0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("vqa_model")
    return SyntheticVQA(
        root, "train", builder=GraphBuilder(parser="sequential", reverse_dep=True), generate=GENERATE
    )


@pytest.fixture(scope="module")
def batch(dataset):
    return Batch.from_data_list([dataset[i] for i in range(32)])


def _model(dataset, **kwargs):
    return create_model("graph_vqa", **model_kwargs_from_dataset(dataset), **{**SMALL, **kwargs})


def test_forward_features_and_head(dataset, batch):
    model = _model(dataset).eval()
    features = model.forward_features(batch)
    assert isinstance(features, EncoderOutput)
    logits = model.forward_head(features)
    assert logits.shape == (32, len(dataset.answers))
    torch.testing.assert_close(model(batch), logits)
    torch.testing.assert_close(model.forward_head(features.fused), logits)
    assert repr(model).startswith("VQAModel(MMGraphEncoder(variant='graph'")


def test_ce_loss_on_answer_ids(dataset, batch):
    model = _model(dataset)
    loss, outputs = model.loss(batch)
    torch.testing.assert_close(loss, vqa_ce_loss(outputs["logits"], batch.y))


def test_bce_loss_on_soft_scores_and_on_ids(dataset, batch):
    model = _model(dataset, loss="bce")
    num_answers = len(dataset.answers)
    soft = torch.zeros(32, num_answers)
    soft[torch.arange(32), batch.y.clamp(min=0)] = 0.6
    soft_batch = batch.clone()
    soft_batch.y = soft
    loss, outputs = model.loss(soft_batch)
    torch.testing.assert_close(loss, vqa_bce_loss(outputs["logits"], soft))
    # Answer ids become one-hot rows.
    loss, outputs = model.loss(batch)
    one_hot = torch.nn.functional.one_hot(batch.y, num_answers).float()
    torch.testing.assert_close(loss, vqa_bce_loss(outputs["logits"], one_hot))


def test_ce_rejects_soft_scores(dataset, batch):
    model = _model(dataset)
    soft_batch = batch.clone()
    soft_batch.y = torch.rand(32, len(dataset.answers))
    with pytest.raises(InputError, match="loss='bce'"):
        model.loss(soft_batch)


def test_predict_returns_answer_strings(dataset, batch):
    model = _model(dataset).eval()
    out = model.predict(batch, k=2)
    assert len(out) == 32 and all(len(row) == 2 for row in out)
    assert all(answer in dataset.answers.itos for row in out for answer, _ in row)
    assert all(row[0][1] >= row[1][1] for row in out)
    best = model(batch).argmax(-1).tolist()
    assert [row[0][0] for row in out] == [dataset.answers.itos[i] for i in best]


def test_predict_needs_answers(dataset, batch):
    kwargs = model_kwargs_from_dataset(dataset)
    kwargs.pop("answers")
    model = create_model("graph_vqa", **kwargs, **SMALL)
    with pytest.raises(ConfigError, match="answers"):
        model.predict(batch)


def test_reset_head(dataset, batch):
    model = _model(dataset)
    encoder_state = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    model.reset_head(3, ["a", "b", "c"])
    assert model(batch).shape == (32, 3)
    assert model.predict(batch)[0][0][0] in ("a", "b", "c")
    for key, value in model.encoder.state_dict().items():
        torch.testing.assert_close(value, encoder_state[key])
    with pytest.raises(InputError):
        model.reset_head(2, ["a"])


def test_config_errors(dataset):
    encoder = MMGraphEncoderConfig(vocab_size=len(dataset.vocab), hidden=16, heads=2, layers=1)
    with pytest.raises(ConfigError, match="num_answers"):
        VQAModelConfig(encoder)
    with pytest.raises(ConfigError, match="loss"):
        VQAModelConfig(encoder, num_answers=3, loss="mse")
    with pytest.raises(ConfigError, match="answers"):
        VQAModelConfig(encoder, num_answers=3, answers=["a"])
    config = VQAModelConfig(encoder.to_dict(), num_answers=3)  # a dict (from a saved config) is accepted
    assert isinstance(config.encoder, MMGraphEncoderConfig)
    assert VQAModel(config)(Batch.from_data_list([dataset[0]])).shape == (1, 3)


def test_tiny_graph_vqa_overfits_32_questions(dataset, batch):
    torch.manual_seed(0)
    model = _model(dataset)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    accuracy = 0.0
    for _ in range(150):
        loss, outputs = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        accuracy = (outputs["logits"].argmax(-1) == batch.y).float().mean().item()
        if accuracy >= 0.95:
            break
    model.eval()
    with torch.no_grad():
        accuracy = (model(batch).argmax(-1) == batch.y).float().mean().item()
    assert accuracy >= 0.9


@pytest.fixture(scope="module")
def grounded(tmp_path_factory):
    root = tmp_path_factory.mktemp("vqa_model_grounded")
    builder = GraphBuilder(parser="sequential", reverse_dep=True, grounding=True)
    dataset = SyntheticVQA(root, "train", builder=builder, generate=GENERATE)
    return dataset, Batch.from_data_list([dataset[i] for i in range(32)])


def test_alignment_loss_is_added_and_learnt(grounded):
    dataset, batch = grounded
    assert batch[GROUNDING_EDGE].edge_index.size(1) > 0
    torch.manual_seed(0)
    model = _model(dataset, layers=2, pointer=True, align_weight=0.5)
    loss, outputs = model.loss(batch)
    answer = vqa_ce_loss(outputs["logits"], batch.y)
    torch.testing.assert_close(loss, answer + 0.5 * outputs["align_loss"])
    features = model.encoder(batch, return_pointer=True)
    assert len(features.pointer) == 2
    first = float(outputs["align_loss"])
    with torch.no_grad():
        before = evaluate_vqa(model, [batch], torch.device("cpu"))["grounding"]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        loss, outputs = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    # The pointer learns where the words point: far less than a uniform guess over the regions.
    assert float(outputs["align_loss"]) < 0.25 * first
    # The evaluation's grounding score is the last block's mass on the named regions, and it rose.
    with torch.no_grad():
        scores = evaluate_vqa(model, [batch], torch.device("cpu"))
        edge_index, alpha = model.encoder(batch, return_pointer=True).pointer[-1]
        _, mass = alignment_mass(edge_index, alpha, batch[GROUNDING_EDGE].edge_index)
    assert scores["grounding"] == pytest.approx(float(mass.mean()))
    assert scores["grounding"] > before + 0.2
    assert {key for key in scores if key.startswith("grounding/")} == {
        f"grounding/{f}" for f in set(batch.family)
    }
    # With the readback the words read the regions they point at; the loss is the same sum.
    torch.manual_seed(0)
    readback = _model(dataset, layers=2, pointer=True, pointer_readback=True, align_weight=0.5)
    loss, outputs = readback.loss(batch)
    torch.testing.assert_close(loss, vqa_ce_loss(outputs["logits"], batch.y) + 0.5 * outputs["align_loss"])
    loss.backward()
    assert all(block.point.back_v.weight.grad.abs().sum() > 0 for block in readback.encoder.blocks)
    # Evaluation does not read the grounding.
    model.eval()
    plain = batch.clone()
    del plain[GROUNDING_EDGE]
    torch.testing.assert_close(model(plain), model(batch))


def test_alignment_config_and_input_errors(dataset, batch):
    with pytest.raises(ConfigError, match="set pointer=True"):
        _model(dataset, align_weight=1.0)
    with pytest.raises(ConfigError, match="align_weight must be >= 0"):
        _model(dataset, pointer=True, align_weight=-1.0)
    with pytest.raises(ConfigError, match="pointer=True is part of the cross-modal"):
        create_model("single_stream_vqa", **model_kwargs_from_dataset(dataset), **SMALL, pointer=True)
    with pytest.raises(ConfigError, match="pointer_readback=True .* needs pointer=True"):
        _model(dataset, pointer_readback=True)
    model = _model(dataset, pointer=True, align_weight=1.0)
    with pytest.raises(InputError, match=r"GraphBuilder\(grounding=True\)"):
        model.loss(batch)
    # Without the loss the pointer channel trains on the answers alone.
    loss, outputs = _model(dataset, pointer=True).loss(batch)
    assert "align_loss" not in outputs and torch.isfinite(loss)


def test_box_frequencies_option_widens_the_box_embedding(dataset, batch):
    model = _model(dataset, box_frequencies=4)
    assert model.encoder.region_encoder.lin_box.in_features == 5 * 9
    loss, _ = model.loss(batch)
    loss.backward()
    assert model.encoder.region_encoder.lin_box.weight.grad[:, 5:].abs().sum() > 0
    with pytest.raises(ConfigError, match="box_frequencies must be >= 0"):
        _model(dataset, box_frequencies=-2)


def test_signed_offset_extends_the_edge_geometry(dataset, batch):
    from mmgraph.models.encoder import SIGNED_OFFSET_SCALE
    from mmgraph.typing import GEOMETRY_DIM, SPATIAL_EDGE

    model = _model(dataset, signed_offset=True, intra_gate=False)  # no zero gate: the edges get gradients
    conv = model.encoder.blocks[0].convs["region__spatial__region"]
    assert conv.lin_edge.in_channels == GEOMETRY_DIM + 2
    _, _, attrs = model.encoder.edge_dicts(batch, batch.collect("batch"))
    attr, edge_index = attrs[SPATIAL_EDGE], batch[SPATIAL_EDGE].edge_index
    torch.testing.assert_close(attr[:, :GEOMETRY_DIM], batch[SPATIAL_EDGE].edge_attr)
    box = batch[REGION].box
    src, dst = edge_index
    # Source centre minus target centre, in tenths of the image: left of the target is negative x.
    expected = ((box[src, 0] + box[src, 2]) - (box[dst, 0] + box[dst, 2])) * 0.5 * SIGNED_OFFSET_SCALE
    torch.testing.assert_close(attr[:, GEOMETRY_DIM], expected)
    assert attr[:, GEOMETRY_DIM:].abs().max() <= SIGNED_OFFSET_SCALE  # boxes lie in the unit square
    loss, _ = model.loss(batch)
    loss.backward()
    assert conv.lin_edge.weight.grad[:, GEOMETRY_DIM:].abs().sum() > 0
    assert (
        _model(dataset).encoder.blocks[0].convs["region__spatial__region"].lin_edge.in_channels
        == GEOMETRY_DIM
    )


def test_question_conditioned_gate_and_geometry_options(dataset, batch):
    model = _model(dataset, cond_gate=True, cond_geometry=True)
    block = model.encoder.blocks[0]
    assert block.gate_cond is not None and REGION in block.gate_cond
    assert block.convs["region__spatial__region"].lin_cond_geo is not None
    loss, _ = model.loss(batch)
    loss.backward()
    assert block.gate_cond[REGION].weight.grad is not None
    with pytest.raises(ConfigError, match="cond_gate=True makes the intra_gate depend on the question"):
        _model(dataset, cond_gate=True, intra_gate=False)
