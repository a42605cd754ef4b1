import json

import pytest

from mmgraph.datasets.formats import (
    VQAQuestion,
    build_answer_vocab,
    load_vqa,
    load_vqa_results,
    write_vqa_results,
)
from mmgraph.errors import DataFormatError, InputError
from mmgraph.metrics.vqa import VQAEvaluator


def _question(qid, image_id=100, text="What is it?"):
    return {"image_id": image_id, "question": text, "question_id": qid}


def _annotation(qid, answers, image_id=100, mc=None, qtype="what is", atype="other"):
    return {
        "question_id": qid,
        "image_id": image_id,
        "question_type": qtype,
        "answer_type": atype,
        "multiple_choice_answer": mc if mc is not None else answers[0],
        # answer ids out of order on purpose: the reader sorts them
        "answers": [
            {"answer_id": 10 - i, "answer": a, "answer_confidence": "yes"}
            for i, a in reversed(list(enumerate(answers)))
        ],
    }


def _write(tmp_path, name, obj):
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture
def vqa_files(tmp_path):
    qs = {"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": "val2014",
          "license": {}, "questions": [_question(1), _question(2, 200), _question(3, 300)]}  # fmt: skip
    ans = {"info": {}, "license": {}, "data_subtype": "val2014", "data_type": "mscoco", "annotations": [
        _annotation(1, ["Two"] * 6 + ["three"] * 4, mc="two", atype="number", qtype="how many"),
        _annotation(2, ["yes"] * 10, image_id=200, atype="yes/no", qtype="is the"),
        _annotation(3, ["the dog"] * 5 + ["cat"] * 5, image_id=300),
    ]}  # fmt: skip
    return _write(tmp_path, "q.json", qs), _write(tmp_path, "a.json", ans)


def test_load_vqa_with_annotations(vqa_files):
    qs = load_vqa(*vqa_files)
    assert [q.question_id for q in qs] == [1, 2, 3]
    q = qs[0]
    assert isinstance(q, VQAQuestion)
    assert (q.image_id, q.question, q.question_type, q.answer_type) == (
        100,
        "What is it?",
        "how many",
        "number",
    )
    # answer_id order: the fixture wrote ids 10..1 for answers 0..9 in reverse
    assert q.answers == ["three"] * 4 + ["Two"] * 6
    assert q.answer_confidences == ["yes"] * 10
    assert q.multiple_choice_answer == "two"


def test_load_vqa_test_split_has_no_answers(vqa_files):
    qs = load_vqa(vqa_files[0])
    assert len(qs) == 3 and all(q.answers is None and q.answer_type is None for q in qs)


def test_build_answer_vocab_normalises_and_counts(vqa_files):
    qs = load_vqa(*vqa_files) * 3  # each answer now counted three times
    assert build_answer_vocab(qs, min_count=3) == ["2", "dog", "yes"]
    assert build_answer_vocab(qs, min_count=4) == []
    assert build_answer_vocab(qs, min_count=1, source="all") == ["2", "3", "cat", "dog", "yes"]
    assert build_answer_vocab(qs, min_count=1, max_size=2) == ["2", "dog"]
    with pytest.raises(InputError):
        build_answer_vocab(qs, source="bogus")
    with pytest.raises(InputError, match="test split"):
        build_answer_vocab(load_vqa(vqa_files[0]))


def test_results_roundtrip_and_evaluation(vqa_files, tmp_path):
    qs = load_vqa(*vqa_files)
    path = tmp_path / "out" / "results.json"
    assert write_vqa_results(path, [{"question_id": 1, "answer": "2"}, {"question_id": 2, "answer": "yes"},
                                    {"question_id": 3, "answer": "cat"}]) == 3  # fmt: skip
    assert json.loads(path.read_text())[0] == {"question_id": 1, "answer": "2"}
    assert not list(path.parent.glob(".*tmp"))  # the temporary file was renamed away
    preds = load_vqa_results(path)
    assert preds == {1: "2", 2: "yes", 3: "cat"}
    out = VQAEvaluator().evaluate(qs, preds)
    # q1: GT not unanimous -> punctuation only, so "Two" never equals "2": 0
    assert out["perAnswerType"] == {"number": 0.0, "yes/no": 100.0, "other": 100.0}
    write_vqa_results(path, {5: "x"})
    assert load_vqa_results(path) == {5: "x"}


@pytest.mark.parametrize(
    "results, match",
    [
        ([{"question_id": 1}], "'question_id' and 'answer'"),
        ([{"question_id": "1", "answer": "a"}], "must be an int"),
        ([{"question_id": 1, "answer": 3}], "must be a str"),
        ([{"question_id": 1, "answer": "a"}, {"question_id": 1, "answer": "b"}], "more than one"),
    ],
)
def test_write_results_rejects_bad_items(tmp_path, results, match):
    with pytest.raises(InputError, match=match):
        write_vqa_results(tmp_path / "r.json", results)
    assert not (tmp_path / "r.json").exists()


def test_missing_question_key_names_file_key_and_id(tmp_path):
    q = _write(tmp_path, "q.json", {"questions": [{"image_id": 1, "question_id": 7}]})
    with pytest.raises(DataFormatError, match=r"q\.json.*question_id 7.*\['question'\]"):
        load_vqa(q)


def test_missing_annotation_key(tmp_path):
    q = _write(tmp_path, "q.json", {"questions": [_question(1)]})
    ann = _annotation(1, ["a"] * 10)
    del ann["answer_type"]
    a = _write(tmp_path, "a.json", {"annotations": [ann]})
    with pytest.raises(DataFormatError, match=r"a\.json.*question_id 1.*answer_type"):
        load_vqa(q, a)


def test_question_without_annotation(tmp_path):
    q = _write(tmp_path, "q.json", {"questions": [_question(1), _question(2)]})
    a = _write(tmp_path, "a.json", {"annotations": [_annotation(1, ["a"] * 10)]})
    with pytest.raises(DataFormatError, match=r"a\.json.*no annotation for 1 question.*question_id 2"):
        load_vqa(q, a)


def test_annotation_without_question(tmp_path):
    q = _write(tmp_path, "q.json", {"questions": [_question(1)]})
    a = _write(tmp_path, "a.json", {"annotations": [_annotation(1, ["a"] * 10), _annotation(9, ["a"] * 10)]})
    with pytest.raises(DataFormatError, match=r"a\.json.*question_id 9 has no question"):
        load_vqa(q, a)


def test_other_malformed_inputs(tmp_path):
    with pytest.raises(DataFormatError, match="list under key 'questions'"):
        load_vqa(_write(tmp_path, "q.json", {"question": []}))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataFormatError, match="not valid JSON"):
        load_vqa(bad)
    q = _write(tmp_path, "q2.json", {"questions": [_question(1), _question(1)]})
    with pytest.raises(DataFormatError, match="appears twice"):
        load_vqa(q)
    q = _write(tmp_path, "q3.json", {"questions": [_question(1, image_id=5)]})
    a = _write(tmp_path, "a3.json", {"annotations": [_annotation(1, ["a"] * 10, image_id=6)]})
    with pytest.raises(DataFormatError, match="image_id 6, its question 5"):
        load_vqa(q, a)
    ann = _annotation(1, ["a"] * 10, image_id=5)
    ann["answers"][3] = {"answer_id": 3}
    a = _write(tmp_path, "a4.json", {"annotations": [ann]})
    with pytest.raises(DataFormatError, match=r"answers\[3\] lacks key 'answer'"):
        load_vqa(q, a)
