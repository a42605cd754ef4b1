"""Synthetic image-text retrieval with compositional hard negatives: a bag-of-words dual encoder,
our graph dual encoder, and our dual encoder with its graph re-ranker, every model trained for the
same CPU time.

The data are the package's synthetic scenes (``mmgraph generate synthetic``: 3-6 objects of 3
shapes, 8 colours, 2 sizes and 2 materials), up to 4 captions per image stating one true relation
("a yellow hollow sphere right of a brown hollow cube"), each with its hard negatives: the same
bag of words, false for the image, after ARO (Yuksekgonul et al. 2023): an **attribute** swapped
between the two phrases, the two **object** nouns swapped, or the two phrases swapped around the
**relation**. Regions are scene-graph objects (label, attributes, box) with the ReGAT spatial graph
and the scene graph's relations; captions are parsed by spaCy. The data are generated into
``--data`` when it holds none.

Models (``mmgraph.models.list_models()``):

- ``bow_retrieval``: the caption is the mean of its word embeddings, the image the mean of its
  region embeddings (no message passing): it cannot tell a caption from its negatives;
- ``graph_retrieval`` (ours, dual encoder): relation-aware message passing over the dependency
  parse and over the region graph, each modality on its own, pooled and compared by cosine;
- ``graph_retrieval_rerank`` (ours, dual + re-ranker): a dual encoder plus a cross-encoder
  (cross attention between regions and tokens) whose grounded ITM head re-scores the dual encoder's
  top 10 per query; trained with the in-batch hardest and the compositional negatives. The
  re-ranker passes messages over the spatial region graph only (``rerank_edge_types``; no
  dependency parse, no scene-graph relations: its dual encoder keeps them all) and trains with a
  word-region alignment loss on the true pairs (its token -> region pointer channel pulled onto the
  regions each phrase of the caption names, from the generator's grounding; training only, at test
  time it reads none), as ours does in ``vqa_synthetic.py``. Its row ``(dual)`` is its own dual
  encoder before re-ranking.
- ``graph_retrieval_rerank, no alignment``: the same without the alignment loss (the ablation that
  shows what the grounding supervision adds).

In 300 s trials the re-ranker with the alignment loss reached 98.0% hard-negative accuracy over the
spatial graph only (relation swaps 98.9%; 979 steps) and 51.2% with the parse and the scene-graph
relations as well (relation swaps 50.5%; 780 steps); session 3's re-ranker (all edges, no
alignment) reached 72.9% in this benchmark. In session 9's first run both of ours' encoders saw the
spatial graph only: 97.8% on the hard negatives, but its dual encoder, without the parse, was close
to a bag of words (rsum 292.6) and its top 10 often missed the match (re-ranked rsum 378.8), hence
``rerank_edge_types``.

Metrics (``mmgraph.train.tasks.RetrievalEvaluator`` on the test split): R@1/5/10 image -> text and
text -> image, rsum, and the hard-negative accuracy: the fraction of captions whose score beats the
score of every one of their negatives (a tie is a failure), overall and per kind (per kind: the
fraction of (caption, negative) pairs won). The re-ranker's hard-negative scores are its match
logits. A scorer that ranks at random gets ``mean(1 / (1 + negatives))`` overall (computed from the
test captions) and 0.5 per kind. The bag-of-words model gives a caption and its negatives the same
score up to the rounding of the mean, so its accuracy is the share of rounding coin flips won.

Settings. Both graph models have hidden size 64, 2 blocks, 4 heads and no dropout; every model
trains at batch 32 with learning rate 1e-3, 5% warm-up, then a constant rate
(``benchmarks/training.py`` runs the schedule on the share of the budget spent). The schedule and rate come from
5-minute runs of the re-ranker on this data (2,000 images; with a variant of the ITM head that
was then dropped as no better): its hard-negative accuracy was 46% with the cosine decay and 74%
with the constant rate (it learns the relation swaps late, when the decay has taken most of the
rate away); 2e-3 was worse with either schedule (53% cosine, 40% constant). The re-ranker as
benchmarked reached 72.5% in such a run. The target (issue 6): 95% hard-negative accuracy with
the re-ranker, where the bag-of-words baseline sits near chance; the table says whether it was met.

Usage::

    python benchmarks/retrieval_synthetic.py --jobs 2      # full: about 11 minutes on 2 cores
    python benchmarks/retrieval_synthetic.py --quick       # tiny data, seconds per model (the tests)
    python benchmarks/retrieval_synthetic.py --budget 600 --images 4000
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_results  # noqa: E402
from training import Entry, budget_parser, run_entries  # noqa: E402

from mmgraph.datasets.synthetic import generate_dataset, load_synthetic  # noqa: E402
from mmgraph.train.experiment import DataConfig  # noqa: E402
from mmgraph.typing import SPATIAL_EDGE  # noqa: E402

DATA = Path(__file__).resolve().parent / ".data" / "synthetic_retrieval"
KINDS = ("attribute", "object", "relation")
TARGET = 0.95  # hard-negative accuracy of the re-ranker (issue 6)
RERANK = "graph_retrieval_rerank"
ALIGN_WEIGHT = 1.0  # the re-ranker's word-region alignment loss (mmgraph.heads.alignment_loss)


@dataclass
class Sizes:
    images: int  # generated images (80% train, 10% val, 10% test)
    captions_per_image: int
    budget: float  # training seconds per model
    hidden: int  # node state size of the graph models
    layers: int
    heads: int


FULL = Sizes(images=2000, captions_per_image=4, budget=300.0, hidden=64, layers=2, heads=4)
QUICK = Sizes(images=40, captions_per_image=4, budget=3.0, hidden=16, layers=1, heads=2)


def ensure_data(root: Path, sizes: Sizes, seed: int) -> Path:
    """Generates the synthetic data into ``root`` unless it holds some already (scene graphs and
    captions only: scene-graph regions need no image files)."""
    if not (root / "meta.json").exists():
        generate_dataset(
            root,
            num_images=sizes.images,
            questions_per_image=1,
            captions_per_image=sizes.captions_per_image,
            seed=seed,
            write_images=False,
        )
    return root


def test_captions(root: Path) -> Dict[str, object]:
    """Counts of the test split's captions and negatives, and the hard-negative accuracy of a
    scorer that ranks at random: ``mean(1 / (1 + n_i))`` over captions with ``n_i`` negatives."""
    _, _, entries = load_synthetic(root, "test", check_images=False)
    counts = [len(c["negatives"]) for e in entries for c in e["captions"] if c["negatives"]]
    kinds = {k: 0 for k in KINDS}
    for e in entries:
        for c in e["captions"]:
            for n in c["negatives"]:
                kinds[n["kind"]] = kinds.get(n["kind"], 0) + 1
    return {
        "images": len(entries),
        "captions": len(counts),
        "negatives": sum(counts),
        "negatives_per_caption": sum(counts) / max(1, len(counts)),
        "negatives_by_kind": kinds,
        "chance_hard_negative_accuracy": sum(1.0 / (1 + n) for n in counts) / max(1, len(counts)),
        "chance_per_kind": 0.5,
    }


def entries(data: Path, sizes: Sizes) -> List[Entry]:
    config = DataConfig(dataset="synthetic-retrieval", root=str(data), parser="spacy", max_tokens=32)
    graph = {"hidden": sizes.hidden, "layers": sizes.layers, "heads": sizes.heads, "dropout": 0.0}
    bow = {"hidden": sizes.hidden, "word_dim": sizes.hidden}
    train = {"batch_size": 32, "lr": 1e-3, "schedule": "constant"}  # see the module docstring
    # Ours' re-ranker: message passing over the spatial graph only (its dual encoder keeps every edge type),
    # and a word-region alignment loss on the true pairs (its pointer channel, the captions' grounding); the
    # ablation is the same without the loss.
    spatial = {**graph, "rerank_edge_types": (SPATIAL_EDGE,)}
    return [
        Entry("bow_retrieval", "bow_retrieval", config, bow, dict(train), group="baseline"),
        Entry("graph_retrieval", "graph_retrieval", config, dict(graph), dict(train), group="ours"),
        Entry(
            RERANK,
            RERANK,
            replace(config, grounding=True),
            {**spatial, "align_weight": ALIGN_WEIGHT},
            dict(train),
            group="ours",
        ),
        Entry(f"{RERANK}, no alignment", RERANK, config, dict(spatial), dict(train), group="ours"),
    ]


def rows_of(result: Dict) -> List[Dict[str, object]]:
    """One table row per scoring of a result: the re-ranker gives two (its dual encoder, re-ranked)."""
    if "error" in result:
        return [{"label": result["label"], "error": result["error"]}]
    test = result["test"]
    if result["model"] != RERANK:
        return [{"label": result["label"], "metrics": test}]
    dual = {k[len("dual/") :]: v for k, v in test.items() if k.startswith("dual/")}
    ranked = {k: v for k, v in test.items() if not k.startswith("dual/")}
    return [
        {"label": f"{result['label']} (dual)", "metrics": dual},
        {"label": f"{result['label']} (re-ranked)", "metrics": ranked},
    ]


def _num(value, scale: float = 1.0, digits: int = 1) -> str:
    return "-" if value is None else f"{scale * value:.{digits}f}"


def summarise(results: Sequence[Dict], captions: Dict[str, object]) -> Dict[str, object]:
    """Whether ours' re-ranker met the target, and where each model (by label) sits relative to chance."""
    chance = captions["chance_hard_negative_accuracy"]
    by_label = {r["label"]: r for r in results if "error" not in r}
    summary: Dict[str, object] = {"chance_hard_negative_accuracy": chance, "target": TARGET}
    for label, r in by_label.items():
        summary[label] = {
            "hard_negative_accuracy": r["test"].get("hard_negative_accuracy"),
            "over_chance": None
            if r["test"].get("hard_negative_accuracy") is None
            else r["test"]["hard_negative_accuracy"] - chance,
        }
    rerank = by_label.get(RERANK)
    value = None if rerank is None else rerank["test"].get("hard_negative_accuracy")
    summary["target_met"] = value is not None and value >= TARGET
    return summary


