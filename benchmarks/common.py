"""Shared pieces of the benchmark scripts: timing, machine facts, result files."""

from __future__ import annotations

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


def command_line() -> str:
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0]), *sys.argv[1:]])


def write_results(
    name: str,
    payload: Dict[str, object],
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    out: Path = RESULTS,
):
    """Writes ``<out>/<name>.json`` (everything) and ``<out>/<name>.md`` (a table)."""
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
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    return payload


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.3g}"
    return str(v)
