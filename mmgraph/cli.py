"""The ``mmgraph`` command: ``mmgraph quickstart | generate | train | evaluate | predict | inspect``.

Each sub-command is a thin wrapper over the package's functions; ``--help``
on each says what it takes.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

from mmgraph._version import __version__
from mmgraph.errors import MMGraphError


def _summarise(name: str, datas) -> None:
    import torch
    from torch_geometric.loader import DataLoader

    from mmgraph.typing import DEP_EDGE, DEP_LABELS, NUM_DEP_LABELS, SPATIAL_EDGE

    batch = next(iter(DataLoader(datas, batch_size=len(datas))))
    print(f"   {name}: {batch.num_graphs:,} graphs, one PyG batch")
    for node_type in batch.node_types:
        n = batch[node_type].num_nodes
        print(f"      nodes {node_type:<8} {n:>8,}   ({n / batch.num_graphs:.1f} per graph)")
    for edge_type in batch.edge_types:
        e = batch[edge_type].edge_index.size(1)
        print(f"      edges {'-'.join(edge_type):<24} {e:>8,}   ({e / batch.num_graphs:.1f} per graph)")
    if SPATIAL_EDGE in batch.edge_types:
        hist = torch.bincount(batch[SPATIAL_EDGE].edge_type, minlength=13)[1:].tolist()
        print("      spatial classes 1..12: " + " ".join(str(c) for c in hist))
    if DEP_EDGE in batch.edge_types:
        counts = Counter(DEP_LABELS[t % NUM_DEP_LABELS] for t in batch[DEP_EDGE].edge_type.tolist())
        print("      top dependency labels: " + ", ".join(f"{k} {v}" for k, v in counts.most_common(6)))


def _step(n: int, text: str) -> float:
    print(f"\n[{n}/4] {text}", flush=True)
    return time.perf_counter()


def _epochs(history) -> None:
    for r in history:
        if "train_loss" in r:
            shown = {
                k: v
                for k, v in r.items()
                if k in ("epoch", "train_loss", "samples_per_second")
                or (
                    k.startswith("val_")
                    and "/" not in k
                    and k.split("_", 1)[1] in ("accuracy", "rsum", "hard_negative_accuracy")
                )
            }
            print("      " + "  ".join(f"{k} {_fmt(v)}" for k, v in shown.items()))


def cmd_quickstart(args: argparse.Namespace) -> int:
    from mmgraph.datasets.synthetic import generate_dataset, load_synthetic, question_only_baseline
    from mmgraph.train.experiment import DataConfig, ModelSection, RunConfig, load_split, make_builder, run
    from mmgraph.train.trainer import TrainConfig
    from mmgraph.typing import DEP_EDGE, DEP_LABELS, NUM_DEP_LABELS

    out = Path(args.out)
    data_root = out / "data"
    print(
        f"mmgraph {__version__} quickstart: synthetic scenes -> graphs -> VQA and retrieval models (in {out})"
    )
    t0 = _step(
        1,
        f"generate {args.images:,} synthetic scenes with {args.questions} questions each (seed {args.seed})",
    )
    if (data_root / "meta.json").exists():
        print(f"   {data_root} exists; using it")
    else:
        generate_dataset(
            data_root, num_images=args.images, questions_per_image=args.questions, seed=args.seed
        )
    print(f"   done in {time.perf_counter() - t0:.1f} s")

    t0 = _step(2, f"build graphs (parser: {args.parser})")
    data = DataConfig(dataset="synthetic-vqa", root=str(data_root), parser=args.parser, max_tokens=32)
    builder = make_builder(data)
    train_set = load_split(data, "train", builder)
    print(
        f"   vocabulary of {len(train_set.vocab)} tokens, {len(train_set.answers)} answers; {time.perf_counter() - t0:.1f} s"
    )
    _summarise("training questions", [train_set[i] for i in range(min(len(train_set), 256))])
    example = train_set[0]
    words = example.tokens
    arcs = [
        f"{words[h]} -{DEP_LABELS[t % NUM_DEP_LABELS]}-> {words[d]}"
        for (h, d), t in zip(example[DEP_EDGE].edge_index.t().tolist(), example[DEP_EDGE].edge_type.tolist())
        if t < NUM_DEP_LABELS
    ]
    print(f"   example: {example.text!r} -> {example.answer!r}")
    print("      dependency arcs: " + "; ".join(arcs))
    from mmgraph.viz import draw_graph

    draw_graph(example).savefig(out / "graph.png", dpi=110)
    print(f"      drawn to {out / 'graph.png'}")

    t0 = _step(3, f"train a graph VQA model for {args.epochs} epochs")
    train = TrainConfig(
        epochs=args.epochs, batch_size=32, lr=args.lr, warmup=0.02, out_dir=str(out / "vqa"), progress="off"
    )
    model = ModelSection(name="graph_vqa", hidden=args.hidden, layers=args.layers, heads=8, dropout=0.0)
    vqa = run(RunConfig(data=data, model=model, train=train))
    _epochs(vqa.history)
    _, train_q, _ = load_synthetic(data_root, "train", check_images=False)
    _, test_q, _ = load_synthetic(data_root, "test", check_images=False)
    blind = question_only_baseline(train_q, test_q)
    print(
        f"   test accuracy {vqa.test_metrics['accuracy']:.3f} (question-only baseline {blind['overall']:.3f}) "
        f"after {time.perf_counter() - t0:.0f} s"
    )
    for key, value in vqa.test_metrics.items():
        if key.startswith("accuracy/"):
            family = key.split("/", 1)[1]
            print(f"      {family:<22} {value:.3f}   (baseline {blind.get(family, float('nan')):.3f})")

    if args.skip_retrieval:
        return 0
    t0 = _step(4, f"train a graph retrieval model (dual encoder) for {args.epochs} epochs")
    data.dataset = "synthetic-retrieval"
    train.out_dir, train.monitor = str(out / "retrieval"), "rsum"
    model = ModelSection(name="graph_retrieval", hidden=args.hidden, layers=args.layers, heads=8, dropout=0.0)
    ret = run(RunConfig(data=data, model=model, train=train))
    _epochs(ret.history)
    m = ret.test_metrics
    test_images = len({str(g.image_id) for g in load_split(data, "test", builder)})
    print(
        f"   test over {test_images} images: image->text R@1 {m['i2t_r1']:.1f} R@5 {m['i2t_r5']:.1f} "
        f"R@10 {m['i2t_r10']:.1f}; text->image R@1 {m['t2i_r1']:.1f} R@5 {m['t2i_r5']:.1f} R@10 {m['t2i_r10']:.1f} "
        f"(chance R@1 {100 / test_images:.1f})"
    )
    if "hard_negative_accuracy" in m:
        print(
            f"   hard negatives (same words, false for the image): true caption ranked first {m['hard_negative_accuracy']:.3f}"
        )
    print(f"   after {time.perf_counter() - t0:.0f} s; checkpoints in {out / 'vqa'} and {out / 'retrieval'}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    if args.kind == "synthetic":
        from mmgraph.datasets.synthetic import generate_dataset

        meta = generate_dataset(
            args.out,
            num_images=args.images,
            questions_per_image=args.questions,
            captions_per_image=args.captions,
            seed=args.seed,
            image_size=args.image_size,
            max_objects=args.max_objects,
        )
        seconds = time.perf_counter() - t0
        counts = meta["counts"]
        images = sum(c["images"] for c in counts.values())
        questions = sum(c["questions"] for c in counts.values())
        print(
            f"wrote the synthetic benchmark to {args.out} in {seconds:.1f} s ({images / seconds:,.0f} images/s)"
        )
        for split, c in counts.items():
            print(
                f"   {split:<5} {c['images']:>6,} images {c['questions']:>8,} questions "
                f"{c['captions']:>7,} captions {c['negatives']:>7,} hard negatives"
            )
        print(f"   {questions:,} questions in all; families: {', '.join(meta['vocab']['families'])}")
    else:
        from mmgraph.datasets.sort_of_clevr import generate_sort_of_clevr

        out = Path(args.out)
        if out.suffix != ".pickle":
            out = out / "sort_of_clevr.pickle"
        out.parent.mkdir(parents=True, exist_ok=True)
        generate_sort_of_clevr(out, args.train, args.test, seed=args.seed, ternary=args.ternary)
        seconds = time.perf_counter() - t0
        print(
            f"wrote Sort-of-CLEVR ({args.train:,} train + {args.test:,} test images"
            f"{', with ternary questions' if args.ternary else ''}) to {out} in {seconds:.1f} s"
        )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from mmgraph.train.config import load_config
    from mmgraph.train.experiment import RunConfig, run

    overrides = list(args.set or [])
    for flag, key in ((args.data, "data.root"), (args.out, "train.out_dir"), (args.device, "train.device")):
        if flag is not None:
            overrides.append(f"{key}={flag}")
    if args.model is not None:
        overrides.append(f"model.name={args.model}")
    cfg = load_config(RunConfig, args.config, overrides)
    if cfg.train.out_dir is None:
        cfg.train.out_dir = "runs/" + cfg.model.name
    from mmgraph.train.distributed import cleanup, init_distributed

    main = init_distributed().is_main  # under torchrun only rank 0 reports
    if main:
        print(f"training {cfg.model.name} on {cfg.data.dataset} ({cfg.data.root}) -> {cfg.train.out_dir}")
    try:
        result = run(cfg, resume=args.resume)
    finally:
        cleanup()
    if main:
        for record in result.history:
            if "train_loss" in record:
                shown = {k: v for k, v in record.items() if "/" not in k}
                print("   " + "  ".join(f"{k} {_fmt(v)}" for k, v in shown.items()))
        print(f"test: {_metrics_line(result.test_metrics)}")
        print(f"checkpoints, config.yaml, metrics.jsonl and test_metrics.json in {result.out_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from mmgraph.train.experiment import evaluate_checkpoint

    metrics = evaluate_checkpoint(args.checkpoint, args.split, args.data, args.results, args.templates)
    print(f"{args.checkpoint} on {args.split}: {_metrics_line(metrics)}")
    for key, value in metrics.items():
        if "/" in key:
            print(f"   {key:<40} {_fmt(value)}")
    if args.results:
        print(f"answers written to {args.results} (the official VQA results format)")
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=1))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from mmgraph.train.experiment import predict_question

    answers = predict_question(args.checkpoint, args.question, args.image, args.split, args.k, args.data)
    print(f"Q: {args.question}")
    for answer, prob in answers:
        print(f"   {answer:<16} {prob:.3f}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from mmgraph.train.experiment import DataConfig, load_split, make_builder
    from mmgraph.typing import EDGE_TYPES
    from mmgraph.viz import draw_graph

    cfg = DataConfig(dataset=args.dataset, root=args.data, parser=args.parser, regions=args.regions)
    dataset = load_split(cfg, args.split, make_builder(cfg))
    if not 0 <= args.index < len(dataset):
        print(f"mmgraph inspect: index {args.index} is outside 0..{len(dataset) - 1}", file=sys.stderr)
        return 2
    data = dataset[args.index]
    print(data)
    image = data.get("image")
    if image is None and args.dataset.startswith("synthetic"):
        image = _synthetic_image(Path(args.data), args.split, data.image_id)
    wanted = [et for et in EDGE_TYPES if "-".join(et) in args.edges or et[1] in args.edges]
    fig = draw_graph(
        data, image=image[0] if image is not None and image.dim() == 4 else image, edge_types=wanted
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"drawn to {args.out}")
    return 0


def _synthetic_image(root: Path, split: str, image_id: str):
    import numpy as np
    import torch
    from PIL import Image

    path = root / "images" / split / f"{image_id}.png"
    if not path.exists():
        return None
    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB")).copy())


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _metrics_line(metrics) -> str:
    return "  ".join(f"{k} {_fmt(v)}" for k, v in metrics.items() if "/" not in k)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mmgraph", description="Graph-based vision-and-language reasoning.")
    ap.add_argument("--version", action="version", version=f"mmgraph {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    q = sub.add_parser(
        "quickstart",
        help="generate synthetic data, build graphs, train and evaluate VQA and retrieval models",
        description="The main job in one command, offline: generates synthetic scenes with questions and "
        "captions, builds their graphs, trains a graph VQA model and a graph retrieval model, and prints their "
        "test accuracy and recall@K next to the baselines.",
    )
    q.add_argument(
        "--out", default="mmgraph-quickstart", help="folder for data and runs (default: mmgraph-quickstart)"
    )
    q.add_argument("--images", type=int, default=2000, help="scenes to generate (default: 2000)")
    q.add_argument("--questions", type=int, default=10, help="questions per scene (default: 10)")
    q.add_argument("--epochs", type=int, default=8, help="training epochs per model (default: 8)")
    q.add_argument("--hidden", type=int, default=64, help="model width (default: 64)")
    q.add_argument("--layers", type=int, default=2, help="fusion blocks (default: 2)")
    q.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default: 1e-3)")
    q.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    q.add_argument(
        "--parser", choices=("spacy", "sequential"), default="spacy", help="text parser (default: spacy)"
    )
    q.add_argument("--skip-retrieval", action="store_true", help="train only the VQA model")
    q.set_defaults(func=cmd_quickstart)

    g = sub.add_parser(
        "generate",
        help="write a data set made by the package (synthetic scenes or Sort-of-CLEVR)",
        description="Writes a data set offline: 'synthetic' (our CLEVR-like scenes: PNG images, scene graphs, "
        "questions with programs, captions with hard negatives, as JSON) or 'sort-of-clevr' (the Relation "
        "Networks benchmark's pickle format).",
    )
    g.add_argument("kind", choices=("synthetic", "sort-of-clevr"), help="which data set")
    g.add_argument("out", help="output folder (sort-of-clevr: a folder or a .pickle path)")
    g.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    g.add_argument(
        "--images", type=int, default=1000, help="synthetic: images over all splits (default: 1000)"
    )
    g.add_argument("--questions", type=int, default=10, help="synthetic: questions per image (default: 10)")
    g.add_argument("--captions", type=int, default=4, help="synthetic: captions per image (default: 4)")
    g.add_argument(
        "--image-size", type=int, default=128, help="synthetic: image side in pixels (default: 128)"
    )
    g.add_argument(
        "--max-objects", type=int, default=6, help="synthetic: most objects per scene (default: 6)"
    )
    g.add_argument("--train", type=int, default=9800, help="sort-of-clevr: training images (default: 9800)")
    g.add_argument("--test", type=int, default=200, help="sort-of-clevr: test images (default: 200)")
    g.add_argument("--ternary", action="store_true", help="sort-of-clevr: add the ternary questions")
    g.set_defaults(func=cmd_generate)

    t = sub.add_parser(
        "train",
        help="train a model on a data set (config file + --set overrides)",
        description="Trains a model. Settings come from the RunConfig defaults, then --config (YAML), then "
        "each --set key=value (e.g. --set train.epochs=5 --set model.hidden=64 --set data.parser=sequential); "
        "unknown keys and bad values are refused. The resolved config, metrics.jsonl, last.pt and best.pt "
        "go to train.out_dir.",
    )
    t.add_argument("--config", help="a YAML file with data / model / train sections")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one setting (repeatable)")
    t.add_argument("--data", help="shortcut for --set data.root=...")
    t.add_argument("--model", help="shortcut for --set model.name=... (see mmgraph.models.list_models())")
    t.add_argument("--out", help="shortcut for --set train.out_dir=...")
    t.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: CUDA when present)")
    t.add_argument("--resume", metavar="CHECKPOINT", help="continue a run from its last.pt")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="score a checkpoint on a split", description="Scores a checkpoint.")
    e.add_argument("checkpoint", help="a best.pt / last.pt of mmgraph train")
    e.add_argument("--split", default="test", help="which split (default: test)")
    e.add_argument("--data", help="the data folder, if not the one the run used")
    e.add_argument("--results", metavar="JSON", help="VQA: write [{question_id, answer}] here")
    e.add_argument("--json", metavar="PATH", help="also write the metrics as JSON")
    e.add_argument(
        "--templates",
        action="store_true",
        help="VQA: also the accuracy per question template (synthetic questions carry one)",
    )
    e.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="answer a question about an image", description="Answers a question.")
    p.add_argument("checkpoint", help="a VQA checkpoint of mmgraph train")
    p.add_argument("--image", required=True, help="the image id (in --split of the run's data)")
    p.add_argument("--question", required=True, help="the question, any wording")
    p.add_argument("--split", default="test", help="where the image is (default: test)")
    p.add_argument("--data", help="the data folder, if not the one the run used")
    p.add_argument("-k", type=int, default=3, help="answers to show (default: 3)")
    p.set_defaults(func=cmd_predict)

    i = sub.add_parser(
        "inspect", help="draw a sample's graph to a PNG", description="Draws one sample's graph."
    )
    i.add_argument("data", help="the data folder")
    i.add_argument("--dataset", default="synthetic-vqa", help="the data set kind (default: synthetic-vqa)")
    i.add_argument("--split", default="train")
    i.add_argument("--index", type=int, default=0, help="which sample (default: 0)")
    i.add_argument("--parser", choices=("spacy", "sequential"), default="spacy")
    i.add_argument("--regions", choices=("scene_graph", "pixels", "segments"), default="scene_graph")
    i.add_argument("--edges", nargs="+", default=["spatial", "dep"], help="edge relations to draw")
    i.add_argument("--out", default="graph.png", help="the PNG to write (default: graph.png)")
    i.set_defaults(func=cmd_inspect)
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MMGraphError as e:
        print(f"mmgraph {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
