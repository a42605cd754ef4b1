"""The multi-modal graph encoder: input encoders, L fusion blocks, per-modality pooling and fusion.

Variants (``MMGraphEncoderConfig.variant``), for the ablations of the paper:

* ``graph`` (ours): every block runs relation-aware message passing inside
  each modality (:class:`~mmgraph.nn.RelationGATConv` over spatial /
  implicit / semantic region edges and dependency edges) and cross-modal
  attention between them (:class:`~mmgraph.nn.FusionBlock`), in the manner of
  ReGAT (`Li et al. 2019 <https://arxiv.org/abs/1903.12314>`_) inside the
  two-stream layout of LXMERT (`Tan & Bansal 2019 <https://arxiv.org/abs/1908.07490>`_);
* ``single_stream``: UNITER-style (`Chen et al. 2020 <https://arxiv.org/abs/1909.11740>`_)
  full self-attention over each graph's regions and tokens together, no edges;
* ``no_cross``: late fusion, intra-modal message passing only, the pooled
  vectors are fused at the end;
* ``no_graph``: cross-modal attention only, no intra-modal message passing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch, HeteroData

from mmgraph.errors import ConfigError, InputError
from mmgraph.graph.boxes import box_centers
from mmgraph.nn import (
    AttentionPooling,
    FusionBlock,
    GlobalNodePooling,
    ModalityEmbedding,
    SingleStreamBlock,
    scatter_mean,
)
from mmgraph.nn.encoders import GridBackbone, PixelRegionEncoder, RegionEncoder, TokenEncoder
from mmgraph.typing import (
    CROSS_EDGE_TYPES,
    DEP_EDGE,
    GEOMETRY_DIM,
    GROUNDING_EDGE,
    IMPLICIT_EDGE,
    NUM_DEP_LABELS,
    NUM_SPATIAL_CLASSES,
    REGION,
    SEMANTIC_EDGE,
    SPATIAL_EDGE,
    TOKEN,
    EdgeType,
    OptTensor,
)

__all__ = ["MMGraphEncoderConfig", "MMGraphEncoder", "EncoderOutput", "VARIANTS", "grounding_target"]

VARIANTS = ("graph", "single_stream", "no_cross", "no_graph")
POOLINGS = ("attention", "mean", "global")
FUSIONS = ("sum", "product")
CROSS_MODES = ("auto", "complete", "edges")
# Region edge types whose edge_attr is the relative box geometry.
GEOMETRY_EDGES = (SPATIAL_EDGE, IMPLICIT_EDGE)


@dataclass
class MMGraphEncoderConfig:
    """Settings of :class:`MMGraphEncoder`; every field has a working default
    except the input sizes the data decides (``vocab_size``, ``num_labels``, ...)."""

    # Model size.
    hidden: int = 256  # size of every node state and pooled vector
    layers: int = 4  # number of fusion blocks
    heads: int = 8  # attention heads (must divide hidden)
    dropout: float = 0.1  # on attention weights, residual branches, FFNs and input embeddings
    ffn_ratio: int = 4  # FFN inner size over hidden
    variant: str = "graph"  # "graph" | "single_stream" | "no_cross" | "no_graph" (module docstring)

    # Region input: any subset of features, labels + attributes, boxes; or pixels.
    region_feature_dim: Optional[int] = None  # size of data['region'].x; -1: lazy; None: regions carry no x
    num_labels: Optional[int] = None  # object label ids of scene-graph regions; None: labels unused
    num_attrs: Optional[int] = None  # attribute ids (data['region'].attr, -1 padded); None: unused
    # Concept tying (RegionEncoder): label / attribute id -> id of the same word in the token
    # vocabulary, -1 where it has none (model_kwargs_from_dataset gives both from the data).
    label_token_ids: Optional[List[int]] = None
    attr_token_ids: Optional[List[int]] = None
    tie_concepts: bool = True  # embed mapped labels / attributes with the token word embedding
    # LayerNorm each region input (features, label, attrs, box) before the sum (LXMERT); False: one
    # norm of the raw sum, where the box term dominates (46% -> 53% test accuracy on the quickstart data).
    region_part_norm: bool = True
    box_dim: Optional[int] = 5  # box embedding: 5 = xyxy + area, 4 = xyxy, None = none
    box_frequencies: int = 0  # sinusoidal bands per box value (nn.encoders.box_features); 0: raw values
    pixels: bool = False  # regions are the grid cells of data.image; a GridBackbone computes their features
    grid: int = 8  # side of the backbone's output grid (the data set's grid)
    backbone_channels: Tuple[int, ...] = (32, 64)  # widths of the backbone's strided blocks before the last

    # Token input: vocabulary ids, precomputed features, or a local pretrained text encoder.
    vocab_size: Optional[int] = None  # len(vocab) for token ids in data['token'].x
    token_feature_dim: Optional[int] = None  # size of float token features in data['token'].x; -1: lazy
    max_positions: int = 128  # position embeddings (>= the builder's max_tokens, + 1 with add_cls)
    text_model_dir: Optional[str] = None  # local Hugging Face folder -> PretrainedTokenFeatures on data.text
    text_freeze: bool = True  # keep the pretrained text encoder fixed
    text_pooling: str = "mean"  # how word pieces pool onto tokens: "mean" | "first" | "max"

    # Intra-modal edges: the types used when the batch has them (others are ignored).
    edge_types: Tuple[EdgeType, ...] = (SPATIAL_EDGE, IMPLICIT_EDGE, SEMANTIC_EDGE, DEP_EDGE)
    num_predicates: Optional[int] = (
        None  # semantic edge classes (predicate vocabulary size); None: no semantic
    )
    geometry: bool = True  # feed the relative box geometry (edge_attr) of spatial / implicit edges
    num_bases: Optional[int] = None  # relation-specific message matrices through this many bases

    # Cross-modal edges: "complete" ignores the batch's cross edges and attends to every node of
    # the other modality (dense fast path); "edges" follows the batch's cross edges (top-k or
    # grounded; the layer still detects complete ones); "auto" is "complete" when the batch's cross
    # edges number sum_g R_g * T_g (the builder never repeats an edge), "edges" otherwise.
    cross: str = "auto"
    cond: bool = True  # question-conditioned region attention and region pooling (the pooled tokens)
    pooling: str = "attention"  # per-modality readout: "attention" | "mean" | "global" (virtual node)
    glimpses: int = 1  # attention pooling of regions: independent softmax glimpses, concatenated
    # With cond: each block is conditioned on its own attention pooling of the tokens, steered by the
    # question mean (LCGN's per-step textual command), in place of the question mean itself.
    control: bool = False
    # Off here (the plain layers); graph_vqa turns all three on and the other VQA models the count
    # (mmgraph.models.vqa), as they help VQA: on the synthetic scene-graph benchmark the count added
    # ~5 points, the gate took graph_vqa from 65.7% to 78%, and the order won three trials of three.
    count: bool = False  # attention pooling of regions also sums sigmoid-gated nodes (soft count); attention pooling only
    intra_gate: bool = False  # intra-modal updates scaled by a learnable scalar that starts at 0 (ReZero)
    cross_first: bool = False  # each block: cross attention, then message passing (LXMERT's order)
    fusion: str = "sum"  # fused vector: "sum" (MCAN) | "product" (Hadamard, MLB / bottom-up attention)
    # Each block also runs a token -> region PointerAttention (each word's softmax over the regions,
    # its value sent to the regions it picks); graph and no_graph variants. A VQA model's
    # align_weight supervises its weights with the data's grounding (mmgraph.heads.alignment_loss).
    pointer: bool = False
    # The question (cond) also steers the geometry term of the region relation layers' attention
    # (RelationGATConv(cond_geometry=True)): "closest to" and "furthest from" want opposite preferences.
    cond_geometry: bool = False
    # With intra_gate: each graph's gate also depends on its question (FusionBlock(cond_gate=True)).
    cond_gate: bool = False
    # With pointer: each word also reads the regions it picks, with the pointer's weights
    # (PointerAttention(readback=True)); a word the alignment loss grounds carries its object's state.
    pointer_readback: bool = False
    # Spatial / implicit edges' geometry also carries the signed centre offset in image units
    # (source minus target, from the normalised boxes, times SIGNED_OFFSET_SCALE): "left of" is then a
    # linear threshold; the relative geometry keeps only the offset's size, in the target box's units.
    signed_offset: bool = False

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("variant", self.variant, VARIANTS),
            ("pooling", self.pooling, POOLINGS),
            ("fusion", self.fusion, FUSIONS),
            ("cross", self.cross, CROSS_MODES),
        ):
            if value not in allowed:
                raise ConfigError(
                    f"MMGraphEncoderConfig.{name}={value!r} is unknown; choose from {list(allowed)}."
                )
        if self.hidden % self.heads != 0:
            raise ConfigError(
                f"MMGraphEncoderConfig: hidden={self.hidden} is not divisible by heads={self.heads}."
            )
        if self.glimpses != 1 and self.pooling != "attention":
            raise ConfigError(
                f"MMGraphEncoderConfig: glimpses > 1 needs pooling='attention', got pooling={self.pooling!r}."
            )
        if self.layers < 0:
            raise ConfigError(f"MMGraphEncoderConfig.layers must be >= 0, got {self.layers}.")
        if self.box_frequencies < 0:
            raise ConfigError(
                f"MMGraphEncoderConfig.box_frequencies must be >= 0, got {self.box_frequencies}."
            )
        if self.pointer and self.variant not in ("graph", "no_graph"):
            raise ConfigError(
                f"MMGraphEncoderConfig: pointer=True is part of the cross-modal sub-layer of the graph and "
                f"no_graph variants; variant={self.variant!r} has none. Set pointer=False."
            )
        if self.pointer_readback and not self.pointer:
            raise ConfigError(
                "MMGraphEncoderConfig: pointer_readback=True reads back the pointer channel's picks; it needs "
                "pointer=True."
            )
        if self.control and not (self.cond and self.variant in ("graph", "no_cross")):
            raise ConfigError(
                "MMGraphEncoderConfig: control=True gives each block its own question condition; it needs "
                f"cond=True and a variant with message passing ('graph' or 'no_cross'), got cond={self.cond}, "
                f"variant={self.variant!r}."
            )
        if self.cond_gate and not (self.intra_gate and self.cond):
            raise ConfigError(
                "MMGraphEncoderConfig: cond_gate=True makes the intra_gate depend on the question; it needs "
                f"intra_gate=True and cond=True (got intra_gate={self.intra_gate}, cond={self.cond})."
            )
        if self.vocab_size is None and self.token_feature_dim is None and self.text_model_dir is None:
            raise ConfigError(
                "MMGraphEncoderConfig: set vocab_size (token ids, len(dataset.vocab)), token_feature_dim "
                "(float token features) or text_model_dir (a local pretrained text encoder)."
            )
        self.edge_types = tuple(tuple(edge_type) for edge_type in self.edge_types)
        self.backbone_channels = tuple(self.backbone_channels)
        for name, ids, size in (
            ("label_token_ids", self.label_token_ids, self.num_labels),
            ("attr_token_ids", self.attr_token_ids, self.num_attrs),
        ):
            if ids is None:
                continue
            ids = [int(i) for i in ids]
            setattr(self, name, ids)
            if size is not None and len(ids) != size:
                raise ConfigError(
                    f"MMGraphEncoderConfig.{name} has {len(ids)} entries for {size} ids; give one token id "
                    "(or -1) per id (model_kwargs_from_dataset(dataset) builds it)."
                )
            if self.vocab_size is not None and any(i < -1 or i >= self.vocab_size for i in ids):
                raise ConfigError(
                    f"MMGraphEncoderConfig.{name} holds ids outside -1..{self.vocab_size - 1} "
                    f"(vocab_size={self.vocab_size}); rebuild it from the data set's vocabularies."
                )

    def ties_concepts(self) -> bool:
        """Whether region labels / attributes share the token word embedding: ``tie_concepts``, a
        map, scene-graph (not pixel) regions and token ids (not pretrained features)."""
        return (
            self.tie_concepts
            and not self.pixels
            and self.vocab_size is not None
            and self.text_model_dir is None
            and (self.label_token_ids is not None or self.attr_token_ids is not None)
        )

    def num_relations(self) -> Dict[EdgeType, int]:
        """``{edge_type: relation classes}`` of the intra-modal edge types in use."""
        classes = {
            SPATIAL_EDGE: NUM_SPATIAL_CLASSES,
            IMPLICIT_EDGE: 1,
            SEMANTIC_EDGE: self.num_predicates,
            DEP_EDGE: 2 * NUM_DEP_LABELS,  # labels, then their reverse ids
        }
        out = {}
        for edge_type in self.edge_types:
            if edge_type not in classes:
                raise ConfigError(
                    f"MMGraphEncoderConfig.edge_types lists {edge_type}, which is not an intra-modal edge type "
                    f"of mmgraph.typing; choose from {list(classes)}."
                )
            if classes[edge_type] is not None:
                out[edge_type] = classes[edge_type]
        return out

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


class EncoderOutput(NamedTuple):
    """What :meth:`MMGraphEncoder.forward_features` returns.

    Shapes:
        - **x_dict:** ``{node_type: [N_t, hidden]}`` final node states
        - **region**, **token:** ``[B, hidden]`` pooled per modality
        - **fused:** ``[B, hidden]``
        - **pointer:** with ``forward_features(data, return_pointer=True)``
          and ``config.pointer``, one ``(edge_index, alpha)`` per block: the
          token -> region pointer attention, ``alpha`` ``[E, heads]``; else ``None``
    """

    x_dict: Dict[str, Tensor]
    region: Tensor
    token: Tensor
    fused: Tensor
    pointer: Optional[List[Tuple[Tensor, Tensor]]] = None


class MMGraphEncoder(nn.Module):
    r"""Encodes a batch of vision-and-language graphs into per-node states,
    pooled region and token vectors, and a fused vector:

    .. math::
        \mathbf{X}^{(0)}_{\mathrm{region}} = \mathrm{RegionEnc}(\cdot),\quad
        \mathbf{X}^{(0)}_{\mathrm{token}} = \mathrm{TokenEnc}(\cdot),\quad
        \mathbf{X}^{(l)} = \mathrm{Block}_l\big(\mathbf{X}^{(l-1)}, \mathcal{E}, \mathbf{q}^{(l-1)}\big)

        \mathbf{t}_g = \mathrm{Pool}_{\mathrm{token}}\big(\mathbf{X}^{(L)}_{\mathrm{token}}\big),\quad
        \mathbf{r}_g = \mathrm{Pool}_{\mathrm{region}}\big(\mathbf{X}^{(L)}_{\mathrm{region}} \mid \mathbf{t}_g\big),\quad
        \mathbf{f}_g = \mathrm{LN}(\mathbf{W}_r\mathbf{r}_g + \mathbf{W}_t\mathbf{t}_g)

    where :math:`\mathbf{q}^{(l)}` is the mean of the token states of each
    graph (the question summary that conditions the region attention, as
    LCGN's per-step control vector does) and the block is chosen by
    ``config.variant`` (see the module docstring). With ``config.control``
    each block has its own condition in place of that mean: LCGN's textual
    command (`Hu et al. 2019 <https://arxiv.org/abs/1905.04405>`_), an
    attention pooling of the token states steered by their mean,
    :math:`\mathbf{c}^{(l)}_g = \mathrm{Pool}^{(l)}_{\mathrm{token}}\big(
    \mathbf{X}^{(l-1)}_{\mathrm{token}} \mid \mathbf{q}^{(l-1)}_g\big)`, so that
    the blocks of a two-hop question can read its two relations in turn. With
    ``config.fusion="product"`` the fused vector is the Hadamard product of
    low-rank bilinear pooling (MLB, `Kim et al. 2017
    <https://arxiv.org/abs/1610.04325>`_; the fusion of bottom-up-attention
    VQA), :math:`\mathbf{f}_g = \mathrm{LN}(\tanh(\mathbf{W}_r\mathbf{r}_g)
    \odot \tanh(\mathbf{W}_t\mathbf{t}_g))`, in place of MCAN's sum.

    Region inputs are embedded by :class:`~mmgraph.nn.RegionEncoder`; with
    ``config.region_part_norm`` each input (features, label, attributes, box)
    is layer-normed before the sum, as LXMERT's object encoder does, so that
    the box projection (about 15x the scale of freshly initialised
    embeddings) does not drown the label and attributes. With
    ``config.label_token_ids`` / ``attr_token_ids`` and ``tie_concepts``, labels
    and attributes share the token word embedding (concept tying, see
    :class:`~mmgraph.nn.RegionEncoder`). Node and edge types are
    read from the batch by the constants of :mod:`mmgraph.typing`; edge types
    the batch lacks are skipped.

    Args:
        config (MMGraphEncoderConfig): The settings.

    Shapes:
        - **input:** a PyG :class:`~torch_geometric.data.Batch` of
          :class:`~torch_geometric.data.HeteroData` graphs (or one graph)
          as :class:`~mmgraph.graph.GraphBuilder` makes them
        - **output:** :class:`EncoderOutput`
    """

    def __init__(self, config: MMGraphEncoderConfig):
        super().__init__()
        self.config = config
        c = config
        hidden = c.hidden
        text_features = None
        token_feature_dim = c.token_feature_dim
        if c.text_model_dir is not None:
            from mmgraph.nn.text_features import PretrainedTokenFeatures

            text_features = PretrainedTokenFeatures(
                c.text_model_dir, freeze=c.text_freeze, pooling=c.text_pooling
            )
            token_feature_dim = text_features.out_channels
        token_encoder = TokenEncoder(
            c.vocab_size if c.text_model_dir is None else None,
            hidden,
            max_positions=c.max_positions,
            feature_dim=token_feature_dim,
            dropout=c.dropout,
        )
        if c.pixels:
            backbone = GridBackbone(hidden, grid=c.grid, channels=c.backbone_channels)
            self.region_encoder = PixelRegionEncoder(
                backbone, hidden, feature_dim=hidden, box_dim=c.box_dim, box_frequencies=c.box_frequencies
            )
        else:
            tie = c.ties_concepts()
            self.region_encoder = RegionEncoder(
                hidden,
                feature_dim=c.region_feature_dim,
                num_labels=c.num_labels,
                num_attrs=c.num_attrs,
                box_dim=c.box_dim,
                box_frequencies=c.box_frequencies,
                dropout=c.dropout,
                # The token encoder owns the shared table; the region encoder only reads it.
                concept_emb=token_encoder.word_emb if tie else None,
                label_token_ids=c.label_token_ids if tie and c.num_labels is not None else None,
                attr_token_ids=c.attr_token_ids if tie and c.num_attrs is not None else None,
                part_norm=c.region_part_norm,
            )
        self.text_features = text_features
        self.token_encoder = token_encoder

        self.num_relations = c.num_relations() if c.variant in ("graph", "no_cross") else {}
        self.uses_cond = c.cond and c.variant in ("graph", "no_cross") and bool(self.num_relations)
        self.modality = ModalityEmbedding(hidden) if c.variant == "single_stream" else None
        blocks: List[nn.Module] = []
        for _ in range(c.layers):
            if c.variant == "single_stream":
                blocks.append(SingleStreamBlock(hidden, c.heads, dropout=c.dropout, ffn_ratio=c.ffn_ratio))
            else:
                geo_dim = GEOMETRY_DIM + 2 * c.signed_offset
                edge_dim = {t: geo_dim for t in self.num_relations if t in GEOMETRY_EDGES and c.geometry}
                blocks.append(
                    FusionBlock(
                        hidden,
                        c.heads,
                        self.num_relations,
                        edge_dim=edge_dim,
                        cond_dim=hidden if self.uses_cond else None,
                        dropout=c.dropout,
                        ffn_ratio=c.ffn_ratio,
                        intra=c.variant != "no_graph",
                        cross=c.variant != "no_cross",
                        num_bases=c.num_bases,
                        intra_gate=c.intra_gate,
                        cross_first=c.cross_first,
                        pointer=c.pointer,
                        cond_geometry=c.cond_geometry,
                        cond_gate=c.cond_gate and self.uses_cond,
                        pointer_readback=c.pointer_readback,
                    )
                )
        self.blocks = nn.ModuleList(blocks)
        self.controls = (
            nn.ModuleList([AttentionPooling(hidden, cond_dim=hidden) for _ in range(c.layers)])
            if c.control and self.uses_cond
            else None
        )
        # Pre-norm blocks leave the residual stream unnormalised: one last norm per modality.
        self.norm_out = nn.ModuleDict({REGION: nn.LayerNorm(hidden), TOKEN: nn.LayerNorm(hidden)})

        region_cond = hidden if c.cond else None
        if c.pooling == "attention":
            self.pool_token = AttentionPooling(hidden)
            self.pool_region = AttentionPooling(
                hidden, cond_dim=region_cond, count=c.count, glimpses=c.glimpses
            )
        elif c.pooling == "global":
            self.pool_token = GlobalNodePooling(hidden, c.heads)
            self.pool_region = GlobalNodePooling(hidden, c.heads, cond_dim=region_cond)
        else:
            self.pool_token = self.pool_region = None
        self.fuse_region = nn.Linear(hidden, hidden)
        self.fuse_token = nn.Linear(hidden, hidden)
        self.fuse_norm = nn.LayerNorm(hidden)

    @property
    def hidden(self) -> int:
        return self.config.hidden

    # ----------------------------------------------------------------- inputs
    def encode_inputs(self, data: HeteroData) -> Tuple[Dict[str, Tensor], Dict[str, Tensor], int]:
        """Embeds the region and token nodes: ``(x_dict, batch_dict, num_graphs)``."""
        num_graphs = data.num_graphs if isinstance(data, Batch) else 1
        batch_dict = {node_type: _batch_vector(data, node_type) for node_type in (REGION, TOKEN)}
        region = data[REGION]
        box = region.get("box") if self.config.box_dim is not None else None
        if self.config.pixels:
            image = data.get("image")
            if image is None:
                raise InputError(
                    "MMGraphEncoder: config.pixels=True but the batch has no image; build the data set with "
                    "regions='pixels' (SyntheticVQA(..., regions='pixels'))."
                )
            x_region = self.region_encoder(image, box, batch_dict[REGION], num_graphs)
        else:
            x_region = self.region_encoder(
                x=region.get("x"), box=box, label=region.get("label"), attr=region.get("attr")
            )
        token = data[TOKEN]
        if self.text_features is not None:
            x_token = self.token_encoder(self._pretrained_features(data, token.num_nodes), token.get("pos"))
        else:
            x_token = self.token_encoder(token.x, token.get("pos"))
        return {REGION: x_region, TOKEN: x_token}, batch_dict, num_graphs

    def _pretrained_features(self, data: HeteroData, num_tokens: int) -> Tensor:
        texts, tokens = data.get("text"), data.get("tokens")
        if texts is None or tokens is None:
            raise InputError(
                "MMGraphEncoder: config.text_model_dir needs data.text and data.tokens on every graph "
                "(GraphBuilder stores both)."
            )
        if isinstance(texts, str):  # one graph, not a batch
            texts, tokens = [texts], [tokens]
        words = sum(len(t) for t in tokens)
        if num_tokens not in (words, words + len(texts)):
            raise InputError(
                f"MMGraphEncoder: the batch has {num_tokens} token nodes but its data.tokens list {words} "
                "words; the pretrained text features need one node per word (plus one <cls> node per "
                "graph with GraphBuilder(add_cls=True))."
            )
        return self.text_features(texts, tokens=tokens, cls=num_tokens != words)

    def edge_dicts(self, data: HeteroData, batch_dict: Dict[str, Tensor]):
        """``(edge_index_dict, edge_type_dict, edge_attr_dict)`` of the edge types in use."""
        edge_index_dict: Dict[EdgeType, Optional[Tensor]] = {}
        edge_type_dict: Dict[EdgeType, Tensor] = {}
        edge_attr_dict: Dict[EdgeType, Tensor] = {}
        present = set(data.edge_types)
        for edge_type in self.num_relations:
            if edge_type not in present:
                continue
            store = data[edge_type]
            edge_index_dict[edge_type] = store.edge_index
            if "edge_type" in store:
                edge_type_dict[edge_type] = store.edge_type
            if "edge_attr" in store and self.config.geometry:
                attr = store.edge_attr
                if self.config.signed_offset and edge_type in GEOMETRY_EDGES:
                    attr = torch.cat([attr, _signed_offset(data[REGION].box, store.edge_index)], dim=-1)
                edge_attr_dict[edge_type] = attr
        mode = self.config.cross
        for edge_type in CROSS_EDGE_TYPES:
            if mode == "complete":
                edge_index_dict[edge_type] = None
            elif edge_type in present:
                edge_index = data[edge_type].edge_index
                if mode == "auto" and _is_complete_count(edge_index, batch_dict):
                    edge_index = None
                edge_index_dict[edge_type] = edge_index
        return edge_index_dict, edge_type_dict, edge_attr_dict

    # ---------------------------------------------------------------- forward
    def forward_features(self, data: HeteroData, return_pointer: bool = False) -> EncoderOutput:
        """Runs the encoder on a batch (or one graph); see the class docstring. With
        ``return_pointer=True`` (and ``config.pointer``) the output's ``pointer`` holds each block's
        token -> region pointer weights."""
        x_dict, batch_dict, num_graphs = self.encode_inputs(data)
        pointer: Optional[List[Tuple[Tensor, Tensor]]] = (
            [] if return_pointer and self.config.pointer else None
        )
        if self.modality is not None:
            x_dict[REGION], x_dict[TOKEN] = self.modality(x_dict[REGION], x_dict[TOKEN])
            for block in self.blocks:
                x_dict[REGION], x_dict[TOKEN] = block(
                    x_dict[REGION], x_dict[TOKEN], batch_dict[REGION], batch_dict[TOKEN]
                )
        else:
            edge_index_dict, edge_type_dict, edge_attr_dict = self.edge_dicts(data, batch_dict)
            for index, block in enumerate(self.blocks):
                cond = (
                    self._question(x_dict[TOKEN], batch_dict[TOKEN], num_graphs) if self.uses_cond else None
                )
                if self.controls is not None:
                    # This block's command: the words its softmax picks, steered by the question mean.
                    cond = self.controls[index](
                        x_dict[TOKEN], batch_dict[TOKEN], cond=cond, num_graphs=num_graphs
                    )
                if pointer is None:
                    x_dict = block(x_dict, edge_index_dict, edge_type_dict, edge_attr_dict, batch_dict, cond)
                    continue
                x_dict, weights = block(
                    x_dict,
                    edge_index_dict,
                    edge_type_dict,
                    edge_attr_dict,
                    batch_dict,
                    cond,
                    return_pointer=True,
                )
                if weights is not None:
                    pointer.append(weights)
        x_dict = {node_type: self.norm_out[node_type](x) for node_type, x in x_dict.items()}
        token = self._pool(self.pool_token, x_dict[TOKEN], batch_dict[TOKEN], None, num_graphs)
        region_cond = token if self.config.cond else None
        region = self._pool(self.pool_region, x_dict[REGION], batch_dict[REGION], region_cond, num_graphs)
        if self.config.fusion == "product":
            fused = self.fuse_norm(torch.tanh(self.fuse_region(region)) * torch.tanh(self.fuse_token(token)))
        else:
            fused = self.fuse_norm(self.fuse_region(region) + self.fuse_token(token))
        return EncoderOutput(x_dict, region, token, fused, pointer)

    def forward(self, data: HeteroData, return_pointer: bool = False) -> EncoderOutput:
        return self.forward_features(data, return_pointer=return_pointer)

    @staticmethod
    def _question(x_token: Tensor, batch_token: Tensor, num_graphs: int) -> Tensor:
        return scatter_mean(x_token, batch_token, num_graphs)  # [B, hidden]

    @staticmethod
    def _pool(
        pool: Optional[nn.Module], x: Tensor, batch: Tensor, cond: OptTensor, num_graphs: int
    ) -> Tensor:
        if pool is None:
            return scatter_mean(x, batch, num_graphs)
        return pool(x, batch, cond=cond, num_graphs=num_graphs)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"{self.__class__.__name__}(variant={c.variant!r}, hidden={c.hidden}, layers={c.layers}, "
            f"heads={c.heads}, relations={[t[1] for t in self.num_relations]})"
        )


SIGNED_OFFSET_SCALE = 10.0  # the offsets' unit: a tenth of the image side


def _signed_offset(box: Tensor, edge_index: Tensor) -> Tensor:
    """``[E, 2]``: source centre minus target centre of each edge, normalised boxes, in tenths of the image."""
    centre = box_centers(box)
    return (
        centre.index_select(0, edge_index[0]) - centre.index_select(0, edge_index[1])
    ) * SIGNED_OFFSET_SCALE


def grounding_target(batch: HeteroData, owner: str) -> Tensor:
    """The batch's word-region grounding pairs ``[2, M]`` (token, region), the target of an
    alignment loss; a clear error where the graphs were built without them."""
    if GROUNDING_EDGE not in batch.edge_types:
        raise InputError(
            f"{owner}: align_weight > 0 needs the grounding edges {GROUNDING_EDGE} in every batch; build the "
            "graphs with GraphBuilder(grounding=True) from samples with grounding spans (data.grounding=true "
            "in a run config), or set align_weight=0."
        )
    return batch[GROUNDING_EDGE].edge_index


def _batch_vector(data: HeteroData, node_type: str) -> Tensor:
    """The node-to-graph vector of ``node_type``; all 0 for a single graph."""
    store = data[node_type]
    batch = store.get("batch")
    if batch is not None:
        return batch
    return torch.zeros(store.num_nodes or 0, dtype=torch.long, device=_device_of(data))


def _device_of(data: HeteroData) -> torch.device:
    for store in data.node_stores:
        for value in store.values():
            if isinstance(value, Tensor):
                return value.device
    return torch.device("cpu")


def _is_complete_count(edge_index: Tensor, batch_dict: Dict[str, Tensor]) -> bool:
    """Whether there are exactly ``sum_g R_g * T_g`` cross edges: complete, as the builder never repeats an edge."""
    batch_region, batch_token = batch_dict[REGION], batch_dict[TOKEN]
    size = max(
        int(batch_region.max()) + 1 if batch_region.numel() else 0,
        int(batch_token.max()) + 1 if batch_token.numel() else 0,
    )
    count_region = torch.bincount(batch_region, minlength=size)
    count_token = torch.bincount(batch_token, minlength=size)
    return edge_index.size(1) == int((count_region * count_token).sum())
