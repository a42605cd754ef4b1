r"""Sort-of-CLEVR: the relational reasoning benchmark of Relation Networks.

From `"A simple neural network module for relational reasoning"
<https://arxiv.org/abs/1706.01427>`_ (Santoro et al., NeurIPS 2017), in the
file format of the widely used public generator
(``kimhc6028/relational-networks``, ``sort_of_clevr_generator.py``; the 11-dim
layout is its original version, the 18-dim layout with ternary questions its
current one).

Each image shows six objects, one per colour, each a filled square or disc.
The file is a pickle of ``(train, test)``, each a list of samples
``(image, relations, norelations)`` or ``(image, ternary, relations,
norelations)``: ``image`` is a float array [75, 75, 3] in [0, 1] in BGR
channel order (the generator draws with OpenCV), and each question group is
``(questions, answers)``: lists of one-hot question vectors and of integer
answer indices.

Question vector layouts (indices):

======================  =================  ==========================
part                    11 dims            18 dims
======================  =================  ==========================
colour of object 1      0..5               0..5
colour of object 2      --                 6..11 (ternary only)
question type           6 nonrel, 7 rel    12 nonrel, 13 rel, 14 ternary
subtype                 8..10              15..17
======================  =================  ==========================

Colours in index order: red, green, blue, orange, gray, yellow. Answer
indices: 0 yes, 1 no, 2 rectangle, 3 circle, :math:`4 + k` the count
:math:`k` (ten classes in all).

======  =======  ======================================================  =======
family  subtype  question (rule)                                         answers
======  =======  ======================================================  =======
nonrel  0        shape of object 1                                       2, 3
nonrel  1        is object 1 on the left: :math:`2x < W`                 0, 1
nonrel  2        is object 1 on the top: :math:`2y < W`                  0, 1
rel     0        shape of the object closest to object 1                 2, 3
rel     1        shape of the object furthest from object 1              2, 3
rel     2        how many other objects share object 1's shape           4..9
ternary 0        how many other objects have their centre inside the     4..8
                 box spanned by the centres of objects 1 and 2
                 (borders included)
ternary 1        is another object within 12 px, measured vertically,    0, 1
                 of the line through objects 1 and 2
ternary 2        how many other objects form a right or obtuse triangle  4..8
                 with objects 1 and 2
======  =======  ======================================================  =======

Positions are object centres :math:`(x, y)` in pixels, :math:`x` the column
and :math:`y` the row; distances are Euclidean; ties (equal distances) go to
the lower colour index, as in the public generator.

Files are read as they are, answers included. Answers computed here
(:func:`sort_of_clevr_answers`, :func:`generate_sort_of_clevr`) follow the
rules above exactly and so differ from the public generator's on some
questions, measured on 20,000 random layouts: closest-object shape on 3.5 %
(it puts the object itself at squared distance 999, so when every other
object is more than 31.6 px away it answers with the object's own shape),
the band on 0.2 % and the triangles on 0.3 % (floating point flips exact
ties there: an object exactly 12 px off the line, a right angle, three
collinear centres).
"""

from __future__ import annotations

import os
import pickle
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from mmgraph.datasets.safe_pickle import safe_load
from mmgraph.errors import DataFormatError, InputError

__all__ = [
    "SORT_OF_CLEVR_COLORS",
    "SORT_OF_CLEVR_ANSWERS",
    "SORT_OF_CLEVR_FAMILIES",
    "SORT_OF_CLEVR_TEMPLATES",
    "SortOfClevrObject",
    "SortOfClevrQuestion",
    "SortOfClevrSample",
    "encode_sort_of_clevr_question",
    "decode_sort_of_clevr_question",
    "sort_of_clevr_answers",
    "sort_of_clevr_referents",
    "read_sort_of_clevr",
    "generate_sort_of_clevr",
]

SORT_OF_CLEVR_COLORS: Tuple[str, ...] = ("red", "green", "blue", "orange", "gray", "yellow")
# The generator's OpenCV colours, (blue, green, red).
COLORS_BGR: Tuple[Tuple[int, int, int], ...] = (
    (0, 0, 255),
    (0, 255, 0),
    (255, 0, 0),
    (0, 156, 255),
    (128, 128, 128),
    (0, 255, 255),
)
SORT_OF_CLEVR_FAMILIES: Tuple[str, ...] = ("nonrel", "rel", "ternary")
NONREL, REL, TERNARY = 0, 1, 2
COUNT_OFFSET = 4  # answer index of the count 0
SORT_OF_CLEVR_ANSWERS: Tuple[str, ...] = ("yes", "no", "rectangle", "circle") + tuple(
    str(k) for k in range(6)
)
NUM_OBJECTS = len(SORT_OF_CLEVR_COLORS)
NUM_SUBTYPES = 3
# A name for each (family, subtype), in the order of the module table.
SORT_OF_CLEVR_TEMPLATES: Tuple[Tuple[str, ...], ...] = (
    ("shape", "left", "top"),
    ("closest_shape", "furthest_shape", "count_same_shape"),
    ("count_in_box", "near_line", "count_obtuse_triangle"),
)
# Vertical half-width of the ternary "band" question, fixed in the public
# generator ("grace_threshold = 12") whatever the object size.
BAND_HALF_WIDTH = 12

