r"""Region nodes: the image side of one sample.

Three sources of regions, one container:

- detector output (bottom-up attention style): boxes and one feature vector
  per box, :func:`regions_from_detections`;
- a CNN feature map, one region per cell, :func:`regions_from_feature_map`;
- a scene graph (GQA / Visual Genome style): named, attributed objects and
  predicate-labelled relations between them, :func:`regions_from_scene_graph`.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from mmgraph.errors import InputError, sample_prefix
from mmgraph.graph.boxes import _grid_boxes, check_image_size, normalize_boxes, validate_boxes
from mmgraph.graph.vocab import PAD, UNK, Vocabulary
from mmgraph.typing import ImageSize, OptTensor

#: Specials of the scene-graph vocabularies: no ``<cls>``, so that the unknown
#: id is 1 and real names start at 2.
SCENE_GRAPH_SPECIALS = (PAD, UNK)

SceneGraph = Tuple[Sequence[Mapping[str, Any]], Sequence[Tuple[int, str, int]]]


@dataclass(eq=False)
class Regions:
    r"""The regions of one image.

    Construction validates the fields (:meth:`validate`) and clips boxes that
    stick out of the image by at most one pixel.

    Args:
        boxes (torch.Tensor): ``[R, 4]`` pixel ``xyxy`` boxes.
        image_size ((float, float)): ``(width, height)`` in pixels.
        features (torch.Tensor, optional): ``[R, D]`` region features.
        labels (torch.Tensor, optional): ``[R]`` object label ids (long).
        attrs (torch.Tensor, optional): ``[R, A]`` attribute ids, padded with -1.
        semantic_edge_index (torch.Tensor, optional): ``[2, E]`` relations,
            subject (row 0) -> object (row 1).
        semantic_edge_type (torch.Tensor, optional): ``[E]`` predicate ids.
        names (list of str, optional): one name per region, for drawing.
        sample_id (object, optional): named in error messages.
    """

    boxes: Tensor
    image_size: ImageSize
    features: OptTensor = None
    labels: OptTensor = None
    attrs: OptTensor = None
    semantic_edge_index: OptTensor = None
    semantic_edge_type: OptTensor = None
    names: Optional[List[str]] = None
    sample_id: Optional[object] = None

    def __post_init__(self) -> None:
        self.validate()

    @property
    def num_regions(self) -> int:
        return self.boxes.size(0)

    def normalized_boxes(self) -> Tensor:
        """The boxes as ``xyxy`` in ``[0, 1]``, ``[R, 4]``."""
        return normalize_boxes(self.boxes, self.image_size)

    def validate(self) -> Regions:
        r"""Checks every field and normalises types in place: boxes become
        floating point and are clipped (see
        :func:`~mmgraph.graph.boxes.validate_boxes`), ``image_size`` a pair
        of floats.

        Raises:
            InputError: zero regions, a bad box, feature rows other than
                :math:`R` or non-finite features, labels / attrs / names of
                the wrong length, semantic edges with an index outside
                ``0..R-1`` or with a type count other than :math:`E`. The
                message names ``sample_id``.
        """
        prefix = sample_prefix(self.sample_id)
        if not isinstance(self.boxes, Tensor):
            self.boxes = torch.as_tensor(self.boxes, dtype=torch.float32)
        if self.boxes.dim() == 2 and self.boxes.size(0) == 0:
            raise InputError(f"{prefix}has zero regions; every image needs at least one box")
        self.image_size = check_image_size(self.image_size, self.sample_id)
        self.boxes = validate_boxes(self.boxes, self.image_size, sample_id=self.sample_id)
        r = self.num_regions
        if self.features is not None:
            if not isinstance(self.features, Tensor):
                self.features = torch.as_tensor(self.features)
            f = self.features
            if f.dim() != 2 or f.size(0) != r:
                raise InputError(
                    f"{prefix}features must have shape [{r}, D] (one row per box), got {list(f.shape)}"
                )
            if not f.is_floating_point():
                raise InputError(f"{prefix}features must be floating point, got {f.dtype}")
            # A NaN or inf anywhere makes the sum non-finite; the sum is far
            # cheaper than an element-wise test, which only runs if it fails
            # (and finds nothing if the sum merely overflowed).
            if not bool(torch.isfinite(f.sum())):
                bad = (~torch.isfinite(f)).any(dim=1).nonzero()
                if bad.numel():
                    raise InputError(f"{prefix}features of region {int(bad[0, 0])} contain NaN or inf")
        for name, value, ndim, shape in (
            ("labels", self.labels, 1, f"[{r}]"),
            ("attrs", self.attrs, 2, f"[{r}, A] (-1 padded)"),
        ):
            if value is None:
                continue
            if value.dim() != ndim or value.size(0) != r:
                raise InputError(f"{prefix}{name} must have shape {shape}, got {list(value.shape)}")
            if value.is_floating_point() or value.is_complex():
                raise InputError(f"{prefix}{name} must be integer ids (torch.long), got {value.dtype}")
        if self.names is not None and len(self.names) != r:
            raise InputError(f"{prefix}got {len(self.names)} names for {r} regions")
        self._validate_semantic_edges(prefix)
        return self

    def _validate_semantic_edges(self, prefix: str) -> None:
        index, types = self.semantic_edge_index, self.semantic_edge_type
        if index is None:
            if types is not None:
                raise InputError(f"{prefix}semantic_edge_type given without semantic_edge_index")
            return
        if index.dim() != 2 or index.size(0) != 2:
            raise InputError(f"{prefix}semantic_edge_index must have shape [2, E], got {list(index.shape)}")
        bad = ((index < 0) | (index >= self.num_regions)).any(dim=0).nonzero()
        if bad.numel():
            e = int(bad[0, 0])
            raise InputError(
                f"{prefix}semantic edge {e} joins regions {index[:, e].tolist()}, "
                f"but there are only {self.num_regions} regions (indices 0..{self.num_regions - 1})"
            )
        if types is not None and (types.dim() != 1 or types.size(0) != index.size(1)):
            raise InputError(
                f"{prefix}semantic_edge_type must have shape [{index.size(1)}] (one per edge), got {list(types.shape)}"
            )


def regions_from_detections(
    boxes: Tensor, features: Tensor, image_size: ImageSize, sample_id: Optional[object] = None
) -> Regions:
    r"""Regions from detector output: ``R >= 1`` pixel boxes and one feature
    vector of any size :math:`D` per box.

    Shapes:
        - **input:** boxes :math:`(R, 4)`, features :math:`(R, D)`
    """
    return Regions(boxes=boxes, image_size=image_size, features=features, sample_id=sample_id)


def regions_from_feature_map(
    fmap: Tensor, image_size: Optional[ImageSize] = None, sample_id: Optional[object] = None
) -> Regions:
    r"""One region per cell of a ``[C, H, W]`` feature map: features
    ``[H*W, C]`` in row-major cell order (a view of ``fmap``, so gradients
    flow back into the backbone), boxes the cells of an ``H x W`` grid over
    the image (:func:`~mmgraph.graph.boxes.grid_boxes`).

    Args:
        fmap (torch.Tensor): ``[C, H, W]`` features.
        image_size ((float, float), optional): ``(width, height)`` of the image
            the map covers. (default: :obj:`None`, meaning ``(W, H)``, one pixel per cell)
        sample_id (object, optional): named in error messages. (default: :obj:`None`)

    Shapes:
        - **input:** :math:`(C, H, W)`
        - **output:** features :math:`(H W, C)`, boxes :math:`(H W, 4)`
    """
    if not isinstance(fmap, Tensor) or fmap.dim() != 3:
        shape = list(fmap.shape) if isinstance(fmap, Tensor) else type(fmap).__name__
        raise InputError(f"{sample_prefix(sample_id)}feature map must have shape [C, H, W], got {shape}")
    _, h, w = fmap.shape
    width, height = (float(w), float(h)) if image_size is None else check_image_size(image_size, sample_id)
    # The cached grid is not modified: Regions keeps the copy that validation makes.
    boxes = _grid_boxes(h, w, width, height).to(fmap.device)
    features = fmap.flatten(1).t()  # [H*W, C]
    return Regions(boxes=boxes, image_size=(width, height), features=features, sample_id=sample_id)


def _object_box(obj: Mapping[str, Any], index: int, prefix: str) -> List[float]:
    if "box" in obj:
        box = obj["box"]
        if len(box) != 4:
            raise InputError(f"{prefix}object {index}: 'box' must be [x1, y1, x2, y2], got {box!r}")
        return [float(v) for v in box]
    if all(key in obj for key in ("x", "y", "w", "h")):
        x, y = float(obj["x"]), float(obj["y"])
        return [x, y, x + float(obj["w"]), y + float(obj["h"])]
    raise InputError(
        f"{prefix}object {index} ({obj.get('name', '?')!r}) has no box: give 'box' (pixel xyxy) "
        "or GQA-style 'x', 'y', 'w', 'h'"
    )


def regions_from_scene_graph(
    objects: Sequence[Mapping[str, Any]],
    relations: Iterable[Tuple[int, str, int]],
    image_size: ImageSize,
    label_vocab: Vocabulary,
    attr_vocab: Vocabulary,
    predicate_vocab: Vocabulary,
    max_attributes: int = 3,
    sample_id: Optional[object] = None,
) -> Regions:
    r"""Regions from a scene graph: one region per object, labelled with its
    name and attributes, and one semantic edge per relation.

    Names, attributes and predicates not in their vocabulary map to its
    ``<unk>`` id. An object keeps its first ``max_attributes`` attributes,
    in the order given; further ones are dropped. ``attrs`` is padded with
    -1. The regions have no ``features`` (a model embeds ``labels`` and
    ``attrs`` instead).

    Args:
        objects (list of dict): each with ``"name"``, optional
            ``"attributes"`` (list of str), and either ``"box"`` (pixel
            ``[x1, y1, x2, y2]``) or GQA-style ``"x", "y", "w", "h"``.
        relations (list of (int, str, int)): ``(subject_index, predicate,
            object_index)``, indices into ``objects``; become edges subject ->
            object.
        image_size ((float, float)): ``(width, height)`` in pixels.
        label_vocab (Vocabulary): object names.
        attr_vocab (Vocabulary): attributes.
        predicate_vocab (Vocabulary): relation predicates.
        max_attributes (int, optional): attributes kept per object. (default: :obj:`3`)
        sample_id (object, optional): named in error messages. (default: :obj:`None`)
    """
    prefix = sample_prefix(sample_id)
    if max_attributes < 0:
        raise InputError(f"max_attributes must be >= 0, got {max_attributes}")
    names: List[str] = []
    boxes: List[List[float]] = []
    attrs = torch.full((len(objects), max_attributes), -1, dtype=torch.long)
    for n, obj in enumerate(objects):
        if "name" not in obj:
            raise InputError(f"{prefix}object {n} has no 'name'")
        names.append(str(obj["name"]))
        boxes.append(_object_box(obj, n, prefix))
        kept = attr_vocab.encode(list(obj.get("attributes") or [])[:max_attributes])
        attrs[n, : len(kept)] = torch.tensor(kept, dtype=torch.long)
    triples = []
    for e, rel in enumerate(relations):
        try:
            subject, predicate, obj = rel
            triples.append((operator.index(subject), str(predicate), operator.index(obj)))
        except (TypeError, ValueError):
            raise InputError(
                f"{prefix}relation {e} must be (subject_index, predicate, object_index) with integer "
                f"indices into the objects, got {rel!r}"
            ) from None
    edge_index = torch.tensor([[s for s, _, _ in triples], [o for _, _, o in triples]], dtype=torch.long)
    edge_type = torch.tensor(predicate_vocab.encode([p for _, p, _ in triples]), dtype=torch.long)
    return Regions(
        boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        image_size=image_size,
        labels=torch.tensor(label_vocab.encode(names), dtype=torch.long),
        attrs=attrs,
        semantic_edge_index=edge_index.reshape(2, -1),
        semantic_edge_type=edge_type,
        names=names,
        sample_id=sample_id,
    )


def scene_graph_vocabularies(
    scene_graphs: Iterable[SceneGraph], min_count: int = 1
) -> Tuple[Vocabulary, Vocabulary, Vocabulary]:
    r"""Builds the ``(label_vocab, attr_vocab, predicate_vocab)`` of a list of
    ``(objects, relations)`` scene graphs (as taken by
    :func:`regions_from_scene_graph`), keeping entries seen at least
    ``min_count`` times, most frequent first. The specials are
    ``("<pad>", "<unk>")``."""
    names: List[List[str]] = []
    attributes: List[List[str]] = []
    predicates: List[List[str]] = []
    for objects, relations in scene_graphs:
        names.append([str(o["name"]) for o in objects if "name" in o])
        attributes.append([str(a) for o in objects for a in (o.get("attributes") or [])])
        predicates.append([str(p) for _, p, _ in relations])
    build: Dict[str, Any] = {"min_count": min_count, "specials": SCENE_GRAPH_SPECIALS}
    return (
        Vocabulary.build(names, **build),
        Vocabulary.build(attributes, **build),
        Vocabulary.build(predicates, **build),
    )
