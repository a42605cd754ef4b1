import os
import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

import mmgraph.train.checkpoint as checkpoint_module
from mmgraph.errors import CheckpointError
from mmgraph.train.checkpoint import (
    FORMAT_VERSION,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from mmgraph.train.seed import seed_everything


class _Custom:
    """A class weights_only loading refuses."""


def _model(hidden=8):
    return nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 3))


def _optim(model):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    # Warm-up then decay: a schedule that changes every step.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 3) * 0.9**s)
    return optimizer, scheduler


def _batch(step):
    g = torch.Generator().manual_seed(1000 + step)
    return torch.randn(16, 4, generator=g), torch.randint(0, 3, (16,), generator=g)


def _train(model, optimizer, scheduler, steps):
    for step in steps:
        x, y = _batch(step)
        # Dropout-like use of the global RNG, so restored RNG state matters to the result.
        noise = torch.rand(x.shape) * 0.01
        loss = nn.functional.cross_entropy(model(x + noise), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()


def _draws():
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_round_trip_restores_model_optimizer_scheduler_scaler_and_rng(tmp_path):
    seed_everything(0)
    model = _model()
    optimizer, scheduler = _optim(model)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    _train(model, optimizer, scheduler, range(3))
    path = save_checkpoint(
        tmp_path / "c.pt",
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        step=3,
        epoch=1,
        config={"model": {"hidden": 8}},
        extra={"model_name": "toy", "vocab": {"itos": ["<pad>", "a"]}, "metrics": {"acc": 0.5}},
    )
    after_save = _draws()

    seed_everything(123)
    model2 = _model()
    optimizer2, scheduler2 = _optim(model2)
    scaler2 = torch.amp.GradScaler("cpu")
    payload = load_checkpoint(path, model2, optimizer2, scheduler2, scaler2)
    assert _draws() == after_save
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    assert optimizer2.state_dict()["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]
    assert torch.equal(
        optimizer2.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"]
    )
    assert scheduler2.get_last_lr() == scheduler.get_last_lr() and scheduler2.last_epoch == 3
    assert scaler2.get_scale() == 1024.0
    assert payload["step"] == 3 and payload["epoch"] == 1 and payload["format_version"] == FORMAT_VERSION
    assert payload["extra"]["vocab"] == {"itos": ["<pad>", "a"]} and payload["config"] == {
        "model": {"hidden": 8}
    }


def test_file_loads_with_weights_only(tmp_path):
    model = _model()
    optimizer, scheduler = _optim(model)
    _train(model, optimizer, scheduler, range(2))
    path = save_checkpoint(tmp_path / "c.pt", model=model, optimizer=optimizer, scheduler=scheduler, step=2)
    payload = torch.load(path, weights_only=True)
    assert set(payload["model"]) == set(model.state_dict())
    assert isinstance(payload["rng"]["python"], list) and isinstance(payload["rng"]["torch"], torch.Tensor)


def test_dataclass_config_is_stored_as_plain_dict(tmp_path):
    @dataclass
    class Cfg:
        hidden: int = 8
        betas: tuple = (0.9, 0.99)

    path = save_checkpoint(tmp_path / "c.pt", model=_model(), step=0, config=Cfg())
    assert torch.load(path, weights_only=True)["config"] == {"hidden": 8, "betas": [0.9, 0.99]}
    # A tuple in the live config matches the list stored.
    load_checkpoint(path, _model(), expected={"betas": (0.9, 0.99), "hidden": 8})


def test_save_refuses_objects_weights_only_cannot_load(tmp_path):
    class Vocab:
        pass

    with pytest.raises(CheckpointError, match=r"extra\['vocab'\] is a Vocab.*to_dict"):
        save_checkpoint(tmp_path / "c.pt", model=_model(), step=0, extra={"vocab": Vocab()})
    with pytest.raises(CheckpointError, match=r"extra\['t'\] is a Tensor"):
        save_checkpoint(tmp_path / "c.pt", model=_model(), step=0, extra={"t": torch.zeros(1)})
    assert _files(tmp_path) == []


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt", _model())


def test_corrupt_file(tmp_path):
    path = tmp_path / "c.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match=r"c\.pt.*corrupt or truncated"):
        load_checkpoint(path, _model())


@pytest.mark.parametrize("keep", [0.5, 0.95, 0.0])
def test_truncated_file(tmp_path, keep):
    path = save_checkpoint(tmp_path / "c.pt", model=_model(), step=0)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path, _model())


def test_other_model_by_expected_keys(tmp_path):
    path = save_checkpoint(
        tmp_path / "c.pt",
        model=_model(),
        step=0,
        config={"model": {"hidden": 8}},
        extra={"model_name": "toy"},
    )
    with pytest.raises(
        CheckpointError, match="'model_name' is 'toy' in the checkpoint but 'other' is expected"
    ):
        load_checkpoint(path, _model(), expected={"model_name": "other"})
    with pytest.raises(CheckpointError, match="'model.hidden' is 8 in the checkpoint but 16 is expected"):
        load_checkpoint(path, _model(), expected={"model.hidden": 16})
    with pytest.raises(CheckpointError, match="does not record 'dataset'"):
        load_checkpoint(path, _model(), expected={"dataset": "vqa"})
    load_checkpoint(path, _model(), expected={"model_name": "toy", "model.hidden": 8})


def test_other_model_by_state_dict(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", model=_model(8), step=0, extra={"model_name": "toy"})
    target = _model(16)
    before = [p.clone() for p in target.parameters()]
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, target)
    msg = str(info.value)
    assert "shape mismatches: 0.weight: checkpoint [8, 4] vs model [16, 4]" in msg and "'toy'" in msg
    assert all(torch.equal(a, b) for a, b in zip(before, target.parameters()))  # left untouched

    other = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3), nn.Linear(3, 3))
    with pytest.raises(CheckpointError, match=r"missing keys: 3\.weight, 3\.bias"):
        load_checkpoint(path, other)
    with pytest.raises(CheckpointError, match=r"unexpected keys: 2\.weight, 2\.bias"):
        load_checkpoint(path, nn.Sequential(nn.Linear(4, 8)))
    # strict=False tolerates missing keys (e.g. a new head) but not shape mismatches.
    load_checkpoint(path, other, strict=False)
    assert torch.equal(other[0].weight, torch.load(path, weights_only=True)["model"]["0.weight"])


