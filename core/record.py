"""The run record: one folder per run, the same on every platform.

    runs/<run_id>/
        run.json              what ran, where, with what result (schema: results/SCHEMA.md)
        history.csv           one row per epoch
        model.h5              architecture, weights and optimizer state (HDF5)
        model.yaml            the architecture, human-readable
        predictions.npy       predicted class of each test image (uint8)
        confusion_matrix.csv  10x10, rows true class, columns predicted

The folder is assembled under a hidden temporary name and renamed into place
only when run.json is written, so a killed run never leaves a folder that
claims `completed`. This is the one module that knows the record's shape:
`core` writes through it, `results` and every `pull` read and validate through
it. It needs numpy and nothing else (no TensorFlow, no YAML).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any, BinaryIO, Iterable

import numpy as np

SCHEMA_VERSION = 1
RUN_JSON = "run.json"
RECORD_FILES = ("run.json", "history.csv", "model.h5", "model.yaml", "predictions.npy", "confusion_matrix.csv")
STATUSES = ("completed", "failed", "interrupted")
PARTIAL_PREFIX = ".partial-"
REQUIRED_KEYS = ("schema_version", "run_id", "platform", "status", "spec", "spec_hash")
# A run id names a folder: letters, digits, `.`, `_`, `-`, not hidden, bounded.
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}\Z")


class RecordError(ValueError):
    """A run.json that is not a record this harness can read."""


def new_run_id(platform: str, spec_hash: str, now: dt.datetime | None = None) -> str:
    """`20261121T084512Z-local-164670d5-3f2a`: sorts by time, names platform and spec."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%dT%H%M%S}Z-{platform}-{spec_hash[:8]}-{secrets.token_hex(2)}"


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def weights_sha256(weights: Iterable[np.ndarray]) -> str:
    """SHA-256 over every weight array's dtype, shape and C-order bytes, in model order."""
    h = hashlib.sha256()
    for w in weights:
        w = np.ascontiguousarray(w)
        h.update(f"{w.dtype.str}{w.shape}".encode())
        h.update(w.data)
    return h.hexdigest()


def predictions_sha256(predictions: np.ndarray) -> str:
    """SHA-256 of the predicted classes as uint8, C order."""
    return hashlib.sha256(np.ascontiguousarray(predictions, dtype=np.uint8).data).hexdigest()


def canonical_json(obj: Any) -> str:
    """The JSON that spec hashes are taken over: sorted keys, no spaces, ASCII, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def validate_run(run: object, where: str) -> dict[str, Any]:
    """The checks every reader applies to a run.json-shaped dict; RecordError names what is wrong."""
    if not isinstance(run, dict):
        raise RecordError(f"{where}: run.json is not a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in run]
    if missing:
        raise RecordError(f"{where}: run.json lacks {', '.join(missing)}")
    version = run["schema_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version > SCHEMA_VERSION:
        raise RecordError(f"record schema version {str(version)[:20]} is newer than this harness reads "
                          f"({SCHEMA_VERSION}); upgrade the harness")
    if run["status"] not in STATUSES:
        raise RecordError(f"unknown status {str(run['status'])[:40]!r}")
    if not isinstance(run["run_id"], str) or not RUN_ID.match(run["run_id"]):
        raise RecordError(f"{where}: unusable run_id {str(run['run_id'])[:80]!r} (letters, digits, . _ -)")
    return run


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """`{"optimizer": {"name": "adam"}, "layers": [{"type": "Conv2D"}]}` -> `{"optimizer.name": "adam", "layers.0.type": "Conv2D"}`.

    Empty containers stay visible as the strings "{}" and "[]".
    """
    if isinstance(obj, (dict, list)) and obj:
        items = obj.items() if isinstance(obj, dict) else enumerate(obj)
        flat: dict[str, Any] = {}
        for key, value in items:
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    if isinstance(obj, (dict, list)):
        obj = "{}" if isinstance(obj, dict) else "[]"
    return {prefix[:-1]: obj}


# --- .npy: the one reader --------------------------------------------------------

# np.save's header for a 1-D uint8 array, the only shape predictions.npy has.
_NPY_UINT8 = re.compile(rb"\{'descr': '\|u1', 'fortran_order': False, 'shape': \((\d+),\), \} *\n")


def read_npy_header(f: BinaryIO, name: str, max_bytes: int | None = None) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the .npy file at `f`'s position; refuses pickles and, given
    `max_bytes`, an array larger than that (a 30-byte header may ask for a terabyte)."""
    fmt = np.lib.format
    version = fmt.read_magic(f)
    read_header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
    if read_header is None:
        raise ValueError(f"{name}: .npy format version {version} is not supported")
    shape, fortran_order, dtype = read_header(f)
    if dtype.hasobject:
        raise ValueError(f"{name}: holds Python objects (a pickle); refusing to load it")
    if max_bytes is not None and int(np.prod(shape, dtype=object)) * dtype.itemsize > max_bytes:
        raise ValueError(f"{name}: its header asks for a {dtype}{list(shape)} array, more than {max_bytes:,} bytes")
    return shape, fortran_order, dtype


