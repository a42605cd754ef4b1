r"""Image-text retrieval: a dual encoder, with an optional cross-encoder re-ranker.

The dual encoder embeds images and texts apart, in one space
(VSE++ `Faghri et al. 2018 <https://arxiv.org/abs/1707.05612>`_, CLIP
`Radford et al. 2021 <https://arxiv.org/abs/2103.00020>`_): the multi-modal
graph encoder runs as two independent towers (variant ``no_cross``, no
question conditioning), the pooled region states give the image embedding and
the pooled token states the text embedding, each projected to ``embed_dim``
and L2-normalised, so that a gallery is embedded once and ranked by dot
products. It trains with InfoNCE (learnable temperature) or the VSE++ hinge
loss (:mod:`mmgraph.heads.retrieval`).

The re-ranker (``rerank=True``) is a second encoder, variant ``graph``
(cross attention between the image's regions and the text's tokens), with an
ITM head, as the re-ranking stage of ALBEF / BLIP (`Li et al. 2021
<https://arxiv.org/abs/2107.07651>`_) and the cross-encoders of UNITER. It
embeds regions and tokens with the dual encoder's input encoders
(``share_inputs``), which the contrastive loss trains from the first step. It
trains on image-text matching: the batch's pairs are positives; for every
text the most similar other image and for every image the most similar other
text under the dual encoder are negatives (the in-batch hardest negatives),
and so are the data set's compositional negatives when given
(``loss(batch, negative_batch=negative_pairs(batch, dataset.builder))``), in
a class-balanced ITM loss plus a listwise loss of each caption against its
own compositional negatives. At test time :meth:`RetrievalModel.rerank`
re-scores the dual encoder's top-k with the match logits alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Dict, Iterable, NamedTuple, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from mmgraph.errors import ConfigError, InputError
from mmgraph.graph.pairs import Graphs, as_batch, pair_batch
from mmgraph.heads import (
    ITMHead,
    LearnableTemperature,
    hard_negative_ranking_loss,
    info_nce_loss,
    itm_loss,
    mean_alignment_loss,
    positive_mask,
    vse_hinge_loss,
)
from mmgraph.models.encoder import EncoderOutput, MMGraphEncoder, MMGraphEncoderConfig, grounding_target
from mmgraph.models.registry import build_config, register_model
from mmgraph.typing import EdgeType, OptTensor

__all__ = [
    "RetrievalBase",
    "RetrievalModel",
    "RetrievalModelConfig",
    "RetrievalOutput",
    "RerankResult",
    "DualFeatures",
    "RETRIEVAL_LOSSES",
    "image_codes",
    "check_retrieval_config",
]

RETRIEVAL_LOSSES = ("infonce", "vse")

GraphsOrEmbeddings = Union[Tensor, HeteroData, Iterable[HeteroData]]


class DualFeatures(NamedTuple):
    """Pooled image (``region``) and text (``token``) vectors, ``[B, F]`` each."""

    region: Tensor
    token: Tensor


class RetrievalOutput(NamedTuple):
    """L2-normalised embeddings ``[B, embed_dim]`` of each graph's image and text."""

    image: Tensor
    text: Tensor


class RerankResult(NamedTuple):
    """Re-ranked similarities ``[N_img, N_txt]``: ``i2t`` re-scores the
    top-k texts of every image (rank texts by its rows), ``t2i`` the top-k
    images of every text (rank images by its columns). Evaluate image -> text
    on ``i2t`` and text -> image on ``t2i``."""

    i2t: Tensor
    t2i: Tensor


def check_retrieval_config(config: Any) -> None:
    """Checks the loss fields every retrieval config has."""
    name = type(config).__name__
    if config.loss not in RETRIEVAL_LOSSES:
        raise ConfigError(f"{name}.loss={config.loss!r} is unknown; choose from {list(RETRIEVAL_LOSSES)}.")
    if config.embed_dim < 1:
        raise ConfigError(f"{name}.embed_dim must be >= 1, got {config.embed_dim}.")


