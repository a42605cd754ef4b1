"""Tests of the synthetic benchmark.

The generator's answers are checked by a tiny independent reader of the
English questions and captions written here against the scene records: it
computes centres, relations, counts and nearest objects directly, without the
program executor.
"""

import itertools
import json
import math
import re
from collections import Counter, defaultdict

import numpy as np
import pytest
import torch

from mmgraph.datasets.synthetic import (
    COLORS,
    FAMILIES,
    MATERIALS,
    NEGATIVE_KINDS,
    SHAPES,
    SIZES,
    CaptionGenerator,
    ProgramError,
    QuestionGenerator,
    Scene,
    SceneGenerator,
    SceneObject,
    execute_program,
    generate_dataset,
    load_synthetic,
    question_only_baseline,
    render,
    render_tensor,
    split_sizes,
)
from mmgraph.errors import DataFormatError, InputError

NUM_SCENES = 150

# ----------------------------------------------------------------------------- the independent reader

WORD_ATTRIBUTE = {
    **{w: "size" for w in SIZES},
    **{w: "color" for w in COLORS},
    **{w: "material" for w in MATERIALS},
}
REL = "left of|right of|above|below"


def attr(obj, name):
    return obj["name"] if name == "shape" else obj["attributes"][name]


def centre(obj):
    x0, y0, x1, y1 = obj["box"]
    return (x0 + x1) / 2, (y0 + y1) / 2


def holds(scene, relation, a, b):
    """Object a is `relation` object b, by the documented margin rule."""
    (xa, ya), (xb, yb) = centre(scene["objects"][a]), centre(scene["objects"][b])
    m = scene["relation_margin"]
    return {"left of": xa + m < xb, "right of": xa > xb + m, "above": ya + m < yb, "below": ya > yb + m}[
        relation
    ]


def fits(obj, phrase):
    *adjectives, noun = phrase.split()
    noun = noun[:-1] if noun.endswith("s") and noun[:-1] in (*SHAPES, "object") else noun
    if noun != "object" and obj["name"] != noun:
        return False
    return all(obj["attributes"][WORD_ATTRIBUTE[w]] == w for w in adjectives)


def nearest(scene, i, furthest=False):
    others = sorted(
        (math.dist(centre(scene["objects"][i]), centre(o)), j)
        for j, o in enumerate(scene["objects"])
        if j != i
    )
    if furthest:
        others = others[::-1]
    if len(others) > 1:
        assert abs(others[1][0] - others[0][0]) >= scene["distance_margin"], "closest/furthest is a tie"
    return others[0][1]


def denote(scene, phrase):
    """The objects a noun phrase (without its article) denotes."""
    m = re.fullmatch(r"object (closest to|furthest from) the (.+)", phrase)
    if m:
        return [nearest(scene, the(scene, m[2]), furthest=m[1] == "furthest from")]
    m = re.fullmatch(rf"(.+?) ({REL}) the (.+)", phrase)
    if m:
        anchor = the(scene, m[3])
        return [i for i in denote(scene, m[1]) if holds(scene, m[2], i, anchor)]
    return [i for i, o in enumerate(scene["objects"]) if fits(o, phrase)]


def the(scene, phrase):
    found = denote(scene, phrase)
    assert len(found) == 1, f"'the {phrase}' names {len(found)} objects"
    return found[0]


def yes(b):
    return "yes" if b else "no"