def read_npy(raw: bytes, name: str = ".npy") -> np.ndarray:
    """The array in an .npy file's bytes (no pickles; never larger than the bytes hold).

    A 1-D uint8 array is read straight from the bytes: np.load parses every header
    with ast.literal_eval, a third of the time of a 1,000-record comparison.
    """
    if raw[:8] == b"\x93NUMPY\x01\x00":
        end = 10 + int.from_bytes(raw[8:10], "little")
        m = _NPY_UINT8.fullmatch(raw, 10, end)
        if m and len(raw) - end == int(m.group(1)):
            return np.frombuffer(raw, dtype=np.uint8, offset=end)
    f = io.BytesIO(raw)
    shape, fortran_order, dtype = read_npy_header(f, name, max_bytes=len(raw))
    count = int(np.prod(shape, dtype=object))
    if len(raw) - f.tell() != count * dtype.itemsize:
        raise ValueError(f"{name}: its data is not {count * dtype.itemsize} bytes long")
    array = np.frombuffer(raw, dtype=dtype, count=count, offset=f.tell())
    return array.reshape(shape, order="F" if fortran_order else "C")


def zip_names(path: Path) -> frozenset[str]:
    """Member names of a zip file a record holds (a Comet archive); empty when it is no readable zip."""
    import zipfile

    try:
        if path.is_file() and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                return frozenset(z.namelist())
    except (OSError, zipfile.BadZipFile):
        pass
    return frozenset()


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically: a temporary file in the same folder, fsync, rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False, allow_nan=False, default=_json_default)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (Path, tuple, set)):
        return str(obj) if isinstance(obj, Path) else list(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


class RecordWriter:
    """Assembles one record under a hidden name and publishes it with one rename."""

    def __init__(self, runs_dir: str | Path, run_id: str):
        self.runs_dir = Path(runs_dir)
        self.run_id = run_id
        self.final = self.runs_dir / run_id
        self.partial = self.runs_dir / f"{PARTIAL_PREFIX}{run_id}"
        self.partial.mkdir(parents=True, exist_ok=False)

    def path(self, name: str) -> Path:
        return self.partial / name

    def publish(self, run: dict[str, Any]) -> Path:
        """Write run.json last, then rename the folder into place."""
        if run.get("status") not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        write_json(self.path(RUN_JSON), run)
        os.replace(self.partial, self.final)
        return self.final

    def discard(self) -> None:
        shutil.rmtree(self.partial, ignore_errors=True)


MAX_RUN_JSON_BYTES = 64 * 2**20  # a record's run.json is kilobytes; history of a long run, a few MB


def read_run_json(record_dir: str | Path) -> dict[str, Any]:
    """run.json of a record folder, read from a regular file of bounded size."""
    path = Path(record_dir) / RUN_JSON
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        if not _is_regular(st.st_mode):
            raise RecordError(f"{path}: not a regular file")
        raw = f.read(MAX_RUN_JSON_BYTES + 1)
    if len(raw) > MAX_RUN_JSON_BYTES:
        raise RecordError(f"{path}: larger than {MAX_RUN_JSON_BYTES // 2**20} MB; not a run record")
    return json.loads(raw)


def _is_regular(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode)


def update_run_json(record_dir: str | Path, updates: dict[str, Any]) -> dict[str, Any]:
    """Merge top-level keys into a published record's run.json, atomically.

    For links that exist only after the record is complete (a Comet experiment
    key, an OpenML run id); the record is valid before and after.
    """
    run = read_run_json(record_dir)
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(run.get(key), dict):
            run[key] = {**run[key], **value}
        else:
            run[key] = value
    write_json(Path(record_dir) / RUN_JSON, run)
    return run
