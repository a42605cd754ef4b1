r"""VQA accuracy, exactly as the official VQA v2 evaluation computes it.

This module reproduces ``vqaEval.py`` of the official evaluation tools
(GT-Vision-Lab/VQA, ``PythonEvaluationTools/vqaEvaluation``, Python 3
version) case by case, from "VQA: Visual Question Answering" (Antol et al.,
ICCV 2015) and "Making the V in VQA Matter" (Goyal et al., CVPR 2017).

A prediction is compared with the ten human answers of its question. For
each annotator :math:`i`, the prediction is scored against the other nine:

.. math::
    \mathrm{acc}(a) = \frac{1}{n} \sum_{i=1}^{n}
    \min\Bigl(1, \frac{\#\{j \neq i : g_j = a\}}{3}\Bigr)

With :math:`n = 10` answers of which :math:`c` equal the prediction, this is
``0, 0.3, 0.6, 0.9, 1.0`` for ``c = 0, 1, 2, 3, >= 4``.

The normalisation follows the official code, quirks included:

* the prediction: newlines and tabs become spaces, outer spaces are
  stripped, then :func:`process_punctuation` and
  :func:`process_digit_article` (lower-casing, number words to digits,
  articles removed, the official contraction table) are applied;
* the ground-truth answers get :func:`process_punctuation` only (no
  lower-casing, no number words, no articles), and only when the question
  has more than one distinct raw answer; a unanimous question keeps its raw
  answers. So a unanimous ``"two"`` can never be matched (every prediction
  of ``"two"`` becomes ``"2"``), and a unanimous ``"yes."`` neither. The
  annotations of VQA v2 are already mostly in normalised form, so this
  rarely matters there; it matters for hand-made data.
* :func:`process_punctuation` deletes every listed punctuation mark when
  the text holds one surrounded by a space or holds a comma between digits
  (``"1,000"`` becomes ``"1000"``), and replaces it with a space otherwise
  (``"black/white"`` becomes ``"black white"``); ``!``, ``-``, ``&``, ``%``,
  ``$``, ``#``, ``*`` are not in the official list and stay.
* periods are deleted unless a digit follows (``"yes."`` becomes ``"yes"``,
  ``"1.5"`` stays); the official call passes ``re.UNICODE`` (32) as the
  ``count`` argument of ``re.sub``, so at most 32 periods go.
* contractions are only restored for words written without apostrophe
  (``"dont"`` becomes ``"don’t"``, with the typographic apostrophe U+2019 of
  the official table); an answer written ``"don't"`` loses its apostrophe
  to the punctuation step first and becomes ``"don t"``.

Accuracies are averaged over questions, overall and per question and answer
type, and reported in percent rounded to two decimals as the official
``VQAEval.accuracy`` does (``digits=None`` keeps full floats). Per-type
averages use each question's full accuracy, as the current official code
does (an early Python 2 release averaged only the last annotator's term).
"""

from __future__ import annotations

import re
from typing import Any, Dict, Hashable, Iterable, List, Mapping, Optional, Sequence, Union

from mmgraph.errors import InputError

# The official ``punct`` list; its order does not matter because every
# decision below is taken on the unmodified input text.
PUNCTUATION: tuple = (
    ";",
    ":",
    "/",
    "'",
    "[",
    "]",
    '"',
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
)

# The official number-word table ('none' counts as zero) and article list.
NUMBER_WORDS: Dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
ARTICLES = frozenset({"a", "an", "the"})

