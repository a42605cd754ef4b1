import pickle
from fractions import Fraction

import numpy as np
import pytest
import torch

from mmgraph.datasets.safe_pickle import safe_load
from mmgraph.datasets.sort_of_clevr import (
    SORT_OF_CLEVR_ANSWERS,
    SORT_OF_CLEVR_COLORS,
    SORT_OF_CLEVR_FAMILIES,
    SortOfClevrObject,
    decode_sort_of_clevr_question,
    encode_sort_of_clevr_question,
    generate_sort_of_clevr,
    read_sort_of_clevr,
    sort_of_clevr_answers,
    sort_of_clevr_referents,
)
from mmgraph.errors import DataFormatError, InputError, UnsafePickleError

COLOR_INDEX = {c: i for i, c in enumerate(SORT_OF_CLEVR_COLORS)}
RGB = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "orange": (255, 156, 0),
    "gray": (128, 128, 128),
    "yellow": (255, 255, 0),
}


def _layout(*objects):
    """Objects given as (x, y, shape) in colour order."""
    return [SortOfClevrObject(c, (x, y), s) for c, (x, y, s) in zip(SORT_OF_CLEVR_COLORS, objects)]


# A hand-made scene: x is the column, y the row.
SCENE = _layout(
    (10, 10, "rectangle"),  # red
    (60, 10, "circle"),  # green
    (35, 40, "rectangle"),  # blue
    (10, 65, "circle"),  # orange
    (60, 65, "rectangle"),  # gray
    (40, 55, "circle"),  # yellow
)
# red and green on one vertical line, blue on it 12 px below red.
VERTICAL = _layout(
    (10, 10, "rectangle"),
    (10, 60, "circle"),
    (10, 22, "rectangle"),
    (60, 60, "circle"),
    (60, 10, "rectangle"),
    (40, 35, "circle"),
)


def _ask(objects, family, subtype, color, color2=None, dim=18):
    """English question and answer string, through encode -> answer -> decode."""
    centers = np.array([[o.center for o in objects]])  # [1, 6, 2]
    rect = np.array([[o.shape == "rectangle" for o in objects]])  # [1, 6]
    fam = SORT_OF_CLEVR_FAMILIES.index(family)
    c2 = COLOR_INDEX[color2] if color2 else 0
    answer = sort_of_clevr_answers(centers, rect, [[fam]], [[subtype]], [[COLOR_INDEX[color]]], [[c2]])[0, 0]
    q = decode_sort_of_clevr_question(
        encode_sort_of_clevr_question(family, subtype, color, color2, dim=dim), answer
    )
    assert (q.family, q.subtype, q.answer_index) == (family, subtype, answer)
    assert q.colors == ((color,) if color2 is None else (color, color2))
    return q.question, q.answer


