r"""Questions with functional programs, and captions with hard negatives, for synthetic scenes.

Questions follow CLEVR (Johnson et al., `"CLEVR: A Diagnostic Dataset for
Compositional Language and Elementary Visual Reasoning"
<https://arxiv.org/abs/1612.06890>`_, 2017): each comes from a template with a
small functional program, and its answer is what the program returns when
:func:`execute_program` runs it on the scene graph. A program is a list of
steps ``{"function": str, "inputs": [int], "value": str | None}``; ``inputs``
index earlier steps. Functions (objects are sets as boolean masks, or one
object index):

=========================================  =====================================================
``scene``                                  all objects
``filter_<attr>`` (value)                  the input set's objects whose ``attr`` is ``value``
``unique``                                 the one object of the set; :class:`ProgramError` if 0 or 2+
``relate`` (value: a relation)             the objects that are ``value`` the input object
``closest`` / ``furthest``                 the other object nearest to / farthest from it (ties: error)
``count`` / ``exist``                      the set's size / whether it is non-empty
``query_<attr>``                           the object's ``attr``
``equal_<attr>``                           whether two queried values are equal
``greater_than`` / ``less_than`` /         comparisons of two counts
``equal_integer``
=========================================  =====================================================

A reference ("the red cube") must name exactly one object: the ``unique``
step enforces it, and a candidate question whose program raises is dropped.
Answers are balanced greedily: for each question, ``num_candidates``
candidates are drawn for the chosen template and the one with the lowest
:math:`(c_s(a) + 1)(c_t(a) + 1)` is kept, where :math:`c_t(a)` counts how often
the template, and :math:`c_s(a)` how often the exact question string, has had
the candidate's answer :math:`a` so far. This drives every template, and every
frequent string ("Is there a cube?"), towards a uniform answer distribution
over the answers the scenes allow (see :func:`question_only_baseline` for
what a blind model gets).

Captions (``"a red cube left of a blue sphere"``) state one true relation
between two objects, each described uniquely in the scene. Their hard
negatives use the same bag of words, after the ARO benchmark (Yuksekgonul et
al., `"When and why vision-language models behave like bags-of-words"
<https://arxiv.org/abs/2210.01936>`_, 2023): ``attribute`` swaps one attribute
between the two phrases, ``object`` swaps the two nouns, ``relation`` swaps
the two phrases (subject and object of the relation). A caption "a A rel a B"
is true iff some object matching A is ``rel`` some object matching B;
negatives that are true in the scene are dropped.

Grounding: ``[{"start", "end", "object"}]``, one item per (character span,
object) pair; a span is a noun phrase without its article ("red cube") and it
names the objects its program step denotes (a set phrase such as "red cubes"
names each of them). In a negative caption a span names the object whose
phrase slot it fills.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter, defaultdict
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from mmgraph.datasets.synthetic_scene import (
    ATTRIBUTES,
    COLORS,
    MATERIALS,
    RELATIONS,
    SHAPES,
    SIZES,
    Scene,
)
from mmgraph.errors import InputError

Desc = Dict[str, str]
Step = Dict[str, Any]
Output = Union[np.ndarray, int, bool, str]
# A text part: literal text, or a noun phrase with the program step it names.
Part = Union[str, Tuple[str, int]]

QUERY_ATTRIBUTES: Tuple[str, ...] = ("color", "shape", "size", "material")
FAMILIES: Dict[str, Tuple[str, ...]] = {
    "existence": ("exist",),
    "counting": ("count",),
    "attribute_query": tuple(f"query_{a}" for a in QUERY_ATTRIBUTES),
    "attribute_comparison": tuple(f"same_{a}" for a in QUERY_ATTRIBUTES),
    "count_comparison": ("count_more", "count_fewer", "count_equal"),
    "relational": (
        "relate_exist",
        "relate_count",
        *(f"relate_query_{a}" for a in QUERY_ATTRIBUTES),
        *(f"closest_query_{a}" for a in QUERY_ATTRIBUTES),
        *(f"furthest_query_{a}" for a in QUERY_ATTRIBUTES),
    ),
    "two_hop": (
        *(f"closest_relate_query_{a}" for a in QUERY_ATTRIBUTES),
        *(f"relate_closest_query_{a}" for a in QUERY_ATTRIBUTES),
    ),
}
TEMPLATE_FAMILY: Dict[str, str] = {t: f for f, ts in FAMILIES.items() for t in ts}
NEGATIVE_KINDS: Tuple[str, ...] = ("attribute", "object", "relation")
DEFAULT_VALUES: Dict[str, Tuple[str, ...]] = {
    "size": SIZES,
    "color": tuple(COLORS),
    "material": MATERIALS,
    "shape": SHAPES,
}


class ProgramError(InputError):
    """A program cannot run on a scene: an ambiguous or empty reference, a tie, a bad step."""


def answer_vocabulary(max_objects: int, values: Mapping[str, Sequence[str]] = DEFAULT_VALUES) -> List[str]:
    """Every possible answer: ``yes``, ``no``, the counts ``0..max_objects``, then the attribute values."""
    out = ["yes", "no", *(str(n) for n in range(max_objects + 1))]
    for attribute in QUERY_ATTRIBUTES:
        out.extend(v for v in values[attribute] if v not in out)
    return out


# ----------------------------------------------------------------------------- programs


def _run_step(step: Step, args: List[Output], scene: Scene) -> Output:
    fn, value = step["function"], step.get("value")
    if fn == "scene":
        return np.ones(len(scene), dtype=bool)
    if fn.startswith("filter_"):
        return args[0] & (scene.values(fn[len("filter_") :]) == value)
    if fn == "unique":
        found = np.flatnonzero(args[0])
        if len(found) != 1:
            raise ProgramError(f"unique: {len(found)} objects match, expected exactly one")
        return int(found[0])
    if fn == "relate":
        return scene.relation(value)[:, args[0]].copy()
    if fn in ("closest", "furthest"):
        if len(scene) < 2:
            raise ProgramError(f"{fn}: the scene has a single object")
        sign = 1.0 if fn == "closest" else -1.0
        d = sign * scene.distances[args[0]]
        d[args[0]] = np.inf
        order = np.argsort(d, kind="stable")
        if len(scene) > 2 and d[order[1]] - d[order[0]] < scene.distance_margin:
            raise ProgramError(f"{fn}: two objects are within the distance margin")
        return int(order[0])
    if fn == "count":
        return int(args[0].sum())
    if fn == "exist":
        return bool(args[0].any())
    if fn.startswith("query_"):
        return str(scene.values(fn[len("query_") :])[args[0]])
    if fn.startswith("equal_") and fn != "equal_integer":
        return args[0] == args[1]
    if fn == "greater_than":
        return args[0] > args[1]
    if fn == "less_than":
        return args[0] < args[1]
    if fn == "equal_integer":
        return args[0] == args[1]
    raise ProgramError(f"unknown function {fn!r}")


def run_program(program: Sequence[Step], scene: Scene) -> List[Output]:
    """The output of every step of ``program`` on ``scene``; raises :class:`ProgramError`."""
    outputs: List[Output] = []
    for k, step in enumerate(program):
        inputs = step.get("inputs", [])
        if any(not 0 <= i < k for i in inputs):
            raise ProgramError(
                f"step {k} ({step.get('function')!r}) reads inputs {inputs} that are not earlier steps"
            )
        try:
            outputs.append(_run_step(step, [outputs[i] for i in inputs], scene))
        except ProgramError as e:
            raise ProgramError(f"scene {scene.image_id!r}, step {k}: {e}") from None
    return outputs


def _answer_text(output: Output) -> str:
    if isinstance(output, (bool, np.bool_)):
        return "yes" if output else "no"
    return str(output)


def execute_program(program: Sequence[Step], scene: Scene) -> str:
    """The answer of ``program`` on ``scene`` as answer-vocabulary text (``"yes"``, ``"3"``, ``"red"``)."""
    if len(program) == 0:
        raise ProgramError("empty program")
    return _answer_text(run_program(program, scene)[-1])


# ----------------------------------------------------------------------------- phrases


def noun_phrase(desc: Mapping[str, str], plural: bool = False) -> str:
    """``{"color": "red", "shape": "cube"}`` -> ``"red cube"``; no shape gives the noun ``object``."""
    words = [desc[a] for a in ATTRIBUTES[:-1] if a in desc]
    noun = desc.get("shape", "object")
    return " ".join([*words, noun + "s" if plural else noun])


def _article(phrase: str) -> str:
    return "an" if phrase[0] in "aeiou" else "a"


def _matches(scene: Scene, desc: Mapping[str, str]) -> np.ndarray:
    mask = np.ones(len(scene), dtype=bool)
    for attribute, value in desc.items():
        mask &= scene.values(attribute) == value
    return mask


def _unique_desc(
    rng: random.Random, scene: Scene, target: int, pool: np.ndarray, exclude: Sequence[str] = ()
) -> Optional[Desc]:
    """A random description of ``target`` that no other object of ``pool`` fits, or ``None``."""
    attributes = [a for a in ATTRIBUTES if a not in exclude]
    subsets = [c for r in range(len(attributes) + 1) for c in itertools.combinations(attributes, r)]
    rng.shuffle(subsets)
    obj = scene.objects[target]
    for subset in subsets:
        desc = {a: obj.get(a) for a in subset}
        if (pool & _matches(scene, desc)).sum() == 1:
            return desc
    return None


class _Program:
    """Builds a program step by step."""

    def __init__(self):
        self.steps: List[Step] = []

    def add(self, function: str, inputs: Sequence[int] = (), value: Optional[str] = None) -> int:
        self.steps.append({"function": function, "inputs": list(inputs), "value": value})
        return len(self.steps) - 1

    def filters(self, desc: Mapping[str, str], source: Optional[int] = None) -> int:
        out = self.add("scene") if source is None else source
        for attribute in ATTRIBUTES:
            if attribute in desc:
                out = self.add(f"filter_{attribute}", [out], desc[attribute])
        return out

    def refer(self, desc: Mapping[str, str], source: Optional[int] = None) -> int:
        return self.add("unique", [self.filters(desc, source)])


def _assemble(parts: Sequence[Part], outputs: Sequence[Output]) -> Tuple[str, List[Dict[str, int]]]:
    """Joins ``parts`` into a text and grounds each phrase on its step's output."""
    text, grounding = "", []
    for part in parts:
        if isinstance(part, str):
            text += part
            continue
        phrase, step = part
        start = len(text)
        text += phrase
        out = outputs[step]
        objects = np.flatnonzero(out).tolist() if isinstance(out, np.ndarray) else [int(out)]
        grounding.extend({"start": start, "end": len(text), "object": o} for o in objects)
    return text, grounding


