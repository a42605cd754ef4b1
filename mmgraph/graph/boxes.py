r"""Box utilities: validation, normalisation, IoU, grids and the relative box
geometry of `"Relation Networks for Object Detection"
<https://arxiv.org/abs/1711.11575>`_ (Hu et al., CVPR 2018).

Boxes are ``xyxy``: ``(x1, y1, x2, y2)`` with ``x1 < x2`` and ``y1 < y2``, in
pixels unless a function says otherwise. Image sizes are ``(width, height)``.
Every function except :func:`validate_boxes` works on batched boxes
``[..., R, 4]``.
"""

from __future__ import annotations

import functools
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from mmgraph.errors import InputError, sample_prefix
from mmgraph.typing import ImageSize

#: Lower clamp of the centre offset ratios ``|dx| / w`` and ``|dy| / h`` before
#: the log in :func:`box_geometry`, as in the reference code of Hu et al.
GEOMETRY_EPS = 1e-3

ImageSizeLike = Union[ImageSize, Tensor]


def _size_tensor(image_size: ImageSizeLike, like: Tensor) -> Tensor:
    """``(w, h)`` or a ``[..., 2]`` tensor as a ``[..., 1, 2]`` tensor that
    broadcasts against ``[..., R, 2]`` coordinates."""
    size = torch.as_tensor(image_size, dtype=like.dtype, device=like.device)
    return size.unsqueeze(-2)


def normalize_boxes(boxes: Tensor, image_size: ImageSizeLike) -> Tensor:
    r"""Divides pixel ``xyxy`` boxes by the image size, giving ``xyxy`` in
    :math:`[0, 1]`.

    Args:
        boxes (torch.Tensor): pixel boxes ``[..., R, 4]``.
        image_size ((float, float) or torch.Tensor): ``(width, height)``, or a
            ``[..., 2]`` tensor with one size per leading batch entry.

    Shapes:
        - **input:** boxes :math:`(*, R, 4)`, image_size :math:`(2)` or :math:`(*, 2)`
        - **output:** :math:`(*, R, 4)`
    """
    size = _size_tensor(image_size, boxes)  # [..., 1, 2]
    return boxes / torch.cat([size, size], dim=-1)  # [..., 1, 4] = (w, h, w, h)


def box_centers(boxes: Tensor) -> Tensor:
    r"""Box centres ``(cx, cy)``.

    Shapes:
        - **input:** :math:`(*, R, 4)`
        - **output:** :math:`(*, R, 2)`
    """
    return (boxes[..., :2] + boxes[..., 2:]) * 0.5


def box_area(boxes: Tensor) -> Tensor:
    """Box areas ``[..., R]``; zero for empty boxes."""
    wh = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0)
    return wh[..., 0] * wh[..., 1]


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    r"""Pairwise intersection over union of two box sets.

    Boxes are continuous coordinates (no ``+1`` pixel convention). A pair
    whose union is empty (two degenerate boxes) gets IoU 0.

    .. math::
        \mathrm{IoU}(a_n, b_m) = \frac{|a_n \cap b_m|}{|a_n| + |b_m| - |a_n \cap b_m|}

    Shapes:
        - **input:** a :math:`(*, N, 4)`, b :math:`(*, M, 4)`
        - **output:** :math:`(*, N, M)`
    """
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])  # [..., N, M, 2]
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])  # [..., N, M, 2]
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[..., :, None] + box_area(b)[..., None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), 0.0)


