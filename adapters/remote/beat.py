"""BEAT: write the prefix, run BEAT's local executor on it, turn what it wrote into a run record.

    run.py bundle beat --out DIR [spec options]   DIR/prefix, DIR/data/mnist.npz, DIR/harness, beat-bundle.json
    run.py --platform beat [spec options]         the same bundle in <runs-dir>/.beat-<run_id>/, run, adopt

A bundle folder:

    beat-bundle.json   what was bundled (spec, run id, experiment name, data digests) and the command
    prefix/            dataformats, protocoltemplates, databases, algorithms, toolchains, experiments
    data/mnist.npz     the verified MNIST rows the spec uses (the database's root_folder)
    harness/           core/ and the BEAT adapter, which BEAT's blocks import
    cache/             BEAT's cache, written by the run
    record/<run_id>/   the run record, published by the test block

Paths in the prefix are absolute (the database's root folder, the block parameters), as
BEAT wants them: a bundle runs where it was written.

Rules of BEAT relied on, from its sources (beat.core 1.13.5, beat.cmdline 1.10.3):
- `beat experiments run --environment PY` runs each block with the `execute` and
  `databases_provider` scripts next to PY (beat/core/execution/subprocess.py); `--local`
  runs them in-process and hangs when a database view raises (issue #18), so it is not used.
- The executor has no time limit of its own (cmdline/experiments.py calls `process()` with
  none), so the whole `beat` process group is killed after `--beat-timeout`.
- A block that fails makes `beat` log "Block did not execute properly" with the block's
  "Captured user error" (its traceback) and exit 1 (cmdline/experiments.py run_experiment).
- A block whose outputs are in the cache is skipped (same file); each run has its own cache.
"""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from adapters.remote import transfer
from core.data import SHAPES, Mnist, array_sha256, file_sha256
from core.environment import HARNESS_ROOT, HARNESS_STAMP, git_state
from core.errors import HarnessError, UsageError
from core.record import (PARTIAL_PREFIX, RUN_JSON, SCHEMA_VERSION, new_run_id, read_run_json,
                         utc_now, write_json)
from core.spec import ExperimentSpec

TEMPLATES = HARNESS_ROOT / "platforms" / "beat"
BEAT_VENV = HARNESS_ROOT / ".venv-beat"
BEAT_STAMP = BEAT_VENV / ".installed"  # written by `make beat-env` when the install finished
BUNDLE_INFO = "beat-bundle.json"
BUNDLE_VERSION = 1
USER = "harness"  # the BEAT user owning the algorithms, data formats and toolchain
TOOLCHAIN = f"{USER}/mnist/1"
DATABASE_FILE = "mnist.npz"
ROWS_PER_UNIT = 1000  # images per BEAT data unit (platforms/beat/prefix/databases/mnist/1.py says why)
LOG = "beat.log"
RESULTS_TIMEOUT_S = 600
NAME_PART = re.compile(r"[^a-zA-Z0-9_-]+")  # BEAT names: ^[a-zA-Z0-9_-]+ (beat/core/schema/common/1.json)


class BeatError(HarnessError):
    """BEAT could not be set up or run; `record` is the failed record, when one was published."""

    exit_code = 4

    def __init__(self, message: str, record: Path | None = None):
        super().__init__(message)
        self.record = record


# --- The BEAT environment -----------------------------------------------------------------------

def resolve_python(requested: str | None, log: Callable[[str], None] = print) -> Path:
    """The interpreter BEAT's blocks run in: --beat-python, else .venv-beat (built on first use)."""
    if requested:
        python = Path(requested)
        missing = [p for p in (python, python.parent / "beat", python.parent / "execute",
                               python.parent / "databases_provider") if not p.is_file()]
        if missing:
            raise UsageError(f"--beat-python {requested}: {missing[0]} does not exist; it must be the python of a "
                             "venv with platforms/beat/requirements.txt installed (make beat-env builds one)")
        return python
    if not BEAT_STAMP.is_file():
        build_log = HARNESS_ROOT / ".venv-beat.log"
        log(f"[beat] building the BEAT environment {BEAT_VENV.name}/ (once, a few minutes): make beat-env "
            f"(log: {build_log.name})")
        with open(build_log, "w") as f:
            rc = subprocess.run(["make", "-C", str(HARNESS_ROOT), "beat-env"], stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL).returncode
        if rc != 0 or not BEAT_STAMP.is_file():
            raise BeatError(f"`make beat-env` failed (exit {rc}): {_last_line(build_log.read_text(errors='replace'))}"
                            f" — see {build_log}")
    return BEAT_VENV / "bin" / "python"