@pytest.mark.parametrize(
    "family, subtype, colors, question, answer",
    [
        ("nonrel", 0, ("red",), "What is the shape of the red object?", "rectangle"),
        ("nonrel", 0, ("green",), "What is the shape of the green object?", "circle"),
        ("nonrel", 1, ("red",), "Is the red object on the left?", "yes"),
        ("nonrel", 1, ("green",), "Is the green object on the left?", "no"),
        ("nonrel", 2, ("red",), "Is the red object on the top?", "yes"),
        ("nonrel", 2, ("orange",), "Is the orange object on the top?", "no"),
        ("rel", 0, ("yellow",), "What is the shape of the object closest to the yellow object?", "rectangle"),
        # Every other object is > 31.6 px from green: the public generator
        # would answer green's own shape (circle); the closest is blue.
        ("rel", 0, ("green",), "What is the shape of the object closest to the green object?", "rectangle"),
        ("rel", 1, ("red",), "What is the shape of the object furthest from the red object?", "rectangle"),
        ("rel", 1, ("orange",), "What is the shape of the object furthest from the orange object?", "circle"),
        ("rel", 2, ("red",), "How many other objects have the same shape as the red object?", "2"),
        ("rel", 2, ("yellow",), "How many other objects have the same shape as the yellow object?", "2"),
        # Borders count: green and orange sit on corners of the red-gray box.
        (
            "ternary",
            0,
            ("red", "gray"),
            "How many objects are inside the box between the red object and the gray object?",
            "4",
        ),
        (
            "ternary",
            0,
            ("red", "blue"),
            "How many objects are inside the box between the red object and the blue object?",
            "0",
        ),
        (
            "ternary",
            1,
            ("red", "gray"),
            "Is any other object near the line through the red object and the gray object?",
            "yes",
        ),
        (
            "ternary",
            1,
            ("green", "orange"),
            "Is any other object near the line through the green object and the orange object?",
            "yes",
        ),
        (
            "ternary",
            1,
            ("red", "green"),
            "Is any other object near the line through the red object and the green object?",
            "no",
        ),
        (
            "ternary",
            1,
            ("red", "orange"),
            "Is any other object near the line through the red object and the orange object?",
            "no",
        ),
        # Right angles at red (orange) and at green (gray) count.
        (
            "ternary",
            2,
            ("red", "green"),
            "How many objects form a right or obtuse triangle with the red object and the green object?",
            "2",
        ),
        (
            "ternary",
            2,
            ("red", "gray"),
            "How many objects form a right or obtuse triangle with the red object and the gray object?",
            "4",
        ),
    ],
)
def test_every_family_on_a_hand_built_scene(family, subtype, colors, question, answer):
    assert _ask(SCENE, family, subtype, *colors) == (question, answer)
    if family != "ternary":
        assert _ask(SCENE, family, subtype, *colors, dim=11) == (question, answer)


def test_vertical_line_and_degenerate_triangle():
    # Band around a vertical line: the generator's formula admits only objects
    # at the same x within 12 px of the first object (blue is exactly 12 below).
    assert _ask(VERTICAL, "ternary", 1, "red", "green")[1] == "yes"
    moved = _layout(
        (10, 10, "rectangle"),
        (10, 60, "circle"),
        (10, 40, "rectangle"),
        *[(o.center[0], o.center[1], o.shape) for o in VERTICAL[3:]],
    )
    assert _ask(moved, "ternary", 1, "red", "green")[1] == "no"
    # Blue is collinear with red and green: no triangle; orange and gray make right angles.
    assert _ask(VERTICAL, "ternary", 2, "red", "green")[1] == "2"
    # Blue lies on the red-green segment: between (inclusive box), a zero-width box.
    assert _ask(VERTICAL, "ternary", 0, "red", "green")[1] == "1"


def test_left_and_top_boundaries():
    # 2x < 75: x = 37 is on the left, x = 38 is not.
    scene = _layout((37, 38, "circle"), (38, 37, "circle"), (60, 60, "circle"), (10, 60, "circle"),
                    (60, 10, "circle"), (10, 10, "circle"))  # fmt: skip
    assert _ask(scene, "nonrel", 1, "red")[1] == "yes"
    assert _ask(scene, "nonrel", 2, "red")[1] == "no"
    assert _ask(scene, "nonrel", 1, "green")[1] == "no"
    assert _ask(scene, "nonrel", 2, "green")[1] == "yes"


def test_vector_layouts():
    # 11 dims: colour 0..5, type 6 nonrel / 7 rel, subtype 8..10.
    assert np.flatnonzero(encode_sort_of_clevr_question("nonrel", 0, "red", dim=11)).tolist() == [0, 6, 8]
    assert np.flatnonzero(encode_sort_of_clevr_question("rel", 2, "blue", dim=11)).tolist() == [2, 7, 10]
    # 18 dims: colour 0..5, second colour 6..11, type 12/13/14, subtype 15..17.
    assert np.flatnonzero(encode_sort_of_clevr_question("nonrel", 1, "yellow")).tolist() == [5, 12, 16]
    assert np.flatnonzero(encode_sort_of_clevr_question("rel", 2, "blue")).tolist() == [2, 13, 17]
    assert np.flatnonzero(encode_sort_of_clevr_question("ternary", 1, "green", "orange")).tolist() == [
        1,
        9,
        14,
        16,
    ]
    with pytest.raises(InputError):
        encode_sort_of_clevr_question("ternary", 0, "red", "blue", dim=11)
    with pytest.raises(InputError):
        encode_sort_of_clevr_question("ternary", 0, "red")
    with pytest.raises(InputError):
        encode_sort_of_clevr_question("rel", 0, "purple")


