"""Karpathy-split caption files (COCO and Flickr30k retrieval/captioning).

The ``dataset_coco.json`` / ``dataset_flickr30k.json`` files of "Deep
Visual-Semantic Alignments for Generating Image Descriptions" (Karpathy and
Fei-Fei, CVPR 2015)::

    {"dataset": "coco" | "flickr30k",
     "images": [{"filename", "imgid", "split", "sentids", "filepath"?, "cocoid"?,
                 "sentences": [{"raw", "tokens", "imgid", "sentid"}, ...]}, ...]}

Splits are ``train``, ``val``, ``test`` and, for COCO only, ``restval`` (the
30,504 val2014 images outside the 5,000 + 5,000 val/test images). The usual
setting trains on ``train`` + ``restval`` (113,287 COCO images); loading
``"train"`` does so unless ``include_restval=False``.

Each image keeps exactly ``captions_per_image`` captions (5, the evaluation
protocol): a few COCO images have six or seven and are cut to their first
five; an image with fewer raises unless ``allow_fewer=True``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import List, Optional

from mmgraph.datasets.formats.features import ImageId, PathLike, normalize_image_id
from mmgraph.datasets.formats.vqa import _read_json
from mmgraph.errors import DataFormatError, InputError

SPLITS = ("train", "val", "test", "restval")
IMAGE_ID_SOURCES = ("auto", "cocoid", "filename", "imgid")


@dataclass
class KarpathyImage:
    """One image with its captions.

    Attributes:
        image_id (int or str): the id to match feature files (see ``image_id``
            of :func:`load_karpathy`).
        filename (str): the image file name, e.g. ``COCO_val2014_000000391895.jpg``.
        split (str): its split in the file (``restval`` stays ``restval``).
        captions (List[str]): the raw captions.
        tokens (List[List[str]]): the tokenised captions, aligned with ``captions``.
        sentids (List[int]): the sentence ids, aligned with ``captions``.
    """

    image_id: ImageId
    filename: str
    split: str
    captions: List[str]
    tokens: List[List[str]]
    sentids: List[Optional[int]]


def load_karpathy(
    path: PathLike,
    split: str,
    include_restval: bool = True,
    image_id: str = "auto",
    captions_per_image: int = 5,
    allow_fewer: bool = False,
) -> List[KarpathyImage]:
    """Reads the images of one split of a Karpathy-split caption file.

    Args:
        path (str or PathLike): ``dataset_coco.json`` or ``dataset_flickr30k.json``.
        split (str): ``"train"``, ``"val"``, ``"test"`` or ``"restval"``.
        include_restval (bool, optional): ``"train"`` also loads ``restval``.
            (default: ``True``)
        image_id (str, optional): where ids come from: ``"cocoid"`` (the COCO
            image id, what COCO feature files use), ``"filename"`` (the file
            name without extension: ``1000092795`` for Flickr30k), ``"imgid"``
            (the index in the file), or ``"auto"`` (``cocoid`` when the image
            has one, else ``filename``). (default: ``"auto"``)
        captions_per_image (int, optional): captions kept per image. (default: ``5``)
        allow_fewer (bool, optional): keep images with fewer captions instead
            of raising. (default: ``False``)

    Returns:
        List[KarpathyImage]: in file order.

    Raises:
        DataFormatError: a missing key, or an image with too few captions.
    """
    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}")
    if image_id not in IMAGE_ID_SOURCES:
        raise InputError(f"image_id must be one of {IMAGE_ID_SOURCES}, got {image_id!r}")
    if captions_per_image < 1:
        raise InputError(f"captions_per_image must be >= 1, got {captions_per_image}")
    wanted = {split, "restval"} if split == "train" and include_restval else {split}

    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataFormatError(f"file '{path}': expected a JSON object with a list under key 'images'")
    out: List[KarpathyImage] = []
    for i, img in enumerate(data["images"]):
        missing = [k for k in ("filename", "split", "sentences") if not isinstance(img, dict) or k not in img]
        if missing:
            name = img.get("filename", f"#{i}") if isinstance(img, dict) else f"#{i}"
            raise DataFormatError(f"file '{path}': image {name} lacks key(s) {missing}")
        if img["split"] not in wanted:
            continue
        where = f"file '{path}', image {img['filename']}"
        sentences = img["sentences"]
        for j, s in enumerate(sentences):
            if not isinstance(s, dict) or "raw" not in s:
                raise DataFormatError(f"{where}: sentence {j} lacks key 'raw'")
        if len(sentences) < captions_per_image and not allow_fewer:
            raise DataFormatError(
                f"{where}: {len(sentences)} captions, expected {captions_per_image}; "
                "pass allow_fewer=True to keep it"
            )
        sentences = sentences[:captions_per_image]
        out.append(
            KarpathyImage(
                image_id=_image_id(img, image_id, where, i),
                filename=img["filename"],
                split=img["split"],
                captions=[s["raw"] for s in sentences],
                tokens=[list(s.get("tokens", s["raw"].split())) for s in sentences],
                sentids=[s.get("sentid") for s in sentences],
            )
        )
    return out


def _image_id(img: dict, source: str, where: str, position: int) -> ImageId:
    if source == "auto":
        source = "cocoid" if "cocoid" in img else "filename"
    if source == "filename":
        return normalize_image_id(PurePosixPath(img["filename"]).stem)
    if source == "imgid":
        return normalize_image_id(img.get("imgid", position))
    if "cocoid" not in img:
        raise DataFormatError(f"{where}: no 'cocoid' (a Flickr30k file?); use image_id='filename'")
    return normalize_image_id(img["cocoid"])
