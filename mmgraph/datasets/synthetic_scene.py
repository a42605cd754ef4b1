r"""Scenes of the synthetic benchmark: objects, their spatial semantics, rendering.

A CLEVR-like scene (Johnson et al., `"CLEVR: A Diagnostic Dataset for
Compositional Language and Elementary Visual Reasoning"
<https://arxiv.org/abs/1612.06890>`_, 2017) drawn flat in 2D: 3..N objects,
each with a shape (its ``name``: ``cube`` drawn as a square, ``sphere`` as a
disc, ``cone`` as a triangle), a colour, a size and a material (``solid`` is
drawn filled, ``hollow`` as an outline).

Spatial semantics, shared by the scene-graph relations, the question programs
and the captions. With box centres :math:`c_i = (x_i, y_i)` in pixels (``y``
grows downwards) and the scene's ``relation_margin`` :math:`m`:

.. math::
    i \text{ left of } j \iff x_i + m < x_j, \qquad
    i \text{ above } j \iff y_i + m < y_j,

and ``right of`` / ``below`` are their converses. Objects whose centres are
within :math:`m` along an axis stand in neither relation along it, so no
relation hangs on a pixel. The object *closest to* (or *furthest from*) ``i``
is the :math:`\arg\min_j` (:math:`\arg\max_j`) of :math:`\lVert c_i - c_j\rVert`
over :math:`j \ne i`; it is only defined when the runner-up is at least the
scene's ``distance_margin`` further (nearer) away.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from mmgraph.errors import DataFormatError, InputError

SHAPES: Tuple[str, ...] = ("cube", "sphere", "cone")
# The CLEVR palette, so that colour names mean what they mean there.
COLORS: Dict[str, Tuple[int, int, int]] = {
    "gray": (87, 87, 87),
    "red": (173, 35, 35),
    "blue": (42, 75, 215),
    "green": (29, 105, 20),
    "brown": (129, 74, 25),
    "purple": (129, 38, 192),
    "cyan": (41, 208, 208),
    "yellow": (255, 238, 51),
}
SIZES: Tuple[str, ...] = ("small", "large")
MATERIALS: Tuple[str, ...] = ("solid", "hollow")
RELATIONS: Tuple[str, ...] = ("left of", "right of", "above", "below")
# Attributes in the order they are spoken ("large red hollow cube"); ``shape``
# is the object's ``name`` and comes last as the noun.
ATTRIBUTES: Tuple[str, ...] = ("size", "color", "material", "shape")
DEFAULT_BACKGROUND: Tuple[int, int, int] = (240, 240, 240)
# Half the side of an object's box, as a fraction of the image side.
DEFAULT_OBJECT_SCALE: Dict[str, float] = {"small": 0.07, "large": 0.12}


@dataclass(frozen=True)
class SceneObject:
    """One object: its shape (``name``), other attributes and pixel box ``xyxy``."""

    name: str
    attributes: Dict[str, str]
    box: Tuple[int, int, int, int]

    def get(self, attribute: str) -> str:
        """The value of ``attribute``; ``"shape"`` is the object's name."""
        return self.name if attribute == "shape" else self.attributes[attribute]

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "attributes": dict(self.attributes), "box": list(self.box)}


