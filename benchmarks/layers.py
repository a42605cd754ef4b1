"""Graph layer speed and memory: our layers against PyTorch and PyG baselines, side by side in one run.

Measures forward + backward time and peak memory, for a batch of graphs, of:

- cross-modal attention, tokens attending to regions, for 36, 100, 400 and
  1,600 regions x 16 and 64 tokens per graph:
  * complete edges: ``CrossModalAttention`` dense fast path (``edge_index=None``),
    its sparse path on the explicit complete edge list, and
    ``torch.nn.MultiheadAttention`` with the same weights
    (``need_weights=False``, its SDPA path);
  * top-8 edges (each token attends to 8 of its graph's regions, as
    ``GraphBuilder(cross="topk")`` makes): the sparse path, and
    ``nn.MultiheadAttention`` with the edges as a dense boolean mask;
- intra-modal graph attention on kNN-16 region graphs (``knn_edges_batch``
  with relative box geometry, 12 spatial relation classes) at the same region
  counts: ``RelationGATConv`` against PyG's ``GATConv`` (edge features, no
  relations) and ``RGATConv`` (relation-specific weights);
- region -> region self-attention at the same region counts: dense over all
  regions of each graph (``nn.MultiheadAttention`` and our dense path,
  ``CrossModalAttention(x, x, None)``), dense with the kNN-8 graph as a mask
  (``nn.MultiheadAttention``, the same function as the sparse path), against
  our sparse path on kNN-8 edges and ``RelationGATConv`` on kNN-8 edges.

Our layers keep a batch vector's padded layout while that tensor lives
(:mod:`mmgraph.nn.dense`); every timed call of ours gets fresh batch vectors,
so that it pays for the layout as a training step on a new batch does.

Every row also gives the peak memory per edge (MiB per 10,000 edges; for
dense rows per pair of nodes attended), so that linear growth is visible.

Every pair that computes the same function is checked to agree before it
is timed. A case whose estimated memory exceeds ``--max-gb`` is recorded as
skipped with the estimate (``RGATConv`` gathers one ``[F_in, H * F_out]``
weight matrix per edge).

Peak memory: on CUDA ``torch.cuda.max_memory_allocated``; on the CPU the
running sum of every allocation and free recorded by ``torch.profiler``
(``profile_memory=True``) during one forward + backward, above what was
allocated before (inputs and weights excluded, activations and gradients
included); see ``common.peak_memory``.

Run:
    python benchmarks/layers.py            # about 5-10 minutes on one CPU thread
    python benchmarks/layers.py --quick    # seconds (what the tests run)

Writes ``benchmarks/results/layers.json`` and ``.md`` (or ``--out DIR``).
Targets: on complete edges the dense path within 1.3x of
``nn.MultiheadAttention``; with top-k edges, memory that grows linearly with
the number of edges and is 10x or more below dense attention at 1,600 regions
(read on region self-attention with kNN-8 edges, and on token -> region cross
attention, whose floor the note under the table explains).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import benchmark_parser, peak_memory, rate, write_results  # noqa: E402
from torch_geometric.nn import GATConv, RGATConv  # noqa: E402

from mmgraph.graph import box_geometry, knn_edges_batch  # noqa: E402
from mmgraph.nn import CrossModalAttention, RelationGATConv, complete_edge_index  # noqa: E402
from mmgraph.typing import GEOMETRY_DIM, NUM_SPATIAL_CLASSES  # noqa: E402

TOP_K = 8
KNN_K = 16
SELF_KNN_K = 8
GB = 1024**3


def _case(
    fn: Callable[[], Tensor], device: torch.device, min_time: float, min_calls: int
) -> Dict[str, float]:
    """Forward + backward time (ms, best and mean) and peak memory (MiB) of ``fn``."""

    def step():
        fn().sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    timing = rate(step, 1, min_time=min_time, min_calls=min_calls)
    return {
        "ms_best": 1000.0 / timing["per_second_best"],
        "ms_mean": 1000.0 / timing["per_second_mean"],
        "calls": timing["calls"],
        "peak_mib": peak_memory(step, device) / 2**20,
    }


def _sparse_gb(num_edges: int, heads: int) -> float:
    # About 8 [E, heads] float tensors live at once, plus a few chunks of gathered rows.
    return num_edges * heads * 4 * 8 / GB + 0.1


def _skipped(need_gb: float) -> Dict[str, object]:
    return {"skipped": f"needs about {need_gb:.1f} GB (over --max-gb)", "need_gb": need_gb}


def cross_attention(num_regions, num_tokens, batch, hidden, heads, device, min_time, min_calls, max_gb):
    """Tokens (queries) attending to regions (keys, values) with complete and top-k edges."""
    g = torch.Generator().manual_seed(num_regions * 1000 + num_tokens)
    x_tok = torch.randn(batch * num_tokens, hidden, generator=g).to(device).requires_grad_()
    x_reg = torch.randn(batch * num_regions, hidden, generator=g).to(device).requires_grad_()
    batch_tok = torch.arange(batch, device=device).repeat_interleave(num_tokens)
    batch_reg = torch.arange(batch, device=device).repeat_interleave(num_regions)
    mha = nn.MultiheadAttention(hidden, heads, batch_first=True).to(device)
    layer = CrossModalAttention.load_from_multihead(mha)

    def ours(edge_index, complete):
        # Fresh batch vectors every call: the padded layout (cached per batch vector) is worked out in
        # every timed call, as in a training step on a new batch.
        return lambda: layer(
            x_reg,
            x_tok,
            edge_index,
            batch_reg.clone(),
            batch_tok.clone(),
            complete=complete,
            num_graphs=batch,
        )

    def baseline(mask=None):
        q = x_tok.view(batch, num_tokens, hidden)  # [B, T, F]
        kv = x_reg.view(batch, num_regions, hidden)  # [B, R, F]
        return lambda: mha(q, kv, kv, attn_mask=mask, need_weights=False)[0].reshape(-1, hidden)

    complete_edges = complete_edge_index(batch_reg, batch_tok, batch)  # [2, B*T*R]
    k = min(TOP_K, num_regions)
    local = torch.rand(batch * num_tokens, num_regions, generator=g).argsort(-1)[:, :k].to(device)  # [B*T, k]
    src = (local + (batch_tok * num_regions).unsqueeze(-1)).reshape(-1)
    topk_edges = torch.stack([src, torch.arange(batch * num_tokens, device=device).repeat_interleave(k)])
    # nn.MultiheadAttention's boolean mask: True = may NOT attend; one [T, R] block per graph and head.
    allowed = torch.zeros(batch, num_tokens, num_regions, dtype=torch.bool, device=device)
    allowed.view(-1, num_regions).scatter_(1, local, True)
    topk_mask = (~allowed).repeat_interleave(heads, dim=0)  # [B*heads, T, R]

    fns = {
        ("complete", "dense"): ours(None, True),
        ("complete", "sparse"): ours(complete_edges, False),
        ("complete", "nn.MultiheadAttention"): baseline(),
        (f"top-{k}", "sparse"): ours(topk_edges, False),
        (f"top-{k}", "nn.MultiheadAttention + mask"): baseline(topk_mask),
    }
    with torch.no_grad():
        ref = fns[("complete", "nn.MultiheadAttention")]()
        agree = {
            "complete_dense_vs_mha": float((fns[("complete", "dense")]() - ref).abs().max()),
            f"top{k}_sparse_vs_masked_mha": float(
                (fns[(f"top-{k}", "sparse")]() - fns[(f"top-{k}", "nn.MultiheadAttention + mask")]())
                .abs()
                .max()
            ),
        }
        if _sparse_gb(complete_edges.size(1), heads) <= max_gb:
            agree["complete_sparse_vs_mha"] = float((fns[("complete", "sparse")]() - ref).abs().max())
    assert all(v < 1e-3 for v in agree.values()), f"paths disagree: {agree}"

    num_edges = {"complete": complete_edges.size(1), f"top-{k}": topk_edges.size(1)}
    results = []
    for (edges, method), fn in fns.items():
        entry = {
            "layer": "cross_attention",
            "regions": num_regions,
            "tokens": num_tokens,
            "edges": edges,
            "num_edges": num_edges[edges],
            "method": method,
        }
        need_gb = _sparse_gb(num_edges[edges], heads) if method == "sparse" else 0.0
        entry.update(_skipped(need_gb) if need_gb > max_gb else _case(fn, device, min_time, min_calls))
        results.append(entry)
    return results, agree


def graph_attention(num_regions, batch, hidden, heads, device, min_time, min_calls, max_gb):
    """RelationGATConv against GATConv and RGATConv on kNN region graphs with box geometry."""
    g = torch.Generator().manual_seed(num_regions)
    xy = torch.rand(batch, num_regions, 2, generator=g) * 0.7
    boxes = torch.cat(
        [xy, xy + 0.05 + torch.rand(batch, num_regions, 2, generator=g) * 0.25], -1
    )  # [B, R, 4]
    edges = knn_edges_batch(boxes, min(KNN_K, num_regions - 1))
    edge_index = edges.edge_index.to(device)
    edge_attr = box_geometry(boxes.view(-1, 4), edges.edge_index).to(device)  # [E, 4]
    edge_type = torch.randint(1, NUM_SPATIAL_CLASSES - 1, (edge_index.size(1),), generator=g).to(device)
    x = torch.randn(batch * num_regions, hidden, generator=g).to(device).requires_grad_()
    out = hidden // heads
    ours = RelationGATConv(hidden, out, NUM_SPATIAL_CLASSES, heads=heads, edge_dim=GEOMETRY_DIM).to(device)
    gat = GATConv(hidden, out, heads=heads, edge_dim=GEOMETRY_DIM, add_self_loops=False).to(device)
    rgat = RGATConv(hidden, out, NUM_SPATIAL_CLASSES, heads=heads, edge_dim=GEOMETRY_DIM).to(device)
    num_edges = edge_index.size(1)
    methods = {
        "RelationGATConv": (lambda: ours(x, edge_index, edge_type, edge_attr), 0.0),
        "GATConv": (lambda: gat(x, edge_index, edge_attr), 0.0),
        # RGATConv gathers one [hidden, heads * out] weight matrix per edge (and its gradient).
        "RGATConv": (
            lambda: rgat(x, edge_index, edge_type, edge_attr),
            num_edges * hidden * hidden * 4 * 3 / GB,
        ),
    }
    results = []
    for method, (fn, need_gb) in methods.items():
        entry = {
            "layer": "graph_attention",
            "regions": num_regions,
            "edges": f"kNN-{KNN_K}",
            "num_edges": num_edges,
        }
        entry["method"] = method
        entry.update(_skipped(need_gb) if need_gb > max_gb else _case(fn, device, min_time, min_calls))
        results.append(entry)
    return results


def region_attention(num_regions, batch, hidden, heads, device, min_time, min_calls, max_gb):
    """Region -> region self-attention: dense over all pairs, and kNN-8 sparse."""
    g = torch.Generator().manual_seed(num_regions + 7)
    xy = torch.rand(batch, num_regions, 2, generator=g) * 0.7
    boxes = torch.cat(
        [xy, xy + 0.05 + torch.rand(batch, num_regions, 2, generator=g) * 0.25], -1
    )  # [B, R, 4]
    k = min(SELF_KNN_K, num_regions - 1)
    edge_index = knn_edges_batch(boxes, k).edge_index.to(device)  # [2, B*R*k] (source, target)
    edge_attr = box_geometry(boxes.view(-1, 4), edge_index.cpu()).to(device)  # [E, 4]
    edge_type = torch.randint(1, NUM_SPATIAL_CLASSES - 1, (edge_index.size(1),), generator=g).to(device)
    x = torch.randn(batch * num_regions, hidden, generator=g).to(device).requires_grad_()
    graph = torch.arange(batch, device=device).repeat_interleave(num_regions)
    mha = nn.MultiheadAttention(hidden, heads, batch_first=True).to(device)
    layer = CrossModalAttention.load_from_multihead(mha)
    gat = RelationGATConv(hidden, hidden // heads, NUM_SPATIAL_CLASSES, heads=heads, edge_dim=GEOMETRY_DIM)
    gat = gat.to(device)
    xv = x.view(batch, num_regions, hidden)  # [B, R, F]
    # True = may NOT attend: each region (query, target) sees only its k sources.
    allowed = torch.zeros(batch * num_regions, num_regions, dtype=torch.bool, device=device)
    allowed[edge_index[1], edge_index[0] % num_regions] = True
    knn_mask = (~allowed).view(batch, num_regions, num_regions).repeat_interleave(heads, dim=0)

    def dense_mha(mask=None):
        return lambda: mha(xv, xv, xv, attn_mask=mask, need_weights=False)[0].reshape(-1, hidden)

    def self_attention(edges, complete):
        g = graph.clone()  # a fresh batch vector every call, as in ours() of cross_attention
        return layer(x, x, edges, g, g, complete=complete, num_graphs=batch)

    pairs = batch * num_regions * num_regions
    knn = f"kNN-{k}"
    # (edges, method): (fn, edges counted, estimated GB); the masked dense path materialises
    # [B * heads, R, R] weights, their softmax and gradients.
    methods = {
        ("all pairs", "nn.MultiheadAttention"): (dense_mha(), pairs, 0.0),
        ("all pairs", "dense"): (lambda: self_attention(None, True), pairs, 0.0),
        (knn, "nn.MultiheadAttention + kNN mask"): (dense_mha(knn_mask), pairs, pairs * heads * 4 * 5 / GB),
        (knn, "sparse"): (
            lambda: self_attention(edge_index, False),
            edge_index.size(1),
            _sparse_gb(edge_index.size(1), heads),
        ),
        (knn, "RelationGATConv"): (
            lambda: gat(x, edge_index, edge_type, edge_attr),
            edge_index.size(1),
            _sparse_gb(edge_index.size(1), heads),
        ),
    }
    with torch.no_grad():
        agree = {"dense_vs_mha": float((methods[("all pairs", "dense")][0]() - dense_mha()()).abs().max())}
        if methods[(knn, "nn.MultiheadAttention + kNN mask")][2] <= max_gb:
            sparse = methods[(knn, "sparse")][0]()
            agree[f"knn{k}_sparse_vs_masked_mha"] = float((sparse - dense_mha(knn_mask)()).abs().max())
    assert all(v < 1e-3 for v in agree.values()), f"paths disagree: {agree}"

    def projections_only():
        # The node terms every path shares: q, k, v and output projections and their gradients.
        q, k, v = layer.q_proj(x), layer.k_proj(x), layer.v_proj(x)
        return layer.out_proj(q + k + v)

    agree["projection_floor_mib"] = _case(projections_only, device, 0.0, 1)["peak_mib"]

    results = []
    for (edges, method), (fn, num_edges, need_gb) in methods.items():
        entry = {"layer": "region_attention", "regions": num_regions, "edges": edges, "num_edges": num_edges}
        entry["method"] = method
        entry.update(_skipped(need_gb) if need_gb > max_gb else _case(fn, device, min_time, min_calls))
        results.append(entry)
    return results, agree


def _by(results: List[dict], **keys) -> Optional[dict]:
    for entry in results:
        if all(entry.get(k) == v for k, v in keys.items()) and "skipped" not in entry:
            return entry
    return None


def targets(results: List[dict], regions: List[int], tokens: List[int]) -> Dict[str, object]:
    """The two targets of the issue, read off the measurements."""
    time_ratio = []
    for r in regions:
        for t in tokens:
            dense = _by(
                results, layer="cross_attention", regions=r, tokens=t, edges="complete", method="dense"
            )
            mha = _by(
                results,
                layer="cross_attention",
                regions=r,
                tokens=t,
                edges="complete",
                method="nn.MultiheadAttention",
            )
            time_ratio.append(
                {"regions": r, "tokens": t, "dense_over_mha_ms": dense["ms_best"] / mha["ms_best"]}
            )
    memory = []
    top = f"top-{TOP_K}"
    for t in tokens:
        r = max(regions)
        sparse = _by(results, layer="cross_attention", regions=r, tokens=t, edges=top, method="sparse")
        for method in ("dense", "nn.MultiheadAttention"):
            dense = _by(
                results, layer="cross_attention", regions=r, tokens=t, edges="complete", method=method
            )
            memory.append(
                {
                    "regions": r,
                    "tokens": t,
                    "dense": method,
                    "dense_over_topk_peak": dense["peak_mib"] / max(sparse["peak_mib"], 1e-9),
                }
            )
    # Linear growth: peak memory per edge of the sparse path over all its runs.
    per_edge = [
        {
            "layer": e["layer"],
            "regions": e["regions"],
            "tokens": e.get("tokens"),
            "edges": e["edges"],
            "method": e["method"],
            "num_edges": e["num_edges"],
            "bytes_per_edge": e["peak_mib"] * 2**20 / e["num_edges"],
        }
        for e in results
        if e["layer"] in ("cross_attention", "region_attention")
        and e["method"] in ("sparse", "RelationGATConv")
        and "skipped" not in e
    ]
    worst_time = max(x["dense_over_mha_ms"] for x in time_ratio)
    best_memory = min(x["dense_over_topk_peak"] for x in memory)
    r = max(regions)
    knn = f"kNN-{min(SELF_KNN_K, r - 1)}"
    region = {}
    for sparse_method in ("sparse", "RelationGATConv"):
        sparse = _by(results, layer="region_attention", regions=r, edges=knn, method=sparse_method)
        for edges, method in (
            ("all pairs", "nn.MultiheadAttention"),
            ("all pairs", "dense"),
            (knn, "nn.MultiheadAttention + kNN mask"),
        ):
            dense = _by(results, layer="region_attention", regions=r, edges=edges, method=method)
            if dense is not None and sparse is not None:
                region[f"{method} / {sparse_method}"] = dense["peak_mib"] / max(sparse["peak_mib"], 1e-9)
    all_pairs = [v for name, v in region.items() if name.endswith("/ sparse") and "mask" not in name]
    masked = region.get("nn.MultiheadAttention + kNN mask / sparse")
    return {
        "complete_dense_within_1.3x_of_mha": {
            "met": worst_time <= 1.3,
            "worst_ratio": worst_time,
            "cases": time_ratio,
        },
        "topk_memory_10x_below_dense_at_max_regions": {
            "met": best_memory >= 10.0,
            "smallest_ratio": best_memory,
            "cases": memory,
        },
        "region_knn_memory_10x_below_all_pairs_dense_at_max_regions": {
            "met": bool(all_pairs) and min(all_pairs) >= 10.0,
            "smallest_ratio": min(all_pairs) if all_pairs else None,
            "regions": r,
            "ratios": region,
        },
        "region_knn_memory_10x_below_knn_masked_dense_at_max_regions": {
            "met": masked is not None and masked >= 10.0,
            "ratio": masked,
            "regions": r,
        },
        "sparse_bytes_per_edge": per_edge,
    }


def main(argv=None):
    ap = benchmark_parser(__doc__)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    ap.add_argument("--max-gb", type=float, default=4.0, help="skip cases estimated to need more memory")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    if args.quick:
        regions, tokens, batch, hidden, heads, min_time, min_calls = [36, 100], [16], 2, 32, 4, 0.0, 1
    else:
        regions, tokens, batch, hidden, heads, min_time, min_calls = (
            [36, 100, 400, 1600],
            [16, 64],
            8,
            256,
            8,
            0.5,
            3,
        )

    start = time.perf_counter()
    results, agreement, region_agreement = [], [], []
    for r in regions:
        for t in tokens:
            found, agree = cross_attention(
                r, t, batch, hidden, heads, device, min_time, min_calls, args.max_gb
            )
            results += found
            agreement.append({"regions": r, "tokens": t, **agree})
        results += graph_attention(r, batch, hidden, heads, device, min_time, min_calls, args.max_gb)
        found, agree = region_attention(r, batch, hidden, heads, device, min_time, min_calls, args.max_gb)
        results += found
        region_agreement.append({"regions": r, **agree})
    summary = targets(results, regions, tokens)

    header = [
        "layer", "regions", "tokens", "edges", "num edges", "method", "fwd+bwd ms (best)", "peak MiB",
        "MiB / 10k edges",
    ]  # fmt: skip
    rows = []
    for e in results:
        measured = "skipped" not in e
        rows.append(
            [
                e["layer"],
                e["regions"],
                e.get("tokens", "-"),
                e["edges"],
                e["num_edges"],
                e["method"],
                e["ms_best"] if measured else e["skipped"],
                e["peak_mib"] if measured else "-",
                e["peak_mib"] * 1e4 / e["num_edges"] if measured else "-",
            ]
        )
    time_target = summary["complete_dense_within_1.3x_of_mha"]
    memory_target = summary["topk_memory_10x_below_dense_at_max_regions"]
    rows.append(
        ["target", "-", "-", "complete", "-", "dense / nn.MultiheadAttention time <= 1.3",
         f"worst {time_target['worst_ratio']:.2f}", "-", "met" if time_target["met"] else "NOT met"]
    )  # fmt: skip
    region_target = summary["region_knn_memory_10x_below_all_pairs_dense_at_max_regions"]
    masked_target = summary["region_knn_memory_10x_below_knn_masked_dense_at_max_regions"]
    knn = f"kNN-{min(SELF_KNN_K, max(regions) - 1)}"

    def verdict(target):
        return "met" if target["met"] else "NOT met"

    def ratio(value, word=""):
        return "-" if value is None else f"{word}{value:.1f}"

    rows.append(
        ["target", max(regions), "-", knn, "-", "region self-attention: all-pairs dense peak / sparse peak >= 10",
         ratio(region_target["smallest_ratio"], "smallest "), "-", verdict(region_target)]
    )  # fmt: skip
    rows.append(
        ["target", max(regions), "-", knn, "-", "region self-attention: kNN-masked dense peak / sparse peak >= 10",
         ratio(masked_target["ratio"]), "-", verdict(masked_target)]
    )  # fmt: skip
    rows.append(
        ["target", max(regions), "-", f"top-{TOP_K}", "-", "cross attention: dense peak / top-k sparse peak >= 10",
         ratio(memory_target["smallest_ratio"], "smallest "), "-", verdict(memory_target)]
    )  # fmt: skip
    payload = {
        "quick": args.quick,
        "settings": {"batch_graphs": batch, "hidden": hidden, "heads": heads, "top_k": TOP_K, "knn_k": KNN_K,
                     "device": str(device), "max_gb": args.max_gb},
        "memory_method": "cuda max_memory_allocated" if device.type == "cuda" else
        "torch.profiler profile_memory: running sum of allocator events, peak above start",
        "results": results,
        "agreement_max_abs_diff": agreement,
        "region_agreement_max_abs_diff": region_agreement,
        "targets": summary,
        "seconds": time.perf_counter() - start,
    }  # fmt: skip
    floor = region_agreement[-1]["projection_floor_mib"]
    write_results(
        "layers", payload, header, rows, out=args.out, tail=_note(summary, hidden, max(regions), floor)
    )
    print((Path(args.out) / "layers.md").read_text())


def _note(summary: Dict[str, object], hidden: int, regions: int, floor_mib: float) -> str:
    """What the memory ratios can and cannot be, under the table."""
    cross = [e for e in summary["sparse_bytes_per_edge"] if e["layer"] == "cross_attention"]
    largest = max(cross, key=lambda e: e["num_edges"]) if cross else None
    largest_text = (
        f"on its largest run ({largest['num_edges']:,} edges, {largest['regions']} regions x "
        f"{largest['tokens']} tokens, complete) its whole peak is {largest['bytes_per_edge']:.0f} bytes "
        "per edge, node projections included"
        if largest
        else "no run was measured"
    )
    ratios = summary["region_knn_memory_10x_below_all_pairs_dense_at_max_regions"]["ratios"]
    sparse = [e for e in summary["sparse_bytes_per_edge"] if e["layer"] == "region_attention"]
    sparse = [e for e in sparse if e["method"] == "sparse" and e["regions"] == regions]
    sparse_mib = sparse[0]["bytes_per_edge"] * sparse[0]["num_edges"] / 2**20 if sparse else float("nan")
    above_floor = (sparse_mib - floor_mib) * 2**20 / sparse[0]["num_edges"] if sparse else float("nan")
    return f"""