def test_decode_rejects_malformed_vectors_and_answers():
    good = encode_sort_of_clevr_question("nonrel", 1, "red", dim=11)
    assert decode_sort_of_clevr_question(good, 0).answer == "yes"
    with pytest.raises(InputError, match="answers are 0..1"):
        decode_sort_of_clevr_question(good, 2)
    two_colors = good.copy()
    two_colors[1] = 1
    with pytest.raises(InputError, match="colour block is not one-hot"):
        decode_sort_of_clevr_question(two_colors, 0)
    stray = encode_sort_of_clevr_question("rel", 0, "red").copy()
    stray[7] = 1  # a second colour on a binary question
    with pytest.raises(InputError, match="second colour block"):
        decode_sort_of_clevr_question(stray, 2)
    with pytest.raises(InputError, match="11 or 18"):
        decode_sort_of_clevr_question(np.zeros(12), 0)
    # Counts: 4 + k for k = 0..5 other objects, 0..4 for ternary counts.
    count = encode_sort_of_clevr_question("rel", 2, "red")
    assert decode_sort_of_clevr_question(count, 9).answer == "5"
    with pytest.raises(InputError):
        decode_sort_of_clevr_question(encode_sort_of_clevr_question("ternary", 0, "red", "blue"), 9)


# ---------------------------------------------------------------- independent answers


def _independent_answer(objects, family, subtype, c1, c2, img_size):
    """Plain-Python answers from an object list, by formulas other than the
    implementation's (Fractions for the band, the law of cosines on squared
    side lengths for the triangles, sorting for closest / furthest)."""
    a, b = objects[c1], objects[c2] if c2 >= 0 else None
    shape_answer = {"rectangle": "rectangle", "circle": "circle"}
    if family == "nonrel":
        if subtype == 0:
            return shape_answer[a.shape]
        return "yes" if a.center[subtype - 1] < img_size / 2 else "no"
    others = [o for o in objects if o is not a and o is not b]
    if family == "rel":
        if subtype == 2:
            return str(sum(o.shape == a.shape for o in others))

        def d2(o):
            return (o.center[0] - a.center[0]) ** 2 + (o.center[1] - a.center[1]) ** 2

        order = sorted(others, key=lambda o: (d2(o), SORT_OF_CLEVR_COLORS.index(o.color)))
        if subtype == 0:
            return order[0].shape
        far = max(d2(o) for o in others)
        return next(o for o in others if d2(o) == far).shape
    (ax, ay), (bx, by) = a.center, b.center
    if subtype == 0:
        inside = [
            o
            for o in others
            if min(ax, bx) <= o.center[0] <= max(ax, bx) and min(ay, by) <= o.center[1] <= max(ay, by)
        ]
        return str(len(inside))
    if subtype == 1:
        for o in others:
            ox, oy = o.center
            if bx == ax:
                near = ox == ax and abs(oy - ay) <= 12
            else:
                near = abs(oy - (ay + Fraction(by - ay, bx - ax) * (ox - ax))) <= 12
            if near:
                return "yes"
        return "no"
    count = 0
    for o in others:
        (ox, oy) = o.center
        sides = sorted(
            [
                (ax - bx) ** 2 + (ay - by) ** 2,
                (ax - ox) ** 2 + (ay - oy) ** 2,
                (bx - ox) ** 2 + (by - oy) ** 2,
            ]
        )
        twice_area = (bx - ax) * (oy - ay) - (by - ay) * (ox - ax)
        count += twice_area != 0 and sides[2] >= sides[0] + sides[1]
    return str(count)


def _raw_image_bgr(raw_sample):
    return np.rint(raw_sample[0] * 255).astype(np.uint8)


