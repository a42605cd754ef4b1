"""The exception hierarchy.

Every error raised on purpose by mmgraph is an :class:`MMGraphError`. Errors
about what a user passed in are also ``ValueError`` (or ``KeyError`` /
``FileNotFoundError`` where that is the natural base), so that callers who
catch the built-in types keep working. Messages name the item (sample id,
file, line, key) and say what to do.
"""

from __future__ import annotations


class MMGraphError(Exception):
    """Base class of every error mmgraph raises on purpose."""


class InputError(MMGraphError, ValueError):
    """An input (sample, tensor, argument) is malformed or out of range."""


class ConfigError(MMGraphError, ValueError):
    """A configuration key or value is unknown or of the wrong type."""


class DataFormatError(MMGraphError, ValueError):
    """A data file does not follow its format; the message names file and line or key."""


class MissingDependencyError(MMGraphError, ImportError):
    """An optional dependency is not installed; the message says how to install it."""


class CheckpointError(MMGraphError, RuntimeError):
    """A checkpoint is corrupt, truncated, or belongs to another model or version."""


class UnsafePickleError(DataFormatError):
    """A pickle file asks for a global outside the small allowed set."""


def sample_prefix(sample_id: object | None) -> str:
    """``"sample 'x': "`` when an id is known, else ``""``; used to start messages."""
    return "" if sample_id is None else f"sample {sample_id!r}: "
