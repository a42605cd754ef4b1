import pytest

from mmgraph.datasets.sort_of_clevr import SORT_OF_CLEVR_TEMPLATES
from tests.benchmarks import load_script, run_quick

MODELS = ("graph_vqa", "graph_vqa", "relation_network", "cnn_mlp")
LABELS = ("graph_vqa (CNN grid)", "graph_vqa (found objects)", "relation_network", "cnn_mlp")
FAMILIES = ("nonrel", "rel", "ternary")


@pytest.mark.slow  # about 30-40 s: three models trained and scored, two worker processes
@pytest.mark.spacy  # the benchmark parses its questions with spaCy
def test_quick_run_writes_well_formed_results(tmp_path):
    pytest.importorskip("spacy")
    payload = run_quick("sort_of_clevr", tmp_path)
    data = payload["data"]
    assert data["source"] == "generator" and data["ternary"] is True
    assert data["splits"]["train"]["images"] == 50 and data["splits"]["val"]["images"] == 10
    # 10 questions of each of the three families per image.
    assert all(n["questions"] == 30 * n["images"] for n in data["splits"].values())
    assert payload["families"] == list(FAMILIES)
    # The generator keeps objects apart: the detector finds all six in every image.
    for split in ("train", "val", "test"):
        assert data["found_objects"][split] == {"regions_per_image": 6.0, "images_with_six": 1.0}

    results = payload["results"]
    assert [r["model"] for r in results] == list(MODELS)
    assert [r["label"] for r in results] == list(LABELS)
    grid, found = results[0], results[1]
    assert grid["regions"] == "pixels" and found["regions"] == "segments"
    assert found["options"]["pointer"] and found["options"]["align_weight"] > 0
    # Found objects: complete region edges (the spatial graph cuts far pairs) and box bands.
    assert found["options"]["edge_types"] == [["region", "implicit", "region"]]
    assert found["options"]["box_frequencies"] > 0
    for r in results:
        assert "error" not in r, r.get("traceback")
        assert r["parameters"] > 0 and r["steps"] >= 1 and r["train_seconds"] > 0
        assert r["train_samples_per_s"] > 0 and r["inference_ms_per_sample"] > 0 and r["train_peak_mib"] > 0
        assert r["test_size"] == data["splits"]["test"]["questions"]
        templates = {f"accuracy/template/{t}" for ts in SORT_OF_CLEVR_TEMPLATES for t in ts}
        assert {"accuracy"} | {f"accuracy/{f}" for f in FAMILIES} <= set(r["test"])
        # A model with a pointer channel is also scored on where it points (its test questions' grounding).
        grounding = (
            {"grounding"} | {f"grounding/{f}" for f in FAMILIES} if r["options"].get("pointer") else set()
        )
        assert {k for k in r["test"] if k.startswith("grounding")} == grounding, r["label"]
        assert set(r["test"]) - {"accuracy"} - {f"accuracy/{f}" for f in FAMILIES} - grounding <= templates
        assert any(k.startswith("accuracy/template/") for k in r["test"])
        assert all(0.0 <= v <= 1.0 for v in r["test"].values())
        curve = r["curve"]
        assert curve, r["label"]
        seconds = [p["train_seconds"] for p in curve]
        assert all(b > a for a, b in zip(seconds, seconds[1:])) and seconds[0] > 0
        assert seconds[-1] == r["train_seconds"]
        for p in curve:
            for key in ("val_accuracy", *(f"val_accuracy/{f}" for f in FAMILIES)):
                assert 0.0 <= p[key] <= 1.0

    reach = payload["time_to_rn_accuracy"]
    final = results[2]["curve"][-1]
    assert reach["rn_final_val"] == {"overall": final["val_accuracy"], "rel": final["val_accuracy/rel"]}
    assert set(reach["seconds"]) == set(LABELS)
    # The Relation Network reaches its own final accuracy, at the latest at its last curve point.
    for name in ("overall", "rel"):
        assert 0 < reach["seconds"]["relation_network"][name] <= results[2]["train_seconds"]
    targets = payload["targets"]
    assert list(targets) == list(LABELS[:2])  # each of ours' rows
    for r in (grid, found):
        mine, ours = targets[r["label"]], r["test"]
        assert mine["rel_at_least_0.98"]["value"] == ours["accuracy/rel"]
        assert mine["rel_at_least_0.98"]["met"] == (ours["accuracy/rel"] >= 0.98)
        assert mine["nonrel_at_least_0.99"]["met"] == (ours["accuracy/nonrel"] >= 0.99)
        assert set(mine["faster_than_rn"]["per_metric"]) == {"overall", "rel"}

    table = (tmp_path / "sort_of_clevr.md").read_text()
    assert table.startswith("# sort_of_clevr")
    for label in LABELS:
        assert f"| {label} | " in table
    for section in (
        "## Time to reach the Relation Network's accuracy",
        "## Targets",
        "## Published reference (Santoro et al. 2017), not measured here",
        "## Validation curves",
        "## Test accuracy per question template, %",
    ):
        assert section in table
    assert "| Relation Network (CNN + RN) | 94% |" in table and "| CNN+MLP | 63% |" in table


