"""mmgraph: graph-based vision-and-language reasoning on PyTorch Geometric."""

from mmgraph._version import __version__
from mmgraph import errors, typing

__all__ = ["__version__", "errors", "typing"]
