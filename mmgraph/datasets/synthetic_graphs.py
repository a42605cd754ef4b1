"""The synthetic benchmark as PyG data sets of graphs: VQA and image-text retrieval.

Both read the files that :func:`~mmgraph.datasets.synthetic.generate_dataset`
(or ``mmgraph generate``) writes, and can generate them on first use when
given ``generate={...}`` (the generator's arguments): offline, seeded.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from mmgraph.datasets.base import GraphDataset, PathLike
from mmgraph.datasets.synthetic import SPLITS, generate_dataset, load_synthetic
from mmgraph.errors import DataFormatError, InputError
from mmgraph.graph.boxes import grid_boxes
from mmgraph.graph.builder import GraphBuilder, Sample
from mmgraph.graph.regions import Regions, regions_from_scene_graph, scene_graph_vocabularies
from mmgraph.graph.segments import match_segments, regions_from_segments
from mmgraph.graph.vocab import Vocabulary

#: Region nodes from the scene graph's objects, the cells of a CNN's grid over the pixels, or the
#: objects found in the pixels (:func:`~mmgraph.graph.segments.regions_from_segments`).
REGION_MODES = ("scene_graph", "pixels", "segments")


class _SyntheticBase(GraphDataset):
    splits = SPLITS

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        regions: str = "scene_graph",
        grid: int = 8,
        generate: Optional[Mapping[str, Any]] = None,
        builder: Optional[GraphBuilder] = None,
        **kwargs: Any,
    ):
        if regions not in REGION_MODES:
            raise InputError(f"unknown regions mode {regions!r}; choose from {list(REGION_MODES)}")
        self.regions_mode = regions
        self.grid = grid
        self.generate = dict(generate) if generate is not None else None
        super().__init__(root, split, builder=builder, **kwargs)

    @property
    def raw_file_names(self) -> List[str]:
        return ["meta.json"] + [
            f"{kind}_{s}.json" for s in self.splits for kind in ("scenes", "questions", "captions")
        ]

    def download(self) -> None:
        if self.generate is None:
            super().download()
        generate_dataset(self.raw_dir, **self.generate)

    def default_builder(self) -> GraphBuilder:
        # Pixel regions are grid cells: their 8 nearest neighbours, not the spatial graph, which
        # links nearly every pair of cells.
        edges = ("knn",) if self.regions_mode == "pixels" else ("spatial",)
        return GraphBuilder(parser="spacy", region_edges=edges, knn_k=8, cross="complete")

    def dataset_settings(self) -> Dict[str, Any]:
        meta = Path(self.raw_dir, "meta.json")
        return {
            "regions": self.regions_mode,
            "grid": self.grid if self.regions_mode == "pixels" else None,
            # The generated files' identity: regenerate -> reprocess.
            "meta_mtime": meta.stat().st_mtime_ns if meta.exists() else None,
        }

    def _scene_regions(
        self, split: str
    ) -> Tuple[Dict[str, Regions], Dict[str, torch.Tensor], Dict[str, List[List[int]]]]:
        """Regions (and, for pixel models, the image) of every scene of a split; and, for pixel
        models, the grid cells of each object (for found objects, the region found for it): the region
        nodes its grounding names."""
        scenes, _, _ = load_synthetic(self.raw_dir, split, check_images=self.regions_mode != "scene_graph")
        regions: Dict[str, Regions] = {}
        images: Dict[str, torch.Tensor] = {}
        cells: Dict[str, List[List[int]]] = {}
        if self.regions_mode == "scene_graph":
            vocabs = self.scene_vocabularies()
            for sc in scenes:
                objects, relations = _scene_graph(sc)
                size = (float(sc["width"]), float(sc["height"]))
                regions[sc["image_id"]] = regions_from_scene_graph(
                    objects, relations, size, *vocabs, sample_id=sc["image_id"]
                )
        elif self.regions_mode == "segments":
            for sc in scenes:
                # Region nodes are the objects found in the pixels, with their pixels as features; an
                # object's grounding names the found region that overlaps it most (IoU at least 0.5; none
                # when no region does, e.g. an object hidden under another of its colour).
                image = _read_image(Path(self.raw_dir, sc["image"]))[0]
                found = regions_from_segments(image, sample_id=sc["image_id"])
                regions[sc["image_id"]] = found
                boxes = torch.tensor([o["box"] for o in sc["objects"]], dtype=torch.float).view(-1, 4)
                cells[sc["image_id"]] = [[] if k is None else [k] for k in match_segments(found.boxes, boxes)]
        else:
            for sc in scenes:
                size = (float(sc["width"]), float(sc["height"]))
                # Region nodes are the cells of the backbone's output grid; the
                # model computes their features from the pixels end to end.
                regions[sc["image_id"]] = Regions(
                    grid_boxes(self.grid, self.grid, size), size, sample_id=sc["image_id"]
                )
                images[sc["image_id"]] = _read_image(Path(self.raw_dir, sc["image"]))
                cells[sc["image_id"]] = [object_cells(o["box"], self.grid, size) for o in sc["objects"]]
        return regions, images, cells

    def _grounding(self, grounding: List[Dict[str, int]], cells: Dict[str, List[List[int]]], image_id: str):
        """The grounding spans with region ids: object ids for scene graphs, each object's grid cells
        for pixels, the region found for each object for segments."""
        if not cells:
            return grounding
        objects = cells[image_id]
        return [{**g, "object": cell} for g in grounding for cell in objects[g["object"]]]

    def scene_vocabularies(self) -> Tuple[Vocabulary, Vocabulary, Vocabulary]:
        """``(label_vocab, attr_vocab, predicate_vocab)`` of the training
        split's scene graphs (every split encodes with these, as GQA does)."""
        return _vocabs_for(str(Path(self.raw_dir).resolve()), self.train_split)