# The official contraction table, verbatim: most values use the typographic
# apostrophe (U+2019), a few the ASCII one. Keys that hold an ASCII
# apostrophe or a capital letter can never match (the punctuation step removes
# ASCII apostrophes and words are lower-cased first); they are kept so that
# the table can be checked against the original line by line.
CONTRACTIONS: Dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn’t’ve", "couldnt’ve": "couldn’t’ve", "didnt": "didn’t", "doesnt": "doesn’t",
    "dont": "don’t", "hadnt": "hadn’t", "hadnt’ve": "hadn’t’ve", "hadn'tve": "hadn’t’ve",
    "hasnt": "hasn’t", "havent": "haven’t", "hed": "he’d", "hed’ve": "he’d’ve", "he’dve": "he’d’ve",
    "hes": "he’s", "howd": "how’d", "howll": "how’ll", "hows": "how’s", "Id’ve": "I’d’ve",
    "I’dve": "I’d’ve", "Im": "I’m", "Ive": "I’ve", "isnt": "isn’t", "itd": "it’d", "itd’ve": "it’d’ve",
    "it’dve": "it’d’ve", "itll": "it’ll", "let’s": "let’s", "maam": "ma’am", "mightnt": "mightn’t",
    "mightnt’ve": "mightn’t’ve", "mightn’tve": "mightn’t’ve", "mightve": "might’ve",
    "mustnt": "mustn’t", "mustve": "must’ve", "neednt": "needn’t", "notve": "not’ve",
    "oclock": "o’clock", "oughtnt": "oughtn’t", "ow’s’at": "’ow’s’at", "’ows’at": "’ow’s’at",
    "’ow’sat": "’ow’s’at", "shant": "shan’t", "shed’ve": "she’d’ve", "she’dve": "she’d’ve",
    "she’s": "she’s", "shouldve": "should’ve", "shouldnt": "shouldn’t", "shouldnt’ve": "shouldn’t’ve",
    "shouldn’tve": "shouldn’t’ve", "somebody’d": "somebodyd", "somebodyd’ve": "somebody’d’ve",
    "somebody’dve": "somebody’d’ve", "somebodyll": "somebody’ll", "somebodys": "somebody’s",
    "someoned": "someone’d", "someoned’ve": "someone’d’ve", "someone’dve": "someone’d’ve",
    "someonell": "someone’ll", "someones": "someone’s", "somethingd": "something’d",
    "somethingd’ve": "something’d’ve", "something’dve": "something’d’ve", "somethingll": "something’ll",
    "thats": "that’s", "thered": "there’d", "thered’ve": "there’d’ve", "there’dve": "there’d’ve",
    "therere": "there’re", "theres": "there’s", "theyd": "they’d", "theyd’ve": "they’d’ve",
    "they’dve": "they’d’ve", "theyll": "they’ll", "theyre": "they’re", "theyve": "they’ve",
    "twas": "’twas", "wasnt": "wasn’t", "wed’ve": "we’d’ve", "we’dve": "we’d’ve", "weve": "we've",
    "werent": "weren’t", "whatll": "what’ll", "whatre": "what’re", "whats": "what’s",
    "whatve": "what’ve", "whens": "when’s", "whered": "where’d", "wheres": "where's",
    "whereve": "where’ve", "whod": "who’d", "whod’ve": "who’d’ve", "who’dve": "who’d’ve",
    "wholl": "who’ll", "whos": "who’s", "whove": "who've", "whyll": "why’ll", "whyre": "why’re",
    "whys": "why’s", "wont": "won’t", "wouldve": "would’ve", "wouldnt": "wouldn’t",
    "wouldnt’ve": "wouldn’t’ve", "wouldn’tve": "wouldn’t’ve", "yall": "y’all", "yall’ll": "y’all’ll",
    "y’allll": "y’all’ll", "yall’d’ve": "y’all’d’ve", "y’alld’ve": "y’all’d’ve",
    "y’all’dve": "y’all’d’ve", "youd": "you’d", "youd’ve": "you’d’ve", "you’dve": "you’d’ve",
    "youll": "you’ll", "youre": "you’re", "youve": "you’ve",
}  # fmt: skip

_COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(,)(\d)")
# The official pattern is ``(?!<=\d)(\.)(?!\d)``: its first group is a
# negative *lookahead* for the text "<=digit" (a typo for a lookbehind) and
# always holds in front of a period, so it strips every period not followed
# by a digit, as this simpler pattern does.
_PERIOD = re.compile(r"\.(?!\d)")
_PERIOD_COUNT = 32  # re.UNICODE passed as the ``count`` of re.sub in the official call
_DELETE_ALL_PUNCTUATION = str.maketrans({p: "" for p in PUNCTUATION})


def process_punctuation(text: str) -> str:
    """The official ``processPunctuation``: drops or spaces out punctuation
    marks and strips periods that no digit follows (see the module doc)."""
    if _COMMA_BETWEEN_DIGITS.search(text) is not None:
        out = text.translate(_DELETE_ALL_PUNCTUATION)
    else:
        table = {
            ord(p): ("" if (p + " " in text or " " + p in text) else " ") for p in PUNCTUATION if p in text
        }
        out = text.translate(table)
    return _PERIOD.sub("", out, count=_PERIOD_COUNT)


