from dataclasses import dataclass

import pytest
import torch
from torch_geometric.data import Batch

from mmgraph.datasets.synthetic_graphs import SyntheticRetrieval, SyntheticVQA
from mmgraph.errors import ConfigError
from mmgraph.graph import GraphBuilder
from mmgraph.graph.pairs import negative_pairs
from mmgraph.models import (
    DATA_KEYS,
    RetrievalBase,
    VQABase,
    build_config,
    create_model,
    list_models,
    model_kwargs_from_dataset,
)
from mmgraph.typing import REGION, SEMANTIC_EDGE

GRID = 3
GENERATE = dict(num_images=8, questions_per_image=3, captions_per_image=2, seed=1, image_size=24)
MODES = ("scene_graph", "pixels")
ALL_MODELS = {
    "graph_vqa",
    "single_stream_vqa",
    "no_graph_vqa",
    "no_cross_vqa",
    "question_only",
    "cnn_mlp",
    "relation_network",
    "graph_retrieval",
    "graph_retrieval_rerank",
    "bow_retrieval",
}
# Models whose regions must be pixels; every other model runs on both kinds of data.
PIXELS_ONLY = {"cnn_mlp"}
ENCODER_MODELS = {
    "graph_vqa",
    "single_stream_vqa",
    "no_graph_vqa",
    "no_cross_vqa",
    "graph_retrieval",
    "graph_retrieval_rerank",
}


def _builder():
    return GraphBuilder(parser="sequential", reverse_dep=True)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    out = {}
    for mode in MODES:
        out["vqa", mode] = SyntheticVQA(
            root, "train", regions=mode, grid=GRID, builder=_builder(), generate=GENERATE
        )
        out["retrieval", mode] = SyntheticRetrieval(
            root, "train", regions=mode, grid=GRID, builder=_builder(), generate=GENERATE
        )
    return out


def _small(name):
    if name in ENCODER_MODELS:
        return dict(hidden=32, layers=1, heads=2)
    return dict(hidden=32) if name == "bow_retrieval" else dict(hidden=32, layers=1)


def test_every_model_is_listed():
    assert ALL_MODELS <= set(list_models())
    assert list_models() == sorted(list_models())
    vqa = list_models("*vqa*")
    assert {"graph_vqa", "single_stream_vqa", "no_graph_vqa", "no_cross_vqa"} <= set(vqa)
    assert all("vqa" in name for name in vqa) and "question_only" not in vqa
    assert {"bow_retrieval", "graph_retrieval", "graph_retrieval_rerank"} <= set(list_models("*retrieval*"))
    assert list_models("no_such_*") == []


# Every registered model, not only the ones above: a new entry point is covered as soon as it exists.
CASES = [
    (name, mode) for name in list_models() for mode in MODES if mode == "pixels" or name not in PIXELS_ONLY
]