_YES, _NO, _RECTANGLE, _CIRCLE = 0, 1, 2, 3
_MAX_PLACEMENT_ROUNDS = 10_000


class _Layout(NamedTuple):
    dim: int
    color2: Optional[int]  # first index of the second colour block
    qtype: int  # index of the first question type
    num_qtypes: int
    subtype: int  # index of the first subtype


LAYOUTS = {11: _Layout(11, None, 6, 2, 8), 18: _Layout(18, 6, 12, 3, 15)}

# Inclusive answer-index range of each (family, subtype).
_ANSWER_RANGE = (
    ((_RECTANGLE, _CIRCLE), (_YES, _NO), (_YES, _NO)),
    ((_RECTANGLE, _CIRCLE), (_RECTANGLE, _CIRCLE), (COUNT_OFFSET, COUNT_OFFSET + NUM_OBJECTS - 1)),
    (
        (COUNT_OFFSET, COUNT_OFFSET + NUM_OBJECTS - 2),
        (_YES, _NO),
        (COUNT_OFFSET, COUNT_OFFSET + NUM_OBJECTS - 2),
    ),
)

_TEMPLATES = (
    (
        "What is the shape of the {0} object?",
        "Is the {0} object on the left?",
        "Is the {0} object on the top?",
    ),
    (
        "What is the shape of the object closest to the {0} object?",
        "What is the shape of the object furthest from the {0} object?",
        "How many other objects have the same shape as the {0} object?",
    ),
    (
        "How many objects are inside the box between the {0} object and the {1} object?",
        "Is any other object near the line through the {0} object and the {1} object?",
        "How many objects form a right or obtuse triangle with the {0} object and the {1} object?",
    ),
)


@dataclass(frozen=True)
class SortOfClevrObject:
    """One object of a generated image.

    Args:
        color (str): one of :data:`SORT_OF_CLEVR_COLORS`.
        center (Tuple[int, int]): ``(x, y)`` in pixels, ``x`` the column.
        shape (str): ``"rectangle"`` or ``"circle"``.
    """

    color: str
    center: Tuple[int, int]
    shape: str


@dataclass(frozen=True)
class SortOfClevrQuestion:
    """One decoded question.

    Args:
        vector (Tensor): the one-hot question vector, float [11] or [18].
        answer_index (int): the class index, 0..9.
        answer (str): ``"yes"``, ``"no"``, ``"rectangle"``, ``"circle"`` or a count.
        question (str): the question in English.
        family (str): ``"nonrel"``, ``"rel"`` or ``"ternary"``.
        subtype (int): 0..2, see the module table.
        colors (Tuple[str, ...]): the colours the question names, in order.
    """

    vector: Tensor
    answer_index: int
    answer: str
    question: str
    family: str
    subtype: int
    colors: Tuple[str, ...]

    @property
    def template(self) -> str:
        """The name of the question's (family, subtype), e.g. ``"furthest_shape"`` (``SORT_OF_CLEVR_TEMPLATES``)."""
        return SORT_OF_CLEVR_TEMPLATES[SORT_OF_CLEVR_FAMILIES.index(self.family)][self.subtype]


@dataclass(frozen=True)
class SortOfClevrSample:
    """One image with its questions.

    Args:
        image (Tensor): [3, H, W] in RGB order; uint8 in 0..255 or float in [0, 1].
        questions (List[SortOfClevrQuestion]): ternary questions first (if
            any), then relational, then non-relational, as in the file.
    """

    image: Tensor
    questions: List[SortOfClevrQuestion]


def _color_index(color: Union[str, int], what: str) -> int:
    if isinstance(color, str):
        if color not in SORT_OF_CLEVR_COLORS:
            raise InputError(f"{what}: unknown colour {color!r}; use one of {SORT_OF_CLEVR_COLORS}")
        return SORT_OF_CLEVR_COLORS.index(color)
    if not 0 <= int(color) < NUM_OBJECTS:
        raise InputError(f"{what}: colour index {color} is outside 0..{NUM_OBJECTS - 1}")
    return int(color)


