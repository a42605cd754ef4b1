"""Training and inference cost as regions per image and the batch grow: ours (``graph_vqa``) against the
single-stream baseline (``single_stream_vqa``, UNITER-style), side by side in one run.

Inputs are detector-style samples: ``R`` random boxes inside a 640 x 480 image
with one 2,048-d feature vector each (``--quick``: 64-d; 2,048 is the size of
the bottom-up-attention Faster R-CNN features that VQA models read, so that
the region encoder and the data loader move what a real run moves), and
questions of 14 tokens (12 random words, a number and ``?``) parsed by the
sequential parser. Region edges are the ReGAT spatial graph for
``R <= 100`` and kNN-16 implicit edges beyond: the spatial graph links every
pair whose centres are less than half the image diagonal apart, which for
detector boxes is nearly all pairs (96% of them at 100 regions, about 2.5M
edges at 1,600), so beyond 100 regions the model reads the kNN graph, whose
``16 R`` edges grow linearly. Cross edges are complete (every token to
every region, both ways). Both models have the same hidden size, layers
and heads (and the same input encoders, pooling and answer head); the
baseline ignores the edges.

Measured per (regions, batch) configuration and model, on one thread:

- a training step (forward, loss, backward, ``AdamW`` step) on one
  collated batch: ms per step and samples per second;
- inference (``eval()``, ``torch.no_grad()``): ms per sample;
- the peak memory of one training step (``common.peak_memory``: activations,
  gradients and optimiser temporaries above what was allocated before);
- the parameter counts.

Every time is the best of its calls (``common.rate``: one warm-up, then at
least ``min_calls`` calls and ``min_time`` seconds): on a shared machine the
mean measures the neighbours too.

Configurations: 36, 100, 400 and 1,600 regions at batch 8; batches 1, 8 and
32 at 36 regions and at 1,600 regions (as far as ``--max-gb`` allows); all
with the models' dropout 0.1, then the region sweep again with dropout 0
(on the CPU, attention dropout sends ``scaled_dot_product_attention`` to its
math path, which materialises the ``[graphs * heads, N, N]`` weights: that,
more than attention itself, makes the baseline's memory quadratic).

Where the time goes, for 36 and 400 regions at batch 8: graph
building per sample (``GraphBuilder.build_many``; for the baseline without
region edges, which it does not read), data loading (the package's
``GraphLoader`` over the prebuilt graphs: ``collate_graphs``, what the
Trainer does with graphs from a list or a ``transform``), and the
model's forward (with the loss), backward and optimiser step, each in ms per
sample and as a share of their sum, the cost of one training sample when the
graphs are built on the fly (a data set ``transform``; with
``pre_transform`` the building share is paid once). One more row builds the
36-region graphs with the spaCy parser, without and with its parse cache, to
show what parsing costs.

Skip rules: a configuration whose estimated training peak exceeds
``--max-gb`` is recorded as skipped with the estimate (the measured peak per
sample of the nearest smaller configuration of the same model, times the
batch, times ``(R / R')^2`` -- conservative for the graph model, whose
memory grows with its ``O(R)`` edges, exact in order for the baseline's
``O(R^2)`` attention); once ``--budget-seconds`` have passed, the remaining
configurations are recorded as skipped.

Run:
    python benchmarks/scaling.py            # about 3 minutes on one CPU thread
    python benchmarks/scaling.py --quick    # seconds (what the tests run)

Writes ``benchmarks/results/scaling.json`` and ``.md`` (or ``--out DIR``).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import benchmark_parser, peak_memory, rate, write_results  # noqa: E402
from graph_construction import random_boxes, sentences  # noqa: E402
from torch_geometric.data import Batch, HeteroData  # noqa: E402

from mmgraph.errors import MissingDependencyError  # noqa: E402
from mmgraph.graph import GraphBuilder, GraphLoader, Sample, SpacyParser, Vocabulary, regions_from_detections  # noqa: E402
from mmgraph.models import create_model  # noqa: E402
from mmgraph.typing import DEP_EDGE, IMPLICIT_EDGE, SPATIAL_EDGE  # noqa: E402

MODELS = ("graph_vqa", "single_stream_vqa")
IMAGE_SIZE = (640.0, 480.0)
QUESTION_WORDS = 13  # sentences(n, 13): 12 words, a number and "?" = 14 tokens
KNN_K = 16
SPATIAL_MAX_REGIONS = 100  # spatial graph up to here, kNN-16 beyond (see the module docstring)
NUM_ANSWERS = 100
# The models' default dropout (attention weights, residual branches, FFNs, embeddings). On the CPU,
# attention dropout sends scaled_dot_product_attention to its math path, which materialises the
# [graphs * heads, N, N] weights: the region sweep is measured again without dropout to show it.
DROPOUT = 0.1
GB = 1024**3


@dataclass
class Settings:
    """What one run measures (``--quick`` shrinks every size)."""

    regions: List[int]  # regions per image, the region sweep
    sweep_batch: int  # the batch of the region sweep
    batch_sizes: List[int]  # the batch sweep, at the smallest and the largest region count
    breakdown: List[int]  # region counts for "where the time goes" (at sweep_batch)
    feature_dim: int
    hidden: int
    layers: int
    heads: int
    min_time: float  # seconds per timing (common.rate)
    min_calls: int

    def configs(self) -> List[Tuple[int, int, float]]:
        """(regions, batch, dropout) in the order measured: the region and batch sweeps with the models'
        dropout, regions then batch ascending (the memory estimate of a configuration reads the ones
        before it); then the region sweep again without dropout."""
        ends = (min(self.regions), max(self.regions))
        return [
            (r, b, DROPOUT)
            for r in sorted(self.regions)
            for b in sorted(set(self.batch_sizes) | {self.sweep_batch} if r in ends else {self.sweep_batch})
        ] + [(r, self.sweep_batch, 0.0) for r in sorted(self.regions)]


FULL = Settings(
    regions=[36, 100, 400, 1600],
    sweep_batch=8,
    batch_sizes=[1, 8, 32],
    breakdown=[36, 400],
    feature_dim=2048,
    hidden=128,
    layers=2,
    heads=4,
    min_time=1.0,
    min_calls=2,
)
QUICK = Settings(
    regions=[12, 120],
    sweep_batch=2,
    batch_sizes=[1, 2],
    breakdown=[12, 120],
    feature_dim=64,
    hidden=32,
    layers=1,
    heads=2,
    min_time=0.0,
    min_calls=1,
)


# ------------------------------------------------------------------ inputs
def region_edges(num_regions: int) -> Tuple[str, ...]:
    """The builder's region edge kinds at ``num_regions`` (the dense spatial graph only up to 100)."""
    return ("spatial",) if num_regions <= SPATIAL_MAX_REGIONS else ("knn",)


