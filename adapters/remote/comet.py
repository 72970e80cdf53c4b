"""Comet from this machine: upload offline archives, fetch a logged experiment back as a record.

    python run.py push comet ARCHIVE|RECORD ...    comet_ml's own uploader, after our checks
    python run.py pull comet EXPERIMENT_KEY        the REST API -> runs/<run_id>/

An archive is untrusted until checked: comet_ml's uploader extracts it and then
uploads — and deletes — the local file each message names (`file_path`, joined to
its temporary folder with `os.path.join`, so an absolute name escapes it:
comet_ml/offline.py `_process_upload_message`). `check_archive` refuses any member
name or message path that is not a plain name of a file inside the archive, before
comet_ml opens it.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator

from adapters.comet import ARCHIVE_DIR, ASSET_FILES, KEY_HELP, CometError, comet_api_key, import_comet, is_archive, scrub
from adapters.remote import transfer
from core.errors import UsageError
from core.record import RUN_JSON, RecordWriter, read_run_json, update_run_json

MAX_MESSAGES_BYTES = 256 * 2**20


def _paths_in(message: Any) -> Iterator[str]:
    """Every string a message gives as a local path (`file_path`, `thumbnail_path`, in items too)."""
    if isinstance(message, dict):
        for key, value in message.items():
            if isinstance(value, str) and key.endswith("_path"):
                yield value
            else:
                yield from _paths_in(value)
    elif isinstance(message, list):
        for value in message:
            yield from _paths_in(value)


def check_archive(path: Path) -> None:
    """Refuse an offline archive that could make comet_ml read or delete a file outside it."""
    where = f"Comet archive {path}"
    if path.is_symlink() or not path.is_file():
        raise transfer.Refused(f"{where}: not a regular file")
    members = set(transfer.check_zip(path, where))
    if not {"experiment.json", "messages.json"} <= members:
        raise UsageError(f"{path}: not a Comet offline archive (a zip with experiment.json and messages.json)")
    with zipfile.ZipFile(path) as z:
        if z.getinfo("messages.json").file_size > MAX_MESSAGES_BYTES:
            raise transfer.Refused(f"{where}: messages.json is larger than {MAX_MESSAGES_BYTES // 2**20} MB")
        lines = z.read("messages.json").decode("utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            raise transfer.Refused(f"{where}: messages.json line {number} is not JSON") from None
        for name in _paths_in(message):
            transfer.safe_name(name, f"{where}, messages.json line {number}")
            if name not in members:
                raise transfer.Refused(f"{where}: messages.json line {number} names {name[:120]!r}, "
                                       "which is not a file in the archive")


def archives_in(path: Path) -> list[Path]:
    """The archives a command-line argument names: one zip, or those inside a record's comet/ folder."""
    if path.is_dir():
        found = sorted(p for p in (path / ARCHIVE_DIR).glob("*.zip") if is_archive(p))
        if not found:
            raise UsageError(f"{path}: no Comet offline archive in {path / ARCHIVE_DIR}")
        return found
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    if not is_archive(path):
        raise UsageError(f"{path}: not a Comet offline archive (a zip with experiment.json and messages.json)")
    return [path]


def push(paths: list[Path], *, workspace: str | None = None, project: str | None = None, force: bool = False,
         log: Callable[[str], None] = print) -> None:
    """Check, then upload offline archives with comet_ml's own uploader; record folders get their link updated."""
    archives = [archive for path in paths for archive in archives_in(path)]
    for archive in archives:
        check_archive(archive)  # every archive, before comet_ml sees any of them
    comet_ml = import_comet()
    key = comet_api_key(comet_ml)
    if not key:
        raise CometError(f"uploading needs a Comet API key: {KEY_HELP} (or add it to ~/.comet.config)")
    from comet_ml.exceptions import InvalidAPIKey, OfflineExperimentUploadFailed
    from comet_ml.offline import main_upload

    failed = []
    for archive in archives:
        try:
            main_upload([str(archive)], force_upload=force, override_workspace=workspace,
                        override_project_name=project)
        except InvalidAPIKey:
            raise CometError(f"Comet rejected the API key; {KEY_HELP}") from None
        except OfflineExperimentUploadFailed:
            failed.append(archive)
            continue
        except Exception as e:  # noqa: BLE001 — comet_ml's own errors, one line each
            log(f"error: uploading {archive} failed: {type(e).__name__}: {scrub(str(e), key)}")
            failed.append(archive)
            continue
        _mark_uploaded(archive)
        log(f"uploaded {archive}")
    if failed:
        raise CometError(f"{len(failed)} of {len(archives)} archive(s) not uploaded (see the COMET ERROR lines "
                         f"above); they are unchanged: {', '.join(map(str, failed))}")


def _mark_uploaded(archive: Path) -> None:
    """An archive inside a run record: note in its run.json that the experiment is now online."""
    record = archive.parent.parent
    if archive.parent.name != ARCHIVE_DIR or not (record / RUN_JSON).is_file():
        return
    links = read_run_json(record).get("links", {}).get("comet", {})
    if links.get("experiment_key") == archive.stem:
        update_run_json(record, {"links": {"comet": {**links, "uploaded": True}}})


def pull(experiment_key: str, runs_dir: Path, *, force: bool = False, log: Callable[[str], None] = print) -> Path | None:
    """Fetch an uploaded experiment through the REST API and adopt it as a run record."""
    import_comet()
    from results.loaders import LoaderError
    from results.loaders.comet import fetch_experiment

    try:
        loaded = fetch_experiment(experiment_key)
    except LoaderError as e:
        raise CometError(str(e)) from None
    run = loaded.run
    with transfer.staging(runs_dir, "comet-pull") as staging:
        writer = RecordWriter(staging, "record")
        for name in ("model.h5", *ASSET_FILES):
            content = loaded.read_asset(name) if name != RUN_JSON else None
            if content is not None:
                writer.path(name).write_bytes(content)
        folder = writer.publish(run)
        dest, new = transfer.adopt_record(folder, runs_dir, platform="comet", links={"experiment_key": experiment_key},
                                          force=force, log=log)
    return dest if new else None