def encode_sort_of_clevr_question(
    family: Union[str, int],
    subtype: int,
    color: Union[str, int],
    color2: Union[str, int, None] = None,
    dim: int = 18,
) -> np.ndarray:
    """Encodes one question as the generator does.

    Args:
        family (str or int): ``"nonrel"``, ``"rel"``, ``"ternary"`` or 0..2.
        subtype (int): 0..2.
        color (str or int): the colour of the first object.
        color2 (str or int, optional): the colour of the second object;
            required for, and only for, ternary questions. (default: ``None``)
        dim (int, optional): 11 or 18. (default: ``18``)

    Returns:
        A float64 array [dim].
    """
    if dim not in LAYOUTS:
        raise InputError(f"question vectors have 11 or 18 dims, got dim={dim}")
    layout = LAYOUTS[dim]
    fam = SORT_OF_CLEVR_FAMILIES.index(family) if isinstance(family, str) else int(family)
    if not 0 <= fam < layout.num_qtypes:
        raise InputError(f"family {family!r} does not exist in the {dim}-dim layout")
    if not 0 <= subtype < NUM_SUBTYPES:
        raise InputError(f"subtype must be 0..{NUM_SUBTYPES - 1}, got {subtype}")
    if (fam == TERNARY) != (color2 is not None):
        raise InputError("ternary questions need color2 and other questions must not have one")
    vector = np.zeros(dim)
    vector[_color_index(color, "color")] = 1
    if color2 is not None:
        c2 = _color_index(color2, "color2")
        if c2 == _color_index(color, "color"):
            raise InputError(f"a ternary question names two different objects, got {color2!r} twice")
        vector[layout.color2 + c2] = 1
    vector[layout.qtype + fam] = 1
    vector[layout.subtype + subtype] = 1
    return vector