# ----------------------------------------------------------------------------- question templates

Sample = Optional[Tuple[_Program, List[Part]]]


class QuestionGenerator:
    r"""Questions with programs, answers and grounding for scenes.

    Families and their templates are in :data:`FAMILIES`. For each question
    the least-used family (then template) that the scene supports is chosen,
    so a data set covers them evenly; the answer is balanced as the module
    docstring says. The balancing counts persist across :meth:`generate`
    calls, so the output depends on the call order (fixed in
    :func:`~mmgraph.datasets.synthetic.generate_dataset`).

    Args:
        seed (int): the seed. (default: ``0``)
        num_candidates (int): candidates drawn per question. (default: ``12``)
        families (Sequence[str], optional): the families to ask. (default: all)
        values (Mapping[str, Sequence[str]]): the attribute values that set
            descriptions draw from. (default: all)
    """

    def __init__(
        self,
        seed: int = 0,
        num_candidates: int = 12,
        families: Optional[Sequence[str]] = None,
        values: Mapping[str, Sequence[str]] = DEFAULT_VALUES,
    ):
        families = tuple(FAMILIES) if families is None else tuple(families)
        unknown = [f for f in families if f not in FAMILIES]
        if unknown:
            raise InputError(f"unknown question families {unknown}; choose from {list(FAMILIES)}")
        if num_candidates < 1:
            raise InputError(f"num_candidates must be >= 1, got {num_candidates}")
        self.seed = int(seed)
        self.num_candidates = num_candidates
        self.families = families
        self.values = {a: tuple(values[a]) for a in ATTRIBUTES}
        self._rng = random.Random(f"mmgraph.synthetic.questions:{self.seed}")
        self._family_counts: Counter = Counter()
        self._template_counts: Counter = Counter()
        self.answer_counts: Dict[str, Counter] = defaultdict(Counter)
        self._text_counts: Dict[str, Counter] = defaultdict(Counter)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(seed={self.seed}, families={len(self.families)})"

    def generate(self, scene: Scene, n: int) -> List[Dict[str, Any]]:
        """Up to ``n`` distinct questions about ``scene`` (fewer when the scene allows fewer).

        Returns dicts with keys ``question_id``, ``image_id``, ``question``,
        ``answer``, ``family``, ``template``, ``program``, ``grounding``.
        """
        rng = self._rng
        seen: set = set()
        failed: set = set()
        out: List[Dict[str, Any]] = []
        while len(out) < n:
            question = None
            for family in sorted(self.families, key=lambda f: (self._family_counts[f], rng.random())):
                templates = [t for t in FAMILIES[family] if t not in failed]
                for template in sorted(templates, key=lambda t: (self._template_counts[t], rng.random())):
                    question = self._ask(template, scene, seen)
                    if question is not None:
                        break
                    failed.add(template)
                if question is not None:
                    break
            if question is None:
                break
            text, answer, template, program, grounding = question
            family = TEMPLATE_FAMILY[template]
            self._family_counts[family] += 1
            self._template_counts[template] += 1
            self.answer_counts[template][answer] += 1
            self._text_counts[text][answer] += 1
            seen.add(text)
            out.append(
                {
                    "question_id": f"{scene.image_id}_{len(out):02d}",
                    "image_id": scene.image_id,
                    "question": text,
                    "answer": answer,
                    "family": family,
                    "template": template,
                    "program": program,
                    "grounding": grounding,
                }
            )
        return out

    def _ask(self, template: str, scene: Scene, seen: set):
        """Draws candidates and keeps the least-used answer (see the module docstring)."""
        sampler, attribute = self._sampler(template)
        counts = self.answer_counts[template]
        best, best_key = None, None
        for _ in range(self.num_candidates):
            sample = sampler(scene, attribute)
            if sample is None:
                continue
            program, parts = sample
            try:
                outputs = run_program(program.steps, scene)
            except ProgramError:
                continue
            text, grounding = _assemble(parts, outputs)
            answer = _answer_text(outputs[-1])
            key = (self._text_counts[text][answer] + 1) * (counts[answer] + 1)
            if text in seen or (best is not None and key >= best_key):
                continue
            best, best_key = (text, answer, template, program.steps, grounding), key
        return best

    def _sampler(self, template: str) -> Tuple[Callable[[Scene, Optional[str]], Sample], Optional[str]]:
        for prefix in (
            "closest_relate_query_",
            "relate_closest_query_",
            "closest_query_",
            "furthest_query_",
            "relate_query_",
            "query_",
            "same_",
        ):
            if template.startswith(prefix):
                return getattr(self, "_" + prefix.rstrip("_")), template[len(prefix) :]
        return getattr(self, "_" + template), None

    # Helpers that draw parts of a question.

    def _set_desc(self, scene: Scene, pool: np.ndarray, min_attributes: int) -> Desc:
        """A set description: 1..2 attributes of a random ``pool`` object, or random values."""
        k = self._rng.randint(min_attributes, 2)
        attributes = sorted(self._rng.sample(ATTRIBUTES, k), key=ATTRIBUTES.index)
        members = np.flatnonzero(pool)
        if len(members) and self._rng.random() < 0.6:
            obj = scene.objects[int(self._rng.choice(members))]
            return {a: obj.get(a) for a in attributes}
        return {a: self._rng.choice(self.values[a]) for a in attributes}

    def _anchor(self, scene: Scene) -> Optional[Tuple[int, Desc]]:
        target = self._rng.randrange(len(scene))
        desc = _unique_desc(self._rng, scene, target, np.ones(len(scene), dtype=bool))
        return None if desc is None else (target, desc)

    def _related(self, scene: Scene, anchor: int, exclude: Sequence[str] = ()):
        """A relation, an object standing in it to ``anchor`` and a description unique among such objects."""
        relation = self._rng.choice(RELATIONS)
        pool = scene.relation(relation)[:, anchor]
        members = np.flatnonzero(pool)
        if len(members) == 0:
            return None
        target = int(self._rng.choice(members))
        desc = _unique_desc(self._rng, scene, target, pool, exclude)
        return None if desc is None else (relation, target, desc)

    # One sampler per template (family); each returns a program and the text parts.

    def _exist(self, scene: Scene, _: Optional[str]) -> Sample:
        desc = self._set_desc(scene, np.ones(len(scene), dtype=bool), 1)
        p = _Program()
        f = p.filters(desc)
        p.add("exist", [f])
        phrase = noun_phrase(desc)
        return p, ["Is there ", _article(phrase) + " ", (phrase, f), "?"]

    def _count(self, scene: Scene, _: Optional[str]) -> Sample:
        desc = self._set_desc(scene, np.ones(len(scene), dtype=bool), 0)
        p = _Program()
        f = p.filters(desc)
        p.add("count", [f])
        return p, ["How many ", (noun_phrase(desc, plural=True), f), " are there?"]

    def _query(self, scene: Scene, attribute: str) -> Sample:
        target = self._rng.randrange(len(scene))
        desc = _unique_desc(self._rng, scene, target, np.ones(len(scene), dtype=bool), exclude=[attribute])
        if desc is None:
            return None
        p = _Program()
        u = p.refer(desc)
        p.add(f"query_{attribute}", [u])
        return p, [f"What {attribute} is the ", (noun_phrase(desc), u), "?"]

    def _same(self, scene: Scene, attribute: str) -> Sample:
        if len(scene) < 2:
            return None
        a, b = self._rng.sample(range(len(scene)), 2)
        # "Yes" needs two objects that share a value, rare for colours: seek such a pair half the time.
        same = np.flatnonzero(scene.values(attribute) == scene.values(attribute)[a])
        same = same[same != a]
        if len(same) and self._rng.random() < 0.5:
            b = int(self._rng.choice(same))
        everything = np.ones(len(scene), dtype=bool)
        desc_a = _unique_desc(self._rng, scene, a, everything, exclude=[attribute])
        desc_b = _unique_desc(self._rng, scene, b, everything, exclude=[attribute])
        if desc_a is None or desc_b is None:
            return None
        p = _Program()
        ua, ub = p.refer(desc_a), p.refer(desc_b)
        qa, qb = p.add(f"query_{attribute}", [ua]), p.add(f"query_{attribute}", [ub])
        p.add(f"equal_{attribute}", [qa, qb])
        parts = [
            "Is the ",
            (noun_phrase(desc_a), ua),
            f" the same {attribute} as the ",
            (noun_phrase(desc_b), ub),
            "?",
        ]
        return p, parts

    def _compare_counts(self, scene: Scene, function: str, words: Tuple[str, str]) -> Sample:
        everything = np.ones(len(scene), dtype=bool)
        desc_a, desc_b = self._set_desc(scene, everything, 1), self._set_desc(scene, everything, 1)
        if desc_a == desc_b:
            return None
        p = _Program()
        fa, fb = p.filters(desc_a), p.filters(desc_b)
        p.add(function, [p.add("count", [fa]), p.add("count", [fb])])
        phrase_a, phrase_b = noun_phrase(desc_a, plural=True), noun_phrase(desc_b, plural=True)
        return p, [words[0], (phrase_a, fa), words[1], (phrase_b, fb), "?"]

    def _count_more(self, scene: Scene, _: Optional[str]) -> Sample:
        return self._compare_counts(scene, "greater_than", ("Are there more ", " than "))

    def _count_fewer(self, scene: Scene, _: Optional[str]) -> Sample:
        return self._compare_counts(scene, "less_than", ("Are there fewer ", " than "))

    def _count_equal(self, scene: Scene, _: Optional[str]) -> Sample:
        return self._compare_counts(scene, "equal_integer", ("Are there the same number of ", " and "))

    def _relate_set(self, scene: Scene, function: str) -> Sample:
        anchor = self._anchor(scene)
        if anchor is None:
            return None
        a, desc_a = anchor
        relation = self._rng.choice(RELATIONS)
        desc = self._set_desc(scene, scene.relation(relation)[:, a], 0 if function == "count" else 1)
        p = _Program()
        ua = p.refer(desc_a)
        f = p.filters(desc, p.add("relate", [ua], relation))
        p.add(function, [f])
        tail = [f" {relation} the ", (noun_phrase(desc_a), ua), "?"]
        if function == "count":
            return p, ["How many ", (noun_phrase(desc, plural=True), f), " are", *tail]
        phrase = noun_phrase(desc)
        return p, ["Is there ", _article(phrase) + " ", (phrase, f), *tail]

    def _relate_exist(self, scene: Scene, _: Optional[str]) -> Sample:
        return self._relate_set(scene, "exist")

    def _relate_count(self, scene: Scene, _: Optional[str]) -> Sample:
        return self._relate_set(scene, "count")

    def _relate_query(self, scene: Scene, attribute: str) -> Sample:
        anchor = self._anchor(scene)
        related = None if anchor is None else self._related(scene, anchor[0], exclude=[attribute])
        if related is None:
            return None
        relation, _, desc = related
        p = _Program()
        ua = p.refer(anchor[1])
        ut = p.refer(desc, p.add("relate", [ua], relation))
        p.add(f"query_{attribute}", [ut])
        parts = [
            f"What {attribute} is the ",
            (noun_phrase(desc), ut),
            f" {relation} the ",
            (noun_phrase(anchor[1]), ua),
        ]
        return p, [*parts, "?"]

    def _extreme_query(self, scene: Scene, attribute: str, function: str, words: str) -> Sample:
        anchor = self._anchor(scene)
        if anchor is None:
            return None
        p = _Program()
        ua = p.refer(anchor[1])
        c = p.add(function, [ua])
        p.add(f"query_{attribute}", [c])
        return p, [
            f"What {attribute} is the ",
            ("object", c),
            f" {words} the ",
            (noun_phrase(anchor[1]), ua),
            "?",
        ]

    def _closest_query(self, scene: Scene, attribute: str) -> Sample:
        return self._extreme_query(scene, attribute, "closest", "closest to")

    def _furthest_query(self, scene: Scene, attribute: str) -> Sample:
        return self._extreme_query(scene, attribute, "furthest", "furthest from")

    def _closest_relate_query(self, scene: Scene, attribute: str) -> Sample:
        """What <attribute> is the <desc> <relation> the object closest to the <anchor>?"""
        anchor = self._anchor(scene)
        if anchor is None:
            return None
        a, desc_a = anchor
        d = scene.distances[a].copy()
        d[a] = np.inf
        closest = int(np.argmin(d))
        related = self._related(scene, closest, exclude=[attribute])
        if related is None:
            return None
        relation, _, desc = related
        p = _Program()
        ua = p.refer(desc_a)
        c = p.add("closest", [ua])
        ut = p.refer(desc, p.add("relate", [c], relation))
        p.add(f"query_{attribute}", [ut])
        parts = [f"What {attribute} is the ", (noun_phrase(desc), ut), f" {relation} the ", ("object", c)]
        return p, [*parts, " closest to the ", (noun_phrase(desc_a), ua), "?"]

    def _relate_closest_query(self, scene: Scene, attribute: str) -> Sample:
        """What <attribute> is the object closest to the <desc> <relation> the <anchor>?"""
        anchor = self._anchor(scene)
        related = None if anchor is None else self._related(scene, anchor[0])
        if related is None:
            return None
        relation, _, desc = related
        p = _Program()
        ua = p.refer(anchor[1])
        um = p.refer(desc, p.add("relate", [ua], relation))
        c = p.add("closest", [um])
        p.add(f"query_{attribute}", [c])
        parts = [f"What {attribute} is the ", ("object", c), " closest to the ", (noun_phrase(desc), um)]
        return p, [*parts, f" {relation} the ", (noun_phrase(anchor[1]), ua), "?"]


