r"""Image-text retrieval on the Karpathy splits of COCO and Flickr30k as a PyG data set of graphs.

From `"Deep Visual-Semantic Alignments for Generating Image Descriptions"
<https://arxiv.org/abs/1412.2306>`_ (Karpathy and Fei-Fei, CVPR 2015), with
bottom-up-attention region features as in `"Stacked Cross Attention for
Image-Text Matching" <https://arxiv.org/abs/1803.08024>`_ (Lee et al., ECCV 2018).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

from mmgraph.datasets.base import PathLike, RegionFeatureDataset, file_fingerprint
from mmgraph.datasets.formats.karpathy import KarpathyImage, load_karpathy
from mmgraph.graph.builder import GraphBuilder, Sample


class KarpathyRetrieval(RegionFeatureDataset):
    r"""Captions of COCO or Flickr30k images: one graph per (image, caption).

    Region nodes are the detector regions of the image's feature record
    (``x``, ``box`` normalised by the stored image size); token nodes are
    the caption's tokens with their dependency arcs. There is no ``y``: the
    image-text pairs are the positives and retrieval draws its negatives
    from the rest of the batch. Graph-level attributes: ``image_id``,
    ``caption_index`` (0..4, the caption's place among the image's five),
    ``filename`` and, where the file has it, ``sentid``. Graphs come image by image, the five
    captions of an image in a row, so that graph ``5 i + k`` is caption
    ``k`` of image ``i`` (with the default ``captions_per_image=5`` and no
    image skipped).

    Raw layout under ``root``::

        root/dataset_coco.json        (or dataset_flickr30k.json: captions_file=)
        root/features                 (default; any layout of open_features)

    Image ids: the COCO id (``cocoid``) where the file has one, else the file
    name without extension (``1000092795`` for Flickr30k), as feature files
    name them; ``image_id=`` chooses (see
    :func:`~mmgraph.datasets.formats.load_karpathy`). An image without
    features raises :class:`~mmgraph.datasets.formats.MissingFeaturesError`
    naming the image and the caption, or its captions are skipped and
    counted with ``skip_invalid=True``. The token vocabulary comes from the
    training captions (``train``, plus COCO's ``restval`` by default) and is
    shared by every split.

    Args:
        root (str): the folder of the raw files; processed files go to
            ``root/processed``.
        split (str): ``"train"``, ``"val"`` or ``"test"``. (default: ``"train"``)
        captions_file (str): the Karpathy-split JSON, relative to ``root``.
            (default: ``"dataset_coco.json"``)
        features (str or dict): the feature file or folder, or ``{split: path}``
            (see :class:`~mmgraph.datasets.base.RegionFeatureDataset`).
            (default: ``"features"``)
        include_restval (bool): ``"train"`` also holds COCO's ``restval``
            images (the usual 113,287). (default: :obj:`True`)
        image_id (str): where image ids come from: ``"auto"``, ``"cocoid"``,
            ``"filename"`` or ``"imgid"``. (default: ``"auto"``)
        captions_per_image (int): captions kept per image. (default: ``5``)
        allow_fewer (bool): keep images with fewer captions instead of
            raising. (default: :obj:`False`)
        lazy_features, min_boxes, max_boxes: see
            :class:`~mmgraph.datasets.base.RegionFeatureDataset`.
        builder, min_token_count, skip_invalid, transform, pre_filter,
        force_reload: see :class:`~mmgraph.datasets.base.GraphDataset`.

    **STATS** (official Karpathy-split sizes; not measured here):

    .. list-table::
        :header-rows: 1

        * - data set
          - train images
          - val images
          - test images
          - captions per image
        * - COCO (``dataset_coco.json``)
          - 113,287 (82,783 train + 30,504 restval)
          - 5,000
          - 5,000
          - 5
        * - Flickr30k (``dataset_flickr30k.json``)
          - 29,000
          - 1,014
          - 1,000
          - 5

    Graphs per split are five times the images: 566,435 / 25,000 / 25,000
    for COCO.
    """

    splits = ("train", "val", "test")

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        captions_file: str = "dataset_coco.json",
        features: Union[PathLike, Mapping[str, PathLike]] = "features",
        include_restval: bool = True,
        image_id: str = "auto",
        captions_per_image: int = 5,
        allow_fewer: bool = False,
        builder: Optional[GraphBuilder] = None,
        **kwargs: Any,
    ):
        self.captions_file = captions_file
        self.include_restval = include_restval
        self.image_id_source = image_id
        self.captions_per_image = captions_per_image
        self.allow_fewer = allow_fewer
        self._loaded: Dict[str, List[KarpathyImage]] = {}
        super().__init__(root, split, features=features, builder=builder, **kwargs)

    @property
    def raw_file_names(self) -> List[str]:
        return [self.captions_file, self.features_name(self.split)]

    def images(self, split: str) -> List[KarpathyImage]:
        """The images of a split with their captions (read once)."""
        if split not in self._loaded:
            self._loaded[split] = load_karpathy(
                Path(self.raw_dir, self.captions_file),
                split,
                include_restval=self.include_restval,
                image_id=self.image_id_source,
                captions_per_image=self.captions_per_image,
                allow_fewer=self.allow_fewer,
            )
        return self._loaded[split]

    def default_builder(self) -> GraphBuilder:
        return GraphBuilder(parser="spacy", region_edges=("spatial",), cross="complete")

    def dataset_settings(self) -> Dict[str, Any]:
        return {
            **super().dataset_settings(),
            "captions_file": [self.captions_file, file_fingerprint(Path(self.raw_dir, self.captions_file))],
            "include_restval": self.include_restval,
            "image_id": self.image_id_source,
            "captions_per_image": self.captions_per_image,
            "allow_fewer": self.allow_fewer,
        }

    def read_samples(self, split: str) -> List[Sample]:
        images = self.images(split)
        regions = self.read_regions(split, (img.image_id for img in images))
        samples = []
        for img in images:
            for k, (caption, sentid) in enumerate(zip(img.captions, img.sentids)):
                sid = f"{img.image_id}/{k}"
                r = self.sample_regions(regions, img.image_id, sid, f"caption {k} of image {img.filename}")
                if r is None:
                    continue
                extra = {"image_id": img.image_id, "caption_index": k, "filename": img.filename}
                if sentid is not None:
                    extra["sentid"] = sentid
                samples.append(Sample(r, caption, sid, extra=extra))
        return samples

    def vocab_samples(self, split: str) -> List[Sample]:
        # The captions alone: fitting the token vocabulary reads no features.
        return [
            Sample(None, caption, f"{img.image_id}/{k}")
            for img in self.images(split)
            for k, caption in enumerate(img.captions)
        ]