def validate_boxes(
    boxes: Tensor,
    image_size: ImageSize,
    sample_id: Optional[object] = None,
    tolerance: float = 1.0,
) -> Tensor:
    r"""Checks pixel ``xyxy`` boxes of one image and returns them clipped to
    the image.

    A box may stick out of the image by at most ``tolerance`` pixels on any
    side (detectors and annotation tools often round outwards); such a box is
    clipped to ``[0, width] x [0, height]``. Further out is an error.

    Boxes must have a **positive** width and height after clipping: a zero
    width or height is an error, because the relative geometry
    (:func:`box_geometry`) divides by and takes logs of box sizes.

    Integer boxes are converted to ``float32``.

    Args:
        boxes (torch.Tensor): ``[R, 4]`` pixel ``xyxy`` boxes.
        image_size ((float, float)): ``(width, height)`` in pixels, both
            positive and finite.
        sample_id (object, optional): named in error messages. (default: :obj:`None`)
        tolerance (float, optional): how many pixels a box may exceed the
            image before it is an error rather than clipped. (default: :obj:`1.0`)

    Raises:
        InputError: wrong shape, a non-finite coordinate, a box outside the
            image by more than ``tolerance``, or an empty or inverted box; the
            message names the sample and the first offending box index.

    Shapes:
        - **input:** :math:`(R, 4)`
        - **output:** :math:`(R, 4)`
    """
    prefix = sample_prefix(sample_id)
    if not isinstance(boxes, Tensor):
        raise InputError(f"{prefix}boxes must be a torch.Tensor of shape [R, 4], got {type(boxes).__name__}")
    if boxes.dim() != 2 or boxes.size(-1) != 4:
        raise InputError(
            f"{prefix}boxes must have shape [R, 4] (pixel x1, y1, x2, y2), got {list(boxes.shape)}"
        )
    width, height = check_image_size(image_size, sample_id)
    if not boxes.is_floating_point():
        boxes = boxes.float()

    upper = boxes.new_tensor([width, height, width, height])
    finite = torch.isfinite(boxes).all(dim=-1)  # [R]
    outside = ((boxes < -tolerance) | (boxes > upper + tolerance)).any(dim=-1)
    clipped = torch.minimum(boxes.clamp(min=0), upper)
    empty = (clipped[:, 2:] <= clipped[:, :2]).any(dim=-1)
    bad = ~finite | outside | empty
    # One synchronising check on the common path; the diagnosis below only
    # runs for a bad sample. Comparisons with NaN are False, so the
    # non-finite test must come first.
    if not bool(bad.any()):
        return clipped
    for kind in (~finite, outside, empty):
        if bool(kind.any()):
            i = int(kind.nonzero()[0, 0])
            break
    if not finite[i]:
        raise InputError(f"{prefix}box {i} has a non-finite coordinate: {boxes[i].tolist()}; drop or fix it")
    if outside[i]:
        raise InputError(
            f"{prefix}box {i} = {boxes[i].tolist()} lies outside the {width:g}x{height:g} image by more "
            f"than {tolerance:g} pixels; are the boxes xyxy pixels of this image (not xywh or normalised)?"
        )
    raise InputError(
        f"{prefix}box {i} = {boxes[i].tolist()} (clipped to the image: {clipped[i].tolist()}) has zero or "
        "negative width or height; boxes must be xyxy with x1 < x2 and y1 < y2 — drop the box or widen it"
    )


def check_image_size(image_size: ImageSize, sample_id: Optional[object] = None) -> Tuple[float, float]:
    """``image_size`` as a ``(width, height)`` pair of positive finite floats;
    raises :class:`~mmgraph.errors.InputError` otherwise."""
    prefix = sample_prefix(sample_id)
    try:
        width, height = (float(v) for v in image_size)
    except (TypeError, ValueError):
        raise InputError(f"{prefix}image_size must be (width, height), got {image_size!r}") from None
    if not (0 < width < float("inf") and 0 < height < float("inf")):
        raise InputError(
            f"{prefix}image_size must be positive and finite (width, height), got {image_size!r}"
        )
    return width, height


def _relative_geometry(target: Tensor, source: Tensor) -> Tensor:
    """The geometry of Hu et al. for broadcastable target / source boxes."""
    t_wh = target[..., 2:] - target[..., :2]
    s_wh = source[..., 2:] - source[..., :2]
    offset = (box_centers(source) - box_centers(target)).abs() / t_wh
    return torch.cat([offset.clamp(min=GEOMETRY_EPS).log(), (s_wh / t_wh).log()], dim=-1)


