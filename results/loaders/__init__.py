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
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from core.record import PARTIAL_PREFIX, read_npy
from core.registry import Registry

# Tried in order; the first loader that recognises a path loads it.
LOADERS = Registry("loader", {
    "record": "results.loaders.record:RunRecordLoader",
    "codalab": "results.loaders.codalab:CodaLabBundleLoader",
    "comet": "results.loaders.comet:CometArchiveLoader",
    "openml": "results.loaders.openml:OpenMLRunLoader",
    "beat": "results.loaders.beat:BeatBundleLoader",
})
MAX_DEPTH = 4  # how deep `discover` looks inside a folder of folders


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
        try:
            raw = self.predictions_path.read_bytes()
        except FileNotFoundError:
            return None
        return read_npy(raw, str(self.predictions_path))

    def artifact(self, name: str) -> Path | None:
        """A file of the record by name (`history.csv`, `confusion_matrix.csv`), or None if it has none."""
        path = self.source / name
        return path if path.is_file() else None


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
    return [LOADERS.load(name)() for name in LOADERS]


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
            if loader.recognizes(path):
                try:
                    runs.extend(loader.load(path))
                except LoaderError as e:
                    skipped.append(Skipped(path, str(e)))
                return True
        if depth < MAX_DEPTH and path.is_dir():
            with os.scandir(path) as entries:  # the directory entry says whether it is a folder: no stat per child
                children = sorted((Path(e.path), e.is_dir()) for e in entries
                                  if not e.name.startswith(".") or e.name.startswith(PARTIAL_PREFIX))
            found = [visit(c, depth + 1, False) for c, is_dir in children if is_dir or c.suffix == ".zip"]
            if any(found):
                return True
        if top or (path.is_dir() and depth == 1):
            skipped.append(Skipped(path, "not a run record (no run.json, and no loader recognises it)"))
        return False

    for p in paths:
        p = Path(p)
        if not p.exists():
            skipped.append(Skipped(p, "no such file or folder"))
            continue
        visit(p, 0, True)
    return runs, skipped
