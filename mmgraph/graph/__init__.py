"""Graph construction: from images and text to one heterogeneous PyG graph."""

from mmgraph.graph.boxes import (
    box_geometry,
    box_iou,
    grid_boxes,
    normalize_boxes,
    pairwise_geometry,
    validate_boxes,
)
from mmgraph.graph.builder import GraphBuilder, Sample, sample_from_data, sample_to_data
from mmgraph.graph.collate import GraphLoader, collate_graphs, collate_stored, to_device
from mmgraph.graph.cross import complete_cross_edges, grounded_cross_edges, topk_cross_edges
from mmgraph.graph.pairs import negative_pairs, pair_batch, pair_graph, pair_graphs
from mmgraph.graph.regions import (
    Regions,
    regions_from_detections,
    regions_from_feature_map,
    regions_from_scene_graph,
    scene_graph_vocabularies,
)
from mmgraph.graph.segments import find_segments, match_segments, regions_from_segments, segment_feature_dim
from mmgraph.graph.spatial import (
    complete_edges,
    complete_edges_batch,
    knn_edges,
    knn_edges_batch,
    spatial_relations,
    spatial_relations_batch,
    spatial_relations_reference,
)
from mmgraph.graph.text import (
    ParsedText,
    SequentialParser,
    SpacyParser,
    build_vocabulary,
    dependency_edges,
    make_parser,
)
from mmgraph.graph.vocab import Vocabulary

__all__ = [
    "GraphLoader",
    "collate_graphs",
    "collate_stored",
    "to_device",
    "GraphBuilder",
    "ParsedText",
    "Regions",
    "Sample",
    "SequentialParser",
    "SpacyParser",
    "Vocabulary",
    "box_geometry",
    "box_iou",
    "build_vocabulary",
    "complete_cross_edges",
    "complete_edges",
    "complete_edges_batch",
    "dependency_edges",
    "find_segments",
    "grid_boxes",
    "grounded_cross_edges",
    "knn_edges",
    "knn_edges_batch",
    "make_parser",
    "match_segments",
    "negative_pairs",
    "normalize_boxes",
    "pair_batch",
    "pair_graph",
    "pair_graphs",
    "pairwise_geometry",
    "regions_from_detections",
    "regions_from_feature_map",
    "regions_from_scene_graph",
    "regions_from_segments",
    "sample_from_data",
    "sample_to_data",
    "scene_graph_vocabularies",
    "segment_feature_dim",
    "spatial_relations",
    "spatial_relations_batch",
    "spatial_relations_reference",
    "topk_cross_edges",
    "validate_boxes",
]
