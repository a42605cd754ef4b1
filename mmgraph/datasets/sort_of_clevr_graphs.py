r"""Sort-of-CLEVR as a PyG data set of graphs: pixels on a grid of region nodes, English questions.

From `"A simple neural network module for relational reasoning"
<https://arxiv.org/abs/1706.01427>`_ (Santoro et al., NeurIPS 2017); the file
format and the reader are in :mod:`mmgraph.datasets.sort_of_clevr`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch_geometric.data import HeteroData

from mmgraph.datasets.base import GraphDataset, PathLike, file_fingerprint
from mmgraph.datasets.sort_of_clevr import (
    COLORS_BGR,
    SORT_OF_CLEVR_ANSWERS,
    SORT_OF_CLEVR_COLORS,
    SORT_OF_CLEVR_FAMILIES,
    SortOfClevrQuestion,
    SortOfClevrSample,
    generate_sort_of_clevr,
    read_sort_of_clevr,
    sort_of_clevr_referents,
)
from mmgraph.errors import InputError
from mmgraph.graph.boxes import grid_boxes
from mmgraph.graph.builder import GraphBuilder, Sample
from mmgraph.graph.regions import Regions
from mmgraph.graph.segments import regions_from_segments
from mmgraph.graph.vocab import PAD, UNK, Vocabulary

#: Where region nodes come from: the cells of a grid over the pixels, or the objects found in them.
REGION_MODES = ("pixels", "segments")


class SortOfClevr(GraphDataset):
    r"""Sort-of-CLEVR questions, one graph per question, over the pixels of
    its image.

    Region nodes are, with ``regions="pixels"`` (the default), the cells of a
    ``grid x grid`` grid over the image (``box`` from
    :func:`~mmgraph.graph.boxes.grid_boxes`, no ``x``): the model computes
    their features from ``image`` (``uint8 [1, 3, 75, 75]``, RGB; batched
    ``[B, 3, 75, 75]``) with a CNN whose output grid they are, as Relation
    Networks do with its 5 x 5 grid of 24-channel cells. With
    ``regions="segments"`` they are the objects found in the pixels
    (:func:`~mmgraph.graph.segments.regions_from_segments`: one region per
    connected patch of one colour, its box and, as ``x``, its own pixels and
    mask resampled to ``crop x crop``), as a detector would propose them; the
    graphs then hold no image, and each question's ``grounding`` says which
    found regions its colour phrases name ("the red object": the region
    whose pixels are the palette's red) and which ones the phrase naming the
    answer's referents names ("the object closest to": the closest found
    region; "other objects": those counted; :func:`found_referents`, the
    question's rule applied to the found regions' centres, shapes and
    colours), for a training-only alignment loss (build with
    ``GraphBuilder(grounding=True)``). Token
    nodes are the English form of the one-hot question (e.g. "What is the
    shape of the object closest to the red object?") with its dependency
    arcs. ``y`` indexes :attr:`answers`, which holds Sort-of-CLEVR's ten
    answers in their fixed file order (``yes``, ``no``, ``rectangle``,
    ``circle``, ``0`` .. ``5``) after the ``<pad>`` and ``<unk>`` every
    answer vocabulary starts with: ``y = 2 + `` the file's answer index.
    Graph-level attributes: ``family`` (``"nonrel"``, ``"rel"`` or
    ``"ternary"``), ``subtype`` (0..2, see the table in
    :mod:`mmgraph.datasets.sort_of_clevr`), ``template`` (the subtype's name,
    e.g. ``"furthest_shape"``: ``SORT_OF_CLEVR_TEMPLATES``; evaluation scores
    each), ``answer`` and ``image_index`` (the image's place in its split).

    Raw layout: ``root/sort_of_clevr.pickle`` (``file=``), the pickle of the
    public generator (``(train, test)`` lists of samples), read without
    running code from it (:func:`~mmgraph.datasets.sort_of_clevr.read_sort_of_clevr`).
    With ``generate={...}`` a missing file is written by
    :func:`~mmgraph.datasets.sort_of_clevr.generate_sort_of_clevr` with those
    arguments (offline, seeded).

    Splits: ``"train"`` and ``"test"`` as in the file; ``"val"`` is the
    last ``val_images`` images of the file's training list, and ``"train"``
    the ones before them (the generator draws images independently, so the
    tail is a random sample; the carve-out is the same on every run). With
    the default ``val_images=0``, ``"train"`` is the whole training list and
    there is no ``"val"``.

    The image is stored once per image, not per question, and attached to
    each graph by :meth:`get`.

    Args:
        root (str): the folder of the pickle; processed files go to
            ``root/processed``.
        split (str): ``"train"``, ``"val"`` or ``"test"``. (default: ``"train"``)
        file (str): the pickle's file name. (default: ``"sort_of_clevr.pickle"``)
        regions (str): ``"pixels"`` (grid cells) or ``"segments"`` (found
            objects). (default: ``"pixels"``)
        grid (int): the side of the region grid. (default: ``5``)
        crop (int): with ``regions="segments"``, the side each object's box is
            resampled to for its features. (default: ``8``)
        val_images (int): training images held out as ``"val"``. (default: ``0``)
        generate (dict, optional): generate a missing file with these
            :func:`~mmgraph.datasets.sort_of_clevr.generate_sort_of_clevr`
            arguments. (default: :obj:`None`)
        builder, min_token_count, skip_invalid, transform, pre_filter,
        force_reload: see :class:`~mmgraph.datasets.base.GraphDataset`.

    **STATS** (the public generator's defaults, as in the Relation Networks
    paper; ``generate_sort_of_clevr`` has the same defaults):

    .. list-table::
        :header-rows: 1

        * - split
          - images
          - questions per image
          - graphs
          - regions / graph
        * - train
          - 9,800
          - 20 (10 non-relational, 10 relational; + 10 ternary in the 18-dim layout)
          - 196,000
          - 25 (``grid=5``)
        * - test
          - 200
          - 20
          - 4,000
          - 25
    """

    splits = ("train", "val", "test")

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        file: str = "sort_of_clevr.pickle",
        regions: str = "pixels",
        grid: int = 5,
        crop: int = 8,
        val_images: int = 0,
        generate: Optional[Mapping[str, Any]] = None,
        builder: Optional[GraphBuilder] = None,
        **kwargs: Any,
    ):
        if regions not in REGION_MODES:
            raise InputError(
                f"SortOfClevr: unknown regions mode {regions!r}; choose from {list(REGION_MODES)}"
            )
        if grid < 1:
            raise InputError(f"grid must be >= 1, got {grid}")
        if crop < 1:
            raise InputError(f"crop must be >= 1, got {crop}")
        if val_images < 0:
            raise InputError(f"val_images must be >= 0, got {val_images}")
        if split == "val" and val_images == 0:
            raise InputError(
                "SortOfClevr: the file has no validation split; pass val_images=N to hold out the last N "
                "training images as 'val'"
            )
        self.file = file
        self.regions_mode = regions
        self.grid = grid
        self.crop = crop
        self.val_images = val_images
        self.generate = dict(generate) if generate is not None else None
        self._file_cache: Optional[Tuple[Any, Dict[str, List[SortOfClevrSample]]]] = None
        self._split_images: Dict[str, torch.Tensor] = {}
        super().__init__(root, split, builder=builder, **kwargs)
        self.images: torch.Tensor = torch.load(self.processed_paths[3], weights_only=True)

    @property
    def raw_file_names(self) -> List[str]:
        return [self.file]

    @property
    def processed_file_names(self) -> List[str]:
        return super().processed_file_names + [f"images-{self.split}-{self.settings_key}.pt"]

    def download(self) -> None:
        if self.generate is None:
            super().download()
        generate_sort_of_clevr(Path(self.raw_dir, self.file), **self.generate)

    def default_builder(self) -> GraphBuilder:
        if self.regions_mode == "segments":
            return GraphBuilder(parser="spacy", region_edges=("spatial",))  # six objects, as a scene graph's
        # Regions are the cells of a pixel grid: their 8 nearest neighbours (the spatial graph would
        # link nearly every pair of cells).
        return GraphBuilder(parser="spacy", region_edges=("knn",), knn_k=8)

    def dataset_settings(self) -> Dict[str, Any]:
        segments = self.regions_mode == "segments"
        return {
            "file": [self.file, file_fingerprint(Path(self.raw_dir, self.file))],
            "regions": self.regions_mode,
            "grid": None if segments else self.grid,
            "crop": self.crop if segments else None,
            "val_images": self.val_images,
            "graph_format": 3,  # 2: graphs carry their template; 3: found objects ground the answer's referents
        }

    def split_samples(self, split: str) -> List[SortOfClevrSample]:
        """The images of a split with their questions (the file is read once)."""
        path = Path(self.raw_dir, self.file)
        key = file_fingerprint(path)
        if self._file_cache is None or self._file_cache[0] != key:
            train, test = read_sort_of_clevr(path)
            if self.val_images >= len(train):
                raise InputError(
                    f"val_images={self.val_images}, but '{path}' has only {len(train)} training images"
                )
            cut = len(train) - self.val_images
            self._file_cache = (key, {"train": train[:cut], "val": train[cut:], "test": test})
        return self._file_cache[1][split]

    def read_samples(self, split: str) -> List[Sample]:
        images = self.split_samples(split)
        if not images:
            return []
        _, h, w = images[0].image.shape
        size = (float(w), float(h))
        # One grid for every image: read_sort_of_clevr checks that they share a shape.
        grid = Regions(grid_boxes(self.grid, self.grid, size), size, sample_id=f"{split} grid")
        self._split_images[split] = torch.stack([s.image for s in images])  # [N, 3, H, W]
        samples = []
        for i, image in enumerate(images):
            regions, colours, referents = grid, None, None
            if self.regions_mode == "segments":
                regions = regions_from_segments(image.image, crop=self.crop, sample_id=f"{split} image {i}")
                colours = segment_colours(regions.features, self.crop)
                referents = found_referents(regions, colours, image.questions, self.crop)
            for j, q in enumerate(image.questions):
                extra = {
                    "family": q.family,
                    "subtype": q.subtype,
                    "template": q.template,
                    "answer": q.answer,
                    "image_index": i,
                }
                grounding = None
                if colours is not None:
                    grounding = colour_grounding(q.question, q.colors, colours)
                    if referents is not None:
                        grounding += referent_grounding(q, referents[j])
                samples.append(Sample(regions, q.question, f"{split}/{i}/{j}", None, grounding, extra))
        return samples

    def make_answer_vocab(self, train: Sequence[Sample]) -> Vocabulary:
        # The fixed answer order of the file format, not frequency order.
        return Vocabulary(SORT_OF_CLEVR_ANSWERS, specials=(PAD, UNK))

    def process(self) -> None:
        super().process()
        # After the graphs: a run killed in between lacks this file, so PyG processes again.
        path = self.processed_paths[3]
        tmp = path + ".tmp"
        torch.save(self._split_images[self.split], tmp)
        os.replace(tmp, path)

    def _stores_graphs_as_got(self) -> bool:
        # With grid regions get() attaches the image.
        return self.regions_mode == "segments" and super()._stores_graphs_as_got()

    def get(self, idx: int) -> HeteroData:
        data = super().get(idx)
        if self.regions_mode == "segments":
            return data  # the regions carry their pixels
        i = int(data.image_index)
        # A copy: a transform that edits the image in place must not edit the stored one.
        data.image = self.images[i : i + 1].clone()  # [1, 3, H, W]
        return data


def segment_colours(features: torch.Tensor, crop: int) -> List[Optional[str]]:
    """The Sort-of-CLEVR colour name of each found region (``None`` for a colour not in the palette),
    read from its features (:func:`~mmgraph.graph.segments.regions_from_segments`: masked RGB and mask):
    the mean colour of the segment's pixels."""
    cut = features.view(-1, 4, crop * crop)
    mean = cut[:, :3].sum(-1) / cut[:, 3].sum(-1, keepdim=True).clamp_min(1e-12)  # [R, 3] in [0, 1]
    palette = torch.tensor([bgr[::-1] for bgr in COLORS_BGR], dtype=mean.dtype) / 255  # [6, 3] RGB
    distance, index = (mean[:, None] - palette[None]).abs().amax(-1).min(-1)  # [R]
    return [
        SORT_OF_CLEVR_COLORS[k] if d < 2 / 255 else None for d, k in zip(distance.tolist(), index.tolist())
    ]


def segment_shapes(features: torch.Tensor, crop: int) -> List[bool]:
    """Whether each found region is a rectangle (else a circle), read from its mask
    (:func:`~mmgraph.graph.segments.regions_from_segments`): a rectangle fills its box, a circle about
    pi / 4 of it."""
    fill = features.view(-1, 4, crop * crop)[:, 3].mean(-1)  # [R]
    return (fill > 0.9).tolist()


def found_referents(
    regions: Regions, colours: Sequence[Optional[str]], questions: Sequence[SortOfClevrQuestion], crop: int
) -> Optional[List[List[int]]]:
    """For each question of an image, the found regions its answer is about
    (:func:`~mmgraph.datasets.sort_of_clevr.sort_of_clevr_referents`, applied to the found objects' box
    centres, shapes and colours); ``None`` unless every colour was found exactly once."""
    if len(colours) != len(SORT_OF_CLEVR_COLORS) or set(colours) != set(SORT_OF_CLEVR_COLORS):
        return None
    region_of = [colours.index(name) for name in SORT_OF_CLEVR_COLORS]  # colour index -> region
    boxes = regions.boxes[region_of]
    # Boxes are [start, stop) pixel ranges: the centre pixel of an odd extent is (start + stop - 1) / 2.
    centers = torch.round((boxes[:, :2] + boxes[:, 2:] - 1) / 2).long().numpy()[None]  # [1, 6, 2]
    shapes = segment_shapes(regions.features, crop)
    rect = np.array([[shapes[k] for k in region_of]])  # [1, 6]
    family = np.array([[SORT_OF_CLEVR_FAMILIES.index(q.family) for q in questions]])
    subtype = np.array([[q.subtype for q in questions]])
    color1 = np.array([[SORT_OF_CLEVR_COLORS.index(q.colors[0]) for q in questions]])
    color2 = np.array([[SORT_OF_CLEVR_COLORS.index(q.colors[-1]) for q in questions]])
    mask = sort_of_clevr_referents(centers, rect, family, subtype, color1, color2)[0]  # [Q, 6]
    return [[region_of[k] for k in np.flatnonzero(row)] for row in mask]


# The words of each template that name its referents (the first match in the question).
_REFERENT_PHRASES = {
    "closest_shape": r"object closest",
    "furthest_shape": r"object furthest",
    "count_same_shape": r"other objects",
    "count_in_box": r"objects",
    "near_line": r"other object",
    "count_obtuse_triangle": r"objects",
}


def referent_grounding(question: SortOfClevrQuestion, regions: Sequence[int]) -> List[Dict[str, int]]:
    """The grounding of the phrase of a question that names its answer's referents (e.g. "object
    closest" names the closest object; :func:`found_referents`); none for a question without such a phrase
    or with no referent (a count of 0)."""
    phrase = _REFERENT_PHRASES.get(question.template)
    match = re.search(rf"\b{phrase}\b", question.question) if phrase else None
    if match is None:
        return []
    return [{"start": match.start(), "end": match.end(), "object": k} for k in regions]


def colour_grounding(
    question: str, named: Sequence[str], colours: Sequence[Optional[str]]
) -> List[Dict[str, int]]:
    """The question's word-region grounding: each named colour's phrase (``"red object"``, or the
    colour word alone) names the found regions of that colour. For a training-only alignment loss
    (``grounding=True`` in the builder); a colour with no such region grounds nothing."""
    out = []
    for colour in dict.fromkeys(named):
        match = re.search(rf"\b{re.escape(colour)}(?: object)?\b", question)
        if match is None:
            continue
        for k, found in enumerate(colours):
            if found == colour:
                out.append({"start": match.start(), "end": match.end(), "object": k})
    return out
