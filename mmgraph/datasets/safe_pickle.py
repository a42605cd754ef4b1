"""Loading pickles of numpy arrays without running the code a pickle may carry.

A pickle is a program: its ``GLOBAL``/``STACK_GLOBAL`` opcodes import any
callable by name and its ``REDUCE`` opcode calls it, so ``pickle.load`` on a
downloaded file (Sort-of-CLEVR, feature dumps) can run ``os.system``. The
:class:`SafeUnpickler` here resolves only the globals listed in ``allowed``;
by default those that rebuild numpy arrays, dtypes and scalars. Plain
containers (tuple, list, dict, str, bytes, int, float) are native pickle
opcodes and need no global.

The default set, :data:`NUMPY_GLOBALS`, covers what numpy 1.x and 2.x write
under protocols 0 to 5 and what Python 2 ``cPickle`` wrote:

=======================================================  ==============================
global                                                   written for
=======================================================  ==============================
``numpy.core.multiarray._reconstruct`` (numpy 1.x),      every array, protocols 0-4
``numpy._core.multiarray._reconstruct`` (numpy 2.x)
``numpy.ndarray``, ``numpy.dtype``                       arrays, dtypes
``numpy.core.multiarray.scalar`` and ``numpy._core...``  numpy scalars (``np.int64(4)``)
``numpy.core.numeric._frombuffer`` and ``numpy._core...``  contiguous arrays, protocol 5
``_codecs.encode`` (latin-1 only)                        Python 3 ``bytes`` at protocols 0-2
=======================================================  ==============================

``numpy.core.*`` and ``numpy._core.*`` names resolve to whichever of the two
modules the installed numpy provides, so files written under numpy 1 load
under numpy 2 (and back) without touching numpy's deprecation shims.
"""

from __future__ import annotations

import codecs
import importlib
import os
import pickle
from typing import IO, AbstractSet, Any, Callable, Optional, Tuple, Union

from mmgraph.errors import DataFormatError, UnsafePickleError

Global = Tuple[str, str]  # (module, qualified name) as the pickle spells it

NUMPY_GLOBALS: frozenset = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }
)

_NUMPY_CORE_PREFIXES = ("numpy.core.", "numpy._core.")
_LATIN1_NAMES = frozenset({"latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1"})


class SafeUnpickler(pickle.Unpickler):
    r"""A :class:`pickle.Unpickler` that resolves only the globals in ``allowed``.

    Any other global (``os.system``, ``builtins.eval``, ``posix.system``,
    ``subprocess.Popen``, ...) raises :class:`~mmgraph.errors.UnsafePickleError`
    before it is imported, so its code never runs. Names are checked as the
    file spells them, before Python 2 name mapping (``__builtin__.eval`` is
    refused like ``builtins.eval``).

    Args:
        file (IO[bytes]): the open binary file.
        allowed (AbstractSet[Tuple[str, str]], optional): the admitted
            ``(module, name)`` pairs. (default: :data:`NUMPY_GLOBALS`)
        source (str, optional): the file name used in error messages.
            (default: ``"<pickle>"``)
        encoding (str, optional): how Python 2 ``str`` objects decode;
            ``"latin1"`` loads Python 2 numpy pickles. (default: ``"ASCII"``)
    """

    def __init__(
        self,
        file: IO[bytes],
        allowed: Optional[AbstractSet[Global]] = None,
        source: str = "<pickle>",
        encoding: str = "ASCII",
    ):
        super().__init__(file, encoding=encoding)
        self.allowed = NUMPY_GLOBALS if allowed is None else frozenset(allowed)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.allowed:
            raise UnsafePickleError(
                f"{self.source}: refused to load global '{module}.{name}': unpickling imports and "
                f"calls the globals a file names, so a file could run arbitrary code; only the "
                f"{len(self.allowed)} globals that rebuild this format's data are admitted. "
                f"If you made the file yourself and trust it, pass allowed= with this global added."
            )
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode(self.source)
        if module.startswith(_NUMPY_CORE_PREFIXES):
            return _numpy_core_attr(module, name)
        return super().find_class(module, name)


def _latin1_encode(source: str) -> Callable[[str, str], bytes]:
    # Protocols 0-2 store Python 3 bytes as _codecs.encode(text, "latin1");
    # other codecs are refused so the admitted callable stays this narrow.
    def encode(text: str, encoding: str = "utf-8") -> bytes:
        if encoding.lower() not in _LATIN1_NAMES:
            raise UnsafePickleError(
                f"{source}: refused _codecs.encode with encoding {encoding!r}: only latin-1, which "
                f"pickle uses for bytes, is admitted"
            )
        return codecs.encode(text, "latin1")

    return encode


def _numpy_core_attr(module: str, name: str) -> Any:
    # numpy 1 writes numpy.core.*, numpy 2 writes numpy._core.*; prefer the
    # private module that exists so numpy 2 does not warn about numpy.core.
    rest = module.split(".", 2)[2]
    for prefix in ("numpy._core.", "numpy.core."):
        try:
            return getattr(importlib.import_module(prefix + rest), name)
        except (ImportError, AttributeError):
            continue
    raise DataFormatError(f"the installed numpy has no {module}.{name}; the file needs another numpy version")


def safe_load(
    path: Union[str, os.PathLike],
    allowed: Optional[AbstractSet[Global]] = None,
    encoding: str = "ASCII",
) -> Any:
    r"""Unpickles ``path`` admitting only the globals in ``allowed``.

    Args:
        path (str or os.PathLike): the pickle file.
        allowed (AbstractSet[Tuple[str, str]], optional): the admitted
            ``(module, name)`` pairs. (default: :data:`NUMPY_GLOBALS`)
        encoding (str, optional): how Python 2 ``str`` objects decode; use
            ``"latin1"`` for Python 2 numpy pickles. (default: ``"ASCII"``)

    Returns:
        The unpickled object.

    Raises:
        UnsafePickleError: the file names a global outside ``allowed``.
        DataFormatError: the file is truncated or not a pickle.
        FileNotFoundError: ``path`` does not exist.
    """
    source = os.fspath(path)
    with open(source, "rb") as f:
        try:
            return SafeUnpickler(f, allowed=allowed, source=source, encoding=encoding).load()
        except DataFormatError:
            raise
        # A corrupt stream fails in many ways, depending on which opcode it breaks.
        except (
            pickle.UnpicklingError,
            EOFError,
            ValueError,
            TypeError,
            KeyError,
            IndexError,
            AttributeError,
        ) as e:
            raise DataFormatError(
                f"{source}: not a readable pickle ({type(e).__name__}: {e}); the file may be truncated "
                f"or of another format"
            ) from e
