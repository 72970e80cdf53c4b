"""A downloaded CodaLab run bundle: the worker's working directory, with the run record inside.

`cl download <run bundle>` gives CodaLab's `stdout` and `stderr` and whatever the
command wrote — for the harness, `runs/<run_id>/` (the worker removes the mounted
dependencies `code/` and `data/` before upload). A bundle whose run never got as far
as a record is reported with the last line of its stderr, which usually says why.
"""
from __future__ import annotations

from pathlib import Path

import os
import stat

from core.bounded import open_regular
from core.record import PARTIAL_PREFIX, RUN_JSON
from results.loaders import LoadedRun, Loader, LoaderError
from results.loaders.record import RunRecordLoader

DEPENDENCY_KEYS = ("code", "data")  # mounted during the run; present only in a simulated or copied worker dir


class CodaLabBundleLoader(Loader):
    name = "codalab"

    def recognizes(self, path: Path) -> bool:
        return (path.is_dir() and (path / "stdout").is_file() and (path / "stderr").is_file()
                and not (path / RUN_JSON).exists())

    def load(self, path: Path) -> list[LoadedRun]:
        records = record_folders(path)
        if not records:
            raise LoaderError(f"CodaLab run bundle without a run record ({why_no_record(path)})")
        runs = []
        for folder in records:
            for run in RunRecordLoader().load(folder):
                runs.append(LoadedRun(run.run, run.source, self.name, run.predictions_path))
        return runs


def record_folders(bundle: Path) -> list[Path]:
    """Published record folders in a run bundle, up to three levels down (`runs/<run_id>/`)."""
    found = []
    for depth in (1, 2, 3):
        for run_json in sorted(bundle.glob("/".join(["*"] * depth) + f"/{RUN_JSON}")):
            parts = run_json.parent.relative_to(bundle).parts
            if parts[0] not in DEPENDENCY_KEYS and not any(p.startswith(".") for p in parts) \
                    and not _through_a_link(bundle, parts):
                found.append(run_json.parent)
    return found


def _through_a_link(bundle: Path, parts: tuple[str, ...]) -> bool:
    """Does the path bundle/parts pass through a symbolic link (which glob follows, and we never do)?"""
    here = bundle
    for part in parts:
        here = here / part
        if stat.S_ISLNK(os.lstat(here).st_mode):
            return True
    return False


def why_no_record(bundle: Path) -> str:
    """A line on why a run bundle has no record: a stopped run, or the end of its stderr."""
    if any(p.is_dir() and p.name.startswith(PARTIAL_PREFIX) for p in bundle.glob("*/*")):
        return "an unfinished .partial- record: the run was stopped (time or memory limit?) or is still running"
    text = ""
    try:  # only its end matters: read at most the last 64 KB of a regular file
        with open_regular(bundle / "stderr") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 65536))
            text = f.read(65536).decode("utf-8", errors="replace")
    except OSError:
        pass
    lines = [line for line in text.splitlines() if line.strip()]
    return f"stderr ends: {lines[-1].strip()[:300]}" if lines else "its stderr is empty"
