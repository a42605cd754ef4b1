import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from mmgraph.errors import InputError
from mmgraph.train.seed import rng_state, seed_everything, set_rng_state, worker_init_fn


def _draw():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_seed_everything_repeats_all_generators():
    assert seed_everything(7) == 7
    first = _draw()
    seed_everything(7)
    assert _draw() == first
    seed_everything(8)
    assert _draw() != first


@pytest.mark.parametrize("seed", [-1, 1.5, True, "3"])
def test_seed_everything_rejects_bad_seeds(seed):
    with pytest.raises(InputError, match="seed"):
        seed_everything(seed)


def test_rng_state_round_trip_and_plain_types():
    seed_everything(3)
    random.gauss(0, 1)  # leaves a cached gaussian in Python's state
    state = rng_state()
    expected = _draw() + (random.gauss(0, 1), float(np.random.randn()))
    _draw()
    set_rng_state(state)
    assert _draw() + (random.gauss(0, 1), float(np.random.randn())) == expected
    assert isinstance(state["python"], list) and isinstance(state["python"][1], list)
    assert isinstance(state["numpy"]["keys"], torch.Tensor)
    assert state["numpy"]["keys"].dtype == torch.int64 and state["numpy"]["keys"].numel() == 624


def test_set_rng_state_rejects_malformed_state_and_changes_nothing():
    seed_everything(5)
    state = rng_state()
    expected = _draw()
    set_rng_state(state)
    bad = dict(state, torch=[1, 2, 3])
    with pytest.raises(InputError, match="rng_state"):
        set_rng_state(bad)
    with pytest.raises(InputError):
        set_rng_state({"python": state["python"]})
    assert _draw() == expected


def test_worker_init_fn_depends_on_worker_seed_and_rank(monkeypatch):
    def seeds_after(torch_seed, rank):
        monkeypatch.setenv("RANK", str(rank))
        torch.manual_seed(torch_seed)
        worker_init_fn(0)
        return _draw()

    assert seeds_after(100, 0) == seeds_after(100, 0)
    assert seeds_after(100, 0) != seeds_after(101, 0)
    assert seeds_after(100, 0) != seeds_after(100, 1)


class _RandomDraws(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        return torch.tensor([random.random(), float(np.random.rand())])


def test_dataloader_workers_differ_and_repeat():
    def run():
        loader = DataLoader(
            _RandomDraws(),
            batch_size=1,
            num_workers=2,
            worker_init_fn=worker_init_fn,
            generator=torch.Generator().manual_seed(0),
        )
        return torch.cat(list(loader))  # [4, 2], items 0, 2 from worker 0 and 1, 3 from worker 1

    a, b = run(), run()
    assert torch.equal(a, b)
    # Without worker_init_fn both workers would copy the parent's Python and NumPy state.
    assert not torch.equal(a[0], a[1])
