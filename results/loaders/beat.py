"""A BEAT bundle folder (`run.py bundle beat --out DIR`) after BEAT ran it: the record inside.

The bundle's test block publishes the run record into `DIR/record/<run_id>/` (see
adapters/remote/beat.py); BEAT's own files (prefix/, cache/) are not read. A bundle
that BEAT has not run, or that it stopped half-way, is reported with the reason.
"""
from __future__ import annotations

import json
from pathlib import Path

from core.record import PARTIAL_PREFIX, RUN_JSON
from results.loaders import LoadedRun, Loader, LoaderError
from results.loaders.record import RunRecordLoader

BUNDLE_INFO = "beat-bundle.json"
MAX_INFO_BYTES = 1 << 20  # beat-bundle.json is a few hundred bytes; anything bigger is not ours


class BeatBundleLoader(Loader):
    name = "beat"

    def recognizes(self, path: Path) -> bool:
        return path.is_dir() and (path / BUNDLE_INFO).is_file() and not (path / RUN_JSON).exists()

    def load(self, path: Path) -> list[LoadedRun]:
        info_path = path / BUNDLE_INFO
        try:
            if info_path.is_symlink() or info_path.stat().st_size > MAX_INFO_BYTES:
                raise LoaderError(f"{BUNDLE_INFO} is a link or too large")
            info = json.loads(info_path.read_bytes())
            record_dir = info["record_dir"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise LoaderError(f"BEAT bundle with an unreadable {BUNDLE_INFO} ({e})") from None
        if not isinstance(record_dir, str) or Path(record_dir).is_absolute() or ".." in Path(record_dir).parts:
            raise LoaderError(f"{BUNDLE_INFO}: record_dir {record_dir!r} points outside the bundle")
        records = path / record_dir
        if records.is_symlink():
            raise LoaderError(f"{records} is a link; a bundle's records are read only from inside it")
        found = sorted(p for p in records.glob(f"*/{RUN_JSON}")
                       if not p.parent.name.startswith(".") and not p.parent.is_symlink()) if records.is_dir() else []
        if not found:
            unfinished = records.is_dir() and any(p.name.startswith(PARTIAL_PREFIX) for p in records.iterdir())
            if isinstance(info.get("adopted_to"), str):
                why = f"its record was moved to {info['adopted_to']} by `run.py --platform beat`"
            elif unfinished:
                why = "an unfinished .partial- record (BEAT stopped, or is still running; see its log)"
            else:
                why = "BEAT has not run it yet (`run.py bundle beat` printed the command)"
            raise LoaderError(f"BEAT bundle without a run record: {why}")
        runs = []
        for run_json in found:
            for run in RunRecordLoader().load(run_json.parent):
                runs.append(LoadedRun(run.run, run.source, self.name, run.predictions_path))
        return runs
