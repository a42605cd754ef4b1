import base64
import os
import pickle

import numpy as np
import pytest
import torch

from mmgraph.datasets.formats import (
    MissingFeaturesError,
    NPZFeatureStore,
    RegionFeatures,
    TSVFeatureStore,
    check_features_cover,
    iter_tsv_features,
    normalize_image_id,
    open_features,
    write_npz_features,
    write_tsv_features,
)
from mmgraph.datasets.formats import features as features_module
from mmgraph.errors import DataFormatError, InputError, MMGraphError


def _record(image_id, n=10, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 300
    wh = torch.rand(n, 2, generator=g) * 100 + 1
    return RegionFeatures(image_id, torch.cat([xy, xy + wh], 1), torch.randn(n, d, generator=g), 640.0, 480.0)


RECORDS = [_record(42, 10), _record(7, 12, seed=1), _record("n123", 36, seed=2)]


def _assert_same(a, b):
    assert a.image_id == b.image_id
    assert a.boxes.dtype == torch.float32 and a.features.dtype == torch.float32
    torch.testing.assert_close(a.boxes, b.boxes)
    torch.testing.assert_close(a.features, b.features)
    assert (a.image_w, a.image_h) == (b.image_w, b.image_h)


def _row(image_id, n, boxes_bytes, feat_bytes, w="640", h="480"):
    cols = [
        str(image_id),
        w,
        h,
        str(n),
        base64.b64encode(boxes_bytes).decode(),
        base64.b64encode(feat_bytes).decode(),
    ]
    return "\t".join(cols)


def test_normalize_image_id():
    assert normalize_image_id("42") == 42 and normalize_image_id(np.int64(3)) == 3
    assert normalize_image_id(b"n12") == "n12" and normalize_image_id("COCO_1") == "COCO_1"
    with pytest.raises(InputError):
        normalize_image_id(1.5)


def test_tsv_roundtrip_index_and_cache(tmp_path, monkeypatch):
    path = tmp_path / "feats.tsv"
    assert write_tsv_features(path, RECORDS) == 3
    assert path.read_bytes().count(b"\r\n") == 3  # csv.DictWriter line ends, like the original files
    store = open_features(path)
    assert isinstance(store, TSVFeatureStore)
    assert store.ids() == [42, 7, "n123"] and len(store) == 3
    assert 42 in store and "42" in store and 8 not in store and 3.5 not in store
    for r in reversed(RECORDS):  # random access, out of file order
        _assert_same(store["42" if r.image_id == 42 else r.image_id], r)
    assert store[7].num_boxes == 12
    assert store.index_path.is_file()
    store.close()
    # a second store reads the cached index instead of scanning the file
    with monkeypatch.context() as m:
        m.setattr(features_module, "_build_tsv_index", lambda path: pytest.fail("index rebuilt"))
        store2 = TSVFeatureStore(path)
    _assert_same(store2[7], RECORDS[1])
    # a changed file invalidates the cache
    write_tsv_features(path, RECORDS[:1])
    assert TSVFeatureStore(path).ids() == [42]
    # streaming reader gives the same records in file order
    assert [r.image_id for r in iter_tsv_features(path)] == [42]
    assert "TSVFeatureStore" in repr(store2)


def test_tsv_store_pickles_for_dataloader_workers(tmp_path):
    path = tmp_path / "feats.tsv"
    write_tsv_features(path, RECORDS)
    store = open_features(path)
    store[42]  # opens the file handle in this process
    clone = pickle.loads(pickle.dumps(store))
    _assert_same(clone[7], RECORDS[1])


def test_tsv_read_only_folder_keeps_index_in_memory(tmp_path):
    path = tmp_path / "feats.tsv"
    write_tsv_features(path, RECORDS)
    store = TSVFeatureStore(path, index_path=tmp_path / "missing_dir" / "sub" / "x.json", cache_index=False)
    assert not (tmp_path / "missing_dir").exists()
    _assert_same(store[42], RECORDS[0])


def test_tsv_stale_index_is_detected(tmp_path):
    path = tmp_path / "feats.tsv"
    a, b = _record(42, 10, seed=5), _record(43, 10, seed=6)
    write_tsv_features(path, [a, b])
    TSVFeatureStore(path)  # writes the index cache
    stat = path.stat()
    # same size, rows swapped, old modification time: the cache looks valid
    write_tsv_features(path, [b, a])
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    with pytest.raises(DataFormatError, match=r"line 1, image 42: the index points at image 43.*delete"):
        TSVFeatureStore(path)[42]
    # without the cache the fresh index is right
    _assert_same(TSVFeatureStore(path, cache_index=False)[42], a)


def test_missing_id_is_a_keyerror_naming_id_and_file(tmp_path):
    path = tmp_path / "feats.tsv"
    write_tsv_features(path, RECORDS)
    store = open_features(path)
    with pytest.raises(MissingFeaturesError, match=r"image 99 in '.*feats\.tsv'") as info:
        store[99]
    assert isinstance(info.value, KeyError) and isinstance(info.value, MMGraphError)
    assert str(info.value).startswith("no region features")  # not repr-quoted like KeyError


def test_check_features_cover(tmp_path):
    path = tmp_path / "feats.tsv"
    write_tsv_features(path, RECORDS)
    store = open_features(path)
    check_features_cover([42, "7", 42, "n123"], store)
    with pytest.raises(MissingFeaturesError, match=r"2 of 4 image ids.*feats\.tsv.*first: 5, 'x9'"):
        check_features_cover([42, 5, 5, "x9", 7], store)


B10 = np.zeros((10, 4), np.float32).tobytes()
F10 = np.ones((10, 3), np.float32).tobytes()


@pytest.mark.parametrize(
    "row, columns",
    [
        (_row(42, 10, B10, F10).rsplit("\t", 1)[0], 5),  # cut before the features column
        (_row(42, 10, B10, F10) + "\textra", 7),
    ],
)
def test_tsv_wrong_column_count_found_when_indexing(tmp_path, row, columns):
    path = tmp_path / "bad.tsv"
    path.write_text(_row(1, 10, B10, F10) + "\n" + row + "\n")
    match = rf"bad\.tsv', line 2, image 42: {columns} tab-separated columns, expected 6"
    with pytest.raises(DataFormatError, match=match):
        open_features(path)
    with pytest.raises(DataFormatError, match=match):
        list(iter_tsv_features(path))


@pytest.mark.parametrize(
    "row, match",
    [
        (
            _row(42, 10, B10, F10).replace(base64.b64encode(F10).decode(), "@@@@"),
            "'features' is not valid base64",
        ),
        (_row(42, 10, B10, F10)[:-3], "not valid base64"),  # truncated inside the base64
        (_row(42, 10, B10[:-16], F10), r"'boxes' decodes to 144 bytes, expected .* = 160"),
        (
            _row(42, 10, B10, F10[:-4]),
            r"'features' decodes to 116 bytes, not a multiple of num_boxes \* 4 = 40",
        ),
        (_row(42, 10, B10, b""), "'features' decodes to 0 bytes"),
        (_row(42, 5, B10[:80], F10[:60]), r"5 boxes, outside the accepted range \[10, 100\]"),
        (_row(42, 10, B10, F10, w="abc"), "must be numbers"),
        (_row(42, 10, B10, np.full((10, 3), np.nan, np.float32).tobytes()), "features hold NaN or inf"),
        (_row(42, 10, np.full((10, 4), np.inf, np.float32).tobytes(), F10), "boxes hold NaN or inf"),
        (_row(42, 10, B10, F10, h="0"), "image_h must be a positive number"),
    ],
)
def test_tsv_malformed_rows_name_file_line_and_image(tmp_path, row, match):
    path = tmp_path / "bad.tsv"
    path.write_text(_row(1, 10, B10, F10) + "\r\n" + row + "\r\n")
    store = open_features(path)
    store[1]  # the good row still reads
    with pytest.raises(DataFormatError, match=r"bad\.tsv', line 2, image 42: .*" + match):
        store[42]
    with pytest.raises(DataFormatError, match=match):
        list(iter_tsv_features(path))


def test_tsv_box_range_is_configurable(tmp_path):
    path = tmp_path / "f.tsv"
    write_tsv_features(path, [_record(1, 3), _record(2, 150)])
    store = open_features(path, min_boxes=None, max_boxes=None)
    assert store[1].num_boxes == 3 and store[2].num_boxes == 150
    with pytest.raises(DataFormatError, match=r"150 boxes.*\[1, 100\]"):
        open_features(path, min_boxes=1)[2]


def test_tsv_writer_rejects_bad_records(tmp_path):
    with pytest.raises(InputError, match="cannot hold tabs"):
        write_tsv_features(tmp_path / "f.tsv", [_record("a\tb")])
    with pytest.raises(InputError, match="needs image_w and image_h"):
        write_tsv_features(
            tmp_path / "f.tsv", [{"image_id": 1, "boxes": np.zeros((10, 4)), "features": np.zeros((10, 2))}]
        )
    with pytest.raises(InputError, match=r"boxes must be \[N, 4\]"):
        write_tsv_features(
            tmp_path / "f.tsv", [{"image_id": 1, "boxes": np.zeros((10, 3)), "features": np.zeros((10, 2))}]
        )
    assert not list(tmp_path.iterdir())  # nothing half-written is left behind


def test_tsv_duplicate_id(tmp_path):
    path = tmp_path / "dup.tsv"
    write_tsv_features(path, [RECORDS[0], RECORDS[0]])
    with pytest.raises(DataFormatError, match="line 2, image 42: image id already on line 1"):
        open_features(path)


def test_npz_roundtrip_and_key_variants(tmp_path):
    d = tmp_path / "npz"
    assert write_npz_features(d, RECORDS) == 3
    store = open_features(d)
    assert isinstance(store, NPZFeatureStore)
    assert sorted(map(str, store.ids())) == ["42", "7", "n123"]
    for r in RECORDS:
        _assert_same(store[r.image_id], r)
    # bottom-up-attention.pytorch keys, and OpenVQA's [D, N] x
    r = RECORDS[0]
    np.savez(d / "100.npz", bbox=r.boxes.numpy(), x=r.features.numpy(), num_bbox=10, image_w=640, image_h=480)
    np.savez(d / "101.npz", bbox=r.boxes.numpy(), x=r.features.numpy().T, image_w=640, image_h=480)
    np.savez(d / "102.npz", boxes=r.boxes.numpy(), features=r.features.numpy())
    store = NPZFeatureStore(d)
    for i in (100, 101):
        _assert_same(store[i], RegionFeatures(i, r.boxes, r.features, 640.0, 480.0))
    assert store[102].image_w is None
    with pytest.raises(MissingFeaturesError, match="image 5"):
        store[5]


def test_npz_malformed(tmp_path):
    d = tmp_path / "npz"
    d.mkdir()
    r = RECORDS[0]
    np.savez(d / "1.npz", boxes=r.boxes.numpy(), feats=r.features.numpy())
    np.savez(d / "2.npz", bbox=r.boxes.numpy(), x=r.features.numpy(), num_bbox=11)
    np.savez(d / "3.npz", boxes=r.boxes.numpy(), features=r.features.numpy()[:9])
    (d / "4.npz").write_bytes(b"not a zip")
    store = NPZFeatureStore(d)
    with pytest.raises(DataFormatError, match=r"1\.npz', image 1: needs arrays .*found \['boxes', 'feats'\]"):
        store[1]
    with pytest.raises(DataFormatError, match="'num_bbox' says 11 boxes, 'bbox' holds 10"):
        store[2]
    with pytest.raises(DataFormatError, match=r"features must have shape \[N, D\] with N = 10"):
        store[3]
    with pytest.raises(DataFormatError, match=r"4\.npz', image 4: not a readable \.npz"):
        store[4]
    np.savez(d / "004.npz", boxes=r.boxes.numpy(), features=r.features.numpy())
    with pytest.raises(DataFormatError, match="both hold image 4"):
        NPZFeatureStore(d)


def test_open_features_rejects_unknown_paths(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        open_features(tmp_path / "nope.tsv")
    (tmp_path / "x.bin").write_bytes(b"")
    with pytest.raises(InputError, match="unknown region feature layout"):
        open_features(tmp_path / "x.bin")


def test_h5_roundtrip_and_padding(tmp_path):
    pytest.importorskip("h5py")
    from mmgraph.datasets.formats import H5FeatureStore, write_h5_features

    path = tmp_path / "f.h5"
    assert write_h5_features(path, RECORDS) == 3
    store = open_features(path)
    assert isinstance(store, H5FeatureStore)
    assert store.ids() == [42, 7, "n123"]
    for r in RECORDS:
        _assert_same(store[r.image_id], r)  # padding to 36 boxes is cut off by num_boxes
    clone = pickle.loads(pickle.dumps(store))
    _assert_same(clone[7], RECORDS[1])
    store.close()
    path2 = tmp_path / "ints.h5"
    write_h5_features(path2, [{"image_id": 5, "boxes": RECORDS[0].boxes, "features": RECORDS[0].features}])
    s2 = open_features(path2)
    assert s2.ids() == [5] and s2[5].image_w is None
    with pytest.raises(MissingFeaturesError):
        s2[6]


def test_h5_malformed(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["image_ids"] = np.arange(2)
        f["boxes"] = np.zeros((2, 10, 4), np.float32)
    with pytest.raises(DataFormatError, match=r"missing dataset\(s\) \['features'\]"):
        open_features(path)
    with h5py.File(path, "a") as f:
        f["features"] = np.zeros((2, 10, 3), np.float32)
        f["num_boxes"] = np.array([10, 11])
    store = open_features(path)
    store[0]
    with pytest.raises(DataFormatError, match=r"image 1, row 1: num_boxes is 11"):
        store[1]
    store.close()
    with h5py.File(path, "a") as f:
        f["image_w"] = np.ones(3)
    with pytest.raises(DataFormatError, match="dataset 'image_w' has 3 rows"):
        open_features(path)


def test_h5_without_h5py(tmp_path, monkeypatch):
    import builtins

    from mmgraph.datasets.formats import write_h5_features
    from mmgraph.errors import MissingDependencyError

    real_import = builtins.__import__

    def no_h5py(name, *args, **kwargs):
        if name == "h5py":
            raise ImportError("no h5py")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_h5py)
    with pytest.raises(MissingDependencyError, match="pip install h5py"):
        write_h5_features(tmp_path / "f.h5", RECORDS)
