import json
from pathlib import Path

import pytest
import torch
from torch_geometric.loader import DataLoader

from mmgraph.datasets.synthetic import generate_dataset, load_synthetic
from mmgraph.datasets.synthetic_graphs import SyntheticRetrieval, SyntheticVQA, object_cells
from mmgraph.errors import DataFormatError, InputError
from mmgraph.graph import GraphBuilder
from mmgraph.graph.segments import match_segments, segment_feature_dim
from mmgraph.typing import GROUNDING_EDGE, REGION, SEMANTIC_EDGE, SPATIAL_EDGE, TOKEN


def seq_builder(**kw):
    return GraphBuilder(parser="sequential", **kw)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    generate_dataset(root, num_images=20, questions_per_image=4, captions_per_image=2, seed=3)
    return root


def test_vqa_graphs_match_the_files(root):
    ds = SyntheticVQA(root, "train", builder=seq_builder())
    _, questions, _ = load_synthetic(root, "train")
    assert len(ds) == len(questions)
    by_id = {q["question_id"]: q for q in questions}
    for i in range(len(ds)):
        data = ds[i]
        q = by_id[data.question_id]
        assert data.text == q["question"]
        assert ds.answers.itos[int(data.y)] == q["answer"]
        assert data.family == q["family"]
    data = ds[0]
    assert "label" in data[REGION] and SEMANTIC_EDGE in data.edge_types and SPATIAL_EDGE in data.edge_types


def test_splits_share_vocabularies_and_unknown_answers_get_minus_one(root):
    train = SyntheticVQA(root, "train", builder=seq_builder())
    test = SyntheticVQA(root, "test", builder=seq_builder())
    assert train.vocab == test.vocab and train.answers == test.answers
    for data in test:
        expected = train.answers.stoi.get(data.answer, -1)
        assert int(data.y) == expected


def test_settings_change_reprocesses(root):
    a = SyntheticVQA(root, "val", builder=seq_builder(region_edges=("spatial",)))
    b = SyntheticVQA(root, "val", builder=seq_builder(region_edges=("knn",), knn_k=2))
    assert a.processed_paths[0] != b.processed_paths[0]
    assert SPATIAL_EDGE in a[0].edge_types and SPATIAL_EDGE not in b[0].edge_types
    # Same settings: the cache is reused (no new processed files).
    before = sorted(Path(a.processed_dir).iterdir())
    SyntheticVQA(root, "val", builder=seq_builder(region_edges=("spatial",)))
    assert sorted(Path(a.processed_dir).iterdir()) == before


def test_pixel_regions_carry_the_image_and_batch(root):
    ds = SyntheticVQA(root, "val", regions="pixels", grid=4, builder=seq_builder(region_edges=("knn",)))
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch.image.shape == (3, 3, 128, 128) and batch.image.dtype == torch.uint8
    assert batch[REGION].num_nodes == 3 * 16
    assert "x" not in batch[REGION]
    assert batch[TOKEN].batch.max() == 2


def test_retrieval_graphs_keep_negatives(root):
    ds = SyntheticRetrieval(root, "train", builder=seq_builder())
    _, _, captions = load_synthetic(root, "train")
    assert len(ds) == sum(len(e["captions"]) for e in captions)
    data = ds[0]
    assert sorted(data.text.split()) == sorted(data.negatives[0].split())
    assert len(data.negatives) == len(data.negative_kinds)


def test_generate_on_first_use_and_missing_files(tmp_path):
    with pytest.raises(DataFormatError, match="downloads nothing"):
        SyntheticVQA(tmp_path / "none", "train", builder=seq_builder())
    ds = SyntheticVQA(tmp_path / "gen", "test", builder=seq_builder(), generate={"num_images": 10, "seed": 1})
    assert len(ds) > 0 and (tmp_path / "gen" / "meta.json").exists()
    with pytest.raises(InputError, match="unknown split"):
        SyntheticVQA(tmp_path / "gen", "dev", builder=seq_builder())
    with pytest.raises(InputError, match="unknown regions mode"):
        SyntheticVQA(tmp_path / "gen", "test", regions="boxes", builder=seq_builder())


