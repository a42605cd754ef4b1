from tests.benchmarks import run_quick


def test_quick_run_writes_well_formed_results(tmp_path):
    payload = run_quick("layers", tmp_path)
    methods = {(e["layer"], e["method"]) for e in payload["results"]}
    assert methods == {
        ("cross_attention", "dense"),
        ("cross_attention", "sparse"),
        ("cross_attention", "nn.MultiheadAttention"),
        ("cross_attention", "nn.MultiheadAttention + mask"),
        ("graph_attention", "RelationGATConv"),
        ("graph_attention", "GATConv"),
        ("graph_attention", "RGATConv"),
        ("region_attention", "nn.MultiheadAttention"),
        ("region_attention", "dense"),
        ("region_attention", "nn.MultiheadAttention + kNN mask"),
        ("region_attention", "sparse"),
        ("region_attention", "RelationGATConv"),
    }
    for entry in payload["results"]:
        assert entry["num_edges"] > 0
        if "skipped" not in entry:
            assert entry["ms_best"] > 0 and entry["peak_mib"] > 0 and entry["calls"] >= 1
    # The compared paths compute the same function.
    for agree in payload["agreement_max_abs_diff"]:
        assert agree["complete_dense_vs_mha"] < 1e-3 and agree["top8_sparse_vs_masked_mha"] < 1e-3
    targets = payload["targets"]
    assert isinstance(targets["complete_dense_within_1.3x_of_mha"]["met"], bool)
    assert isinstance(targets["topk_memory_10x_below_dense_at_max_regions"]["met"], bool)
    table = (tmp_path / "layers.md").read_text()
    assert table.startswith("# layers") and "| cross_attention | 36 | 16 | complete |" in table
