import importlib.util
import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run_quick(name: str, out: Path, *args: str, results: str = None) -> dict:
    """Runs ``benchmarks/<name>.py --quick --out <out> [args]`` and returns its JSON results
    (``<out>/<results or name>.json``)."""
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{name}.py"), "--quick", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads((out / f"{results or name}.json").read_text())
    assert payload["quick"] is True and payload["command"].endswith(
        " ".join(["--quick --out", str(out), *args])
    )
    return payload


def load_script(name: str):
    """Imports ``benchmarks/<name>.py`` as the module ``<name>_benchmark``."""
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    # The dataclass decorator looks its module up in sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def check_budget_results(payload: dict) -> None:
    """The checks every result of a ``run_entries`` benchmark passes: no error, the run's budget,
    at least one step, and positive sizes, speeds and memory."""
    settings = payload["settings"]
    for r in payload["results"]:
        assert "error" not in r, r.get("traceback")
        # vqa_synthetic may give its pixel models a budget of their own.
        budget = (
            settings["pixel_budget_seconds"] if r.get("group") == "pixels" else settings["budget_seconds"]
        )
        assert r["budget_seconds"] == budget and r["steps"] >= 1 and r["epochs"] > 0
        assert r["parameters"] > 0 and r["train_seconds"] > 0 and r["train_samples_per_s"] > 0
        assert r["inference_ms_per_sample"] > 0 and r["train_peak_mib"] > 0
