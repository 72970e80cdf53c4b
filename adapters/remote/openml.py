"""OpenML from this machine: publish a run saved in a record, later.

    python run.py push openml RUN_DIR          publish the record's saved OpenML run (needs an API key)
    python run.py push openml --holdout-task   create the official-split task (see platforms/openml/README.md)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from adapters.openml import SAVED_RUN_DIR, openml_client, publish_holdout_task, publish_saved_run
from core.errors import UsageError
from core.record import RUN_JSON, read_run_json, update_run_json


def push_run(run_dir: Path, *, server: str | None = None, cache: str | None = None,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Publish the saved OpenML run of a completed record and link its ids in run.json; returns the links."""
    record = run_dir.resolve()
    if record.name == SAVED_RUN_DIR and (record.parent / RUN_JSON).is_file():
        record = record.parent
    if not (record / SAVED_RUN_DIR / "description.xml").is_file():
        raise UsageError(f"{run_dir}: no saved OpenML run ({SAVED_RUN_DIR}/description.xml); "
                         "it is written by `run.py --platform openml`")
    run = read_run_json(record)
    if run.get("status") != "completed":
        raise UsageError(f"{record}: the run is {run.get('status')}, not completed; not publishing it")
    openml_client(cache, server)
    links = publish_saved_run(record, log)
    update_run_json(record, {"links": {"openml": links}})
    log(f"linked in {record / RUN_JSON}: flow {links['flow_id']}, run {links['run_id']}")
    return links


def push_holdout_task(estimation_procedure: int | None, *, server: str | None = None, cache: str | None = None,
                      log: Callable[[str], None] = print) -> int:
    openml_client(cache, server)
    return publish_holdout_task(estimation_procedure, log)