def process_digit_article(text: str) -> str:
    """The official ``processDigitArticle``: lower-cases, maps number words to
    digits, drops articles, restores contractions and joins with single spaces."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


def normalize_answer(answer: str) -> str:
    """Normalises an answer the way the official evaluation normalises a
    prediction: newlines and tabs to spaces, strip, punctuation, then digits,
    articles and contractions.

    Examples: ``"Two."`` -> ``"2"``, ``"the dog"`` -> ``"dog"``,
    ``"1,000"`` -> ``"1000"``, ``"dont"`` -> ``"don’t"``.
    """
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text))


def normalize_gt_answers(gt_answers: Sequence[str]) -> List[str]:
    """The official treatment of a question's ground-truth answers:
    :func:`process_punctuation` on each when there is more than one distinct
    raw answer, the raw answers unchanged otherwise."""
    if len(set(gt_answers)) > 1:
        return [process_punctuation(g) for g in gt_answers]
    return list(gt_answers)


def _check_gt(gt_answers: Sequence[str], question_id: Optional[Hashable]) -> None:
    if isinstance(gt_answers, str) or len(gt_answers) == 0:
        where = "" if question_id is None else f"question {question_id!r}: "
        raise InputError(
            f"{where}gt_answers must be a non-empty list of answer strings (the ten human answers), "
            f"got {gt_answers!r}"
        )


def _score_normalized(prediction: str, gts: Sequence[str]) -> float:
    # One leave-one-annotator-out term per annotator, summed in annotator
    # order like the official loop so that the float result is identical.
    matches = sum(g == prediction for g in gts)
    terms = [min(1.0, (matches - (g == prediction)) / 3) for g in gts]
    return sum(terms) / len(terms)


def vqa_score(prediction: str, gt_answers: Sequence[str]) -> float:
    r"""The official VQA accuracy of one prediction, in :math:`[0, 1]`.

    Args:
        prediction (str): the predicted answer, raw (it is normalised here).
        gt_answers (Sequence[str]): the human answers of the question (ten in
            VQA v2), raw.

    Returns:
        float: the mean over annotators :math:`i` of
        :math:`\min(1, \#\{j \neq i: g_j = a\} / 3)`.
    """
    _check_gt(gt_answers, None)
    return _score_normalized(normalize_answer(prediction), normalize_gt_answers(gt_answers))


def vqa_soft_scores(
    gt_answers: Sequence[str], answer_vocab: Union[Mapping[str, Any], Iterable[str]]
) -> Dict[str, float]:
    r"""Soft training targets: for each answer of ``answer_vocab`` that one of
    the (officially normalised) ground-truth answers equals, the accuracy the
    official metric would give to predicting it.

    The score of answer :math:`a` is exactly :func:`vqa_score` ``(a, gt_answers)``,

    .. math::
        s(a) = \frac{c \min(1, \frac{c - 1}{3}) + (n - c) \min(1, \frac{c}{3})}{n},

    with :math:`c` the number of the :math:`n` answers equal to :math:`a`:
    ``0.3, 0.6, 0.9, 1.0`` for ``c = 1, 2, 3, >= 4`` of ten. (The popular
    ``min(1, c / 3)`` of the bottom-up-attention code gives ``1/3, 2/3, 1``
    instead, which is not what the metric awards.)

    The vocabulary is expected to hold normalised answers (fixed points of
    :func:`normalize_answer`, as :func:`mmgraph.datasets.formats.build_answer_vocab`
    makes them); a non-normalised entry is only scored when it equals a
    ground-truth answer string.

    Args:
        gt_answers (Sequence[str]): the human answers of one question, raw.
        answer_vocab (Mapping[str, Any] or Iterable[str]): the answer classes
            (answer -> index mapping, or a list/set of answers).

    Returns:
        Dict[str, float]: answer -> score, only answers with a score above 0.
    """
    _check_gt(gt_answers, None)
    vocab = answer_vocab if isinstance(answer_vocab, (Mapping, set, frozenset)) else set(answer_vocab)
    gts = normalize_gt_answers(gt_answers)
    scores: Dict[str, float] = {}
    for g in dict.fromkeys(gts):
        if g in vocab:
            score = _score_normalized(normalize_answer(g), gts)
            if score > 0:
                scores[g] = score
    return scores


def _mean_percent(values: List[float], digits: Optional[int]) -> float:
    mean = 100 * float(sum(values)) / len(values)
    return mean if digits is None else round(mean, digits)


class VQAEvaluator:
    r"""Accumulates official VQA accuracies over questions.

    Feed it question by question with :meth:`update`, or all at once with
    :meth:`evaluate`; :meth:`compute` returns the official summary::

        {"overall": 63.12, "perQuestionType": {"what color": 70.4, ...},
         "perAnswerType": {"yes/no": 80.1, "number": 44.0, "other": 55.3}}

    in percent, averaged over questions (each question weighing the same),
    rounded to ``digits`` decimals at the end as the official code does.

    Args:
        digits (int, optional): decimals of the reported percentages;
            ``None`` keeps full floats. (default: ``2``)
    """

    def __init__(self, digits: Optional[int] = 2):
        self.digits = digits
        self.reset()

    def reset(self) -> None:
        """Forgets every question seen so far."""
        self.accuracy: Dict[Hashable, float] = {}
        self._by_question_type: Dict[str, List[float]] = {}
        self._by_answer_type: Dict[str, List[float]] = {}

    def __len__(self) -> int:
        return len(self.accuracy)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(questions={len(self)}, digits={self.digits})"

    def update(
        self,
        question_id: Hashable,
        prediction: str,
        gt_answers: Sequence[str],
        question_type: Optional[str] = None,
        answer_type: Optional[str] = None,
    ) -> float:
        """Scores one prediction and records it; returns its accuracy in [0, 1].

        Raises:
            InputError: the question was already scored, or has no answers.
        """
        if question_id in self.accuracy:
            raise InputError(f"question {question_id!r} was already scored; each question counts once")
        _check_gt(gt_answers, question_id)
        acc = _score_normalized(normalize_answer(prediction), normalize_gt_answers(gt_answers))
        self.accuracy[question_id] = acc
        if question_type is not None:
            self._by_question_type.setdefault(question_type, []).append(acc)
        if answer_type is not None:
            self._by_answer_type.setdefault(answer_type, []).append(acc)
        return acc

    def evaluate(
        self,
        questions: Iterable[Any],
        predictions: Union[Mapping[Hashable, str], Iterable[Mapping[str, Any]]],
    ) -> Dict[str, Any]:
        """Scores every question against its prediction and returns :meth:`compute`.

        Like the official ``loadRes``, the prediction ids must be exactly the
        question ids.

        Args:
            questions (Iterable): annotated questions with attributes
                ``question_id``, ``answers``, ``question_type`` and
                ``answer_type`` (e.g. :class:`mmgraph.datasets.formats.VQAQuestion`).
            predictions (Mapping or Iterable[dict]): ``{question_id: answer}``
                or the official results list ``[{"question_id", "answer"}]``.
        """
        preds = predictions_by_id(predictions)
        questions = list(questions)
        qids = {q.question_id for q in questions}
        missing = [q.question_id for q in questions if q.question_id not in preds]
        extra = [qid for qid in preds if qid not in qids]
        if missing or extra:
            raise InputError(
                f"predictions do not match the questions: {len(missing)} question(s) without a prediction "
                f"(first {missing[:5]}), {len(extra)} prediction(s) for unknown questions (first {extra[:5]}); "
                "predict every question of the split exactly once"
            )
        for q in questions:
            if q.answers is None:
                raise InputError(f"question {q.question_id!r} has no ground-truth answers (a test split?)")
            self.update(q.question_id, preds[q.question_id], q.answers, q.question_type, q.answer_type)
        return self.compute()

    def compute(self) -> Dict[str, Any]:
        """The official summary (see the class doc).

        Raises:
            InputError: no question was scored.
        """
        if not self.accuracy:
            raise InputError("VQAEvaluator.compute() called before any question was scored")
        d = self.digits
        return {
            "overall": _mean_percent(list(self.accuracy.values()), d),
            "perQuestionType": {k: _mean_percent(v, d) for k, v in self._by_question_type.items()},
            "perAnswerType": {k: _mean_percent(v, d) for k, v in self._by_answer_type.items()},
        }


def predictions_by_id(
    predictions: Union[Mapping[Hashable, str], Iterable[Mapping[str, Any]]],
) -> Dict[Hashable, str]:
    """``{question_id: answer}`` from a mapping or from the official results
    list ``[{question_id, answer}]``; a question answered twice is an error."""
    if isinstance(predictions, Mapping):
        return dict(predictions)
    out: Dict[Hashable, str] = {}
    for i, item in enumerate(predictions):
        if not isinstance(item, Mapping) or "question_id" not in item or "answer" not in item:
            raise InputError(f"prediction #{i} must be a dict with 'question_id' and 'answer', got {item!r}")
        if item["question_id"] in out:
            raise InputError(f"question {item['question_id']!r} has more than one prediction")
        out[item["question_id"]] = item["answer"]
    return out
