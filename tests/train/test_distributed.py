import os
import warnings
from datetime import timedelta

import pytest
import torch
from torch import nn
from torch.utils.data import DistributedSampler

from mmgraph.errors import InputError
from mmgraph.train.distributed import (
    all_reduce_mean,
    barrier,
    cleanup,
    distributed_sampler,
    get_rank,
    get_world_size,
    init_distributed,
    is_distributed,
    is_main_process,
    main_process_first,
    rank0_only,
    unwrap_model,
)
from tests.train import FINISHED, HANG_SECONDS, free_port, mark, run_workers

WORLD_SIZE = 2
STEPS = 4
_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def _global_batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 5, generator=g), torch.randn(8, 3, generator=g)  # [B, F_in], [B, F_out]


def _fresh_linear():
    torch.manual_seed(1)
    return nn.Linear(5, 3)


def _train(model, x, y):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(STEPS):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()


@rank0_only
def _on_rank0():
    return get_rank() + 10


def _worker(rank, port, out_dir):
    mark(out_dir, rank, "started")
    # What torchrun would set; loopback only.
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(WORLD_SIZE),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    # A deadlock fails the test after a minute instead of hanging it.
    info = init_distributed(backend="gloo", timeout=timedelta(seconds=60))
    mark(out_dir, rank, "process group ready")
    results = {"info": (info.rank, info.world_size, info.local_rank, str(info.device), info.is_main)}
    results["again"] = init_distributed() == info
    results["mean"] = all_reduce_mean(torch.tensor([rank + 1.0, 10.0 * rank]))
    results["int_mean"] = all_reduce_mean(torch.tensor([rank]))

    mark(out_dir, rank, "all-reduced")
    x, y = _global_batch()
    half = x.size(0) // WORLD_SIZE
    ddp = nn.parallel.DistributedDataParallel(_fresh_linear())
    _train(ddp, x[rank * half : (rank + 1) * half], y[rank * half : (rank + 1) * half])
    results["params"] = [p.detach().clone() for p in unwrap_model(ddp).parameters()]

    sampler = distributed_sampler(list(range(10)), shuffle=False)
    results["sampler"] = (type(sampler) is DistributedSampler, list(sampler))
    results["rank0_only"] = _on_rank0()
    results["is_main"] = is_main_process()

    mark(out_dir, rank, "trained")
    # The main process writes a cache; the other must find it complete when its turn comes.
    cache = os.path.join(out_dir, "cache.txt")
    with main_process_first():
        if rank == 0:
            with open(cache, "w") as f:
                f.write("ready")
        results["cache_seen"] = open(cache).read() if os.path.exists(cache) else None
    # If the main process fails inside, the others are released rather than left waiting.
    try:
        with main_process_first():
            if rank == 0:
                raise RuntimeError("cache failed")
            results["released"] = True
    except RuntimeError:
        results["released"] = "raised"
    mark(out_dir, rank, "main_process_first done")
    barrier()
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    mark(out_dir, rank, "saved, destroying the process group")
    cleanup()
    mark(out_dir, rank, FINISHED)


def _run_workers(out_dir) -> str:
    return run_workers(_worker, (free_port(), str(out_dir)), out_dir, nprocs=WORLD_SIZE)


def test_two_gloo_processes(tmp_path):
    out = tmp_path / "first"
    hung = _run_workers(out)
    if hung:
        # Once in a clean-clone CI run (session 16; 835 other tests passed, and 4 reruns of this one
        # took 8 s each) the two processes hung. Try once more on a fresh port before failing, and say
        # where the first try stopped either way.
        out = tmp_path / "second"
        again = _run_workers(out)
        if again:
            pytest.fail(
                f"the two gloo processes hung twice (killed after {HANG_SECONDS} s): {hung} / then {again}"
            )
        warnings.warn(
            f"the two gloo processes hung once (killed after {HANG_SECONDS} s; {hung}); the second try passed"
        )
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD_SIZE))

    assert r0["info"] == (0, 2, 0, "cpu", True) and r1["info"] == (1, 2, 1, "cpu", False)
    assert r0["again"] and r1["again"]
    for r in (r0, r1):
        assert torch.allclose(r["mean"], torch.tensor([1.5, 5.0]))
        assert torch.allclose(r["int_mean"], torch.tensor([0.5], dtype=torch.float64))
        assert r["cache_seen"] == "ready"
    assert r0["released"] == "raised" and r1["released"] is True
    assert r0["rank0_only"] == 10 and r1["rank0_only"] is None
    assert r0["is_main"] and not r1["is_main"]
    assert r0["sampler"] == (True, [0, 2, 4, 6, 8]) and r1["sampler"] == (True, [1, 3, 5, 7, 9])

    # DDP on two halves == one process on the whole global batch (mean loss, same init, SGD).
    reference = _fresh_linear()
    _train(reference, *_global_batch())
    for p_ref, p0, p1 in zip(reference.parameters(), r0["params"], r1["params"]):
        assert torch.equal(p0, p1)
        assert torch.allclose(p0, p_ref.detach(), atol=1e-6)
    # The run moved the parameters, so agreeing with the reference means something.
    assert not torch.allclose(r0["params"][0], _fresh_linear().weight.detach(), atol=1e-3)


@pytest.fixture
def no_torchrun_env(monkeypatch):
    for name in _TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)


def test_single_process_fallbacks(no_torchrun_env):
    info = init_distributed()
    assert (info.rank, info.world_size, info.local_rank, info.is_main, info.distributed) == (
        0,
        1,
        0,
        True,
        False,
    )
    assert info.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert not is_distributed() and get_rank() == 0 and get_world_size() == 1 and is_main_process()
    t = torch.tensor([1.0, 2.0])
    assert all_reduce_mean(t) is t
    assert distributed_sampler(list(range(4))) is None
    assert _on_rank0() == 10
    with main_process_first():
        barrier()
    cleanup()


def test_incomplete_or_bad_env(no_torchrun_env, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(InputError, match="WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT not set"):
        init_distributed()
    monkeypatch.setenv("WORLD_SIZE", "two")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    with pytest.raises(InputError, match="WORLD_SIZE='two' is not an integer"):
        init_distributed()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(InputError, match=r"RANK=2 is outside \[0, WORLD_SIZE=2\)"):
        init_distributed()
    if not torch.cuda.is_available():
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(InputError, match="'nccl' needs CUDA"):
            init_distributed(backend="nccl")
    assert not is_distributed()


def test_unwrap_model():
    inner = nn.Linear(2, 2)
    assert unwrap_model(nn.DataParallel(inner)) is inner
    assert unwrap_model(inner) is inner