def image_codes(batch: HeteroData) -> OptTensor:
    """``[B]`` integer codes of the batch's ``image_id`` (equal ids, equal codes), or :obj:`None`."""
    ids = batch.get("image_id")
    if ids is None:
        return None
    if isinstance(ids, Tensor):
        return ids.view(-1)
    if isinstance(ids, (str, int)):  # one graph
        ids = [ids]
    codes: Dict[Any, int] = {}
    return torch.tensor([codes.setdefault(i, len(codes)) for i in ids], dtype=torch.long)


class RetrievalBase(nn.Module):
    """The surface every retrieval model shares: projections to the joint
    space, the contrastive loss, embedding and ranking. Subclasses define
    :meth:`forward_features` returning pooled ``region`` and ``token``
    vectors (:class:`DualFeatures` or an :class:`EncoderOutput`) and call
    :meth:`make_head`.

    The config must have ``embed_dim``, ``loss``, ``temperature``,
    ``max_scale``, ``margin`` and ``max_violation``.
    """

    config: Any

    def make_head(self, image_dim: int, text_dim: int) -> None:
        c = self.config
        self.image_proj = nn.Linear(image_dim, c.embed_dim)
        self.text_proj = nn.Linear(text_dim, c.embed_dim)
        self.logit_scale = LearnableTemperature(c.temperature, c.max_scale) if c.loss == "infonce" else None

    def forward_features(self, batch: HeteroData) -> Union[DualFeatures, EncoderOutput]:
        raise NotImplementedError

    def forward_head(self, features: Union[DualFeatures, EncoderOutput]) -> RetrievalOutput:
        image = F.normalize(self.image_proj(features.region), dim=-1)
        text = F.normalize(self.text_proj(features.token), dim=-1)
        return RetrievalOutput(image, text)

    def reset_head(self, embed_dim: Optional[int] = None) -> None:
        """New, freshly initialised projections (and temperature), to ``embed_dim`` if given."""
        device = self.image_proj.weight.device
        if embed_dim is not None:
            self.config.embed_dim = embed_dim
        self.make_head(self.image_proj.in_features, self.text_proj.in_features)
        self.to(device)

    def forward(self, batch: HeteroData) -> RetrievalOutput:
        """The image and text embeddings of every graph of the batch."""
        return self.forward_head(self.forward_features(batch))

    def _embed(self, graphs: GraphsOrEmbeddings, field: str) -> Tensor:
        if isinstance(graphs, Tensor):
            return graphs
        if isinstance(graphs, HeteroData):
            return getattr(self(graphs), field)
        return torch.cat([getattr(self(batch), field) for batch in graphs])

    def embed_images(self, graphs: Union[HeteroData, Iterable[HeteroData]]) -> Tensor:
        """``[N, embed_dim]`` image embeddings of a batch or of every batch of
        an iterable (a ``DataLoader``). The texts of the graphs play no part."""
        return self._embed(graphs, "image")

    def embed_texts(self, graphs: Union[HeteroData, Iterable[HeteroData]]) -> Tensor:
        """``[N, embed_dim]`` text embeddings of a batch or of every batch of an
        iterable. The images of the graphs play no part."""
        return self._embed(graphs, "text")

    @torch.no_grad()
    def rank(self, images: GraphsOrEmbeddings, texts: GraphsOrEmbeddings) -> Tensor:
        """Cosine similarities ``[N_img, N_txt]`` (``metrics.retrieval_metrics`` takes them).

        Args:
            images: image embeddings ``[N_img, D]``, or a batch / batches of
                graphs, one per image.
            texts: text embeddings ``[N_txt, D]``, or a batch / batches of
                graphs, one per text.
        """
        image = self.embed_images(images)
        text = self.embed_texts(texts)
        if image.dim() != 2 or text.dim() != 2 or image.size(1) != text.size(1):
            raise InputError(
                f"rank: embeddings must be [N_img, D] and [N_txt, D], got {list(image.shape)} and "
                f"{list(text.shape)}."
            )
        return image @ text.t()

    def contrastive_loss(self, out: RetrievalOutput, image_ids: OptTensor = None) -> Tensor:
        """The dual encoder's loss on matched pairs, duplicates of one image masked."""
        c = self.config
        if image_ids is not None:
            image_ids = image_ids.to(out.image.device)
        if c.loss == "infonce":
            return info_nce_loss(out.image, out.text, self.logit_scale(), image_ids=image_ids)
        return vse_hinge_loss(out.image, out.text, c.margin, c.max_violation, image_ids=image_ids)

    def loss(
        self, batch: HeteroData, negative_batch: Optional[HeteroData] = None
    ) -> Tuple[Tensor, Dict[str, Tensor]]:
        """``(loss, {"image", "text"})`` on a batch of matched (image, text) graphs."""
        if negative_batch is not None:
            raise ConfigError(
                f"{type(self).__name__}.loss: negative_batch trains a cross-encoder re-ranker, which this "
                "model has none of; use a RetrievalModel with rerank=True (graph_retrieval_rerank)."
            )
        out = self(batch)
        return self.contrastive_loss(out, image_codes(batch)), {"image": out.image, "text": out.text}


