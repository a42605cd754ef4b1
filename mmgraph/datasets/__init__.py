"""Data sets: the synthetic generator, standard-format readers, graph data sets."""

from mmgraph.datasets.base import GraphDataset, RegionFeatureDataset
from mmgraph.datasets.gqa import GQA
from mmgraph.datasets.karpathy import KarpathyRetrieval
from mmgraph.datasets.safe_pickle import safe_load
from mmgraph.datasets.sort_of_clevr import generate_sort_of_clevr, read_sort_of_clevr
from mmgraph.datasets.sort_of_clevr_graphs import SortOfClevr
from mmgraph.datasets.synthetic import generate_dataset, load_synthetic
from mmgraph.datasets.synthetic_graphs import SyntheticRetrieval, SyntheticVQA
from mmgraph.datasets.vqa_v2 import VQAv2

__all__ = [
    "GQA",
    "GraphDataset",
    "KarpathyRetrieval",
    "RegionFeatureDataset",
    "SortOfClevr",
    "VQAv2",
    "SyntheticRetrieval",
    "SyntheticVQA",
    "generate_dataset",
    "generate_sort_of_clevr",
    "load_synthetic",
    "read_sort_of_clevr",
    "safe_load",
]
