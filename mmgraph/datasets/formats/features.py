r"""Region features from local files: bottom-up-attention TSV, one ``.npz`` per
image, HDF5.

Region features in the style of "Bottom-Up and Top-Down Attention for Image
Captioning and VQA" (Anderson et al., CVPR 2018): per image, ``N`` detected
boxes and one feature vector per box. Every format is read through one
interface, :func:`open_features`, which returns a :class:`FeatureStore`::

    store = open_features("trainval_36.tsv")
    r = store[42]              # RegionFeatures(image_id, boxes [N, 4], features [N, D], image_w, image_h)
    42 in store, len(store), store.ids()

Accepted layouts:

* **TSV** (``*.tsv``, also ``*.tsv.0`` shards): tab separated, one image a
  line, columns ``image_id, image_w, image_h, num_boxes, boxes, features``
  with ``boxes`` and ``features`` the base64 of float32 arrays of shape
  ``[num_boxes, 4]`` (xyxy pixels) and ``[num_boxes, D]``; ``\n`` or ``\r\n``
  line ends (``csv.DictWriter``, which wrote the original files, ends lines
  with ``\r\n``). Base64 and numbers never need CSV quoting, so lines are
  split on tabs directly, which also sidesteps ``csv``'s field size limit.
  Files run to tens of GiB: reading is lazy, through an index of the byte
  offset of every image id built in one streaming pass and cached next to
  the file as ``<file>.index.json`` (rebuilt when the file's size or
  modification time changes; kept in memory only when the folder is not
  writable). :func:`iter_tsv_features` streams every record in file order.
* **NPZ directory**: ``<dir>/<image_id>.npz`` with ``boxes`` [N, 4] and
  ``features`` [N, D], optional scalars ``image_w``, ``image_h`` (and
  ``num_boxes``); or the keys of the bottom-up-attention.pytorch extractor,
  ``bbox`` [N, 4] and ``x`` [N, D] (``num_bbox``, ``image_w``, ``image_h``).
  ``x`` stored as [D, N] (the OpenVQA/MCAN files) is transposed, told apart
  by the box count. Pickled entries (``info``) are never loaded.
* **HDF5** (``*.h5``, ``*.hdf5``, needs ``h5py``): datasets ``image_ids``
  [M] (integers or strings), ``boxes`` [M, B, 4], ``features`` [M, B, D]
  (zero padded to ``B`` boxes), optional ``num_boxes`` [M] (default ``B``),
  ``image_w`` [M], ``image_h`` [M].

Image ids: a string of decimal digits is read as an ``int`` (``"42"``, file
``42.npz``), anything else stays a ``str`` (``"n12345"``); look-ups accept
either spelling (:func:`normalize_image_id`).

Every record is checked when read: ``boxes`` [N, 4] and ``features`` [N, D]
agree on ``N``; ``N`` lies in ``[min_boxes, max_boxes]`` (default ``10..100``,
the adaptive setting of the bottom-up-attention features, which includes
the fixed 36; ``None`` turns a bound off); boxes and features are finite.
A failing record raises :class:`~mmgraph.errors.DataFormatError` naming the
file, the line (TSV) and the image id.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import tempfile
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from mmgraph.errors import DataFormatError, InputError, MissingDependencyError, MMGraphError

ImageId = Union[int, str]
PathLike = Union[str, "os.PathLike[str]"]

TSV_FIELDS: Tuple[str, ...] = ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features")
DEFAULT_MIN_BOXES = 10
DEFAULT_MAX_BOXES = 100
_INDEX_FORMAT = "mmgraph-tsv-index"
_INDEX_VERSION = 1


class MissingFeaturesError(MMGraphError, KeyError):
    """An image id has no region features in a feature file."""

    def __str__(self) -> str:
        # KeyError would show the message repr-quoted.
        return str(self.args[0]) if self.args else ""


@dataclass
class RegionFeatures:
    """The regions of one image.

    Attributes:
        image_id (int or str): the image id.
        boxes (Tensor): ``[N, 4]`` float32 boxes, ``x1, y1, x2, y2`` in pixels.
        features (Tensor): ``[N, D]`` float32 region features.
        image_w (float, optional): image width in pixels (``None`` when the
            file does not store it).
        image_h (float, optional): image height in pixels (likewise).
    """

    image_id: ImageId
    boxes: Tensor
    features: Tensor
    image_w: Optional[float] = None
    image_h: Optional[float] = None

    @property
    def num_boxes(self) -> int:
        return int(self.boxes.shape[0])


def normalize_image_id(image_id: Any) -> ImageId:
    """The canonical form of an image id: ``int`` for integers and strings of
    decimal digits, ``str`` otherwise (bytes are decoded as UTF-8)."""
    if isinstance(image_id, (bytes, np.bytes_)):
        image_id = image_id.decode("utf-8")
    if isinstance(image_id, (bool, np.bool_)):
        raise InputError(f"image id must be an int or a str, got the bool {image_id!r}")
    if isinstance(image_id, (int, np.integer)):
        return int(image_id)
    if isinstance(image_id, str):
        return int(image_id) if image_id.isascii() and image_id.isdigit() else image_id
    raise InputError(f"image id must be an int or a str, got {type(image_id).__name__} {image_id!r}")


def _where(path: PathLike, image_id: Any = None, line: Optional[int] = None) -> str:
    parts = [f"file '{path}'"]
    if line is not None:
        parts.append(f"line {line}")
    if image_id is not None:
        parts.append(f"image {image_id!r}")
    return ", ".join(parts)


def _to_float32(x: Any) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


def _validate(
    image_id: ImageId,
    boxes: Any,
    features: Any,
    image_w: Optional[float],
    image_h: Optional[float],
    where: str,
    min_boxes: Optional[int],
    max_boxes: Optional[int],
) -> RegionFeatures:
    """The one check every reader applies; returns the record as tensors."""
    boxes, features = _to_float32(boxes), _to_float32(features)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise DataFormatError(f"{where}: boxes must have shape [N, 4], got {list(boxes.shape)}")
    if features.ndim != 2 or features.shape[0] != boxes.shape[0]:
        raise DataFormatError(
            f"{where}: features must have shape [N, D] with N = {boxes.shape[0]} boxes, got {list(features.shape)}"
        )
    n = boxes.shape[0]
    if (min_boxes is not None and n < min_boxes) or (max_boxes is not None and n > max_boxes):
        raise DataFormatError(
            f"{where}: {n} boxes, outside the accepted range [{min_boxes}, {max_boxes}]; "
            "pass min_boxes/max_boxes (None turns a bound off) if this file is right"
        )
    for name, a in (("boxes", boxes), ("features", features)):
        # numpy: much cheaper than torch.isfinite for one small record
        if not np.isfinite(a).all():
            bad = np.argwhere(~np.isfinite(a))[0].tolist()
            raise DataFormatError(
                f"{where}: {name} hold NaN or inf (first at index {bad}); re-extract this image"
            )
    for name, v in (("image_w", image_w), ("image_h", image_h)):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise DataFormatError(f"{where}: {name} must be a positive number, got {v!r}")
    return RegionFeatures(
        normalize_image_id(image_id), torch.from_numpy(boxes), torch.from_numpy(features), image_w, image_h
    )


@contextmanager
def _atomic_path(path: Path) -> Iterator[str]:
    """Yields a temporary path next to ``path``; when the block ends without
    error it is renamed over ``path``, so that readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _atomic_write(path: Path, write: Any) -> None:
    """Calls ``write(binary_file)`` on a temporary file, then renames it over ``path``."""
    with _atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)


