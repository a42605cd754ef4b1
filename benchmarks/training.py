"""Training comparisons at equal CPU time: the harness of ``vqa_synthetic.py``,
``sort_of_clevr.py`` and ``retrieval_synthetic.py``.

An :class:`Entry` names a registered model, the data it reads (a
:class:`~mmgraph.train.experiment.DataConfig`), its size options and its
training settings. :func:`run_entries` trains every entry for the same
budget of training seconds and scores it on the test split:

1. **Train** with :class:`BudgetTrainer`, a :class:`~mmgraph.train.Trainer`
   that counts training time (optimiser steps and the loading of their
   batches, not validation), runs its learning-rate schedule (warm-up,
   cosine decay) on the fraction of the budget spent, and stops at the
   first step past the budget: every model gets the same seconds, its
   schedule spans them, and a cheap model simply takes more steps. With
   ``curve=True`` the validation split is scored every epoch; that time
   is left out of the budget and of the curve's cumulative training
   seconds.
2. **Score** the final weights on the test split, and time it (inference
   milliseconds per sample).
3. **Measure** the peak memory of one training step (``common.peak_memory``)
   and count the parameters.

Entries run in ``jobs`` worker processes, each with ``threads`` torch
threads: on a 2-core machine two single-thread jobs train two models at
once, each on its own core. The wall-clock figures of jobs that share a
machine also measure their neighbours a little (memory bandwidth); every
entry runs under the same conditions, which is what the comparison needs.

The data sets are processed once in the calling process (their caches are
keyed by the builder's settings), so that workers only load them.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import peak_memory  # noqa: E402

from mmgraph.graph.collate import GraphLoader  # noqa: E402
from mmgraph.train import TrainConfig, Trainer  # noqa: E402
from mmgraph.train.experiment import (  # noqa: E402
    DataConfig,
    ModelSection,
    RunConfig,
    build_model,
    evaluator_for,
    load_split,
    make_builder,
    task_of,
)
from mmgraph.train.seed import seed_everything  # noqa: E402
from mmgraph.train.tasks import RetrievalLoss  # noqa: E402
from mmgraph.train.trainer import lr_lambda  # noqa: E402


@dataclass
class Entry:
    """One contender: a row of the results table."""

    label: str  # the row's name ("graph_vqa (scene graphs)")
    model: str  # a registered model name (mmgraph.models.list_models())
    data: DataConfig  # the data it reads
    options: Dict[str, Any] = field(default_factory=dict)  # model size / config overrides
    train: Dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides (lr, batch_size, ...)
    budget: Optional[float] = None  # training seconds; None: run_entries' budget
    group: str = ""  # a column to group rows by (e.g. "scene graphs" / "pixels")
    seed: Optional[int] = None  # seed of data order and initial weights; None: run_entries' seed


def prepare(entries: Sequence[Entry]) -> None:
    """Processes (or loads) every split every entry reads, in this process."""
    seen = set()
    for entry in entries:
        builder = make_builder(entry.data)
        key = (repr(entry.data), repr(builder.config))
        if key in seen:
            continue
        seen.add(key)
        for split in (entry.data.train_split, entry.data.val_split, entry.data.test_split):
            if split:
                load_split(entry.data, split, builder)


def _train_config(entry: Entry, **extra: Any) -> TrainConfig:
    settings = {"batch_size": 32, "lr": 1e-3, "warmup": 0.05, "progress": "off", **entry.train, **extra}
    return TrainConfig(**settings)


class BudgetTrainer(Trainer):
    """A :class:`~mmgraph.train.Trainer` that trains for ``budget`` seconds of training time.

    Training time is the time of the optimiser steps and of loading (collating) their batches;
    validation is left out. The learning-rate schedule (warm-up, then the configured decay) runs
    on the fraction of the budget spent, not on steps, so that it spans the budget whatever a step
    costs; the run stops at the first step that ends past the budget.
    """

    RESOLUTION = 1_000_000  # schedule positions per budget

    def __init__(self, *args, budget: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.budget = float(budget)
        self.spent = 0.0  # training seconds so far
        self._last: Optional[float] = None  # when the previous step ended (None after an evaluation)
        cfg, total = self.config, self.RESOLUTION
        warmup = int(cfg.warmup * total) if cfg.warmup < 1 else 0
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda _: lr_lambda(
                int(min(1.0, self.spent / self.budget) * total), total, warmup, cfg.schedule, cfg.min_lr_ratio
            ),
        )

    def _train_step(self, batches):
        began = time.perf_counter()
        if self._last is not None:
            self.spent += began - self._last  # loading this step's batch
        loss = super()._train_step(batches)
        self._last = time.perf_counter()
        self.spent += self._last - began
        if self.spent >= self.budget:
            self.total_steps = self.step  # the fit loop stops after this step
        return loss

    def run_evaluation(self):
        metrics = super().run_evaluation()
        self._last = None
        return metrics


def _trainer(entry: Entry, train_set, val_set, builder, config: TrainConfig, budget: float) -> BudgetTrainer:
    cfg = RunConfig(data=entry.data, model=ModelSection(name=entry.model, options=dict(entry.options)))
    seed_everything(config.seed)
    model, _ = build_model(cfg, train_set)
    task = task_of(entry.data.dataset)
    return BudgetTrainer(
        model,
        train_set,
        val_set,
        config,
        evaluate=evaluator_for(task, builder) if val_set is not None else None,
        loss=RetrievalLoss(builder) if task == "retrieval" else None,
        budget=budget,
    )


def run_entry(entry: Entry, budget: float, seed: int = 0, curve: bool = False):
    """Trains ``entry`` for ``budget`` training seconds and scores it; returns a JSON-able dict."""
    builder = make_builder(entry.data)
    train_set = load_split(entry.data, entry.data.train_split, builder)
    val_set = load_split(entry.data, entry.data.val_split, builder) if curve else None
    test_set = load_split(entry.data, entry.data.test_split, builder)
    task = task_of(entry.data.dataset)

    # 1. Train from the seeded initial weights until the budget is spent.
    config = _train_config(entry, seed=seed, epochs=10**6)
    if task == "retrieval":
        config.monitor = "rsum"
    trainer = _trainer(entry, train_set, val_set, builder, config, budget)
    t0 = time.perf_counter()
    history = trainer.fit()
    wall = time.perf_counter() - t0
    epochs = [r for r in history if "train_loss" in r]
    samples = 0.0
    train_seconds = 0.0
    points = []
    for r in epochs:
        # samples_per_second covers the epoch's training steps only (not its evaluation).
        done = (r["epoch"] - (points[-1]["epoch"] if points else 0.0)) * len(train_set)
        seconds = done / max(r["samples_per_second"], 1e-9)
        samples += done
        train_seconds += seconds
        point = {"epoch": r["epoch"], "train_seconds": train_seconds, "train_loss": r["train_loss"]}
        point.update({k: v for k, v in r.items() if k.startswith("val_")})
        points.append(point)

    # 2. Score the final weights on the test split (VQA: also per question template, where graphs have one).
    model = trainer.model.eval()
    loader = GraphLoader(test_set, batch_size=64)
    t0 = time.perf_counter()
    with torch.no_grad():
        metrics = evaluator_for(task, builder, templates=True)(model, loader, trainer.device)
    infer = time.perf_counter() - t0

    # 3. Peak memory of one training step, parameters.
    batch = next(iter(trainer._loader(train_set, sampler=trainer.sampler)))
    peak = peak_memory(lambda: trainer._train_step([batch]))
    return {
        "label": entry.label,
        "group": entry.group,
        "model": entry.model,
        "seed": seed,
        "regions": entry.data.regions,
        "options": dict(entry.options),
        "train": {k: getattr(config, k) for k in ("batch_size", "lr", "warmup", "schedule", "weight_decay")},
        "parameters": sum(p.numel() for p in model.parameters()),
        "budget_seconds": budget,
        "budget_spent_seconds": trainer.spent,
        "steps": trainer.step,
        "epochs": epochs[-1]["epoch"] if epochs else 0.0,
        "train_seconds": train_seconds,
        "train_wall_seconds": wall,
        "train_samples_per_s": samples / max(train_seconds, 1e-9),
        "inference_ms_per_sample": 1000.0 * infer / len(test_set),
        "train_peak_mib": peak / 2**20,
        "final_train_loss": epochs[-1]["train_loss"] if epochs else None,
        "test": {k: float(v) for k, v in metrics.items()},
        "test_size": len(test_set),
        "curve": points if curve else None,
    }


def _worker(args) -> Dict[str, Any]:
    entry, budget, seed, curve, threads = args
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        result = run_entry(entry, budget, seed=seed, curve=curve)
    except Exception as exc:  # a failed entry is reported in its row, the others still run
        result = {
            "label": entry.label,
            "group": entry.group,
            "model": entry.model,
            "seed": seed,
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
        }
    result["process_seconds"] = time.perf_counter() - t0
    print(
        f"[{time.strftime('%H:%M:%S')}] {entry.label}{'' if entry.seed is None else f', seed {seed}'}: "
        + (
            result.get("error")
            or f"{result['steps']} steps in {result['train_seconds']:.0f} s, test {_headline(result)}"
        ),
        file=sys.stderr,
        flush=True,
    )
    return result


def _headline(result: Dict[str, Any]) -> str:
    test = result["test"]
    for key in ("accuracy", "hard_negative_accuracy", "rsum"):
        if key in test:
            return f"{key} {test[key]:.3f}"
    return ""


def run_entries(
    entries: Sequence[Entry],
    budget: float,
    jobs: int = 1,
    threads: int = 1,
    seed: int = 0,
    curve: bool = False,
) -> List[Dict[str, Any]]:
    """Runs every entry (``entry.budget`` or ``budget`` training seconds each, at ``entry.seed`` or
    ``seed``) in ``jobs`` processes; returns their results in the entries' order."""
    prepare(entries)
    tasks = [(e, e.budget or budget, seed if e.seed is None else e.seed, curve, threads) for e in entries]
    if jobs <= 1:
        return [_worker(t) for t in tasks]
    # spawn: a fresh interpreter per worker, no forked torch thread pools.
    context = mp.get_context("spawn")
    env_threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            return list(pool.map(_worker, tasks))
    finally:
        if env_threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env_threads


def budget_parser(doc: str, budget: float, quick_budget: float):
    """:func:`common.benchmark_parser` plus ``--budget``, ``--jobs`` and ``--seed``."""
    from common import benchmark_parser

    ap = benchmark_parser(doc)
    ap.add_argument(
        "--budget",
        type=float,
        default=None,
        help=f"training seconds per model (default: {budget:g}; --quick: {quick_budget:g})",
    )
    ap.add_argument(
        "--jobs",
        type=int,
        default=max(1, min(2, os.cpu_count() or 1)),
        help="models trained at once, one process each with --threads threads (default: up to 2)",
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of data order and initial weights")
    return ap
