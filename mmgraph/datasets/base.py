"""The base of every mmgraph data set: raw files -> samples -> graphs -> a processed cache.

A data set reads its raw files (never downloading them), turns each item into
a :class:`~mmgraph.graph.builder.Sample`, builds the graphs with a
:class:`~mmgraph.graph.builder.GraphBuilder` and keeps them as a PyG
:class:`~torch_geometric.data.InMemoryDataset`. The processed files are keyed
by a hash of the builder's and the data set's settings, so changing a setting
processes the data again instead of silently reusing stale graphs.

The token vocabulary and the answer vocabulary come from the training split
and are shared by every split of the same settings.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch_geometric.data import Batch, HeteroData, InMemoryDataset

from mmgraph._version import __version__
from mmgraph.datasets.formats.features import (
    DEFAULT_MAX_BOXES,
    DEFAULT_MIN_BOXES,
    FeatureStore,
    ImageId,
    MissingFeaturesError,
    normalize_image_id,
    open_features,
)
from mmgraph.errors import DataFormatError, InputError, MMGraphError
from mmgraph.graph.builder import GraphBuilder, Sample
from mmgraph.graph.collate import collate_graphs, collate_stored
from mmgraph.graph.regions import Regions, regions_from_detections
from mmgraph.graph.vocab import Vocabulary
from mmgraph.typing import REGION

PathLike = Union[str, os.PathLike]

# Graphs built per builder call in process(): bounds memory on large splits.
_BUILD_CHUNK = 2048


class GraphDataset(InMemoryDataset):
    r"""Base class: subclasses say where the raw files are and how to read a split.

    Subclasses implement :meth:`read_samples` (a split -> samples whose
    ``extra["answer"]`` holds the answer string where there is one) and
    :attr:`raw_file_names`; they may override :meth:`default_builder`,
    :meth:`make_target`, :meth:`make_answer_vocab`, :meth:`vocab_samples`
    and :meth:`dataset_settings`. A sample that cannot even be read (its
    image has no features, say) goes through :meth:`skip_or_raise`, so that
    ``skip_invalid`` counts it with the samples that fail to build.

    Args:
        root (str): the folder of the raw files; processed files go to
            ``root/processed``.
        split (str): which split. (default: ``"train"``)
        builder (GraphBuilder, optional): how samples become graphs; its
            vocabulary is set from the training split. (default:
            :meth:`default_builder`)
        min_token_count (int): tokens seen fewer times in training map to
            ``<unk>``. (default: ``1``)
        min_answer_count (int): answers seen fewer times in training are left
            out of the answer vocabulary. (default: ``1``)
        skip_invalid (bool): skip samples that fail to build (counted, warned
            about and listed in ``processed/skipped-*.json``) instead of
            stopping at the first. (default: :obj:`False`)
        transform, pre_filter, force_reload: as in PyG.
    """

    splits: Tuple[str, ...] = ("train", "val", "test")
    #: The split the vocabularies come from.
    train_split: str = "train"

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        builder: Optional[GraphBuilder] = None,
        min_token_count: int = 1,
        min_answer_count: int = 1,
        skip_invalid: bool = False,
        transform=None,
        pre_filter=None,
        force_reload: bool = False,
    ):
        if split not in self.splits:
            raise InputError(
                f"{type(self).__name__}: unknown split {split!r}; choose from {list(self.splits)}"
            )
        self.split = split
        self.builder = builder if builder is not None else self.default_builder()
        self.min_token_count = min_token_count
        self.min_answer_count = min_answer_count
        self.skip_invalid = skip_invalid
        # Samples read_samples could not read (skip_invalid), per process() run.
        self._read_skipped: List[Dict[str, str]] = []
        super().__init__(
            str(root), transform, pre_transform=None, pre_filter=pre_filter, force_reload=force_reload
        )
        self.load(self.processed_paths[0], data_cls=HeteroData)
        self.vocab = Vocabulary.load(self.processed_paths[1])
        self.builder.vocab = self.vocab
        self.answers: Optional[Vocabulary] = _load_optional_vocab(Path(self.processed_paths[2]))

    def get_batch(self, indices: Sequence[int]) -> Batch:
        """The batch of graphs ``indices``: ``collate_graphs([self[i] for i in indices])``.

        Built from the stored tensors at once (:func:`~mmgraph.graph.collate_stored`) where
        :meth:`get` returns the stored graph as it is; graph by graph otherwise (a transform,
        features read at :meth:`get` time). :class:`~mmgraph.graph.GraphLoader` asks for batches
        this way.
        """
        ids = [int(i) for i in indices]
        size = len(self)
        bad = [i for i in ids if not -size <= i < size]
        if bad:
            raise IndexError(f"{type(self).__name__}: indices {bad[:5]} out of range for {size} graphs")
        if self._stores_graphs_as_got():
            stored = self.indices()
            batch = collate_stored(self._data, self.slices, [stored[i] for i in ids])
            if batch is not None:
                return batch
        return collate_graphs([self[i] for i in ids])

    def _stores_graphs_as_got(self) -> bool:
        """Whether :meth:`get` returns a stored graph unchanged (subclasses that add to it say no)."""
        return self.transform is None and self.slices is not None

    # ---------------------------------------------------------- for subclasses
    def read_samples(self, split: str) -> List[Sample]:
        raise NotImplementedError

    def default_builder(self) -> GraphBuilder:
        return GraphBuilder(parser="spacy")

    def dataset_settings(self) -> Dict[str, Any]:
        """Settings of the subclass that change the graphs (part of the cache key)."""
        return {}

    def vocab_samples(self, split: str) -> Optional[List[Sample]]:
        """The samples of the training split the token and answer
        vocabularies are fitted on. Only their ``text`` and ``extra`` are
        read, so a data set whose image side is costly to read (region
        features) returns samples with ``regions=None`` here, which also keeps
        samples that :meth:`read_samples` skips in the vocabulary, whichever
        split is processed first. (default: :obj:`None`, the samples
        :meth:`read_samples` gives)"""
        return None

    def make_answer_vocab(self, train: Sequence[Sample]) -> Optional[Vocabulary]:
        """The answer vocabulary: the training answers (``extra["answer"]``)
        seen at least ``min_answer_count`` times, most frequent first, after
        the specials ``<pad>`` and ``<unk>``; :obj:`None` without answers."""
        answers = [s.extra["answer"] for s in train if s.extra.get("answer") is not None]
        if not answers:
            return None
        return Vocabulary.build([answers], min_count=self.min_answer_count, specials=("<pad>", "<unk>"))

    def skip_or_raise(self, sample_id: Any, error: MMGraphError) -> None:
        """For :meth:`read_samples`: a sample that cannot be read raises
        ``error``, or with ``skip_invalid`` is recorded and reported with the
        samples that fail to build."""
        if not self.skip_invalid:
            raise error
        self._read_skipped.append({"sample_id": str(sample_id), "error": str(error)})

    def make_target(self, sample: Sample, answers: Optional[Vocabulary]) -> Optional[torch.Tensor]:
        """The ``y`` of a sample: the answer's id (``-1`` when the answer is
        not in the vocabulary, which losses ignore), or :obj:`None`."""
        answer = sample.extra.get("answer")
        if answer is None or answers is None:
            return None
        return torch.tensor([answers.stoi.get(answer, -1)])

    # ------------------------------------------------------------ PyG plumbing
    @property
    def raw_dir(self) -> str:
        return self.root

    @property
    def processed_dir(self) -> str:
        return os.path.join(self.root, "processed")

    @property
    def settings_key(self) -> str:
        settings = {
            "dataset": type(self).__name__,
            "builder": self.builder.config,
            "dataset_settings": self.dataset_settings(),
            "min_token_count": self.min_token_count,
            "min_answer_count": self.min_answer_count,
            "skip_invalid": self.skip_invalid,
            "mmgraph": __version__,
        }
        return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]

    @property
    def processed_file_names(self) -> List[str]:
        key = self.settings_key
        return [f"{self.split}-{key}.pt", f"vocab-{key}.json", f"answers-{key}.json"]

    def download(self) -> None:
        missing = [f for f in self.raw_file_names if not Path(self.raw_dir, f).exists()]
        raise DataFormatError(
            f"{type(self).__name__}: raw files missing under {self.raw_dir}: {missing}. mmgraph downloads "
            "nothing; put the files there (see the class docstring for their layout)"
        )

    def process(self) -> None:
        vocab_path, answers_path = Path(self.processed_paths[1]), Path(self.processed_paths[2])
        self._read_skipped = []
        if vocab_path.exists():
            self.builder.vocab = Vocabulary.load(vocab_path)
            answers = _load_optional_vocab(answers_path)
            samples = self.read_samples(self.split)
        else:
            train = self.vocab_samples(self.train_split)
            if self.split == self.train_split:
                samples = self.read_samples(self.split)
                train = samples if train is None else train
            else:
                if train is None:
                    train = self.read_samples(self.train_split)
                    # Only what this split's reading skips is this split's.
                    self._read_skipped = []
                samples = self.read_samples(self.split)
            self.builder.fit_vocab([s.text for s in train], min_count=self.min_token_count)
            answers = self.make_answer_vocab(train)
        if not samples and not self._read_skipped:
            raise DataFormatError(
                f"{type(self).__name__}: split {self.split!r} under {self.raw_dir} is empty"
            )
        graphs, skipped = self._build(samples, answers)
        skipped = self._read_skipped + skipped
        if self.pre_filter is not None:
            graphs = [g for g in graphs if self.pre_filter(g)]
        if not graphs:
            raise DataFormatError(f"{type(self).__name__}: no sample of split {self.split!r} could be built")
        # Vocabularies first and the graphs last, each atomically: PyG skips
        # process() only when every processed file exists, so a run killed
        # half-way is processed again rather than loaded half-written.
        self.builder.vocab.save(vocab_path)
        _atomic_write_text(answers_path, json.dumps(None if answers is None else answers.to_dict()))
        tmp = self.processed_paths[0] + ".tmp"
        self.save(graphs, tmp)
        os.replace(tmp, self.processed_paths[0])
        if skipped:
            total = len(samples) + len(self._read_skipped)
            path = Path(self.processed_dir, f"skipped-{self.split}-{self.settings_key}.json")
            path.write_text(json.dumps(skipped, indent=1))
            warnings.warn(
                f"{type(self).__name__}: skipped {len(skipped)} of {total} samples of split "
                f"{self.split!r} that could not be built (skip_invalid=True); the list is in {path}",
                stacklevel=2,
            )

    def _build(self, samples: Sequence[Sample], answers: Optional[Vocabulary]):
        for s in samples:
            target = self.make_target(s, answers)
            if target is not None:
                s.y = target
        graphs: List[HeteroData] = []
        skipped: List[Dict[str, str]] = []
        for start in range(0, len(samples), _BUILD_CHUNK):
            chunk = samples[start : start + _BUILD_CHUNK]
            try:
                graphs.extend(self.builder.build_many(chunk))
            except MMGraphError:
                # Build one by one to find (and name, or skip) the bad samples.
                for s in chunk:
                    try:
                        graphs.append(self.builder(s))
                    except MMGraphError as e:
                        if not self.skip_invalid:
                            raise
                        skipped.append({"sample_id": str(s.sample_id), "error": str(e)})
        return graphs, skipped

    def stats(self) -> Dict[str, float]:
        """Sizes of this split: graphs, mean regions, tokens and edges per graph."""
        out: Dict[str, float] = {"graphs": len(self)}
        data = self._data
        for node_type in data.node_types:
            out[f"mean {node_type} nodes"] = data[node_type].num_nodes / max(1, len(self))
        for edge_type in data.edge_types:
            out[f"mean {'-'.join(edge_type)} edges"] = data[edge_type].edge_index.size(1) / max(1, len(self))
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)}, split={self.split!r})"


class RegionFeatureDataset(GraphDataset):
    r"""Base class of data sets whose region nodes are detector regions read
    from a feature file (:func:`~mmgraph.datasets.formats.open_features`:
    bottom-up-attention TSV, a folder of ``.npz``, HDF5).

    Region nodes get ``x`` (the features) and ``box`` (the file's pixel boxes
    normalised by the image size it stores). Every graph keeps its
    ``image_id`` (an integer id comes back as ``long [1]``, batched ``[B]``).
    With ``lazy_features=True`` the processed graphs keep the
    boxes only and :meth:`get` reads ``x`` from the feature file on access:
    a per-question copy of 36 x 2048 float features is about 295 KB, so the
    full VQA v2 training split would need some 130 GB in memory otherwise.

    Args:
        features (str or dict): the feature file or folder, relative to
            ``root`` unless absolute; or ``{split: path}`` where splits use
            different files (``trainval_36.tsv`` and ``test2015_36.tsv``, say).
            (default: ``"features"``)
        lazy_features (bool): keep features out of the processed graphs and
            read them in :meth:`get`. (default: :obj:`False`)
        min_boxes (int, optional): fewest boxes accepted per image.
            (default: ``10``)
        max_boxes (int, optional): most boxes accepted per image.
            (default: ``100``)
        **kwargs: see :class:`GraphDataset`.
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        features: Union[PathLike, Mapping[str, PathLike]] = "features",
        lazy_features: bool = False,
        min_boxes: Optional[int] = DEFAULT_MIN_BOXES,
        max_boxes: Optional[int] = DEFAULT_MAX_BOXES,
        **kwargs: Any,
    ):
        self.features = dict(features) if isinstance(features, Mapping) else features
        self.lazy_features = lazy_features
        self.min_boxes = min_boxes
        self.max_boxes = max_boxes
        self._stores: Dict[str, FeatureStore] = {}
        super().__init__(root, split, **kwargs)

    def features_name(self, split: str) -> str:
        """The feature file or folder of a split as given: relative to ``root``
        unless absolute (a raw file name)."""
        if isinstance(self.features, dict):
            if split not in self.features:
                raise InputError(
                    f"{type(self).__name__}: features={{...}} names no file for split {split!r} "
                    f"(it has {sorted(self.features)})"
                )
            return str(self.features[split])
        return str(self.features)

    def features_path(self, split: str) -> Path:
        """The feature file or folder of a split."""
        return Path(self.raw_dir, self.features_name(split))

    def feature_store(self, split: str) -> FeatureStore:
        """The opened feature store of a split (opened once)."""
        path = self.features_path(split)
        key = str(path)
        if key not in self._stores:
            self._stores[key] = open_features(path, min_boxes=self.min_boxes, max_boxes=self.max_boxes)
        return self._stores[key]

    def dataset_settings(self) -> Dict[str, Any]:
        names = self.features if isinstance(self.features, dict) else {"*": self.features}
        paths = {k: self.features_path(k if k != "*" else self.split) for k in names}
        return {
            "features": {k: [str(p.resolve()), file_fingerprint(p)] for k, p in sorted(paths.items())},
            "lazy_features": self.lazy_features,
            "min_boxes": self.min_boxes,
            "max_boxes": self.max_boxes,
        }

    def read_regions(
        self, split: str, image_ids: Iterable[Any]
    ) -> Dict[ImageId, Union[Regions, MMGraphError]]:
        """The regions of every image id of a split (each read once), or the
        error that names why an image has none (no features, a bad record).

        Keys are normalised image ids
        (:func:`~mmgraph.datasets.formats.normalize_image_id`)."""
        store = self.feature_store(split)
        wanted = list(dict.fromkeys(normalize_image_id(i) for i in image_ids))
        missing = {i for i in wanted if i not in store}
        out: Dict[ImageId, Union[Regions, MMGraphError]] = {}
        for image_id in wanted:
            try:
                if image_id in missing:
                    raise MissingFeaturesError(
                        f"image {image_id!r} has no region features in '{store.path}' ({len(missing)} of "
                        f"{len(wanted)} images of split {split!r} have none); extract them, or pass "
                        "skip_invalid=True to skip their samples"
                    )
                record = store[image_id]
                if record.image_w is None or record.image_h is None:
                    raise DataFormatError(
                        f"image {image_id!r} in '{store.path}': the record stores no image_w / image_h, "
                        "which normalising its boxes needs; re-export the features with the image size"
                    )
                size = (record.image_w, record.image_h)
                if self.lazy_features:
                    out[image_id] = Regions(record.boxes, size, sample_id=image_id)
                else:
                    out[image_id] = regions_from_detections(record.boxes, record.features, size, image_id)
            except MMGraphError as e:
                out[image_id] = e
        return out

    def sample_regions(
        self,
        regions: Mapping[ImageId, Union[Regions, MMGraphError]],
        image_id: Any,
        sample_id: Any,
        what: str,
    ) -> Optional[Regions]:
        """The regions of one sample's image, or :obj:`None` when it has none
        and ``skip_invalid`` skips it (the error then names ``what``, e.g.
        ``"question 7"``, and the image); raises otherwise."""
        r = regions[normalize_image_id(image_id)]
        if isinstance(r, Regions):
            return r
        self.skip_or_raise(sample_id, type(r)(f"{what}: {r}"))
        return None

    def _stores_graphs_as_got(self) -> bool:
        return not self.lazy_features and super()._stores_graphs_as_got()

    def get(self, idx: int) -> HeteroData:
        data = super().get(idx)
        if self.lazy_features:
            # Integer ids come back from the collated storage as long [1].
            image_id = int(data.image_id) if isinstance(data.image_id, torch.Tensor) else data.image_id
            record = self.feature_store(self.split)[image_id]
            if record.num_boxes != data[REGION].num_nodes:
                raise DataFormatError(
                    f"image {image_id!r}: '{self.features_path(self.split)}' now holds {record.num_boxes} "
                    f"boxes, the processed graph {data[REGION].num_nodes}; the file changed since processing: "
                    "pass force_reload=True"
                )
            data[REGION].x = record.features
        return data


def file_fingerprint(path: PathLike) -> Optional[List[int]]:
    """``[size, mtime_ns]`` of a file or folder, :obj:`None` when it does not
    exist: part of a cache key, so that replaced files are processed again."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _load_optional_vocab(path: Path) -> Optional[Vocabulary]:
    """The answer vocabulary file holds a vocabulary, or ``null`` for data sets without answers."""
    d = json.loads(path.read_text())
    return None if d is None else Vocabulary.from_dict(d, source=str(path))


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
