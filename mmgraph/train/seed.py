"""Seeding and random-number-generator state, for repeatable and resumable runs.

:func:`seed_everything` seeds Python, NumPy and PyTorch (CPU and CUDA) at
once. :func:`rng_state` / :func:`set_rng_state` capture and restore all of
them as plain containers and tensors, so that a checkpoint holding them still
loads with ``torch.load(..., weights_only=True)``. :func:`worker_init_fn`
gives every :class:`~torch.utils.data.DataLoader` worker its own seeds.

Seeding recipe after the PyTorch notes on reproducibility
(https://pytorch.org/docs/stable/notes/randomness.html).
"""

from __future__ import annotations

import os
import random
from typing import Any, Dict

import numpy as np
import torch

from mmgraph.errors import InputError

__all__ = ["rng_state", "seed_everything", "set_rng_state", "worker_init_fn"]

# NumPy's legacy global generator takes 32-bit seeds only.
_NUMPY_SEED_MOD = 2**32


def seed_everything(seed: int, deterministic: bool = False) -> int:
    r"""Seeds Python's :mod:`random`, NumPy's global generator and PyTorch
    (CPU and every CUDA device).

    Args:
        seed (int): the seed, ``>= 0``.
        deterministic (bool, optional): also ask PyTorch for deterministic
            kernels (``torch.use_deterministic_algorithms(True, warn_only=True)``,
            cuDNN deterministic, no cuDNN benchmarking). Slower on GPUs.
            (default: :obj:`False`)

    Returns:
        int: the seed, so that callers can log it.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % _NUMPY_SEED_MOD)
    # Seeds the CPU generator and, lazily, every CUDA device.
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic; it reads this before its first call.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    return seed


def rng_state() -> Dict[str, Any]:
    r"""The state of every global generator, as plain containers and tensors.

    Returns a dict with ``"python"`` (``[version, [625 ints], gauss_next]``),
    ``"numpy"`` (a dict whose ``"keys"`` is an int64 tensor), ``"torch"`` (the
    CPU state, a uint8 tensor) and ``"cuda"`` (the current CUDA device's state,
    or :obj:`None` without CUDA). Only the current device is saved: under DDP
    each process drives one device, and reading the others would create a CUDA
    context on every GPU from every process.
    """
    version, internal, gauss_next = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    cuda = None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = torch.cuda.get_rng_state()
    return {
        "python": [int(version), [int(v) for v in internal], gauss_next],
        "numpy": {
            "name": str(np_name),
            # int64 holds every uint32 key; tensors load under weights_only, ndarrays do not.
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": cuda,
    }


def set_rng_state(state: Dict[str, Any]) -> None:
    r"""Restores the generators from a dict made by :func:`rng_state`.

    The CUDA state is restored on the current device when the state holds one
    and CUDA is available; otherwise it is skipped (a run saved on a GPU can
    resume on a CPU).

    Args:
        state (dict): the output of :func:`rng_state`.
    """
    try:
        version, internal, gauss_next = state["python"]
        numpy_state = state["numpy"]
        np_state = (
            numpy_state["name"],
            numpy_state["keys"].numpy().astype(np.uint32),
            int(numpy_state["pos"]),
            int(numpy_state["has_gauss"]),
            float(numpy_state["cached_gaussian"]),
        )
        torch_state = state["torch"]
        cuda_state = state.get("cuda")
        # Validate everything before touching any generator, so a bad state changes nothing.
        if not isinstance(torch_state, torch.Tensor) or torch_state.dtype != torch.uint8:
            raise TypeError(f"'torch' must be a uint8 tensor, got {type(torch_state).__name__}")
        python_state = (int(version), tuple(int(v) for v in internal), gauss_next)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise InputError(
            f"not a random-number-generator state made by mmgraph.train.seed.rng_state(): {e!r}"
        ) from None
    random.setstate(python_state)
    np.random.set_state(np_state)
    torch.set_rng_state(torch_state.cpu())
    if cuda_state is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda_state.cpu())


def worker_init_fn(worker_id: int) -> None:
    r"""Seeds Python, NumPy and PyTorch inside a DataLoader worker.

    PyTorch seeds each worker's torch generator with ``base_seed + worker_id``,
    where ``base_seed`` is drawn from the loader's ``generator`` (or the global
    generator), but leaves Python and NumPy with the parent's state, so every
    worker would draw the same augmentations. This derives all three seeds
    from the worker's torch seed and the distributed rank (``RANK``), so that
    workers differ across workers and ranks, and a seeded run repeats.

    Pass it as ``DataLoader(..., worker_init_fn=worker_init_fn)``.

    Args:
        worker_id (int): the worker index (given by the DataLoader; the torch
            seed already includes it).
    """
    rank = int(os.environ.get("RANK", "0"))
    # SeedSequence mixes the entropy so that nearby (seed, rank) pairs give unrelated streams.
    seed = int(np.random.SeedSequence([torch.initial_seed(), rank]).generate_state(1, dtype=np.uint64)[0])
    random.seed(seed)
    np.random.seed(seed % _NUMPY_SEED_MOD)
    torch.manual_seed(seed)