# --- The bundle -----------------------------------------------------------------------------------

def experiment_name(spec: ExperimentSpec) -> str:
    """`harness/harness/mnist/1/<spec>_<hash8>`: USER/TOOLCHAIN_USER/TOOLCHAIN/VERSION/NAME."""
    return f"{USER}/{TOOLCHAIN}/{NAME_PART.sub('_', spec.name).strip('_') or 'spec'}_{spec.short_hash}"


def write_mnist_npz(arrays: dict[str, np.ndarray], path: Path) -> None:
    """The arrays in Keras's mnist.npz layout, stored, with fixed zip times: the same bytes every time."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for name in SHAPES:
            member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with z.open(member, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arrays[name]), allow_pickle=False)


def harness_members() -> dict[str, bytes]:
    """The harness a bundle carries (transfer's one file set) and its commit stamp: BEAT's blocks import it."""
    members = transfer.read_members(transfer.harness_files())
    members[HARNESS_STAMP] = transfer.harness_stamp()[1]  # no git in the copy
    return members


def write_members(folder: Path, members: dict[str, bytes]) -> None:
    for name, blob in members.items():
        target = folder / transfer.safe_name(name, "the BEAT bundle")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob)


def write_bundle(folder: Path, spec: ExperimentSpec, mnist: Mnist, *, run_id: str, deterministic: bool = True,
                 final: Path | None = None) -> dict:
    """Write a complete BEAT prefix and its data into the empty `folder`; returns beat-bundle.json.

    Paths inside (the database's root folder, the blocks' parameters) name `final`, where
    the bundle will be run (default: `folder` itself); every file but the data is scanned
    for secrets, by name and by value, before anything is written.
    """
    from core.experiment import split_sizes

    out = (final or folder).resolve()
    data = mnist.limited(spec.data.train_limit, spec.data.test_limit)
    n_train, n_val = split_sizes(len(data.x_train), spec.split)
    if n_val == 0 or n_train == 0:
        raise UsageError(f"split {spec.split} of {len(data.x_train)} images leaves {n_train} to train and {n_val} "
                         "to validate; the BEAT toolchain needs both sets (a BEAT set cannot be empty)")
    digests = {k: (data.digests or {}).get(k) or array_sha256(v) for k, v in data.arrays().items()}
    name = experiment_name(spec)

    prefix = folder / "prefix"
    shutil.copytree(TEMPLATES / "prefix", prefix, ignore=shutil.ignore_patterns("*.template.json", "__pycache__"))
    (folder / "data").mkdir()
    write_mnist_npz(data.arrays(), folder / "data" / DATABASE_FILE)
    data_sha = file_sha256(folder / "data" / DATABASE_FILE)

    database = json.loads((TEMPLATES / "prefix" / "databases" / "mnist" / "1.template.json").read_text())
    database["root_folder"] = str(out / "data")
    rows = {"train": ("train", 0, n_train), "validation": ("train", n_train, n_train + n_val),
            "test": ("test", 0, len(data.x_test))}
    for set_name, view in database["protocols"][0]["views"].items():
        member, start, stop = rows[set_name]
        view["parameters"] = {"member": member, "start": start, "stop": stop, "rows_per_unit": ROWS_PER_UNIT,
                              "file": DATABASE_FILE, "sha256": data_sha}

    harness_dir = out / "harness"
    harness = harness_members()
    run = {"run_id": run_id, "experiment": name, "spec": spec.to_dict(), "spec_hash": spec.hash,
           "deterministic": deterministic, "record_dir": str(out / "record"),
           "data": {"source": data.source, "verified_by": data.verified_by}, "data_digest": data.digest(),
           "digests": digests}
    parameters = {"harness": str(harness_dir), "run": json.dumps(run, sort_keys=True)}
    experiment = json.loads((TEMPLATES / "experiment.template.json").read_text())
    experiment["description"] = f"{spec.name} (spec {spec.short_hash}), mnist-repro harness run {run_id}"
    for block in experiment["blocks"].values():
        block["parameters"] = parameters
    generated = {f"prefix/experiments/{name}.json": json.dumps(experiment, indent=2).encode() + b"\n",
                 "prefix/databases/mnist/1.json": json.dumps(database, indent=2).encode() + b"\n"}

    info = {"bundle_version": BUNDLE_VERSION, "built_at": utc_now(), "harness": git_state(),
            "spec": {"name": spec.name, "hash": spec.hash}, "run_id": run_id, "experiment": name,
            "prefix": "prefix", "cache": "cache", "record_dir": "record",
            "data": {"file": f"data/{DATABASE_FILE}", "sha256": data_sha, "data_digest": data.digest(),
                     "source": data.source, "verified_by": data.verified_by,
                     "n_train": n_train, "n_validation": n_val, "n_test": len(data.x_test)},
            "harness_files": len(harness), "deterministic": deterministic}
    generated[BUNDLE_INFO] = json.dumps(info, indent=2).encode() + b"\n"
    templates = {f"prefix/{p.relative_to(prefix).as_posix()}": p.read_bytes() for p in prefix.rglob("*") if p.is_file()}
    transfer.scan_secrets({**templates, **generated, **{f"harness/{k}": v for k, v in harness.items()}},
                          "the BEAT bundle")
    write_members(folder, generated)
    write_members(folder / "harness", harness)
    return info


def beat_command(out: Path, info: dict[str, Any], python: Path) -> list[str]:
    """`beat --prefix P --cache C experiments run --environment PY NAME`, with BEAT's log messages (-vv)."""
    out = out.resolve()
    return [str(python.parent / "beat"), "-vv", "--prefix", str(out / info["prefix"]), "--cache",
            str(out / info["cache"]), "experiments", "run", "--environment", str(python), info["experiment"]]


def bundle(out: Path, spec: ExperimentSpec, mnist: Mnist, *, deterministic: bool = True) -> dict[str, Any]:
    """`run.py bundle beat`: a new bundle folder `out` (written aside, renamed into place); returns its info."""
    run_id = new_run_id("beat", spec.hash)
    return transfer.write_new_folder(out, lambda folder: write_bundle(folder, spec, mnist, run_id=run_id,
                                                                      deterministic=deterministic, final=out))


# --- Running BEAT ----------------------------------------------------------------------------------

def run_executor(cmd: list[str], log_path: Path, timeout_s: float) -> tuple[int | None, float]:
    """Run `beat` in its own process group, output to `log_path`; (exit code or None on timeout, seconds).

    BEAT's executor starts `execute` and `databases_provider` children; on a timeout or
    Ctrl-C the whole group is stopped, so nothing is left running.
    """
    started = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _stop_group(proc)
            return None, time.perf_counter() - started
        except BaseException:
            _stop_group(proc)
            raise
    return rc, time.perf_counter() - started


def _stop_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            # children may outlive the leader for a moment; the next signal reaches them too
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:400] if lines else "(no output)"


