import io
import os
import pickle
import warnings

import numpy as np
import pytest

from mmgraph.datasets.safe_pickle import NUMPY_GLOBALS, SafeUnpickler, safe_load
from mmgraph.errors import DataFormatError, UnsafePickleError


def _sample_data():
    return (
        [np.arange(12, dtype=np.float32).reshape(3, 4), np.zeros(18)[::2], np.array([True, False])],
        {"answers": [np.int64(4), np.float64(0.5), 3], "text": "red", "raw": b"\x00\xffab"},
        np.array([[1, 2], [3, 4]], dtype=np.uint8).T,  # not C-contiguous
    )


def _assert_same(a, b):
    assert type(a) is type(b)
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    else:
        assert a == b


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_numpy_pickles_load_at_every_protocol(tmp_path, protocol):
    path = tmp_path / "data.pkl"
    data = _sample_data()
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    _assert_same(safe_load(path), data)


def test_numpy1_module_paths_load_without_deprecation_warning(tmp_path):
    # numpy 1.x spells numpy.core.*; numpy 2 writes numpy._core.*.
    raw = pickle.dumps((np.arange(5.0), np.int64(7)), protocol=2)
    assert b"numpy._core.multiarray" in raw
    path = tmp_path / "np1.pkl"
    path.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        array, scalar = safe_load(path)
    assert np.array_equal(array, np.arange(5.0)) and scalar == 7


def _short_binstring(b: bytes) -> bytes:
    return b"U" + bytes([len(b)]) + b


def test_python2_cpickle_array_loads_with_latin1(tmp_path):
    # What Python 2 cPickle (protocol 2) wrote for np.array([1., 2., 3.]):
    # byte strings as SHORT_BINSTRING, which Python 3 decodes with `encoding`.
    data = np.array([1.0, 2.0, 3.0]).tobytes()
    raw = (
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
        + _short_binstring(b"b")
        + b"\x87R(K\x01K\x03\x85cnumpy\ndtype\n"
        + _short_binstring(b"f8")
        + b"K\x00K\x01\x87R(K\x03"
        + _short_binstring(b"<")
        + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89"
        + _short_binstring(data)
        + b"tb."
    )
    path = tmp_path / "py2.pkl"
    path.write_bytes(raw)
    assert np.array_equal(safe_load(path, encoding="latin1"), [1.0, 2.0, 3.0])


class _ShellPayload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalPayload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"__import__('pathlib').Path({str(self.marker)!r}).touch()",))


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("payload", [_ShellPayload, _EvalPayload])
def test_malicious_pickle_is_refused_before_it_runs(tmp_path, protocol, payload):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    # Hidden inside an otherwise valid numpy structure.
    path.write_bytes(pickle.dumps((np.zeros(3), [payload(marker)]), protocol=protocol))
    with pytest.raises(UnsafePickleError) as info:
        safe_load(path)
    message = str(info.value)
    assert str(path) in message
    # Protocols < 3 spell builtins as the Python 2 `__builtin__`.
    assert (
        ("system" in message) if payload is _ShellPayload else ("builtin" in message and ".eval" in message)
    )
    assert "arbitrary code" in message
    assert not marker.exists()


def test_eval_payload_is_real(tmp_path):
    # The control: plain pickle runs the payload, so the test above can fail.
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(_EvalPayload(marker)))
    assert marker.exists()


def test_python2_builtin_name_is_refused(tmp_path):
    # `__builtin__` is mapped to `builtins` by pickle's Python 2 fix-ups; the
    # check runs on the name as written, before that mapping.
    marker = tmp_path / "pwned"
    expr = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    path = tmp_path / "evil2.pkl"
    path.write_bytes(b"c__builtin__\neval\n(V" + expr.encode() + b"\ntR.")
    with pytest.raises(UnsafePickleError, match="__builtin__.eval"):
        safe_load(path)
    assert not marker.exists()


def test_codecs_encode_admits_latin1_only():
    raw = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R."
    with pytest.raises(UnsafePickleError, match="rot13"):
        SafeUnpickler(io.BytesIO(raw)).load()
    ok = raw.replace(b"X\x05\x00\x00\x00rot13", b"X\x06\x00\x00\x00latin1")
    assert SafeUnpickler(io.BytesIO(ok)).load() == b"abc"


def test_allowed_set_is_configurable(tmp_path):
    from collections import OrderedDict

    path = tmp_path / "od.pkl"
    path.write_bytes(pickle.dumps(OrderedDict(a=np.ones(2)), protocol=4))
    with pytest.raises(UnsafePickleError, match="collections.OrderedDict"):
        safe_load(path)
    loaded = safe_load(path, allowed=NUMPY_GLOBALS | {("collections", "OrderedDict")})
    assert isinstance(loaded, OrderedDict) and np.array_equal(loaded["a"], np.ones(2))
    # A narrower set refuses numpy itself.
    with pytest.raises(UnsafePickleError, match="numpy"):
        safe_load(path, allowed={("collections", "OrderedDict")})


def test_truncated_or_foreign_file_is_a_data_format_error(tmp_path):
    good = pickle.dumps([np.arange(100.0)] * 3, protocol=4)
    path = tmp_path / "cut.pkl"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataFormatError, match="cut.pkl"):
        safe_load(path)
    other = tmp_path / "text.pkl"
    other.write_text("not a pickle at all\n")
    with pytest.raises(DataFormatError, match="text.pkl"):
        safe_load(other)
    with pytest.raises(FileNotFoundError):
        safe_load(tmp_path / "missing.pkl")
