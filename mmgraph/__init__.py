"""mmgraph: graph-based vision-and-language reasoning on PyTorch Geometric."""

from mmgraph import errors, typing
from mmgraph._version import __version__

__all__ = ["__version__", "errors", "typing"]