@pytest.mark.parametrize("name,mode", CASES)
def test_forward_backward_every_model(datasets, name, mode):
    task = "retrieval" if "retrieval" in name else "vqa"
    ds = datasets[task, mode]
    model = create_model(name, **model_kwargs_from_dataset(ds), **_small(name))
    batch = Batch.from_data_list([ds[i] for i in range(4)])
    if name == "graph_retrieval_rerank":
        loss, outputs = model.loss(batch, negative_batch=negative_pairs(batch, ds.builder))
        assert outputs["itm_logits"].numel() > 4
    else:
        loss, outputs = model.loss(batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert sum(g is not None and bool(g.abs().sum() > 0) for g in grads) > len(grads) // 2
    if task == "vqa":
        assert isinstance(model, VQABase)
        assert outputs["logits"].shape == (4, len(ds.answers))
    else:
        assert isinstance(model, RetrievalBase)
        assert outputs["image"].shape == outputs["text"].shape
        torch.testing.assert_close(outputs["image"].norm(dim=-1), torch.ones(4))


def test_model_kwargs_from_dataset(datasets):
    ds = datasets["vqa", "scene_graph"]
    kwargs = model_kwargs_from_dataset(ds)
    assert set(kwargs) <= set(DATA_KEYS)
    assert kwargs["vocab_size"] == len(ds.vocab)
    assert kwargs["answers"] == ds.answers.itos and kwargs["num_answers"] == len(ds.answers)
    data = ds._data
    assert kwargs["num_labels"] > int(data[REGION].label.max())
    assert kwargs["num_attrs"] > int(data[REGION].attr.max())
    assert kwargs["num_predicates"] > int(data[SEMANTIC_EDGE].edge_type.max())
    assert SEMANTIC_EDGE in kwargs["edge_types"]
    assert "pixels" not in kwargs and "region_feature_dim" not in kwargs
    pixels = model_kwargs_from_dataset(datasets["vqa", "pixels"])
    assert pixels["pixels"] is True and pixels["grid"] == GRID and "num_labels" not in pixels
    retrieval = model_kwargs_from_dataset(datasets["retrieval", "scene_graph"])
    assert "num_answers" not in retrieval
    # Concept tying maps: every label / attribute id to the same word's token id, or -1.
    labels, attrs, _ = ds.scene_vocabularies()
    for concepts, ids in ((labels, kwargs["label_token_ids"]), (attrs, kwargs["attr_token_ids"])):
        assert len(ids) == len(concepts)
        for word, token_id in zip(concepts.itos, ids):
            if token_id >= 0:
                assert ds.vocab.itos[token_id] == word
            else:
                assert word in concepts.specials or word not in ds.vocab
    assert kwargs["label_token_ids"][: len(labels.specials)] == [-1] * len(labels.specials)
    assert sum(i >= 0 for i in kwargs["attr_token_ids"]) > 0
    assert "label_token_ids" not in pixels


def test_concept_token_ids_tries_lower_case():
    from mmgraph.graph.vocab import Vocabulary
    from mmgraph.models.registry import concept_token_ids

    vocab = Vocabulary(["red", "cube"])
    concepts = Vocabulary(["Red", "cube", "tennis racket"], specials=("<pad>", "<unk>"))
    assert concept_token_ids(concepts, vocab) == [-1, -1, vocab.stoi["red"], vocab.stoi["cube"], -1]


def test_kwargs_survive_json_and_rebuild_the_same_model(datasets):
    import json

    kwargs = model_kwargs_from_dataset(datasets["vqa", "scene_graph"])
    model = create_model("graph_vqa", **kwargs, **_small("graph_vqa")).eval()
    assert model.encoder.region_encoder.tied
    plain = json.loads(json.dumps(kwargs, default=list))  # what checkpoints store
    plain["edge_types"] = tuple(tuple(e) for e in plain["edge_types"])
    again = create_model("graph_vqa", **plain, **_small("graph_vqa")).eval()
    again.load_state_dict(model.state_dict())
    batch = Batch.from_data_list([datasets["vqa", "scene_graph"][i] for i in range(3)])
    with torch.no_grad():
        torch.testing.assert_close(again(batch), model(batch))


def test_overrides_reach_the_model_or_its_encoder(datasets):
    kwargs = model_kwargs_from_dataset(datasets["vqa", "scene_graph"])
    model = create_model("graph_vqa", **kwargs, hidden=48, heads=4, layers=1, loss="bce")
    assert model.config.encoder.hidden == 48 and model.config.loss == "bce"
    assert model.config.encoder.variant == "graph"
    assert create_model("no_cross_vqa", **kwargs, layers=1).config.encoder.variant == "no_cross"


def test_unknown_model_name_lists_models():
    with pytest.raises(ConfigError, match="graph_vqa") as info:
        create_model("graph_vq")
    assert "Did you mean" in str(info.value) and "relation_network" in str(info.value)


def test_unknown_key_names_close_matches_and_valid_keys(datasets):
    kwargs = model_kwargs_from_dataset(datasets["vqa", "scene_graph"])
    with pytest.raises(ConfigError, match="'hiden'") as info:
        create_model("graph_vqa", **kwargs, hiden=32)
    assert "'hidden'" in str(info.value) and "Valid keys" in str(info.value)
    with pytest.raises(ConfigError, match="'g_layer'"):
        create_model("relation_network", **kwargs, g_layer=2)


def test_missing_data_sizes_are_config_errors():
    with pytest.raises(ConfigError, match="vocab_size"):
        create_model("graph_vqa", num_answers=3)
    with pytest.raises(ConfigError, match="num_answers"):
        create_model("question_only", vocab_size=10)


def test_ambiguous_key():
    @dataclass
    class Inner:
        hidden: int = 4
        dropout: float = 0.1

    @dataclass
    class Outer:
        encoder: Inner
        dropout: float = 0.1

    config = build_config(Outer, {"hidden": 8}, encoder_cls=Inner)
    assert config.encoder.hidden == 8
    with pytest.raises(ConfigError, match="'dropout'.*both"):
        build_config(Outer, {"dropout": 0.3}, encoder_cls=Inner)


def test_data_keys_a_model_lacks_are_ignored():
    model = create_model("question_only", vocab_size=10, num_answers=3, num_predicates=7, grid=4, hidden=16)
    assert model.config.hidden == 16