def make_samples(num_samples: int, num_regions: int, feature_dim: int, seed: int) -> List[Sample]:
    """Detector-style samples: random boxes inside the image, random features, 14-token questions."""
    g = torch.Generator().manual_seed(seed)
    boxes = random_boxes(num_samples, num_regions, IMAGE_SIZE, seed=seed)  # [N, R, 4]
    texts = sentences(num_samples, QUESTION_WORDS, seed=seed)
    answers = torch.randint(0, NUM_ANSWERS, (num_samples,), generator=g).tolist()
    return [
        Sample(
            regions_from_detections(boxes[i], torch.randn(num_regions, feature_dim, generator=g), IMAGE_SIZE),
            texts[i],
            sample_id=i,
            y=answers[i],
        )
        for i in range(num_samples)
    ]


def fit_vocab(num_samples: int) -> Vocabulary:
    """The vocabulary of ``make_samples(num_samples, ...)``'s questions: the words, numbers and "?"."""
    return GraphBuilder(parser="sequential").fit_vocab(sentences(num_samples, QUESTION_WORDS))


def make_builder(
    vocab: Vocabulary, num_regions: int, parser="sequential", edges: bool = True
) -> GraphBuilder:
    return GraphBuilder(
        vocab,
        parser=parser,
        region_edges=region_edges(num_regions) if edges else (),
        knn_k=KNN_K,
        cross="complete",
    )


def make_model(
    name: str, vocab: Vocabulary, num_regions: int, s: Settings, seed: int, dropout: float = DROPOUT
) -> nn.Module:
    torch.manual_seed(seed)
    # The edge types the graphs carry, as model_kwargs_from_dataset would give them.
    edge_type = SPATIAL_EDGE if num_regions <= SPATIAL_MAX_REGIONS else IMPLICIT_EDGE
    return create_model(
        name,
        vocab_size=len(vocab),
        num_answers=NUM_ANSWERS,
        region_feature_dim=s.feature_dim,
        hidden=s.hidden,
        layers=s.layers,
        heads=s.heads,
        dropout=dropout,
        edge_types=(edge_type, DEP_EDGE),
    )


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch) -> Callable[[], None]:
    def step():
        optimizer.zero_grad(set_to_none=True)
        loss, _ = model.loss(batch)
        loss.backward()
        optimizer.step()

    return step