def _record_fields(record: Any) -> Tuple[ImageId, np.ndarray, np.ndarray, Optional[float], Optional[float]]:
    """Reads a :class:`RegionFeatures` or a mapping with the same keys."""
    get = record.get if isinstance(record, Mapping) else (lambda k, d=None: getattr(record, k, d))
    try:
        image_id = normalize_image_id(get("image_id"))
        boxes, features = _to_float32(get("boxes")), _to_float32(get("features"))
    except (TypeError, ValueError) as e:
        raise InputError(f"feature record {record!r:.80} needs image_id, boxes and features: {e}") from None
    if boxes.ndim != 2 or boxes.shape[1] != 4 or features.ndim != 2 or features.shape[0] != boxes.shape[0]:
        raise InputError(
            f"image {image_id!r}: boxes must be [N, 4] and features [N, D], got {list(boxes.shape)} "
            f"and {list(features.shape)}"
        )
    w, h = get("image_w"), get("image_h")
    return image_id, boxes, features, None if w is None else float(w), None if h is None else float(h)


# --------------------------------------------------------------------------- stores


class FeatureStore(ABC):
    """Random access to the region features of a file, by image id.

    ``store[image_id]`` returns a :class:`RegionFeatures`; an unknown id raises
    :class:`MissingFeaturesError` (a ``KeyError``). Stores open their files
    lazily in each process, so they can be handed to DataLoader workers.
    """

    def __init__(self, path: PathLike, min_boxes: Optional[int], max_boxes: Optional[int]):
        self.path = Path(path)
        self.min_boxes = min_boxes
        self.max_boxes = max_boxes
        self._file: Optional[_ProcessLocalHandle] = None
        # Where each image's record is (a row, an offset, a file), in file order;
        # subclasses fill it when they open their file.
        self._rows: Dict[ImageId, Any] = {}

    def ids(self) -> List[ImageId]:
        """Every image id of the store, in file order."""
        return list(self._rows)

    @abstractmethod
    def _load(self, image_id: ImageId) -> RegionFeatures:
        """Reads one record whose (normalised) id is known to be present."""

    def _has(self, image_id: ImageId) -> bool:
        return image_id in self._rows

    def __getitem__(self, image_id: ImageId) -> RegionFeatures:
        key = normalize_image_id(image_id)
        if not self._has(key):
            raise MissingFeaturesError(
                f"no region features for image {image_id!r} in '{self.path}' ({len(self)} images); "
                "extract features for it or drop its samples"
            )
        return self._load(key)

    def __contains__(self, image_id: object) -> bool:
        try:
            return self._has(normalize_image_id(image_id))
        except InputError:
            return False

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[ImageId]:
        return iter(self.ids())

    def close(self) -> None:
        """Closes the open file handle, if any (it reopens on the next read)."""
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}('{self.path}', images={len(self)})"


