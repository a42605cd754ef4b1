import json

import pytest

from mmgraph.datasets.formats import GQAQuestion, load_gqa_questions, load_gqa_scene_graphs
from mmgraph.errors import DataFormatError

QUESTIONS = {
    "201307251": {
        "imageId": "2354786",
        "question": "Is the sky dark?",
        "answer": "yes",
        "fullAnswer": "Yes, the sky is dark.",
        "isBalanced": True,
        "types": {"structural": "verify", "semantic": "attr", "detailed": "verifyAttr"},
        "groups": {"global": None, "local": "06-sky_dark"},
        "semantic": [{"operation": "select", "dependencies": [], "argument": "sky (2486325)"}],
        "entailed": [],
        "equivalent": ["201307251"],
        "annotations": {"answer": {}, "question": {"2": "2486325"}, "fullAnswer": {}},
    },
    "05515938": {"imageId": "n161313", "question": "What is on the table?", "types": {}},  # submission split
}

SCENE_GRAPHS = {
    "2407890": {
        "width": 640,
        "height": 480,
        "location": "living room",
        "weather": None,
        "objects": {
            "271881": {
                "name": "chair", "x": 220, "y": 310, "w": 50, "h": 80,
                "attributes": ["brown", "wooden", "small"],
                "relations": [{"name": "on", "object": "271882"}, {"name": "near", "object": "271883"}],
            },
            "271882": {"name": "rug", "x": 0, "y": 350, "w": 640, "h": 130, "attributes": [], "relations": []},
            "271883": {
                "name": "table", "x": 300, "y": 300, "w": 100, "h": 60, "attributes": ["round"],
                "relations": [{"name": "to the right of", "object": "271881"}],
            },
        },
    },
    "n1": {"width": 10, "height": 20, "objects": {}},
}  # fmt: skip


def _write(tmp_path, obj, name="f.json"):
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return path


def test_questions(tmp_path):
    qs = load_gqa_questions(_write(tmp_path, QUESTIONS))
    assert qs[0] == GQAQuestion(
        question_id="201307251",
        image_id=2354786,
        question="Is the sky dark?",
        answer="yes",
        full_answer="Yes, the sky is dark.",
        types={"structural": "verify", "semantic": "attr", "detailed": "verifyAttr"},
        is_balanced=True,
    )
    assert qs[1].question_id == "05515938" and qs[1].image_id == "n161313" and qs[1].answer is None


def test_scene_graphs(tmp_path):
    graphs = load_gqa_scene_graphs(_write(tmp_path, SCENE_GRAPHS))
    objects, relations, size = graphs[2407890]
    assert size == (640.0, 480.0)
    assert [o["name"] for o in objects] == ["chair", "rug", "table"]
    assert objects[0]["box"] == [220.0, 310.0, 270.0, 390.0]
    assert objects[0]["attributes"] == ["brown", "wooden", "small"] and objects[0]["object_id"] == "271881"
    assert relations == [(0, "on", 1), (0, "near", 2), (2, "to the right of", 0)]
    assert graphs["n1"] == ([], [], (10.0, 20.0))


def test_relation_to_unknown_object(tmp_path):
    bad = json.loads(json.dumps(SCENE_GRAPHS))
    bad["2407890"]["objects"]["271882"]["relations"] = [{"name": "under", "object": "999"}]
    with pytest.raises(DataFormatError, match=r"image '2407890'.*'under' from object '271882'.*object '999'"):
        load_gqa_scene_graphs(_write(tmp_path, bad))


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda g: g["2407890"].pop("width"), r"image '2407890': lacks key\(s\) \['width'\]"),
        (lambda g: g["2407890"]["objects"]["271882"].pop("h"), r"object '271882': lacks key\(s\) \['h'\]"),
        (lambda g: g["2407890"]["objects"]["271882"].update(x="left"), "x, y, w, h must be numbers"),
        (
            lambda g: g["2407890"]["objects"]["271881"]["relations"].append({"name": "on"}),
            "lacks 'name' or 'object'",
        ),
    ],
)
def test_scene_graph_malformed(tmp_path, mutate, match):
    bad = json.loads(json.dumps(SCENE_GRAPHS))
    mutate(bad)
    with pytest.raises(DataFormatError, match=match):
        load_gqa_scene_graphs(_write(tmp_path, bad))


def test_questions_malformed(tmp_path):
    with pytest.raises(DataFormatError, match=r"question '7' lacks key\(s\) \['imageId'\]"):
        load_gqa_questions(_write(tmp_path, {"7": {"question": "why?"}}))
    with pytest.raises(DataFormatError, match="expected a JSON object"):
        load_gqa_questions(_write(tmp_path, [1, 2]))
