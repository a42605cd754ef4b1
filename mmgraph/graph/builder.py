"""The graph builder: one sample (image side + text) -> one ``HeteroData``.

``GraphBuilder`` is a PyG :class:`~torch_geometric.transforms.BaseTransform`,
so it serves as a data set's ``transform`` or ``pre_transform``; it also takes
a :class:`Sample` directly, and builds many samples at once with
:meth:`GraphBuilder.build_many` (one parser call, one vectorised pass over all
region pairs of all images).

The graphs follow the schema in :mod:`mmgraph.typing`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.transforms import BaseTransform

from mmgraph.errors import InputError, sample_prefix
from mmgraph.graph import cross as cross_edges
from mmgraph.graph.boxes import box_geometry, normalize_boxes
from mmgraph.graph.regions import Regions
from mmgraph.graph.spatial import (
    check_max_distance,
    complete_edges_batch,
    knn_edges_batch,
    spatial_relations_batch,
)
from mmgraph.graph.text import ParsedText, dependency_edges, make_parser
from mmgraph.graph.vocab import Vocabulary
from mmgraph.typing import (
    DEP_EDGE,
    GROUNDING_EDGE,
    IMPLICIT_EDGE,
    REGION,
    REGION_TO_TOKEN,
    SEMANTIC_EDGE,
    SPATIAL_EDGE,
    TOKEN,
    TOKEN_TO_REGION,
)

REGION_EDGE_KINDS = ("spatial", "knn", "complete")

# Region pairs per vectorised pass in build_many (see there).
_PAIRS_PER_CHUNK = 1 << 17

# A scorer for ``cross="topk"``: (sample, parsed text) -> scores [T, R].
CrossScorer = Callable[["Sample", ParsedText], Tensor]


@dataclass
class Sample:
    """One raw sample: the image side, the text, and what goes with them.

    Args:
        regions: the image side (:class:`~mmgraph.graph.regions.Regions`).
        text: the question or caption.
        sample_id: an id used in error messages and kept on the graph.
        y: the target (an answer id, a soft score vector, ...), kept as ``data.y``.
        grounding: ``[{"start", "end", "object"}]`` character spans of ``text``
            that name a region, for ``cross="grounded"``.
        extra: other graph-level attributes copied onto the graph as they are
            (e.g. ``question_id``, ``family``).
    """

    regions: Regions
    text: str
    sample_id: Any = None
    y: Any = None
    grounding: Optional[List[dict]] = None
    extra: Dict[str, Any] = field(default_factory=dict)


def lexical_scorer(sample: Sample, parsed: ParsedText) -> Tensor:
    """Cross scores from words shared by a token and a region's name (scene graphs)."""
    names = sample.regions.names
    if names is None:
        raise InputError(
            f"{sample_prefix(sample.sample_id)}the lexical topk scorer needs region names (scene-graph "
            "regions); pass cross_scorer= for detector features, or use cross='complete'"
        )
    return cross_edges.lexical_scores(parsed.tokens, [n.split() for n in names])


