r"""Object regions found in the pixels of flat-coloured images: a detector for synthetic scenes.

Bottom-up attention models (ReGAT among them) read the regions a detector
proposes, with one feature vector per box, rather than the cells of a grid.
Synthetic scenes (Sort-of-CLEVR, the package's generator) draw each object
in one flat colour on a plain background without antialiasing, so their
objects can be found without a trained detector: a *segment* is a connected
set of pixels of one colour that is not the background's.
:func:`find_segments` finds them, :func:`regions_from_segments` turns them
into :class:`~mmgraph.graph.regions.Regions` whose features are the
object's own pixels: its box, cropped from the image with every pixel
outside the segment set to zero, and the segment's mask, both resampled to
``crop x crop`` (area averaging) and flattened. The model learns what to
read from them, as it would from a detector's RoI features.

Two objects of one colour that touch become one segment, and an object of
the background's colour is not found; :func:`match_segments` pairs found
segments with known object boxes, so a data set can say how often that
happens.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

from mmgraph.errors import InputError, sample_prefix
from mmgraph.graph.boxes import box_iou
from mmgraph.graph.regions import Regions

__all__ = ["find_segments", "regions_from_segments", "match_segments", "segment_feature_dim"]


def segment_feature_dim(crop: int = 8) -> int:
    """The size of the feature vector :func:`regions_from_segments` gives each region: RGB and mask,
    ``4 * crop * crop``."""
    return 4 * crop * crop


def _as_uint8(image: Tensor, sample_id: Optional[object]) -> np.ndarray:
    """``[3, H, W]`` uint8 (or float in [0, 1]) as an ``[H, W, 3]`` uint8 array."""
    prefix = sample_prefix(sample_id)
    if not isinstance(image, Tensor) or image.dim() != 3 or image.size(0) != 3:
        shape = list(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise InputError(f"{prefix}the image must be a tensor [3, H, W] (RGB), got {shape}")
    if image.dtype == torch.uint8:
        array = image
    elif image.is_floating_point():
        if image.numel() and not bool(((image >= 0) & (image <= 1)).all()):  # also catches NaN
            raise InputError(
                f"{prefix}a float image must have values in [0, 1], got "
                f"{float(image.min()):.3g}..{float(image.max()):.3g}; scale it, or pass uint8"
            )
        array = (image * 255).round().to(torch.uint8)
    else:
        raise InputError(f"{prefix}the image must be uint8 or float in [0, 1], got {image.dtype}")
    return array.permute(1, 2, 0).cpu().numpy()


def find_segments(
    image: Tensor,
    background: Optional[Sequence[int]] = None,
    min_pixels: int = 4,
    connectivity: int = 8,
    sample_id: Optional[object] = None,
) -> Tuple[Tensor, Tensor]:
    r"""The segments of a flat-coloured image: connected sets of pixels of
    one colour other than the background's.

    Args:
        image (torch.Tensor): ``[3, H, W]`` RGB, ``uint8`` or float in ``[0, 1]``
            (read as ``round(255 x)``).
        background (sequence of int, optional): the background's RGB in
            ``0..255``; by default the most common colour of the image's
            border pixels. (default: :obj:`None`)
        min_pixels (int, optional): smaller segments are dropped (stray
            pixels, slivers of an occluded object). (default: :obj:`4`)
        connectivity (int, optional): ``8`` (pixels touching at a corner
            connect) or ``4``. (default: :obj:`8`)
        sample_id (object, optional): named in error messages.

    Returns:
        ``(boxes, labels)``: pixel ``xyxy`` boxes ``[R, 4]`` (float; the last
        pixel's coordinate plus one, as the package's boxes), in reading
        order of their top-left corners (top to bottom, then left to
        right), and the segment of every pixel ``[H, W]`` (long; ``0`` for
        none, ``k + 1`` for box ``k``). ``R`` may be ``0``.
    """
    if connectivity not in (4, 8):
        raise InputError(f"{sample_prefix(sample_id)}connectivity must be 4 or 8, got {connectivity}")
    if min_pixels < 1:
        raise InputError(f"{sample_prefix(sample_id)}min_pixels must be >= 1, got {min_pixels}")
    pixels = _as_uint8(image, sample_id)  # [H, W, 3]
    height, width, _ = pixels.shape
    codes = (pixels[..., 0].astype(np.int32) << 16) | (pixels[..., 1].astype(np.int32) << 8) | pixels[..., 2]
    if background is None:
        border = np.concatenate([codes[0], codes[-1], codes[:, 0], codes[:, -1]])
        values, counts = np.unique(border, return_counts=True)
        back = int(values[counts.argmax()])
    else:
        rgb = [int(v) for v in background]
        if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise InputError(
                f"{sample_prefix(sample_id)}background must be three values in 0..255, got {background}"
            )
        back = (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]
    structure = ndimage.generate_binary_structure(2, 2 if connectivity == 8 else 1)
    found: List[Tuple[int, int, int, np.ndarray, Tuple[slice, slice]]] = []
    colours, counts = np.unique(codes[codes != back], return_counts=True)
    for colour in colours[counts >= min_pixels]:
        labelled, _ = ndimage.label(codes == colour, structure=structure)
        for k, box in enumerate(ndimage.find_objects(labelled)):
            mask = labelled[box] == k + 1
            if int(mask.sum()) >= min_pixels:
                found.append((box[0].start, box[1].start, int(colour), mask, box))
    found.sort(key=lambda f: f[:3])
    labels = torch.zeros(height, width, dtype=torch.long)
    boxes = torch.zeros(len(found), 4)
    for k, (_, _, _, mask, (rows, cols)) in enumerate(found):
        labels[rows, cols][torch.from_numpy(mask)] = k + 1
        boxes[k] = torch.tensor([cols.start, rows.start, cols.stop, rows.stop], dtype=torch.float)
    return boxes, labels


def regions_from_segments(
    image: Tensor,
    crop: int = 8,
    background: Optional[Sequence[int]] = None,
    min_pixels: int = 4,
    connectivity: int = 8,
    sample_id: Optional[object] = None,
) -> Regions:
    r"""Regions of the segments of a flat-coloured image
    (:func:`find_segments`), with features from their pixels.

    Region :math:`k`'s features are its box cut from the image (RGB in
    ``[0, 1]``, zero outside the segment) and the segment's mask, each
    resampled to ``crop x crop`` by area averaging: ``[4, crop, crop]``
    flattened, :func:`segment_feature_dim` values.

    Args:
        image (torch.Tensor): ``[3, H, W]`` RGB, ``uint8`` or float in ``[0, 1]``.
        crop (int, optional): side of the resampled box. (default: :obj:`8`)
        background, min_pixels, connectivity: see :func:`find_segments`.
        sample_id (object, optional): named in error messages.

    Raises:
        InputError: when the image has no segment (every pixel is the
            background's colour, or every segment is below ``min_pixels``).
    """
    if crop < 1:
        raise InputError(f"{sample_prefix(sample_id)}crop must be >= 1, got {crop}")
    boxes, labels = find_segments(image, background, min_pixels, connectivity, sample_id)
    height, width = labels.shape
    if boxes.size(0) == 0:
        raise InputError(
            f"{sample_prefix(sample_id)}no object found in the {width}x{height} image (every segment is the "
            f"background's colour or smaller than min_pixels={min_pixels}); check the background colour, or "
            "use grid regions for images that are not flat-coloured"
        )
    rgb = torch.from_numpy(_as_uint8(image, sample_id)).permute(2, 0, 1).float() / 255  # [3, H, W]
    features = []
    for k, (x0, y0, x1, y1) in enumerate(boxes.long().tolist()):
        mask = (labels[y0:y1, x0:x1] == k + 1).float()  # [h, w]
        cut = torch.cat([rgb[:, y0:y1, x0:x1] * mask, mask[None]])  # [4, h, w]
        features.append(F.adaptive_avg_pool2d(cut, crop).flatten())
    return Regions(boxes, (float(width), float(height)), features=torch.stack(features), sample_id=sample_id)


def match_segments(found: Tensor, objects: Tensor, min_iou: float = 0.5) -> List[Optional[int]]:
    """For every known object box, the found box that overlaps it most, if their IoU is at least
    ``min_iou`` (else ``None``). Boxes are ``xyxy`` ``[R, 4]`` and ``[O, 4]``; a found box may serve
    several objects (two touching objects of one colour found as one segment)."""
    if found.size(0) == 0 or objects.size(0) == 0:
        return [None] * objects.size(0)
    iou = box_iou(objects.float(), found.float())  # [O, R]
    best, index = iou.max(dim=1)
    return [int(i) if float(b) >= min_iou else None for b, i in zip(best, index)]
