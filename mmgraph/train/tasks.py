"""What a task trains on and how it is scored: VQA and image-text retrieval.

``evaluate_vqa`` and ``RetrievalEvaluator`` have the trainer's evaluate
signature ``(model, loader, device) -> {metric: value}``; ``RetrievalLoss``
adds the data set's compositional hard negatives to a re-ranking model's
training loss.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch
from torch import Tensor, nn

from mmgraph.graph.builder import GraphBuilder
from mmgraph.graph.collate import collate_graphs, to_device
from mmgraph.graph.pairs import negative_pairs, pair_batch
from mmgraph.heads.alignment import alignment_mass
from mmgraph.metrics.accuracy import AccuracyMeter
from mmgraph.metrics.retrieval import hard_negative_accuracy, retrieval_metrics
from mmgraph.typing import GROUNDING_EDGE, TOKEN


@torch.no_grad()
def predict_vqa(model: nn.Module, loader: Iterable, device: torch.device) -> Tuple[Tensor, List[Any]]:
    """Predicted answer ids ``[N]`` and the batches' graphs' ids, in loader order."""
    preds, ids = [], []
    for batch in loader:
        batch = to_device(batch, device)
        preds.append(model(batch).argmax(-1).cpu())
        ids.extend(_as_list(batch.get("question_id", batch.get("sample_id"))))
    return torch.cat(preds), ids


@torch.no_grad()
def evaluate_vqa(
    model: nn.Module, loader: Iterable, device: torch.device, templates: bool = False
) -> Dict[str, float]:
    """Accuracy overall and per question family (``accuracy/<family>``).

    With answer ids as targets (``y`` long), a prediction is right when it is
    the target; with soft VQA scores (``y`` float ``[B, A]``), the accuracy is
    the score of the predicted answer: the official VQA accuracy, since the
    soft scores are computed as the metric computes them.

    With ``templates=True``, graphs that carry a ``template`` (the synthetic
    benchmark's question templates, e.g. ``closest_query_color``) also get
    ``accuracy/template/<template>``: the families average over templates of
    very different difficulty, and this says which ones a model fails.

    A model with a pointer channel (``encoder.config.pointer``, e.g.
    ``graph_vqa(pointer=True)``) scored on graphs built with their grounding
    (``GraphBuilder(grounding=True)``) also gets ``grounding``: the mean share
    of each grounded word's pointer attention (last block, averaged over
    heads) that lands on the regions its phrase names
    (:func:`~mmgraph.heads.alignment_mass`, GQA's grounding score), and
    ``grounding/<family>`` over the words of each family's questions (the
    model answers from the same forward pass). The model reads no grounding
    to answer; the score only looks at where it pointed.
    """
    meter = AccuracyMeter()
    template_meter = AccuracyMeter()
    soft_total, soft_count = 0.0, 0
    grounding: Dict[str, List[float]] = {}  # family ("" overall) -> [mass sum, words]
    points = _has_pointer(model)
    for batch in loader:
        batch = to_device(batch, device)
        if points and GROUNDING_EDGE in batch.edge_types:
            features = model.encoder.forward_features(batch, return_pointer=True)
            pred = model.forward_head(features).argmax(-1)
            _add_grounding(grounding, batch, features.pointer)
        else:
            pred = model(batch).argmax(-1)
        y = batch.y
        if y.is_floating_point():
            y = y.view(pred.size(0), -1)
            soft_total += float(y.gather(1, pred.view(-1, 1)).sum())
            soft_count += pred.numel()
        else:
            families = batch.get("family")
            pred, y = pred.cpu(), y.view(-1).cpu()
            meter.update(pred, y, families=_as_list(families) if families is not None else None)
            names = batch.get("template") if templates else None
            if names is not None:
                template_meter.update(pred, y, families=_as_list(names))
    if soft_count:
        out = {"accuracy": soft_total / soft_count}
    else:
        result = meter.compute()
        out = {"accuracy": float(result["overall"])}
        out.update({f"accuracy/{k}": float(v) for k, v in result.items() if k != "overall"})
        if len(template_meter):
            per_template = template_meter.compute()
            out.update(
                {f"accuracy/template/{k}": float(v) for k, v in per_template.items() if k != "overall"}
            )
    for family, (total, words) in sorted(grounding.items()):
        out["grounding" if family == "" else f"grounding/{family}"] = total / words
    return out


def _has_pointer(model: nn.Module) -> bool:
    """Whether ``model`` answers through ``forward_head`` from an encoder that runs a pointer channel
    (whose weights ``encoder.forward_features(batch, return_pointer=True)`` returns)."""
    encoder = getattr(model, "encoder", None)
    config = getattr(encoder, "config", None)
    return (
        bool(getattr(config, "pointer", False))
        and hasattr(encoder, "forward_features")
        and hasattr(model, "forward_head")
    )


def _add_grounding(totals: Dict[str, List[float]], batch, pointers) -> None:
    """Adds the last pointer's grounding mass of every grounded word to ``totals`` (overall and per family)."""
    if not pointers:
        return
    edge_index, alpha = pointers[-1]
    sources, mass = alignment_mass(edge_index, alpha, batch[GROUNDING_EDGE].edge_index)
    if sources.numel() == 0:
        return
    mass = mass.detach().cpu()
    overall = totals.setdefault("", [0.0, 0])
    overall[0] += float(mass.sum())
    overall[1] += mass.numel()
    families = batch.get("family")
    if families is None:
        return
    families = _as_list(families)
    token_batch = batch[TOKEN].get("batch")
    graphs = (
        token_batch.index_select(0, sources).cpu().tolist() if token_batch is not None else [0] * len(mass)
    )
    for graph, value in zip(graphs, mass.tolist()):
        entry = totals.setdefault(str(families[graph]), [0.0, 0])
        entry[0] += value
        entry[1] += 1