class GraphBuilder(BaseTransform):
    r"""Builds the heterogeneous graph of one vision-and-language sample.

    Region nodes carry the detector / grid / scene-graph features and
    normalised boxes; region-region edges follow ``region_edges``
    (``"spatial"``: the 11 ReGAT classes, :func:`~mmgraph.graph.spatial.spatial_relations`;
    ``"knn"`` or ``"complete"``: implicit relations), each with the relative
    box geometry as ``edge_attr``; scene-graph relations become ``semantic``
    edges. Token nodes carry vocabulary ids, joined by the dependency parse.
    Cross edges join the two sides (``complete``, ``topk`` or ``grounded``).

    Args:
        vocab (Vocabulary, optional): token vocabulary. Build one with
            :meth:`fit_vocab` if you have none. (default: :obj:`None`)
        parser (str or object): ``"spacy"`` (a real dependency parse; needs the
            ``nlp`` extra), ``"sequential"`` (adjacent tokens, on purpose) or an
            object with ``parse(texts)``. (default: ``"spacy"``)
        region_edges (tuple of str): any of ``"spatial"``, ``"knn"``,
            ``"complete"`` (``"knn"`` and ``"complete"`` exclude each other).
            (default: ``("spatial",)``)
        knn_k (int): neighbours for ``"knn"``. (default: ``8``)
        spatial_max_distance (float, optional): the ``"spatial"`` graph's
            direction classes need the two centres less than this fraction of
            the image diagonal apart (ReGAT's cut-off); :obj:`None`: every pair
            of regions gets its class, as relations such as "left of" need
            (see :func:`~mmgraph.graph.spatial.spatial_relations_batch`).
            (default: ``0.5``)
        self_loops (bool): add region self-loops (spatial class 12).
            (default: :obj:`False`)
        geometry (bool): store relative box geometry as ``edge_attr`` on
            spatial and implicit edges. (default: :obj:`True`)
        reverse_dep (bool): add dependent -> head edges (label id +
            ``NUM_DEP_LABELS``). (default: :obj:`False`)
        cross (str): ``"complete"``, ``"topk"`` or ``"grounded"``. (default: ``"complete"``)
        cross_k (int): regions per token for ``"topk"``. (default: ``8``)
        cross_scorer (callable, optional): ``(sample, parsed) -> [T, R]`` scores
            for ``"topk"``; defaults to :func:`lexical_scorer`.
        max_tokens (int): longer texts are truncated to this many tokens with a
            warning that names the sample. (default: ``64``)
        add_cls (bool): prepend the vocabulary's ``<cls>`` token (a text-level
            node for pooling). (default: :obj:`False`)
        grounding (bool): also store the sample's grounding as
            ``(token, grounding, region)`` edges (:data:`~mmgraph.typing.GROUNDING_EDGE`:
            each token -> the regions its grounded span names; none for a
            sample without grounding). No layer passes messages along them:
            they are the target of a word-region alignment loss
            (``graph_vqa(pointer=True, align_weight=...)``). Independent of
            ``cross``. (default: :obj:`False`)
    """

    def __init__(
        self,
        vocab: Optional[Vocabulary] = None,
        parser: Union[str, Any] = "spacy",
        region_edges: Sequence[str] = ("spatial",),
        knn_k: int = 8,
        spatial_max_distance: Optional[float] = 0.5,
        self_loops: bool = False,
        geometry: bool = True,
        reverse_dep: bool = False,
        cross: str = "complete",
        cross_k: int = 8,
        cross_scorer: Optional[CrossScorer] = None,
        max_tokens: int = 64,
        add_cls: bool = False,
        grounding: bool = False,
    ):
        if isinstance(region_edges, str):
            region_edges = (region_edges,)
        unknown = [k for k in region_edges if k not in REGION_EDGE_KINDS]
        if unknown:
            raise InputError(f"unknown region edge kinds {unknown}; choose from {list(REGION_EDGE_KINDS)}")
        if "knn" in region_edges and "complete" in region_edges:
            raise InputError("region_edges: 'knn' and 'complete' both make implicit edges; choose one")
        if cross not in cross_edges.CROSS_MODES:
            raise InputError(f"unknown cross mode {cross!r}; choose from {list(cross_edges.CROSS_MODES)}")
        if max_tokens < 1 or knn_k < 1 or cross_k < 1:
            raise InputError("max_tokens, knn_k and cross_k must be >= 1")
        check_max_distance(spatial_max_distance, "spatial_max_distance")
        self.vocab = vocab
        self.parser = make_parser(parser)
        self.region_edges = tuple(region_edges)
        self.knn_k = knn_k
        self.spatial_max_distance = spatial_max_distance
        self.self_loops = self_loops
        self.geometry = geometry
        self.reverse_dep = reverse_dep
        self.cross = cross
        self.cross_k = cross_k
        self.cross_scorer = cross_scorer or lexical_scorer
        self.max_tokens = max_tokens
        self.add_cls = add_cls
        self.grounding = grounding

    @property
    def config(self) -> Dict[str, Any]:
        """The settings that decide what graphs come out (data sets key their caches on it)."""
        return {
            "parser": self._parser_name(),
            "region_edges": list(self.region_edges),
            "knn_k": self.knn_k,
            "spatial_max_distance": self.spatial_max_distance,
            "self_loops": self.self_loops,
            "geometry": self.geometry,
            "reverse_dep": self.reverse_dep,
            "cross": self.cross,
            "cross_k": self.cross_k,
            "cross_scorer": getattr(self.cross_scorer, "__qualname__", type(self.cross_scorer).__name__),
            "max_tokens": self.max_tokens,
            "add_cls": self.add_cls,
            "grounding": self.grounding,
        }

    def _parser_name(self) -> str:
        name = type(self.parser).__name__
        return {"SequentialParser": "sequential", "SpacyParser": "spacy"}.get(name, name)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(region_edges={list(self.region_edges)}, parser={self._parser_name()!r}, "
            f"cross={self.cross!r}, vocab={len(self.vocab) if self.vocab is not None else None})"
        )

    # ------------------------------------------------------------------ vocab
    def fit_vocab(
        self, texts: Sequence[str], min_count: int = 1, max_size: Optional[int] = None
    ) -> Vocabulary:
        """Parses ``texts`` (cached) and sets ``self.vocab`` from their tokens."""
        parsed = self.parser.parse(list(texts))
        self.vocab = Vocabulary.build((p.tokens for p in parsed), min_count=min_count, max_size=max_size)
        return self.vocab

    # ----------------------------------------------------------------- public
    def forward(self, data: Union[Sample, HeteroData]) -> HeteroData:
        if isinstance(data, HeteroData):
            data = sample_from_data(data)
        return self.build_many([data])[0]

    def build_many(self, samples: Sequence[Sample]) -> List[HeteroData]:
        """Builds many samples at once: one parser call and one vectorised
        pass over the region pairs of all images. Gives exactly the graphs
        that building them one by one gives."""
        if self.vocab is None:
            raise InputError(
                "GraphBuilder has no vocabulary: pass vocab=..., or call builder.fit_vocab(train_texts) first"
            )
        samples = list(samples)
        if not samples:
            return []
        for s in samples:
            _check_sample(s)
        _check_feature_sizes(samples)
        parsed = self._parse([s.text for s in samples], samples)
        # Region pairs in chunks of about _PAIRS_PER_CHUNK: the per-edge
        # temporaries of a whole large batch would not stay in cache.
        sizes = [s.regions.num_regions for s in samples]
        region_parts: List[Dict[tuple, tuple]] = []
        start = 0
        while start < len(samples):
            end, pairs = start, 0
            while end < len(samples) and (end == start or pairs + sizes[end] ** 2 <= _PAIRS_PER_CHUNK):
                pairs += sizes[end] ** 2
                end += 1
            region_parts.extend(self._region_edges([s.regions for s in samples[start:end]]))
            start = end
        return [self._assemble(s, p, r) for s, p, r in zip(samples, parsed, region_parts)]

    # --------------------------------------------------------------- internal
    def _parse(self, texts: List[str], samples: Sequence[Sample]) -> List[ParsedText]:
        parsed = self.parser.parse(texts)
        out = []
        for s, p in zip(samples, parsed):
            if len(p.tokens) == 0:
                raise InputError(
                    f"{sample_prefix(s.sample_id)}the text {s.text!r} has no tokens after parsing; "
                    "give a question or caption with at least one word"
                )
            if len(p.tokens) > self.max_tokens:
                warnings.warn(
                    f"{sample_prefix(s.sample_id)}text has {len(p.tokens)} tokens; truncated to "
                    f"max_tokens={self.max_tokens} (raise GraphBuilder(max_tokens=...) to keep more)",
                    stacklevel=3,
                )
                p = truncate_parse(p, self.max_tokens)
            out.append(p)
        return out

    def _region_edges(self, regions: Sequence[Regions]) -> List[Dict[tuple, tuple]]:
        """Region-region edges of every image, computed in one batched pass
        per kind (edges and their box geometry) and split back per image
        into ``(edge_index, edge_type or None, edge_attr or None)`` with local
        node indices."""
        boxes = [r.boxes for r in regions]
        parts: List[Dict[tuple, tuple]] = [{} for _ in regions]
        batches = {}
        if "spatial" in self.region_edges:
            image_sizes = [r.image_size for r in regions]
            batches[SPATIAL_EDGE] = spatial_relations_batch(
                boxes, image_sizes, self_loops=self.self_loops, max_distance=self.spatial_max_distance
            )
        if "knn" in self.region_edges:
            batches[IMPLICIT_EDGE] = knn_edges_batch(boxes, self.knn_k, self_loops=self.self_loops)
        elif "complete" in self.region_edges:
            batches[IMPLICIT_EDGE] = complete_edges_batch([r.num_regions for r in regions], self.self_loops)
        all_boxes = torch.cat(boxes) if batches and self.geometry else None
        for edge_type, batch in batches.items():
            counts = batch.edge_ptr.diff().tolist()
            attrs = (
                box_geometry(all_boxes, batch.edge_index).split(counts)
                if all_boxes is not None
                else [None] * len(parts)
            )
            for part, (ei, et), attr in zip(parts, batch.split(), attrs):
                part[edge_type] = (ei, et, attr)
        return parts

    def _assemble(self, s: Sample, parsed: ParsedText, region_parts: dict) -> HeteroData:
        r = s.regions
        data = HeteroData()
        # Region nodes.
        if r.features is not None:
            data[REGION].x = r.features.float()
        data[REGION].box = normalize_boxes(r.boxes, r.image_size)
        data[REGION].num_nodes = r.num_regions
        if r.labels is not None:
            data[REGION].label = r.labels
        if r.attrs is not None:
            data[REGION].attr = r.attrs
        for edge_type, (ei, et, attr) in region_parts.items():
            data[edge_type].edge_index = ei
            if et is not None:
                data[edge_type].edge_type = et
            if attr is not None:
                data[edge_type].edge_attr = attr
        if r.semantic_edge_index is not None:
            data[SEMANTIC_EDGE].edge_index = r.semantic_edge_index
            data[SEMANTIC_EDGE].edge_type = r.semantic_edge_type
        # Token nodes and dependency edges.
        tokens = list(parsed.tokens)
        ids = self.vocab.encode(tokens)
        dep_index, dep_type = dependency_edges(parsed, reverse=self.reverse_dep)
        if self.add_cls:
            ids = [self.vocab["<cls>"], *ids]
            dep_index = dep_index + 1
        data[TOKEN].x = torch.tensor(ids, dtype=torch.long)
        data[TOKEN].pos = torch.arange(len(ids))
        data[TOKEN].num_nodes = len(ids)
        data[DEP_EDGE].edge_index = dep_index
        data[DEP_EDGE].edge_type = dep_type
        # Cross-modal edges, and the grounding (computed once when both need it).
        grounded = self._grounded(s, parsed) if self.grounding or self.cross == "grounded" else None
        cross = self._cross(s, parsed, grounded)
        token_shift = torch.tensor([[int(self.add_cls)], [0]])  # past the <cls> node
        if self.add_cls:
            # The text node joins every region: it is the text's summary.
            cls_edges = cross_edges.complete_cross_edges(1, r.num_regions)
            cross = torch.cat([cls_edges, cross + token_shift], dim=1)
        data[TOKEN_TO_REGION].edge_index = cross
        data[REGION_TO_TOKEN].edge_index = cross_edges.flip(cross)
        if self.grounding:
            data[GROUNDING_EDGE].edge_index = grounded + token_shift
        # Graph level.
        data.sample_id = s.sample_id
        data.text = s.text
        data.tokens = tokens
        data.image_size = torch.tensor([r.image_size], dtype=torch.float)
        if s.y is not None:
            data.y = s.y if isinstance(s.y, Tensor) else torch.tensor([s.y])
        for key, value in s.extra.items():
            data[key] = value
        return data

    def _grounded(self, s: Sample, parsed: ParsedText) -> Tensor:
        """Token -> region pairs of the sample's grounding spans; none without grounding."""
        if not s.grounding:
            return torch.empty(2, 0, dtype=torch.long)
        return cross_edges.grounded_cross_edges(parsed.spans, s.grounding, s.regions.num_regions, s.sample_id)

    def _cross(self, s: Sample, parsed: ParsedText, grounded: Optional[Tensor]) -> Tensor:
        num_tokens, num_regions = len(parsed.tokens), s.regions.num_regions
        if self.cross == "complete":
            return cross_edges.complete_cross_edges(num_tokens, num_regions)
        if self.cross == "topk":
            scores = self.cross_scorer(s, parsed)
            if tuple(scores.shape) != (num_tokens, num_regions):
                raise InputError(
                    f"{sample_prefix(s.sample_id)}cross_scorer returned shape {tuple(scores.shape)}, "
                    f"expected [tokens, regions] = [{num_tokens}, {num_regions}]"
                )
            return cross_edges.topk_cross_edges(scores, self.cross_k)
        if s.grounding is None:
            raise InputError(
                f"{sample_prefix(s.sample_id)}cross='grounded' needs sample.grounding "
                "([{'start', 'end', 'object'}] spans); use cross='complete' for ungrounded data"
            )
        return grounded


