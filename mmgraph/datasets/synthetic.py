r"""An offline, seeded, CLEVR-like benchmark for tests and the quick start.

:func:`generate_dataset` writes scenes (rendered images and scene graphs),
questions with functional programs and balanced answers, captions with
same-bag-of-words hard negatives, and character-span grounding for all text;
:func:`load_synthetic` reads a split back and checks it. The same seed gives
byte-identical JSON files. Scenes are drawn and rendered by
:mod:`~mmgraph.datasets.synthetic_scene`; questions and captions come from
:mod:`~mmgraph.datasets.synthetic_language`, whose docstring gives the
program language, the answer balancing and the negative kinds. Everything is
also usable in memory::

    scenes = SceneGenerator(seed=0)
    scene = scenes.generate_scene()
    image = render(scene)  # PIL image; render_tensor(scene) gives uint8 [3, H, W]
    questions = QuestionGenerator(seed=0).generate(scene, 5)
    captions = CaptionGenerator(seed=0).generate(scene, 3)

Layout under ``root`` (``<split>`` in ``train``, ``val``, ``test``)::

    meta.json                     {"name", "version", "mmgraph_version", "seed", "splits",
                                   "config", "vocab", "counts"}
    images/<split>/<image_id>.png
    scenes_<split>.json           {"info": {...}, "scenes": [scene, ...]}
    questions_<split>.json        {"info": {...}, "questions": [question, ...]}
    captions_<split>.json         {"info": {...}, "captions": [{"image_id", "captions": [...]}, ...]}

A scene is ``{"image_id", "image", "width", "height", "background",
"relation_margin", "distance_margin", "objects": [{"name", "attributes":
{"color", "size", "material"}, "box": [x0, y0, x1, y1]}], "relations":
[{"subject", "predicate", "object"}]}`` (boxes in integer pixels; relation
``subject`` is ``predicate`` ``object``). A question is ``{"question_id",
"image_id", "question", "answer", "family", "template", "program",
"grounding"}``. A caption is ``{"text", "relation", "grounding",
"negatives": [{"text", "kind", "grounding"}]}``.

================  ======================================================
default settings   3..6 objects, 128 x 128 pixels, 3 shapes, 8 colours,
                   2 sizes, 2 materials, 7 question families, 35 templates
================  ======================================================
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple, Union

from mmgraph._version import __version__
from mmgraph.datasets.synthetic_language import (
    FAMILIES,
    NEGATIVE_KINDS,
    QUERY_ATTRIBUTES,
    CaptionGenerator,
    ProgramError,
    QuestionGenerator,
    answer_vocabulary,
    caption_is_true,
    execute_program,
    noun_phrase,
    question_only_baseline,
    run_program,
)
from mmgraph.datasets.synthetic_scene import (
    ATTRIBUTES,
    COLORS,
    MATERIALS,
    RELATIONS,
    SHAPES,
    SIZES,
    Scene,
    SceneGenerator,
    SceneObject,
    render,
    render_tensor,
)
from mmgraph.errors import DataFormatError, InputError

__all__ = [
    "ATTRIBUTES",
    "COLORS",
    "FAMILIES",
    "FORMAT_VERSION",
    "MATERIALS",
    "NEGATIVE_KINDS",
    "QUERY_ATTRIBUTES",
    "RELATIONS",
    "SHAPES",
    "SIZES",
    "SPLITS",
    "CaptionGenerator",
    "ProgramError",
    "QuestionGenerator",
    "Scene",
    "SceneGenerator",
    "SceneObject",
    "answer_vocabulary",
    "caption_is_true",
    "execute_program",
    "generate_dataset",
    "load_synthetic",
    "noun_phrase",
    "question_only_baseline",
    "render",
    "render_tensor",
    "run_program",
    "scenes_by_id",
    "split_sizes",
]

FORMAT_VERSION = "1.0"
SPLITS: Tuple[str, ...] = ("train", "val", "test")
PathLike = Union[str, os.PathLike]


def split_sizes(num_images: int, splits: Sequence[float]) -> List[int]:
    """Images per split: the fractions of ``num_images``, rounded by largest remainder so they sum to it."""
    if len(splits) != len(SPLITS) or any(f < 0 for f in splits) or not math.isclose(sum(splits), 1.0):
        raise InputError(
            f"splits must be {len(SPLITS)} non-negative fractions summing to 1, got {tuple(splits)}"
        )
    exact = [num_images * f for f in splits]
    sizes = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(splits)), key=lambda k: (-(exact[k] - sizes[k]), k))
    for k in by_remainder[: num_images - sum(sizes)]:
        sizes[k] += 1
    return sizes


def _atomic_write(path: Path, write) -> None:
    """Writes through a temporary file in the same folder, then renames it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _write_records(path: Path, info: Dict[str, Any], key: str, records: Sequence[Any]) -> None:
    # One record a line: diffable, and still a single JSON document.
    lines = ",\n".join(json.dumps(r) for r in records)
    text = f'{{"info": {json.dumps(info)}, "{key}": [\n{lines}\n]}}\n'
    _atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def generate_dataset(
    root: PathLike,
    num_images: int = 100,
    questions_per_image: int = 10,
    captions_per_image: int = 4,
    seed: int = 0,
    image_size: int = 128,
    splits: Sequence[float] = (0.8, 0.1, 0.1),
    min_objects: int = 3,
    max_objects: int = 6,
    num_candidates: int = 12,
    write_images: bool = True,
    **scene_kwargs: Any,
) -> Dict[str, Any]:
    """Generates the benchmark under ``root`` and returns the contents of ``meta.json``.

    Image ``k`` (ids ``"000000"``, ``"000001"``, ...) depends only on
    ``(seed, k)``; splits take consecutive ranges of ``k`` (train first).
    Questions and captions are drawn in that order, so the same arguments give
    byte-identical JSON files.

    Args:
        root: the output folder (created if missing; existing files are overwritten).
        num_images (int): images over all splits. (default: ``100``)
        questions_per_image (int): questions asked per image (fewer if a scene allows fewer). (default: ``10``)
        captions_per_image (int): captions per image (fewer if a scene allows fewer). (default: ``4``)
        seed (int): the seed. (default: ``0``)
        image_size (int): the side of the square images. (default: ``128``)
        splits (Sequence[float]): train, val and test fractions. (default: ``(0.8, 0.1, 0.1)``)
        min_objects (int), max_objects (int): the objects per scene. (default: ``3``, ``6``)
        num_candidates (int): candidates per question for answer balancing. (default: ``12``)
        write_images (bool): render the PNG files. (default: ``True``)
        **scene_kwargs: further :class:`SceneGenerator` arguments.
    """
    if num_images < 1:
        raise InputError(f"num_images must be >= 1, got {num_images}")
    root = Path(root)
    sizes = split_sizes(num_images, splits)
    scene_gen = SceneGenerator(seed, image_size, min_objects, max_objects, **scene_kwargs)
    values = {
        "shape": scene_gen.shapes,
        "color": scene_gen.colors,
        "size": scene_gen.sizes,
        "material": scene_gen.materials,
    }
    question_gen = QuestionGenerator(seed, num_candidates=num_candidates, values=values)
    caption_gen = CaptionGenerator(seed)
    counts: Dict[str, Dict[str, int]] = {}
    start = 0
    for split, size in zip(SPLITS, sizes):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        scenes, questions, captions = [], [], []
        for index in range(start, start + size):
            scene = scene_gen.generate_scene(index)
            scene.image = f"images/{split}/{scene.image_id}.png"
            if write_images:
                image = render(scene)
                _atomic_write(root / scene.image, lambda tmp, image=image: image.save(tmp, format="PNG"))
            scenes.append(scene.to_dict())
            questions.extend(question_gen.generate(scene, questions_per_image))
            captions.append(
                {"image_id": scene.image_id, "captions": caption_gen.generate(scene, captions_per_image)}
            )
        start += size
        info = {"name": "mmgraph-synthetic", "version": FORMAT_VERSION, "seed": seed, "split": split}
        _write_records(root / f"scenes_{split}.json", info, "scenes", scenes)
        _write_records(root / f"questions_{split}.json", info, "questions", questions)
        _write_records(root / f"captions_{split}.json", info, "captions", captions)
        counts[split] = {
            "images": len(scenes),
            "objects": sum(len(s["objects"]) for s in scenes),
            "questions": len(questions),
            "captions": sum(len(c["captions"]) for c in captions),
            "negatives": sum(len(c["negatives"]) for cs in captions for c in cs["captions"]),
        }
    meta = {
        "name": "mmgraph-synthetic",
        "version": FORMAT_VERSION,
        "mmgraph_version": __version__,
        "seed": seed,
        "splits": dict(zip(SPLITS, splits)),
        "config": {
            **scene_gen.config(),
            "questions_per_image": questions_per_image,
            "captions_per_image": captions_per_image,
            "num_candidates": num_candidates,
        },
        "vocab": {
            "shapes": list(scene_gen.shapes),
            "colors": list(scene_gen.colors),
            "sizes": list(scene_gen.sizes),
            "materials": list(scene_gen.materials),
            "relations": list(RELATIONS),
            "families": {f: list(t) for f, t in FAMILIES.items()},
            "negative_kinds": list(NEGATIVE_KINDS),
            "answers": answer_vocabulary(max_objects, values),
        },
        "counts": counts,
    }
    text = json.dumps(meta, indent=2) + "\n"
    _atomic_write(root / "meta.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return meta


# ----------------------------------------------------------------------------- reading


_SCENE_KEYS = ("image_id", "width", "height", "relation_margin", "distance_margin", "objects", "relations")
_OBJECT_KEYS = ("name", "attributes", "box")
_QUESTION_KEYS = (
    "question_id",
    "image_id",
    "question",
    "answer",
    "family",
    "template",
    "program",
    "grounding",
)
_CAPTION_KEYS = ("text", "grounding", "negatives")
_NEGATIVE_KEYS = ("text", "kind", "grounding")


def _read_records(path: Path, key: str) -> List[Any]:
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found; create the data set with generate_dataset(root)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataFormatError(
            f"{path}: not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise DataFormatError(f"{path}: expected a JSON object with a list under key {key!r}")
    return data[key]


def _require(record: Any, keys: Sequence[str], path: Path, what: str) -> None:
    if not isinstance(record, dict):
        raise DataFormatError(f"{path}: {what} is a {type(record).__name__}, expected a JSON object")
    for key in keys:
        if key not in record:
            raise DataFormatError(
                f"{path}: {what} lacks key {key!r}; regenerate the file with generate_dataset"
            )


def _check_grounding(grounding: Any, text: str, num_objects: int, path: Path, what: str) -> None:
    if not isinstance(grounding, list):
        raise DataFormatError(f"{path}: {what}: 'grounding' must be a list of {{'start', 'end', 'object'}}")
    for k, g in enumerate(grounding):
        _require(g, ("start", "end", "object"), path, f"{what}, grounding item {k}")
        if not (0 <= g["start"] < g["end"] <= len(text)) or not 0 <= g["object"] < num_objects:
            raise DataFormatError(
                f"{path}: {what}, grounding item {k} {g} is outside the text ({len(text)} characters) "
                f"or the scene ({num_objects} objects)"
            )


def load_synthetic(
    root: PathLike, split: str = "train", check_images: bool = True
) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]], List[Dict[str, Any]]]:
    """Reads one split written by :func:`generate_dataset` and checks it.

    Args:
        root: the data set folder.
        split (str): ``"train"``, ``"val"`` or ``"test"``. (default: ``"train"``)
        check_images (bool): also check that every scene's image file exists. (default: ``True``)

    Returns:
        ``(scenes, questions, captions)``: the records as written (plain
        dicts; :meth:`Scene.from_dict` turns a scene record into a :class:`Scene`).

    Raises:
        DataFormatError: a file is missing or malformed; the message names the
            file, the record's id and the key.
    """
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; expected one of {SPLITS}")
    root = Path(root)
    scenes_path = root / f"scenes_{split}.json"
    scenes = _read_records(scenes_path, "scenes")
    num_objects: Dict[str, int] = {}
    for k, scene in enumerate(scenes):
        _require(scene, ("image_id",), scenes_path, f"scene {k}")
        what = f"scene {scene['image_id']!r}"
        _require(scene, _SCENE_KEYS, scenes_path, what)
        n = len(scene["objects"])
        for i, obj in enumerate(scene["objects"]):
            _require(obj, _OBJECT_KEYS, scenes_path, f"{what}, object {i}")
            box = obj["box"]
            if not (isinstance(box, list) and len(box) == 4 and box[0] <= box[2] and box[1] <= box[3]):
                raise DataFormatError(
                    f"{scenes_path}: {what}, object {i}: 'box' must be [x0, y0, x1, y1], got {box}"
                )
        for i, rel in enumerate(scene["relations"]):
            _require(rel, ("subject", "predicate", "object"), scenes_path, f"{what}, relation {i}")
            if not (0 <= rel["subject"] < n and 0 <= rel["object"] < n):
                raise DataFormatError(
                    f"{scenes_path}: {what}, relation {i} {rel} names an object outside 0..{n - 1}"
                )
        if check_images and "image" in scene and not (root / scene["image"]).is_file():
            raise DataFormatError(f"{scenes_path}: {what}: image file {root / scene['image']} not found")
        num_objects[scene["image_id"]] = n

    questions_path = root / f"questions_{split}.json"
    questions = _read_records(questions_path, "questions")
    for k, q in enumerate(questions):
        _require(q, ("question_id",), questions_path, f"question {k}")
        what = f"question {q['question_id']!r}"
        _require(q, _QUESTION_KEYS, questions_path, what)
        if q["image_id"] not in num_objects:
            raise DataFormatError(
                f"{questions_path}: {what} refers to image {q['image_id']!r}, absent from {scenes_path}"
            )
        for i, step in enumerate(q["program"]):
            _require(step, ("function", "inputs"), questions_path, f"{what}, program step {i}")
        _check_grounding(q["grounding"], q["question"], num_objects[q["image_id"]], questions_path, what)

    captions_path = root / f"captions_{split}.json"
    captions = _read_records(captions_path, "captions")
    for k, entry in enumerate(captions):
        _require(entry, ("image_id", "captions"), captions_path, f"caption entry {k}")
        image_id = entry["image_id"]
        if image_id not in num_objects:
            raise DataFormatError(
                f"{captions_path}: captions of image {image_id!r}, absent from {scenes_path}"
            )
        for i, caption in enumerate(entry["captions"]):
            what = f"image {image_id!r}, caption {i}"
            _require(caption, _CAPTION_KEYS, captions_path, what)
            _check_grounding(
                caption["grounding"], caption["text"], num_objects[image_id], captions_path, what
            )
            for j, negative in enumerate(caption["negatives"]):
                _require(negative, _NEGATIVE_KEYS, captions_path, f"{what}, negative {j}")
                _check_grounding(
                    negative["grounding"],
                    negative["text"],
                    num_objects[image_id],
                    captions_path,
                    f"{what}, negative {j}",
                )
    return scenes, questions, captions


def scenes_by_id(scenes: Sequence[Mapping[str, Any]]) -> Dict[str, Scene]:
    """Scene records (as :func:`load_synthetic` returns them) as :class:`Scene` objects keyed by image id."""
    return {s["image_id"]: Scene.from_dict(s) for s in scenes}
