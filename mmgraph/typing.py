"""The one table of node and edge type names, and the shared type aliases.

Every module spells node and edge types through the constants here, never as
string literals, so that the graph schema lives in one place.

Graph schema (a :class:`torch_geometric.data.HeteroData` per sample):

==================================  ==========================================================
what                                tensors
==================================  ==========================================================
``region`` nodes                    ``x`` [R, F] features (absent for scene-graph regions),
                                    ``box`` [R, 4] xyxy normalised to [0, 1],
                                    optional ``label`` [R] and ``attr`` [R, A] (-1 padded)
``token`` nodes                     ``x`` [T] vocabulary ids, ``pos`` [T] positions
(region, spatial, region)           ``edge_index`` [2, E], ``edge_type`` [E] in 1..12 (ReGAT classes),
                                    ``edge_attr`` [E, 4] relative box geometry
(region, implicit, region)          k-nearest or complete region pairs, ``edge_attr`` as above
(region, semantic, region)          scene-graph relations, ``edge_type`` = predicate id
(token, dep, token)                 head -> dependent, ``edge_type`` = dependency label id
(token, cross, region) and back     cross-modal edges (complete, top-k or grounded)
(token, grounding, region)          supervision only, never passed along: each token -> the
                                    regions its phrase names (``GraphBuilder(grounding=True)``)
graph level                         ``sample_id``, ``text``, ``image_size`` [1, 2] (w, h), ``y``
==================================  ==========================================================
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple, Union

from torch import Tensor

# Node types.
REGION = "region"
TOKEN = "token"
NODE_TYPES: Tuple[str, ...] = (REGION, TOKEN)

# Relation names.
SPATIAL = "spatial"
IMPLICIT = "implicit"
SEMANTIC = "semantic"
DEP = "dep"
CROSS = "cross"
GROUNDING = "grounding"

EdgeType = Tuple[str, str, str]
NodeType = str

# Edge types.
SPATIAL_EDGE: EdgeType = (REGION, SPATIAL, REGION)
IMPLICIT_EDGE: EdgeType = (REGION, IMPLICIT, REGION)
SEMANTIC_EDGE: EdgeType = (REGION, SEMANTIC, REGION)
DEP_EDGE: EdgeType = (TOKEN, DEP, TOKEN)
TOKEN_TO_REGION: EdgeType = (TOKEN, CROSS, REGION)
REGION_TO_TOKEN: EdgeType = (REGION, CROSS, TOKEN)
# Word-region grounding from the data (a training signal for alignment losses; no layer passes
# messages along it, so it is not in EDGE_TYPES).
GROUNDING_EDGE: EdgeType = (TOKEN, GROUNDING, REGION)

REGION_EDGE_TYPES: Tuple[EdgeType, ...] = (SPATIAL_EDGE, IMPLICIT_EDGE, SEMANTIC_EDGE)
TOKEN_EDGE_TYPES: Tuple[EdgeType, ...] = (DEP_EDGE,)
CROSS_EDGE_TYPES: Tuple[EdgeType, ...] = (TOKEN_TO_REGION, REGION_TO_TOKEN)
EDGE_TYPES: Tuple[EdgeType, ...] = REGION_EDGE_TYPES + TOKEN_EDGE_TYPES + CROSS_EDGE_TYPES

# Spatial relation classes of ReGAT (Li et al. 2019); 0 is never used so that
# the class ids match the paper's numbering.
NUM_SPATIAL_CLASSES = 13  # ids 0..12, 12 = self-loop
SPATIAL_INSIDE = 1  # box j strictly inside box i
SPATIAL_COVER = 2  # box j strictly covers box i
SPATIAL_OVERLAP = 3  # IoU >= 0.5
SPATIAL_SELF = 12

# Size of the relative box geometry vector (Hu et al. 2018).
GEOMETRY_DIM = 4

# Type aliases in the manner of torch_geometric.typing.
OptTensor = Optional[Tensor]
PairTensor = Tuple[Tensor, Tensor]
TensorOrPair = Union[Tensor, PairTensor]
ImageSize = Tuple[float, float]  # (width, height) in pixels
Metadata = Tuple[List[NodeType], List[EdgeType]]
TensorDict = Dict[str, Tensor]
EdgeTensorDict = Dict[EdgeType, Tensor]

# Dependency labels: the ClearNLP label set that spaCy's English pipelines
# predict, then ``seq`` (the explicit sequential parser's adjacent-token
# relation) and ``<unk>`` (a label the parser produced that is not listed).
# Reverse edges, when asked for, use ``label_id + NUM_DEP_LABELS``.
DEP_LABELS: Tuple[str, ...] = (
    "ROOT", "acl", "acomp", "advcl", "advmod", "agent", "amod", "appos", "attr", "aux",
    "auxpass", "case", "cc", "ccomp", "compound", "conj", "csubj", "csubjpass", "dative",
    "dep", "det", "dobj", "expl", "intj", "mark", "meta", "neg", "nmod", "npadvmod",
    "nsubj", "nsubjpass", "nummod", "oprd", "parataxis", "pcomp", "pobj", "poss",
    "preconj", "predet", "prep", "prt", "punct", "quantmod", "relcl", "xcomp",
    "seq", "<unk>",
)  # fmt: skip
NUM_DEP_LABELS = len(DEP_LABELS)
DEP_LABEL_TO_ID: Dict[str, int] = {label: i for i, label in enumerate(DEP_LABELS)}
