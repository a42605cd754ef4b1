r"""VQA v2 as a PyG data set of graphs: official question / annotation files + region features.

From `"Making the V in VQA Matter: Elevating the Role of Image Understanding in
Visual Question Answering" <https://arxiv.org/abs/1612.00837>`_ (Goyal et al.,
CVPR 2017), with the region features of `"Bottom-Up and Top-Down Attention
for Image Captioning and Visual Question Answering"
<https://arxiv.org/abs/1707.07998>`_ (Anderson et al., CVPR 2018).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch

from mmgraph.datasets.base import PathLike, RegionFeatureDataset, file_fingerprint
from mmgraph.datasets.formats.vqa import VQAQuestion, build_answer_vocab, load_vqa
from mmgraph.errors import InputError
from mmgraph.graph.builder import GraphBuilder, Sample
from mmgraph.graph.vocab import PAD, UNK, Vocabulary
from mmgraph.metrics.vqa import vqa_soft_scores

#: The file-name part of each split: images of COCO 2014, test questions of 2015.
VQA_SUBSETS: Dict[str, str] = {
    "train": "train2014",
    "val": "val2014",
    "test-dev": "test-dev2015",
    "test": "test2015",
}
#: The splits released with annotations.
VQA_ANNOTATED_SPLITS = ("train", "val")
ANSWER_SPECIALS = (PAD, UNK)


class VQAv2(RegionFeatureDataset):
    r"""The VQA v2 data set: one graph per question, over the region features
    of its COCO image.

    Region nodes are the detector regions of the feature file (``x`` the
    features, ``box`` their boxes normalised by the stored image size);
    token nodes are the question's tokens with their dependency arcs. The
    target ``y`` is the soft score vector ``[1, len(answers)]`` of the
    official metric (:func:`~mmgraph.metrics.vqa.vqa_soft_scores` of the ten
    human answers: 0.3, 0.6, 0.9, 1.0 for an answer given by 1, 2, 3, 4+
    annotators), zero for ``<pad>`` and ``<unk>``; the ``test-dev`` and
    ``test`` splits have no annotations and no ``y``. Graph-level
    attributes: ``question_id``, ``image_id`` and, for annotated splits,
    ``answers`` (the ten raw human answers, for
    :class:`~mmgraph.metrics.vqa.VQAEvaluator`), ``multiple_choice_answer``,
    ``question_type`` and ``answer_type``.

    The answer classes (:attr:`answers`) are the normalised
    ``multiple_choice_answer`` s given to at least ``min_answer_count``
    questions of ``answer_vocab_splits``
    (:func:`~mmgraph.datasets.formats.build_answer_vocab`), most frequent
    first, after ``<pad>`` and ``<unk>``. They and the token vocabulary are
    shared by every split.

    Raw layout under ``root`` (the visualqa.org file names; other names via
    ``questions`` / ``annotations``, whose ``{subset}`` is ``train2014``,
    ``val2014``, ``test-dev2015`` or ``test2015``)::

        root/v2_OpenEnded_mscoco_train2014_questions.json
        root/v2_mscoco_train2014_annotations.json
        root/v2_OpenEnded_mscoco_val2014_questions.json
        root/v2_mscoco_val2014_annotations.json
        root/v2_OpenEnded_mscoco_test-dev2015_questions.json
        root/v2_OpenEnded_mscoco_test2015_questions.json
        root/features                 (default; any layout of open_features)

    The training files are always needed (they define the vocabularies).
    Region features: ``features`` names a bottom-up-attention ``.tsv``, a
    folder of ``<image_id>.npz`` or an ``.h5`` file, relative to ``root``
    unless absolute, or ``{split: path}`` (the released features come as
    ``trainval_36`` and ``test2015_36``; test-dev images are test2015
    images). Every record must store the image size. A question whose image
    has no features raises :class:`~mmgraph.datasets.formats.MissingFeaturesError`
    naming the question and the image, or is skipped and counted with
    ``skip_invalid=True``. Processed graphs are keyed by the settings, the
    training files and the feature files; after replacing another split's
    question file, pass ``force_reload=True``.

    Args:
        root (str): the folder of the raw files; processed files go to
            ``root/processed``.
        split (str): ``"train"``, ``"val"``, ``"test-dev"`` or ``"test"``.
            (default: ``"train"``)
        features (str or dict): see above. (default: ``"features"``)
        questions (str): the questions file name pattern.
            (default: ``"v2_OpenEnded_mscoco_{subset}_questions.json"``)
        annotations (str): the annotations file name pattern.
            (default: ``"v2_mscoco_{subset}_annotations.json"``)
        min_answer_count (int): fewest questions an answer class must be the
            ``multiple_choice_answer`` of. (default: ``9``)
        answer_vocab_splits (sequence of str): the annotated splits the answer
            classes are counted over; ``("train", "val")`` is the usual
            setting of the bottom-up-attention models (3,129 classes).
            (default: ``("train",)``)
        lazy_features (bool): keep features out of the processed graphs and
            read them on access (see
            :class:`~mmgraph.datasets.base.RegionFeatureDataset`). (default: :obj:`False`)
        min_boxes, max_boxes (int, optional): accepted boxes per image.
            (default: ``10``, ``100``)
        builder, min_token_count, skip_invalid, transform, pre_filter,
        force_reload: see :class:`~mmgraph.datasets.base.GraphDataset`.

    **STATS** (official sizes, from visualqa.org; not measured here):

    .. list-table::
        :header-rows: 1

        * - split
          - questions
          - images
          - answers per question
        * - train (train2014)
          - 443,757
          - 82,783
          - 10
        * - val (val2014)
          - 214,354
          - 40,504
          - 10
        * - test-dev (test-dev2015)
          - 107,394
          - 36,807
          - none released
        * - test (test2015)
          - 447,793
          - 81,434
          - none released

    Answer classes: 3,129 at ``min_answer_count=9`` over train + val
    ``multiple_choice_answer`` s (the bottom-up-attention setting).
    """

    splits = tuple(VQA_SUBSETS)

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        features: Union[PathLike, Mapping[str, PathLike]] = "features",
        questions: str = "v2_OpenEnded_mscoco_{subset}_questions.json",
        annotations: str = "v2_mscoco_{subset}_annotations.json",
        min_answer_count: int = 9,
        answer_vocab_splits: Sequence[str] = ("train",),
        builder: Optional[GraphBuilder] = None,
        **kwargs: Any,
    ):
        bad = [s for s in answer_vocab_splits if s not in VQA_ANNOTATED_SPLITS]
        if bad or not answer_vocab_splits:
            raise InputError(
                f"answer_vocab_splits must be annotated splits among {list(VQA_ANNOTATED_SPLITS)}, "
                f"got {list(answer_vocab_splits)}"
            )
        self.questions_pattern = questions
        self.annotations_pattern = annotations
        self.answer_vocab_splits = tuple(answer_vocab_splits)
        self._loaded: Dict[str, List[VQAQuestion]] = {}
        self._target_index: Optional[tuple] = None
        super().__init__(
            root, split, features=features, builder=builder, min_answer_count=min_answer_count, **kwargs
        )

    # ------------------------------------------------------------------ files
    def question_file(self, split: str) -> str:
        return self.questions_pattern.format(subset=VQA_SUBSETS[split])

    def annotation_file(self, split: str) -> Optional[str]:
        if split not in VQA_ANNOTATED_SPLITS:
            return None
        return self.annotations_pattern.format(subset=VQA_SUBSETS[split])

    def _files(self, split: str) -> List[str]:
        return [f for f in (self.question_file(split), self.annotation_file(split)) if f is not None]

    @property
    def raw_file_names(self) -> List[str]:
        needed = self._files(self.train_split) + [f for s in self.answer_vocab_splits for f in self._files(s)]
        needed += self._files(self.split) + [self.features_name(self.split)]
        return list(dict.fromkeys(needed))

    def questions(self, split: str) -> List[VQAQuestion]:
        """The questions of a split, with their annotations where released (read once)."""
        if split not in self._loaded:
            annotations = self.annotation_file(split)
            self._loaded[split] = load_vqa(
                Path(self.raw_dir, self.question_file(split)),
                None if annotations is None else Path(self.raw_dir, annotations),
            )
        return self._loaded[split]

    # ------------------------------------------------------------ for the base
    def default_builder(self) -> GraphBuilder:
        return GraphBuilder(parser="spacy", region_edges=("spatial",), cross="complete")

    def dataset_settings(self) -> Dict[str, Any]:
        vocab_files = self._files(self.train_split) + [
            f for s in self.answer_vocab_splits for f in self._files(s)
        ]
        return {
            **super().dataset_settings(),
            "questions": self.questions_pattern,
            "annotations": self.annotations_pattern,
            "answer_vocab_splits": list(self.answer_vocab_splits),
            "vocab_files": {f: file_fingerprint(Path(self.raw_dir, f)) for f in dict.fromkeys(vocab_files)},
        }

    def read_samples(self, split: str) -> List[Sample]:
        questions = self.questions(split)
        regions = self.read_regions(split, (q.image_id for q in questions))
        samples = []
        for q in questions:
            r = self.sample_regions(regions, q.image_id, q.question_id, f"question {q.question_id}")
            if r is not None:
                samples.append(Sample(r, q.question, q.question_id, extra=_graph_attributes(q)))
        return samples

    def vocab_samples(self, split: str) -> List[Sample]:
        # The questions alone: fitting the token vocabulary reads no features.
        return [Sample(None, q.question, q.question_id) for q in self.questions(split)]

    def make_answer_vocab(self, train: Sequence[Sample]) -> Vocabulary:
        annotated = [q for s in self.answer_vocab_splits for q in self.questions(s)]
        classes = build_answer_vocab(annotated, min_count=self.min_answer_count)
        return Vocabulary(classes, specials=ANSWER_SPECIALS)

    def make_target(self, sample: Sample, answers: Optional[Vocabulary]) -> Optional[torch.Tensor]:
        gt = sample.extra.get("answers")
        if gt is None or answers is None:
            return None
        if self._target_index is None or self._target_index[0] is not answers:
            # The class index without the specials: a human answer "<unk>" is no class.
            index = {a: i for i, a in enumerate(answers.itos) if i >= len(answers.specials)}
            self._target_index = (answers, index)
        index = self._target_index[1]
        y = torch.zeros(1, len(answers))
        for answer, score in vqa_soft_scores(gt, index).items():
            y[0, index[answer]] = score
        return y


def _graph_attributes(q: VQAQuestion) -> Dict[str, Any]:
    extra: Dict[str, Any] = {"question_id": q.question_id, "image_id": q.image_id}
    if q.answers is not None:
        extra.update(
            answers=list(q.answers),
            multiple_choice_answer=q.multiple_choice_answer,
            question_type=q.question_type,
            answer_type=q.answer_type,
        )
    return extra
