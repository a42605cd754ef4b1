import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmgraph.errors import InputError
from mmgraph.metrics.vqa import (
    ARTICLES,
    CONTRACTIONS,
    NUMBER_WORDS,
    PUNCTUATION,
    VQAEvaluator,
    normalize_answer,
    normalize_gt_answers,
    process_punctuation,
    vqa_score,
    vqa_soft_scores,
)

# ----------------------------------------------------------------------------
# An independent oracle: the steps of the official vqaEval.py written out as
# its loops run them (per-mark str.replace, the official period regex and its
# count=re.UNICODE quirk, per-annotator leave-one-out over answer dicts).

_OFFICIAL_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_OFFICIAL_COMMA = re.compile(r"(\d)(\,)(\d)")


def _oracle_punct(in_text):
    out = in_text
    for p in PUNCTUATION:
        if (p + " " in in_text or " " + p in in_text) or (re.search(_OFFICIAL_COMMA, in_text) is not None):
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _OFFICIAL_PERIOD.sub("", out, count=int(re.UNICODE))


def _oracle_digit_article(in_text):
    out = []
    for word in in_text.lower().split():
        word = NUMBER_WORDS.get(word, word)
        if word not in ARTICLES:
            out.append(word)
    for i, word in enumerate(out):
        if word in CONTRACTIONS:
            out[i] = CONTRACTIONS[word]
    return " ".join(out)


def _oracle_score(pred, gt_answers):
    pred = pred.replace("\n", " ").replace("\t", " ").strip()
    pred = _oracle_digit_article(_oracle_punct(pred))
    gts = [{"answer": a, "answer_id": i + 1} for i, a in enumerate(gt_answers)]
    if len({g["answer"] for g in gts}) > 1:
        for g in gts:
            g["answer"] = _oracle_punct(g["answer"])
    accs = []
    for g in gts:
        others = [o for o in gts if o != g]
        accs.append(min(1, float(len([o for o in others if o["answer"] == pred])) / 3))
    return float(sum(accs)) / len(accs)


# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("yes", "yes"),
        ("Yes.", "yes"),
        ("two", "2"),
        ("None", "0"),
        ("ten", "10"),
        ("eleven", "eleven"),  # the official table stops at ten
        ("the dog", "dog"),
        ("a red car", "red car"),
        ("an apple", "apple"),
        ("dont", "don’t"),  # typographic apostrophe, as in the official table
        ("don't", "don t"),  # the apostrophe is a punctuation mark first
        ("isnt it", "isn’t it"),
        ("1,000", "1000"),  # comma between digits: every mark is deleted
        ("1,000 (approx)", "1000 approx"),
        ("red, white", "red white"),  # mark next to a space: deleted
        ("red,white", "red white"),  # mark between letters: a space
        ("black/white", "black white"),
        ("1.5", "1.5"),  # period before a digit stays
        ("3.", "3"),
        ("x.y.z", "xyz"),
        ("t-shirt", "t-shirt"),  # '-' is not an official mark
        ("wow!", "wow!"),  # neither is '!'
        ("  Two\tdogs\n", "2 dogs"),
        ("A", ""),
        ("oclock", "o’clock"),
        ("Ive", "ive"),  # capitalised keys of the table never match
    ],
)
def test_normalize_answer_hard_cases(raw, expected):
    assert normalize_answer(raw) == expected


def test_period_count_quirk():
    # re.UNICODE (32) lands in re.sub's count: only the first 32 periods go.
    text = "a." * 40
    assert process_punctuation(text).count(".") == 8


def test_gt_answers_only_get_punctuation_and_only_when_not_unanimous():
    assert normalize_gt_answers(["yes."] * 10) == ["yes."] * 10
    assert normalize_gt_answers(["yes."] * 9 + ["no"]) == ["yes"] * 9 + ["no"]
    # no number words, no lower-casing on the ground-truth side
    assert normalize_gt_answers(["Two", "two"]) == ["Two", "two"]


@pytest.mark.parametrize(
    "pred, gts, expected",
    [
        ("yes", ["yes"] * 10, 1.0),
        ("no", ["yes"] * 10, 0.0),
        ("2", ["2"] * 1 + ["3"] * 9, 0.3),
        ("2", ["2"] * 2 + ["3"] * 8, 0.6),
        ("2", ["2"] * 3 + ["3"] * 7, 0.9),
        ("2", ["2"] * 4 + ["3"] * 6, 1.0),
        ("Two", ["2"] * 3 + ["3"] * 7, 0.9),  # prediction side maps number words
        ("yes.", ["yes"] * 10, 1.0),
        # unanimous raw GT is never normalised: "two" and "yes." cannot be matched
        ("two", ["two"] * 10, 0.0),
        ("yes", ["yes."] * 10, 0.0),
        # a single different answer triggers punctuation processing of GT
        ("yes", ["yes."] * 9 + ["no"], 1.0),
        # ... but never number words on the GT side
        ("two", ["two"] * 9 + ["2"], 0.3),
        ("dont know", ["don't know"] * 5 + ["no"] * 5, 0.0),
        ("1000", ["1,000"] * 4 + ["1000"] * 6, 1.0),
        ("dog", ["the dog"] * 5 + ["dog"] * 5, 1.0),
    ],
)
def test_vqa_score_crafted(pred, gts, expected):
    assert vqa_score(pred, gts) == pytest.approx(expected)
    assert vqa_score(pred, gts) == _oracle_score(pred, gts)