Notes on the memory targets.

- Per edge, the sparse path (``CrossModalAttention`` on an edge list) keeps
  only ``[E, heads]`` tensors for backward (the gathered ``[chunk, heads, d]``
  rows are bounded by ``mmgraph.nn.scatter.EDGE_CHUNK_BYTES`` and recomputed
  in backward), so its memory grows linearly with the edges (see the
  "MiB / 10k edges" column of its complete-edge runs): {largest_text}.
- Dense attention here is not quadratic in memory: on this machine
  ``scaled_dot_product_attention`` (which ``nn.MultiheadAttention`` and our
  dense path call) runs a flash-attention kernel that keeps only ``[N, hidden]``
  tensors and per-row statistics. Both dense and sparse paths hold the same
  ``[N, {hidden}]`` projections (queries, keys, values, outputs and their
  gradients), which set a floor under the sparse path's memory, so against
  all-pairs dense attention a sparse path cannot be 10x smaller. At
  {regions} regions the projections alone (``q/k/v/out_proj`` forward and
  backward, no attention at all) peak at {floor_mib:.1f} MiB; the kNN sparse
  path peaks at {sparse_mib:.1f} MiB, so its edges add
  {sparse_mib - floor_mib:.1f} MiB above that floor ({above_floor:.0f} bytes per edge).
  Against dense attention that materialises its ``[graphs * heads, R, R]``
  weights (``nn.MultiheadAttention`` with the kNN graph as a mask, the same
  function as the sparse path) the ratio at {regions} regions is the second
  region target. All ratios at {regions} regions: {", ".join(f"{k} = {v:.1f}" for k, v in ratios.items())}.
- Token -> region cross attention: with 16 or 64 tokens per graph the
  ``[R, hidden]`` key and value projections of the {regions} regions dominate
  both paths (they are the same tensors), so the top-k sparse path cannot be
  10x below even a perfect dense path; its ratio is close to 1 by
  construction.
"""


if __name__ == "__main__":
    main()