def main(argv=None) -> Dict[str, object]:
    ap = budget_parser(__doc__, FULL.budget, QUICK.budget)
    ap.add_argument(
        "--data",
        type=Path,
        default=None,
        help=f"data folder, generated when empty (default: {DATA}/<images>; quick: under --out)",
    )
    ap.add_argument("--images", type=int, default=None, help=f"images to generate (default: {FULL.images})")
    args = ap.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.images is not None:
        sizes = replace(sizes, images=args.images)
    budget = args.budget if args.budget is not None else sizes.budget
    default = args.out / ".data" / "synthetic_retrieval_quick" if args.quick else DATA / f"{sizes.images}"
    data = ensure_data(args.data or default, sizes, args.seed)
    captions = test_captions(data)

    t0 = time.perf_counter()
    results = run_entries(entries(data, sizes), budget, jobs=args.jobs, threads=args.threads, seed=args.seed)
    wall = time.perf_counter() - t0

    header = ["model", "params", "steps", "epochs", "train s", "samples/s", "infer ms/sample", "peak MiB"]
    header += [f"{d} R@{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)]
    header += ["rsum", "hard-neg acc %"]
    rows = []
    for r in results:
        for row in rows_of(r):
            if "error" in row:
                rows.append([row["label"], "error: " + row["error"]] + [""] * (len(header) - 2))
                continue
            m = row["metrics"]
            rows.append(
                [row["label"], f"{r['parameters']:,}", r["steps"], round(r["epochs"], 2)]
                + [round(r["train_seconds"], 1), round(r["train_samples_per_s"], 1)]
                + [round(r["inference_ms_per_sample"], 3), round(r["train_peak_mib"], 1)]
                + [_num(m.get(f"{d}_r{k}")) for d in ("i2t", "t2i") for k in (1, 5, 10)]
                + [_num(m.get("rsum")), _num(m.get("hard_negative_accuracy"), 100.0)]
            )
    summary = summarise(results, captions)
    payload = write_results(
        "retrieval_synthetic",
        {
            "quick": args.quick,
            "settings": {
                "images": sizes.images,
                "captions_per_image": sizes.captions_per_image,
                "budget_seconds": budget,
                "hidden": sizes.hidden,
                "layers": sizes.layers,
                "heads": sizes.heads,
                "jobs": args.jobs,
                "threads": args.threads,
                "seed": args.seed,
                "data": str(data),
            },
            "test_captions": captions,
            "target": TARGET,
            "results": results,
            "summary": summary,
            "wall_seconds": wall,
        },
        header,
        rows,
        out=args.out,
    )
    chance = captions["chance_hard_negative_accuracy"]
    lines = [
        "",
        f"Every model trained for {budget:g} s of CPU time ({args.jobs} at once, {args.threads} thread(s) "
        f"each), then its final weights were scored on the test split: {captions['images']} images, "
        f"{captions['captions']} captions with {captions['negatives']} hard negatives "
        f"({captions['negatives_per_caption']:.2f} per caption). R@K in percent over the test images; "
        f"the re-ranked rows re-score each query's top 10. Whole run: {wall / 60:.1f} minutes.",
        "",
        "## Hard negatives by kind",
        "",
        "Percent of (caption, negative) pairs where the true caption scores higher; overall: percent of "
        "captions that beat all their negatives. A tie counts as a failure.",
        "",
        "| model | overall % | " + " | ".join(f"{k} %" for k in KINDS) + " |",
        "|---|---|" + "---|" * len(KINDS),
        f"| chance (random scores) | {100 * chance:.1f} | " + " | ".join("50.0" for _ in KINDS) + " |",
    ]
    for r in results:
        for row in rows_of(r):
            if "error" in row:
                continue
            m = row["metrics"]
            lines.append(
                f"| {row['label']} | {_num(m.get('hard_negative_accuracy'), 100.0)} | "
                + " | ".join(_num(m.get(f"hard_negative_accuracy/{k}"), 100.0) for k in KINDS)
                + " |"
            )
    lines += ["", "## Target (issue 6)", ""]
    rerank = summary.get(RERANK)
    if rerank is None or rerank["hard_negative_accuracy"] is None:
        lines.append(f"The re-ranker did not finish: the {100 * TARGET:.0f}% target is not met.")
    else:
        lines.append(
            f"{100 * TARGET:.0f}% hard-negative accuracy with the re-ranker: "
            f"**{'met' if summary['target_met'] else 'not met'}** "
            f"({100 * rerank['hard_negative_accuracy']:.1f}%)."
        )
    bow = summary.get("bow_retrieval")
    if bow is not None and bow["hard_negative_accuracy"] is not None:
        lines.append(
            f"The bag-of-words baseline: {100 * bow['hard_negative_accuracy']:.1f}% against "
            f"{100 * chance:.1f}% for random scores ({100 * bow['over_chance']:+.1f} points): it scores a "
            "caption and its negatives alike (the same words), so it wins only rounding ties."
        )
    with open(Path(args.out) / "retrieval_synthetic.md", "a") as f:
        f.write("\n".join(lines) + "\n")
    return payload


if __name__ == "__main__":
    main()