@pytest.mark.parametrize("ternary", [False, True])
def test_generate_then_read_round_trip(tmp_path, ternary):
    path = tmp_path / "soc.pickle"
    train_objects, test_objects = generate_sort_of_clevr(
        path, train_size=40, test_size=8, seed=3, ternary=ternary
    )
    train, test = read_sort_of_clevr(path)
    raw_train, raw_test = safe_load(path)
    assert (len(train), len(test), len(train_objects), len(test_objects)) == (40, 8, 40, 8)
    dim = 18 if ternary else 11
    families = {"nonrel", "rel", "ternary"} if ternary else {"nonrel", "rel"}
    seen = set()
    for samples, raws, layouts in ((train, raw_train, train_objects), (test, raw_test, test_objects)):
        for sample, raw, objects in zip(samples, raws, layouts):
            assert len(raw) == (4 if ternary else 3)
            assert raw[0].shape == (75, 75, 3) and raw[0].min() >= 0 and raw[0].max() <= 1
            # The file is BGR; the sample RGB [3, H, W].
            assert sample.image.shape == (3, 75, 75) and sample.image.dtype == torch.uint8
            assert torch.equal(
                sample.image, torch.from_numpy(_raw_image_bgr(raw)[:, :, ::-1].copy()).permute(2, 0, 1)
            )
            assert len(sample.questions) == 10 * len(families)
            for q in sample.questions:
                assert q.vector.shape == (dim,)
                assert q.answer == SORT_OF_CLEVR_ANSWERS[q.answer_index]
                c1 = COLOR_INDEX[q.colors[0]]
                c2 = COLOR_INDEX[q.colors[1]] if len(q.colors) > 1 else -1
                assert q.answer == _independent_answer(objects, q.family, q.subtype, c1, c2, 75), q
                if q.family == "ternary":
                    # The public generator draws the pair from the first five colours.
                    assert len(q.colors) == 2 and q.colors[0] != q.colors[1] and "yellow" not in q.colors
                seen.add((q.family, q.subtype))
    assert {f for f, _ in seen} == families and len(seen) == 3 * len(families)


def test_drawing_follows_the_object_list(tmp_path):
    path = tmp_path / "soc.pickle"
    (train_objects, _) = generate_sort_of_clevr(path, train_size=30, test_size=0, seed=11)
    train, _ = read_sort_of_clevr(path)
    checked = 0
    for sample, objects in zip(train, train_objects):
        image = sample.image.permute(1, 2, 0).numpy()  # [H, W, 3] RGB
        for k, obj in enumerate(objects):
            x, y = obj.center
            assert 5 <= x < 70 and 5 <= y < 70
            for other in objects[:k]:
                assert (x - other.center[0]) ** 2 + (y - other.center[1]) ** 2 >= 100
            if any(
                abs(x - o.center[0]) <= 10 and abs(y - o.center[1]) <= 10 for o in objects if o is not obj
            ):
                continue  # another object may cover part of this one
            is_color = (image == RGB[obj.color]).all(-1)  # [H, W]
            # A filled 11 x 11 square or an OpenCV radius-5 disc (97 pixels).
            assert is_color.sum() == (121 if obj.shape == "rectangle" else 97)
            assert is_color[y, x] and is_color[y + 5, x + 5] == (obj.shape == "rectangle")
            checked += 1
        # Outside the objects' boxes the background is white.
        covered = np.zeros((75, 75), dtype=bool)
        for obj in objects:
            covered[obj.center[1] - 5 : obj.center[1] + 6, obj.center[0] - 5 : obj.center[0] + 6] = True
        assert (image[~covered] == 255).all() and not (image[covered] == 255).all()
    assert checked > 50


def test_seed_controls_the_output(tmp_path):
    a, b, c = (tmp_path / n for n in ("a.pkl", "b.pkl", "c.pkl"))
    objects_a = generate_sort_of_clevr(a, train_size=5, test_size=2, seed=7, ternary=True)
    objects_b = generate_sort_of_clevr(b, train_size=5, test_size=2, seed=7, ternary=True)
    objects_c = generate_sort_of_clevr(c, train_size=5, test_size=2, seed=8, ternary=True)
    assert objects_a == objects_b and objects_a != objects_c
    sa, sb = read_sort_of_clevr(a)[0][0], read_sort_of_clevr(b)[0][0]
    assert torch.equal(sa.image, sb.image) and [q.question for q in sa.questions] == [
        q.question for q in sb.questions
    ]


