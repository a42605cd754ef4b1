"""Reusable graph layers on plain tensors.

Every layer here stands alone: it takes ``x`` / ``edge_index`` / ``batch``
tensors (or dicts of them, for :class:`FusionBlock`) and imports nothing from
:mod:`mmgraph.models`, :mod:`mmgraph.heads`, :mod:`mmgraph.datasets`,
:mod:`mmgraph.train` or :mod:`mmgraph.graph`, so it can be dropped into any
PyTorch / PyG model.
"""

from mmgraph.nn.cross_attention import CrossModalAttention, complete_edge_index
from mmgraph.nn.fusion import FeedForward, FusionBlock, edge_type_key
from mmgraph.nn.pointer import PointerAttention
from mmgraph.nn.pooling import AttentionPooling, GlobalNodePooling
from mmgraph.nn.relation_gat import RelationGATConv
from mmgraph.nn.scatter import num_graphs, scatter_max, scatter_mean, scatter_softmax, scatter_sum
from mmgraph.nn.single_stream import ModalityEmbedding, SingleStreamBlock

__all__ = [
    "RelationGATConv",
    "CrossModalAttention",
    "complete_edge_index",
    "PointerAttention",
    "FusionBlock",
    "FeedForward",
    "edge_type_key",
    "SingleStreamBlock",
    "ModalityEmbedding",
    "AttentionPooling",
    "GlobalNodePooling",
    "scatter_sum",
    "scatter_mean",
    "scatter_max",
    "scatter_softmax",
    "num_graphs",
]