class _ProcessLocalHandle:
    """A file handle opened on first use in each process (forked DataLoader
    workers must not share one file position)."""

    def __init__(self, opener: Any):
        self._opener = opener
        self._handle: Any = None
        self._pid: Optional[int] = None

    def get(self) -> Any:
        if self._handle is None or self._pid != os.getpid():
            self._handle = self._opener()
            self._pid = os.getpid()
        return self._handle

    def close(self) -> None:
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = None

    def __getstate__(self) -> Dict[str, Any]:
        return {"_opener": self._opener, "_handle": None, "_pid": None}

    def __del__(self) -> None:
        # A store dropped without close() must not leak its descriptor.
        try:
            self.close()
        except Exception:
            pass  # interpreter shutdown: the file module may be gone already


# --------------------------------------------------------------------------- TSV


def _decode_floats(field: bytes, what: str, where: str) -> bytes:
    try:
        return base64.b64decode(field, validate=True)
    except (binascii.Error, ValueError) as e:
        raise DataFormatError(
            f"{where}: column '{what}' is not valid base64 ({e}); the row is corrupt"
        ) from None


def _parse_tsv_line(
    line: bytes, path: PathLike, lineno: int, min_boxes: Optional[int], max_boxes: Optional[int]
) -> RegionFeatures:
    fields = line.rstrip(b"\r\n").split(b"\t")
    first = normalize_image_id(fields[0].decode("utf-8", "replace"))
    if len(fields) != len(TSV_FIELDS):
        raise DataFormatError(
            f"{_where(path, first, lineno)}: {len(fields)} tab-separated columns, expected {len(TSV_FIELDS)} "
            f"({', '.join(TSV_FIELDS)}); the row is truncated or not a bottom-up-attention TSV"
        )
    image_id = first
    where = _where(path, image_id, lineno)
    try:
        image_w, image_h = float(fields[1]), float(fields[2])
        num_boxes = int(fields[3])
    except ValueError:
        raise DataFormatError(
            f"{where}: image_w, image_h, num_boxes must be numbers, got {[f.decode('utf-8', 'replace') for f in fields[1:4]]}"
        ) from None
    if num_boxes < 0:
        raise DataFormatError(f"{where}: num_boxes is {num_boxes}")
    raw_boxes = _decode_floats(fields[4], "boxes", where)
    raw_feats = _decode_floats(fields[5], "features", where)
    if len(raw_boxes) != 16 * num_boxes:
        raise DataFormatError(
            f"{where}: 'boxes' decodes to {len(raw_boxes)} bytes, expected num_boxes * 4 float32 = {16 * num_boxes}"
        )
    if num_boxes == 0 and raw_feats:
        raise DataFormatError(f"{where}: num_boxes is 0 but 'features' holds {len(raw_feats)} bytes")
    if num_boxes and (len(raw_feats) == 0 or len(raw_feats) % (4 * num_boxes)):
        raise DataFormatError(
            f"{where}: 'features' decodes to {len(raw_feats)} bytes, not a multiple of "
            f"num_boxes * 4 = {4 * num_boxes} (float32 [num_boxes, D])"
        )
    # bytearray: a writable buffer, which torch.from_numpy takes without copy or warning.
    boxes = np.frombuffer(bytearray(raw_boxes), dtype=np.float32).reshape(num_boxes, 4)
    features = np.frombuffer(bytearray(raw_feats), dtype=np.float32).reshape(num_boxes, -1)  # [N, D]
    return _validate(image_id, boxes, features, image_w, image_h, where, min_boxes, max_boxes)