def answer(scene, question):
    """The answer to a question, computed directly on the scene record."""
    if m := re.fullmatch(rf"How many (.+) are ({REL}) the (.+)\?", question):
        return str(len(denote(scene, f"{m[1]} {m[2]} the {m[3]}")))
    if m := re.fullmatch(r"How many (.+) are there\?", question):
        return str(len(denote(scene, m[1])))
    if m := re.fullmatch(r"Is there an? (.+)\?", question):
        return yes(denote(scene, m[1]))
    if m := re.fullmatch(r"What (color|shape|size|material) is the (.+)\?", question):
        return attr(scene["objects"][the(scene, m[2])], m[1])
    if m := re.fullmatch(r"Is the (.+) the same (color|shape|size|material) as the (.+)\?", question):
        a, b = the(scene, m[1]), the(scene, m[3])
        assert a != b
        return yes(attr(scene["objects"][a], m[2]) == attr(scene["objects"][b], m[2]))
    if m := re.fullmatch(r"Are there (more|fewer) (.+) than (.+)\?", question):
        a, b = len(denote(scene, m[2])), len(denote(scene, m[3]))
        return yes(a > b if m[1] == "more" else a < b)
    if m := re.fullmatch(r"Are there the same number of (.+) and (.+)\?", question):
        return yes(len(denote(scene, m[1])) == len(denote(scene, m[2])))
    raise AssertionError(f"the reader does not know the question {question!r}")


def caption_true(scene, text):
    m = re.fullmatch(rf"an? (.+) ({REL}) an? (.+)", text)
    assert m, text
    return any(holds(scene, m[2], a, b) for a in denote(scene, m[1]) for b in denote(scene, m[3]) if a != b)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def generated():
    """In-memory scenes (as records), questions and captions."""
    scenes = SceneGenerator(seed=3)
    questions, captions = QuestionGenerator(seed=3), CaptionGenerator(seed=3)
    out = []
    for _ in range(NUM_SCENES):
        scene = scenes.generate_scene()
        out.append((scene.to_dict(), questions.generate(scene, 10), captions.generate(scene, 4)))
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    meta = generate_dataset(root, num_images=30, questions_per_image=6, captions_per_image=3, seed=5)
    return root, meta


# ----------------------------------------------------------------------------- scenes and rendering


def test_scenes_respect_counts_bounds_and_overlap(generated):
    for scene, _, _ in generated:
        assert 3 <= len(scene["objects"]) <= 6
        boxes = np.array([o["box"] for o in scene["objects"]], dtype=float)
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 128).all()
        for a, b in itertools.combinations(boxes, 2):
            w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
            assert w * h <= 0.1 * smaller + 1e-9


def test_relations_follow_the_margin_rule(generated):
    for scene, _, _ in generated[:40]:
        stored = {(r["subject"], r["predicate"], r["object"]) for r in scene["relations"]}
        n = len(scene["objects"])
        expected = {
            (a, rel, b)
            for a in range(n)
            for b in range(n)
            for rel in REL.split("|")
            if a != b and holds(scene, rel, a, b)
        }
        assert stored == expected


def test_scene_generation_is_deterministic():
    a, b = SceneGenerator(seed=7), SceneGenerator(seed=7)
    assert [a.generate_scene().to_dict() for _ in range(5)] == [
        b.generate_scene().to_dict() for _ in range(5)
    ]
    # Scene k depends on (seed, k) only, not on the scenes drawn before.
    assert SceneGenerator(seed=7).generate_scene(3).to_dict() == a.generate_scene(3).to_dict()
    assert (
        SceneGenerator(seed=8).generate_scene(0).to_dict()
        != SceneGenerator(seed=7).generate_scene(0).to_dict()
    )


def test_scene_round_trips_through_a_dict():
    scene = SceneGenerator(seed=1).generate_scene()
    again = Scene.from_dict(json.loads(json.dumps(scene.to_dict())))
    assert again.to_dict() == scene.to_dict()


def test_render_draws_objects_in_their_colours():
    scene = SceneGenerator(seed=2, materials=("solid",), max_objects=3).generate_scene()
    image = render(scene)
    tensor = render_tensor(scene)
    assert image.size == (128, 128)
    assert tensor.shape == (3, 128, 128) and tensor.dtype == torch.uint8
    assert torch.equal(tensor.permute(1, 2, 0), torch.from_numpy(np.asarray(image).copy()))
    for obj in scene.objects:
        x, y = (obj.box[0] + obj.box[2]) // 2, (obj.box[1] + obj.box[3]) // 2 + 2
        assert tensor[:, y, x].tolist() == list(COLORS[obj.attributes["color"]])
    covered = np.zeros((128, 128), dtype=bool)
    for obj in scene.objects:
        covered[obj.box[1] : obj.box[3], obj.box[0] : obj.box[2]] = True
    assert (tensor.permute(1, 2, 0).numpy()[~covered] == scene.background).all()