def test_time_to_reach_and_targets():
    bench = load_script("sort_of_clevr")
    curve = [
        {"train_seconds": 10.0, "val_accuracy": 0.4, "val_accuracy/rel": 0.3},
        {"train_seconds": 20.0, "val_accuracy": 0.6, "val_accuracy/rel": 0.5},
        {"train_seconds": 30.0, "val_accuracy": 0.55, "val_accuracy/rel": 0.7},
    ]
    assert bench.time_to_reach(curve, "val_accuracy", 0.6) == 20.0
    assert bench.time_to_reach(curve, "val_accuracy/rel", 0.31) == 20.0
    assert bench.time_to_reach(curve, "val_accuracy", 0.61) is None
    assert bench.time_to_reach(None, "val_accuracy", 0.1) is None

    rn_curve = [
        {"train_seconds": 50.0, "val_accuracy": 0.5, "val_accuracy/rel": 0.45},
        {"train_seconds": 100.0, "val_accuracy": 0.55, "val_accuracy/rel": 0.5},
    ]
    results = [
        {"label": "graph_vqa", "model": "graph_vqa", "curve": curve, "test": {"accuracy/rel": 0.99}},
        {"label": "relation_network", "model": "relation_network", "curve": rn_curve, "test": {}},
        {"label": "cnn_mlp", "model": "cnn_mlp", "error": "RuntimeError: boom"},
    ]
    reach = bench.reach_rn(results)
    assert reach["rn_final_val"] == {"overall": 0.55, "rel": 0.5}
    assert reach["seconds"] == {
        "graph_vqa": {"overall": 20.0, "rel": 20.0},
        "relation_network": {"overall": 100.0, "rel": 100.0},
    }
    targets = bench.targets_met(results, reach)
    assert list(targets) == ["graph_vqa"]
    assert targets["graph_vqa"]["rel_at_least_0.98"]["met"] is True
    # No non-relational result: not met.
    assert targets["graph_vqa"]["nonrel_at_least_0.99"] == {"value": None, "target": 0.99, "met": False}
    assert targets["graph_vqa"]["faster_than_rn"]["met"] is True
    # Reached later than the Relation Network on one metric: not met.
    slow = [dict(results[0], curve=[dict(curve[2], train_seconds=150.0)]), results[1]]
    assert bench.targets_met(slow, bench.reach_rn(slow))["graph_vqa"]["faster_than_rn"]["met"] is False
    # A row of ours that failed meets nothing.
    failed = [{"label": "graph_vqa (found objects)", "model": "graph_vqa", "error": "boom"}, *results[1:]]
    row = bench.targets_met(failed, bench.reach_rn(failed))["graph_vqa (found objects)"]
    assert not any(row[key]["met"] for key in row)
