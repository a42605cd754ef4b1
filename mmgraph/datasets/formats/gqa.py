"""GQA balanced questions and scene graphs.

The layout of "GQA: A New Dataset for Real-World Visual Reasoning and
Compositional Question Answering" (Hudson and Manning, CVPR 2019)::

    questions:    {question_id: {"imageId", "question", "answer", "fullAnswer",
                                 "types": {"structural", "semantic", "detailed"},
                                 "isBalanced", "groups", "semantic", "entailed", ...}}
    scene graphs: {image_id: {"width", "height", "location"?, "weather"?,
                              "objects": {object_id: {"name", "x", "y", "w", "h",
                                                      "attributes": [str],
                                                      "relations": [{"name", "object"}]}}}}

Questions of the submission/challenge splits have no ``answer`` and
``fullAnswer``: they load with ``answer=None``. GQA scores answers by exact
string match, with no normalisation.

Boxes ``x, y, w, h`` become ``x1, y1, x2, y2 = x, y, x + w, y + h`` in pixels.
Relations are listed under their subject and point at object ids; they
become ``(subject_index, predicate, object_index)`` into the image's object
list, which keeps the order of the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from mmgraph.datasets.formats.features import ImageId, PathLike, normalize_image_id
from mmgraph.datasets.formats.vqa import _read_json
from mmgraph.errors import DataFormatError
from mmgraph.typing import ImageSize

OBJECT_KEYS = ("name", "x", "y", "w", "h")


@dataclass
class GQAQuestion:
    """One GQA question.

    Attributes:
        question_id (str): the question id (GQA ids are JSON keys, strings).
        image_id (int or str): the image id, normalised like feature ids
            (``"2354786"`` -> ``2354786``, ``"n161313"`` stays).
        question (str): the question text.
        answer (str, optional): the short answer; ``None`` in submission splits.
        full_answer (str, optional): the answer as a sentence.
        types (Dict[str, str]): ``structural``, ``semantic``, ``detailed`` types.
        is_balanced (bool, optional): member of the balanced subset.
    """

    question_id: str
    image_id: ImageId
    question: str
    answer: Optional[str] = None
    full_answer: Optional[str] = None
    types: Dict[str, str] = field(default_factory=dict)
    is_balanced: Optional[bool] = None


class GQASceneGraph(NamedTuple):
    """The scene graph of one image; unpacks as ``objects, relations, image_size``.

    Attributes:
        objects (List[dict]): per object ``{"object_id", "name", "attributes",
            "box"}``, ``box`` a list ``[x1, y1, x2, y2]`` in pixels.
        relations (List[Tuple[int, str, int]]): ``(subject_index, predicate,
            object_index)`` into ``objects``.
        image_size (Tuple[float, float]): ``(width, height)`` in pixels.
    """

    objects: List[Dict[str, Any]]
    relations: List[Tuple[int, str, int]]
    image_size: ImageSize


def load_gqa_questions(path: PathLike) -> List[GQAQuestion]:
    """Reads a GQA questions file (e.g. ``val_balanced_questions.json``).

    Raises:
        DataFormatError: the file is not an object of questions, or a question
            lacks ``imageId`` or ``question`` (naming file, question and key).
    """
    data = _read_json(path)
    if not isinstance(data, dict):
        raise DataFormatError(f"file '{path}': expected a JSON object {{question_id: question}}")
    out: List[GQAQuestion] = []
    for qid, q in data.items():
        if not isinstance(q, dict):
            raise DataFormatError(f"file '{path}': question {qid!r} is not a JSON object")
        missing = [k for k in ("imageId", "question") if k not in q]
        if missing:
            raise DataFormatError(f"file '{path}': question {qid!r} lacks key(s) {missing}")
        types = q.get("types") or {}
        if not isinstance(types, dict):
            raise DataFormatError(
                f"file '{path}': question {qid!r}: key 'types' must be an object, got {types!r}"
            )
        out.append(
            GQAQuestion(
                question_id=str(qid),
                image_id=normalize_image_id(q["imageId"]),
                question=q["question"],
                answer=q.get("answer"),
                full_answer=q.get("fullAnswer"),
                types=dict(types),
                is_balanced=q.get("isBalanced"),
            )
        )
    return out


def parse_gqa_scene_graph(image_id: Any, graph: Any, path: PathLike = "<memory>") -> GQASceneGraph:
    """Turns one image's entry of a scene-graph file into a :class:`GQASceneGraph`.

    Raises:
        DataFormatError: a missing key, a box that is not numeric, or a
            relation to an object id the image does not have.
    """
    where = f"file '{path}', image {image_id!r}"
    if not isinstance(graph, dict):
        raise DataFormatError(f"{where}: the scene graph is not a JSON object")
    missing = [k for k in ("width", "height", "objects") if k not in graph]
    if missing:
        raise DataFormatError(f"{where}: lacks key(s) {missing}")
    raw_objects = graph["objects"]
    if not isinstance(raw_objects, dict):
        raise DataFormatError(f"{where}: 'objects' must be an object {{object_id: object}}")
    index = {str(oid): i for i, oid in enumerate(raw_objects)}
    objects: List[Dict[str, Any]] = []
    relations: List[Tuple[int, str, int]] = []
    for i, (oid, obj) in enumerate(raw_objects.items()):
        missing = [k for k in OBJECT_KEYS if not isinstance(obj, dict) or k not in obj]
        if missing:
            raise DataFormatError(f"{where}, object {oid!r}: lacks key(s) {missing}")
        try:
            x, y, w, h = (float(obj[k]) for k in ("x", "y", "w", "h"))
        except (TypeError, ValueError):
            raise DataFormatError(
                f"{where}, object {oid!r}: x, y, w, h must be numbers, got {[obj[k] for k in ('x', 'y', 'w', 'h')]}"
            ) from None
        objects.append(
            {"object_id": str(oid), "name": obj["name"], "attributes": list(obj.get("attributes", [])),
             "box": [x, y, x + w, y + h]}
        )  # fmt: skip
        for rel in obj.get("relations", []):
            if not isinstance(rel, dict) or "name" not in rel or "object" not in rel:
                raise DataFormatError(
                    f"{where}, object {oid!r}: a relation lacks 'name' or 'object': {rel!r}"
                )
            target = index.get(str(rel["object"]))
            if target is None:
                raise DataFormatError(
                    f"{where}: relation {rel['name']!r} from object {oid!r} points at object {rel['object']!r}, "
                    "which the image does not have"
                )
            relations.append((i, rel["name"], target))
    try:
        size = (float(graph["width"]), float(graph["height"]))
    except (TypeError, ValueError):
        raise DataFormatError(f"{where}: width and height must be numbers") from None
    return GQASceneGraph(objects, relations, size)


def load_gqa_scene_graphs(path: PathLike) -> Dict[ImageId, GQASceneGraph]:
    """Reads a GQA scene-graph file (e.g. ``val_sceneGraphs.json``).

    Returns:
        Dict[ImageId, GQASceneGraph]: by image id (normalised as in
        :func:`~mmgraph.datasets.formats.features.normalize_image_id`).
    """
    data = _read_json(path)
    if not isinstance(data, dict):
        raise DataFormatError(f"file '{path}': expected a JSON object {{image_id: scene graph}}")
    return {normalize_image_id(iid): parse_gqa_scene_graph(iid, g, path) for iid, g in data.items()}