# An exception's name starts with a capital: that finds it where BEAT glued it to a source line.
EXCEPTION = re.compile(r"([A-Z][A-Za-z0-9_]*(?:Error|Exception|Exit|Interrupt|Failed)): ([^\n]*)")


def beat_error_line(log_text: str, traceback_text: str | None = None) -> str:
    """The line that says why BEAT failed, naming the block: `block `training`: ValueError: ...`.

    BEAT logs a failed block's "Captured user error" as the repr of its traceback text, on
    one line, with the exception glued to the last source line (beat/backend/python/
    execution/messagehandlers.py); the block's own traceback file, when there is one, is
    read instead.
    """
    blocks = re.findall(r"for block `([^']+)'", log_text)
    where = f"block `{blocks[-1]}`: " if blocks and "did not execute properly" in log_text else ""
    for text in (traceback_text, _captured(log_text, "Captured user error:"), _captured(log_text, "Captured system error:")):
        if text and text.strip():
            found = EXCEPTION.findall(text)
            return where + (f"{found[-1][0]}: {found[-1][1]}"[:400] if found else _last_line(text))
    errors = [line for line in log_text.splitlines() if re.search(r"error|Error|failed|Failed", line)]
    return where + (_last_line(errors[-1]) if errors else _last_line(log_text))


def _captured(log_text: str, section: str) -> str:
    """One "Captured ... error" section of BEAT's log, unescaped when BEAT logged it as a repr."""
    if section not in log_text:
        return ""
    body = re.split(r"\n  (?:Captured (?:user|system) error:|Environment:)|\nError: ", log_text.split(section, 1)[1])[0]
    body = body.strip()
    if len(body) >= 2 and body[0] == body[-1] and body[0] in "'\"":
        try:
            body = ast.literal_eval(body)
        except (ValueError, SyntaxError):
            pass
    return body if isinstance(body, str) else str(body)


