import math

from tests.benchmarks import load_script, run_quick

MODELS = ("graph_vqa", "single_stream_vqa")
QUICK_CONFIGS = [(12, 1, 0.1), (12, 2, 0.1), (120, 1, 0.1), (120, 2, 0.1), (12, 2, 0.0), (120, 2, 0.0)]
TOKENS = 14


def test_quick_run_writes_well_formed_results(tmp_path):
    payload = run_quick("scaling", tmp_path)
    assert payload["settings"]["question_tokens"] == TOKENS
    found = [(e["model"], e["regions"], e["batch"], e["dropout"]) for e in payload["results"]]
    assert found == [(m, r, b, d) for r, b, d in QUICK_CONFIGS for m in MODELS]
    params = {}
    for e in payload["results"]:
        assert "skipped" not in e, e
        assert e["train_ms_per_step"] > 0 and e["train_samples_per_s"] > 0 and e["train_peak_mib"] > 0
        assert e["inference_ms_per_sample"] > 0 and e["train_calls"] >= 1
        # Samples per second and ms per step describe the same timing.
        assert math.isclose(
            e["train_samples_per_s"] * e["train_ms_per_step"], 1000.0 * e["batch"], rel_tol=1e-6
        )
        edges = e["edges_per_graph"]
        if e["regions"] <= 100:
            assert e["region_edges"] == "spatial" and "('region', 'spatial', 'region')" in edges
        else:
            assert (
                e["region_edges"] == "knn-16"
                and edges["('region', 'implicit', 'region')"] == 16 * e["regions"]
            )
        assert edges["('token', 'cross', 'region')"] == TOKENS * e["regions"]  # complete cross edges
        params.setdefault((e["model"], e["region_edges"]), set()).add(e["parameters"])
    # One model per (name, edge kind): the parameter count does not depend on the batch.
    assert all(len(counts) == 1 for counts in params.values())

    parts = payload["breakdown"]
    assert {(p["model"], p["regions"]) for p in parts} == {(m, r) for m in MODELS for r in (12, 120)}
    for p in parts:
        assert set(p["ms_per_sample"]) == {
            "graph building", "data loading", "model forward", "model backward", "model optimizer"
        }  # fmt: skip
        assert all(v > 0 for v in p["ms_per_sample"].values())
        assert math.isclose(sum(p["share"].values()), 1.0, rel_tol=1e-9)
        assert math.isclose(sum(p["ms_per_sample"].values()), p["total_ms_per_sample"], rel_tol=1e-9)
    parsing = payload["parsing"]
    assert parsing["sequential_ms_per_sample"] > 0
    assert "spacy_skipped" in parsing or parsing["spacy_cached_ms_per_sample"] > 0

    summary = payload["summary"]
    assert len(summary["ours_over_baseline"]) == len(QUICK_CONFIGS)
    assert set(summary["ours_faster_to_train_from_regions"]) == {"dropout 0.1", "dropout 0.0"}
    assert all(r in (None, 12, 120) for r in summary["ours_faster_to_train_from_regions"].values())
    assert summary["spatial_edges_over_pairs"]["regions"] == 12
    assert 0.0 < summary["spatial_edges_over_pairs"]["fraction"] <= 1.0
    for key in ("dropout 0.1", "dropout 0.0"):
        for name in MODELS:
            growth = summary["growth_with_regions_over_smallest"][key][name]
            assert [g["regions"] for g in growth] == [12, 120] and growth[0]["train_time"] == 1.0

    table = (tmp_path / "scaling.md").read_text()
    assert table.startswith("# scaling") and "| graph_vqa | 12 | 1 | 0.1 | spatial |" in table
    assert "| single_stream_vqa | 120 | 2 | 0 | knn-16 |" in table
    assert "## Where the time goes" in table and "| graph_vqa | 120 | 2 |" in table


def test_configs_and_memory_estimate():
    scaling = load_script("scaling")
    # The batch sweep runs at the smallest and the largest region count, the region sweep at one batch.
    assert scaling.FULL.configs() == [
        (36, 1, 0.1), (36, 8, 0.1), (36, 32, 0.1), (100, 8, 0.1), (400, 8, 0.1), (1600, 1, 0.1),
        (1600, 8, 0.1), (1600, 32, 0.1), (36, 8, 0.0), (100, 8, 0.0), (400, 8, 0.0), (1600, 8, 0.0),
    ]  # fmt: skip
    assert scaling.QUICK.configs() == QUICK_CONFIGS
    done = [
        {"model": "graph_vqa", "regions": 100, "batch": 8, "dropout": 0.1, "train_peak_mib": 800.0},
        {"model": "graph_vqa", "regions": 200, "batch": 8, "dropout": 0.0, "train_peak_mib": 8.0},
        {
            "model": "graph_vqa",
            "regions": 400,
            "batch": 8,
            "dropout": 0.1,
            "skipped": "over --budget-seconds",
        },
        {"model": "single_stream_vqa", "regions": 400, "batch": 8, "dropout": 0.1, "train_peak_mib": 8.0},
    ]
    # 100 MiB per sample at 100 regions -> x 16 for 4x the regions, x 4 for the batch.
    assert math.isclose(scaling.estimate_gb(done, "graph_vqa", 400, 4), 100 / 1024 * 16 * 4)
    # Skipped entries, other models and other dropouts do not count; nothing measured gives no estimate.
    assert math.isclose(scaling.estimate_gb(done, "graph_vqa", 400, 4, 0.0), 1 / 1024 * 4 * 4)
    assert scaling.estimate_gb(done, "graph_vqa", 50, 8) is None
    assert scaling.estimate_gb([], "single_stream_vqa", 36, 1) is None