def box_geometry(boxes: Tensor, edge_index: Tensor) -> Tensor:
    r"""Relative box geometry per edge, after Eq. (5) of `"Relation Networks for
    Object Detection" <https://arxiv.org/abs/1711.11575>`_ (Hu et al., 2018).

    For an edge from source :math:`j` to target :math:`i`, with box centres
    :math:`(x, y)` and sizes :math:`(w, h)`:

    .. math::
        \mathbf{g}_{ji} = \Big(
            \log \max\big(\tfrac{|x_j - x_i|}{w_i}, \epsilon\big),\;
            \log \max\big(\tfrac{|y_j - y_i|}{h_i}, \epsilon\big),\;
            \log \tfrac{w_j}{w_i},\;
            \log \tfrac{h_j}{h_i} \Big),
        \qquad \epsilon = 10^{-3}

    Everything is measured in the target's frame (the target box is the unit
    of length), so the vector does not change when the image is rescaled:
    pixel and normalised boxes give the same result. The paper's notation
    writes the first two terms relative to the other box; the reference code
    (``extract_position_matrix``) divides by the target's size as here, clamps
    the *ratio* at :math:`\epsilon = 10^{-3}` as here (so that coincident
    centres give :math:`\log \epsilon` instead of :math:`-\infty`), and
    uses :math:`\log(w_i / w_j)`, the negative of our third and fourth terms;
    a learned linear map on top absorbs the sign. Boxes must have positive
    width and height (see :func:`validate_boxes`).

    Args:
        boxes (torch.Tensor): ``xyxy`` boxes, pixel or normalised.
        edge_index (torch.Tensor): ``[2, E]``, row 0 the source :math:`j`,
            row 1 the target :math:`i` (PyG convention).

    Shapes:
        - **input:** boxes :math:`(R, 4)`, edge_index :math:`(2, E)`
        - **output:** :math:`(E, 4)`
    """
    return _relative_geometry(boxes[edge_index[1]], boxes[edge_index[0]])


def pairwise_geometry(boxes: Tensor) -> Tensor:
    r"""Dense :func:`box_geometry` over all ordered pairs: entry ``[i, j]`` is
    the geometry of the edge from source ``j`` to target ``i``.

    Shapes:
        - **input:** :math:`(*, R, 4)`
        - **output:** :math:`(*, R, R, 4)`
    """
    return _relative_geometry(boxes[..., :, None, :], boxes[..., None, :, :])


def grid_boxes(h: int, w: int, image_size: ImageSize) -> Tensor:
    r"""Pixel boxes of the cells of an ``h x w`` grid laid over the image,
    row-major: cell ``(r, c)`` is box ``r * w + c``.

    Args:
        h (int): grid rows.
        w (int): grid columns.
        image_size ((float, float)): ``(width, height)`` in pixels.

    Shapes:
        - **output:** :math:`(h \cdot w, 4)`, ``float32``
    """
    if h < 1 or w < 1:
        raise InputError(f"grid_boxes needs at least one row and column, got h={h}, w={w}")
    return _grid_boxes(int(h), int(w), *check_image_size(image_size)).clone()


@functools.lru_cache(maxsize=64)
def _grid_boxes(h: int, w: int, width: float, height: float) -> Tensor:
    """Cached: feature-map regions ask for the same grid for every sample.
    Callers must not modify the result."""
    # Multiply before dividing so that the last edge is exactly the image border.
    xs = torch.arange(w + 1, dtype=torch.float64) * width / w
    ys = torch.arange(h + 1, dtype=torch.float64) * height / h
    x1 = xs[:-1].expand(h, w)  # [h, w]
    y1 = ys[:-1, None].expand(h, w)  # [h, w]
    x2 = xs[1:].expand(h, w)
    y2 = ys[1:, None].expand(h, w)
    return torch.stack([x1, y1, x2, y2], dim=-1).reshape(h * w, 4).float()  # [h*w, 4]
