r"""Baselines: a text-only model, the CNN+MLP and Relation Network of Santoro
et al., and a bag-of-words dual encoder for retrieval.

* ``question_only``: the answer from the question alone (the language prior
  every VQA paper reports, e.g. `Goyal et al. 2017 <https://arxiv.org/abs/1612.00837>`_).
* ``cnn_mlp`` and ``relation_network``: "A simple neural network module for
  relational reasoning" (`Santoro et al. 2017 <https://arxiv.org/abs/1706.01427>`_),
  sizes as in its Sort-of-CLEVR code (``kimhc6028/relational-networks``,
  ``model.py``): a CNN of four stride-2 ``3x3`` convolutions with 24 channels;
  :math:`g_\theta` four layers of 256; :math:`f_\phi` 256, 256 (dropout 0.5),
  answers; CNN+MLP a 256 layer on the flattened map and the question, then the
  same output layers. The convolutions are :class:`~mmgraph.nn.encoders.GridBackbone`
  blocks (batch norm before the ReLU, where the reference normalises after it)
  pooled to the data set's grid, so any image size works.
* ``bow_retrieval``: a bag-of-words dual encoder: the text is the mean of its
  word embeddings, the image its region embeddings mean-pooled.

**Question embedding.** Sort-of-CLEVR codes questions as 11-bit vectors;
our questions are text, so the VQA baselines read them as Santoro et al. do on
CLEVR: an LSTM (``question_dim=128``) over learned word embeddings
(``word_dim=32``), its last hidden state the question vector;
``question="mean"`` takes the projected mean of the word embeddings instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence
from torch_geometric.data import Batch, HeteroData
from torch_geometric.utils import to_dense_batch

from mmgraph.errors import ConfigError, InputError
from mmgraph.models.registry import build_config, register_model
from mmgraph.models.retrieval import DualFeatures, RetrievalBase, check_retrieval_config
from mmgraph.models.vqa import VQABase, check_vqa_config
from mmgraph.nn import scatter_mean
from mmgraph.nn.encoders import GridBackbone, PixelRegionEncoder, RegionEncoder
from mmgraph.typing import REGION, TOKEN

__all__ = [
    "QuestionEncoder",
    "BaselineVQAConfig",
    "QuestionOnly",
    "CNNMLP",
    "RelationNetwork",
    "BoWRetrievalConfig",
    "BagOfWordsRetrieval",
]

QUESTION_MODES = ("lstm", "mean")


def _graph_vectors(batch: HeteroData, node_type: str) -> Tuple[Tensor, int]:
    """``(batch vector [N], number of graphs)`` of a batch or a single graph."""
    store = batch[node_type]
    num_graphs = batch.num_graphs if isinstance(batch, Batch) else 1
    vector = store.get("batch")
    if vector is None:
        device = next((v.device for v in store.values() if isinstance(v, Tensor)), None)
        vector = torch.zeros(store.num_nodes, dtype=torch.long, device=device)
    return vector, num_graphs


def _token_ids(batch: HeteroData, vocab_size: int, model: str) -> Tensor:
    x = batch[TOKEN].get("x")
    if x is None or x.is_floating_point() or x.dim() != 1:
        raise InputError(
            f"{model}: token nodes must carry vocabulary ids data['token'].x [T] (GraphBuilder makes them)."
        )
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= vocab_size):
        raise InputError(
            f"{model}: token ids must lie in 0..{vocab_size - 1}, got {int(x.min())}..{int(x.max())}; set "
            "vocab_size to len(dataset.vocab)."
        )
    return x


class QuestionEncoder(nn.Module):
    r"""A text vector per graph from its token ids: the last hidden state of
    an LSTM over the word embeddings (Santoro et al. on CLEVR), or the
    projected mean of the word embeddings.

    Args:
        vocab_size (int): Number of token ids (id 0 is padding).
        word_dim (int): Word embedding size.
        out_dim (int): Output size (the LSTM's hidden size).
        mode (str, optional): ``"lstm"`` or ``"mean"``. (default: ``"lstm"``)

    Shapes:
        - **input:** ids :math:`(T)`, batch :math:`(T)` sorted
        - **output:** :math:`(B, \mathrm{out\_dim})`
    """

    def __init__(self, vocab_size: int, word_dim: int, out_dim: int, mode: str = "lstm"):
        super().__init__()
        if mode not in QUESTION_MODES:
            raise ConfigError(f"QuestionEncoder: mode must be one of {list(QUESTION_MODES)}, got {mode!r}.")
        self.vocab_size = vocab_size
        self.word_dim = word_dim
        self.out_dim = out_dim
        self.mode = mode
        self.embed = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        self.rnn = nn.LSTM(word_dim, out_dim, batch_first=True) if mode == "lstm" else None
        self.proj = nn.Linear(word_dim, out_dim) if mode == "mean" else None

    def forward(self, ids: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        emb = self.embed(ids)  # [T, word_dim]
        if self.rnn is None:
            return self.proj(scatter_mean(emb, batch, num_graphs))
        dense, mask = to_dense_batch(emb, batch, batch_size=num_graphs)  # [B, T_max, word_dim]
        lengths = mask.sum(1).clamp(min=1).cpu()  # a graph without tokens reads one padding step
        packed = pack_padded_sequence(dense, lengths, batch_first=True, enforce_sorted=False)
        _, (hidden, _) = self.rnn(packed)  # hidden: [1, B, out_dim]
        return hidden[-1]

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.vocab_size}, {self.word_dim}, {self.out_dim}, mode={self.mode!r})"


@dataclass
class BaselineVQAConfig:
    """Settings of the VQA baselines (each reads the fields it needs)."""

    vocab_size: Optional[int] = None  # len(dataset.vocab)
    num_answers: Optional[int] = None  # len(dataset.answers)
    answers: Optional[List[str]] = None  # answer strings in class order, for predict()
    loss: str = "ce"  # "ce" | "bce"
    hidden: int = 256  # width of g_theta, f_phi and the MLPs (Santoro: 256)
    layers: int = 4  # depth of g_theta (relation_network; Santoro: 4)
    word_dim: int = 32  # word embedding size (Santoro on CLEVR: 32)
    question_dim: int = 128  # question vector size (Santoro on CLEVR: a 128-unit LSTM)
    question: str = "lstm"  # "lstm" | "mean" (module doc)
    head_mult: int = 1  # f_phi's last hidden layer over hidden (Santoro: 256 = 1 x 256)
    head_dropout: float = 0.5  # dropout before the answer layer (Santoro: 0.5)
    # The image: pixels through a CNN, or the region inputs of scene graphs / detector features.
    pixels: bool = False  # regions are the grid cells of data.image
    grid: int = 5  # side of the CNN's output grid (Sort-of-CLEVR: 75 px -> 5 x 5)
    backbone_channels: Tuple[int, ...] = (24, 24, 24)  # CNN widths before the last block (Santoro: 24)
    object_dim: int = 24  # channels of an object (a CNN cell, or an embedded region)
    region_feature_dim: Optional[int] = None  # size of data['region'].x; None: regions carry no x
    num_labels: Optional[int] = None  # object label ids of scene-graph regions
    num_attrs: Optional[int] = None  # attribute ids of scene-graph regions
    box_dim: Optional[int] = 5  # box embedding of non-pixel regions: 5, 4 or None

    def __post_init__(self) -> None:
        check_vqa_config(self)
        if self.vocab_size is None:
            raise ConfigError("BaselineVQAConfig: set vocab_size to len(dataset.vocab).")
        if self.question not in QUESTION_MODES:
            raise ConfigError(
                f"BaselineVQAConfig.question={self.question!r} is unknown; choose from {list(QUESTION_MODES)}."
            )
        if self.layers < 1:
            raise ConfigError(f"BaselineVQAConfig.layers must be >= 1, got {self.layers}.")
        self.backbone_channels = tuple(self.backbone_channels)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


class _QuestionVQA(VQABase):
    """A VQA baseline with a question encoder."""

    def __init__(self, config: BaselineVQAConfig):
        super().__init__()
        self.config = config
        self.question = QuestionEncoder(
            config.vocab_size, config.word_dim, config.question_dim, config.question
        )

    def encode_question(self, batch: HeteroData) -> Tensor:
        ids = _token_ids(batch, self.config.vocab_size, type(self).__name__)
        vector, num_graphs = _graph_vectors(batch, TOKEN)
        return self.question(ids, vector, num_graphs)  # [B, question_dim]

    def image(self, batch: HeteroData) -> Tensor:
        image = batch.get("image")
        if image is None:
            raise InputError(
                f"{type(self).__name__} reads pixels but the batch has no image; build the data set with "
                "regions='pixels' (SyntheticVQA(..., regions='pixels')) or use SortOfClevr."
            )
        return image


class QuestionOnly(_QuestionVQA):
    r"""Answers from the question alone:
    :math:`\mathbf{s} = \mathrm{Head}(\mathrm{ReLU}(\mathbf{W}\mathbf{q}))`.

    Args:
        config (BaselineVQAConfig): The settings (``vocab_size``, ``num_answers``,
            ``hidden``, the question fields).
    """

    def __init__(self, config: BaselineVQAConfig):
        super().__init__(config)
        self.lin = nn.Linear(config.question_dim, config.hidden)
        self.head = self.make_head(config.hidden)

    def forward_features(self, batch: HeteroData) -> Tensor:
        return F.relu(self.lin(self.encode_question(batch)))


class CNNMLP(_QuestionVQA):
    r"""Santoro et al.'s CNN+MLP baseline: the flattened CNN feature map and
    the question vector through an MLP,

    .. math::
        \mathbf{s} = f\big(\mathrm{ReLU}(\mathbf{W}[\mathrm{vec}(\mathrm{CNN}(I)); \mathbf{q}])\big)

    with :math:`f` the output layers (256, dropout, answers).

    Args:
        config (BaselineVQAConfig): The settings; ``pixels`` must be true.
    """

    def __init__(self, config: BaselineVQAConfig):
        if not config.pixels:
            raise ConfigError(
                "cnn_mlp reads pixels: set pixels=True and use a data set with images (regions='pixels')."
            )
        super().__init__(config)
        self.backbone = GridBackbone(config.object_dim, grid=config.grid, channels=config.backbone_channels)
        self.lin = nn.Linear(config.object_dim * config.grid**2 + config.question_dim, config.hidden)
        self.head = self.make_head(config.hidden)

    def forward_features(self, batch: HeteroData) -> Tensor:
        fmap = self.backbone.feature_map(self.image(batch))  # [B, C, grid, grid]
        x = torch.cat([fmap.flatten(1), self.encode_question(batch)], dim=-1)  # [B, C * grid^2 + Q]
        return F.relu(self.lin(x))


class RelationNetwork(_QuestionVQA):
    r"""The Relation Network of Santoro et al. 2017 on the region nodes of
    each graph (CNN grid cells from pixels, or embedded scene-graph /
    detector regions), each with its coordinates :math:`\mathbf{c}_i` (the
    box centre in :math:`[-1, 1]^2`):

    .. math::
        \mathbf{o}_i = [\mathbf{h}_i; \mathbf{c}_i], \qquad
        \mathbf{s} = f_\phi\Big(\sum_{i, j \in g} g_\theta(\mathbf{o}_i, \mathbf{o}_j, \mathbf{q})\Big)

    over every ordered pair :math:`(i, j)` of the graph's objects (``i = j``
    included, as in the reference). The first layer of :math:`g_\theta` is
    linear in the concatenation :math:`[\mathbf{o}_i; \mathbf{o}_j; \mathbf{q}]`,
    so it is computed as :math:`\mathbf{W}_1\mathbf{o}_i + \mathbf{W}_2\mathbf{o}_j + \mathbf{W}_3\mathbf{q} + \mathbf{b}`:
    three products per object instead of one per pair, the same function.
    Graphs of different sizes are padded to the largest (``to_dense_batch``)
    and the padded pairs masked out of the sum.

    Args:
        config (BaselineVQAConfig): The settings.

    Shapes:
        - **input:** a batch with ``data['region'].box`` and ``image`` (pixels)
          or region ``x`` / ``label`` / ``attr``
        - **output:** :math:`(B, A)` answer logits
    """

    def __init__(self, config: BaselineVQAConfig):
        super().__init__(config)
        c = config
        if c.pixels:
            self.backbone = GridBackbone(c.object_dim, grid=c.grid, channels=c.backbone_channels)
            self.region_encoder = None
        else:
            self.backbone = None
            self.region_encoder = RegionEncoder(
                c.object_dim,
                feature_dim=c.region_feature_dim,
                num_labels=c.num_labels,
                num_attrs=c.num_attrs,
                box_dim=c.box_dim,
            )
        object_dim = c.object_dim + 2  # + coordinates
        self.g_first = nn.Linear(object_dim, c.hidden, bias=False)
        self.g_second = nn.Linear(object_dim, c.hidden, bias=False)
        self.g_question = nn.Linear(c.question_dim, c.hidden)
        rest: List[nn.Module] = []
        for _ in range(c.layers - 1):
            rest += [nn.Linear(c.hidden, c.hidden), nn.ReLU()]
        self.g_rest = nn.Sequential(*rest)
        self.f_first = nn.Linear(c.hidden, c.hidden)
        self.head = self.make_head(c.hidden)

    def objects(self, batch: HeteroData) -> Tuple[Tensor, Tensor, int]:
        """``(objects [R, object_dim + 2], batch vector [R], number of graphs)``."""
        region = batch[REGION]
        box = region.get("box")
        if box is None:
            raise InputError("RelationNetwork: region nodes need box [R, 4] for their coordinates.")
        vector, num_graphs = _graph_vectors(batch, REGION)
        if self.backbone is not None:
            cells = self.backbone(self.image(batch))  # [B * grid^2, C], row-major per image
            if cells.size(0) != box.size(0):
                raise InputError(
                    f"RelationNetwork: the CNN gives {self.config.grid}x{self.config.grid} cells per image "
                    f"({cells.size(0)} for the batch) but the graphs have {box.size(0)} regions; set grid to "
                    "the data set's grid (model_kwargs_from_dataset does)."
                )
            features = cells
        else:
            features = self.region_encoder(
                x=region.get("x"), box=box, label=region.get("label"), attr=region.get("attr")
            )
        centre = (box[:, :2] + box[:, 2:]) - 1.0  # (x1 + x2) / 2 mapped from [0, 1] to [-1, 1]: [R, 2]
        return torch.cat([features, centre], dim=-1), vector, num_graphs

    def forward_features(self, batch: HeteroData) -> Tensor:
        question = self.encode_question(batch)  # [B, Q]
        objects, vector, num_graphs = self.objects(batch)
        dense, mask = to_dense_batch(objects, vector, batch_size=num_graphs)  # [B, N, O], [B, N]
        first = self.g_first(dense)  # [B, N, H]
        second = self.g_second(dense)  # [B, N, H]
        pair = first.unsqueeze(2) + second.unsqueeze(1)  # [B, N, N, H]: pair (i, j)
        pair = F.relu(pair + self.g_question(question)[:, None, None, :])
        pair = self.g_rest(pair)  # [B, N, N, H]
        valid = (mask.unsqueeze(2) & mask.unsqueeze(1)).unsqueeze(-1)  # [B, N, N, 1]
        relations = (pair * valid).sum(dim=(1, 2))  # [B, H]
        return F.relu(self.f_first(relations))


@dataclass
class BoWRetrievalConfig:
    """Settings of :class:`BagOfWordsRetrieval`."""

    vocab_size: Optional[int] = None  # len(dataset.vocab)
    embed_dim: int = 256  # size of the joint embedding space
    hidden: int = 256  # region embedding size
    word_dim: int = 300  # word embedding size
    loss: str = "infonce"  # "infonce" | "vse"
    temperature: float = 0.07  # initial InfoNCE temperature (learned)
    max_scale: float = 100.0  # cap of the learned logit scale
    margin: float = 0.2  # VSE++ margin
    max_violation: bool = True  # VSE++ hardest negatives
    pixels: bool = False  # regions are the grid cells of data.image
    grid: int = 8  # side of the CNN's output grid
    backbone_channels: Tuple[int, ...] = (32, 64)  # CNN widths before the last block
    region_feature_dim: Optional[int] = None  # size of data['region'].x
    num_labels: Optional[int] = None  # object label ids of scene-graph regions
    num_attrs: Optional[int] = None  # attribute ids of scene-graph regions
    box_dim: Optional[int] = 5  # box embedding: 5, 4 or None

    def __post_init__(self) -> None:
        if self.vocab_size is None:
            raise ConfigError("BoWRetrievalConfig: set vocab_size to len(dataset.vocab).")
        check_retrieval_config(self)
        self.backbone_channels = tuple(self.backbone_channels)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


class BagOfWordsRetrieval(RetrievalBase):
    r"""A bag-of-words dual encoder: the text is the mean of its word
    embeddings, the image the mean of its region embeddings
    (:class:`~mmgraph.nn.encoders.RegionEncoder`, or CNN cells with
    ``pixels``), each projected and L2-normalised; no message passing.

    Args:
        config (BoWRetrievalConfig): The settings.
    """

    def __init__(self, config: BoWRetrievalConfig):
        super().__init__()
        self.config = config
        c = config
        if c.pixels:
            backbone = GridBackbone(c.hidden, grid=c.grid, channels=c.backbone_channels)
            self.region_encoder = PixelRegionEncoder(
                backbone, c.hidden, feature_dim=c.hidden, box_dim=c.box_dim
            )
        else:
            self.region_encoder = RegionEncoder(
                c.hidden,
                feature_dim=c.region_feature_dim,
                num_labels=c.num_labels,
                num_attrs=c.num_attrs,
                box_dim=c.box_dim,
            )
        self.word_emb = nn.Embedding(c.vocab_size, c.word_dim, padding_idx=0)
        self.make_head(c.hidden, c.word_dim)

    def forward_features(self, batch: HeteroData) -> DualFeatures:
        region = batch[REGION]
        region_batch, num_graphs = _graph_vectors(batch, REGION)
        if self.config.pixels:
            image = batch.get("image")
            if image is None:
                raise InputError("BagOfWordsRetrieval: pixels=True but the batch has no image.")
            x = self.region_encoder(image, region.get("box"), region_batch, num_graphs)
        else:
            x = self.region_encoder(
                x=region.get("x"), box=region.get("box"), label=region.get("label"), attr=region.get("attr")
            )
        token_batch, _ = _graph_vectors(batch, TOKEN)
        words = self.word_emb(_token_ids(batch, self.config.vocab_size, "BagOfWordsRetrieval"))
        return DualFeatures(
            scatter_mean(x, region_batch, num_graphs), scatter_mean(words, token_batch, num_graphs)
        )


def _baseline_vqa(name: str, cls, overrides: Dict[str, Any], **defaults: Any) -> VQABase:
    return cls(build_config(BaselineVQAConfig, overrides, defaults=defaults, model=name))


@register_model
def question_only(**overrides: Any) -> QuestionOnly:
    """Text-only VQA baseline (ignores the image)."""
    return _baseline_vqa("question_only", QuestionOnly, overrides)


@register_model
def cnn_mlp(**overrides: Any) -> CNNMLP:
    """Santoro et al.'s CNN+MLP baseline (pixels)."""
    return _baseline_vqa("cnn_mlp", CNNMLP, overrides, pixels=True)


@register_model
def relation_network(**overrides: Any) -> RelationNetwork:
    """Santoro et al.'s Relation Network (pixels or scene-graph regions)."""
    return _baseline_vqa("relation_network", RelationNetwork, overrides)


@register_model
def bow_retrieval(**overrides: Any) -> BagOfWordsRetrieval:
    """Bag-of-words dual encoder for retrieval."""
    return BagOfWordsRetrieval(build_config(BoWRetrievalConfig, overrides, model="bow_retrieval"))
