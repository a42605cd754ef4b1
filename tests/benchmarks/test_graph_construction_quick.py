import pytest

from tests.benchmarks import run_quick


@pytest.mark.spacy
def test_quick_run_writes_well_formed_results(tmp_path):
    pytest.importorskip("spacy")
    payload = run_quick("graph_construction", tmp_path)
    for entry in payload["results"]["spatial"]:
        assert entry["vectorised"]["per_second_mean"] > 0 and entry["per_pair_python"]["per_second_mean"] > 0
    assert {e["regions"] for e in payload["results"]["builder"]} == {36, 100}
    table = (tmp_path / "graph_construction.md").read_text()
    assert table.startswith("# graph_construction") and "| spatial graph, 36 regions |" in table
