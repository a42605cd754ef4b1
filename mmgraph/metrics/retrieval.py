r"""Image-text retrieval metrics: recall@K, median and mean rank, rsum, and
accuracy against hard (compositional) negatives.

:func:`retrieval_metrics` computes what the evaluation code of VSE++
("VSE++: Improving Visual-Semantic Embeddings with Hard Negatives", Faghri
et al., BMVC 2018; ``evaluation.py`` of fartashf/vsepp) and SCAN ("Stacked
Cross Attention for Image-Text Matching", Lee et al., ECCV 2018;
``evaluation.py`` of kuanghuei/SCAN) computes in ``i2t`` and ``t2i``, from an
image x caption similarity matrix :math:`S \in \mathbb{R}^{N_{img} \times N_{cap}}`:

* **image -> text**: the captions are ranked by :math:`S_{i,:}`, highest
  first; the 0-based rank of image :math:`i` is the best (lowest) rank among
  its ground-truth captions :math:`G_i`,

  .. math::
      r_i = \min_{j \in G_i} \#\{j' : j' \text{ ranked before } j \text{ by } S_{i,:}\}

* **text -> image**: the images are ranked by :math:`S_{:,j}`; the rank of
  caption :math:`j` is the rank of its one image.

Then, per direction, ``R@K = 100 * mean(r < K)`` for K = 1, 5, 10 (percent,
as they report), ``medr = floor(median(r)) + 1`` and ``meanr = mean(r) + 1``
(1-based), and ``rsum`` is the sum of the six recalls.

Ties: the reference sorts with ``numpy.argsort(scores)[::-1]``, whose order
among equal scores is unspecified (numpy's default sort is not stable; numpy
2.x already reorders ties in arrays of ten elements). Here the order is that
of a stable sort on ``-score``: among equal scores the lower index (caption
index for image -> text, image index for text -> image) ranks first. On
scores without ties the ranks equal the reference's exactly.

No sort is needed: the rank of an item is the number of items that beat it
(a higher score, or an equal score and a lower index), counted in one pass
over the matrix in row chunks, which is :math:`O(N_{img} N_{cap})` time and
bounded memory; a 5,000 x 25,000 matrix (COCO 5K) takes about a second on a
CPU.

Protocols: COCO 5K is :func:`retrieval_metrics` on the full 5,000 x 25,000
test matrix; COCO 1K is :func:`coco_1k_5fold`; Flickr30K 1K is
:func:`retrieval_metrics` on its 1,000 x 5,000 test matrix.
"""

from __future__ import annotations

from itertools import chain
from typing import Dict, Hashable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from mmgraph.errors import InputError

ArrayLike = Union[Tensor, np.ndarray]

RECALL_KS: Tuple[int, ...] = (1, 5, 10)
DIRECTIONS: Tuple[str, ...] = ("i2t", "t2i")
# Elements of the similarity matrix compared at once; bounds the temporary
# boolean masks to a few tens of MB whatever the matrix size.
_CHUNK_ELEMENTS = 1 << 22


def _as_tensor(x: ArrayLike, name: str) -> Tensor:
    try:
        t = torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as err:
        raise InputError(
            f"{name} must be a tensor or numpy array of numbers, got {type(x).__name__}"
        ) from err
    return t.detach()


def _check_sims(sims: ArrayLike) -> Tensor:
    s = _as_tensor(sims, "sims")
    if s.dim() != 2:
        raise InputError(
            f"sims must be a 2-D image x caption similarity matrix [N_img, N_cap], got shape {tuple(s.shape)}"
        )
    if s.shape[0] == 0 or s.shape[1] == 0:
        raise InputError(
            f"sims is empty (shape {tuple(s.shape)}); it needs at least one image and one caption"
        )
    if s.is_complex() or s.dtype == torch.bool:
        raise InputError(f"sims must hold real scores, got dtype {s.dtype}")
    if s.is_floating_point():
        nan = torch.isnan(s)
        if bool(nan.any()):
            i, j = (int(v) for v in nan.nonzero()[0])
            raise InputError(
                f"sims holds {int(nan.sum())} NaN score(s), the first at image {i}, caption {j}; "
                "fix the model or the similarity function before evaluating"
            )
    return s