def test_float_images(tmp_path):
    path = tmp_path / "soc.pickle"
    generate_sort_of_clevr(path, train_size=2, test_size=1, seed=0)
    u8 = read_sort_of_clevr(path)[0][0]
    f32 = read_sort_of_clevr(path, image_dtype=torch.float32)[0][0]
    assert f32.image.dtype == torch.float32 and 0 <= f32.image.min() and f32.image.max() <= 1
    assert torch.allclose(f32.image * 255, u8.image.float(), atol=1e-3)


def test_reads_the_public_generators_11_dim_format(tmp_path):
    # As the original generator wrote it: float64 BGR image, lists of
    # float64 np.zeros(11) vectors, Python int answers.
    image = np.ones((75, 75, 3))
    image[5:16, 5:16] = (0, 0, 1.0)  # a red square, BGR
    rel = ([encode_sort_of_clevr_question("rel", 2, "red", dim=11)], [9])
    norel = ([encode_sort_of_clevr_question("nonrel", 0, "red", dim=11)], [2])
    path = tmp_path / "sort-of-clevr.pickle"
    path.write_bytes(pickle.dumps(([(image, rel, norel)], [(image, rel, norel)]), protocol=2))
    train, test = read_sort_of_clevr(path)
    assert [(q.family, q.question, q.answer) for q in train[0].questions] == [
        ("rel", "How many other objects have the same shape as the red object?", "5"),
        ("nonrel", "What is the shape of the red object?", "rectangle"),
    ]
    assert train[0].image[:, 10, 10].tolist() == [255, 0, 0]  # RGB


def test_reads_3_tuples_with_18_dim_vectors(tmp_path):
    # The generator's intermediate version: 18-dim vectors, no ternary group.
    image = np.ones((75, 75, 3))
    rel = ([encode_sort_of_clevr_question("rel", 0, "gray")], [3])
    norel = ([encode_sort_of_clevr_question("nonrel", 2, "blue")], [1])
    path = tmp_path / "s.pickle"
    path.write_bytes(pickle.dumps(([(image, rel, norel)], []), protocol=4))
    train, test = read_sort_of_clevr(path)
    assert [q.answer for q in train[0].questions] == ["circle", "no"] and test == []


# ---------------------------------------------------------------- malformed files


def _mutated(tmp_path, mutate, ternary=True):
    src = tmp_path / "good.pickle"
    generate_sort_of_clevr(src, train_size=3, test_size=3, seed=0, ternary=ternary)
    train, test = safe_load(src)
    train, test = [list(s) for s in train], [list(s) for s in test]
    data = mutate(train, test)
    path = tmp_path / "bad.pickle"
    path.write_bytes(pickle.dumps(data if data is not None else (train, test), protocol=4))
    return path


def _group(sample, index):
    questions, answers = sample[index]
    return list(questions), list(answers)


def _set_group(sample, index, questions, answers):
    sample[index] = (questions, answers)


def _wrong_answer(answer):
    def mutate(train, test):
        q, a = _group(test[1], 3)  # the nonrel group
        a[0] = answer(q[0])
        _set_group(test[1], 3, q, a)

    return mutate


def _wrong_vector(make):
    def mutate(train, test):
        q, a = _group(test[1], 2)  # the rel group
        q[0] = make(q[0])
        _set_group(test[1], 2, q, a)

    return mutate


def _truncate_rel_group(train, test):
    q, a = _group(test[1], 2)
    _set_group(test[1], 2, [v[:11] for v in q], a)


