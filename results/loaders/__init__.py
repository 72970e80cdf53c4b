"""Pluggable loaders: each recognises one kind of path and turns it into run records.

A run folder, a Kaggle kernel output, a CodaLab run bundle, a Comet offline
archive, a saved OpenML run: `discover` asks every registered loader whether it
recognises a path (openml-python's `can_handle_model` pattern), so `compare`
needs no if/elif over formats. Anything unreadable is returned as `Skipped`,
with its reason; it never stops a comparison.
"""
from __future__ import annotations

import abc
import dataclasses
import importlib
import io
import math
import os
import re
import stat
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from core.bounded import MiB, read_bounded
from core.record import PARTIAL_PREFIX, describe_error

# Tried in order; the first loader that recognises a path loads it.
LOADERS = [
    "results.loaders.record:RunRecordLoader",
    "results.loaders.codalab:CodaLabBundleLoader",
    "results.loaders.comet:CometArchiveLoader",
    "results.loaders.openml:OpenMLRunLoader",
]
MAX_DEPTH = 4  # how deep `discover` looks inside a folder of folders
MAX_PREDICTIONS_BYTES = 4 * MiB  # predictions.npy: one byte per test image (10,000) and a header
MAX_ARTIFACT_BYTES = 64 * MiB    # history.csv, confusion_matrix.csv, the files renderers read


@dataclasses.dataclass
class LoadedRun:
    """One run record, as `run.json` holds it, and where it came from."""

    run: dict[str, Any]
    source: Path
    loader: str
    predictions_path: Path | None = None

    def predictions(self) -> np.ndarray | None:
        """Predicted class per test image, or None when the record has no predictions file."""
        if self.predictions_path is None:
            return None
        try:  # bounded, a regular file, and no link followed out of the record
            raw = read_bounded(self.predictions_path, MAX_PREDICTIONS_BYTES)
        except FileNotFoundError:
            return None
        return read_npy(raw, self.predictions_path)

    def artifact(self, name: str) -> Path | None:
        """A file of the record by name (`history.csv`, `confusion_matrix.csv`), or None if it has none
        (or only a link, a special file, or one too large to be what it says)."""
        path = self.source / name
        try:
            st = path.lstat()
        except OSError:
            return None
        return path if stat.S_ISREG(st.st_mode) and st.st_size <= MAX_ARTIFACT_BYTES else None


# np.save's header for a 1-D uint8 array, the only shape predictions.npy has; anything else goes to np.load.
_NPY_UINT8 = re.compile(rb"\{'descr': '\|u1', 'fortran_order': False, 'shape': \((\d+),\), \} *\n")


def read_npy(raw: bytes, path: Path) -> np.ndarray:
    """An .npy file's array. A 1-D uint8 array is read straight from the bytes: np.load parses
    every header with ast.literal_eval, a third of the time of a 1,000-record comparison.
    Any other header must describe exactly the bytes that follow it before np.load allocates
    (a header may ask for a TiB)."""
    if raw[:8] == b"\x93NUMPY\x01\x00":
        end = 10 + int.from_bytes(raw[8:10], "little")
        m = _NPY_UINT8.fullmatch(raw, 10, end)
        if m and len(raw) - end == int(m.group(1)):
            return np.frombuffer(raw, dtype=np.uint8, offset=end)
    f = io.BytesIO(raw)
    fmt = np.lib.format
    version = fmt.read_magic(f)
    read_header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
    if read_header is None:
        raise ValueError(f"{path}: .npy format version {version} is not supported")
    shape, _, dtype = read_header(f)
    if math.prod(shape) * dtype.itemsize != len(raw) - f.tell():
        raise ValueError(f"{path}: its header describes {dtype}{list(shape)}, not the {len(raw) - f.tell():,} "
                         "bytes that follow it")
    return np.load(io.BytesIO(raw), allow_pickle=False)


@dataclasses.dataclass
class Skipped:
    path: Path
    reason: str


class LoaderError(Exception):
    """A path a loader recognised but could not read; becomes a Skipped entry."""


class Loader(abc.ABC):
    name: str

    @abc.abstractmethod
    def recognizes(self, path: Path) -> bool:
        """Cheap check: is `path` something this loader reads?"""

    @abc.abstractmethod
    def load(self, path: Path) -> list[LoadedRun]:
        """Read `path`; raise LoaderError with a readable reason if it is broken."""


def registered_loaders() -> list[Loader]:
    loaders = []
    for entry in LOADERS:
        module, _, cls = entry.partition(":")
        loaders.append(getattr(importlib.import_module(module), cls)())
    return loaders


def discover(paths: Iterable[str | Path], loaders: list[Loader] | None = None) -> tuple[list[LoadedRun], list[Skipped]]:
    """Every run under `paths` (run folders, folders of them, platform outputs), and what was skipped."""
    loaders = loaders if loaders is not None else registered_loaders()
    runs: list[LoadedRun] = []
    skipped: list[Skipped] = []

    def visit(path: Path, depth: int, top: bool) -> bool:
        if path.name.startswith(PARTIAL_PREFIX):
            skipped.append(Skipped(path, "incomplete: a run still in progress, or killed before its record was published"))
            return True
        for loader in loaders:
            # Whatever one input does to a loader — a malformed record (TypeError, KeyError, ValueError),
            # a nesting bomb (RecursionError), a huge member (MemoryError), no permission (OSError) —
            # it is that input's skip, with the reason; the other inputs go on.
            try:
                if not loader.recognizes(path):
                    continue
                runs.extend(loader.load(path))
            except LoaderError as e:
                skipped.append(Skipped(path, str(e)))
            except Exception as e:  # noqa: BLE001 — see above; a bug in a loader shows as its skip reason
                skipped.append(Skipped(path, f"unreadable ({loader.name} loader: {describe_error(e)[:300]})"))
            return True
        if depth < MAX_DEPTH and path.is_dir():
            try:
                with os.scandir(path) as entries:  # the directory entry says what it is: no stat per child
                    children = sorted((Path(e.path), e.is_dir(follow_symlinks=False), e.is_symlink()) for e in entries
                                      if not e.name.startswith(".") or e.name.startswith(PARTIAL_PREFIX))
            except OSError as e:
                skipped.append(Skipped(path, f"unreadable folder ({e.strerror or e})"))
                return True
            for child, _, is_link in children:
                if is_link:  # a link inside a runs folder could lead anywhere: never followed
                    skipped.append(Skipped(child, "a symbolic link; not followed"))
            found = [visit(c, depth + 1, False) for c, is_dir, is_link in children
                     if not is_link and (is_dir or c.suffix == ".zip")]
            if any(found):
                return True
        if top or (path.is_dir() and depth == 1):
            skipped.append(Skipped(path, "not a run record (no run.json, and no loader recognises it)"))
        return False

    for p in paths:
        p = Path(p)  # a path the user names is followed even if it is a link: it is theirs
        try:
            if not p.exists():
                skipped.append(Skipped(p, "no such file or folder"))
                continue
            visit(p, 0, True)
        except (OSError, RecursionError) as e:
            skipped.append(Skipped(p, f"unreadable ({describe_error(e)[:300]})"))
    return runs, skipped