class RetrievalLoss:
    """``(model, batch) -> (loss, outputs)``: the retrieval model's loss, with the
    graphs of each caption's compositional negatives (built by ``builder``) as
    extra negatives for the re-ranker when the model has one."""

    def __init__(self, builder: GraphBuilder):
        self.builder = builder

    def __call__(self, model: nn.Module, batch) -> Tuple[Tensor, Dict[str, Tensor]]:
        negatives = None
        if getattr(model, "cross_encoder", None) is not None and "negatives" in batch:
            negatives = negative_pairs(to_device(batch, "cpu"), self.builder)
            negatives = None if negatives is None else to_device(negatives, _device(model))
        return model.loss(batch, negative_batch=negatives)


class RetrievalEvaluator:
    """Scores a retrieval model on a split of (image, caption) graphs.

    Reports R@1/5/10, median and mean rank both ways and rsum (as the VSE++ /
    SCAN evaluations compute them; an image's rank is the best of its
    captions'), and, where the graphs carry ``negatives``, the hard-negative
    accuracy: how often the true caption scores above every compositional
    negative (overall and per kind). A model with a re-ranker is scored
    after re-ranking its dual encoder's top ``k`` (hard negatives: by its
    match logits); the dual encoder alone is reported too, as
    ``dual/<metric>``.

    Args:
        builder: the data set's graph builder (for the negatives' graphs).
        k: candidates per query the re-ranker scores. (default: ``10``)
    """

    def __init__(self, builder: Optional[GraphBuilder] = None, k: int = 10):
        self.builder, self.k = builder, k

    @torch.no_grad()
    def __call__(self, model: nn.Module, loader: Iterable, device: torch.device) -> Dict[str, float]:
        graphs, image_emb, text_emb, image_ids = [], [], [], []
        for batch in loader:
            batch = to_device(batch, device)
            out = model(batch)
            image_emb.append(out.image)
            text_emb.append(out.text)
            image_ids.extend(str(i) for i in _as_list(batch.image_id))
            graphs.extend(batch.cpu().to_data_list())
        image_emb, text_emb = torch.cat(image_emb), torch.cat(text_emb)
        first: Dict[str, int] = {}
        for i, image_id in enumerate(image_ids):
            first.setdefault(image_id, i)
        image_rows = list(first.values())
        image_of_caption = torch.tensor([list(first).index(i) for i in image_ids])
        sims = image_emb[image_rows] @ text_emb.t()  # [N_img, N_cap]
        dual = retrieval_metrics(sims.cpu(), image_of_caption=image_of_caption)
        metrics: Dict[str, float] = {}
        reranker = getattr(model, "cross_encoder", None) is not None
        if reranker:
            images = collate_graphs([graphs[r] for r in image_rows])
            texts = collate_graphs(graphs)
            res = model.rerank(sims, to_device(images, device), to_device(texts, device), k=self.k)
            i2t = retrieval_metrics(res.i2t.cpu(), image_of_caption=image_of_caption)
            t2i = retrieval_metrics(res.t2i.cpu(), image_of_caption=image_of_caption)
            ranked = {k: v for k, v in i2t.items() if k.startswith("i2t")}
            ranked.update({k: v for k, v in t2i.items() if k.startswith("t2i")})
            ranked["rsum"] = sum(ranked[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10))
            metrics.update(ranked)
            metrics.update({f"dual/{k}": v for k, v in dual.items()})
        else:
            metrics.update(dual)
        if self.builder is not None and graphs and "negatives" in graphs[0]:
            metrics.update(self._hard_negatives(model, graphs, device, reranker))
        return {k: float(v) for k, v in metrics.items()}

    def _hard_negatives(self, model, graphs, device, reranker: bool) -> Dict[str, float]:
        """``hard_negative_accuracy[/<kind>]`` of the model's scores: the re-ranker's match
        logits where it has one (and its dual encoder's as ``dual/...``), else the cosine."""
        batch = collate_graphs(graphs)
        pairs = negative_pairs(batch, self.builder)
        if pairs is None:
            return {}
        owner = pairs.pair_index[:, 0]
        kinds = [k for g in graphs for k in g.negative_kinds]
        out = model(to_device(batch, device))
        text_neg = model(to_device(pairs, device)).text
        pos = (out.image * out.text).sum(-1).cpu()
        neg = (out.image[owner.to(device)] * text_neg).sum(-1).cpu()
        dual = _hard_negative_metrics(pos, neg, owner, kinds, len(graphs))
        if not reranker:
            return dual
        positive_pairs = torch.arange(len(graphs)).unsqueeze(1).expand(-1, 2)
        pos = model.rerank_scores(to_device(pair_batch(batch, batch, positive_pairs), device)).cpu()
        neg = model.rerank_scores(to_device(pairs, device)).cpu()
        metrics = _hard_negative_metrics(pos, neg, owner, kinds, len(graphs))
        metrics.update({f"dual/{k}": v for k, v in dual.items()})
        return metrics


def _hard_negative_metrics(
    pos: Tensor, neg: Tensor, owner: Tensor, kinds, num_graphs: int
) -> Dict[str, float]:
    """:func:`hard_negative_accuracy` of positive scores ``[N]`` and negative scores ``[M]``
    owned by ``owner`` ``[M]``, named as the evaluator reports them."""
    ragged: List[List[float]] = [[] for _ in range(num_graphs)]
    ragged_kinds: List[List[str]] = [[] for _ in range(num_graphs)]
    for o, score, kind in zip(owner.tolist(), neg.tolist(), kinds):
        ragged[o].append(score)
        ragged_kinds[o].append(kind)
    keep = [i for i, r in enumerate(ragged) if r]
    result = hard_negative_accuracy(
        pos[keep], [ragged[i] for i in keep], kinds=[ragged_kinds[i] for i in keep]
    )
    return {
        ("hard_negative_accuracy" if k == "overall" else f"hard_negative_accuracy/{k}"): v
        for k, v in result.items()
    }


def _as_list(value) -> List[Any]:
    if value is None:
        return []
    if isinstance(value, str):  # one graph's attribute, not a batch's list
        return [value]
    if isinstance(value, Tensor):
        return value.view(-1).tolist()
    return list(value)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
