"""VQA v2 question and annotation files, answer vocabularies, result files.

The layout of "Making the V in VQA Matter" (Goyal et al., CVPR 2017), as
released at visualqa.org::

    questions:   {"questions": [{"image_id", "question", "question_id"}, ...], "info", "license", ...}
    annotations: {"annotations": [{"question_id", "image_id", "question_type", "answer_type",
                                   "multiple_choice_answer",
                                   "answers": [{"answer_id", "answer", "answer_confidence"} x 10]}, ...], ...}
    results:     [{"question_id": int, "answer": str}, ...]

Test splits come without an annotations file; their questions have
``answers=None``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from mmgraph.datasets.formats.features import PathLike, _atomic_write
from mmgraph.errors import DataFormatError, InputError
from mmgraph.metrics.vqa import normalize_answer, predictions_by_id

QUESTION_KEYS = ("image_id", "question", "question_id")
ANNOTATION_KEYS = (
    "question_id",
    "image_id",
    "question_type",
    "answer_type",
    "multiple_choice_answer",
    "answers",
)


@dataclass
class VQAQuestion:
    """One VQA question, with its annotation when the split has one.

    Attributes:
        question_id (int): the question id.
        image_id (int): the COCO image id.
        question (str): the question text.
        question_type (str, optional): e.g. ``"what color is the"``.
        answer_type (str, optional): ``"yes/no"``, ``"number"`` or ``"other"``.
        multiple_choice_answer (str, optional): the most common human answer.
        answers (List[str], optional): the (ten) raw human answers, in
            ``answer_id`` order; ``None`` for test splits.
        answer_confidences (List[str], optional): ``"yes"``, ``"maybe"`` or
            ``"no"`` per answer, aligned with ``answers``.
    """

    question_id: int
    image_id: int
    question: str
    question_type: Optional[str] = None
    answer_type: Optional[str] = None
    multiple_choice_answer: Optional[str] = None
    answers: Optional[List[str]] = None
    answer_confidences: Optional[List[str]] = None


def _read_json(path: PathLike) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataFormatError(f"file '{path}': not valid JSON ({e})") from None


def _entries(data: Any, key: str, path: PathLike) -> List[Any]:
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise DataFormatError(
            f"file '{path}': expected a JSON object with a list under key '{key}'"
            + (f", found keys {sorted(data)[:10]}" if isinstance(data, dict) else "")
        )
    return data[key]


def _require(entry: Any, keys: Sequence[str], path: PathLike, index: int, what: str) -> None:
    if not isinstance(entry, dict):
        raise DataFormatError(f"file '{path}': {what} #{index} is not a JSON object: {entry!r:.80}")
    missing = [k for k in keys if k not in entry]
    if missing:
        qid = entry.get("question_id", f"#{index}")
        raise DataFormatError(
            f"file '{path}': {what} with question_id {qid} lacks key(s) {missing}; expected {list(keys)}"
        )


def load_vqa(questions_path: PathLike, annotations_path: Optional[PathLike] = None) -> List[VQAQuestion]:
    """Reads VQA v2 questions and, optionally, their annotations.

    Args:
        questions_path (str or PathLike): e.g.
            ``v2_OpenEnded_mscoco_val2014_questions.json``.
        annotations_path (str or PathLike, optional): e.g.
            ``v2_mscoco_val2014_annotations.json``; ``None`` for test splits.
            (default: ``None``)

    Returns:
        List[VQAQuestion]: in the order of the questions file.

    Raises:
        DataFormatError: a missing key, a duplicate question id, a question
            without annotation or an annotation without question, or an
            image id that differs between the two files (the message names
            the file, the key and the question id).
    """
    entries = _entries(_read_json(questions_path), "questions", questions_path)
    questions: Dict[Any, VQAQuestion] = {}
    for i, q in enumerate(entries):
        _require(q, QUESTION_KEYS, questions_path, i, "question")
        if q["question_id"] in questions:
            raise DataFormatError(f"file '{questions_path}': question_id {q['question_id']} appears twice")
        questions[q["question_id"]] = VQAQuestion(q["question_id"], q["image_id"], q["question"])
    if annotations_path is None:
        return list(questions.values())

    annotated = set()
    for i, a in enumerate(_entries(_read_json(annotations_path), "annotations", annotations_path)):
        _require(a, ANNOTATION_KEYS, annotations_path, i, "annotation")
        qid = a["question_id"]
        where = f"file '{annotations_path}': annotation with question_id {qid}"
        if qid not in questions:
            raise DataFormatError(
                f"{where} has no question in '{questions_path}'; are the files of the same split?"
            )
        if qid in annotated:
            raise DataFormatError(f"{where} appears twice")
        q = questions[qid]
        if a["image_id"] != q.image_id:
            raise DataFormatError(f"{where} has image_id {a['image_id']}, its question {q.image_id}")
        answers = a["answers"]
        if not isinstance(answers, list) or not answers:
            raise DataFormatError(f"{where}: key 'answers' must be a non-empty list, got {answers!r:.80}")
        for j, ans in enumerate(answers):
            if not isinstance(ans, dict) or "answer" not in ans:
                raise DataFormatError(f"{where}: answers[{j}] lacks key 'answer': {ans!r:.80}")
        # answer_id order is annotator order, which the metric's
        # leave-one-out average does not depend on but reports keep.
        answers = sorted(answers, key=lambda ans: ans.get("answer_id", 0))
        q.question_type = a["question_type"]
        q.answer_type = a["answer_type"]
        q.multiple_choice_answer = a["multiple_choice_answer"]
        q.answers = [ans["answer"] for ans in answers]
        q.answer_confidences = [ans.get("answer_confidence") for ans in answers]
        annotated.add(qid)
    unannotated = [qid for qid in questions if qid not in annotated]
    if unannotated:
        raise DataFormatError(
            f"file '{annotations_path}': no annotation for {len(unannotated)} question(s) of "
            f"'{questions_path}' (first question_id {unannotated[0]}); are the files of the same split?"
        )
    return list(questions.values())


def build_answer_vocab(
    questions: Iterable[VQAQuestion],
    min_count: int = 9,
    max_size: Optional[int] = None,
    source: str = "multiple_choice",
) -> List[str]:
    """The answer classes of a VQA classifier: normalised answers given to at
    least ``min_count`` questions, most frequent first (ties alphabetical).

    The usual setting (bottom-up-attention VQA, Teney et al. 2018; ReGAT) is
    ``min_count=9`` over the ``multiple_choice_answer`` of train+val, which
    gives the well-known 3,129 answers of VQA v2. Answers are normalised with
    :func:`mmgraph.metrics.vqa.normalize_answer`, so that a predicted class
    string is scored by the metric as it is.

    Args:
        questions (Iterable[VQAQuestion]): annotated questions.
        min_count (int, optional): fewest questions an answer must occur in.
            (default: ``9``)
        max_size (int, optional): keep at most this many answers. (default: ``None``)
        source (str, optional): ``"multiple_choice"`` counts each question's
            ``multiple_choice_answer``; ``"all"`` counts each distinct answer
            among its human answers once. (default: ``"multiple_choice"``)

    Returns:
        List[str]: the answers; an answer's class index is its position.
    """
    if source not in ("multiple_choice", "all"):
        raise InputError(f"source must be 'multiple_choice' or 'all', got {source!r}")
    if min_count < 1:
        raise InputError(f"min_count must be >= 1, got {min_count}")
    counts: Counter = Counter()
    for q in questions:
        if source == "multiple_choice":
            if q.multiple_choice_answer is None:
                raise InputError(f"question {q.question_id}: no multiple_choice_answer (a test split?)")
            counts[normalize_answer(q.multiple_choice_answer)] += 1
        else:
            if q.answers is None:
                raise InputError(f"question {q.question_id}: no answers (a test split?)")
            counts.update({normalize_answer(a) for a in q.answers})
    counts.pop("", None)  # an answer of only articles or punctuation names no class
    kept = sorted((a for a, c in counts.items() if c >= min_count), key=lambda a: (-counts[a], a))
    return kept if max_size is None else kept[:max_size]


def write_vqa_results(path: PathLike, results: Union[Mapping[int, str], Iterable[Mapping[str, Any]]]) -> int:
    """Writes predictions in the official results format (atomically):
    ``[{"question_id": int, "answer": str}, ...]``.

    Args:
        path (str or PathLike): the output ``.json`` file.
        results (Mapping or Iterable[dict]): ``{question_id: answer}`` or
            dicts with keys ``question_id`` and ``answer``.

    Returns:
        int: the number of predictions written.
    """
    if isinstance(results, Mapping):
        pairs = list(results.items())
    else:
        pairs = []
        for i, r in enumerate(results):
            if not isinstance(r, Mapping) or "question_id" not in r or "answer" not in r:
                raise InputError(f"result #{i} must be a dict with 'question_id' and 'answer', got {r!r:.80}")
            pairs.append((r["question_id"], r["answer"]))
    out: List[Dict[str, Any]] = []
    seen = set()
    for qid, answer in pairs:
        if isinstance(qid, bool) or not isinstance(qid, int):
            raise InputError(f"question_id must be an int, got {qid!r}")
        if not isinstance(answer, str):
            raise InputError(f"question {qid}: answer must be a str, got {answer!r}")
        if qid in seen:
            raise InputError(f"question {qid} has more than one answer")
        seen.add(qid)
        out.append({"question_id": qid, "answer": answer})
    _atomic_write(Path(path), lambda f: f.write(json.dumps(out).encode("utf-8")))
    return len(out)


def load_vqa_results(path: PathLike) -> Dict[int, str]:
    """Reads an official results file back as ``{question_id: answer}``."""
    data = _read_json(path)
    if not isinstance(data, list):
        raise DataFormatError(f"file '{path}': a results file is a JSON list of {{question_id, answer}}")
    try:
        return predictions_by_id(data)
    except InputError as e:
        raise DataFormatError(f"file '{path}': {e}") from None