@lru_cache(maxsize=8)
def _vocabs_for(root: str, train_split: str):
    scenes, _, _ = load_synthetic(root, train_split, check_images=False)
    return scene_graph_vocabularies([_scene_graph(sc) for sc in scenes])


def _scene_graph(scene: Mapping[str, Any]):
    objects = [
        {
            "name": o["name"],
            "attributes": [o["attributes"][k] for k in sorted(o["attributes"])],
            "box": o["box"],
        }
        for o in scene["objects"]
    ]
    relations = [(r["subject"], r["predicate"], r["object"]) for r in scene["relations"]]
    return objects, relations


def object_cells(box, grid: int, image_size: Tuple[float, float]) -> List[int]:
    """The cells of a ``grid`` x ``grid`` grid (row-major, as :func:`~mmgraph.graph.boxes.grid_boxes`)
    that an object's pixel box ``[x0, y0, x1, y1]`` covers by at least a quarter of the cell, and always
    the cell of its centre."""
    width, height = image_size
    cell_w, cell_h = width / grid, height / grid
    x0, y0, x1, y1 = (float(v) for v in box)
    out = []
    for r in range(grid):
        overlap_h = max(0.0, min(y1, (r + 1) * cell_h) - max(y0, r * cell_h))
        for c in range(grid):
            overlap_w = max(0.0, min(x1, (c + 1) * cell_w) - max(x0, c * cell_w))
            if overlap_w * overlap_h >= 0.25 * cell_w * cell_h:
                out.append(r * grid + c)
    centre = min(int((y0 + y1) / 2 / cell_h), grid - 1) * grid + min(int((x0 + x1) / 2 / cell_w), grid - 1)
    return sorted(set(out) | {centre})


def _read_image(path: Path) -> torch.Tensor:
    try:
        with Image.open(path) as im:
            array = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as e:
        raise DataFormatError(f"{path}: cannot read the image ({e})") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1)[None].contiguous()  # [1, 3, H, W]