@dataclass
class Scene:
    """A scene graph: objects plus the margins that define its relations.

    Args:
        image_id (str): the id, also the image's file stem.
        width (int), height (int): the image size in pixels.
        objects (List[SceneObject]): the objects, in index order.
        relation_margin (float): :math:`m` of the left/right/above/below rule, in pixels.
        distance_margin (float): the least gap between the closest (furthest)
            object and the runner-up, in pixels.
        background (Tuple[int, int, int]): the RGB background colour.
        image (str, optional): the image path relative to the data set root.
    """

    image_id: str
    width: int
    height: int
    objects: List[SceneObject]
    relation_margin: float
    distance_margin: float
    background: Tuple[int, int, int] = DEFAULT_BACKGROUND
    image: Optional[str] = None
    _cache: Dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.objects)

    @cached_property
    def centers(self) -> np.ndarray:
        """Box centres, float64 ``[N, 2]`` (x, y) in pixels."""
        boxes = np.asarray([o.box for o in self.objects], dtype=np.float64).reshape(-1, 4)
        return (boxes[:, :2] + boxes[:, 2:]) / 2

    @cached_property
    def distances(self) -> np.ndarray:
        """Pairwise centre distances ``[N, N]``."""
        diff = self.centers[:, None, :] - self.centers[None, :, :]  # [N, N, 2]
        return np.sqrt((diff**2).sum(-1))

    def values(self, attribute: str) -> np.ndarray:
        """The objects' values of ``attribute`` as a string array ``[N]``."""
        if attribute not in self._cache:
            if attribute not in ATTRIBUTES:
                raise InputError(f"unknown attribute {attribute!r}; expected one of {ATTRIBUTES}")
            self._cache[attribute] = np.asarray([o.get(attribute) for o in self.objects], dtype=object)
        return self._cache[attribute]

    def relation(self, predicate: str) -> np.ndarray:
        """Boolean ``[N, N]`` matrix ``R`` with ``R[i, j]`` iff object ``i`` is ``predicate`` object ``j``."""
        x, y = self.centers[:, 0], self.centers[:, 1]
        m = self.relation_margin
        if predicate == "left of":
            return x[:, None] + m < x[None, :]
        if predicate == "right of":
            return x[:, None] > x[None, :] + m
        if predicate == "above":
            return y[:, None] + m < y[None, :]
        if predicate == "below":
            return y[:, None] > y[None, :] + m
        raise InputError(f"unknown relation {predicate!r}; expected one of {RELATIONS}")

    def relations(self) -> List[Dict[str, Any]]:
        """All true relations as ``{"subject", "predicate", "object"}``, by predicate then indices."""
        out = []
        for predicate in RELATIONS:
            for i, j in np.argwhere(self.relation(predicate)).tolist():
                out.append({"subject": i, "predicate": predicate, "object": j})
        return out

    def to_dict(self) -> Dict[str, Any]:
        """The JSON record written to ``scenes_<split>.json``."""
        out: Dict[str, Any] = {"image_id": self.image_id}
        if self.image is not None:
            out["image"] = self.image
        out.update(
            width=self.width,
            height=self.height,
            background=list(self.background),
            relation_margin=self.relation_margin,
            distance_margin=self.distance_margin,
            objects=[o.to_dict() for o in self.objects],
            relations=self.relations(),
        )
        return out

    @classmethod
    def from_dict(cls, record: Mapping[str, Any], source: str = "scene") -> Scene:
        """Inverse of :meth:`to_dict`; relations are recomputed from the boxes.

        Raises :class:`DataFormatError` naming ``source``, the image id and the key when a key is missing.
        """
        image_id = record.get("image_id", "?")
        try:
            objects = [
                SceneObject(str(o["name"]), {k: str(v) for k, v in o["attributes"].items()}, tuple(o["box"]))
                for o in record["objects"]
            ]
            return cls(
                image_id=str(record["image_id"]),
                width=int(record["width"]),
                height=int(record["height"]),
                objects=objects,
                relation_margin=float(record["relation_margin"]),
                distance_margin=float(record["distance_margin"]),
                background=tuple(record.get("background", DEFAULT_BACKGROUND)),
                image=record.get("image"),
            )
        except KeyError as e:
            raise DataFormatError(
                f"{source}: image {image_id!r} lacks key {e.args[0]!r}; regenerate it with generate_dataset"
            ) from None