def test_bad_generator_arguments_raise():
    with pytest.raises(InputError, match="min_objects"):
        SceneGenerator(min_objects=5, max_objects=3)
    with pytest.raises(InputError, match="colours"):
        SceneGenerator(colors=("red", "mauve"))
    with pytest.raises(InputError, match="could not place"):
        SceneGenerator(image_size=16, min_objects=12, max_objects=12, max_attempts=5).generate_scene()


# ----------------------------------------------------------------------------- questions


def test_answers_agree_with_an_independent_reader(generated):
    checked = Counter()
    for scene, questions, _ in generated:
        for q in questions:
            assert answer(scene, q["question"]) == q["answer"], q
            checked[q["family"]] += 1
    assert set(checked) == set(FAMILIES)
    assert min(checked.values()) >= 100


def test_questions_are_distinct_per_image_and_well_formed(generated):
    for _, questions, _ in generated:
        texts = [q["question"] for q in questions]
        assert len(texts) == len(set(texts)) == 10
        for q in questions:
            assert q["template"] in FAMILIES[q["family"]]
            for k, step in enumerate(q["program"]):
                assert all(0 <= i < k for i in step["inputs"])


def test_grounding_spans_name_fitting_objects(generated):
    for scene, questions, captions in generated:
        texts = [(q["question"], q["grounding"]) for q in questions]
        texts += [(c["text"], c["grounding"]) for c in captions]
        for text, grounding in texts:
            for g in grounding:
                assert fits(scene["objects"][g["object"]], text[g["start"] : g["end"]]), (text, g)
        for q in questions:
            if m := re.fullmatch(r"How many (.+) are there\?", q["question"]):
                assert sorted(g["object"] for g in q["grounding"]) == denote(scene, m[1])
            if q["family"] in ("attribute_query", "two_hop"):
                # Every definite reference is grounded on exactly one object.
                spans = Counter((g["start"], g["end"]) for g in q["grounding"])
                assert set(spans.values()) == {1}


def test_ambiguous_references_raise():
    scene = Scene(
        image_id="twins",
        width=100,
        height=100,
        objects=[
            SceneObject("cube", {"color": "red", "size": "small", "material": "solid"}, box)
            for box in ((0, 0, 10, 10), (50, 50, 60, 60))
        ],
        relation_margin=2.0,
        distance_margin=2.0,
    )
    program = [
        {"function": "scene", "inputs": [], "value": None},
        {"function": "filter_color", "inputs": [0], "value": "red"},
        {"function": "unique", "inputs": [1], "value": None},
        {"function": "query_shape", "inputs": [2], "value": None},
    ]
    with pytest.raises(ProgramError, match="2 objects match"):
        execute_program(program, scene)
    assert execute_program([*program[:2], {"function": "count", "inputs": [1], "value": None}], scene) == "2"
    with pytest.raises(ProgramError, match="not earlier steps"):
        execute_program([{"function": "count", "inputs": [0], "value": None}], scene)


def test_answers_are_balanced_per_template(generated):
    answers = defaultdict(Counter)
    for _, questions, _ in generated:
        for q in questions:
            answers[q["template"]][q["answer"]] += 1
    binary = 0
    for template, counts in answers.items():
        n = sum(counts.values())
        top = counts.most_common(1)[0][1] / n
        if n >= 20 and set(counts) <= {"yes", "no", "small", "large", "solid", "hollow"}:
            binary += 1
            assert top <= 0.55, (template, counts)
        elif n >= 20:
            assert top <= 0.4, (template, counts)
    assert binary >= 10