# --------------------------------------------------------------- measuring
def measure(
    name: str,
    vocab: Vocabulary,
    batch: Batch,
    num_regions: int,
    batch_size: int,
    dropout: float,
    s: Settings,
    seed: int,
) -> Dict[str, object]:
    """Training step time, inference time, training peak memory and parameters of one model on one batch."""
    model = make_model(name, vocab, num_regions, s, seed, dropout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    step = training_step(model, optimizer, batch)
    train = rate(step, batch_size, min_time=s.min_time, min_calls=s.min_calls)
    peak = peak_memory(step)  # after rate's warm-up: the optimiser state already exists

    def infer():
        with torch.no_grad():
            model(batch)

    model.eval()
    inference = rate(infer, batch_size, min_time=s.min_time, min_calls=s.min_calls)
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_ms_per_step": batch_size * 1000.0 / train["per_second_best"],
        "train_samples_per_s": train["per_second_best"],
        "train_samples_per_s_mean": train["per_second_mean"],
        "train_calls": train["calls"],
        "inference_ms_per_sample": 1000.0 / inference["per_second_best"],
        "inference_calls": inference["calls"],
        "train_peak_mib": peak / 2**20,
    }


def estimate_gb(
    done: List[dict], name: str, num_regions: int, batch_size: int, dropout: float = DROPOUT
) -> Optional[float]:
    """Training peak of (``num_regions``, ``batch_size``) from the nearest smaller measured configuration
    of the same model and dropout: its peak per sample x the batch x the squared ratio of region counts."""
    measured = [
        e
        for e in done
        if e["model"] == name
        and e["dropout"] == dropout
        and "skipped" not in e
        and e["regions"] <= num_regions
    ]
    if not measured:
        return None
    ref = max(measured, key=lambda e: (e["regions"], e["batch"]))
    per_sample = ref["train_peak_mib"] / ref["batch"] / 1024
    return per_sample * batch_size * (num_regions / ref["regions"]) ** 2


