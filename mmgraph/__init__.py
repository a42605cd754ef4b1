"""mmgraph: graph-based vision-and-language reasoning on PyTorch Geometric.

The pieces, in the order data flows through them: :mod:`mmgraph.graph`
(images and text -> one ``HeteroData``), :mod:`mmgraph.datasets`,
:mod:`mmgraph.nn` (layers on plain tensors), :mod:`mmgraph.models` (encoders
and whole models, made by name), :mod:`mmgraph.heads`, :mod:`mmgraph.metrics`,
:mod:`mmgraph.train` and :mod:`mmgraph.viz`.
"""

from mmgraph import errors, typing
from mmgraph._version import __version__
from mmgraph.graph import GraphBuilder, Sample
from mmgraph.models import create_model, list_models

__all__ = ["GraphBuilder", "Sample", "__version__", "create_model", "errors", "list_models", "typing"]
