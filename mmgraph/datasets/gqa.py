r"""GQA as a PyG data set of graphs: balanced questions over scene-graph regions.

From `"GQA: A New Dataset for Real-World Visual Reasoning and Compositional
Question Answering" <https://arxiv.org/abs/1902.09506>`_ (Hudson and Manning,
CVPR 2019).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from mmgraph.datasets.base import GraphDataset, PathLike, file_fingerprint
from mmgraph.datasets.formats.features import ImageId
from mmgraph.datasets.formats.gqa import GQAQuestion, GQASceneGraph, load_gqa_questions, load_gqa_scene_graphs
from mmgraph.errors import DataFormatError, MMGraphError
from mmgraph.graph.builder import GraphBuilder, Sample
from mmgraph.graph.regions import Regions, regions_from_scene_graph, scene_graph_vocabularies
from mmgraph.graph.vocab import Vocabulary

SceneVocabularies = Tuple[Vocabulary, Vocabulary, Vocabulary]
_TYPE_KEYS = ("structural", "semantic", "detailed")


class GQA(GraphDataset):
    r"""The GQA balanced questions, one graph per question, over the
    question's image scene graph.

    Region nodes are the scene graph's objects: ``box`` (normalised by the
    image size), ``label`` (the object name's id in :attr:`label_vocab`) and
    ``attr`` (up to ``max_attributes`` attribute ids in :attr:`attr_vocab`,
    -1 padded), no ``x``; each relation is a ``semantic`` edge subject ->
    object with ``edge_type`` its predicate's id in :attr:`predicate_vocab`.
    The three vocabularies come from the training scene graphs and are shared
    by every split (unseen names map to ``<unk>``, id 1). Token nodes are the
    question's tokens with their dependency arcs. ``y`` is the answer's id in
    :attr:`answers` (training answers seen at least ``min_answer_count``
    times; -1, which losses ignore, for others; GQA scores answers by exact
    match, so they are not normalised). Graph-level attributes:
    ``question_id``, ``image_id`` (both as in the file, strings),
    ``structural_type``, ``semantic_type``, ``detailed_type`` (empty when
    the file has none) and, where the split has them, ``answer`` and
    ``full_answer``.

    Raw layout under ``root`` (the names of the released ``questions1.2``
    and ``sceneGraphs`` archives; others via ``questions`` /
    ``scene_graphs``, whose ``{split}`` is the split name)::

        root/train_balanced_questions.json
        root/train_sceneGraphs.json
        root/val_balanced_questions.json
        root/val_sceneGraphs.json
        root/testdev_balanced_questions.json
        root/testdev_sceneGraphs.json     (not released: predicted scene graphs)

    GQA releases scene graphs for train and val only; ``testdev`` needs a
    scene-graph file of the same layout made by a scene-graph predictor. The
    training files are always needed (they define the vocabularies). A
    question whose image has no scene graph (or one that cannot become
    regions, e.g. no objects) raises an error naming the question and the
    image, or is skipped and counted with ``skip_invalid=True``.

    Args:
        root (str): the folder of the raw files; processed files go to
            ``root/processed``.
        split (str): ``"train"``, ``"val"`` or ``"testdev"``. (default: ``"train"``)
        questions (str): the questions file name pattern.
            (default: ``"{split}_balanced_questions.json"``)
        scene_graphs (str): the scene-graph file name pattern.
            (default: ``"{split}_sceneGraphs.json"``)
        max_attributes (int): attributes kept per object. (default: ``3``)
        builder, min_token_count, min_answer_count, skip_invalid, transform,
        pre_filter, force_reload: see :class:`~mmgraph.datasets.base.GraphDataset`.

    **STATS** (official sizes of the balanced questions, GQA 1.2; not measured here):

    .. list-table::
        :header-rows: 1

        * - split
          - questions
          - images
          - scene graphs released
        * - train
          - 943,000
          - 72,140
          - yes (74,942 images)
        * - val
          - 132,062
          - 10,234
          - yes (10,696 images)
        * - testdev
          - 12,578
          - 398
          - no
    """

    splits = ("train", "val", "testdev")

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        questions: str = "{split}_balanced_questions.json",
        scene_graphs: str = "{split}_sceneGraphs.json",
        max_attributes: int = 3,
        builder: Optional[GraphBuilder] = None,
        **kwargs: Any,
    ):
        self.questions_pattern = questions
        self.scene_graphs_pattern = scene_graphs
        self.max_attributes = max_attributes
        self._questions: Dict[str, List[GQAQuestion]] = {}
        self._scene_vocabs: Optional[SceneVocabularies] = None
        super().__init__(root, split, builder=builder, **kwargs)
        self.label_vocab, self.attr_vocab, self.predicate_vocab = self.scene_vocabularies()

    # ------------------------------------------------------------------ files
    def _files(self, split: str) -> List[str]:
        return [self.questions_pattern.format(split=split), self.scene_graphs_pattern.format(split=split)]

    @property
    def raw_file_names(self) -> List[str]:
        return list(dict.fromkeys(self._files(self.train_split) + self._files(self.split)))

    def questions(self, split: str) -> List[GQAQuestion]:
        """The questions of a split (read once)."""
        if split not in self._questions:
            self._questions[split] = load_gqa_questions(Path(self.raw_dir, self._files(split)[0]))
        return self._questions[split]

    def scene_graphs(self, split: str) -> Dict[ImageId, GQASceneGraph]:
        """The scene graphs of a split, by image id."""
        return load_gqa_scene_graphs(Path(self.raw_dir, self._files(split)[1]))

    def scene_vocabularies(self) -> SceneVocabularies:
        """``(label_vocab, attr_vocab, predicate_vocab)`` of the training scene
        graphs, cached in ``processed/scene-vocab-<settings>.json`` (kept on
        ``force_reload``, like the token vocabulary; the settings key changes
        with the training files)."""
        if self._scene_vocabs is not None:
            return self._scene_vocabs
        path = Path(self.processed_dir, f"scene-vocab-{self.settings_key}.json")
        if path.exists():
            try:
                d = json.loads(path.read_text())
                vocabs = tuple(
                    Vocabulary.from_dict(d[k], source=str(path))
                    for k in ("labels", "attributes", "predicates")
                )
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise DataFormatError(
                    f"{path}: not a scene-graph vocabulary file ({e!r}); delete it"
                ) from None
        else:
            graphs = self.scene_graphs(self.train_split).values()
            vocabs = scene_graph_vocabularies((g.objects, g.relations) for g in graphs)
            text = json.dumps(
                {k: v.to_dict() for k, v in zip(("labels", "attributes", "predicates"), vocabs)}
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
        self._scene_vocabs = vocabs  # type: ignore[assignment]
        return self._scene_vocabs

    # ------------------------------------------------------------ for the base
    def default_builder(self) -> GraphBuilder:
        return GraphBuilder(parser="spacy", region_edges=("spatial",), cross="complete")

    def dataset_settings(self) -> Dict[str, Any]:
        return {
            "questions": self.questions_pattern,
            "scene_graphs": self.scene_graphs_pattern,
            "max_attributes": self.max_attributes,
            "train_files": {
                f: file_fingerprint(Path(self.raw_dir, f)) for f in self._files(self.train_split)
            },
        }

    def read_samples(self, split: str) -> List[Sample]:
        questions = self.questions(split)
        graphs = self.scene_graphs(split)
        vocabs = self.scene_vocabularies()
        scene_file = Path(self.raw_dir, self._files(split)[1])
        regions: Dict[ImageId, Union[Regions, MMGraphError]] = {}
        samples = []
        for q in questions:
            if q.image_id not in regions:
                regions[q.image_id] = self._regions(q.image_id, graphs, vocabs, scene_file)
            r = regions[q.image_id]
            if isinstance(r, MMGraphError):
                self.skip_or_raise(q.question_id, type(r)(f"question {q.question_id!r}: {r}"))
                continue
            samples.append(Sample(r, q.question, q.question_id, extra=_graph_attributes(q)))
        return samples

    def vocab_samples(self, split: str) -> List[Sample]:
        # The questions alone: the token and answer vocabularies need no regions.
        return [
            Sample(None, q.question, q.question_id, extra=_graph_attributes(q)) for q in self.questions(split)
        ]

    def _regions(
        self,
        image_id: ImageId,
        graphs: Dict[ImageId, GQASceneGraph],
        vocabs: SceneVocabularies,
        scene_file: Path,
    ) -> Union[Regions, MMGraphError]:
        graph = graphs.get(image_id)
        if graph is None:
            return DataFormatError(
                f"image {image_id!r} has no scene graph in '{scene_file}'; add it, or pass skip_invalid=True "
                "to skip its questions"
            )
        try:
            return regions_from_scene_graph(
                graph.objects, graph.relations, graph.image_size, *vocabs,
                max_attributes=self.max_attributes, sample_id=str(image_id),
            )  # fmt: skip
        except MMGraphError as e:
            return e


def _graph_attributes(q: GQAQuestion) -> Dict[str, Any]:
    extra: Dict[str, Any] = {"question_id": q.question_id, "image_id": str(q.image_id)}
    extra.update({f"{k}_type": str(q.types.get(k, "")) for k in _TYPE_KEYS})
    if q.answer is not None:
        extra["answer"] = q.answer
        extra["full_answer"] = q.full_answer or ""
    return extra