def test_bad_sample_is_named_or_skipped_and_counted(tmp_path):
    root = tmp_path / "bad"
    generate_dataset(root, num_images=10, questions_per_image=2, seed=2)
    path = root / "questions_val.json"
    doc = json.loads(path.read_text())
    doc["questions"][0]["question"] = "   "
    doc["questions"][0]["grounding"] = []
    bad_id = doc["questions"][0]["question_id"]
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=f"sample '{bad_id}'"):
        SyntheticVQA(root, "val", builder=seq_builder())
    with pytest.warns(UserWarning, match="skipped 1 of"):
        ds = SyntheticVQA(root, "val", builder=seq_builder(), skip_invalid=True)
    assert len(ds) == len(doc["questions"]) - 1
    skipped = json.loads(next(Path(ds.processed_dir).glob("skipped-val-*.json")).read_text())
    assert skipped[0]["sample_id"] == bad_id


def test_object_cells():
    # 128 x 128 image, 8 x 8 grid of 16-pixel cells.
    assert object_cells([16, 16, 32, 32], 8, (128.0, 128.0)) == [9]
    assert object_cells([10, 0, 40, 14], 8, (128.0, 128.0)) == [0, 1, 2]  # 6/16, 16/16 and 8/16 of each width
    assert object_cells([20, 20, 22, 22], 8, (128.0, 128.0)) == [
        9
    ]  # too small to cover a quarter: its centre
    assert object_cells([120, 120, 128, 128], 8, (128.0, 128.0)) == [63]


def test_grounding_names_objects_or_their_grid_cells(root):
    _, questions, _ = load_synthetic(root, "val")
    scenes = {sc["image_id"]: sc for sc in load_synthetic(root, "val")[0]}
    by_id = {q["question_id"]: q for q in questions}
    objects = SyntheticVQA(root, "val", builder=seq_builder(grounding=True))
    cells = SyntheticVQA(
        root, "val", regions="pixels", grid=4, builder=seq_builder(region_edges=("knn",), grounding=True)
    )
    assert objects.processed_paths[0] != SyntheticVQA(root, "val", builder=seq_builder()).processed_paths[0]
    checked = 0
    for data, pixel in zip(objects, cells):
        q = by_id[data.question_id]
        named = {g["object"] for g in q["grounding"]}
        assert {int(r) for r in data[GROUNDING_EDGE].edge_index[1]} == named
        sc = scenes[data.image_id]
        want = {
            c for o in named for c in object_cells(sc["objects"][o]["box"], 4, (sc["width"], sc["height"]))
        }
        assert {int(r) for r in pixel[GROUNDING_EDGE].edge_index[1]} == want
        assert all(0 <= c < 16 for c in want)
        checked += bool(named)
    assert checked > 0


def test_found_object_regions_carry_their_pixels_and_ground_to_the_matched_region(root):
    _, questions, _ = load_synthetic(root, "val")
    scenes = {sc["image_id"]: sc for sc in load_synthetic(root, "val")[0]}
    by_id = {q["question_id"]: q for q in questions}
    ds = SyntheticVQA(root, "val", regions="segments", builder=seq_builder(grounding=True))
    assert (
        ds.processed_paths[0]
        != SyntheticVQA(root, "val", builder=seq_builder(grounding=True)).processed_paths[0]
    )
    exact = grounded = 0
    for data in ds:
        sc = scenes[data.image_id]
        assert "image" not in data and data[REGION].x.shape == (data[REGION].num_nodes, segment_feature_dim())
        found = data[REGION].box * torch.tensor([sc["width"], sc["height"]] * 2)  # pixel boxes
        truth = torch.tensor([o["box"] for o in sc["objects"]], dtype=torch.float)
        matched = match_segments(found, truth)
        exact += found.size(0) == truth.size(0) and None not in matched
        named = {g["object"] for g in by_id[data.question_id]["grounding"]}
        want = {matched[o] for o in named if matched[o] is not None}
        assert {int(r) for r in data[GROUNDING_EDGE].edge_index[1]} == want
        grounded += bool(want)
    # The renderer draws flat colours: nearly every scene's objects are found one to one.
    assert exact >= 0.8 * len(ds) and grounded > 0