def _parse_vectors(vectors: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Splits question vectors [Q, D] into family, subtype, colour 1 and
    colour 2 (-1 where absent), each [Q]; raises InputError naming the first
    malformed row."""
    layout = LAYOUTS[vectors.shape[1]]
    blocks = [("colour", vectors[:, :NUM_OBJECTS])]
    blocks.append(("question type", vectors[:, layout.qtype : layout.qtype + layout.num_qtypes]))
    blocks.append(("subtype", vectors[:, layout.subtype : layout.subtype + NUM_SUBTYPES]))
    binary = (vectors == 0) | (vectors == 1)  # [Q, D]
    bad_value = ~binary.all(axis=1)
    if bad_value.any():
        row = int(np.argmax(bad_value))
        raise InputError(f"question {row} has entries other than 0 and 1: {vectors[row].tolist()}")
    for name, block in blocks:
        bad = block.sum(axis=1) != 1
        if bad.any():
            row = int(np.argmax(bad))
            raise InputError(f"question {row}: the {name} block is not one-hot: {vectors[row].tolist()}")
    family = blocks[1][1].argmax(axis=1)
    color2 = np.full(len(vectors), -1)
    if layout.color2 is not None:
        block2 = vectors[:, layout.color2 : layout.color2 + NUM_OBJECTS]
        bad = block2.sum(axis=1) != (family == TERNARY)
        if bad.any():
            row = int(np.argmax(bad))
            raise InputError(
                f"question {row}: the second colour block (indices {layout.color2}..{layout.color2 + 5}) "
                f"must be one-hot for ternary questions and empty otherwise: {vectors[row].tolist()}"
            )
        color2 = np.where(family == TERNARY, block2.argmax(axis=1), -1)
    color1 = blocks[0][1].argmax(axis=1)
    same = color1 == color2
    if same.any():
        row = int(np.argmax(same))
        raise InputError(f"question {row}: a ternary question names the same colour twice")
    return family, blocks[2][1].argmax(axis=1), color1, color2


@cache
def _question_text(family: int, subtype: int, color1: int, color2: int) -> Tuple[str, Tuple[str, ...]]:
    """The English question and the colours it names (``color2 = -1``: none)."""
    colors = tuple(SORT_OF_CLEVR_COLORS[c] for c in (color1, color2) if c >= 0)
    return _TEMPLATES[family][subtype].format(*colors), colors


def _check_answers(family: np.ndarray, subtype: np.ndarray, answers: np.ndarray) -> None:
    bounds = np.asarray(_ANSWER_RANGE)[family, subtype]  # [Q, 2]
    bad = (answers < bounds[:, 0]) | (answers > bounds[:, 1])
    if bad.any():
        row = int(np.argmax(bad))
        fam, sub, ans = int(family[row]), int(subtype[row]), int(answers[row])
        lo, hi = _ANSWER_RANGE[fam][sub]
        raise InputError(
            f"question {row} ({SORT_OF_CLEVR_FAMILIES[fam]} subtype {sub}) has answer index {ans}; its "
            f"answers are {lo}..{hi} ({SORT_OF_CLEVR_ANSWERS[lo]!r}..{SORT_OF_CLEVR_ANSWERS[hi]!r})"
        )


def _make_questions(vectors: np.ndarray, answers: np.ndarray) -> List[SortOfClevrQuestion]:
    family, subtype, color1, color2 = _parse_vectors(vectors)
    _check_answers(family, subtype, answers)
    rows = torch.from_numpy(vectors.astype(np.float32)).unbind(0)  # Q views of [D]
    questions = []
    for vector, fam, sub, c1, c2, ans in zip(
        rows, family.tolist(), subtype.tolist(), color1.tolist(), color2.tolist(), answers.tolist()
    ):
        text, colors = _question_text(fam, sub, c1, c2)
        questions.append(
            SortOfClevrQuestion(
                vector, ans, SORT_OF_CLEVR_ANSWERS[ans], text, SORT_OF_CLEVR_FAMILIES[fam], sub, colors
            )
        )
    return questions


def decode_sort_of_clevr_question(
    vector: Union[np.ndarray, Tensor, Sequence[float]], answer_index: int
) -> SortOfClevrQuestion:
    """Decodes one question vector and its answer index.

    Args:
        vector (array-like): a one-hot question vector [11] or [18].
        answer_index (int): the answer class.

    Raises:
        InputError: the vector is not a valid question or the answer does
            not fit the question.
    """
    vectors = np.asarray(vector, dtype=np.float64).reshape(1, -1)  # [1, D]
    if vectors.shape[1] not in LAYOUTS:
        raise InputError(f"question vectors have 11 or 18 dims, got {vectors.shape[1]}")
    return _make_questions(vectors, np.asarray([int(answer_index)]))[0]


def sort_of_clevr_answers(
    centers: np.ndarray,
    is_rectangle: np.ndarray,
    family: np.ndarray,
    subtype: np.ndarray,
    color1: np.ndarray,
    color2: Optional[np.ndarray] = None,
    img_size: int = 75,
) -> np.ndarray:
    r"""Answers questions about object layouts by the rules in the module table.

    Exact integer arithmetic throughout. With :math:`\mathbf{a}, \mathbf{b}`
    the centres of objects 1 and 2, :math:`\mathbf{d} = \mathbf{b} -
    \mathbf{a}` and :math:`\mathbf{o}` another centre, the band and
    triangle questions test

    .. math::
        |(o_y - a_y)\, d_x - d_y\, (o_x - a_x)| \le 12\, |d_x|, \qquad
        \min\big((\mathbf{b}-\mathbf{a})\cdot(\mathbf{o}-\mathbf{a}),\,
        (\mathbf{a}-\mathbf{b})\cdot(\mathbf{o}-\mathbf{b}),\,
        (\mathbf{a}-\mathbf{o})\cdot(\mathbf{b}-\mathbf{o})\big) \le 0,

    the latter for non-collinear centres only. The public generator's
    floating point (a ``1e-10`` slope guard, ``arccos`` angles) can flip
    exact ties; here a right angle counts and the band border is inside. For a
    vertical line (equal :math:`x`) the band question follows the limit of
    the generator's formula: another object counts only at the same
    :math:`x` and within 12 px in :math:`y` of object 1. The closest object
    is the true closest other object (the public generator compares with a
    stand-in squared distance of 999 for the object itself, so it answers
    with the object's own shape when every other object is more than 31.6 px
    away).

    Args:
        centers (np.ndarray): [N, 6, 2] integer ``(x, y)`` centres, in colour order.
        is_rectangle (np.ndarray): [N, 6] bool.
        family (np.ndarray): [N, Q] family index 0..2.
        subtype (np.ndarray): [N, Q] subtype 0..2.
        color1 (np.ndarray): [N, Q] colour index of object 1.
        color2 (np.ndarray, optional): [N, Q] colour index of object 2, read
            for ternary questions only. (default: ``None``)
        img_size (int, optional): the image width, for left/top. (default: ``75``)

    Returns:
        The answer indices, int64 [N, Q].
    """
    t = _layout_terms(centers, is_rectangle, family, subtype, color1, color2)
    n, a, rect, color1 = t["n"], t["a"], t["rect"], t["color1"]

    def shape_of(index: np.ndarray) -> np.ndarray:
        return np.where(rect[n, index], _RECTANGLE, _CIRCLE)

    def yes_no(flag: np.ndarray) -> np.ndarray:
        return np.where(flag, _YES, _NO)

    table = np.stack(
        [
            shape_of(color1),
            yes_no(2 * a[..., 0] < img_size),
            yes_no(2 * a[..., 1] < img_size),
            shape_of(t["closest"]),
            shape_of(t["furthest"]),
            COUNT_OFFSET + t["same_shape"].sum(-1),
            COUNT_OFFSET + t["between"].sum(-1),
            yes_no(t["near_line"].any(-1)),
            COUNT_OFFSET + t["obtuse"].sum(-1),
        ],
        axis=-1,
    )  # [N, Q, 9]
    return np.take_along_axis(table, t["template"][..., None], axis=-1)[..., 0]


def sort_of_clevr_referents(
    centers: np.ndarray,
    is_rectangle: np.ndarray,
    family: np.ndarray,
    subtype: np.ndarray,
    color1: np.ndarray,
    color2: Optional[np.ndarray] = None,
) -> np.ndarray:
    """The objects each question's answer is about, besides the ones it names, by the rules of
    :func:`sort_of_clevr_answers`: the closest or furthest object (relational 0, 1), the other objects of
    object 1's shape (relational 2), the other objects inside the box, near the line, or forming a right
    or obtuse triangle (ternary 0, 1, 2); none for the non-relational questions. For word-region grounding
    (the phrase "the object closest to" names the closest object); a count of 0 names none.

    Args: as :func:`sort_of_clevr_answers` (without ``img_size``).

    Returns:
        bool [N, Q, O]: ``[i, q, k]`` whether object ``k`` (colour index) of image ``i`` is a referent of
        question ``q``.
    """
    t = _layout_terms(centers, is_rectangle, family, subtype, color1, color2)
    objects = np.arange(t["rect"].shape[1])
    none = np.zeros_like(t["same_shape"])  # the non-relational questions name no referent
    stack = np.stack(
        [
            none,
            none,
            none,
            objects == t["closest"][..., None],
            objects == t["furthest"][..., None],
            t["same_shape"],
            t["between"],
            t["near_line"],
            t["obtuse"],
        ],
        axis=-1,
    )  # [N, Q, O, 9]
    which = np.broadcast_to(t["template"][..., None, None], stack.shape[:-1] + (1,))  # [N, Q, O, 1]
    return np.take_along_axis(stack, which, axis=-1)[..., 0]


def _layout_terms(centers, is_rectangle, family, subtype, color1, color2) -> Dict[str, np.ndarray]:
    """What the answers of :func:`sort_of_clevr_answers` are made of: each question's template index
    (family * 3 + subtype) [N, Q], object 1's centre ``a`` [N, Q, 2], the closest and furthest object
    [N, Q], and the [N, Q, O] masks of the other objects of object 1's
    shape, inside the box, near the line and forming a right or obtuse triangle."""
    c = np.asarray(centers, dtype=np.int64)  # [N, O, 2]
    rect = np.asarray(is_rectangle, dtype=bool)  # [N, O]
    family = np.asarray(family, dtype=np.int64)
    subtype = np.asarray(subtype, dtype=np.int64)
    color1 = np.asarray(color1, dtype=np.int64)
    color2 = (
        np.zeros_like(color1) if color2 is None else np.where(family == TERNARY, color2, 0).astype(np.int64)
    )
    n = np.arange(c.shape[0])[:, None]  # [N, 1]
    objects = np.arange(c.shape[1])  # [O]
    a = c[n, color1]  # [N, Q, 2]
    b = c[n, color2]  # [N, Q, 2]

    # Relational: squared distances from object 1 to every object.
    d2 = ((a[:, :, None, :] - c[:, None, :, :]) ** 2).sum(-1)  # [N, Q, O]
    is_self = objects == color1[..., None]  # [N, Q, O]
    closest = np.where(is_self, np.iinfo(np.int64).max, d2).argmin(-1)  # first minimum: lowest colour
    furthest = d2.argmax(-1)
    same_shape = (rect[:, None, :] == rect[n, color1][..., None]) & ~is_self  # [N, Q, O]

    # Ternary: every object other than objects 1 and 2.
    others = ~is_self & (objects != color2[..., None])  # [N, Q, O]
    o = c[:, None, :, :]  # [N, 1, O, 2]
    lo = np.minimum(a, b)[:, :, None, :]  # [N, Q, 1, 2]
    hi = np.maximum(a, b)[:, :, None, :]
    between = ((o >= lo) & (o <= hi)).all(-1) & others
    ab = (b - a)[:, :, None, :]  # [N, Q, 1, 2]
    ao = o - a[:, :, None, :]  # [N, Q, O, 2]
    bo = o - b[:, :, None, :]
    # dx * (vertical offset of o from the line) = ao_y * dx - dy * ao_x.
    offset = ao[..., 1] * ab[..., 0] - ab[..., 1] * ao[..., 0]  # [N, Q, O]
    dx = np.abs(ab[..., 0])
    near_line = (
        np.where(
            dx != 0,
            np.abs(offset) <= BAND_HALF_WIDTH * dx,
            (ao[..., 0] == 0) & (np.abs(ao[..., 1]) <= BAND_HALF_WIDTH),
        )
        & others
    )
    # An angle is >= 90 degrees where the dot product of its sides is <= 0.
    wide = ((ab * ao).sum(-1) <= 0) | ((-ab * bo).sum(-1) <= 0) | ((ao * bo).sum(-1) <= 0)
    obtuse = wide & (offset != 0) & others
    return {
        "n": n,
        "a": a,
        "rect": rect,
        "template": family * NUM_SUBTYPES + subtype,
        "color1": color1,
        "closest": closest,
        "furthest": furthest,
        "same_shape": same_shape,
        "between": between,
        "near_line": near_line,
        "obtuse": obtuse,
    }


def _fail(path: str, where: str, message: str) -> DataFormatError:
    return DataFormatError(f"{path}: {where}: {message}")


def _convert_image(
    image: Any, path: str, where: str, expected: Optional[Tuple[int, ...]], dtype: torch.dtype
) -> Tensor:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        got = f"shape {list(image.shape)}" if isinstance(image, np.ndarray) else type(image).__name__
        raise _fail(
            path,
            where,
            f"the image must be an array [H, W, 3] (BGR), got {got}; files of state descriptions "
            f"(--output_type descriptors) are not images",
        )
    if expected is not None and image.shape != expected:
        raise _fail(
            path, where, f"image shape {list(image.shape)} differs from the first sample's {list(expected)}"
        )
    if not np.issubdtype(image.dtype, np.floating):
        raise _fail(path, where, f"the image must be float in [0, 1], got dtype {image.dtype}")
    if image.size and not (image.min() >= 0 and image.max() <= 1):  # also catches NaN
        raise _fail(path, where, f"image values must lie in [0, 1], got {image.min()}..{image.max()}")
    rgb = image[:, :, ::-1].transpose(2, 0, 1)  # [3, H, W], BGR -> RGB
    if dtype == torch.uint8:
        return torch.from_numpy(np.ascontiguousarray(np.rint(rgb * 255).astype(np.uint8)))
    return torch.from_numpy(np.ascontiguousarray(rgb)).to(dtype)


def _read_group(group: Any, family: int, path: str, where: str, dims: List[int]) -> List[SortOfClevrQuestion]:
    name = SORT_OF_CLEVR_FAMILIES[family]
    where = f"{where}, {name} group"
    if not isinstance(group, (tuple, list)) or len(group) != 2:
        raise _fail(path, where, "a question group must be a pair (questions, answers)")
    questions, answers = group
    if not all(isinstance(part, (tuple, list, np.ndarray)) for part in group):
        raise _fail(path, where, "questions and answers must be lists")
    if len(questions) != len(answers):
        raise _fail(path, where, f"{len(questions)} questions but {len(answers)} answers")
    if len(questions) == 0:
        return []
    shapes = [np.shape(q) for q in questions]
    bad = next((row for row, shape in enumerate(shapes) if shape not in ((11,), (18,))), None)
    if bad is not None:
        raise _fail(
            path,
            where,
            f"question {bad}: question vectors must have 11 or 18 dims, got shape {list(shapes[bad])}",
        )
    if len(set(shapes)) > 1:
        raise _fail(path, where, f"question vectors of mixed lengths {sorted({s[0] for s in shapes})}")
    try:
        vectors = np.asarray(questions, dtype=np.float64)  # [Q, D]
    except (ValueError, TypeError) as e:
        raise _fail(path, where, f"question vectors are not numeric ({e})") from e
    if family == TERNARY and vectors.shape[1] != 18:
        raise _fail(path, where, f"ternary questions need the 18-dim layout, got {vectors.shape[1]} dims")
    if not dims:
        dims.append(vectors.shape[1])
    if vectors.shape[1] != dims[0]:
        raise _fail(path, where, f"{vectors.shape[1]}-dim question vectors in a file of {dims[0]}-dim ones")
    ans = np.asarray(answers)
    if ans.ndim != 1 or not np.issubdtype(ans.dtype, np.integer):
        raise _fail(path, where, f"answers must be integer class indices, got {ans.dtype} {list(ans.shape)}")
    try:
        decoded = _make_questions(vectors, ans.astype(np.int64))
    except InputError as e:
        raise _fail(path, where, str(e)) from e
    wrong = [q for q in decoded if q.family != name]
    if wrong:
        raise _fail(path, where, f"holds a {wrong[0].family} question: {wrong[0].question!r}")
    return decoded


def read_sort_of_clevr(
    path: Union[str, os.PathLike], image_dtype: torch.dtype = torch.uint8
) -> Tuple[List[SortOfClevrSample], List[SortOfClevrSample]]:
    r"""Reads a Sort-of-CLEVR pickle without running code from it.

    The pickle is loaded with :func:`~mmgraph.datasets.safe_pickle.safe_load`
    (numpy arrays only; Python 2 pickles of the original generator load too)
    and checked: the question vectors are one-hot in the layout of their
    length, lie in the group of their family, and every answer is one its
    question can have.

    Args:
        path (str or os.PathLike): the pickle file.
        image_dtype (torch.dtype, optional): ``torch.uint8`` (0..255, a
            quarter of the memory of float) or a float dtype (values in
            [0, 1]). (default: ``torch.uint8``)

    Returns:
        ``(train, test)``, lists of :class:`SortOfClevrSample`; images are
        [3, H, W] in RGB order.

    Raises:
        DataFormatError: the file does not follow the format; the message
            names the file, the split and the sample index.
        UnsafePickleError: the file asks for a global other than numpy's.
    """
    source = os.fspath(path)
    if not (image_dtype == torch.uint8 or image_dtype.is_floating_point):
        raise InputError(f"image_dtype must be torch.uint8 or a float dtype, got {image_dtype}")
    data = safe_load(source, encoding="latin1")
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        got = (
            f"a {type(data).__name__} of length {len(data)}"
            if isinstance(data, (tuple, list))
            else type(data).__name__
        )
        raise DataFormatError(f"{source}: expected a pair (train, test) of sample lists, got {got}")
    dims: List[int] = []
    image_shape: List[Tuple[int, ...]] = []
    splits = []
    for split_name, split in zip(("train", "test"), data):
        if not isinstance(split, (tuple, list)):
            raise DataFormatError(
                f"{source}: the {split_name} split must be a list, got {type(split).__name__}"
            )
        samples = []
        for index, sample in enumerate(split):
            where = f"{split_name} sample {index}"
            if not isinstance(sample, (tuple, list)) or len(sample) not in (3, 4):
                got = f"length {len(sample)}" if isinstance(sample, (tuple, list)) else type(sample).__name__
                raise _fail(
                    source,
                    where,
                    f"expected (image, relations, norelations) or (image, ternary, relations, norelations), got {got}",
                )
            image = _convert_image(
                sample[0], source, where, image_shape[0] if image_shape else None, image_dtype
            )
            if not image_shape:
                image_shape.append(sample[0].shape)
            families = (TERNARY, REL, NONREL) if len(sample) == 4 else (REL, NONREL)
            questions = [
                q
                for fam, group in zip(families, sample[1:])
                for q in _read_group(group, fam, source, where, dims)
            ]
            samples.append(SortOfClevrSample(image=image, questions=questions))
        splits.append(samples)
    return splits[0], splits[1]


def _place_objects(rng: np.random.Generator, n: int, img_size: int, size: int) -> np.ndarray:
    """Draws [n, 6, 2] integer centres in [size, img_size - size), each at
    least 2 * size from the centres placed before it (rejection, as the
    public generator)."""
    centers = np.zeros((n, NUM_OBJECTS, 2), dtype=np.int64)
    for k in range(NUM_OBJECTS):
        pending = np.arange(n)
        for _ in range(_MAX_PLACEMENT_ROUNDS):
            candidates = rng.integers(size, img_size - size, size=(len(pending), 2))  # [P, 2]
            d2 = ((candidates[:, None, :] - centers[pending, :k]) ** 2).sum(-1)  # [P, k]
            ok = (d2 >= (2 * size) ** 2).all(-1)
            centers[pending[ok], k] = candidates[ok]
            pending = pending[~ok]
            if len(pending) == 0:
                break
        else:
            raise InputError(
                f"could not place {NUM_OBJECTS} objects of size {size} in a {img_size} px image; "
                f"use a larger img_size or a smaller size"
            )
    return centers


def _draw(centers: np.ndarray, is_rectangle: np.ndarray, img_size: int, size: int) -> np.ndarray:
    """Paints white images [n, H, W, 3] (uint8, BGR) with filled squares of
    side 2 * size + 1 and discs of radius size, in colour order so later
    objects cover earlier ones, as OpenCV draws them."""
    n = centers.shape[0]
    images = np.full((n, img_size, img_size, 3), 255, dtype=np.uint8)
    offsets = np.arange(-size, size + 1)  # [S]
    # |d|^2 <= r (r + 1), i.e. |d| < r + 1/2: the pixels of OpenCV's filled circle.
    disc = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= size * (size + 1)  # [S, S]
    batch = np.arange(n)[:, None, None]  # [n, 1, 1]
    for k, bgr in enumerate(COLORS_BGR):
        rows = (centers[:, k, 1, None] + offsets)[:, :, None]  # [n, S, 1]
        cols = (centers[:, k, 0, None] + offsets)[:, None, :]  # [n, 1, S]
        mask = is_rectangle[:, k, None, None] | disc  # [n, S, S]
        patch = images[batch, rows, cols]  # [n, S, S, 3]
        images[batch, rows, cols] = np.where(mask[..., None], np.asarray(bgr, dtype=np.uint8), patch)
    return images


def _encode_many(
    layout: _Layout, family: int, subtype: np.ndarray, color1: np.ndarray, color2: Optional[np.ndarray]
) -> np.ndarray:
    """One-hot vectors [N, Q, D] for questions of one family."""
    vectors = np.zeros(subtype.shape + (layout.dim,))
    np.put_along_axis(vectors, color1[..., None], 1.0, axis=-1)
    if color2 is not None:
        np.put_along_axis(vectors, layout.color2 + color2[..., None], 1.0, axis=-1)
    vectors[..., layout.qtype + family] = 1.0
    np.put_along_axis(vectors, layout.subtype + subtype[..., None], 1.0, axis=-1)
    return vectors


def _generate_split(
    rng: np.random.Generator, n: int, ternary: bool, img_size: int, size: int, num_questions: int
) -> Tuple[List[tuple], List[List[SortOfClevrObject]]]:
    layout = LAYOUTS[18 if ternary else 11]
    centers = _place_objects(rng, n, img_size, size)
    is_rectangle = rng.random((n, NUM_OBJECTS)) < 0.5
    images = _draw(centers, is_rectangle, img_size, size).astype(np.float32) / 255.0  # [n, H, W, 3]
    shape = (n, num_questions)
    groups = {}
    for family in (NONREL, REL):
        color = rng.integers(0, NUM_OBJECTS, size=shape)
        subtype = rng.integers(0, NUM_SUBTYPES, size=shape)
        answers = sort_of_clevr_answers(
            centers, is_rectangle, np.full(shape, family), subtype, color, img_size=img_size
        )
        groups[family] = (_encode_many(layout, family, subtype, color, None), answers)
    if ternary:
        # The public generator takes two colours from a permutation of
        # arange(5), so yellow (index 5) never appears in a ternary question.
        color1 = rng.integers(0, NUM_OBJECTS - 1, size=shape)
        color2 = (color1 + rng.integers(1, NUM_OBJECTS - 1, size=shape)) % (NUM_OBJECTS - 1)
        subtype = rng.integers(0, NUM_SUBTYPES, size=shape)
        family = np.full(shape, TERNARY)
        answers = sort_of_clevr_answers(
            centers, is_rectangle, family, subtype, color1, color2, img_size=img_size
        )
        groups[TERNARY] = (_encode_many(layout, TERNARY, subtype, color1, color2), answers)
    order = (TERNARY, REL, NONREL) if ternary else (REL, NONREL)
    samples = [
        (images[i],) + tuple((list(groups[f][0][i]), groups[f][1][i].tolist()) for f in order)
        for i in range(n)
    ]
    objects = [
        [
            SortOfClevrObject(color, (int(x), int(y)), "rectangle" if r else "circle")
            for color, (x, y), r in zip(SORT_OF_CLEVR_COLORS, centers[i].tolist(), is_rectangle[i].tolist())
        ]
        for i in range(n)
    ]
    return samples, objects


def generate_sort_of_clevr(
    path: Union[str, os.PathLike],
    train_size: int = 9800,
    test_size: int = 200,
    seed: int = 1,
    ternary: bool = False,
    img_size: int = 75,
    size: int = 5,
    questions_per_family: int = 10,
) -> Tuple[List[List[SortOfClevrObject]], List[List[SortOfClevrObject]]]:
    r"""Writes a Sort-of-CLEVR pickle by the public generator's rules.

    Six objects, one per colour, each a square (side :math:`2s + 1`) or a
    disc (radius :math:`s`) with probability 1/2, centres uniform in
    :math:`[s, W - s)^2` and at least :math:`2s` from every earlier centre
    (squares may still touch at the corners, as in the public generator);
    ``questions_per_family`` questions of each family with uniform colours
    and subtypes (ternary: an ordered pair of distinct colours among the
    first five, as the public generator samples them). Answers follow
    :func:`sort_of_clevr_answers`, so they are right by construction.

    Without ``ternary`` the file has the 11-dim layout and samples
    ``(image, relations, norelations)``; with it the 18-dim layout and
    ``(image, ternary, relations, norelations)``. Images are float32 (the
    public generator writes float64, the same values; float32 halves the
    file) in BGR order. Drawing is plain numpy: no OpenCV needed. The write is
    atomic (temp file, then rename).

    Args:
        path (str or os.PathLike): the pickle to write.
        train_size (int, optional): training images. (default: ``9800``)
        test_size (int, optional): test images. (default: ``200``)
        seed (int, optional): the seed of :func:`numpy.random.default_rng`. (default: ``1``)
        ternary (bool, optional): add ternary questions (18-dim layout). (default: ``False``)
        img_size (int, optional): image side in pixels. (default: ``75``)
        size (int, optional): object half-size :math:`s` in pixels. (default: ``5``)
        questions_per_family (int, optional): questions per family per image. (default: ``10``)

    Returns:
        ``(train_objects, test_objects)``: per image, its six
        :class:`SortOfClevrObject` in colour order, so that answers can be
        checked against the layout.
    """
    if train_size < 0 or test_size < 0 or questions_per_family < 0:
        raise InputError("train_size, test_size and questions_per_family must be >= 0")
    if size < 1 or img_size <= 2 * size:
        raise InputError(f"need size >= 1 and img_size > 2 * size, got img_size={img_size}, size={size}")
    rng = np.random.default_rng(seed)
    train, train_objects = _generate_split(rng, train_size, ternary, img_size, size, questions_per_family)
    test, test_objects = _generate_split(rng, test_size, ternary, img_size, size, questions_per_family)
    target = os.fspath(path)
    # A unique name beside the target, opened with the umask's permissions
    # (mkstemp would leave the data set readable by its owner only).
    tmp = f"{target}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "xb") as f:
            pickle.dump((train, test), f, protocol=4)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return train_objects, test_objects
