import json
import os

import pytest
import torch
from torch import nn
from torch_geometric.nn import global_mean_pool

from mmgraph.datasets.synthetic import generate_dataset
from mmgraph.datasets.synthetic_graphs import SyntheticVQA
from mmgraph.errors import ConfigError, InputError
from mmgraph.graph import GraphBuilder
from mmgraph.train.distributed import barrier, cleanup
from mmgraph.train.trainer import (
    EpochSampler,
    TrainConfig,
    Trainer,
    _can_fuse_adamw,
    lr_lambda,
    plot_history,
)
from mmgraph.typing import REGION, TOKEN
from tests.train import FINISHED, HANG_SECONDS, free_port, mark, run_workers


class BagModel(nn.Module):
    """Mean of token embeddings and region label embeddings -> answer logits, with dropout
    (so that resuming must restore the random generators to match)."""

    def __init__(self, vocab: int, labels: int, answers: int, hidden: int = 16):
        super().__init__()
        self.tok = nn.Embedding(vocab, hidden)
        self.lab = nn.Embedding(labels, hidden)
        self.drop = nn.Dropout(0.3)
        self.out = nn.Linear(2 * hidden, answers)

    def forward(self, batch):
        t = global_mean_pool(self.tok(batch[TOKEN].x), batch[TOKEN].batch, batch.num_graphs)
        r = global_mean_pool(self.lab(batch[REGION].label), batch[REGION].batch, batch.num_graphs)
        return self.out(self.drop(torch.cat([t, r], dim=-1)))

    def loss(self, batch):
        logits = self(batch)
        return nn.functional.cross_entropy(logits, batch.y.view(-1), ignore_index=-1), logits


def accuracy(model, loader, device):
    correct = total = 0
    for batch in loader:
        batch = batch.to(device)
        correct += int((model(batch).argmax(-1) == batch.y.view(-1)).sum())
        total += batch.num_graphs
    return {"accuracy": correct / total}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    generate_dataset(root, num_images=20, questions_per_image=3, captions_per_image=1, seed=5)
    train = SyntheticVQA(root, "train", builder=GraphBuilder(parser="sequential"))
    val = SyntheticVQA(root, "val", builder=GraphBuilder(parser="sequential"))
    return train, val


def make_model(train, seed=0):
    torch.manual_seed(seed)
    return BagModel(len(train.vocab), 64, len(train.answers))


def params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_loss_falls_and_logs(data, tmp_path):
    train, val = data
    cfg = TrainConfig(epochs=4, batch_size=8, lr=3e-2, out_dir=str(tmp_path / "run"), log_every=2)
    history = Trainer(make_model(train), train, val, cfg, evaluate=accuracy).fit()
    epochs = [r for r in history if "train_loss" in r]
    assert len(epochs) == 4
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert all("val_accuracy" in r and r["samples_per_second"] > 0 for r in epochs)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == history
    assert (tmp_path / "run" / "last.pt").exists() and (tmp_path / "run" / "best.pt").exists()
    fig = plot_history(tmp_path / "run" / "metrics.jsonl")
    assert len(fig.axes) == 2 and fig.axes[1].get_legend() is not None


def test_cpu_parameters_get_the_fused_adamw_and_lazy_ones_the_loop(data):
    train, _ = data
    trainer = Trainer(make_model(train), train, None, TrainConfig(epochs=1, batch_size=8))
    assert trainer.optimizer.defaults["fused"] is True
    before = params(trainer.model)
    trainer.fit()
    assert not torch.equal(params(trainer.model), before)
    lazy = torch.nn.Sequential(torch.nn.LazyLinear(4))
    assert not _can_fuse_adamw(lazy, torch.device("cpu"))
    assert not _can_fuse_adamw(torch.nn.Module(), torch.device("cpu"))  # no parameters at all


def test_every_training_step_runs_every_module_in_training_mode(data):
    train, val = data
    trainer = Trainer(make_model(train), train, val, TrainConfig(epochs=1, batch_size=8), evaluate=accuracy)
    batch = next(iter(trainer._loader(train, sampler=trainer.sampler)))
    seen = []
    trainer.model.drop.register_forward_hook(lambda module, args, out: seen.append(module.training))
    trainer._train_step([batch])
    trainer.run_evaluation()  # leaves the model in eval mode
    trainer._train_step([batch])
    trainer.model.drop.eval()  # one submodule alone
    trainer._train_step([batch])
    assert seen[0] and seen[-1] and seen.count(True) == 3  # the evaluation's forward passes saw False
    assert all(module.training for module in trainer.model.modules())


def test_resume_after_a_kill_equals_an_uninterrupted_run(data, tmp_path):
    train, _ = data
    n, k = 9, 4
    cfg = dict(epochs=3, batch_size=8, lr=1e-2, max_steps=n, checkpoint_every=k, warmup=2)
    straight = make_model(train)
    Trainer(straight, train, None, TrainConfig(**cfg)).fit()

    first = make_model(train)
    calls = {"n": 0}
    real_loss = first.loss

    def dying_loss(batch):
        calls["n"] += 1
        if calls["n"] > k:  # killed during step k + 1, after the checkpoint of step k
            raise KeyboardInterrupt
        return real_loss(batch)

    first.loss = dying_loss
    with pytest.raises(KeyboardInterrupt):
        Trainer(first, train, None, TrainConfig(**cfg, out_dir=str(tmp_path / "a"))).fit()

    torch.manual_seed(123)  # a fresh process: other random state
    resumed = make_model(train, seed=99)
    t2 = Trainer(resumed, train, None, TrainConfig(**cfg))
    t2.fit(resume=tmp_path / "a" / "last.pt")
    assert t2.step == n
    assert torch.equal(params(resumed), params(straight))


