"""Readers for the field's standard file formats.

They turn local files into plain Python and torch records and download
nothing:

* :mod:`~mmgraph.datasets.formats.vqa`: VQA v2 questions, annotations,
  answer vocabularies and result files;
* :mod:`~mmgraph.datasets.formats.features`: region features (bottom-up-attention
  TSV, one ``.npz`` per image, HDF5) behind one :class:`FeatureStore`;
* :mod:`~mmgraph.datasets.formats.gqa`: GQA questions and scene graphs;
* :mod:`~mmgraph.datasets.formats.karpathy`: Karpathy-split caption files.
"""

from mmgraph.datasets.formats.features import (
    FeatureStore,
    H5FeatureStore,
    ImageId,
    MissingFeaturesError,
    NPZFeatureStore,
    RegionFeatures,
    TSVFeatureStore,
    check_features_cover,
    iter_tsv_features,
    normalize_image_id,
    open_features,
    write_h5_features,
    write_npz_features,
    write_tsv_features,
)
from mmgraph.datasets.formats.gqa import (
    GQAQuestion,
    GQASceneGraph,
    load_gqa_questions,
    load_gqa_scene_graphs,
    parse_gqa_scene_graph,
)
from mmgraph.datasets.formats.karpathy import KarpathyImage, load_karpathy
from mmgraph.datasets.formats.vqa import (
    VQAQuestion,
    build_answer_vocab,
    load_vqa,
    load_vqa_results,
    write_vqa_results,
)

__all__ = [
    "FeatureStore",
    "GQAQuestion",
    "GQASceneGraph",
    "H5FeatureStore",
    "ImageId",
    "KarpathyImage",
    "MissingFeaturesError",
    "NPZFeatureStore",
    "RegionFeatures",
    "TSVFeatureStore",
    "VQAQuestion",
    "build_answer_vocab",
    "check_features_cover",
    "iter_tsv_features",
    "load_gqa_questions",
    "load_gqa_scene_graphs",
    "load_karpathy",
    "load_vqa",
    "load_vqa_results",
    "normalize_image_id",
    "open_features",
    "parse_gqa_scene_graph",
    "write_h5_features",
    "write_npz_features",
    "write_tsv_features",
    "write_vqa_results",
]