def _overlap(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over the smaller box's area between ``box`` [4] and each of ``boxes`` [K, 4]."""
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = (box[2:] - box[:2]).prod()
    areas = (boxes[:, 2:] - boxes[:, :2]).prod(-1)
    return inter / np.minimum(area, areas)


class SceneGenerator:
    r"""Samples scenes, deterministic by ``(seed, index)``.

    Objects are placed by rejection sampling: a new object is rejected while
    its box overlaps any placed box by more than ``max_overlap`` of the
    smaller box's area (which bounds the IoU by the same number and keeps a
    small object from hiding behind a large one); after ``max_attempts``
    rejections the whole scene is drawn again.

    Args:
        seed (int): the seed; scene ``index`` depends only on ``(seed, index)``. (default: ``0``)
        image_size (int): the side of the square image in pixels. (default: ``128``)
        min_objects (int): the fewest objects in a scene. (default: ``3``)
        max_objects (int): the most objects in a scene. (default: ``6``)
        shapes, colors, sizes, materials (Sequence[str]): the values to draw
            from; colours must be keys of :data:`COLORS`. (default: all)
        max_overlap (float): see above. (default: ``0.1``)
        relation_margin (float): :math:`m` of the relation rule, a fraction of
            ``image_size``. (default: ``0.04``)
        distance_margin (float): the closest/furthest tie margin, a fraction
            of ``image_size``. (default: ``0.04``)
        object_scale (Mapping[str, float]): half the box side per size, a
            fraction of ``image_size``. (default: ``{"small": 0.07, "large": 0.12}``)
        background (Tuple[int, int, int]): the background colour. (default: ``(240, 240, 240)``)
        max_attempts (int): placements tried per object. (default: ``100``)
    """

    def __init__(
        self,
        seed: int = 0,
        image_size: int = 128,
        min_objects: int = 3,
        max_objects: int = 6,
        shapes: Sequence[str] = SHAPES,
        colors: Sequence[str] = tuple(COLORS),
        sizes: Sequence[str] = SIZES,
        materials: Sequence[str] = MATERIALS,
        max_overlap: float = 0.1,
        relation_margin: float = 0.04,
        distance_margin: float = 0.04,
        object_scale: Mapping[str, float] = DEFAULT_OBJECT_SCALE,
        background: Tuple[int, int, int] = DEFAULT_BACKGROUND,
        max_attempts: int = 100,
    ):
        if not 1 <= min_objects <= max_objects:
            raise InputError(f"need 1 <= min_objects <= max_objects, got {min_objects} and {max_objects}")
        if image_size < 16:
            raise InputError(f"image_size must be at least 16 pixels, got {image_size}")
        unknown = [c for c in colors if c not in COLORS]
        if unknown:
            raise InputError(f"unknown colours {unknown}; choose from {list(COLORS)}")
        missing = [s for s in sizes if s not in object_scale]
        if missing:
            raise InputError(f"object_scale has no entry for sizes {missing}; give a fraction for each size")
        for name, values in (
            ("shapes", shapes),
            ("colors", colors),
            ("sizes", sizes),
            ("materials", materials),
        ):
            if len(values) == 0:
                raise InputError(f"{name} must not be empty")
        self.seed = int(seed)
        self.image_size = int(image_size)
        self.min_objects = min_objects
        self.max_objects = max_objects
        self.shapes = tuple(shapes)
        self.colors = tuple(colors)
        self.sizes = tuple(sizes)
        self.materials = tuple(materials)
        self.max_overlap = float(max_overlap)
        self.relation_margin = float(relation_margin)
        self.distance_margin = float(distance_margin)
        self.half_sides = {s: max(2, round(object_scale[s] * self.image_size)) for s in self.sizes}
        self.background = tuple(background)
        self.max_attempts = max_attempts
        self._next_index = 0

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(seed={self.seed}, image_size={self.image_size}, "
            f"objects={self.min_objects}..{self.max_objects})"
        )

    def config(self) -> Dict[str, Any]:
        """The settings, as written to ``meta.json``."""
        return {
            "image_size": self.image_size,
            "min_objects": self.min_objects,
            "max_objects": self.max_objects,
            "max_overlap": self.max_overlap,
            "relation_margin": self.relation_margin,
            "distance_margin": self.distance_margin,
            "half_sides": dict(self.half_sides),
            "background": list(self.background),
        }

    def generate_scene(self, index: Optional[int] = None, image_id: Optional[str] = None) -> Scene:
        """The scene number ``index`` (the next one when ``None``); its id defaults to ``f"{index:06d}"``."""
        if index is None:
            index = self._next_index
        self._next_index = index + 1
        # A string seed is hashed with SHA-512 by ``random``: stable across runs and platforms.
        rng = random.Random(f"mmgraph.synthetic.scene:{self.seed}:{index}")
        size = self.image_size
        for _ in range(100):
            count = rng.randint(self.min_objects, self.max_objects)
            boxes = np.zeros((0, 4), dtype=np.float64)
            objects: List[SceneObject] = []
            for _ in range(count):
                obj_size = rng.choice(self.sizes)
                side = 2 * self.half_sides[obj_size]
                for _ in range(self.max_attempts):
                    x0, y0 = rng.randint(0, size - side), rng.randint(0, size - side)
                    box = np.array([x0, y0, x0 + side, y0 + side], dtype=np.float64)
                    if len(boxes) == 0 or _overlap(box, boxes).max() <= self.max_overlap:
                        break
                else:
                    break
                boxes = np.concatenate([boxes, box[None]])
                attributes = {
                    "color": rng.choice(self.colors),
                    "size": obj_size,
                    "material": rng.choice(self.materials),
                }
                objects.append(
                    SceneObject(rng.choice(self.shapes), attributes, (x0, y0, x0 + side, y0 + side))
                )
            if len(objects) == count:
                return Scene(
                    image_id=f"{index:06d}" if image_id is None else image_id,
                    width=size,
                    height=size,
                    objects=objects,
                    relation_margin=self.relation_margin * size,
                    distance_margin=self.distance_margin * size,
                    background=self.background,
                )
        raise InputError(
            f"could not place {self.max_objects} objects without overlap in a {size}x{size} image; "
            "lower max_objects or object_scale, or raise image_size or max_overlap"
        )


def render(scene: Scene) -> Image.Image:
    """Draws ``scene`` as an RGB :class:`PIL.Image.Image` (no antialiasing).

    Larger objects are drawn first so that small ones stay visible; each shape
    fills exactly its box, so the box is the object's pixel extent.
    """
    image = Image.new("RGB", (scene.width, scene.height), tuple(scene.background))
    draw = ImageDraw.Draw(image)
    areas = [(o.box[2] - o.box[0]) * (o.box[3] - o.box[1]) for o in scene.objects]
    for k in sorted(range(len(scene.objects)), key=lambda k: (-areas[k], k)):
        obj = scene.objects[k]
        color = COLORS.get(obj.attributes.get("color", ""), (0, 0, 0))
        x0, y0, x1, y1 = obj.box
        # Pillow's shape boxes include their last pixel; ours end one before.
        xy = (x0, y0, x1 - 1, y1 - 1)
        hollow = obj.attributes.get("material") == "hollow"
        fill, outline = (None, color) if hollow else (color, color)
        width = max(2, (x1 - x0) // 8) if hollow else 1
        if obj.name == "sphere":
            draw.ellipse(xy, fill=fill, outline=outline, width=width)
        elif obj.name == "cone":
            points = [((x0 + x1 - 1) / 2, y0), (x0, y1 - 1), (x1 - 1, y1 - 1)]
            draw.polygon(points, fill=fill, outline=outline, width=width)
        else:
            draw.rectangle(xy, fill=fill, outline=outline, width=width)
    return image


def render_tensor(scene: Scene) -> Tensor:
    """:func:`render` as a ``uint8`` tensor ``[3, H, W]``."""
    array = np.asarray(render(scene), dtype=np.uint8)  # [H, W, 3]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()  # [3, H, W]