def iter_tsv_features(
    path: PathLike,
    min_boxes: Optional[int] = DEFAULT_MIN_BOXES,
    max_boxes: Optional[int] = DEFAULT_MAX_BOXES,
) -> Iterator[RegionFeatures]:
    """Streams every record of a bottom-up-attention TSV in file order,
    holding one line in memory at a time. Empty lines are skipped.

    Args:
        path (str or PathLike): the TSV file.
        min_boxes (int, optional): fewest boxes accepted. (default: ``10``)
        max_boxes (int, optional): most boxes accepted. (default: ``100``)
    """
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                yield _parse_tsv_line(line, path, lineno, min_boxes, max_boxes)


def _default_index_path(path: Path) -> Path:
    return path.with_name(path.name + ".index.json")


def _build_tsv_index(path: Path) -> Dict[str, Any]:
    """One streaming pass: byte offset, line number and id of every row; the
    column count is checked here so that a truncated row is found at once."""
    ids: List[ImageId] = []
    offsets: List[int] = []
    lines: List[int] = []
    seen: Dict[ImageId, int] = {}
    offset = 0
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                image_id = normalize_image_id(line.split(b"\t", 1)[0].decode("utf-8", "replace"))
                columns = line.count(b"\t") + 1
                if columns != len(TSV_FIELDS):
                    raise DataFormatError(
                        f"{_where(path, image_id, lineno)}: {columns} tab-separated columns, expected "
                        f"{len(TSV_FIELDS)} ({', '.join(TSV_FIELDS)}); the row is truncated"
                    )
                if image_id in seen:
                    raise DataFormatError(
                        f"{_where(path, image_id, lineno)}: image id already on line {seen[image_id]}; "
                        "each image must appear once"
                    )
                seen[image_id] = lineno
                ids.append(image_id)
                offsets.append(offset)
                lines.append(lineno)
            offset += len(line)
    return {"ids": ids, "offsets": offsets, "lines": lines}


def _file_stamp(path: Path) -> Dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _load_tsv_index(path: Path, index_path: Optional[Path], cache: bool) -> Dict[str, Any]:
    stamp = _file_stamp(path)
    if cache and index_path is not None and index_path.is_file():
        try:
            cached = json.loads(index_path.read_text())
            if (
                cached.get("format") == _INDEX_FORMAT
                and cached.get("version") == _INDEX_VERSION
                and {k: cached.get(k) for k in stamp} == stamp
            ):
                return cached
        except (OSError, ValueError):
            pass  # an unreadable or stale cache is rebuilt below
    index = _build_tsv_index(path)
    if cache and index_path is not None:
        payload = {"format": _INDEX_FORMAT, "version": _INDEX_VERSION, **stamp, **index}
        try:
            _atomic_write(index_path, lambda f: f.write(json.dumps(payload).encode()))
        except OSError:
            pass  # a read-only data folder: the index stays in memory
    return index