def read_beat_results(python: Path, out: Path, info: dict[str, Any]) -> dict[str, Any]:
    """The analyzer's results from BEAT's cache, read in the BEAT venv (adapters/beat.py read_results)."""
    out = out.resolve()
    proc = subprocess.run([str(python), "-m", "adapters.beat", "results", str(out / info["prefix"]),
                           str(out / info["cache"]), info["experiment"]], cwd=out / "harness",
                          capture_output=True, text=True, timeout=RESULTS_TIMEOUT_S, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise BeatError(f"reading BEAT's results failed: {_last_line(proc.stderr or proc.stdout)}")
    return json.loads(proc.stdout)


def check_results(record: Path, beat: dict[str, Any]) -> dict[str, bool]:
    """Does BEAT's analyzer agree with the record the test block wrote? One flag per quantity."""
    run = read_run_json(record)
    results = beat["results"]
    exact = json.loads(results["metrics_json"])
    confusion = [[int(v) for v in row[1:]] for row in
                 (line.split(",") for line in (record / "confusion_matrix.csv").read_text().splitlines()[1:])]
    return {"test_accuracy": exact["test_accuracy"] == run["metrics"]["test_accuracy"],
            "test_loss": exact["test_loss"] == run["metrics"]["test_loss"],
            "confusion_matrix": json.loads(results["confusion_matrix"]) == confusion,
            "predictions_sha256": results["predictions_sha256"] == run["predictions_sha256"]}


def run_spec(spec: ExperimentSpec, mnist: Mnist, runs_dir: Path, *, deterministic: bool = True,
             beat_python: str | None = None, timeout_s: float = 4 * 3600, keep: bool = False,
             log: Callable[[str], None] = print) -> Path:
    """`--platform beat`: bundle into <runs_dir>/.beat-<run_id>, run BEAT, publish the record; returns it."""
    if timeout_s <= 0:
        raise UsageError(f"--beat-timeout must be positive, got {timeout_s}")
    python = resolve_python(beat_python, log)
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    run_id = new_run_id("beat", spec.hash)
    work = runs_dir / f".beat-{run_id}"  # hidden: `compare runs/` does not read it
    work.mkdir()
    started_at = utc_now()
    info = write_bundle(work, spec, mnist, run_id=run_id, deterministic=deterministic)
    cmd = beat_command(work, info, python)
    log(f"[beat] {run_id}: experiment {info['experiment']} ({info['data']['n_train']} train / "
        f"{info['data']['n_validation']} validation / {info['data']['n_test']} test images), "
        f"BEAT's executor with {python}")
    try:
        rc, seconds = run_executor(cmd, work / LOG, timeout_s)
    except KeyboardInterrupt:
        _publish_unfinished(work, info, spec, runs_dir, "interrupted", "KeyboardInterrupt: BEAT was stopped",
                            started_at, log)
        raise
    log_text = (work / LOG).read_text(errors="replace")
    final = work / info["record_dir"] / run_id
    links: dict[str, Any] = {"experiment": info["experiment"], "executor_exit": rc,
                             "wall_seconds": round(seconds, 3), "command": cmd[1:]}

    if final.is_dir() and (final / RUN_JSON).is_file():  # the test block published a complete record
        if rc == 0:
            try:
                beat = read_beat_results(python, work, info)
                links["results"] = beat["results"]
                links["agrees_with_record"] = check_results(final, beat)
                if not all(links["agrees_with_record"].values()):
                    log(f"[beat] BEAT's analyzer disagrees with the record on "
                        f"{', '.join(k for k, ok in links['agrees_with_record'].items() if not ok)}")
            except (BeatError, OSError, subprocess.TimeoutExpired, ValueError, KeyError) as e:
                links["results_error"] = str(e)
        else:
            links["results_error"] = (f"BEAT stopped after the record was complete: "
                                      f"{'timed out' if rc is None else beat_error_line(log_text)}")
        if "results_error" in links:
            log(f"[beat] {links['results_error']} — the run record is complete")
        record = _adopt(final, work, runs_dir, links)
        _clean(work, keep, log)
        log(f"[run] record completed: {record}")
        return record

    why = (f"BEAT timed out after {timeout_s:g} s" if rc is None
           else f"BEAT failed in {beat_error_line(log_text, _block_traceback(work, info))}")
    record = _publish_unfinished(work, info, spec, runs_dir, "failed", why, started_at, log, links)
    raise BeatError(f"{why} — the failed record is {record}; BEAT's prefix, cache and log: {work}", record)


def _block_traceback(work: Path, info: dict[str, Any]) -> str | None:
    """The traceback a failed block left in the record folder (adapters/beat.py), if any."""
    from adapters.beat import BEAT_DIR, ERROR_FILES

    folder = work / info["record_dir"] / f"{PARTIAL_PREFIX}{info['run_id']}" / BEAT_DIR
    for name in ERROR_FILES:
        if (folder / name).is_file():
            return (folder / name).read_text(errors="replace")
    return None


def _adopt(record: Path, work: Path, runs_dir: Path, links: dict[str, Any]) -> Path:
    """Move the record BEAT's blocks wrote into runs_dir (transfer.adopt_record: checked whole, then
    one rename), with BEAT's log, experiment declaration and bundle info in its `beat/` folder."""
    info = json.loads((work / BUNDLE_INFO).read_text())
    extras = {f"beat/{LOG}": work / LOG, f"beat/{BUNDLE_INFO}": work / BUNDLE_INFO,
              "beat/experiment.json": work / info["prefix"] / "experiments" / f"{info['experiment']}.json"}
    try:
        dest, _ = transfer.adopt_record(record, runs_dir, platform="beat", links=links, extras=extras)
    except HarnessError as e:
        raise BeatError(f"the record BEAT's blocks wrote was not adopted ({e}); it stays at {record}") from None
    try:  # a kept bundle says where its record went (results/loaders/beat.py reports it)
        write_json(work / BUNDLE_INFO, {**info, "adopted_to": str(dest.resolve())})
    except OSError:
        pass
    return dest


def _publish_unfinished(work: Path, info: dict[str, Any], spec: ExperimentSpec, runs_dir: Path, status: str,
                        error: str, started_at: str, log: Callable[[str], None],
                        links: dict[str, Any] | None = None) -> Path:
    """A `failed`/`interrupted` record from what BEAT's blocks left: the trained model when training finished."""
    from adapters.beat import BEAT_DIR, TRAIN_JSON

    run_id = info["run_id"]
    partial = work / info["record_dir"] / f"{PARTIAL_PREFIX}{run_id}"
    partial.mkdir(parents=True, exist_ok=True)
    trained_path = partial / BEAT_DIR / TRAIN_JSON
    trained = json.loads(trained_path.read_text()) if trained_path.is_file() else {}
    block_traceback = _block_traceback(work, info)
    history = trained.get("history", {})
    epoch_seconds = trained.get("epoch_seconds", [])
    if trained:
        error += " (training had finished: model.h5 and history.csv are in this record)"
    run = {
        "schema_version": SCHEMA_VERSION, "run_id": run_id, "platform": "beat", "status": status,
        "started_at": trained.get("started_at", started_at), "finished_at": utc_now(), "spec": spec.to_dict(),
        "spec_hash": spec.hash, "data_digest": info["data"]["data_digest"],
        "data": {"source": info["data"].get("source"), "verified_by": info["data"].get("verified_by"),
                 "n_train": info["data"]["n_train"] + info["data"]["n_validation"], "n_test": info["data"]["n_test"]},
        "seed": spec.seed, "determinism": trained.get("determinism", {}),
        "environment": trained.get("environment", {}),
        "timings": {"epoch_seconds": epoch_seconds, "total_seconds": trained.get("train_seconds"),
                    "mean_epoch_seconds": sum(epoch_seconds) / len(epoch_seconds) if epoch_seconds else None},
        "metrics": {f"final_{k}": v[-1] for k, v in history.items() if v},
        "weights_sha256": trained.get("weights_sha256"), "predictions_sha256": None,
        "error": error, "history": history or None,
        "links": {"beat": {"experiment": info["experiment"], **(links or {})}},
    }
    if block_traceback:
        run["traceback"] = block_traceback[-20000:]
    for stray in ("predictions.npy", "confusion_matrix.csv"):  # a test block stopped half-way
        (partial / stray).unlink(missing_ok=True)
    (partial / BEAT_DIR).mkdir(exist_ok=True)
    if (work / LOG).is_file():
        shutil.copy2(work / LOG, partial / BEAT_DIR / LOG)
    write_json(partial / RUN_JSON, run)
    dest = runs_dir / run_id
    os.replace(partial, dest)
    log(f"[run] record {status}: {dest}")
    return dest


def _clean(work: Path, keep: bool, log: Callable[[str], None]) -> None:
    if keep:
        log(f"[beat] BEAT's prefix, cache and data kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