def test_gradient_accumulation_matches_a_bigger_batch(data):
    train, _ = data
    a, b = make_model(train), make_model(train)
    a.drop.p = b.drop.p = 0.0
    Trainer(
        a, train, None, TrainConfig(epochs=1, batch_size=8, grad_accum=2, max_steps=2, grad_clip=None)
    ).fit()
    Trainer(b, train, None, TrainConfig(epochs=1, batch_size=16, max_steps=2, grad_clip=None)).fit()
    assert torch.allclose(params(a), params(b), atol=1e-6)


def test_early_stop_and_best_checkpoint(data, tmp_path):
    train, val = data
    cfg = TrainConfig(
        epochs=20, batch_size=8, lr=1e-9, early_stop=2, out_dir=str(tmp_path), monitor="accuracy"
    )
    history = Trainer(make_model(train), train, val, cfg, evaluate=accuracy).fit()
    # With a learning rate of 1e-9 nothing improves after the first evaluation.
    assert len([r for r in history if "train_loss" in r]) == 3


def test_schedule_warmup_then_cosine():
    total, warm = 100, 10
    factors = [lr_lambda(s, total, warm, "cosine", 0.1) for s in range(total)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and factors[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(x >= y for x, y in zip(factors[10:], factors[11:]))
    assert lr_lambda(50, total, warm, "linear", 0.0) == pytest.approx(1 - 40 / 90)


def test_epoch_sampler_shards_and_resumes():
    full = EpochSampler(10, True, seed=1)
    full.set_epoch(3)
    order = list(full)
    assert sorted(order) == list(range(10))
    ranks = [EpochSampler(10, True, seed=1, rank=r, world_size=2) for r in range(2)]
    for s in ranks:
        s.set_epoch(3)
    assert sorted(list(ranks[0]) + list(ranks[1])) == list(range(10))
    full.set_epoch(3, start=4)
    assert list(full) == order[4:]
    full.set_epoch(4)
    assert list(full) != order


def test_bad_configuration_errors(data):
    train, val = data
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        TrainConfig(batch_size=0)
    with pytest.raises(InputError, match="needs an evaluate function"):
        Trainer(make_model(train), train, val, TrainConfig())
    with pytest.raises(ConfigError, match="not among the evaluation metrics"):
        Trainer(make_model(train), train, val, TrainConfig(epochs=1, monitor="f1"), evaluate=accuracy).fit()
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            Trainer(make_model(train), train, None, TrainConfig(device="cuda"))
    with pytest.raises(InputError, match="training set is empty"):
        Trainer(make_model(train), [], None, TrainConfig())


def _ddp_worker(rank, world, port, root, out_dir):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    train = SyntheticVQA(root, "train", builder=GraphBuilder(parser="sequential"))
    model = make_model(train)
    model.drop.p = 0.0
    cfg = TrainConfig(epochs=1, batch_size=8, max_steps=3, lr=1e-2, grad_clip=None, device="cpu")
    Trainer(model, train, None, cfg).fit()
    if rank == 0:
        torch.save(params(model), os.path.join(out_dir, "ddp.pt"))
    barrier()
    cleanup()
    mark(out_dir, rank, FINISHED)


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(data, tmp_path):
    train, _ = data
    out = tmp_path / "ddp"
    hung = run_workers(_ddp_worker, (2, free_port(), train.root, str(out)), out)
    if hung:
        pytest.fail(f"the two gloo processes hung (killed after {HANG_SECONDS} s): {hung}")
    single = make_model(train)
    single.drop.p = 0.0
    cfg = TrainConfig(epochs=1, batch_size=16, max_steps=3, lr=1e-2, grad_clip=None, device="cpu")
    # One process, global batch 16, in the order the two ranks see it interleaved.
    trainer = Trainer(single, train, None, cfg)
    trainer.sampler = _Interleaved(len(train), seed=cfg.seed)
    trainer.fit()
    assert torch.allclose(torch.load(out / "ddp.pt"), params(single), atol=1e-6)


class _Interleaved(EpochSampler):
    """The union of the two ranks' shards, batch by batch: rank 0's 8, then rank 1's 8."""

    def __init__(self, size, seed):
        super().__init__(size, True, seed)
        self.parts = [EpochSampler(size, True, seed, r, 2) for r in range(2)]

    def __iter__(self):
        for p in self.parts:
            p.set_epoch(self.epoch)
        a, b = list(self.parts[0]), list(self.parts[1])
        out = []
        for i in range(0, len(a), 8):
            out += a[i : i + 8] + b[i : i + 8]
        return iter(out)

    def __len__(self):
        return 2 * len(self.parts[0])