def _caption_images(
    num_images: int, num_captions: int, captions_per_image: int, image_of_caption: Optional[ArrayLike], device
) -> Tensor:
    """The image index of every caption, checked: [N_cap] long."""
    if image_of_caption is None:
        if captions_per_image < 1 or num_captions != num_images * captions_per_image:
            raise InputError(
                f"sims has {num_images} images and {num_captions} captions, not {captions_per_image} captions "
                f"per image (caption j belongs to image j // {captions_per_image}); pass captions_per_image "
                "or image_of_caption [N_cap] for another layout"
            )
        return torch.arange(num_captions, device=device) // captions_per_image
    owner = _as_tensor(image_of_caption, "image_of_caption")
    if owner.dim() != 1 or owner.numel() != num_captions:
        raise InputError(
            f"image_of_caption must have one image index per caption, shape [{num_captions}], "
            f"got shape {tuple(owner.shape)}"
        )
    if owner.is_floating_point() or owner.is_complex() or owner.dtype == torch.bool:
        raise InputError(f"image_of_caption must hold integer image indices, got dtype {owner.dtype}")
    owner = owner.to(device=device, dtype=torch.long)
    bad = (owner < 0) | (owner >= num_images)
    if bool(bad.any()):
        j = int(bad.nonzero()[0])
        raise InputError(
            f"image_of_caption[{j}] = {int(owner[j])} is not an image index in [0, {num_images}) "
            f"({int(bad.sum())} caption(s) out of range)"
        )
    uncaptioned = torch.bincount(owner, minlength=num_images) == 0
    if bool(uncaptioned.any()):
        missing = uncaptioned.nonzero().flatten()[:5].tolist()
        raise InputError(
            f"{int(uncaptioned.sum())} image(s) have no caption (first {missing}); image -> text ranks "
            "need at least one ground-truth caption per image: drop those rows of sims"
        )
    return owner


