"""Graph construction speed: the vectorised builder against a per-pair Python baseline.

Measures, on one CPU thread, side by side in one run:

- spatial region graphs per second (the 11 ReGAT classes) for images of 36
  and 100 regions: the batched vectorised path against
  ``spatial_relations_reference``, a plain per-pair Python implementation of
  the same rules;
- whole graphs per second from ``GraphBuilder.build_many`` (regions, spatial +
  cross edges, tokens and dependency edges) for (36 regions, 14 tokens) and
  (100 regions, 30 tokens), with the parse cached;
- spaCy parsing, sentences per second, without and with the cache.

Run:
    python benchmarks/graph_construction.py            # about a minute
    python benchmarks/graph_construction.py --quick    # a few seconds (what the tests run)

Writes ``benchmarks/results/graph_construction.json`` and ``.md`` (or ``--out DIR``).
The target: graph building is never the bottleneck of training, at least
10,000 spatial graphs of 36 regions per second on one core.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import benchmark_parser, rate, write_results  # noqa: E402

from mmgraph.graph import (  # noqa: E402
    GraphBuilder,
    Sample,
    regions_from_detections,
    spatial_relations_batch,
    spatial_relations_reference,
)
from mmgraph.graph.text import SpacyParser  # noqa: E402

WORDS = "what color shape size is are the a of left right behind front small large red blue green cube sphere".split()


def random_boxes(num_images: int, num_regions: int, size=(640.0, 480.0), seed=0):
    g = torch.Generator().manual_seed(seed)
    w, h = size
    xy = torch.rand(num_images, num_regions, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
    wh = (
        torch.rand(num_images, num_regions, 2, generator=g) * torch.tensor([w * 0.3 - 4.0, h * 0.3 - 4.0])
        + 4.0
    )
    return torch.cat([xy, xy + wh], dim=-1)  # [B, R, 4], inside the image


def sentences(n: int, length: int, seed: int = 0):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(length - 1)) + f" {i}?" for i in range(n)]


def measure(num_regions: int, num_tokens: int, batch: int, ref_images: int, min_time: float):
    """Spatial graphs (vectorised vs per-pair) and whole graphs (batched vs one by one) at one size."""
    size = (640.0, 480.0)
    boxes = random_boxes(batch, num_regions, size)
    sizes = torch.tensor([size] * batch)
    fast = rate(lambda: spatial_relations_batch(boxes, sizes), batch, min_time=min_time)
    ref = rate(
        lambda: [spatial_relations_reference(boxes[i], size) for i in range(ref_images)],
        ref_images,
        min_time=min_time,
        min_calls=1,
    )
    # The two paths give the same graphs (checked here, so the comparison is fair).
    fast_graphs = spatial_relations_batch(boxes[:ref_images], sizes[:ref_images]).split()
    for i in range(ref_images):
        ei, et = spatial_relations_reference(boxes[i], size)
        assert torch.equal(ei, fast_graphs[i][0]) and torch.equal(et, fast_graphs[i][1]), (
            "vectorised != reference"
        )
    speedup = fast["per_second_mean"] / ref["per_second_mean"]
    spatial = {"regions": num_regions, "vectorised": fast, "per_pair_python": ref, "speedup": speedup}

    texts = sentences(batch, num_tokens)
    feats = torch.randn(num_regions, 2048)
    samples = [
        Sample(regions_from_detections(boxes[i], feats, size), texts[i], sample_id=i) for i in range(batch)
    ]
    builder = GraphBuilder(parser="spacy", max_tokens=64)
    builder.fit_vocab(texts)  # also warms the parse cache
    few = samples[: max(1, batch // 8)]
    one_by_one = rate(lambda: [builder(s) for s in few], len(few), min_time=min_time, min_calls=1)
    many = rate(lambda: builder.build_many(samples), batch, min_time=min_time, min_calls=1)
    whole = {"regions": num_regions, "tokens": num_tokens, "build_many": many, "one_by_one": one_by_one}
    rows = [
        [
            f"spatial graph, {num_regions} regions",
            "vectorised batch",
            fast["per_second_mean"],
            "per-pair Python",
            ref["per_second_mean"],
            speedup,
        ],
        [
            f"whole graph, {num_regions} regions x {num_tokens} tokens (parse cached)",
            "build_many",
            many["per_second_mean"],
            "builder(sample) one by one",
            one_by_one["per_second_mean"],
            many["per_second_mean"] / one_by_one["per_second_mean"],
        ],
    ]
    return spatial, whole, rows


def main(argv=None):
    ap = benchmark_parser(__doc__)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    min_time = 0.2 if args.quick else 2.0
    batch = 64 if args.quick else 1024
    ref_images = 2 if args.quick else 20

    results = {"spatial": [], "builder": [], "parsing": {}}
    rows = []
    for num_regions, num_tokens in ((36, 14), (100, 30)):
        spatial, builder, new_rows = measure(num_regions, num_tokens, batch, ref_images, min_time)
        results["spatial"].append(spatial)
        results["builder"].append(builder)
        rows.extend(new_rows)

    texts = sentences(200 if args.quick else 2000, 12, seed=1)
    parser = SpacyParser(cache_size=0)
    cold = rate(lambda: parser.parse(texts), len(texts), min_time=min_time, min_calls=1)
    cached = SpacyParser()
    cached.parse(texts)
    warm = rate(lambda: cached.parse(texts), len(texts), min_time=min_time)
    results["parsing"] = {"sentences": len(texts), "spacy_no_cache": cold, "spacy_warm_cache": warm}
    rows.append(
        [
            "spaCy parse, 12-word sentences",
            "warm cache",
            warm["per_second_mean"],
            "no cache",
            cold["per_second_mean"],
            warm["per_second_mean"] / cold["per_second_mean"],
        ]
    )

    target = results["spatial"][0]["vectorised"]["per_second_mean"]
    results["target"] = {"spatial_36_per_second": 10_000, "measured": target, "met": target >= 10_000}
    header = [
        "what (per second, one thread)",
        "ours",
        "ours /s",
        "baseline",
        "baseline /s",
        "ours / baseline",
    ]
    write_results(
        "graph_construction",
        {"quick": args.quick, "batch": batch, "results": results},
        header,
        rows,
        args.out,
    )
    for row in rows:
        print(
            f"{row[0]:<60} {row[1]:>18} {row[2]:>12,.0f}/s   {row[3]:>26} {row[4]:>10,.0f}/s   x{row[5]:.1f}"
        )
    print(
        f"target >= 10,000 spatial graphs/s (36 regions): {'met' if target >= 10_000 else 'NOT met'} ({target:,.0f}/s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
