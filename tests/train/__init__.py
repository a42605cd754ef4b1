"""Helpers of the multi-process (gloo) tests."""

import os
import socket
import time
import warnings

import torch.multiprocessing as mp

HANG_SECONDS = 180  # workers still running after this are killed and reported
FINISHED = "finished"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mark(out_dir, rank, stage):
    """Records how far a worker got, so that a hang or a crash can be located; a worker marks
    :data:`FINISHED` once its work is saved and it has left the process group."""
    with open(os.path.join(out_dir, f"rank{rank}.stage"), "w") as f:
        f.write(stage)


def _stages(out_dir, nprocs):
    paths = [os.path.join(out_dir, f"rank{rank}.stage") for rank in range(nprocs)]
    return [open(path).read() if os.path.exists(path) else "not started" for path in paths]


def run_workers(worker, args, out_dir, nprocs=2) -> str:
    """Runs ``worker(rank, *args)`` in ``nprocs`` processes to the end (the worker marks its stages in
    ``out_dir``); "" when every one finished its work, even if its process then hung on exit and was
    killed, or died of a signal in the interpreter's teardown (gloo's threads can abort it: "terminate
    called without an active exception"); else where each one was when, still running after
    HANG_SECONDS, it was killed. The collectives time out, but a hang outside them (the store's
    rendezvous, process exit) would hang the whole suite. A worker that crashes before it finished
    raises as under ``mp.spawn``."""
    os.makedirs(out_dir, exist_ok=True)
    context = mp.spawn(worker, args=args, nprocs=nprocs, join=False)
    deadline = time.monotonic() + HANG_SECONDS
    try:
        while not context.join(timeout=5):
            if time.monotonic() > deadline:
                for process in context.processes:
                    if process.is_alive():
                        process.kill()
                stages = _stages(out_dir, nprocs)
                if all(stage == FINISHED for stage in stages):
                    # Every worker saved its results and left the process group: what hung is the
                    # interpreter's exit, not the code under test.
                    warnings.warn(
                        f"the gloo workers finished but had not exited after {HANG_SECONDS} s; killed"
                    )
                    return ""
                return "; ".join(f"rank {rank}: {stage}" for rank, stage in enumerate(stages))
    except mp.ProcessExitedException as e:
        if not all(stage == FINISHED for stage in _stages(out_dir, nprocs)):
            raise
        warnings.warn(f"a gloo worker died at exit after finishing its work: {e}")
    return ""
