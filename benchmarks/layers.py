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
  relations) and ``RGATConv`` (relation-specific weights).

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
the number of edges and is 10x or more below dense attention at 1,600 regions.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, peak_memory, rate, write_results  # noqa: E402
from torch_geometric.nn import GATConv, RGATConv  # noqa: E402

from mmgraph.graph import box_geometry, knn_edges_batch  # noqa: E402
from mmgraph.nn import CrossModalAttention, RelationGATConv, complete_edge_index  # noqa: E402
from mmgraph.typing import GEOMETRY_DIM, NUM_SPATIAL_CLASSES  # noqa: E402

TOP_K = 8
KNN_K = 16
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
        return lambda: layer(
            x_reg, x_tok, edge_index, batch_reg, batch_tok, complete=complete, num_graphs=batch
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
        if complete_edges.size(1) * hidden * 4 * 8 / GB <= max_gb:
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
        # Sparse paths keep about 8 per-edge [E, hidden] tensors alive through backward.
        need_gb = num_edges[edges] * hidden * 4 * 8 / GB if method == "sparse" else 0.0
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
            "regions": e["regions"],
            "tokens": e["tokens"],
            "edges": e["edges"],
            "bytes_per_edge": e["peak_mib"] * 2**20 / e["num_edges"],
        }
        for e in results
        if e["layer"] == "cross_attention" and e["method"] == "sparse" and "skipped" not in e
    ]
    worst_time = max(x["dense_over_mha_ms"] for x in time_ratio)
    best_memory = min(x["dense_over_topk_peak"] for x in memory)
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
        "sparse_bytes_per_edge": per_edge,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes and short timings (for tests)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder for the result files")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: one core)")
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
    results, agreement = [], []
    for r in regions:
        for t in tokens:
            found, agree = cross_attention(
                r, t, batch, hidden, heads, device, min_time, min_calls, args.max_gb
            )
            results += found
            agreement.append({"regions": r, "tokens": t, **agree})
        results += graph_attention(r, batch, hidden, heads, device, min_time, min_calls, args.max_gb)
    summary = targets(results, regions, tokens)

    header = ["layer", "regions", "tokens", "edges", "num edges", "method", "fwd+bwd ms (best)", "peak MiB"]
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
            ]
        )
    time_target = summary["complete_dense_within_1.3x_of_mha"]
    memory_target = summary["topk_memory_10x_below_dense_at_max_regions"]
    rows.append(
        ["target", "-", "-", "complete", "-", "dense / nn.MultiheadAttention time <= 1.3",
         f"worst {time_target['worst_ratio']:.2f}", "met" if time_target["met"] else "NOT met"]
    )  # fmt: skip
    rows.append(
        ["target", max(regions), "-", f"top-{TOP_K}", "-", "dense peak / top-k sparse peak >= 10",
         f"smallest {memory_target['smallest_ratio']:.1f}", "met" if memory_target["met"] else "NOT met"]
    )  # fmt: skip
    payload = {
        "quick": args.quick,
        "settings": {"batch_graphs": batch, "hidden": hidden, "heads": heads, "top_k": TOP_K, "knn_k": KNN_K,
                     "device": str(device), "max_gb": args.max_gb},
        "memory_method": "cuda max_memory_allocated" if device.type == "cuda" else
        "torch.profiler profile_memory: running sum of allocator events, peak above start",
        "results": results,
        "agreement_max_abs_diff": agreement,
        "targets": summary,
        "seconds": time.perf_counter() - start,
    }  # fmt: skip
    write_results("layers", payload, header, rows, out=args.out)
    print((Path(args.out) / "layers.md").read_text())


if __name__ == "__main__":
    main()