_WORDS = st.sampled_from(
    ["yes", "no", "two", "2", "the", "a", "dog", "dont", "1,000", "1000", "3.5", "red.", "Red", "none", "0",
     "black/white", "it's", ";", "?", ",", ".", "(", ")", "a,b", "1,2", "  "]
)  # fmt: skip
_ANSWER = st.lists(_WORDS, min_size=1, max_size=4).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(pred=_ANSWER, gts=st.lists(_ANSWER, min_size=1, max_size=10))
def test_vqa_score_matches_official_oracle(pred, gts):
    assert vqa_score(pred, gts) == _oracle_score(pred, gts)


@settings(max_examples=200, deadline=None)
@given(gts=st.lists(_ANSWER, min_size=1, max_size=10), pool=st.lists(_ANSWER, max_size=6))
def test_soft_scores_equal_the_metric(gts, pool):
    vocab = sorted({normalize_answer(a) for a in gts + pool} - {""})
    scores = vqa_soft_scores(gts, vocab)
    for answer in vocab:
        # a vocabulary of normalised answers: every class gets what the metric gives
        assert scores.get(answer, 0.0) == pytest.approx(vqa_score(answer, gts))


def test_soft_scores_formula_and_vocab_kinds():
    gts = ["cat"] * 3 + ["dog"] * 2 + ["cow"] + ["red"] * 4
    expected = {"cat": 0.9, "dog": 0.6, "cow": 0.3, "red": 1.0}
    assert vqa_soft_scores(gts, {"cat": 0, "dog": 1, "cow": 2, "red": 3, "pig": 4}) == pytest.approx(expected)
    assert vqa_soft_scores(gts, ["cat", "pig"]) == pytest.approx({"cat": 0.9})
    assert vqa_soft_scores(["two"] * 10, {"2": 0}) == {}  # the unanimous-raw quirk, as the metric


def test_empty_gt_raises():
    with pytest.raises(InputError, match="non-empty"):
        vqa_score("yes", [])
    with pytest.raises(InputError):
        vqa_score("yes", "yes")


class _Q:
    def __init__(self, qid, answers, qtype, atype):
        self.question_id, self.answers, self.question_type, self.answer_type = qid, answers, qtype, atype


def test_evaluator_official_summary():
    qs = [
        _Q(1, ["yes"] * 10, "is the", "yes/no"),
        _Q(2, ["2"] * 2 + ["3"] * 8, "how many", "number"),
        _Q(3, ["red"] * 10, "what color", "other"),
        _Q(4, ["blue"] * 1 + ["red"] * 9, "what color", "other"),
    ]
    ev = VQAEvaluator()
    out = ev.evaluate(qs, [{"question_id": 1, "answer": "Yes"}, {"question_id": 2, "answer": "two"},
                           {"question_id": 3, "answer": "red"}, {"question_id": 4, "answer": "blue"}])  # fmt: skip
    accs = [1.0, 0.6, 1.0, 0.3]
    assert out["overall"] == round(100 * sum(accs) / 4, 2) == 72.5
    assert out["perAnswerType"] == {"yes/no": 100.0, "number": 60.0, "other": 65.0}
    assert out["perQuestionType"] == {"is the": 100.0, "how many": 60.0, "what color": 65.0}
    assert len(ev) == 4 and ev.accuracy[2] == pytest.approx(0.6)
    assert repr(ev) == "VQAEvaluator(questions=4, digits=2)"


def test_evaluator_rounding_and_errors():
    ev = VQAEvaluator(digits=None)
    for i in range(3):
        ev.update(i, "2", ["2"] + ["3"] * 9)
    ev.update(3, "x", ["y"] * 10)
    assert ev.compute()["overall"] == pytest.approx(100 * 0.9 / 4)
    assert VQAEvaluator().evaluate([_Q(0, ["2"] + ["3"] * 9, "t", "n")] * 1 + [_Q(1, ["a b"] * 10, "t", "n")] * 1,
                                   {0: "2", 1: "x"})["overall"] == 15.0  # fmt: skip
    with pytest.raises(InputError, match="already scored"):
        ev.update(0, "2", ["2"])
    with pytest.raises(InputError, match="before any question"):
        VQAEvaluator().compute()
    with pytest.raises(
        InputError, match="1 question\\(s\\) without a prediction.*1 prediction\\(s\\) for unknown"
    ):
        VQAEvaluator().evaluate([_Q(1, ["a"], "t", "n")], {2: "a"})
    with pytest.raises(InputError, match="no ground-truth answers"):
        VQAEvaluator().evaluate([_Q(1, None, "t", "n")], {1: "a"})
