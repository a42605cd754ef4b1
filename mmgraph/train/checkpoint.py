"""Checkpoints that load safely, are written atomically and refuse the wrong model.

A checkpoint is one file written by :func:`torch.save` whose payload holds
only tensors and plain containers (dict, list, tuple, str, int, float, bool,
:obj:`None`), so that it loads with ``torch.load(path, weights_only=True)``:
loading never runs code from the file. The payload::

    {
        "format_version": 1,           # refused when newer than this mmgraph reads
        "mmgraph_version": "0.1.0",
        "torch_version": "2.13.0",
        "step": 1200, "epoch": 3,
        "model": {...},                # state dict, without DDP/compile prefixes
        "optimizer": {...} or None, "optimizer_class": "AdamW" or None,
        "scheduler": {...} or None, "scheduler_class": "LambdaLR" or None,
        "scaler": {...} or None,
        "config": {...} or None,       # the resolved run config (plain dict)
        "extra": {...} or None,        # JSON-able: vocabularies, metrics, model name
        "rng": {...},                  # mmgraph.train.seed.rng_state()
    }

Files are written to a temporary file in the target folder, flushed to disk
and renamed over the target, so a crash leaves either the old file or the new
one, never a partial one.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Dict, Iterator, List, Optional, Union

import torch
from torch import Tensor, nn
from torch.nn.parameter import is_lazy

from mmgraph._version import __version__
from mmgraph.errors import CheckpointError, InputError
from mmgraph.train.distributed import unwrap_model
from mmgraph.train.seed import rng_state, set_rng_state

__all__ = [
    "FORMAT_VERSION",
    "atomic_write",
    "checkpoint_path",
    "latest_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
]

#: The payload layout this mmgraph writes; bump it when the layout changes.
FORMAT_VERSION = 1

PathLike = Union[str, Path]

_NAME_PREFIX = "ckpt-"
_NAME_RE = re.compile(rf"^{_NAME_PREFIX}(\d+)\.pt$")
_SCALARS = (str, int, float, bool, type(None))
_LISTED = 5


@contextmanager
def atomic_write(path: PathLike) -> Iterator[BinaryIO]:
    """Opens a binary file that appears at ``path`` only once fully written.

    Writes go to a hidden temporary file in the same folder (so the rename
    stays on one file system), which is flushed, ``fsync``-ed and renamed
    over ``path``; on any error, including ``KeyboardInterrupt``, the
    temporary file is removed and an existing ``path`` is left untouched.
    Parent folders are created.

    Args:
        path (str or Path): the target file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        # "x" fails rather than clobbering; the file gets the usual umask-based permissions.
        with open(tmp, "xb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every platform can open a folder.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _check_plain(obj: Any, where: str, tensors: bool) -> None:
    """Raises if ``obj`` holds anything ``weights_only`` loading would refuse
    (or, with ``tensors=False``, anything not JSON-like)."""
    # Exact types: subclasses (str enums, torch's TorchVersion) are pickled as their class, which
    # weights_only loading refuses.
    if type(obj) in _SCALARS or (tensors and isinstance(obj, (Tensor, torch.dtype, torch.Size))):
        return
    if type(obj) in (dict, OrderedDict):
        for k, v in obj.items():
            if type(k) not in (str, int):
                raise CheckpointError(f"{where}: key {k!r} is a {type(k).__name__}; keys must be str or int")
            _check_plain(v, f"{where}[{k!r}]", tensors)
        return
    if type(obj) in (list, tuple):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]", tensors)
        return
    allowed = "tensors, dicts, lists, str, int, float, bool and None" if tensors else "JSON-like values"
    raise CheckpointError(
        f"{where} is a {type(obj).__name__}, which a weights_only checkpoint cannot hold; "
        f"convert it to {allowed} (e.g. a vocabulary via to_dict())"
    )


