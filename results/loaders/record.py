"""The native run record folder (see results/SCHEMA.md)."""
from __future__ import annotations

import json
from pathlib import Path

from core.bounded import ReadRefused
from core.record import RUN_JSON, SCHEMA_VERSION, STATUSES, read_run_json
from results.loaders import LoadedRun, Loader, LoaderError

REQUIRED_KEYS = ("schema_version", "run_id", "platform", "status", "spec", "spec_hash")


def validate_run(run: object, where: str) -> dict:
    """The checks every loader applies to a run.json-shaped dict."""
    if not isinstance(run, dict):
        raise LoaderError(f"{where}: run.json is not a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in run]
    if missing:
        raise LoaderError(f"{where}: run.json lacks {', '.join(missing)}")
    version = run["schema_version"]
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise LoaderError(f"record schema version {str(version)[:20]} is newer than this harness reads ({SCHEMA_VERSION}); upgrade the harness")
    if run["status"] not in STATUSES:
        raise LoaderError(f"unknown status {str(run['status'])[:40]!r}")
    return run


class RunRecordLoader(Loader):
    name = "record"

    def recognizes(self, path: Path) -> bool:
        return (path / RUN_JSON).is_file()  # one stat: under a file, run.json is no file either

    def load(self, path: Path) -> list[LoadedRun]:
        try:
            run = read_run_json(path)  # bounded, a regular file, no link followed
        except ReadRefused as e:
            raise LoaderError(f"refused: {e}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise LoaderError(f"corrupt run.json ({e})") from None
        except RecursionError:
            raise LoaderError("corrupt run.json (nested too deeply)") from None
        validate_run(run, str(path))
        return [LoadedRun(run, path, self.name, path / "predictions.npy")]