# ----------------------------------------------------------------------------- captions


def _caption(desc_a: Desc, relation: str, desc_b: Desc, a: int, b: int) -> Tuple[str, List[Dict[str, int]]]:
    phrase_a, phrase_b = noun_phrase(desc_a), noun_phrase(desc_b)
    head = f"{_article(phrase_a)} "
    middle = f" {relation} {_article(phrase_b)} "
    start_b = len(head) + len(phrase_a) + len(middle)
    grounding = [
        {"start": len(head), "end": len(head) + len(phrase_a), "object": a},
        {"start": start_b, "end": start_b + len(phrase_b), "object": b},
    ]
    return head + phrase_a + middle + phrase_b, grounding


def caption_is_true(
    scene: Scene, desc_a: Mapping[str, str], relation: str, desc_b: Mapping[str, str]
) -> bool:
    """Whether "a <desc_a> <relation> a <desc_b>" holds: some match of ``desc_a`` is ``relation`` some match of ``desc_b``."""
    pairs = _matches(scene, desc_a)[:, None] & _matches(scene, desc_b)[None, :]  # [N, N]
    return bool((pairs & scene.relation(relation)).any())


class CaptionGenerator:
    """Captions stating true relations, each with same-bag-of-words hard negatives.

    Each phrase names shape and colour, plus size and/or material where needed
    to make both objects unique in the scene (all four when an identical twin
    makes that impossible). A caption without any valid negative is not kept.

    Args:
        seed (int): the seed. (default: ``0``)
    """

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self._rng = random.Random(f"mmgraph.synthetic.captions:{self.seed}")

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(seed={self.seed})"

    def generate(self, scene: Scene, n: int) -> List[Dict[str, Any]]:
        """Up to ``n`` distinct captions of ``scene``.

        Returns dicts with keys ``text``, ``relation`` (``{"subject", "predicate",
        "object"}``), ``grounding`` and ``negatives`` (``[{"text", "kind", "grounding"}]``).
        """
        triples = [(r["subject"], r["predicate"], r["object"]) for r in scene.relations()]
        self._rng.shuffle(triples)
        out, seen = [], set()
        for a, relation, b in triples:
            if len(out) == n:
                break
            extras = [(), ("size",), ("material",)]
            self._rng.shuffle(extras)
            # The first attribute set that makes both phrases unique; with identical twins in
            # the scene, all attributes (the caption stays true, its negatives are checked).
            for extra in [*extras, ("size", "material")]:
                keys = ("color", "shape", *extra)
                desc_a = {k: scene.objects[a].get(k) for k in keys}
                desc_b = {k: scene.objects[b].get(k) for k in keys}
                if _matches(scene, desc_a).sum() == 1 and _matches(scene, desc_b).sum() == 1:
                    break
            text, grounding = _caption(desc_a, relation, desc_b, a, b)
            if text in seen:
                continue
            negatives = self._negatives(scene, desc_a, relation, desc_b, a, b)
            if not negatives:
                continue
            seen.add(text)
            out.append(
                {
                    "text": text,
                    "relation": {"subject": a, "predicate": relation, "object": b},
                    "grounding": grounding,
                    "negatives": negatives,
                }
            )
        return out

    def _negatives(self, scene: Scene, desc_a: Desc, relation: str, desc_b: Desc, a: int, b: int):
        candidates = []
        for attribute in ("size", "color", "material"):
            if attribute in desc_a and desc_a[attribute] != desc_b[attribute]:
                swapped_a = {**desc_a, attribute: desc_b[attribute]}
                swapped_b = {**desc_b, attribute: desc_a[attribute]}
                candidates.append(("attribute", swapped_a, swapped_b, a, b))
        if desc_a["shape"] != desc_b["shape"]:
            swapped_a, swapped_b = {**desc_a, "shape": desc_b["shape"]}, {**desc_b, "shape": desc_a["shape"]}
            candidates.append(("object", swapped_a, swapped_b, a, b))
        candidates.append(("relation", desc_b, desc_a, b, a))
        negatives, seen = [], set()
        for kind, first, second, i, j in candidates:
            text, grounding = _caption(first, relation, second, i, j)
            # An object swap of phrases that differ only in shape reads as the relation swap: keep one.
            if text in seen or caption_is_true(scene, first, relation, second):
                continue
            seen.add(text)
            negatives.append({"text": text, "kind": kind, "grounding": grounding})
        return negatives