def save_checkpoint(
    path: PathLike,
    *,
    model: nn.Module,
    optimizer: Optional[torch.optim.Optimizer] = None,
    scheduler: Optional[Any] = None,
    scaler: Optional[Any] = None,
    step: int,
    epoch: Optional[int] = None,
    config: Optional[Any] = None,
    extra: Optional[Dict[str, Any]] = None,
) -> Path:
    r"""Writes a training checkpoint atomically.

    The model is saved without ``DistributedDataParallel`` / ``torch.compile``
    wrappers, so it loads into a bare model. The random-number generators'
    states (Python, NumPy, torch CPU, the current CUDA device) are saved too,
    so a resumed run draws the same numbers. Under DDP, call it on rank 0
    only (its RNG state is the one saved).

    Args:
        path (str or Path): the file to write; parent folders are created.
        model (torch.nn.Module): the model.
        optimizer (torch.optim.Optimizer, optional): its state (moments, step
            counts). (default: :obj:`None`)
        scheduler (optional): a learning-rate scheduler. (default: :obj:`None`)
        scaler (optional): a ``torch.amp.GradScaler``. (default: :obj:`None`)
        step (int): the number of optimiser steps taken.
        epoch (int, optional): the epoch. (default: :obj:`None`)
        config (dict or dataclass, optional): the resolved run config;
            dataclasses are converted by :func:`~mmgraph.train.config.config_to_dict`.
            (default: :obj:`None`)
        extra (dict, optional): JSON-like values to keep with the weights:
            vocabularies (as dicts), metrics, ``model_name``.
            (default: :obj:`None`)

    Returns:
        Path: the written file.

    Raises:
        CheckpointError: when something in the payload cannot be loaded with
            ``weights_only=True``; nothing is written then.
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise InputError(f"step must be a non-negative int, got {step!r}")
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        # Imported here: config.py imports atomic_write from this module.
        from mmgraph.train.config import config_to_dict

        config = config_to_dict(config)
    for name, value in (("config", config), ("extra", extra)):
        if value is not None and not isinstance(value, Mapping):
            raise InputError(f"{name} must be a dict or None, got {type(value).__name__}")
    payload = {
        "format_version": FORMAT_VERSION,
        "mmgraph_version": __version__,
        "torch_version": str(torch.__version__),
        "step": step,
        "epoch": epoch,
        "model": unwrap_model(model).state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "optimizer_class": None if optimizer is None else type(optimizer).__name__,
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "scheduler_class": None if scheduler is None else type(scheduler).__name__,
        "scaler": None if scaler is None else scaler.state_dict(),
        "config": None if config is None else dict(config),
        "extra": None if extra is None else dict(extra),
        "rng": rng_state(),
    }
    path = Path(path)
    for key, value in payload.items():
        _check_plain(value, f"checkpoint {str(path)!r}: {key}", tensors=key not in ("config", "extra"))
    with atomic_write(path) as f:
        torch.save(payload, f)
    return path


def _read(path: Path, map_location: Any) -> Dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {str(path)!r}: the file does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # The weights-only unpickler reports both refused classes ("Unsupported global") and
        # garbage bytes ("Unsupported operand") as UnpicklingError.
        if "unsupported global" in str(e).lower():
            raise CheckpointError(
                f"checkpoint {str(path)!r} holds objects that weights_only loading refuses, so it was "
                "not written by mmgraph's save_checkpoint; re-save it with plain containers"
            ) from None
        raise _corrupt(path, e) from None
    except MemoryError:
        raise
    except PermissionError as e:
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read: {e.strerror}") from None
    except Exception as e:
        raise _corrupt(path, e) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("format_version"), int):
        raise CheckpointError(
            f"{str(path)!r} is not an mmgraph checkpoint (no format_version); "
            "it was not written by mmgraph.train.save_checkpoint"
        )
    version = payload["format_version"]
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {version}, written by mmgraph "
            f"{payload.get('mmgraph_version', '?')}; this mmgraph {__version__} reads up to version "
            f"{FORMAT_VERSION}: upgrade mmgraph to load it"
        )
    return payload


def _corrupt(path: Path, error: BaseException) -> CheckpointError:
    size = path.stat().st_size if path.exists() else 0
    return CheckpointError(
        f"checkpoint {str(path)!r} ({size} bytes) is corrupt or truncated and cannot be read "
        f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
        "use an earlier checkpoint, or save again"
    )


def _lookup(payload: Dict[str, Any], key: str) -> Any:
    """A value named by ``key`` in ``extra``, else by dotted path in ``config``."""
    extra = payload.get("extra") or {}
    if key in extra:
        return extra[key]
    node: Any = payload.get("config") or {}
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def _normalise(value: Any) -> Any:
    # Tuples in a live config compare equal to the lists a checkpoint stores.
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def _check_expected(path: Path, payload: Dict[str, Any], expected: Mapping[str, Any]) -> None:
    for key, want in expected.items():
        try:
            stored = _lookup(payload, key)
        except KeyError:
            raise CheckpointError(
                f"checkpoint {str(path)!r} does not record {key!r} (looked in extra and config), "
                f"so it cannot be checked against the expected {want!r}"
            ) from None
        if _normalise(stored) != _normalise(want):
            raise CheckpointError(
                f"checkpoint {str(path)!r} belongs to another model or configuration: {key!r} is "
                f"{stored!r} in the checkpoint but {want!r} is expected"
            )


def _listed(keys: List[str]) -> str:
    shown = ", ".join(keys[:_LISTED])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > _LISTED else shown


def _check_model_state(
    path: Path, model: nn.Module, state: Any, strict: bool, payload: Dict[str, Any]
) -> None:
    if not isinstance(state, Mapping):
        raise CheckpointError(f"checkpoint {str(path)!r} holds no model state dict")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: checkpoint {list(state[k].shape)} vs model {list(own[k].shape)}"
        for k in own
        if k in state
        and isinstance(state[k], Tensor)
        and isinstance(own[k], Tensor)
        # Lazy (-1 sized) parameters take their shape from the checkpoint.
        and not is_lazy(own[k])
        and state[k].shape != own[k].shape
    ]
    problems = []
    if strict and missing:
        problems.append(f"missing keys: {_listed(missing)}")
    if strict and unexpected:
        problems.append(f"unexpected keys: {_listed(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches: {_listed(shapes)}")
    if problems:
        name = (payload.get("extra") or {}).get("model_name")
        saved = f" (the checkpoint's model_name is {name!r})" if name is not None else ""
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not fit this {type(model).__name__}: {'; '.join(problems)}. "
            f"It was probably saved from another model or configuration{saved}"
        )


def _check_optimizer_state(path: Path, optimizer: torch.optim.Optimizer, payload: Dict[str, Any]) -> None:
    state = payload.get("optimizer")
    if not isinstance(state, Mapping) or "param_groups" not in state:
        raise CheckpointError(f"checkpoint {str(path)!r} holds no optimizer state; pass optimizer=None")
    saved_class = payload.get("optimizer_class")
    if saved_class is not None and saved_class != type(optimizer).__name__:
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds the state of a {saved_class} optimizer, "
            f"not of this {type(optimizer).__name__}"
        )
    saved_sizes = [len(g["params"]) for g in state["param_groups"]]
    own_sizes = [len(g["params"]) for g in optimizer.param_groups]
    if saved_sizes != own_sizes:
        raise CheckpointError(
            f"checkpoint {str(path)!r}: the optimizer's parameter groups have sizes {saved_sizes} "
            f"in the checkpoint but {own_sizes} here; build the optimizer over the same parameters"
        )


def load_checkpoint(
    path: PathLike,
    model: Optional[nn.Module] = None,
    optimizer: Optional[torch.optim.Optimizer] = None,
    scheduler: Optional[Any] = None,
    scaler: Optional[Any] = None,
    *,
    restore_rng: bool = True,
    expected: Optional[Mapping[str, Any]] = None,
    map_location: Any = "cpu",
    strict: bool = True,
) -> Dict[str, Any]:
    r"""Reads a checkpoint written by :func:`save_checkpoint` (always with
    ``weights_only=True``) and restores the given objects into place.

    Everything is checked before anything is changed, so a refused
    checkpoint leaves the model, optimizer and generators as they were.

    Args:
        path (str or Path): the checkpoint file.
        model (torch.nn.Module, optional): receives the weights; DDP and
            ``torch.compile`` wrappers are looked through. (default: :obj:`None`)
        optimizer (torch.optim.Optimizer, optional): receives its state.
            (default: :obj:`None`)
        scheduler (optional): receives its state. (default: :obj:`None`)
        scaler (optional): a ``torch.amp.GradScaler``. (default: :obj:`None`)
        restore_rng (bool, optional): restore the random-number generators.
            (default: :obj:`True`)
        expected (Mapping, optional): values the checkpoint must hold, e.g.
            ``{"model_name": "mmgraph_vqa", "model.hidden_dim": 256}``; each
            key is looked up in ``extra``, then as a dotted path in ``config``.
            (default: :obj:`None`)
        map_location (optional): where tensors are loaded. (default: ``"cpu"``)
        strict (bool, optional): refuse missing or unexpected model keys, as
            :meth:`torch.nn.Module.load_state_dict` does; shape mismatches are
            refused either way. (default: :obj:`True`)

    Returns:
        dict: the payload (``step``, ``epoch``, ``config``, ``extra``, ...).

    Raises:
        CheckpointError: when the file is missing, corrupt or truncated, of a
            newer format, from another model (``expected``, parameter names or
            shapes), or lacks a requested part.
    """
    path = Path(path)
    payload = _read(path, map_location)
    if expected:
        _check_expected(path, payload, expected)
    if model is not None:
        model = unwrap_model(model)
        _check_model_state(path, model, payload.get("model"), strict, payload)
    if optimizer is not None:
        _check_optimizer_state(path, optimizer, payload)
    for name, obj in (("scheduler", scheduler), ("scaler", scaler)):
        if obj is None:
            continue
        if not isinstance(payload.get(name), Mapping):
            raise CheckpointError(f"checkpoint {str(path)!r} holds no {name} state; pass {name}=None")
        saved_class = payload.get(f"{name}_class")
        if saved_class is not None and saved_class != type(obj).__name__:
            raise CheckpointError(
                f"checkpoint {str(path)!r} holds the state of a {saved_class} {name}, not of this "
                f"{type(obj).__name__}"
            )
    if restore_rng and not isinstance(payload.get("rng"), Mapping):
        raise CheckpointError(f"checkpoint {str(path)!r} holds no generator states; pass restore_rng=False")

    try:
        if model is not None:
            model.load_state_dict(payload["model"], strict=strict)
        if optimizer is not None:
            optimizer.load_state_dict(payload["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(payload["scheduler"])
        if scaler is not None:
            scaler.load_state_dict(payload["scaler"])
        if restore_rng:
            set_rng_state(payload["rng"])
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {str(path)!r} could not be restored: {e}") from e
    return payload


def checkpoint_path(folder: PathLike, step: int) -> Path:
    """The file name :func:`latest_checkpoint` recognises: ``folder/ckpt-00001200.pt``."""
    return Path(folder) / f"{_NAME_PREFIX}{step:08d}.pt"


def latest_checkpoint(folder: PathLike) -> Optional[Path]:
    """The checkpoint with the highest step in ``folder`` (named by
    :func:`checkpoint_path`), or :obj:`None` when there is none. Chosen by the
    step in the name, not the modification time; temporary files of an
    unfinished save are ignored."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    best: Optional[tuple] = None
    for entry in folder.iterdir():
        match = _NAME_RE.match(entry.name)
        if match and entry.is_file():
            step = int(match.group(1))
            if best is None or step > best[0]:
                best = (step, entry)
    return None if best is None else best[1]
