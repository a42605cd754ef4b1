import json
import shutil
from pathlib import Path

import pytest
import torch
from torch_geometric.loader import DataLoader

from mmgraph.datasets.gqa import GQA
from mmgraph.errors import DataFormatError
from mmgraph.graph import GraphBuilder
from mmgraph.typing import REGION, SEMANTIC_EDGE, SPATIAL_EDGE, TOKEN


def seq_builder():
    return GraphBuilder(parser="sequential")


def obj(name, x, y, w, h, attributes=(), relations=()):
    return {
        "name": name,
        "x": x,
        "y": y,
        "w": w,
        "h": h,
        "attributes": list(attributes),
        "relations": [{"name": p, "object": o} for p, o in relations],
    }


TRAIN_GRAPHS = {
    "1": {
        "width": 100,
        "height": 80,
        "objects": {
            "10": obj("dog", 5, 5, 30, 20, ["brown", "small"], [("left of", "11")]),
            "11": obj("cat", 50, 10, 20, 20, ["white"], [("right of", "10")]),
            "12": obj("grass", 0, 50, 100, 30, ["green"]),
        },
    },
    "2": {
        "width": 60,
        "height": 60,
        "objects": {
            "20": obj("dog", 10, 10, 20, 20, ["black"], [("near", "21")]),
            "21": obj("car", 30, 30, 25, 20, ["red", "shiny", "new", "big"]),
        },
    },
    "n3": {"width": 50, "height": 40, "objects": {"30": obj("cat", 1, 1, 10, 10, ["white"])}},
}
VAL_GRAPHS = {
    "4": {
        "width": 90,
        "height": 70,
        "objects": {
            "40": obj("zebra", 10, 10, 30, 30, ["striped"], [("near", "41")]),
            "41": obj("dog", 45, 20, 20, 20, ["brown"], [("left of", "40")]),
        },
    },
    "5": {"width": 40, "height": 40, "objects": {"50": obj("cat", 5, 5, 10, 10)}},
}


def question(image_id, text, answer, structural="query"):
    return {
        "imageId": image_id,
        "question": text,
        "answer": answer,
        "fullAnswer": f"The answer is {answer}.",
        "types": {"structural": structural, "semantic": "attr", "detailed": "color"},
        "isBalanced": True,
    }


TRAIN_QUESTIONS = {
    "t1": question("1", "What color is the dog?", "brown"),
    "t2": question("1", "Is the cat to the right of the dog?", "yes", "verify"),
    "t3": question("2", "What is near the dog?", "car"),
    "t4": question("2", "Is the car red?", "yes", "verify"),
    "t5": question("n3", "What animal is this?", "cat"),
}
VAL_QUESTIONS = {
    "v1": question("4", "What is the striped animal?", "zebra"),
    "v2": question("4", "Is the dog brown?", "yes", "verify"),
    "v3": question("5", "What animal is it?", "cat"),
}


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("gqa")
    for name, doc in [
        ("train_sceneGraphs.json", TRAIN_GRAPHS),
        ("val_sceneGraphs.json", VAL_GRAPHS),
        ("train_balanced_questions.json", TRAIN_QUESTIONS),
        ("val_balanced_questions.json", VAL_QUESTIONS),
    ]:
        (root / name).write_text(json.dumps(doc))
    return root


def fresh(raw, tmp_path):
    root = tmp_path / "gqa"
    shutil.copytree(raw, root, ignore=shutil.ignore_patterns("processed"))
    return root


def test_graphs_match_the_scene_graphs_and_questions(raw):
    ds = GQA(raw, "train", builder=seq_builder(), max_attributes=3)
    assert len(ds) == len(TRAIN_QUESTIONS)
    for data in ds:
        q = TRAIN_QUESTIONS[data.question_id]
        graph = TRAIN_GRAPHS[q["imageId"]]
        objects = list(graph["objects"].values())
        assert data.text == q["question"] and data.image_id == q["imageId"]
        assert ds.answers.itos[int(data.y)] == q["answer"] == data.answer
        assert data.full_answer == q["fullAnswer"] and data.structural_type == q["types"]["structural"]
        assert data[REGION].num_nodes == len(objects) and "x" not in data[REGION]
        assert ds.label_vocab.decode(data[REGION].label) == [o["name"] for o in objects]
        w, h = graph["width"], graph["height"]
        boxes = torch.tensor(
            [[o["x"] / w, o["y"] / h, (o["x"] + o["w"]) / w, (o["y"] + o["h"]) / h] for o in objects]
        )
        assert torch.allclose(data[REGION].box, boxes)
        for i, o in enumerate(objects):
            attrs = [a for a in data[REGION].attr[i].tolist() if a >= 0]
            assert ds.attr_vocab.decode(attrs) == o["attributes"][:3]
        ids = list(graph["objects"])
        relations = [
            (i, p["name"], ids.index(p["object"])) for i, o in enumerate(objects) for p in o["relations"]
        ]
        if relations:
            sem = data[SEMANTIC_EDGE]
            got = list(
                zip(
                    sem.edge_index[0].tolist(),
                    ds.predicate_vocab.decode(sem.edge_type),
                    sem.edge_index[1].tolist(),
                )
            )
            assert got == relations
    assert SPATIAL_EDGE in ds[0].edge_types


def test_vocabularies_come_from_training_and_are_shared(raw, tmp_path):
    root = fresh(raw, tmp_path)
    val = GQA(root, "val", builder=seq_builder())  # processed first: vocabularies from train
    train = GQA(root, "train", builder=seq_builder())
    assert val.vocab == train.vocab and val.answers == train.answers
    assert (val.label_vocab, val.attr_vocab, val.predicate_vocab) == (
        train.label_vocab,
        train.attr_vocab,
        train.predicate_vocab,
    )
    assert "zebra" not in train.label_vocab and "zebra" not in train.answers
    v1 = next(d for d in val if d.question_id == "v1")
    assert v1[REGION].label.tolist() == [train.label_vocab.unk_id, train.label_vocab["dog"]]
    assert int(v1.y) == -1  # an answer never seen in training
    v3 = next(d for d in val if d.question_id == "v3")
    assert val.answers.itos[int(v3.y)] == "cat"


def test_missing_scene_graph_names_question_and_image_or_skips(raw, tmp_path):
    root = fresh(raw, tmp_path)
    doc = dict(VAL_QUESTIONS, v4=question("99", "Is there a dog?", "no"))
    (root / "val_balanced_questions.json").write_text(json.dumps(doc))
    with pytest.raises(DataFormatError, match="question 'v4': image 99 has no scene graph"):
        GQA(root, "val", builder=seq_builder())
    with pytest.warns(UserWarning, match="skipped 1 of 4 samples"):
        ds = GQA(root, "val", builder=seq_builder(), skip_invalid=True)
    assert sorted(d.question_id for d in ds) == ["v1", "v2", "v3"]


def test_batches_and_missing_testdev_scene_graphs(raw, tmp_path):
    ds = GQA(raw, "train", builder=seq_builder())
    batch = next(iter(DataLoader(ds, batch_size=5)))
    assert batch.y.shape == (5,) and batch[TOKEN].batch.max() == 4
    assert batch[REGION].num_nodes == 3 + 3 + 2 + 2 + 1
    assert batch[SEMANTIC_EDGE].edge_index.max() < batch[REGION].num_nodes
    root = fresh(raw, tmp_path)
    Path(root, "testdev_balanced_questions.json").write_text(json.dumps({"d1": question("7", "What?", "no")}))
    with pytest.raises(DataFormatError, match="testdev_sceneGraphs.json"):
        GQA(root, "testdev", builder=seq_builder())