class TSVFeatureStore(FeatureStore):
    """Random access into a bottom-up-attention TSV through a cached byte-offset
    index (see the module doc for the layout).

    Args:
        path (str or PathLike): the TSV file.
        min_boxes (int, optional): fewest boxes accepted. (default: ``10``)
        max_boxes (int, optional): most boxes accepted. (default: ``100``)
        index_path (str or PathLike, optional): where to cache the index.
            (default: ``<path>.index.json``)
        cache_index (bool, optional): read and write the index cache.
            (default: ``True``)
    """

    def __init__(
        self,
        path: PathLike,
        min_boxes: Optional[int] = DEFAULT_MIN_BOXES,
        max_boxes: Optional[int] = DEFAULT_MAX_BOXES,
        index_path: Optional[PathLike] = None,
        cache_index: bool = True,
    ):
        super().__init__(path, min_boxes, max_boxes)
        self.index_path = Path(index_path) if index_path is not None else _default_index_path(self.path)
        index = _load_tsv_index(self.path, self.index_path, cache_index)
        # JSON turns every id into what it was (int or str); normalise anyway
        # for caches written by hand.
        ids = [normalize_image_id(i) for i in index["ids"]]
        self._rows = {i: (o, n) for i, o, n in zip(ids, index["offsets"], index["lines"])}
        self._file = _ProcessLocalHandle(partial(open, self.path, "rb"))

    def _load(self, image_id: ImageId) -> RegionFeatures:
        offset, lineno = self._rows[image_id]
        f: IO[bytes] = self._file.get()
        f.seek(offset)
        record = _parse_tsv_line(f.readline(), self.path, lineno, self.min_boxes, self.max_boxes)
        if record.image_id != image_id:
            raise DataFormatError(
                f"{_where(self.path, image_id, lineno)}: the index points at image {record.image_id!r}; "
                f"the file changed since its index was built: delete '{self.index_path}'"
            )
        return record


def write_tsv_features(path: PathLike, records: Iterable[Any]) -> int:
    """Writes records in the bottom-up-attention TSV layout (atomically).

    Args:
        path (str or PathLike): the output file.
        records (Iterable): :class:`RegionFeatures` or mappings with keys
            ``image_id``, ``boxes`` [N, 4], ``features`` [N, D], ``image_w``,
            ``image_h`` (required here, the format has the columns).

    Returns:
        int: the number of records written.
    """
    count = 0

    def write(f: IO[bytes]) -> None:
        nonlocal count
        for record in records:
            image_id, boxes, features, w, h = _record_fields(record)
            if w is None or h is None:
                raise InputError(f"image {image_id!r}: the TSV format needs image_w and image_h")
            if any(c in str(image_id) for c in "\t\r\n"):
                raise InputError(f"image {image_id!r}: a TSV image id cannot hold tabs or line breaks")
            row = [
                str(image_id).encode(),
                repr(w).encode() if not float(w).is_integer() else str(int(w)).encode(),
                repr(h).encode() if not float(h).is_integer() else str(int(h)).encode(),
                str(boxes.shape[0]).encode(),
                base64.b64encode(boxes.tobytes()),
                base64.b64encode(features.tobytes()),
            ]
            f.write(b"\t".join(row) + b"\r\n")
            count += 1

    _atomic_write(Path(path), write)
    return count


# --------------------------------------------------------------------------- NPZ


_NPZ_BOX_KEYS = ("boxes", "bbox")
_NPZ_FEATURE_KEYS = ("features", "x")


class NPZFeatureStore(FeatureStore):
    """One ``<image_id>.npz`` per image in a directory (see the module doc).

    Args:
        path (str or PathLike): the directory.
        min_boxes (int, optional): fewest boxes accepted. (default: ``10``)
        max_boxes (int, optional): most boxes accepted. (default: ``100``)
    """

    def __init__(
        self,
        path: PathLike,
        min_boxes: Optional[int] = DEFAULT_MIN_BOXES,
        max_boxes: Optional[int] = DEFAULT_MAX_BOXES,
    ):
        super().__init__(path, min_boxes, max_boxes)
        for file in sorted(self.path.glob("*.npz")):
            image_id = normalize_image_id(file.stem)
            if image_id in self._rows:
                raise DataFormatError(
                    f"'{self._rows[image_id]}' and '{file}' both hold image {image_id!r}; keep one"
                )
            self._rows[image_id] = file

    def _load(self, image_id: ImageId) -> RegionFeatures:
        file = self._rows[image_id]
        where = _where(file, image_id)
        try:
            with np.load(file, allow_pickle=False) as z:
                keys = set(z.files)
                box_key = next((k for k in _NPZ_BOX_KEYS if k in keys), None)
                feat_key = next((k for k in _NPZ_FEATURE_KEYS if k in keys), None)
                if box_key is None or feat_key is None:
                    raise DataFormatError(
                        f"{where}: needs arrays 'boxes' (or 'bbox') and 'features' (or 'x'), found {sorted(keys)}"
                    )
                boxes, features = z[box_key], z[feat_key]
                sizes = [float(z[k]) if k in keys else None for k in ("image_w", "image_h")]
                count_key = next((k for k in ("num_boxes", "num_bbox") if k in keys), None)
                declared = int(z[count_key]) if count_key is not None else None
        except DataFormatError:
            raise
        except (OSError, ValueError, EOFError) as e:
            raise DataFormatError(f"{where}: not a readable .npz file ({e})") from None
        n = boxes.shape[0] if boxes.ndim == 2 else -1
        if declared is not None and declared != n:
            raise DataFormatError(f"{where}: '{count_key}' says {declared} boxes, '{box_key}' holds {n}")
        if feat_key == "x" and features.ndim == 2 and features.shape[0] != n and features.shape[1] == n:
            features = features.T  # OpenVQA/MCAN files store x as [D, N]
        return _validate(image_id, boxes, features, *sizes, where, self.min_boxes, self.max_boxes)


