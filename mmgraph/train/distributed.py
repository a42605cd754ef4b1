"""Helpers for data-parallel training with ``torchrun`` (DistributedDataParallel).

Launch a script that calls :func:`init_distributed` with, for example::

    torchrun --standalone --nproc_per_node=4 train.py

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; without them every helper here acts for one process (rank 0
of 1), so the same script runs under plain ``python`` too. The backend is
NCCL on CUDA and Gloo on the CPU.
"""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Iterator, Optional, Sized, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DistributedSampler

from mmgraph.errors import InputError

__all__ = [
    "DistInfo",
    "all_reduce_mean",
    "barrier",
    "cleanup",
    "distributed_sampler",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "main_process_first",
    "rank0_only",
    "unwrap_model",
]

T = TypeVar("T")

_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistInfo:
    r"""Where this process stands in a (possibly single-process) run.

    Args:
        rank (int): global rank, ``0 <= rank < world_size``.
        world_size (int): number of processes.
        local_rank (int): rank on this machine; also the CUDA device index.
        device (torch.device): the device this process computes on.
        is_main (bool): whether this is rank 0 (the one that logs and saves).
        distributed (bool): whether a process group runs (launched by ``torchrun``).
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    is_main: bool
    distributed: bool


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise InputError(
            f"environment variable {name}={value!r} is not an integer; launch with torchrun, which sets it"
        ) from None


def is_distributed() -> bool:
    """Whether a default process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """The global rank, ``0`` when not distributed."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """The number of processes, ``1`` when not distributed."""
    return dist.get_world_size() if is_distributed() else 1


def _local_rank() -> int:
    # torchrun sets LOCAL_RANK; a group started by hand without it is taken to run on one machine.
    if not is_distributed():
        return 0
    return int(os.environ.get("LOCAL_RANK", dist.get_rank()))


def is_main_process() -> bool:
    """Whether this process is rank 0 (always true when not distributed)."""
    return get_rank() == 0


def init_distributed(backend: Optional[str] = None, timeout: Optional[timedelta] = None) -> DistInfo:
    r"""Joins the process group that ``torchrun`` set up, or describes a single
    process when not launched by ``torchrun``.

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
    ``MASTER_PORT``; on CUDA, binds the process to device ``LOCAL_RANK``.
    Calling it again once the group runs returns the same info.

    Args:
        backend (str, optional): ``"nccl"`` or ``"gloo"``; by default NCCL when
            CUDA is available, else Gloo. (default: :obj:`None`)
        timeout (datetime.timedelta, optional): how long collectives wait
            before failing. (default: PyTorch's default)

    Returns:
        DistInfo: rank, world size, local rank, device and whether this is rank 0.
    """
    cuda = torch.cuda.is_available()
    if is_distributed():
        rank, local_rank = dist.get_rank(), _local_rank()
        device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
        return DistInfo(rank, dist.get_world_size(), local_rank, device, is_main=rank == 0, distributed=True)
    if "RANK" not in os.environ and "WORLD_SIZE" not in os.environ:
        device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
        return DistInfo(0, 1, 0, device, is_main=True, distributed=False)
    missing = [name for name in _TORCHRUN_ENV if name not in os.environ]
    if missing:
        raise InputError(
            f"distributed environment is incomplete: {', '.join(missing)} not set; "
            "launch with torchrun, which sets all of "
            f"{', '.join(_TORCHRUN_ENV)}, or unset RANK and WORLD_SIZE to run as one process"
        )
    rank, world_size, local_rank = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK")
    if not 0 <= rank < world_size:
        raise InputError(f"RANK={rank} is outside [0, WORLD_SIZE={world_size})")
    if backend is None:
        backend = "nccl" if cuda else "gloo"
    if backend == "nccl":
        if not cuda:
            raise InputError("backend 'nccl' needs CUDA, which is not available; use backend='gloo'")
        if local_rank >= torch.cuda.device_count():
            raise InputError(
                f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA device(s) are visible; "
                "start at most that many processes per node"
            )
    if cuda and local_rank < torch.cuda.device_count():
        device = torch.device("cuda", local_rank)
        # Set before the group starts so NCCL and every later .cuda() use this process's device.
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    kwargs = {} if timeout is None else {"timeout": timeout}
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size, **kwargs)
    return DistInfo(rank, world_size, local_rank, device, is_main=rank == 0, distributed=True)


def cleanup() -> None:
    """Leaves the process group (a no-op when not distributed)."""
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    """Waits until every process reaches this point (a no-op when not distributed)."""
    if not is_distributed():
        return
    if dist.get_backend() == "nccl":
        # Naming the device avoids NCCL guessing it (and warning) from the rank.
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def all_reduce_mean(tensor: Tensor) -> Tensor:
    r"""The element-wise mean of ``tensor`` over all processes.

    .. math::
        \bar{x} = \frac{1}{W} \sum_{r=0}^{W-1} x_r

    Returns a new tensor (floating point; integer inputs are converted) and
    leaves the input unchanged. Without a process group it returns
    ``tensor`` itself. Every process must call it, with the same shape.

    Args:
        tensor (torch.Tensor): this process's value, on this process's device.
    """
    if not is_distributed():
        return tensor
    out = tensor.detach().clone()
    if not out.is_floating_point():
        out = out.double()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def distributed_sampler(
    dataset: Sized, shuffle: bool = True, seed: int = 0, drop_last: bool = False
) -> Optional[DistributedSampler]:
    r"""A :class:`~torch.utils.data.DistributedSampler` giving this process its
    share of ``dataset`` when distributed, else :obj:`None` (then pass
    ``shuffle`` to the DataLoader itself).

    Call ``sampler.set_epoch(epoch)`` at the start of every epoch, or every
    epoch sees the same order.

    Args:
        dataset (Sized): the data set.
        shuffle (bool, optional): shuffle each epoch. (default: :obj:`True`)
        seed (int, optional): the shuffling seed; the same on every process.
            (default: :obj:`0`)
        drop_last (bool, optional): drop the tail so that every process gets
            the same number of samples, instead of padding by repetition.
            (default: :obj:`False`)
    """
    if not is_distributed():
        return None
    return DistributedSampler(
        dataset,  # type: ignore[arg-type]
        num_replicas=get_world_size(),
        rank=get_rank(),
        shuffle=shuffle,
        seed=seed,
        drop_last=drop_last,
    )


def rank0_only(fn: Callable[..., T]) -> Callable[..., Optional[T]]:
    """Decorator: runs ``fn`` on rank 0 only and returns :obj:`None` elsewhere.

    For logging, printing and writing files. It does not synchronise; use
    :func:`main_process_first` when the other processes need the result.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs) if is_main_process() else None

    return wrapper


@contextmanager
def main_process_first(local: bool = False) -> Iterator[None]:
    r"""Runs the body on the main process first, then on the others.

    For data processing and caches: rank 0 builds the cache while the others
    wait at a barrier, then they run the body and find it ready. If the body
    raises on the main process, the others are still released (and will most
    likely meet the same error themselves) instead of waiting forever.

    Args:
        local (bool, optional): let local rank 0 of each machine go first,
            for caches on a machine's own disk. (default: :obj:`False`)
    """
    first = (_local_rank() if local else get_rank()) == 0
    if not first:
        barrier()
    try:
        yield
    finally:
        if first:
            barrier()


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside :class:`~torch.nn.parallel.DistributedDataParallel`,
    :class:`~torch.nn.DataParallel` or ``torch.compile`` wrappers, so that
    state dicts carry no ``module.`` / ``_orig_mod.`` prefixes."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model