@dataclass
class RetrievalModelConfig:
    """Settings of :class:`RetrievalModel`."""

    encoder: MMGraphEncoderConfig  # the dual encoder's towers: variant "no_cross", cond False
    embed_dim: int = 256  # size of the joint embedding space
    loss: str = "infonce"  # "infonce" (CLIP) | "vse" (VSE++ hinge)
    temperature: float = 0.07  # initial InfoNCE temperature (learned)
    max_scale: float = 100.0  # cap of the learned logit scale 1 / temperature
    margin: float = 0.2  # VSE++ margin
    max_violation: bool = True  # VSE++ hardest negatives (False: sum over negatives, VSE0)
    rerank: bool = False  # add a cross-encoder re-ranker (variant "graph" + ITM head)
    rerank_k: int = 10  # candidates per query rerank() re-scores by default
    itm_weight: float = 1.0  # weight of the re-ranker's ITM loss
    itm_balance: bool = True  # matches and non-matches weigh half each in the ITM loss
    itm_rank_weight: float = 1.0  # weight of each caption against its compositional negatives (listwise)
    share_inputs: bool = True  # the re-ranker reads the dual encoder's region and token embeddings
    # Weight of the re-ranker's word-region alignment loss on the batch's true pairs (its encoder then
    # gets the token -> region pointer channel; mmgraph.heads.alignment_loss against the GROUNDING_EDGE
    # pairs of graphs built with GraphBuilder(grounding=True)). 0: none. Needs rerank=True.
    align_weight: float = 0.0
    # Intra-modal edge types the re-ranker passes messages along; None: the dual encoder's
    # (encoder.edge_types). Lets the re-ranker use the spatial graph alone while the dual encoder keeps the
    # parse, which it needs to tell a caption from its same-words negatives. Needs rerank=True.
    rerank_edge_types: Optional[Tuple[EdgeType, ...]] = None

    def __post_init__(self) -> None:
        if isinstance(self.encoder, dict):
            self.encoder = MMGraphEncoderConfig(**self.encoder)
        if self.rerank_edge_types is not None:
            if not self.rerank:
                raise ConfigError(
                    "RetrievalModelConfig.rerank_edge_types sets the re-ranker's edge types; it needs "
                    "rerank=True (create_model('graph_retrieval_rerank'))."
                )
            self.rerank_edge_types = tuple(tuple(edge_type) for edge_type in self.rerank_edge_types)
        check_retrieval_config(self)
        if self.encoder.variant != "no_cross" or self.encoder.cond:
            raise ConfigError(
                "RetrievalModelConfig: the dual encoder embeds images and texts apart, so its encoder must "
                f"run without cross attention or question conditioning (got variant={self.encoder.variant!r}, "
                f"cond={self.encoder.cond}); set variant='no_cross', cond=False (create_model("
                "'graph_retrieval') does). The re-ranker (rerank=True) is the one with cross attention."
            )
        if self.rerank_k < 1:
            raise ConfigError(f"RetrievalModelConfig.rerank_k must be >= 1, got {self.rerank_k}.")
        if self.align_weight < 0 or (self.align_weight > 0 and not self.rerank):
            raise ConfigError(
                f"RetrievalModelConfig.align_weight={self.align_weight}: the alignment loss trains the "
                "re-ranker's cross attention; give a weight >= 0, and rerank=True for a positive one."
            )

    def rerank_encoder(self) -> MMGraphEncoderConfig:
        """The re-ranker's encoder: the same sizes, variant ``graph``, question-conditioned, with the
        pointer channel when ``align_weight > 0`` and ``rerank_edge_types`` when given."""
        edges = {} if self.rerank_edge_types is None else {"edge_types": self.rerank_edge_types}
        return replace(self.encoder, variant="graph", cond=True, pointer=self.align_weight > 0, **edges)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


