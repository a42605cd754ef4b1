"""Drawings and plots."""

from mmgraph.viz.graph import draw_graph, to_networkx

__all__ = ["draw_graph", "to_networkx"]
