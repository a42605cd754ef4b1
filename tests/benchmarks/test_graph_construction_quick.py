import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "graph_construction.py"


@pytest.mark.spacy
def test_quick_run_writes_well_formed_results(tmp_path):
    pytest.importorskip("spacy")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads((tmp_path / "graph_construction.json").read_text())
    assert payload["quick"] is True and payload["command"].endswith("--quick --out " + str(tmp_path))
    for entry in payload["results"]["spatial"]:
        assert entry["vectorised"]["per_second_mean"] > 0 and entry["per_pair_python"]["per_second_mean"] > 0
    assert {e["regions"] for e in payload["results"]["builder"]} == {36, 100}
    table = (tmp_path / "graph_construction.md").read_text()
    assert table.startswith("# graph_construction") and "| spatial graph, 36 regions |" in table
