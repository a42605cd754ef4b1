import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.loader import DataLoader

from mmgraph.datasets.formats import (
    MissingFeaturesError,
    open_features,
    write_npz_features,
    write_tsv_features,
)
from mmgraph.datasets.karpathy import KarpathyRetrieval
from mmgraph.errors import DataFormatError, InputError
from mmgraph.graph import GraphBuilder
from mmgraph.typing import REGION, TOKEN

SIZE = (50.0, 40.0)
WORDS = ["a", "dog", "runs", "on", "the", "grass", "two", "cats", "sleep", "red", "car"]


def seq_builder():
    return GraphBuilder(parser="sequential")


def feature_records(image_ids, seed=0, dim=6):
    rng = np.random.default_rng(seed)
    out = []
    for image_id in image_ids:
        n = int(rng.integers(10, 14))
        xy = rng.uniform(0, 25, size=(n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(1, 14, size=(n, 2))], axis=1).astype(np.float32)
        out.append(
            {
                "image_id": image_id,
                "boxes": boxes,
                "features": rng.normal(size=(n, dim)).astype(np.float32),
                "image_w": SIZE[0],
                "image_h": SIZE[1],
            }
        )
    return out


def caption_file(path, images, with_cocoid=True, seed=0):
    rng = np.random.default_rng(seed)
    entries, sentid = [], 0
    for imgid, (image_id, split, n_captions) in enumerate(images):
        sentences = []
        for _ in range(n_captions):
            tokens = [str(w) for w in rng.choice(WORDS, size=int(rng.integers(3, 8)))]
            sentences.append(
                {
                    "raw": " ".join(tokens).capitalize() + ".",
                    "tokens": tokens,
                    "imgid": imgid,
                    "sentid": sentid,
                }
            )
            sentid += 1
        entry = {
            "filename": f"{image_id}.jpg",
            "imgid": imgid,
            "split": split,
            "sentences": sentences,
            "sentids": [s["sentid"] for s in sentences],
        }
        if with_cocoid:
            entry["filename"] = f"COCO_val2014_{image_id:012d}.jpg"
            entry["cocoid"] = image_id
        entries.append(entry)
    Path(path).write_text(json.dumps({"dataset": "coco" if with_cocoid else "flickr30k", "images": entries}))


COCO = [
    (11, "train", 5),
    (12, "train", 6),
    (13, "restval", 5),
    (21, "val", 5),
    (31, "test", 5),
    (32, "test", 5),
]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("karpathy")
    caption_file(root / "dataset_coco.json", COCO)
    write_tsv_features(root / "features.tsv", feature_records([i for i, _, _ in COCO], seed=3))
    return root


def test_one_graph_per_caption_matching_the_files(raw):
    ds = KarpathyRetrieval(raw, "train", features="features.tsv", builder=seq_builder())
    doc = json.loads((raw / "dataset_coco.json").read_text())
    expected = [
        (e["cocoid"], k, s["raw"])
        for e in doc["images"]
        if e["split"] in ("train", "restval")
        for k, s in enumerate(e["sentences"][:5])
    ]
    assert len(ds) == 15 and [(int(d.image_id), int(d.caption_index), d.text) for d in ds] == expected
    store = open_features(raw / "features.tsv")
    scale = torch.tensor([SIZE[0], SIZE[1], SIZE[0], SIZE[1]])
    for data in ds:
        record = store[int(data.image_id)]
        assert data[REGION].num_nodes == record.num_boxes
        assert torch.equal(data[REGION].x, record.features)
        assert torch.allclose(data[REGION].box, record.boxes / scale)
        assert "y" not in data
    assert ds.answers is None
    no_restval = KarpathyRetrieval(
        raw, "train", features="features.tsv", include_restval=False, builder=seq_builder()
    )
    assert len(no_restval) == 10


def test_vocabulary_shared_and_batches(raw):
    test = KarpathyRetrieval(raw, "test", features="features.tsv", builder=seq_builder())
    train = KarpathyRetrieval(raw, "train", features="features.tsv", builder=seq_builder())
    assert test.vocab == train.vocab and len(test) == 10
    batch = next(iter(DataLoader(test, batch_size=5)))
    assert batch.caption_index.tolist() == [0, 1, 2, 3, 4]
    assert batch.image_id.tolist() == [31] * 5
    assert batch[TOKEN].batch.max() == 4 and batch[REGION].x.size(1) == 6


def test_flickr_ids_from_file_names_and_lazy_npz(tmp_path):
    root = tmp_path / "flickr"
    root.mkdir()
    images = [
        (1000092795, "train", 5),
        (10002456, "train", 5),
        (1001773457, "val", 5),
        (1001573224, "test", 5),
    ]
    caption_file(root / "dataset_flickr30k.json", images, with_cocoid=False)
    records = feature_records([i for i, _, _ in images], seed=4)
    write_npz_features(root / "npz", records)
    ds = KarpathyRetrieval(
        root,
        "val",
        captions_file="dataset_flickr30k.json",
        features="npz",
        lazy_features=True,
        builder=seq_builder(),
    )
    assert len(ds) == 5 and "x" not in ds._data[REGION]
    assert all(int(d.image_id) == 1001773457 for d in ds)
    assert torch.equal(ds[2][REGION].x, torch.from_numpy(records[2]["features"]))


def test_missing_features_name_image_and_caption_or_skip(raw, tmp_path):
    root = tmp_path / "k"
    shutil.copytree(raw, root, ignore=shutil.ignore_patterns("processed", "*.index.json"))
    write_tsv_features(root / "partial.tsv", feature_records([11, 12, 13, 21, 31], seed=3))
    with pytest.raises(
        MissingFeaturesError, match=r"caption 0 of image COCO_val2014_000000000032\.jpg: image 32"
    ):
        KarpathyRetrieval(root, "test", features="partial.tsv", builder=seq_builder())
    with pytest.warns(UserWarning, match="skipped 5 of 10 samples"):
        ds = KarpathyRetrieval(root, "test", features="partial.tsv", skip_invalid=True, builder=seq_builder())
    assert len(ds) == 5 and {int(d.image_id) for d in ds} == {31}


def test_bad_arguments(raw, tmp_path):
    with pytest.raises(DataFormatError, match="downloads nothing"):
        KarpathyRetrieval(tmp_path / "none", "train", builder=seq_builder())
    with pytest.raises(InputError, match="unknown split"):
        KarpathyRetrieval(raw, "restval", features="features.tsv", builder=seq_builder())
