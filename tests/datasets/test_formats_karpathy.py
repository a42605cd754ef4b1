import json

import pytest

from mmgraph.datasets.formats import load_karpathy
from mmgraph.errors import DataFormatError, InputError


def _image(i, split, n_caps=5, cocoid=True, filename=None):
    img = {
        "filepath": "val2014",
        "filename": filename or f"COCO_val2014_{i:012d}.jpg",
        "imgid": i,
        "split": split,
        "sentids": list(range(10 * i, 10 * i + n_caps)),
        "sentences": [
            {"tokens": ["a", "cat", str(k)], "raw": f"A cat {k}.", "imgid": i, "sentid": 10 * i + k}
            for k in range(n_caps)
        ],
    }
    if cocoid:
        img["cocoid"] = 1000 + i
    return img


def _write(tmp_path, images, dataset="coco"):
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"images": images, "dataset": dataset}))
    return path


def test_splits_and_restval(tmp_path):
    path = _write(tmp_path, [_image(0, "train"), _image(1, "restval"), _image(2, "val"), _image(3, "test")])
    assert [im.image_id for im in load_karpathy(path, "train")] == [1000, 1001]
    assert [im.split for im in load_karpathy(path, "train")] == ["train", "restval"]
    assert [im.image_id for im in load_karpathy(path, "train", include_restval=False)] == [1000]
    assert [im.image_id for im in load_karpathy(path, "restval")] == [1001]
    test = load_karpathy(path, "test")
    assert len(test) == 1 and test[0].captions == [f"A cat {k}." for k in range(5)]
    assert test[0].tokens[2] == ["a", "cat", "2"] and test[0].sentids == [30, 31, 32, 33, 34]
    assert test[0].filename == "COCO_val2014_000000000003.jpg"


def test_image_id_sources(tmp_path):
    path = _write(tmp_path, [_image(0, "test")])
    assert load_karpathy(path, "test", image_id="cocoid")[0].image_id == 1000
    assert load_karpathy(path, "test", image_id="filename")[0].image_id == "COCO_val2014_000000000000"
    assert load_karpathy(path, "test", image_id="imgid")[0].image_id == 0
    flickr = _write(
        tmp_path, [_image(0, "test", cocoid=False, filename="1000092795.jpg")], dataset="flickr30k"
    )
    assert load_karpathy(flickr, "test")[0].image_id == 1000092795  # auto: filename stem
    with pytest.raises(DataFormatError, match="1000092795.jpg: no 'cocoid'.*image_id='filename'"):
        load_karpathy(flickr, "test", image_id="cocoid")


def test_caption_count(tmp_path):
    path = _write(tmp_path, [_image(0, "val", n_caps=7), _image(1, "val", n_caps=4)])
    with pytest.raises(DataFormatError, match=r"COCO_val2014_000000000001\.jpg: 4 captions, expected 5"):
        load_karpathy(path, "val")
    images = load_karpathy(path, "val", allow_fewer=True)
    assert [len(im.captions) for im in images] == [5, 4]  # seven cut to the first five
    assert images[0].captions[-1] == "A cat 4."
    assert [len(im.captions) for im in load_karpathy(path, "val", captions_per_image=3)] == [3, 3]


def test_malformed(tmp_path):
    img = _image(0, "val")
    del img["sentences"]
    with pytest.raises(
        DataFormatError, match=r"image COCO_val2014_000000000000\.jpg lacks key\(s\) \['sentences'\]"
    ):
        load_karpathy(_write(tmp_path, [img]), "val")
    img = _image(0, "val")
    del img["sentences"][2]["raw"]
    with pytest.raises(DataFormatError, match="sentence 2 lacks key 'raw'"):
        load_karpathy(_write(tmp_path, [img]), "val")
    with pytest.raises(DataFormatError, match="list under key 'images'"):
        load_karpathy(_write(tmp_path, {"x": 1}), "val")
    with pytest.raises(InputError, match="split must be"):
        load_karpathy(_write(tmp_path, []), "dev")
    with pytest.raises(InputError, match="image_id must be"):
        load_karpathy(_write(tmp_path, []), "val", image_id="id")