def test_question_only_baseline_stays_near_chance(generated):
    questions = [q for _, qs, _ in generated for q in qs]
    train, test = questions[: len(questions) * 4 // 5], questions[len(questions) * 4 // 5 :]
    for by in ("template", "question"):
        scores = question_only_baseline(train, test, by=by)
        assert set(scores) == {*FAMILIES, "overall"}
        for family in ("existence", "attribute_comparison", "count_comparison"):
            assert scores[family] <= 0.65, (by, family, scores)
        assert scores["overall"] <= 0.5


def test_question_only_baseline_counts_majorities():
    train = [
        {"question": "q1", "answer": "yes", "family": "f", "template": "t"},
        {"question": "q1", "answer": "yes", "family": "f", "template": "t"},
        {"question": "q2", "answer": "no", "family": "f", "template": "t"},
        {"question": "q3", "answer": "no", "family": "g", "template": "u"},
    ]
    test = [
        {"question": "q2", "answer": "no", "family": "f", "template": "t"},
        {"question": "q9", "answer": "no", "family": "g", "template": "u"},
    ]
    assert question_only_baseline(train, test) == {"f": 0.0, "g": 1.0, "overall": 0.5}
    assert question_only_baseline(train, test, by="question") == {"f": 1.0, "g": 1.0, "overall": 1.0}
    with pytest.raises(InputError, match="by must be"):
        question_only_baseline(train, by="family")


def test_single_object_scenes_get_the_questions_they_allow():
    scene = SceneGenerator(seed=0, min_objects=1, max_objects=1).generate_scene()
    questions = QuestionGenerator(seed=0).generate(scene, 10)
    assert 1 <= len(questions) <= 10
    # Comparing two objects or hopping through a related one needs a second object.
    assert not {q["family"] for q in questions} & {"attribute_comparison", "two_hop"}
    for q in questions:
        assert answer(scene.to_dict(), q["question"]) == q["answer"]
    assert CaptionGenerator(seed=0).generate(scene, 3) == []


def test_question_generation_is_deterministic():
    scenes = [SceneGenerator(seed=4).generate_scene(k) for k in range(5)]
    a, b, c = QuestionGenerator(seed=4), QuestionGenerator(seed=4), QuestionGenerator(seed=5)
    out_a = [a.generate(s, 5) for s in scenes]
    assert out_a == [b.generate(s, 5) for s in scenes]
    assert out_a != [c.generate(s, 5) for s in scenes]


# ----------------------------------------------------------------------------- captions


def test_captions_are_true_and_negatives_false_with_the_same_words(generated):
    kinds = Counter()
    for scene, _, captions in generated:
        assert 1 <= len(captions) <= 4
        for c in captions:
            assert caption_true(scene, c["text"]), c["text"]
            rel = c["relation"]
            assert holds(scene, rel["predicate"], rel["subject"], rel["object"])
            assert [g["object"] for g in c["grounding"]] == [rel["subject"], rel["object"]]
            assert len({n["text"] for n in c["negatives"]}) == len(c["negatives"]) >= 1
            for n in c["negatives"]:
                assert sorted(n["text"].split()) == sorted(c["text"].split())
                assert n["text"] != c["text"]
                assert not caption_true(scene, n["text"]), (c["text"], n)
                assert n["kind"] in NEGATIVE_KINDS
                kinds[n["kind"]] += 1
    assert set(kinds) == set(NEGATIVE_KINDS)


# ----------------------------------------------------------------------------- files


def test_split_sizes_sum_to_the_total():
    assert split_sizes(10, (0.8, 0.1, 0.1)) == [8, 1, 1]
    assert split_sizes(7, (0.5, 0.25, 0.25)) == [3, 2, 2]
    with pytest.raises(InputError, match="summing to 1"):
        split_sizes(10, (0.8, 0.3, 0.1))


def test_files_round_trip_through_load_synthetic(dataset):
    root, meta = dataset
    assert meta["counts"]["train"]["images"] == 24
    assert json.loads((root / "meta.json").read_text()) == meta
    seen_ids = set()
    for split in ("train", "val", "test"):
        scenes, questions, captions = load_synthetic(root, split)
        assert len(scenes) == meta["counts"][split]["images"] == len(captions)
        assert len(questions) == meta["counts"][split]["questions"]
        ids = {s["image_id"] for s in scenes}
        assert not ids & seen_ids
        seen_ids |= ids
        for s in scenes:
            assert (root / s["image"]).is_file() and s["image"].startswith(f"images/{split}/")
        assert {q["answer"] for q in questions} <= set(meta["vocab"]["answers"])
    # The files hold what the in-memory API makes with the same seed.
    scenes, questions, _ = load_synthetic(root, "train")
    gen = SceneGenerator(seed=5)
    assert scenes[0] == {**gen.generate_scene(0).to_dict(), "image": "images/train/000000.png"}
    again = QuestionGenerator(seed=5).generate(Scene.from_dict(scenes[0]), 6)
    assert again == questions[:6]


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path, dataset):
    root, _ = dataset
    generate_dataset(tmp_path / "a", num_images=30, questions_per_image=6, captions_per_image=3, seed=5)
    generate_dataset(tmp_path / "b", num_images=30, questions_per_image=6, captions_per_image=3, seed=6)
    for name in ("meta.json", "scenes_train.json", "questions_val.json", "captions_test.json"):
        assert (tmp_path / "a" / name).read_bytes() == (root / name).read_bytes()
        assert (tmp_path / "b" / name).read_bytes() != (root / name).read_bytes()
    png = "images/train/000003.png"
    assert (tmp_path / "a" / png).read_bytes() == (root / png).read_bytes()