def _check_sample(s: Sample) -> None:
    if not isinstance(s, Sample):
        raise InputError(f"GraphBuilder takes Sample objects (or raw HeteroData), got {type(s).__name__}")
    if not isinstance(s.text, str) or not s.text.strip():
        raise InputError(
            f"{sample_prefix(s.sample_id)}the text is empty or whitespace ({s.text!r}); "
            "every sample needs a question or caption"
        )
    if not isinstance(s.regions, Regions):
        raise InputError(
            f"{sample_prefix(s.sample_id)}sample.regions must be a Regions object "
            "(see regions_from_detections / regions_from_feature_map / regions_from_scene_graph)"
        )


def _check_feature_sizes(samples: Sequence[Sample]) -> None:
    """Region feature sizes must agree inside a batch: PyG cannot stack [R, D] of different D."""
    first = None
    for s in samples:
        f = s.regions.features
        d = None if f is None else f.size(-1)
        if first is None:
            first = (s.sample_id, d)
        elif d != first[1]:
            raise InputError(
                f"{sample_prefix(s.sample_id)}region features have size {d}, but sample {first[0]!r} in the "
                f"same batch has {first[1]}; use one feature extractor for the whole data set"
            )


def sample_to_data(sample: Sample) -> HeteroData:
    """The raw form of a sample as a ``HeteroData`` (pixel boxes, text, no
    edges), for data sets that store raw samples and build graphs in their
    ``transform``. :meth:`GraphBuilder.forward` accepts it."""
    r = sample.regions
    data = HeteroData()
    data[REGION].box_px = r.boxes
    data[REGION].num_nodes = r.num_regions
    for key in ("features", "labels", "attrs"):
        value = getattr(r, key)
        if value is not None:
            data[REGION][key] = value
    if r.semantic_edge_index is not None:
        data[SEMANTIC_EDGE].edge_index = r.semantic_edge_index
        data[SEMANTIC_EDGE].edge_type = r.semantic_edge_type
    data.image_size = torch.tensor([r.image_size], dtype=torch.float)
    data.text = sample.text
    data.sample_id = sample.sample_id
    data.region_names = r.names
    data.grounding = sample.grounding
    if sample.y is not None:
        data.y = sample.y
    for key, value in sample.extra.items():
        data[key] = value
    return data