# ----------------------------------------------------------------------------- blind baseline


def _majority(counter: Counter) -> str:
    # Ties go to the alphabetically first answer, so the baseline is deterministic.
    return min(counter.items(), key=lambda kv: (-kv[1], kv[0]))[0]


def question_only_baseline(
    train: Sequence[Mapping[str, Any]],
    test: Optional[Sequence[Mapping[str, Any]]] = None,
    by: str = "template",
) -> Dict[str, float]:
    """Accuracy per family of a blind model that answers the majority answer seen on ``train``.

    With ``by="template"`` the model keys on the question's template; with
    ``by="question"`` on the exact question string, falling back to the
    template's majority for strings not seen on ``train``, then to the family's.
    A low figure means the answers cannot be guessed from the question alone.

    Args:
        train: question records (``question``, ``answer``, ``family``, ``template``).
        test: the records to score. (default: ``train`` itself)
        by (str): ``"template"`` or ``"question"``. (default: ``"template"``)

    Returns:
        ``{family: accuracy}`` plus ``"overall"``; families absent from ``test`` are left out.
    """
    if by not in ("template", "question"):
        raise InputError(f"by must be 'template' or 'question', got {by!r}")
    if not train:
        raise InputError("question_only_baseline needs at least one training question")
    test = train if test is None else test
    tables: Dict[str, Dict[str, Counter]] = {
        k: defaultdict(Counter) for k in ("question", "template", "family")
    }
    for q in train:
        for key in tables:
            tables[key][q[key]][q["answer"]] += 1
    keys = ("question", "template", "family") if by == "question" else ("template", "family")
    majority = {k: {v: _majority(c) for v, c in tables[k].items()} for k in keys}
    fallback = _majority(Counter(q["answer"] for q in train))
    hits: Dict[str, List[bool]] = defaultdict(list)
    for q in test:
        guess = next((majority[k][q[k]] for k in keys if q[k] in majority[k]), fallback)
        hits[q["family"]].append(guess == q["answer"])
        hits["overall"].append(guess == q["answer"])
    return {family: float(np.mean(h)) for family, h in hits.items()}