class RetrievalModel(RetrievalBase):
    r"""Dual-encoder image-text retrieval over multi-modal graphs, with an
    optional cross-encoder re-ranker (see the module doc):

    .. math::
        \mathbf{v}_g = \frac{\mathbf{W}_v\mathbf{r}_g}{\lVert\mathbf{W}_v\mathbf{r}_g\rVert},\quad
        \mathbf{u}_g = \frac{\mathbf{W}_u\mathbf{t}_g}{\lVert\mathbf{W}_u\mathbf{t}_g\rVert},\quad
        s(i, j) = \mathbf{v}_i^\top\mathbf{u}_j

    where :math:`\mathbf{r}_g` and :math:`\mathbf{t}_g` are the pooled region
    and token states of the encoder run without cross attention.

    Args:
        config (RetrievalModelConfig): The settings.

    Shapes:
        - **input:** a batch of matched (image, text) graphs
        - **output:** :class:`RetrievalOutput`, ``[B, embed_dim]`` each
    """

    def __init__(self, config: RetrievalModelConfig):
        super().__init__()
        self.config = config
        self.encoder = MMGraphEncoder(config.encoder)
        hidden = config.encoder.hidden
        self.make_head(hidden, hidden)
        self.cross_encoder = MMGraphEncoder(config.rerank_encoder()) if config.rerank else None
        if self.cross_encoder is not None and config.share_inputs:
            # The contrastive loss shapes the shared word and region embeddings from the first steps.
            # On the synthetic data a re-ranker with embeddings of its own told a random caption from
            # the true one no better than chance for ~700 steps; sharing them, it told most object
            # swaps apart by step 400 (ALBEF and BLIP share their unimodal encoders likewise).
            for name in ("token_encoder", "region_encoder", "text_features"):
                setattr(self.cross_encoder, name, getattr(self.encoder, name))
        self.itm_head = ITMHead(hidden) if config.rerank else None

    def forward_features(self, batch: HeteroData) -> EncoderOutput:
        return self.encoder.forward_features(batch)

    # -------------------------------------------------------------- re-ranker
    def _check_rerank(self, what: str) -> None:
        if self.cross_encoder is None:
            raise ConfigError(
                f"RetrievalModel.{what} needs the cross-encoder re-ranker; build the model with rerank=True "
                "(create_model('graph_retrieval_rerank', ...))."
            )

    def rerank_scores(self, pairs: HeteroData) -> Tensor:
        """Match logits ``[P]`` of a batch of pair graphs (:func:`~mmgraph.graph.pairs.pair_batch`)."""
        self._check_rerank("rerank_scores")
        return self.itm_head(self.cross_encoder.forward_features(pairs).fused)

    @staticmethod
    def hardest_negatives(image: Tensor, text: Tensor, image_ids: OptTensor = None) -> Tensor:
        """``[P, 2]`` (image, text) pairs: for every text the most similar
        image of another picture, and for every image the most similar text of
        another picture (none where the batch shows only one picture)."""
        sims = (image @ text.t()).masked_fill(
            positive_mask(image.size(0), image_ids, device=image.device), float("-inf")
        )  # [B, B]
        arange = torch.arange(image.size(0), device=image.device)
        best_image = sims.max(0)  # per text (column)
        best_text = sims.max(1)  # per image (row)
        pairs = torch.cat(
            [
                torch.stack([best_image.indices, arange], 1)[torch.isfinite(best_image.values)],
                torch.stack([arange, best_text.indices], 1)[torch.isfinite(best_text.values)],
            ]
        )
        return pairs

    def loss(
        self, batch: HeteroData, negative_batch: Optional[HeteroData] = None
    ) -> Tuple[Tensor, Dict[str, Tensor]]:
        """``(loss, outputs)`` on a batch of matched (image, text) graphs.

        The loss is the dual encoder's contrastive loss plus, with
        ``rerank=True``, ``itm_weight`` times the re-ranker's ITM loss
        (:func:`~mmgraph.heads.itm_loss`, class-balanced with
        ``itm_balance``) on the batch's pairs (positives), the in-batch
        hardest negatives and the pairs of ``negative_batch`` (negatives; make
        it with :func:`~mmgraph.graph.pairs.negative_pairs`), and
        ``itm_rank_weight`` times each caption against its own negatives of
        ``negative_batch`` (:func:`~mmgraph.heads.hard_negative_ranking_loss`).
        ``outputs`` holds ``image`` and ``text`` embeddings, and
        ``itm_logits`` / ``itm_labels`` with the re-ranker.
        """
        out = self(batch)
        image_ids = image_codes(batch)
        if image_ids is not None:
            image_ids = image_ids.to(out.image.device)
        loss = self.contrastive_loss(out, image_ids)
        outputs: Dict[str, Tensor] = {"image": out.image, "text": out.text}
        if self.cross_encoder is None:
            if negative_batch is not None:
                self._check_rerank("loss(negative_batch=...)")
            return loss, outputs
        num_graphs = out.image.size(0)
        diagonal = torch.arange(num_graphs, device=out.image.device).unsqueeze(1).expand(-1, 2)  # [B, 2]
        negatives = self.hardest_negatives(out.image.detach(), out.text.detach(), image_ids)
        # The positives go through pair_batch too, so that positives and negatives have the same
        # (complete) cross edges whatever cross edges the data set was built with.
        pairs = torch.cat([diagonal, negatives])
        c = self.config
        if c.align_weight:
            # The first B pairs are the batch's own graphs, in order: their nodes keep the batch's
            # indices, so the batch's grounding pairs index them as they are.
            target = grounding_target(batch, f"{type(self).__name__}.loss")
            features = self.cross_encoder.forward_features(
                pair_batch(batch, batch, pairs), return_pointer=True
            )
            logits = [self.itm_head(features.fused)]
            align = mean_alignment_loss(features.pointer, target)
            loss = loss + c.itm_weight * c.align_weight * align
            outputs["align_loss"] = align.detach()
        else:
            logits = [self.rerank_scores(pair_batch(batch, batch, pairs))]
        labels = [torch.ones(num_graphs), torch.zeros(negatives.size(0))]
        if negative_batch is not None:
            logits.append(self.rerank_scores(negative_batch))
            labels.append(torch.zeros(logits[-1].numel()))
            if c.itm_rank_weight:
                owner = negative_batch.pair_index[:, 0]
                ranking = hard_negative_ranking_loss(logits[0][:num_graphs], logits[-1], owner)
                loss = loss + c.itm_weight * c.itm_rank_weight * ranking
        itm_logits = torch.cat(logits)
        itm_labels = torch.cat(labels).to(itm_logits.device)
        loss = loss + c.itm_weight * itm_loss(itm_logits, itm_labels, balance=c.itm_balance)
        outputs.update(itm_logits=itm_logits, itm_labels=itm_labels)
        return loss, outputs

    @torch.no_grad()
    def rerank(
        self,
        sims: Tensor,
        image_graphs: Graphs,
        text_graphs: Graphs,
        k: Optional[int] = None,
        batch_size: int = 256,
    ) -> RerankResult:
        r"""Re-scores the dual encoder's top-k with the cross-encoder.

        For every image its ``k`` most similar texts (rows of ``sims``), and for
        every text its ``k`` most similar images (columns), are scored by
        :meth:`rerank_scores`. In ``i2t`` each row's top-k entries are replaced
        by :math:`m_i + 1 + z_{ij} - \min_{j' \in \mathrm{top}_k} z_{ij'}` with
        :math:`m_i` the best score outside the top-k and :math:`z` the match
        logits: the top-k stay above the rest, ordered by the re-ranker, and the
        rest keep their scores and order. ``t2i`` is the same along columns.
        Call ``model.eval()`` first.

        Args:
            sims (torch.Tensor): ``[N_img, N_txt]`` dual-encoder similarities (:meth:`rank`).
            image_graphs: one graph per image (a batch or a list), row order of ``sims``.
            text_graphs: one graph per text, column order of ``sims``.
            k (int, optional): Candidates per query. (default: ``config.rerank_k``)
            batch_size (int, optional): Pairs per cross-encoder call. (default: :obj:`256`)
        """
        self._check_rerank("rerank")
        images, texts = as_batch(image_graphs), as_batch(text_graphs)
        if sims.dim() != 2 or tuple(sims.shape) != (images.num_graphs, texts.num_graphs):
            raise InputError(
                f"rerank: sims has shape {list(sims.shape)} for {images.num_graphs} image graphs and "
                f"{texts.num_graphs} text graphs; it must be [N_img, N_txt] in their order."
            )
        k = self.config.rerank_k if k is None else k
        if k < 1:
            raise InputError(f"rerank: k must be >= 1, got {k}.")
        num_images, num_texts = sims.shape
        k_text, k_image = min(k, num_texts), min(k, num_images)
        top_text = sims.topk(k_text, dim=1).indices  # [N_img, k_text]
        top_image = sims.topk(k_image, dim=0).indices  # [k_image, N_txt]
        rows = torch.arange(num_images, device=sims.device)
        cols = torch.arange(num_texts, device=sims.device)
        flat = torch.cat(
            [
                (rows.unsqueeze(1) * num_texts + top_text).reshape(-1),
                (top_image * num_texts + cols.unsqueeze(0)).reshape(-1),
            ]
        )
        unique, inverse = torch.unique(flat, return_inverse=True)
        pairs = torch.stack([unique // num_texts, unique % num_texts], 1)  # [U, 2]
        scores = torch.cat(
            [
                self.rerank_scores(pair_batch(images, texts, chunk)).to(sims.dtype)
                for chunk in pairs.split(batch_size)
            ]
        )
        z_i2t = scores[inverse[: num_images * k_text]].view(num_images, k_text).to(sims.device)
        z_t2i = scores[inverse[num_images * k_text :]].view(k_image, num_texts).to(sims.device)
        i2t = _rescore(sims, top_text, z_i2t, dim=1)
        t2i = _rescore(sims, top_image, z_t2i, dim=0)
        return RerankResult(i2t, t2i)


def _rescore(sims: Tensor, top: Tensor, logits: Tensor, dim: int) -> Tensor:
    """``sims`` with the entries ``top`` along ``dim`` set above the rest, in the order of ``logits``."""
    k = top.size(dim)
    if k < sims.size(dim):
        floor = sims.topk(k + 1, dim=dim).values.select(dim, k).unsqueeze(dim)  # best outside the top-k
    else:
        floor = sims.amin(dim=dim, keepdim=True)
    value = floor + 1.0 + logits - logits.amin(dim=dim, keepdim=True)
    return sims.clone().scatter_(dim, top, value)


def _retrieval(name: str, overrides: Dict[str, Any], **defaults: Any) -> RetrievalModel:
    config = build_config(
        RetrievalModelConfig,
        overrides,
        defaults=defaults,
        encoder_cls=MMGraphEncoderConfig,
        encoder_defaults={"variant": "no_cross", "cond": False},
        model=name,
    )
    return RetrievalModel(config)


@register_model
def graph_retrieval(**overrides: Any) -> RetrievalModel:
    """Dual encoder: graph message passing in each modality, no cross attention; InfoNCE."""
    return _retrieval("graph_retrieval", overrides)


@register_model
def graph_retrieval_rerank(**overrides: Any) -> RetrievalModel:
    """:func:`graph_retrieval` with a cross-encoder (variant ``graph``) ITM re-ranker."""
    return _retrieval("graph_retrieval_rerank", overrides, rerank=True)