def write_npz_features(directory: PathLike, records: Iterable[Any], compressed: bool = False) -> int:
    """Writes one ``<image_id>.npz`` per record (each atomically) with arrays
    ``boxes``, ``features`` and, where known, ``image_w``, ``image_h``.

    Args:
        directory (str or PathLike): the output directory (created).
        records (Iterable): :class:`RegionFeatures` or mappings with the same keys.
        compressed (bool, optional): use ``np.savez_compressed``. (default: ``False``)

    Returns:
        int: the number of files written.
    """
    directory = Path(directory)
    save = np.savez_compressed if compressed else np.savez
    count = 0
    for record in records:
        image_id, boxes, features, w, h = _record_fields(record)
        arrays = {"boxes": boxes, "features": features}
        arrays.update({k: np.float64(v) for k, v in (("image_w", w), ("image_h", h)) if v is not None})
        _atomic_write(directory / f"{image_id}.npz", lambda f, a=arrays: save(f, **a))
        count += 1
    return count


# --------------------------------------------------------------------------- HDF5


def _require_h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise MissingDependencyError(
            "reading or writing HDF5 region features needs h5py: pip install h5py"
        ) from None
    return h5py


class H5FeatureStore(FeatureStore):
    """Region features in one HDF5 file (layout in the module doc).

    Args:
        path (str or PathLike): the ``.h5`` file.
        min_boxes (int, optional): fewest boxes accepted. (default: ``10``)
        max_boxes (int, optional): most boxes accepted. (default: ``100``)
    """

    REQUIRED = ("image_ids", "boxes", "features")

    def __init__(
        self,
        path: PathLike,
        min_boxes: Optional[int] = DEFAULT_MIN_BOXES,
        max_boxes: Optional[int] = DEFAULT_MAX_BOXES,
    ):
        super().__init__(path, min_boxes, max_boxes)
        h5py = _require_h5py()
        self._file = _ProcessLocalHandle(partial(h5py.File, self.path, "r"))
        f = self._file.get()
        missing = [k for k in self.REQUIRED if k not in f]
        if missing:
            raise DataFormatError(
                f"file '{self.path}': missing dataset(s) {missing}; expected {list(self.REQUIRED)} "
                "and optional num_boxes, image_w, image_h"
            )
        m = f["image_ids"].shape[0]
        for key in ("boxes", "features", "num_boxes", "image_w", "image_h"):
            if key in f and f[key].shape[0] != m:
                raise DataFormatError(
                    f"file '{self.path}': dataset '{key}' has {f[key].shape[0]} rows, image_ids {m}"
                )
        for row, image_id in enumerate(normalize_image_id(i) for i in f["image_ids"][()]):
            if image_id in self._rows:
                raise DataFormatError(
                    f"file '{self.path}': image {image_id!r} appears in rows {self._rows[image_id]} and {row}"
                )
            self._rows[image_id] = row

    def _load(self, image_id: ImageId) -> RegionFeatures:
        row = self._rows[image_id]
        f = self._file.get()
        where = _where(self.path, image_id) + f", row {row}"
        boxes, features = f["boxes"][row], f["features"][row]
        n = int(f["num_boxes"][row]) if "num_boxes" in f else boxes.shape[0]
        if not 0 <= n <= boxes.shape[0]:
            raise DataFormatError(f"{where}: num_boxes is {n}, the padded arrays hold {boxes.shape[0]}")
        sizes = [float(f[k][row]) if k in f else None for k in ("image_w", "image_h")]
        return _validate(image_id, boxes[:n], features[:n], *sizes, where, self.min_boxes, self.max_boxes)


