from tests.benchmarks import run_quick


def test_quick_run_writes_well_formed_results(tmp_path):
    payload = run_quick("collation", tmp_path)
    results = payload["results"]
    assert {e["graphs"] for e in results} == {
        "questions, scene graphs",
        "questions, pixels (8 x 8 cells)",
        "captions + negatives (retrieval)",
    }
    for entry in results:
        assert entry["equal_batches"] is True
        assert (
            entry["collate_graphs"]["per_second_mean"] > 0
            and entry["pyg_from_data_list"]["per_second_mean"] > 0
        )
    loading = payload["loading"]
    assert [(e["graphs"], e["batch_size"]) for e in loading] == [
        (e["graphs"], e["batch_size"]) for e in results
    ]
    for entry in loading:
        assert entry["equal_batches"] is True
        assert set(entry["ms_per_batch"]) == {"pyg_first_epoch", "pyg_later_epochs", "get_batch"}
        assert all(ms > 0 for ms in entry["ms_per_batch"].values())
    moving = payload["moving"]
    assert [(e["graphs"], e["batch_size"]) for e in moving] == [
        (e["graphs"], e["batch_size"]) for e in results
    ]
    for entry in moving:
        assert set(entry["ms_per_batch"]) == {"pyg_to", "to_device"}
        assert all(ms > 0 for ms in entry["ms_per_batch"].values())
    padding = payload["padding"]  # question graphs only: the VQA model's padding
    assert [(e["graphs"], e["batch_size"]) for e in padding] == [
        (e["graphs"], e["batch_size"]) for e in results if e["graphs"].startswith("questions")
    ]
    for entry in padding:
        assert entry["equal_gradients"] is True
        assert set(entry["ms_per_batch"]) == {"to_dense_batch", "dense_layout"}
        assert all(ms > 0 for ms in entry["ms_per_batch"].values())
    table = (tmp_path / "collation.md").read_text()
    assert table.startswith("# collation") and "| questions, scene graphs | 64 |" in table
    assert (
        "## From indices to a batch" in table
        and "## A CPU batch to the CPU" in table
        and "## Padding for the dense attention" in table
        and table.count("| captions + negatives (retrieval) | 64 |") == 3
    )
