"""Batch collation: ``mmgraph.graph.collate_graphs`` against PyG's ``Batch.from_data_list``.

Every training step of every model in this package starts by batching its
graphs. The graphs are small (a synthetic question has about 5 region nodes,
10 token nodes and 6 edge types), so PyG's general collation, which asks
every graph how to concatenate and increment each attribute and adds each
graph's increment in an operation of its own, spends its time in Python per
graph rather than in copying. ``collate_graphs`` does the same work once per
attribute and returns an equal batch (checked here on every batch timed, and
field for field in ``tests/graph/test_collate.py``).

A loader pays for more than the collation: it first takes each graph out of
the data set. PyG's ``InMemoryDataset`` keeps all graphs in one collated
storage and separates graph ``i`` out of it on ``dataset[i]`` (about 0.4 ms
for a scene-graph question), caching a copy for later epochs.
``GraphDataset.get_batch`` (what ``GraphLoader`` calls) gathers a whole
batch from that storage at once (``collate_stored``). The second table times
the three ways from indices to a batch: PyG's in a first epoch (nothing
cached) and in later ones, and ``get_batch``.

Then the trainer moves the batch to its device. PyG's ``.to`` rebuilds
every store even where nothing moves (a CPU batch to the CPU);
``mmgraph.graph.to_device`` checks the stores' tensors first and returns the
batch itself when they are all there already. The third table times both
on a CPU batch bound for the CPU, the case of every CPU training step.

Last, the models pad. The cross-modal and pointer attention of small graphs run on
per-graph padded blocks, and one forward pass of the synthetic VQA benchmark's model
(two blocks, each with attention both ways and a pointer channel) pads the region and token
rows 16 times and unpads them 8 times. PyG's ``to_dense_batch`` works the layout out (node
counts, offsets, the largest graph) on every call, and indexing with its mask finds the nodes
again (``nonzero``) on every unpadding; ``mmgraph.nn.dense.dense_layout`` works it out once
per batch vector and pads and unpads by gathering rows. The fourth table times that padding
work of one forward and backward pass both ways, the layout included (equal gradients
checked).

Measured on the package's synthetic data, generated into a temporary folder
(``--images`` scenes), for the three kinds of graph it has: questions over
scene graphs, questions over pixels (the image rides along in every graph),
and captions with their compositional negatives (retrieval). For each batch
size: graphs per second of both, on one thread, best and mean over repeated
calls on the same graphs.

Usage::

    python benchmarks/collation.py            # about a minute
    python benchmarks/collation.py --quick    # seconds (the tests)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from common import benchmark_parser, markdown_table, rate, write_results  # noqa: E402
from torch_geometric.data import Batch  # noqa: E402
from torch_geometric.utils import to_dense_batch  # noqa: E402

from mmgraph.datasets.synthetic_graphs import SyntheticRetrieval, SyntheticVQA  # noqa: E402
from mmgraph.graph import GraphBuilder, collate_graphs, to_device  # noqa: E402
from mmgraph.nn.dense import DenseLayout  # noqa: E402
from mmgraph.typing import REGION, TOKEN  # noqa: E402


def _equal(a, b) -> bool:
    """Deep equality of batch values: tensors exactly (dtype too), lists and dicts item by item."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and torch.equal(a, b)
        )
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_equal(a[k], b[k]) for k in a)
    return a == b


def _same(fast: Batch, slow: Batch) -> bool:
    """Whether two batches hold the same values in every store."""
    return all(
        list(f.keys()) == list(s.keys()) and all(_equal(f[k], s[k]) for k in s.keys())
        for f, s in zip(fast.stores, slow.stores)
    )


def datasets(root: Path, images: int):
    generate = dict(num_images=images, questions_per_image=4, captions_per_image=2, seed=0)
    builder = GraphBuilder(parser="sequential", region_edges=("spatial",), reverse_dep=True)
    pixel_builder = GraphBuilder(parser="sequential", region_edges=("knn",), knn_k=8, reverse_dep=True)
    return {
        "questions, scene graphs": SyntheticVQA(root, "train", builder=builder, generate=generate),
        "questions, pixels (8 x 8 cells)": SyntheticVQA(
            root, "train", regions="pixels", grid=8, builder=pixel_builder, generate=generate
        ),
        "captions + negatives (retrieval)": SyntheticRetrieval(
            root, "train", builder=builder, generate=generate
        ),
    }