def retrieval_ranks(
    sims: ArrayLike,
    captions_per_image: int = 5,
    image_of_caption: Optional[ArrayLike] = None,
) -> Tuple[Tensor, Tensor]:
    r"""The 0-based retrieval ranks in both directions, as ``i2t`` and ``t2i``
    of VSE++ / SCAN compute them (see the module doc, ties included).

    Args:
        sims (Tensor or np.ndarray): image x caption similarities
            [N_img, N_cap], higher is more similar.
        captions_per_image (int, optional): caption :math:`j` belongs to image
            ``j // captions_per_image`` (the reference's layout). (default: ``5``)
        image_of_caption (Tensor or np.ndarray, optional): the image index of
            every caption [N_cap]; replaces the default layout. Every image
            needs at least one caption. (default: ``None``)

    Returns:
        (Tensor, Tensor): ``i2t`` [N_img], the rank of the best ground-truth
        caption of each image, and ``t2i`` [N_cap], the rank of the image of
        each caption; long, on the device of ``sims``.

    Raises:
        InputError: ``sims`` is not 2-D, holds NaN, or does not match the
            caption layout.

    Shapes:
        - **input:** sims :math:`(N_{img}, N_{cap})`, image_of_caption :math:`(N_{cap})`
        - **output:** :math:`(N_{img})`, :math:`(N_{cap})`
    """
    s = _check_sims(sims)
    num_images, num_captions = s.shape
    device = s.device
    owner = _caption_images(num_images, num_captions, captions_per_image, image_of_caption, device)
    cap_idx = torch.arange(num_captions, device=device)

    # Score of every caption with its own image, then the best ground-truth
    # caption of each image (the lowest index among equal best scores): its
    # rank is the minimum rank over the ground-truth captions.
    true_score = s[owner, cap_idx]  # [N_cap]
    # include_self=False: every image has a caption, so no start value enters.
    best_score = true_score.new_empty(num_images).scatter_reduce(
        0, owner, true_score, reduce="amax", include_self=False
    )  # [N_img]
    candidate = torch.where(true_score == best_score[owner], cap_idx, num_captions)  # [N_cap]
    best_caption = cap_idx.new_empty(num_images).scatter_reduce(
        0, owner, candidate, reduce="amin", include_self=False
    )  # [N_img]

    i2t = torch.empty(num_images, dtype=torch.long, device=device)
    t2i = torch.zeros(num_captions, dtype=torch.long, device=device)
    rows = max(1, _CHUNK_ELEMENTS // num_captions)
    for start in range(0, num_images, rows):
        block = s[start : start + rows]  # [B, N_cap]
        img_idx = torch.arange(start, start + block.shape[0], device=device)  # [B]
        # Image -> text: captions that beat the best ground-truth caption.
        m = best_score[start : start + rows, None]  # [B, 1]
        g = best_caption[start : start + rows, None]  # [B, 1]
        beats = (block > m) | ((block == m) & (cap_idx[None, :] < g))
        i2t[start : start + block.shape[0]] = beats.sum(dim=1)
        # Text -> image: images of this block that beat each caption's image.
        beats = (block > true_score[None, :]) | (
            (block == true_score[None, :]) & (img_idx[:, None] < owner[None, :])
        )
        t2i += beats.sum(dim=0)
    return i2t, t2i


def _summary(ranks: Tensor, prefix: str) -> Dict[str, float]:
    # The reference's own expressions on a float64 rank array, so that the
    # numbers agree with it to the last bit.
    r = ranks.cpu().numpy().astype(np.float64)
    out = {f"{prefix}_r{k}": 100.0 * int((r < k).sum()) / len(r) for k in RECALL_KS}
    out[f"{prefix}_medr"] = float(np.floor(np.median(r)) + 1)
    out[f"{prefix}_meanr"] = float(r.mean() + 1)
    return out


def retrieval_metrics(
    sims: ArrayLike,
    captions_per_image: int = 5,
    image_of_caption: Optional[ArrayLike] = None,
) -> Dict[str, float]:
    r"""Recall@1/5/10, median and mean rank in both directions, and rsum, as
    the VSE++ / SCAN evaluation computes them (see the module doc).

    Args:
        sims (Tensor or np.ndarray): image x caption similarities
            [N_img, N_cap], higher is more similar.
        captions_per_image (int, optional): caption :math:`j` belongs to image
            ``j // captions_per_image``. (default: ``5``)
        image_of_caption (Tensor or np.ndarray, optional): the image index of
            every caption [N_cap], for any other layout. (default: ``None``)

    Returns:
        Dict[str, float]: ``i2t_r1``, ``i2t_r5``, ``i2t_r10`` (percent),
        ``i2t_medr``, ``i2t_meanr`` (1-based ranks), the same five with
        prefix ``t2i``, and ``rsum`` (sum of the six recalls, 0..600).

    Raises:
        InputError: ``sims`` is not 2-D, holds NaN, or does not match the
            caption layout.

    Example:
        >>> sims = img_emb @ cap_emb.T  # [1000, 5000] cosine similarities
        >>> retrieval_metrics(sims)["rsum"]
    """
    i2t, t2i = retrieval_ranks(sims, captions_per_image, image_of_caption)
    out = {**_summary(i2t, "i2t"), **_summary(t2i, "t2i")}
    # Summed in the reference's order: r1 + r5 + r10 (i2t), then t2i.
    out["rsum"] = sum(out[f"{d}_r{k}"] for d in DIRECTIONS for k in RECALL_KS)
    return out


def coco_1k_5fold(
    sims: ArrayLike,
    captions_per_image: int = 5,
    image_of_caption: Optional[ArrayLike] = None,
    n_folds: int = 5,
) -> Dict[str, float]:
    r"""The COCO 1K protocol: :func:`retrieval_metrics` on each of
    ``n_folds`` consecutive blocks of images (1,000 images and their 5,000
    captions each for the 5,000 COCO test images), averaged over the folds,
    as ``evalrank(fold5=True)`` of VSE++ / SCAN.

    Every entry, medians and mean ranks included, is the mean of the
    per-fold values; ``rsum`` is the mean of the per-fold rsums (the sum of
    the six averaged recalls). The reference prints ``mean_metrics[10] * 6``
    as "rsum", an indexing slip that gives twice the image -> text sum; the
    number papers report is the one returned here.

    Args:
        sims (Tensor or np.ndarray): image x caption similarities
            [N_img, N_cap] of the whole test split; N_img divisible by
            ``n_folds``.
        captions_per_image (int, optional): see :func:`retrieval_metrics`.
            (default: ``5``)
        image_of_caption (Tensor or np.ndarray, optional): see
            :func:`retrieval_metrics`; a fold holds the captions of its
            images. (default: ``None``)
        n_folds (int, optional): the number of folds. (default: ``5``)

    Returns:
        Dict[str, float]: the keys of :func:`retrieval_metrics`, averaged.

    Raises:
        InputError: the images do not split into ``n_folds`` equal folds, or
            :func:`retrieval_metrics` rejects a fold.
    """
    s = _check_sims(sims)
    num_images, num_captions = s.shape
    if n_folds < 1 or num_images % n_folds != 0:
        raise InputError(
            f"{num_images} images do not split into {n_folds} equal folds; the COCO 1K protocol "
            "takes the 5,000 test images (5 folds of 1,000)"
        )
    owner = _caption_images(num_images, num_captions, captions_per_image, image_of_caption, s.device)
    fold_size = num_images // n_folds
    folds: List[Dict[str, float]] = []
    for f in range(n_folds):
        cols = ((owner >= f * fold_size) & (owner < (f + 1) * fold_size)).nonzero().flatten()  # [N_cap_f]
        folds.append(
            retrieval_metrics(s[f * fold_size : (f + 1) * fold_size, cols], 1, owner[cols] - f * fold_size)
        )
    return {key: float(np.mean([fold[key] for fold in folds])) for key in folds[0]}


def _flatten_negatives(
    neg_scores: Union[ArrayLike, Sequence[Sequence[float]]], num_captions: int
) -> Tuple[Tensor, Tensor, List[int]]:
    """Negative scores flattened to [M] with their caption index [M], and the per-caption counts."""
    if isinstance(neg_scores, (Tensor, np.ndarray)):
        neg = _as_tensor(neg_scores, "neg_scores")
        if neg.dim() != 2 or neg.shape[0] != num_captions:
            raise InputError(
                f"neg_scores must be [N, K] with N = {num_captions} captions (or a list of N lists), "
                f"got shape {tuple(neg.shape)}"
            )
        counts = [neg.shape[1]] * num_captions
        return neg.reshape(-1), torch.arange(num_captions).repeat_interleave(neg.shape[1]), counts  # [N * K]
    rows = list(neg_scores)
    if len(rows) != num_captions:
        raise InputError(
            f"neg_scores has {len(rows)} rows for {num_captions} captions; give one list per caption"
        )
    counts = [len(row) for row in rows]
    flat = _as_tensor(list(chain.from_iterable(rows)), "neg_scores")
    owner = torch.repeat_interleave(torch.arange(num_captions), torch.tensor(counts, dtype=torch.long))  # [M]
    return flat, owner, counts


def _flatten_kinds(kinds: Sequence, counts: List[int], dense: bool) -> List[Hashable]:
    """Kind labels flattened in the order of :func:`_flatten_negatives`."""
    rows = list(kinds)
    width = counts[0] if counts else 0
    # A dense [N, K] input may name one kind per column.
    if dense and len(rows) == width and all(not isinstance(k, (list, tuple, np.ndarray)) for k in rows):
        return rows * len(counts)
    if len(rows) != len(counts):
        raise InputError(
            f"kinds has {len(rows)} rows for {len(counts)} captions; give one kind per negative, "
            "shaped like neg_scores (or one per column for a dense [N, K] neg_scores)"
        )
    for i, (row, n) in enumerate(zip(rows, counts)):
        if len(row) != n:
            raise InputError(
                f"caption {i}: {n} negative score(s) but {len(row)} kind(s); give one kind per negative"
            )
    return list(chain.from_iterable(rows))


def hard_negative_accuracy(
    pos_scores: ArrayLike,
    neg_scores: Union[ArrayLike, Sequence[Sequence[float]]],
    kinds: Optional[Sequence] = None,
) -> Dict[Hashable, float]:
    r"""Accuracy against compositional hard negatives, in the manner of ARO
    ("When and why vision-language models behave like bags-of-words",
    Yuksekgonul et al., ICLR 2023): does the image score its true caption
    above captions with swapped attributes, relations or objects?

    Overall, the fraction of captions :math:`i` whose positive score beats
    every one of its negatives,

    .. math::
        \mathrm{acc} = \frac{1}{N} \sum_{i=1}^{N}
        \mathbb{1}\bigl[p_i > n_{ik} \ \forall k\bigr],

    and per negative kind :math:`c`, the fraction of (caption, negative of
    kind :math:`c`) pairs with :math:`p_i > n_{ik}`. A tie counts as a
    failure (a model that scores everything equal gets 0, not 1).

    Args:
        pos_scores (Tensor or np.ndarray): the score of each true caption [N].
        neg_scores (Tensor, np.ndarray or list of lists): the scores of each
            caption's negatives, dense [N, K] or ragged (one list per
            caption, each non-empty).
        kinds (Sequence, optional): the kind of each negative (e.g.
            ``"attribute"``, ``"relation"``, ``"object"``), shaped like
            ``neg_scores``, or one kind per column for a dense ``neg_scores``.
            (default: ``None``)

    Returns:
        Dict[Hashable, float]: ``"overall"`` and, with ``kinds``, one entry
        per kind (sorted), fractions in [0, 1].

    Raises:
        InputError: shapes disagree, a caption has no negative, a score is
            NaN, or a kind is named ``"overall"``.

    Shapes:
        - **input:** pos_scores :math:`(N)`, neg_scores :math:`(N, K)` or ragged
        - **output:** a dict of floats
    """
    pos = _as_tensor(pos_scores, "pos_scores")
    if pos.dim() != 1 or pos.numel() == 0:
        raise InputError(f"pos_scores must be a non-empty 1-D vector [N], got shape {tuple(pos.shape)}")
    num_captions = pos.numel()
    dense = isinstance(neg_scores, (Tensor, np.ndarray))
    neg, owner, counts = _flatten_negatives(neg_scores, num_captions)
    empty = [i for i, n in enumerate(counts) if n == 0]
    if empty:
        raise InputError(
            f"{len(empty)} caption(s) have no negative (first {empty[:5]}); drop them or give each at least one"
        )
    for name, t in (("pos_scores", pos), ("neg_scores", neg)):
        if t.is_floating_point() and bool(torch.isnan(t).any()):
            raise InputError(f"{name} holds NaN at flat position {int(torch.isnan(t).nonzero()[0])}")
    owner = owner.to(pos.device)
    neg = neg.to(pos.device)
    wins = pos[owner] > neg  # [M]; a tie is a failure
    failures = torch.bincount(owner, weights=(~wins).double(), minlength=num_captions)  # [N]
    out: Dict[Hashable, float] = {"overall": float((failures == 0).double().mean())}
    if kinds is None:
        return out
    flat_kinds = _flatten_kinds(kinds, counts, dense)
    names, kind_idx = np.unique(np.asarray(flat_kinds), return_inverse=True)
    if "overall" in names.tolist():
        raise InputError(
            "a negative kind is named 'overall', which the result keeps for the overall accuracy"
        )
    kind_idx = torch.as_tensor(kind_idx.reshape(-1), device=pos.device)  # [M]
    won = torch.bincount(kind_idx, weights=wins.double(), minlength=len(names))
    total = torch.bincount(kind_idx, minlength=len(names))
    for k, name in enumerate(names.tolist()):
        out[name] = float(won[k] / total[k])
    return out
