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
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch_geometric.data import HeteroData, InMemoryDataset

from mmgraph._version import __version__
from mmgraph.errors import DataFormatError, InputError, MMGraphError
from mmgraph.graph.builder import GraphBuilder, Sample
from mmgraph.graph.vocab import Vocabulary

PathLike = Union[str, os.PathLike]

# Graphs built per builder call in process(): bounds memory on large splits.
_BUILD_CHUNK = 2048


class GraphDataset(InMemoryDataset):
    r"""Base class: subclasses say where the raw files are and how to read a split.

    Subclasses implement :meth:`read_samples` (a split -> samples whose
    ``extra["answer"]`` holds the answer string where there is one) and
    :attr:`raw_file_names`; they may override :meth:`default_builder`,
    :meth:`make_target` and :meth:`dataset_settings`.

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
        super().__init__(
            str(root), transform, pre_transform=None, pre_filter=pre_filter, force_reload=force_reload
        )
        self.load(self.processed_paths[0], data_cls=HeteroData)
        self.vocab = Vocabulary.load(self.processed_paths[1])
        self.builder.vocab = self.vocab
        self.answers: Optional[Vocabulary] = _load_optional_vocab(Path(self.processed_paths[2]))

    # ---------------------------------------------------------- for subclasses
    def read_samples(self, split: str) -> List[Sample]:
        raise NotImplementedError

    def default_builder(self) -> GraphBuilder:
        return GraphBuilder(parser="spacy")

    def dataset_settings(self) -> Dict[str, Any]:
        """Settings of the subclass that change the graphs (part of the cache key)."""
        return {}

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
        if vocab_path.exists():
            self.builder.vocab = Vocabulary.load(vocab_path)
            answers = _load_optional_vocab(answers_path)
            samples = self.read_samples(self.split)
        else:
            train = self.read_samples(self.train_split)
            self.builder.fit_vocab([s.text for s in train], min_count=self.min_token_count)
            answers = self._answer_vocab(train)
            samples = train if self.split == self.train_split else self.read_samples(self.split)
        if not samples:
            raise DataFormatError(
                f"{type(self).__name__}: split {self.split!r} under {self.raw_dir} is empty"
            )
        graphs, skipped = self._build(samples, answers)
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
            path = Path(self.processed_dir, f"skipped-{self.split}-{self.settings_key}.json")
            path.write_text(json.dumps(skipped, indent=1))
            warnings.warn(
                f"{type(self).__name__}: skipped {len(skipped)} of {len(samples)} samples of split "
                f"{self.split!r} that could not be built (skip_invalid=True); the list is in {path}",
                stacklevel=2,
            )

    def _answer_vocab(self, train: Sequence[Sample]) -> Optional[Vocabulary]:
        answers = [s.extra["answer"] for s in train if s.extra.get("answer") is not None]
        if not answers:
            return None
        return Vocabulary.build([answers], min_count=self.min_answer_count, specials=("<pad>", "<unk>"))

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


def _load_optional_vocab(path: Path) -> Optional[Vocabulary]:
    """The answer vocabulary file holds a vocabulary, or ``null`` for data sets without answers."""
    d = json.loads(path.read_text())
    return None if d is None else Vocabulary.from_dict(d, source=str(path))


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