def _copy(root, tmp_path):
    target = tmp_path / "copy"
    for path in root.rglob("*"):
        if path.is_file():
            (target / path.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
            (target / path.relative_to(root)).write_bytes(path.read_bytes())
    return target


def _edit(path, key, fn):
    data = json.loads(path.read_text())
    fn(data[key])
    path.write_text(json.dumps(data))


def test_malformed_files_raise_errors_naming_file_and_key(dataset, tmp_path):
    root = _copy(dataset[0], tmp_path)
    questions = root / "questions_val.json"
    first_id = json.loads(questions.read_text())["questions"][0]["question_id"]
    _edit(questions, "questions", lambda qs: qs[0].pop("answer"))
    with pytest.raises(
        DataFormatError, match=rf"questions_val\.json: question '{first_id}' lacks key 'answer'"
    ):
        load_synthetic(root, "val")

    scenes = root / "scenes_test.json"
    _edit(scenes, "scenes", lambda ss: ss[1]["objects"][0].pop("box"))
    with pytest.raises(DataFormatError, match=r"scenes_test\.json: scene '\d+', object 0 lacks key 'box'"):
        load_synthetic(root, "test")

    captions = root / "captions_train.json"
    _edit(captions, "captions", lambda cs: cs[0]["captions"][0]["grounding"][0].update(object=99))
    with pytest.raises(
        DataFormatError, match=r"captions_train\.json: image '000000', caption 0, grounding item 0"
    ):
        load_synthetic(root, "train")


def test_broken_or_missing_files_raise(dataset, tmp_path):
    root = _copy(dataset[0], tmp_path)
    (root / "captions_val.json").write_text('{"info": {},\n "captions": [\n')
    with pytest.raises(DataFormatError, match=r"captions_val\.json: not valid JSON at line 3"):
        load_synthetic(root, "val")
    (root / "scenes_test.json").unlink()
    with pytest.raises(DataFormatError, match=r"scenes_test\.json: file not found; create"):
        load_synthetic(root, "test")
    (root / "images" / "train" / "000001.png").unlink()
    with pytest.raises(DataFormatError, match=r"000001\.png not found"):
        load_synthetic(root, "train")
    assert load_synthetic(root, "train", check_images=False)[0]
    with pytest.raises(InputError, match="unknown split"):
        load_synthetic(root, "dev")