class SyntheticVQA(_SyntheticBase):
    r"""Questions about synthetic scenes, with answers, as graphs.

    Each graph is one question: the scene's regions (scene-graph objects with
    ``semantic`` relations, or a pixel grid whose features a CNN computes),
    the question's tokens and dependency arcs, cross edges, ``y`` (the answer
    id in :attr:`answers`), and the graph-level ``family``, ``template``,
    ``answer``, ``question_id`` and ``image_id``. With ``regions="pixels"``
    each graph also holds ``image`` (``uint8 [1, 3, H, W]``).

    Args:
        root (str): the folder written by ``mmgraph generate``.
        split (str): ``"train"``, ``"val"`` or ``"test"``.
        regions (str): ``"scene_graph"``, ``"pixels"`` or ``"segments"`` (the objects found in the
            pixels, :func:`~mmgraph.graph.segments.regions_from_segments`). (default: ``"scene_graph"``)
        grid (int): the side of the pixel grid. (default: ``8``)
        generate (dict, optional): when the files are missing, generate them
            with these :func:`~mmgraph.datasets.synthetic.generate_dataset` arguments.
        builder, min_token_count, min_answer_count, skip_invalid, transform,
        pre_filter, force_reload: see :class:`~mmgraph.datasets.base.GraphDataset`.

    **STATS** (``generate_dataset`` defaults: 100 images, 10 questions each, scene graphs):

    .. list-table::
        :header-rows: 1

        * - split
          - graphs
          - regions / graph
          - tokens / graph
          - answers
        * - train / val / test
          - 800 / 100 / 100
          - 4.5
          - 12
          - 26 (yes, no, counts 0..6, shapes, colours, sizes, materials)
    """

    def read_samples(self, split: str) -> List[Sample]:
        regions, images, cells = self._scene_regions(split)
        _, questions, _ = load_synthetic(self.raw_dir, split, check_images=False)
        samples = []
        for q in questions:
            extra = {
                "question_id": q["question_id"],
                "image_id": q["image_id"],
                "answer": q["answer"],
                "family": q["family"],
                "template": q["template"],
            }
            if images:
                extra["image"] = images[q["image_id"]]
            samples.append(
                Sample(
                    regions[q["image_id"]],
                    q["question"],
                    q["question_id"],
                    None,
                    self._grounding(q["grounding"], cells, q["image_id"]),
                    extra,
                )
            )
        return samples


class SyntheticRetrieval(_SyntheticBase):
    r"""Captions of synthetic scenes, with their compositional hard negatives, as graphs.

    Each graph is one (image, true caption) pair; graph-level attributes:
    ``image_id``, ``caption_index``, ``relation`` and ``negatives`` (the hard
    negative texts, same bag of words, false for the scene) with
    ``negative_kinds`` (``attribute``, ``relation`` or ``object``).

    Args: as :class:`SyntheticVQA`.

    **STATS** (``generate_dataset`` defaults: 100 images, 4 captions each):

    .. list-table::
        :header-rows: 1

        * - split
          - graphs
          - captions / image
          - negatives / caption
        * - train / val / test
          - about 320 / 40 / 40
          - up to 4
          - up to 3
    """

    def read_samples(self, split: str) -> List[Sample]:
        regions, images, cells = self._scene_regions(split)
        _, _, captions = load_synthetic(self.raw_dir, split, check_images=False)
        samples = []
        for entry in captions:
            image_id = entry["image_id"]
            for k, cap in enumerate(entry["captions"]):
                extra = {
                    "image_id": image_id,
                    "caption_index": k,
                    "relation": cap.get("relation"),
                    "negatives": [n["text"] for n in cap["negatives"]],
                    "negative_kinds": [n["kind"] for n in cap["negatives"]],
                }
                if images:
                    extra["image"] = images[image_id]
                sid = f"{image_id}/{k}"
                grounding = self._grounding(cap["grounding"], cells, image_id)
                samples.append(Sample(regions[image_id], cap["text"], sid, None, grounding, extra))
        return samples