def scaling(s: Settings, max_gb: float, deadline: float, seed: int) -> List[dict]:
    """Every (regions, batch, dropout) configuration for both models."""
    results: List[dict] = []
    vocab = fit_vocab(max(b for _, b, _ in s.configs()))
    batches: Dict[Tuple[int, int], Batch] = {}
    for num_regions, batch_size, dropout in s.configs():
        if (num_regions, batch_size) not in batches:
            samples = make_samples(batch_size, num_regions, s.feature_dim, seed=seed + num_regions)
            graphs = make_builder(vocab, num_regions).build_many(samples)
            batches[num_regions, batch_size] = Batch.from_data_list(graphs)
        batch = batches[num_regions, batch_size]
        edges = {str(t): int(batch[t].num_edges) // batch_size for t in batch.edge_types}
        for name in MODELS:
            entry = {
                "model": name,
                "regions": num_regions,
                "batch": batch_size,
                "dropout": dropout,
                "region_edges": region_edges(num_regions)[0]
                + (f"-{KNN_K}" if num_regions > SPATIAL_MAX_REGIONS else ""),
                "edges_per_graph": edges,
            }
            need = estimate_gb(results, name, num_regions, batch_size, dropout)
            if time.perf_counter() > deadline:
                entry["skipped"] = "over --budget-seconds"
            elif need is not None and need > max_gb:
                entry.update(skipped=f"needs about {need:.1f} GB (over --max-gb)", need_gb=need)
            else:
                entry.update(measure(name, vocab, batch, num_regions, batch_size, dropout, s, seed))
            print(_line(entry), flush=True)
            results.append(entry)
    return results


def phase_times(
    model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, s: Settings
) -> Dict[str, float]:
    """Seconds of forward (with the loss), backward and optimiser step, each the best over repeated
    training steps."""
    model.train()
    training_step(model, optimizer, batch)()  # warm-up, creates the optimiser state
    best = {"forward": math.inf, "backward": math.inf, "optimizer": math.inf}
    calls = 0
    start = time.perf_counter()
    while calls < max(s.min_calls, 3) or time.perf_counter() - start < s.min_time:
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss, _ = model.loss(batch)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        optimizer.step()
        t3 = time.perf_counter()
        for phase, seconds in (("forward", t1 - t0), ("backward", t2 - t1), ("optimizer", t3 - t2)):
            best[phase] = min(best[phase], seconds)
        calls += 1
    return best


def load_all(graphs: Sequence[HeteroData], batch_size: int) -> List[Batch]:
    """One epoch of the package's loader over prebuilt graphs (in the main process, as the timing wants)."""
    return list(GraphLoader(graphs, batch_size=batch_size))


def per_sample_ms(fn: Callable[[], object], items: int, s: Settings) -> float:
    return 1000.0 / rate(fn, items, min_time=s.min_time, min_calls=s.min_calls)["per_second_best"]


def breakdown(s: Settings, seed: int) -> Tuple[List[dict], Dict[str, object]]:
    """Where one training sample's time goes, for both models at each ``s.breakdown`` region count."""
    b = s.sweep_batch
    # Enough samples for a few batches, so that the loader's per-batch and per-graph costs both show.
    num_samples = 4 * b
    results = []
    vocab = fit_vocab(num_samples)
    for num_regions in s.breakdown:
        samples = make_samples(num_samples, num_regions, s.feature_dim, seed=seed + num_regions)
        for name in MODELS:
            # The baseline reads no region edges: its graphs are built without them.
            builder = make_builder(vocab, num_regions, edges=name == "graph_vqa")
            graphs = builder.build_many(samples)
            build = per_sample_ms(partial(builder.build_many, samples), num_samples, s)
            load = per_sample_ms(partial(load_all, graphs, b), num_samples, s)
            model = make_model(name, vocab, num_regions, s, seed)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
            phases = phase_times(model, optimizer, Batch.from_data_list(graphs[:b]), s)
            ms = {
                "graph building": build,
                "data loading": load,
                **{f"model {k}": 1000.0 * v / b for k, v in phases.items()},
            }
            total = sum(ms.values())
            entry = {
                "model": name,
                "regions": num_regions,
                "batch": b,
                "region_edges": list(builder.region_edges),
                "ms_per_sample": ms,
                "share": {k: v / total for k, v in ms.items()},
                "total_ms_per_sample": total,
            }
            print(f"breakdown {name} R={num_regions}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in ms.items()))
            results.append(entry)
    return results, parse_cost(vocab, s, seed)


def parse_cost(vocab: Vocabulary, s: Settings, seed: int) -> Dict[str, object]:
    """Graph building at the smallest breakdown size with the sequential parser and with spaCy, cold and cached."""
    num_regions = s.breakdown[0]
    num_samples = 4 * s.sweep_batch
    samples = make_samples(num_samples, num_regions, s.feature_dim, seed=seed + num_regions)
    out: Dict[str, object] = {"regions": num_regions, "samples": num_samples}
    out["sequential_ms_per_sample"] = per_sample_ms(
        lambda: make_builder(vocab, num_regions).build_many(samples), num_samples, s
    )
    try:
        cold = make_builder(vocab, num_regions, parser=SpacyParser(cache_size=0))
        warm = make_builder(vocab, num_regions, parser=SpacyParser())
    except MissingDependencyError as e:
        out["spacy_skipped"] = str(e)
        return out
    warm.parser.parse([x.text for x in samples])  # fills the cache
    out["spacy_no_cache_ms_per_sample"] = per_sample_ms(lambda: cold.build_many(samples), num_samples, s)
    out["spacy_cached_ms_per_sample"] = per_sample_ms(lambda: warm.build_many(samples), num_samples, s)
    return out


# ------------------------------------------------------------------ report
def _line(e: dict) -> str:
    head = f"{e['model']:<18} R={e['regions']:<5} B={e['batch']:<3} dropout {e['dropout']:<4}"
    if "skipped" in e:
        return f"{head} skipped: {e['skipped']}"
    return (
        f"{head} train {e['train_ms_per_step']:9.1f} ms/step {e['train_samples_per_s']:8.1f} samples/s   "
        f"infer {e['inference_ms_per_sample']:7.2f} ms/sample   peak {e['train_peak_mib']:8.1f} MiB"
    )


def _find(results: Sequence[dict], **keys) -> Optional[dict]:
    for e in results:
        if all(e.get(k) == v for k, v in keys.items()) and "skipped" not in e:
            return e
    return None


def summary(results: List[dict], parts: List[dict], s: Settings) -> Dict[str, object]:
    """Headline ratios: growth with regions (each region sweep over its smallest region count), ours over
    the baseline at every configuration, where ours starts to train faster, and the largest share of
    each breakdown. Keys ``"dropout 0.1"`` / ``"dropout 0.0"`` name the sweeps."""
    growth: Dict[str, Dict[str, list]] = {}
    faster: Dict[str, Optional[int]] = {}
    ours_over_baseline = []
    for dropout in sorted({d for _, _, d in s.configs()}, reverse=True):
        key = f"dropout {dropout}"
        growth[key] = {}
        for name in MODELS:
            rows = [
                (r, _find(results, model=name, regions=r, batch=s.sweep_batch, dropout=dropout))
                for r in sorted(s.regions)
            ]
            first = rows[0][1]
            growth[key][name] = [
                {
                    "regions": r,
                    "train_time": e["train_ms_per_step"] / first["train_ms_per_step"],
                    "inference_time": e["inference_ms_per_sample"] / first["inference_ms_per_sample"],
                    "train_peak": e["train_peak_mib"] / first["train_peak_mib"],
                }
                for r, e in rows
                if e is not None and first is not None
            ]
        faster[key] = None
        for r, b, d in s.configs():
            if d != dropout:
                continue
            ours = _find(results, model=MODELS[0], regions=r, batch=b, dropout=d)
            base = _find(results, model=MODELS[1], regions=r, batch=b, dropout=d)
            if ours and base:
                ratio = {
                    "regions": r,
                    "batch": b,
                    "dropout": d,
                    "train_time": ours["train_ms_per_step"] / base["train_ms_per_step"],
                    "inference_time": ours["inference_ms_per_sample"] / base["inference_ms_per_sample"],
                    "train_peak": ours["train_peak_mib"] / base["train_peak_mib"],
                }
                ours_over_baseline.append(ratio)
                if b == s.sweep_batch and ratio["train_time"] < 1.0 and faster[key] is None:
                    faster[key] = r
    largest_share = {f"{p['model']} R={p['regions']}": max(p["share"], key=p["share"].get) for p in parts}
    # How dense the spatial graph is at the largest region count that uses it: the reason for kNN beyond.
    spatial = [e for e in results if e["region_edges"] == "spatial"]
    densest = max(spatial, key=lambda e: e["regions"]) if spatial else None
    return {
        "region_sweep_batch": s.sweep_batch,
        "ours_faster_to_train_from_regions": faster,
        "spatial_edges_over_pairs": (
            {
                "regions": densest["regions"],
                "fraction": densest["edges_per_graph"][str(SPATIAL_EDGE)]
                / (densest["regions"] * (densest["regions"] - 1)),
            }
            if densest
            else None
        ),
        "growth_with_regions_over_smallest": growth,
        "ours_over_baseline": ours_over_baseline,
        "largest_share": largest_share,
    }


def main(argv=None):
    ap = benchmark_parser(__doc__)
    ap.add_argument(
        "--max-gb", type=float, default=4.0, help="skip configurations estimated to need more memory"
    )
    ap.add_argument(
        "--budget-seconds", type=float, default=900.0, help="skip the configurations not started by then"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    s = QUICK if args.quick else FULL

    start = time.perf_counter()
    results = scaling(s, args.max_gb, start + args.budget_seconds, args.seed)
    parts, parsing = breakdown(s, args.seed)
    headline = summary(results, parts, s)

    header = [
        "model", "regions", "batch", "dropout", "region edges", "params", "train ms/step", "train samples/s",
        "infer ms/sample", "train peak MiB",
    ]  # fmt: skip
    rows = []
    for e in results:
        measured = "skipped" not in e
        rows.append(
            [
                e["model"], e["regions"], e["batch"], e["dropout"], e["region_edges"],
                f"{e['parameters']:,}" if measured else "-",
                e["train_ms_per_step"] if measured else e["skipped"],
                e["train_samples_per_s"] if measured else "-",
                e["inference_ms_per_sample"] if measured else "-",
                e["train_peak_mib"] if measured else "-",
            ]
        )  # fmt: skip
    payload = {
        "quick": args.quick,
        "settings": {
            "feature_dim": s.feature_dim, "question_tokens": QUESTION_WORDS + 1, "hidden": s.hidden,
            "layers": s.layers, "heads": s.heads, "knn_k": KNN_K, "spatial_max_regions": SPATIAL_MAX_REGIONS,
            "cross": "complete", "num_answers": NUM_ANSWERS, "optimizer": "AdamW", "max_gb": args.max_gb,
            "budget_seconds": args.budget_seconds, "seed": args.seed, "min_time": s.min_time,
            "min_calls": s.min_calls,
        },
        "memory_method": "torch.profiler profile_memory: running sum of allocator events, peak above start",
        "results": results,
        "breakdown": parts,
        "parsing": parsing,
        "summary": headline,
        "seconds": time.perf_counter() - start,
    }  # fmt: skip
    write_results(
        "scaling",
        payload,
        header,
        rows,
        out=args.out,
        tail=_breakdown_table(parts, parsing) + _note(headline, s),
    )
    print((Path(args.out) / "scaling.md").read_text())
    return 0


def _breakdown_table(parts: List[dict], parsing: Dict[str, object]) -> str:
    phases = list(parts[0]["ms_per_sample"])
    lines = [
        "",
        "## Where the time goes (ms per training sample, share of the total)",
        "",
        "| model | regions | batch | " + " | ".join(phases) + " | total ms |",
        "|" + "|".join("---" for _ in range(len(phases) + 4)) + "|",
    ]
    for p in parts:
        cells = [f"{p['ms_per_sample'][k]:.2f} ({100 * p['share'][k]:.0f}%)" for k in phases]
        lines.append(
            f"| {p['model']} | {p['regions']} | {p['batch']} | "
            + " | ".join(cells)
            + f" | {p['total_ms_per_sample']:.2f} |"
        )
    lines += [
        "",
        f"Parse cost, graph building at {parsing['regions']} regions (ms per sample): "
        f"sequential parser {parsing['sequential_ms_per_sample']:.2f}; "
        + (
            f"spaCy without cache {parsing['spacy_no_cache_ms_per_sample']:.2f}, "
            f"spaCy cached {parsing['spacy_cached_ms_per_sample']:.2f}."
            if "spacy_skipped" not in parsing
            else f"spaCy skipped ({parsing['spacy_skipped']})."
        ),
        "",
    ]
    return "\n".join(lines)


def _note(headline: Dict[str, object], s: Settings) -> str:
    growth = "\n".join(
        f"  - {name}, {key}: "
        + ", ".join(f"{g['regions']}: x{g['train_time']:.1f} time, x{g['train_peak']:.1f} peak" for g in rows)
        for key, models in headline["growth_with_regions_over_smallest"].items()
        for name, rows in models.items()
    )
    ratios = "\n".join(
        f"  - {e['regions']} regions x {e['batch']}, dropout {e['dropout']}: "
        f"{e['train_time']:.2f} / {e['inference_time']:.2f} / {e['train_peak']:.2f}"
        for e in headline["ours_over_baseline"]
    )
    density = headline["spatial_edges_over_pairs"]
    density = (
        f"{100 * density['fraction']:.0f}% of all region pairs at {density['regions']} regions"
        if density
        else "-"
    )
    faster = "; ".join(
        f"{key}: " + (f"from {r} regions on" if r is not None else "at no region count measured")
        for key, r in headline["ours_faster_to_train_from_regions"].items()
    )
    return f"""
Notes.

- Inputs: {s.feature_dim}-d region features (random boxes inside a 640 x 480
  image), 14-token questions (sequential parser), spatial region edges up to
  {SPATIAL_MAX_REGIONS} regions and kNN-{KNN_K} beyond (the spatial graph links
  {density}), complete cross edges; both models hidden
  {s.hidden}, {s.layers} layers, {s.heads} heads, AdamW.
- Dropout {DROPOUT} is the models' default. With attention dropout, on the CPU
  ``scaled_dot_product_attention`` takes its math path and materialises the
  ``[graphs * heads, N, N]`` attention weights, so the baseline's memory
  grows with the square of a graph's nodes (without dropout it grows about
  linearly; its attention FLOPs are quadratic either way). The region sweep
  is run again with dropout 0 to show how much of the gap that is.
- Training step time and peak memory over those at {min(s.regions)} regions (batch
  {headline["region_sweep_batch"]}):
{growth}
- {MODELS[0]} over {MODELS[1]} (training time / inference time / training peak):
{ratios}
- {MODELS[0]} trains faster than {MODELS[1]} (batch {s.sweep_batch}): {faster}.
- The breakdown's total is one training sample's cost when graphs are built
  on the fly (a data set ``transform``); the baseline's graphs are built
  without region edges, which it does not read. It uses dropout {DROPOUT}.
- Peak memory is the CPU allocator's high-water mark during one training
  step above what was allocated before it (inputs, weights and optimiser
  state excluded); see ``common.peak_memory``.
"""


if __name__ == "__main__":
    raise SystemExit(main())
