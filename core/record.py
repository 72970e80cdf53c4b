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
claims `completed`. Imports no TensorFlow: `results` reads through this module.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Iterable

import numpy as np

SCHEMA_VERSION = 1
RUN_JSON = "run.json"
RECORD_FILES = ("run.json", "history.csv", "model.h5", "model.yaml", "predictions.npy", "confusion_matrix.csv")
STATUSES = ("completed", "failed", "interrupted")
PARTIAL_PREFIX = ".partial-"


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


def read_run_json(record_dir: str | Path) -> dict[str, Any]:
    with open(Path(record_dir) / RUN_JSON) as f:
        return json.load(f)


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
