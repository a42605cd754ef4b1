import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.loader import DataLoader

from mmgraph.datasets.formats import (
    MissingFeaturesError,
    build_answer_vocab,
    load_vqa,
    open_features,
    write_npz_features,
    write_tsv_features,
)
from mmgraph.datasets.vqa_v2 import VQAv2
from mmgraph.errors import DataFormatError, InputError
from mmgraph.graph import GraphBuilder
from mmgraph.metrics.vqa import vqa_soft_scores
from mmgraph.typing import REGION, SPATIAL_EDGE, TOKEN

SIZE = (64.0, 48.0)
WORDS = ["what", "color", "is", "the", "dog", "how", "many", "cats", "are", "there"]
ANSWERS = ["yes", "no", "2", "red", "blue", "dog"]


def seq_builder():
    return GraphBuilder(parser="sequential")


def feature_records(image_ids, seed=0, dim=8):
    rng = np.random.default_rng(seed)
    records = []
    for image_id in image_ids:
        n = int(rng.integers(10, 13))
        xy = rng.uniform(0, 30, size=(n, 2))
        wh = rng.uniform(2, 17, size=(n, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)  # inside 64 x 48
        features = rng.normal(size=(n, dim)).astype(np.float32)
        records.append(
            {
                "image_id": image_id,
                "boxes": boxes,
                "features": features,
                "image_w": SIZE[0],
                "image_h": SIZE[1],
            }
        )
    return records


def write_split(root, subset, image_ids, first_qid, rng, annotated=True, per_image=3):
    questions, annotations = [], []
    qid = first_qid
    for image_id in image_ids:
        for _ in range(per_image):
            text = " ".join(rng.choice(WORDS, size=int(rng.integers(3, 7)))) + "?"
            questions.append({"image_id": image_id, "question": text, "question_id": qid})
            answers = [str(a) for a in rng.choice(ANSWERS, size=10, p=[0.4, 0.2, 0.15, 0.1, 0.1, 0.05])]
            annotations.append(
                {
                    "question_id": qid,
                    "image_id": image_id,
                    "question_type": "what color is the",
                    "answer_type": "other",
                    "multiple_choice_answer": max(set(answers), key=answers.count),
                    "answers": [
                        {"answer_id": k + 1, "answer": a, "answer_confidence": "yes"}
                        for k, a in enumerate(answers)
                    ],
                }
            )
            qid += 1
    doc = {"info": {}, "license": {}, "data_subtype": subset, "questions": questions}
    Path(root, f"v2_OpenEnded_mscoco_{subset}_questions.json").write_text(json.dumps(doc))
    if annotated:
        Path(root, f"v2_mscoco_{subset}_annotations.json").write_text(
            json.dumps({"annotations": annotations})
        )


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("vqa_raw")
    rng = np.random.default_rng(0)
    write_split(root, "train2014", [1, 2, 3, 4], 10, rng)
    write_split(root, "val2014", [5, 6], 100, rng)
    write_split(root, "test-dev2015", [7], 200, rng, annotated=False)
    write_split(root, "test2015", [7, 8], 300, rng, annotated=False)
    write_tsv_features(root / "trainval_36.tsv", feature_records([1, 2, 3, 4, 5, 6], seed=1))
    write_tsv_features(root / "test2015_36.tsv", feature_records([7, 8], seed=2))
    return root


def fresh(raw, tmp_path):
    root = tmp_path / "vqa"
    shutil.copytree(raw, root, ignore=shutil.ignore_patterns("processed", "*.index.json"))
    return root


FEATURES = {
    "train": "trainval_36.tsv",
    "val": "trainval_36.tsv",
    "test-dev": "test2015_36.tsv",
    "test": "test2015_36.tsv",
}


def test_graphs_match_the_files(raw):
    ds = VQAv2(raw, "val", features=FEATURES, min_answer_count=2, builder=seq_builder())
    questions = {
        q.question_id: q
        for q in load_vqa(
            raw / "v2_OpenEnded_mscoco_val2014_questions.json", raw / "v2_mscoco_val2014_annotations.json"
        )
    }
    store = open_features(raw / "trainval_36.tsv")
    train = load_vqa(
        raw / "v2_OpenEnded_mscoco_train2014_questions.json", raw / "v2_mscoco_train2014_annotations.json"
    )
    assert ds.answers.itos[2:] == build_answer_vocab(train, min_count=2)
    assert len(ds) == len(questions)
    for data in ds:
        q = questions[int(data.question_id)]
        record = store[q.image_id]
        assert data.text == q.question and int(data.image_id) == q.image_id
        assert data.answers == q.answers and data.answer_type == "other"
        assert (
            data.question_type == q.question_type and data.multiple_choice_answer == q.multiple_choice_answer
        )
        assert data[REGION].num_nodes == record.num_boxes
        assert torch.equal(data[REGION].x, record.features)
        scale = torch.tensor([SIZE[0], SIZE[1], SIZE[0], SIZE[1]])
        assert torch.allclose(data[REGION].box, record.boxes / scale)
        assert data.y.shape == (1, len(ds.answers))
        expected = torch.zeros(1, len(ds.answers))
        for answer, score in vqa_soft_scores(q.answers, ds.answers.itos[2:]).items():
            expected[0, ds.answers.stoi[answer]] = score
        assert torch.equal(data.y, expected)
        assert data.y[0, :2].eq(0).all()
    assert SPATIAL_EDGE in ds[0].edge_types
    # At least one target is soft (neither 0 nor 1) and one answer scores 1.
    y = torch.cat([d.y for d in ds])
    assert ((y > 0) & (y < 1)).any() and (y == 1).any()


def test_vocabularies_are_shared_and_test_splits_have_no_targets(raw, tmp_path):
    root = fresh(raw, tmp_path)
    # Processing a test split first fits the vocabularies on the training
    # questions without reading training features (none are given here).
    test = VQAv2(
        root, "test-dev", features={"test-dev": "test2015_36.tsv"}, min_answer_count=2, builder=seq_builder()
    )
    assert all("y" not in d and "answers" not in d for d in test)
    train = VQAv2(root, "train", features=FEATURES, min_answer_count=2, builder=seq_builder())
    assert len(test) == 3 and len(train) == 12
    assert test.vocab == train.vocab and test.answers == train.answers
    vocab_all = VQAv2(
        root,
        "val",
        features=FEATURES,
        min_answer_count=2,
        answer_vocab_splits=("train", "val"),
        builder=seq_builder(),
    )
    both = load_vqa(
        root / "v2_OpenEnded_mscoco_train2014_questions.json", root / "v2_mscoco_train2014_annotations.json"
    )
    both += load_vqa(
        root / "v2_OpenEnded_mscoco_val2014_questions.json", root / "v2_mscoco_val2014_annotations.json"
    )
    assert vocab_all.answers.itos[2:] == build_answer_vocab(both, min_count=2)


def test_missing_features_name_the_question_or_are_skipped(raw, tmp_path):
    root = fresh(raw, tmp_path)
    doc = json.loads((root / "v2_OpenEnded_mscoco_val2014_questions.json").read_text())
    doc["questions"][0]["image_id"] = 99
    (root / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps(doc))
    ann = json.loads((root / "v2_mscoco_val2014_annotations.json").read_text())
    ann["annotations"][0]["image_id"] = 99
    (root / "v2_mscoco_val2014_annotations.json").write_text(json.dumps(ann))
    bad = doc["questions"][0]["question_id"]
    with pytest.raises(MissingFeaturesError, match=f"question {bad}: image 99 has no region features"):
        VQAv2(root, "val", features=FEATURES, min_answer_count=2, builder=seq_builder())
    with pytest.warns(UserWarning, match=f"skipped 1 of {len(doc['questions'])} samples"):
        ds = VQAv2(
            root, "val", features=FEATURES, min_answer_count=2, skip_invalid=True, builder=seq_builder()
        )
    assert len(ds) == len(doc["questions"]) - 1 and bad not in {int(d.question_id) for d in ds}
    skipped = json.loads(next(Path(ds.processed_dir).glob("skipped-val-*.json")).read_text())
    assert (
        skipped == [{"sample_id": str(bad), "error": skipped[0]["error"]}]
        and "image 99" in skipped[0]["error"]
    )


def test_npz_features_lazy_and_batches(raw, tmp_path):
    root = fresh(raw, tmp_path)
    records = feature_records([1, 2, 3, 4, 5, 6], seed=1)
    write_npz_features(root / "npz", records)
    by_id = {r["image_id"]: r for r in records}
    eager = VQAv2(root, "train", features="npz", min_answer_count=2, builder=seq_builder())
    lazy = VQAv2(root, "train", features="npz", lazy_features=True, min_answer_count=2, builder=seq_builder())
    assert eager.processed_paths[0] != lazy.processed_paths[0]
    assert "x" not in lazy._data[REGION] and "x" in eager._data[REGION]
    for a, b in zip(eager, lazy):
        assert torch.equal(a[REGION].x, b[REGION].x)
        assert torch.equal(b[REGION].x, torch.from_numpy(by_id[int(b.image_id)]["features"]))
    batch = next(iter(DataLoader(lazy, batch_size=4, shuffle=False)))
    assert batch.y.shape == (4, len(lazy.answers))
    assert batch[REGION].x.shape == (int(batch[REGION].num_nodes), 8)
    assert batch[TOKEN].batch.max() == 3 and len(batch.answers) == 4


def test_bad_arguments_and_missing_files(raw, tmp_path):
    with pytest.raises(DataFormatError, match="downloads nothing"):
        VQAv2(tmp_path / "empty", "train", builder=seq_builder())
    with pytest.raises(InputError, match="unknown split"):
        VQAv2(raw, "minival", features=FEATURES, builder=seq_builder())
    with pytest.raises(InputError, match="answer_vocab_splits"):
        VQAv2(raw, "train", features=FEATURES, answer_vocab_splits=("test",), builder=seq_builder())
    with pytest.raises(InputError, match="names no file for split 'test'"):
        VQAv2(raw, "test", features={"train": "trainval_36.tsv"}, builder=seq_builder())