def _stray_vector(v):
    v = v.copy()
    v[0:6] = 1
    return v


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda tr, te: te.__setitem__(1, tuple(te[1]) + (None,)), "got length 5"),
        (
            lambda tr, te: te.__setitem__(1, [te[1][0][:, :, 0]] + te[1][1:]),
            r"image must be an array \[H, W, 3\]",
        ),
        (lambda tr, te: te.__setitem__(1, [te[1][0][:40]] + te[1][1:]), "differs from the first sample"),
        (lambda tr, te: te.__setitem__(1, [te[1][0] * 255] + te[1][1:]), r"in \[0, 1\]"),
        (_wrong_answer(lambda q: 10), "answer index 10"),
        (_wrong_answer(lambda q: 2 if q[15] == 0 else 0), "answer index"),
        (_wrong_vector(lambda v: np.append(v, 0.0)), "must have 11 or 18 dims"),
        (_wrong_vector(lambda v: v[:11]), r"mixed lengths \[11, 18\]"),
        (_truncate_rel_group, "11-dim question vectors in a file of 18-dim"),
        (_wrong_vector(_stray_vector), "not one-hot"),
        (
            _wrong_vector(lambda v: encode_sort_of_clevr_question("nonrel", 0, "red")),
            "holds a nonrel question",
        ),
        (
            lambda tr, te: _set_group(te[1], 1, *(lambda q, a: (q, a[:-1]))(*_group(te[1], 1))),
            "10 questions but 9",
        ),
    ],
)
def test_malformed_files_name_file_split_and_sample(tmp_path, mutate, match):
    path = _mutated(tmp_path, mutate)
    with pytest.raises(DataFormatError, match=match) as info:
        read_sort_of_clevr(path)
    assert str(path) in str(info.value) and "test sample 1" in str(info.value)


def test_malformed_top_level_and_layout(tmp_path):
    path = _mutated(tmp_path, lambda tr, te: (tr, te, te))
    with pytest.raises(DataFormatError, match="pair \\(train, test\\)"):
        read_sort_of_clevr(path)

    def ternary_with_11_dims(train, test):
        rel = _group(train[2], 1)
        train[2] = (train[2][0], rel) + tuple(train[2][1:])

    path = _mutated(tmp_path, ternary_with_11_dims, ternary=False)
    with pytest.raises(
        DataFormatError, match="train sample 2, ternary group: ternary questions need the 18-dim"
    ):
        read_sort_of_clevr(path)


def test_malicious_sort_of_clevr_file_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (eval, (f"__import__('pathlib').Path({str(marker)!r}).touch()",))

    path = _mutated(tmp_path, lambda tr, te: te.__setitem__(0, [Payload()] + te[0][1:]))
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        read_sort_of_clevr(path)
    assert not marker.exists()


def test_referents_are_what_the_answers_count_or_name():
    centers = np.array([[o.center for o in SCENE]])
    rect = np.array([[o.shape == "rectangle" for o in SCENE]])
    checked = 0
    for fam, family in enumerate(SORT_OF_CLEVR_FAMILIES):
        for subtype in range(3):
            for c1 in range(6):
                for c2 in [k for k in range(6) if k != c1] if family == "ternary" else [0]:
                    args = (centers, rect, [[fam]], [[subtype]], [[c1]], [[c2]])
                    mask = sort_of_clevr_referents(*args)[0, 0]
                    answer = SORT_OF_CLEVR_ANSWERS[sort_of_clevr_answers(*args)[0, 0]]
                    named = {c1, c2} if family == "ternary" else {c1}
                    assert not any(mask[k] for k in named)  # the named objects are grounded by their colour
                    picked = [SCENE[k] for k in np.flatnonzero(mask)]
                    if family == "nonrel":
                        assert picked == []
                    elif (
                        family == "rel" and subtype < 2
                    ):  # the closest / furthest object, whose shape is asked
                        assert len(picked) == 1 and picked[0].shape == answer
                    elif answer in ("yes", "no"):
                        assert (len(picked) > 0) == (answer == "yes")
                    else:
                        assert len(picked) == int(answer)
                    checked += 1
    assert checked == 3 * 6 + 3 * 6 + 3 * 30
    # Red's closest object is blue, its furthest gray; the other rectangles are blue and gray.
    rel = [sort_of_clevr_referents(centers, rect, [[1]], [[k]], [[0]])[0, 0] for k in range(3)]
    assert [list(np.flatnonzero(m)) for m in rel] == [[2], [4], [2, 4]]