def write_h5_features(path: PathLike, records: Iterable[Any]) -> int:
    """Writes records to one HDF5 file (atomically), boxes and features zero
    padded to the largest box count, with ``num_boxes`` per image. The
    ``image_w``/``image_h`` datasets are written when every record has its
    size, and left out when none has.

    Args:
        path (str or PathLike): the output file.
        records (Iterable): :class:`RegionFeatures` or mappings with the same
            keys, all with the same feature size ``D``.

    Returns:
        int: the number of records written.
    """
    h5py = _require_h5py()
    rows = [_record_fields(r) for r in records]
    if not rows:
        raise InputError("write_h5_features needs at least one record")
    dims = {r[2].shape[1] for r in rows}
    if len(dims) != 1:
        raise InputError(f"all records must share one feature size D, got {sorted(dims)}")
    has_size = [r[3] is not None and r[4] is not None for r in rows]
    if any(has_size) and not all(has_size):
        raise InputError("give image_w and image_h for every record or for none")
    m, b, d = len(rows), max(r[1].shape[0] for r in rows), dims.pop()
    boxes = np.zeros((m, b, 4), dtype=np.float32)
    features = np.zeros((m, b, d), dtype=np.float32)
    for i, (_, bx, ft, _, _) in enumerate(rows):
        boxes[i, : len(bx)], features[i, : len(ft)] = bx, ft
    ids = [r[0] for r in rows]
    if all(isinstance(i, int) for i in ids):
        id_data: Any = np.asarray(ids, dtype=np.int64)
    else:
        id_data = np.asarray([str(i) for i in ids], dtype=h5py.string_dtype())

    with _atomic_path(Path(path)) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("image_ids", data=id_data)
        h5.create_dataset("boxes", data=boxes)
        h5.create_dataset("features", data=features)
        h5.create_dataset("num_boxes", data=np.asarray([len(r[1]) for r in rows], dtype=np.int64))
        if all(has_size):
            h5.create_dataset("image_w", data=np.asarray([r[3] for r in rows], dtype=np.float64))
            h5.create_dataset("image_h", data=np.asarray([r[4] for r in rows], dtype=np.float64))
    return m


# --------------------------------------------------------------------------- entry points


def open_features(
    path: PathLike,
    min_boxes: Optional[int] = DEFAULT_MIN_BOXES,
    max_boxes: Optional[int] = DEFAULT_MAX_BOXES,
    **kwargs: Any,
) -> FeatureStore:
    """Opens region features of any supported layout, chosen by the path: a
    directory is read as ``.npz`` files, ``*.tsv`` (and ``*.tsv.N`` shards) as
    TSV, ``*.h5``/``*.hdf5`` as HDF5.

    Args:
        path (str or PathLike): the file or directory.
        min_boxes (int, optional): fewest boxes accepted. (default: ``10``)
        max_boxes (int, optional): most boxes accepted. (default: ``100``)
        **kwargs: passed to the store (``index_path``, ``cache_index`` for TSV).

    Raises:
        InputError: the path does not exist or has no known layout.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"region feature path '{p}' does not exist")
    if p.is_dir():
        store_cls: Any = NPZFeatureStore
    elif ".tsv" in p.suffixes:
        store_cls = TSVFeatureStore
    elif p.suffix.lower() in (".h5", ".hdf5"):
        store_cls = H5FeatureStore
    else:
        raise InputError(
            f"'{p}': unknown region feature layout; expected a directory of .npz files, a .tsv or an .h5 file"
        )
    return store_cls(p, min_boxes=min_boxes, max_boxes=max_boxes, **kwargs)


def check_features_cover(question_image_ids: Iterable[Any], store: FeatureStore) -> None:
    """Checks that every image id (e.g. of a split's questions) has features.

    Raises:
        MissingFeaturesError: naming the first missing ids, how many are
            missing and the feature file.
    """
    missing: Dict[Any, None] = {}
    total: Dict[Any, None] = {}
    for image_id in question_image_ids:
        key = normalize_image_id(image_id)
        total[key] = None
        if key not in missing and key not in store:
            missing[key] = None
    if missing:
        first: Sequence[Any] = list(missing)[:5]
        raise MissingFeaturesError(
            f"{len(missing)} of {len(total)} image ids have no region features in '{store.path}' "
            f"(first: {', '.join(repr(i) for i in first)}); extract features for them or drop their samples"
        )