_RAW_KEYS = {"image_size", "text", "sample_id", "region_names", "grounding", "y"}


def sample_from_data(data: HeteroData) -> Sample:
    """Inverse of :func:`sample_to_data`."""
    sid = data.get("sample_id")
    if "box_px" not in data[REGION] or "text" not in data:
        raise InputError(
            f"{sample_prefix(sid)}GraphBuilder got a HeteroData that is not a raw sample (it needs "
            "data['region'].box_px and data.text); make it with mmgraph.graph.sample_to_data"
        )
    store = data[REGION]
    sem = data[SEMANTIC_EDGE] if SEMANTIC_EDGE in data.edge_types else None
    w, h = data.image_size.view(-1).tolist()
    regions = Regions(
        boxes=store.box_px,
        image_size=(w, h),
        features=store.get("features"),
        labels=store.get("labels"),
        attrs=store.get("attrs"),
        semantic_edge_index=None if sem is None else sem.edge_index,
        semantic_edge_type=None if sem is None else sem.edge_type,
        names=data.get("region_names"),
        sample_id=sid,
    )
    graph_level = data.stores[0]  # the global store: graph-level attributes
    extra = {k: graph_level[k] for k in graph_level.keys() if k not in _RAW_KEYS}
    return Sample(regions, data.text, sid, data.get("y"), data.get("grounding"), extra)


def truncate_parse(parsed: ParsedText, max_tokens: int) -> ParsedText:
    """The first ``max_tokens`` tokens; a token whose head was cut off becomes a root."""
    heads = tuple(h if h < max_tokens else i for i, h in enumerate(parsed.heads[:max_tokens]))
    labels = tuple(
        lab if h < max_tokens else "ROOT"
        for lab, h in zip(parsed.labels[:max_tokens], parsed.heads[:max_tokens])
    )
    spans = None if parsed.spans is None else tuple(parsed.spans[:max_tokens])
    return replace(parsed, tokens=tuple(parsed.tokens[:max_tokens]), heads=heads, labels=labels, spans=spans)
