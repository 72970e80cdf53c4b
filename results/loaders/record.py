"""The native run record folder (see results/SCHEMA.md)."""
from __future__ import annotations

import json
from pathlib import Path

from core import record
from core.record import RUN_JSON
from results.loaders import LoadedRun, Loader, LoaderError


def validate_run(run: object, where: str) -> dict:
    """`core.record.validate_run`, its complaint as a LoaderError (a skip with a reason)."""
    try:
        return record.validate_run(run, where)
    except record.RecordError as e:
        raise LoaderError(str(e)) from None


class RunRecordLoader(Loader):
    name = "record"

    def recognizes(self, path: Path) -> bool:
        return (path / RUN_JSON).is_file()  # one stat: under a file, run.json is no file either

    def load(self, path: Path) -> list[LoadedRun]:
        try:
            run = json.loads((path / RUN_JSON).read_bytes())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise LoaderError(f"corrupt run.json ({e})") from None
        validate_run(run, str(path))
        return [LoadedRun(run, path, self.name, path / "predictions.npy")]
