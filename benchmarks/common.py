"""Shared pieces of the benchmark scripts: timing, machine facts, result files."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> Dict[str, object]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }


def rate(
    fn: Callable[[], object], items_per_call: int, min_time: float = 1.0, min_calls: int = 3
) -> Dict[str, float]:
    """Calls ``fn`` until ``min_time`` seconds and ``min_calls`` calls have passed
    (after one warm-up call) and returns items per second over the best call
    and over all calls."""
    fn()
    times: List[float] = []
    start = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {
        "per_second_best": items_per_call / min(times),
        "per_second_mean": items_per_call * len(times) / sum(times),
        "calls": len(times),
    }


def peak_memory(fn: Callable[[], object], device: torch.device | str = "cpu") -> int:
    """Bytes allocated by ``fn`` at its peak, above what was allocated before it ran.

    On CUDA: :func:`torch.cuda.max_memory_allocated` after a reset. On the
    CPU, where no allocator keeps a high-water mark, ``fn`` runs once under
    :mod:`torch.profiler` with ``profile_memory=True``, which records every
    allocation and free of the CPU allocator (tensor storages, autograd
    buffers); their running sum in time order is the live memory, and its
    maximum the peak. Memory outside torch's allocator (Python objects,
    library work buffers) is not counted.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - start)
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    changes = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        if event.tag == _EventType.Allocation:
            changes.append((event.start_time_ns, event.extra_fields.alloc_size))
        stack.extend(event.children)
    live = peak = 0
    for _, size in sorted(changes):
        live += size
        peak = max(peak, live)
    return int(peak)


def command_line() -> str:
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0]), *sys.argv[1:]])


def write_results(
    name: str,
    payload: Dict[str, object],
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    out: Path = RESULTS,
    tail: str = "",
):
    """Writes ``<out>/<name>.json`` (everything) and ``<out>/<name>.md`` (a table, then ``tail``: more tables
    or notes, in markdown)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "command": command_line(), "machine": machine(), **payload}
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        f"# {name}",
        "",
        f"Command: `{payload['command']}`",
        "",
        f"Machine: {payload['machine']['processor']}, {payload['machine']['cpu_count']} CPUs, "
        f"torch {payload['machine']['torch']} with {payload['machine']['torch_threads']} thread(s).",
        "",
        markdown_table(header, rows),
    ]
    (out / f"{name}.md").write_text("\n".join(lines) + tail)
    return payload


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table, numbers formatted as in every results file; ends with a newline."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.3g}"
    return str(v)


def benchmark_parser(doc: str) -> argparse.ArgumentParser:
    """The options every benchmark script takes: ``--quick``, ``--out``, ``--threads``."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes and short timings (for tests)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder for the result files")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: one core)")
    return ap