def main(argv=None):
    ap = benchmark_parser(__doc__)
    ap.add_argument("--images", type=int, default=None, help="scenes to generate (default: 400; quick: 40)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    images = args.images or (40 if args.quick else 400)
    batch_sizes = (16, 64) if args.quick else (32, 64, 256)
    min_time = 0.1 if args.quick else 1.5

    results, rows = [], []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        loading, loading_rows = [], []
        moving, moving_rows = [], []
        padding, padding_rows = [], []
        for name, ds in datasets(Path(tmp), images).items():
            graphs = [ds[i] for i in range(len(ds))]  # materialised once, as a loader's dataset holds them
            for size in batch_sizes:
                if size > len(graphs):
                    continue
                chunk = graphs[:size]
                equal = _same(collate_graphs(chunk), Batch.from_data_list(chunk))
                ours = rate(lambda chunk=chunk: collate_graphs(chunk), size, min_time=min_time)
                pyg = rate(lambda chunk=chunk: Batch.from_data_list(chunk), size, min_time=min_time)
                entry = {
                    "graphs": name,
                    "batch_size": size,
                    "equal_batches": equal,
                    "collate_graphs": ours,
                    "pyg_from_data_list": pyg,
                    "ms_per_batch": {
                        "collate_graphs": 1000 * size / ours["per_second_mean"],
                        "pyg_from_data_list": 1000 * size / pyg["per_second_mean"],
                    },
                    "speedup_mean": ours["per_second_mean"] / pyg["per_second_mean"],
                }
                results.append(entry)
                rows.append(
                    [
                        name,
                        size,
                        entry["ms_per_batch"]["collate_graphs"],
                        entry["ms_per_batch"]["pyg_from_data_list"],
                        ours["per_second_mean"],
                        pyg["per_second_mean"],
                        entry["speedup_mean"],
                        "yes" if equal else "NO",
                    ]
                )
                print(
                    f"{name:<34} batch {size:>4}: ours {rows[-1][2]:7.2f} ms, PyG {rows[-1][3]:7.2f} ms "
                    f"(x{entry['speedup_mean']:.1f}), equal: {rows[-1][-1]}",
                    flush=True,
                )
                if "questions" in name:
                    padding.append(_padding(name, collate_graphs(chunk), size, min_time))
                    padding_rows.append(
                        [
                            name,
                            size,
                            *padding[-1]["ms_per_batch"].values(),
                            "yes" if padding[-1]["equal_gradients"] else "NO",
                        ]
                    )
                moving.append(_moving(name, collate_graphs(chunk), size, min_time))
                moving_rows.append([name, size, *moving[-1]["ms_per_batch"].values()])
                loading.append(_loading(name, ds, size, min_time))
                loading_rows.append(
                    [
                        name,
                        size,
                        *loading[-1]["ms_per_batch"].values(),
                        "yes" if loading[-1]["equal_batches"] else "NO",
                    ]
                )
    header = [
        "graphs",
        "batch",
        "ours ms/batch",
        "PyG ms/batch",
        "ours graphs/s",
        "PyG graphs/s",
        "ours / PyG",
        "equal batches",
    ]
    loading_header = [
        "graphs",
        "batch",
        "PyG first epoch ms/batch",
        "PyG later epochs ms/batch",
        "get_batch ms/batch",
        "equal batches",
    ]
    moving_header = ["graphs", "batch", "PyG .to ms/batch", "to_device ms/batch"]
    padding_header = [
        "graphs",
        "batch",
        "to_dense_batch + mask ms/pass",
        "dense_layout ms/pass",
        "equal gradients",
    ]
    payload = {
        "quick": args.quick,
        "images": images,
        "results": results,
        "loading": loading,
        "moving": moving,
        "padding": padding,
        "wall_seconds": time.perf_counter() - t0,
    }
    loading_table = markdown_table(loading_header, loading_rows)
    moving_table = markdown_table(moving_header, moving_rows)
    padding_table = markdown_table(padding_header, padding_rows)
    write_results(
        "collation",
        payload,
        header,
        rows,
        args.out,
        tail=f"\n## From indices to a batch (data set to loader)\n\n{loading_table}"
        f"\n\n## A CPU batch to the CPU (the trainer's move)\n\n{moving_table}"
        "\n\n## Padding for the dense attention (one forward and backward pass of the synthetic VQA "
        f"model: 16 paddings, 8 unpaddings, hidden 64)\n\n{padding_table}",
    )
    ok = all(e["equal_batches"] for e in results + loading) and all(e["equal_gradients"] for e in padding)
    return 0 if ok else 1


def _loading(name: str, ds, size: int, min_time: float):
    """Milliseconds per batch of ``size`` random graphs: PyG's ``dataset[i]`` + ``Batch.from_data_list``
    with nothing cached (a first epoch) and with the copies cached (later epochs), and ``get_batch``."""
    ids = torch.randperm(len(ds), generator=torch.Generator().manual_seed(size))[:size].tolist()

    def first_epoch():
        ds._data_list = None  # what InMemoryDataset caches after separating a graph
        return Batch.from_data_list([ds[i] for i in ids])

    def later_epochs():
        return Batch.from_data_list([ds[i] for i in ids])

    equal = _same(ds.get_batch(ids), first_epoch())
    timed = {
        "pyg_first_epoch": rate(first_epoch, size, min_time=min_time),
        "pyg_later_epochs": rate(later_epochs, size, min_time=min_time),
        "get_batch": rate(lambda: ds.get_batch(ids), size, min_time=min_time),
    }
    return _per_batch("loading", name, size, timed, equal_batches=equal)


def _moving(name: str, batch: Batch, size: int, min_time: float):
    """Milliseconds per batch of moving a CPU ``batch`` to the CPU: PyG's ``.to`` and ``to_device``."""
    cpu = torch.device("cpu")
    timed = {
        "pyg_to": rate(lambda: batch.to(cpu), size, min_time=min_time),
        "to_device": rate(lambda: to_device(batch, cpu), size, min_time=min_time),
    }
    return _per_batch("moving", name, size, timed)


# One block of the synthetic VQA model: cross attention both ways and the pointer channel pad the
# region rows 4 times and the token rows 4 times, and unpad each twice (mmgraph.nn.FusionBlock).
PADS_PER_BLOCK, UNPADS_PER_BLOCK, BLOCKS = 4, 2, 2


def _padding(name: str, batch: Batch, size: int, min_time: float, hidden: int = 64):
    """Milliseconds per forward and backward pass of the model's padding work on ``batch``: PyG's
    ``to_dense_batch`` on every call with boolean-mask unpadding, against one ``DenseLayout`` per
    batch vector and pass (worked out inside the timed pass, as the model does per batch)."""
    num_graphs = batch.num_graphs
    vectors = [batch[REGION].batch, batch[TOKEN].batch]
    rows = [torch.randn(v.numel(), hidden, requires_grad=True) for v in vectors]

    def one_pass(pad_fns):
        # pad(x) -> (padded, what unpad needs); unpad(padded, that) -> rows.
        total, fns = 0.0, pad_fns()  # once per pass: the model lays each batch vector out once
        for _ in range(BLOCKS):
            for x, (pad, unpad) in zip(rows, fns):
                padded = [pad(x) for _ in range(PADS_PER_BLOCK)]
                total = total + sum(p.sum() for p, _ in padded[UNPADS_PER_BLOCK:])
                total = total + sum(unpad(p * 2, m).square().sum() for p, m in padded[:UNPADS_PER_BLOCK])
        return torch.autograd.grad(total, rows)

    def pyg():
        return [
            (lambda x, v=vector: to_dense_batch(x, v, batch_size=num_graphs), lambda p, mask: p[mask])
            for vector in vectors
        ]

    def layout():
        layouts = [DenseLayout(vector, num_graphs) for vector in vectors]
        return [
            (lambda x, lay=lay: (lay.pad(x), None), lambda p, _, lay=lay: lay.unpad(p)) for lay in layouts
        ]

    equal = all(torch.allclose(a, b) for a, b in zip(one_pass(pyg), one_pass(layout)))
    timed = {
        "to_dense_batch": rate(lambda: one_pass(pyg), size, min_time=min_time),
        "dense_layout": rate(lambda: one_pass(layout), size, min_time=min_time),
    }
    return _per_batch("padding", name, size, timed, equal_gradients=equal)


def _per_batch(what: str, name: str, size: int, timed: dict, **extra):
    """An entry of timed ways of doing one thing to batches of ``size``, with their milliseconds per batch
    (``ms_per_batch``), printed as a line of progress."""
    out = {"graphs": name, "batch_size": size, **extra, **timed}
    out["ms_per_batch"] = {key: 1000 * size / r["per_second_mean"] for key, r in timed.items()}
    times = ", ".join(f"{key} {ms:7.3f} ms" for key, ms in out["ms_per_batch"].items())
    print(f"{'':<34} {what}: {times}", flush=True)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