def test_optimizer_and_scheduler_mismatch(tmp_path):
    model = _model()
    optimizer, scheduler = _optim(model)
    path = save_checkpoint(tmp_path / "c.pt", model=model, optimizer=optimizer, step=0)
    with pytest.raises(CheckpointError, match="AdamW optimizer, not of this SGD"):
        load_checkpoint(path, model, torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(CheckpointError, match=r"sizes \[4\] in the checkpoint but \[2\]"):
        load_checkpoint(path, model, torch.optim.AdamW(model[0].parameters()))
    with pytest.raises(CheckpointError, match="holds no scheduler state"):
        load_checkpoint(path, model, optimizer, scheduler)
    bare = save_checkpoint(tmp_path / "bare.pt", model=model, step=0)
    with pytest.raises(CheckpointError, match="holds no optimizer state"):
        load_checkpoint(bare, model, optimizer)


def test_newer_format_and_foreign_files_are_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", model=_model(), step=0)
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=f"format version {FORMAT_VERSION + 1}.*upgrade mmgraph"):
        load_checkpoint(path, _model())

    torch.save(_model().state_dict(), tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not an mmgraph checkpoint"):
        load_checkpoint(tmp_path / "plain.pt", _model())

    torch.save({"format_version": 1, "x": _Custom()}, tmp_path / "pickle.pt")
    with pytest.raises(CheckpointError, match="weights_only loading refuses"):
        load_checkpoint(tmp_path / "pickle.pt")


def test_failed_save_leaves_no_partial_file(tmp_path, monkeypatch):
    model = _model()
    good = save_checkpoint(tmp_path / "c.pt", model=model, step=1)
    good_bytes = good.read_bytes()

    def failing_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", failing_save)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(good, model=model, step=2)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "new.pt", model=model, step=2)
    assert _files(tmp_path) == ["c.pt"]  # neither the new target nor a temp file
    assert good.read_bytes() == good_bytes
    assert load_checkpoint(good, _model(), restore_rng=False)["step"] == 1


def test_interrupted_save_cleans_up(tmp_path, monkeypatch):
    def interrupted_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module.torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "sub" / "c.pt", model=_model(), step=0)
    assert _files(tmp_path / "sub") == []


def test_saved_from_wrapper_loads_into_bare_model(tmp_path):
    model = _model()
    path = save_checkpoint(tmp_path / "c.pt", model=nn.DataParallel(model), step=0)
    assert set(torch.load(path, weights_only=True)["model"]) == set(model.state_dict())
    bare = _model()
    load_checkpoint(path, bare)
    assert torch.equal(bare[0].weight, model[0].weight)
    wrapped = nn.DataParallel(_model())
    load_checkpoint(path, wrapped)
    assert torch.equal(wrapped.module[2].bias, model[2].bias)


def test_latest_checkpoint(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    assert latest_checkpoint(tmp_path) is None
    for step in (5, 120, 30):
        save_checkpoint(checkpoint_path(tmp_path, step), model=_model(), step=step)
    (tmp_path / ".ckpt-00000999.pt.abc.tmp").write_bytes(b"partial")
    (tmp_path / "notes.pt").write_bytes(b"")
    os.utime(checkpoint_path(tmp_path, 5), (4e9, 4e9))  # newest mtime must not matter
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 120)
    assert checkpoint_path(tmp_path, 120).name == "ckpt-00000120.pt"


def test_resume_equals_uninterrupted_training(tmp_path):
    n, k = 8, 3
    seed_everything(42)
    straight = _model()
    optimizer, scheduler = _optim(straight)
    _train(straight, optimizer, scheduler, range(n))

    seed_everything(42)
    first = _model()
    optimizer, scheduler = _optim(first)
    _train(first, optimizer, scheduler, range(k))
    path = save_checkpoint(tmp_path / "c.pt", model=first, optimizer=optimizer, scheduler=scheduler, step=k)
    torch.rand(100)  # the process goes on drawing before it dies

    seed_everything(7)  # a fresh process: other init, other RNG state
    resumed = _model()
    optimizer, scheduler = _optim(resumed)
    step = load_checkpoint(path, resumed, optimizer, scheduler)["step"]
    _train(resumed, optimizer, scheduler, range(step, n))
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
