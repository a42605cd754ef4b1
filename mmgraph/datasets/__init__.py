"""Data sets: the synthetic generator, standard-format readers, graph data sets."""

from mmgraph.datasets.base import GraphDataset
from mmgraph.datasets.safe_pickle import safe_load
from mmgraph.datasets.sort_of_clevr import generate_sort_of_clevr, read_sort_of_clevr
from mmgraph.datasets.synthetic import generate_dataset, load_synthetic
from mmgraph.datasets.synthetic_graphs import SyntheticRetrieval, SyntheticVQA

__all__ = [
    "GraphDataset",
    "SyntheticRetrieval",
    "SyntheticVQA",
    "generate_dataset",
    "generate_sort_of_clevr",
    "load_synthetic",
    "read_sort_of_clevr",
    "safe_load",
]
