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
import errno
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
    """`20261121T084512Z-local-164670d5-3f2a9c01b7e4`: sorts by time, names platform and spec.

    48 random bits: two runs of one spec in the same second collide once in ~10^14 pairs
    (16 bits collided once in ~65,000), and `RecordWriter.create` draws again if they do.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%dT%H%M%S}Z-{platform}-{spec_hash[:8]}-{secrets.token_hex(6)}"


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


def write_history_csv(path: Path, history: dict[str, list[float]], epoch_seconds: Iterable[float]) -> None:
    """history.csv: one row per finished epoch, the Keras history keys at full precision, then its seconds."""
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        keys = list(history)
        w.writerow(["epoch", *keys, "seconds"])
        for i, secs in enumerate(epoch_seconds):
            w.writerow([i + 1, *(repr(history[k][i]) for k in keys), f"{secs:.4f}"])


def write_confusion_csv(path: Path, confusion: np.ndarray) -> None:
    """confusion_matrix.csv: rows the true class, columns the predicted one."""
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["true\\predicted", *range(len(confusion))])
        for i, row in enumerate(confusion):
            w.writerow([i, *row.tolist()])


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


DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# Dropped first when the disk is too full for the whole record: the largest files, which
# `compare` can do without (it reads run.json; predictions only for agreement).
DROP_FIRST = ("model.h5", "predictions.npy", "model.yaml", "history.csv", "confusion_matrix.csv")


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in DISK_FULL


def describe_error(e: BaseException) -> str:
    """One line for an exception: `disk full (...)` for ENOSPC and its kin, else `Type: message`."""
    if is_disk_full(e):  # h5py's strerror is a paragraph; the errno says it in three words
        where = f" writing {e.filename}" if getattr(e, "filename", None) else ""
        return f"disk full ({os.strerror(e.errno)}){where}"
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:500] if text else ''}".rstrip(": ")


def write_json(path: Path, obj: Any, indent: int | None = 2) -> None:
    """Write JSON atomically: a temporary file in the same folder, fsync, rename.

    The text is made before the file is opened (a value JSON cannot hold leaves no
    file), and a failed write removes its temporary file: on a full disk it would
    otherwise keep the space the next attempt needs.
    """
    text = json.dumps(obj, indent=indent, sort_keys=False, allow_nan=False, default=_json_default) + "\n"
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (Path, tuple, set)):
        return str(obj) if isinstance(obj, Path) else list(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


class RecordNotWritten(OSError):
    """Not even a small run.json could be written; the message carries what the record would have said."""


class RecordWriter:
    """Assembles one record under a hidden name and publishes it with one rename."""

    def __init__(self, runs_dir: str | Path, run_id: str):
        self.runs_dir = Path(runs_dir)
        self.run_id = run_id
        self.final = self.runs_dir / run_id
        self.partial = self.runs_dir / f"{PARTIAL_PREFIX}{run_id}"
        if os.path.lexists(self.final):
            raise FileExistsError(errno.EEXIST, "a record of this id exists; not replaced", str(self.final))
        self.partial.mkdir(parents=True, exist_ok=False)  # fails rather than shares another run's folder

    @classmethod
    def create(cls, runs_dir: str | Path, platform: str, spec_hash: str) -> "RecordWriter":
        """A writer under a fresh run id; a colliding id is drawn again, never reused."""
        for _ in range(5):
            try:
                return cls(runs_dir, new_run_id(platform, spec_hash))
            except FileExistsError:
                continue
        raise FileExistsError(errno.EEXIST, "five fresh run ids all exist", str(runs_dir))

    def path(self, name: str) -> Path:
        return self.partial / name

    def publish(self, run: dict[str, Any]) -> Path:
        """Write run.json last, then rename the folder into place.

        When run.json cannot be written (the disk is full), the record is still
        published, smaller: the largest files are dropped one by one (model.h5 first)
        and run.json is written compact, without its traceback and history if need be;
        the record says what was dropped and why, its status becomes `failed`, and its
        metrics and hashes stay. Only when not even that fits is RecordNotWritten raised.
        """
        if run.get("status") not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        try:
            write_json(self.path(RUN_JSON), run)
        except OSError as first:
            self._publish_small(run, first)
        if os.path.lexists(self.final):
            raise FileExistsError(errno.EEXIST, "a record of this id appeared meanwhile; not replaced", str(self.final))
        os.rename(self.partial, self.final)
        return self.final

    def _publish_small(self, run: dict[str, Any], first: OSError) -> None:
        problem = f"the full record could not be written ({describe_error(first)})"
        if run["status"] == "completed":
            run["status"], run["error"] = "failed", problem
        run["record_error"] = problem
        dropped: list[str] = run.setdefault("files_dropped", [])
        attempts = [dict(indent=None)]
        attempts += [dict(indent=None, drop=name) for name in DROP_FIRST]
        attempts += [dict(indent=None, lean=True)]
        last: OSError = first
        for attempt in attempts:
            name = attempt.get("drop")
            if name:
                if not self.path(name).exists():
                    continue
                self.path(name).unlink()
                dropped.append(name)
            body = _lean(run) if attempt.get("lean") else run
            try:
                write_json(self.path(RUN_JSON), body, indent=attempt["indent"])
                return
            except OSError as e:
                last = e
        raise RecordNotWritten(errno.ENOSPC if is_disk_full(last) else last.errno,
                               f"{describe_error(last)}; not even a small run.json could be written in "
                               f"{self.partial}; status {run['status']}, metrics {json.dumps(run.get('metrics'))}")

    def discard(self) -> None:
        shutil.rmtree(self.partial, ignore_errors=True)


LEAN_KEYS = ("schema_version", "run_id", "platform", "status", "started_at", "finished_at", "spec", "spec_hash",
             "data_digest", "data", "seed", "metrics", "weights_sha256", "predictions_sha256", "error",
             "record_error", "files_dropped", "timings")


def _lean(run: dict[str, Any]) -> dict[str, Any]:
    """The run.json of last resort: what identifies the run and its result (no environment, history, traceback)."""
    return {k: run[k] for k in LEAN_KEYS if k in run}


MAX_RUN_JSON_BYTES = 64 << 20  # a run.json is tens of KB; a long history is a few MB


def read_run_json(record_dir: str | Path) -> dict[str, Any]:
    """A record's run.json: a regular file (not a link) of bounded size, parsed as JSON."""
    from core.bounded import read_bounded

    return json.loads(read_bounded(Path(record_dir) / RUN_JSON, MAX_RUN_JSON_BYTES))


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
