"""Comet: the run trains on this machine and is logged to Comet as it goes.

Online when an API key is set (COMET_API_KEY or ~/.comet.config), otherwise —
or when Comet cannot be reached — a `comet_ml.OfflineExperiment` archive inside
the run record, `<record>/comet/<experiment key>.zip`, that
`python run.py push comet ARCHIVE` uploads later.

Everything is logged explicitly, and every Comet auto-logger is off. comet_ml
patches `keras.Model.fit` through an import hook, so what it logs depends on
import order: keras imported before comet_ml, nothing is patched and nothing
logged; after, `fit` logs its own metrics and parameters, beside ours (twice,
under other names). Logging by hand makes what Comet holds the same on every
platform and in every import order, and lets it mirror the run record:

    before training   parameters: the spec, flattened (`optimizer.learning_rate`); others: `spec_hash`,
                      `status=running`; tags: `platform:comet`, `backend:<keras backend>`, `spec:<short hash>`
    each epoch        metrics: the Keras history keys, with epoch and step (`CometEpochLogger`)
    after the record  name: the run id; others: `run_id`, `status`, `data_digest`, `seed`, `weights_sha256`,
                      `predictions_sha256`, `data.*`, `determinism.*`, `timings.*`; metrics: `test_accuracy`,
                      `test_loss`, `epoch_seconds` per epoch; the confusion matrix; `model.h5` as a model;
                      `environment.json`, `run.json`, `history.csv`, `model.yaml`, `predictions.npy`,
                      `confusion_matrix.csv` as assets

`results/loaders/comet.py` reads this back into a run record. The API key is
read by comet_ml itself and never passed to anything the harness writes.
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from adapters.base import Option, Platform, default_data
from core import backend
from core.data import Mnist
from core.errors import HarnessError
from core.record import SCHEMA_VERSION, flatten, read_run_json, zip_names
from core.spec import ExperimentSpec

ARCHIVE_DIR = "comet"                 # inside the run record
UNFINISHED_DIR = "comet-unfinished"   # inside runs/: archives of runs that failed before their record was complete
DEFAULT_PROJECT = "mnist-harness"
# The names this module logs under; `results/loaders/comet.py` reads the same names back
# (tests/adapters/test_comet.py checks that the two agree).
ARCHIVE_FILES = ("experiment.json", "messages.json")
TEST_METRICS = ("test_accuracy", "test_loss")
EPOCH_SECONDS = "epoch_seconds"
ENVIRONMENT_ASSET = "environment.json"
NESTED_OTHERS = ("data", "determinism", "timings")  # record keys logged as others `<key>.<subkey>`
ASSET_FILES = ("run.json", "history.csv", "model.yaml", "predictions.npy", "confusion_matrix.csv")
RECORD_OTHERS = ("run_id", "status", "error", "started_at", "finished_at", "spec_hash", "data_digest", "seed",
                 "weights_sha256", "predictions_sha256", "schema_version")
KEY_HELP = "get a key at https://www.comet.com/account-settings/apiKeys and set COMET_API_KEY"
# Every automatic collector off (see the module docstring): no fit patching, no argv, source, git patch,
# stdout capture, host/IP/user details or system metrics — only what the harness logs.
EXPLICIT_ONLY = dict(
    auto_metric_logging=False, auto_param_logging=False, auto_output_logging=False, parse_args=False,
    log_code=False, log_graph=False, log_git_metadata=False, log_git_patch=False, log_env_details=False,
    log_env_gpu=False, log_env_cpu=False, log_env_host=False, log_env_network=False, log_env_disk=False,
    auto_log_co2=False, display_summary_level=0,
)


class CometError(HarnessError):
    """Comet refused or failed; the run record is unaffected."""


def import_comet():
    """comet_ml, imported with its import hooks and error reporting to Sentry off."""
    os.environ["COMET_DISABLE_AUTO_LOGGING"] = "1"  # must precede the first import to stop the fit patching
    os.environ.setdefault("COMET_ERROR_TRACKING_ENABLE", "false")  # no crash reports to a third party
    try:
        import comet_ml
    except ImportError:
        raise HarnessError("the comet platform needs comet_ml: pip install comet_ml (it is in requirements.txt)") from None
    return comet_ml


def comet_api_key(comet_ml) -> str | None:
    """The key comet_ml itself would use: COMET_API_KEY, else ~/.comet.config."""
    return comet_ml.config.get_api_key(None, comet_ml.get_config())


def scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "<redacted>") if secret else text


def is_archive(path: Path) -> bool:
    """A zip holding Comet's experiment.json and messages.json (comet_ml also leaves empty placeholders)."""
    return path.suffix == ".zip" and set(ARCHIVE_FILES) <= zip_names(path)


class CometPlatform(Platform):
    name = "comet"
    OPTIONS = (
        Option("--comet-workspace", metavar="NAME",
               help="Comet workspace (default: $COMET_WORKSPACE, else your default workspace)"),
        Option("--comet-project", metavar="NAME",
               help=f"Comet project (default: $COMET_PROJECT_NAME, else {DEFAULT_PROJECT})"),
        Option("--comet-offline", action="store_true", help="write an offline archive even when an API key is set"),
    )

    def __init__(self, options: argparse.Namespace, log: Callable[[str], None] = print):
        super().__init__(options, log)
        self.session: CometSession | None = None

    def load_data(self, spec: ExperimentSpec) -> Mnist:
        return default_data(spec, self.log)

    def callbacks(self, spec: ExperimentSpec) -> list:
        """Start the Comet experiment (it must exist before training) and return its epoch logger."""
        self.session = CometSession.start(
            spec, log=self.log, offline=bool(self.option("comet_offline", False)),
            workspace=self.option("comet_workspace") or os.environ.get("COMET_WORKSPACE"),
            project=self.option("comet_project") or os.environ.get("COMET_PROJECT_NAME") or DEFAULT_PROJECT)
        return [self.session.epoch_logger()]

    def publish(self, record_dir: Path) -> dict[str, Any] | None:
        session, self.session = self.session, None
        if session is None:
            raise CometError("no Comet experiment was started for this run")
        return session.finish(record_dir)

    def finalize(self, record_dir: Path | None, status: str) -> None:
        """A run that did not complete still ends its Comet experiment, and its archive is kept."""
        session, self.session = self.session, None
        if session is None:  # published, or never started
            return None
        error = None
        if record_dir is not None:
            try:
                error = read_run_json(record_dir).get("error")
            except (OSError, ValueError):
                pass
        session.abandon(self.runs_dir() / UNFINISHED_DIR, status, error)
        return None


class CometSession:
    """One Comet experiment: created before training, ended once the record is complete."""

    def __init__(self, experiment, mode: str, scratch: Path, log: Callable[[str], None], note: str | None):
        self.experiment = experiment
        self.mode = mode            # "online" or "offline"
        self.scratch = scratch      # comet_ml's offline directory until the record folder exists
        self.log = log
        self.note = note            # why an online run went offline
        self.steps: dict[int, int] = {}  # epoch -> global step at its end

    @classmethod
    def start(cls, spec: ExperimentSpec, *, workspace: str | None, project: str | None, offline: bool,
              log: Callable[[str], None]) -> "CometSession":
        comet_ml = import_comet()
        key = None if offline else comet_api_key(comet_ml)
        scratch = Path(tempfile.mkdtemp(prefix="harness-comet-"))
        settings = dict(EXPLICIT_ONLY, workspace=workspace, project_name=project, offline_directory=str(scratch))
        experiment, note = None, None
        if key:
            try:
                experiment = comet_ml.Experiment(**settings)  # comet_ml reads the key itself
            except Exception as e:  # noqa: BLE001 — a rejected key or workspace must not stop the run
                note = f"Comet refused the experiment ({type(e).__name__}: {scrub(str(e), key)})"
            else:
                if not experiment.alive:  # comet_ml logs the connection error and would drop every message
                    experiment.end()
                    experiment = None
                    note = f"could not reach Comet at {comet_ml.config.get_comet_url_override(comet_ml.get_config())}"
        if experiment is None:
            if note:
                log(f"[comet] {note}; logging to an offline archive instead (upload it later: "
                    f"python run.py push comet ARCHIVE)")
            try:
                experiment = comet_ml.OfflineExperiment(**settings)
            except Exception as e:  # noqa: BLE001 — e.g. an unwritable temporary folder; nothing has run yet
                shutil.rmtree(scratch, ignore_errors=True)
                raise CometError(f"could not start a Comet offline experiment: {type(e).__name__}: {e}") from None
        session = cls(experiment, "offline" if note or not key else "online", scratch, log, note)
        session.log_spec(spec)
        log(f"[comet] {session.mode} experiment {experiment.get_key()}"
            + (f": {experiment.url}" if session.mode == "online" else ""))
        return session

    def log_spec(self, spec: ExperimentSpec) -> None:
        exp = self.experiment
        exp.add_tags(["platform:comet", f"backend:{backend.backend_name()}", f"spec:{spec.short_hash}"])
        exp.log_parameters(flatten(spec.to_dict()))
        exp.log_others({"spec_hash": spec.hash, "status": "running", "schema_version": SCHEMA_VERSION})

    def epoch_logger(self):
        """A Keras callback that logs each epoch's training and validation metrics, with epoch and step."""
        import keras

        session = self

        class CometEpochLogger(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                step = (epoch + 1) * (self.params.get("steps") or 0)
                session.steps[epoch + 1] = step
                session.experiment.log_metrics({k: float(v) for k, v in (logs or {}).items()},
                                               epoch=epoch + 1, step=step)

        return CometEpochLogger()

    # --- after the record is complete -------------------------------------------------

    def finish(self, record_dir: Path) -> dict[str, Any]:
        """Log the record, end the experiment, keep its archive in the record; returns the links for run.json."""
        error = None
        try:
            self.log_record(record_dir)
        except Exception as e:  # noqa: BLE001 — reported in the links; the record stays as it is
            error = f"logging to Comet failed: {type(e).__name__}: {e}"
            self.log(f"[comet] {error}")
        archive, end_error = self.end(record_dir / ARCHIVE_DIR)
        links: dict[str, Any] = {"experiment_key": self.experiment.get_key(), "mode": self.mode,
                                 "workspace": self.experiment.workspace, "project": self.experiment.project_name}
        if self.mode == "online":
            links["url"] = self.experiment.url
        if self.note:
            links["offline_reason"] = self.note
        if archive:
            links["archive"] = archive.relative_to(record_dir).as_posix()
            self.log(f"[comet] offline archive: {archive} (upload: python run.py push comet {archive})")
        if error or end_error:
            links["publish_error"] = "; ".join(e for e in (error, end_error) if e)
        return links

    def log_record(self, record_dir: Path) -> None:
        exp, run = self.experiment, read_run_json(record_dir)
        exp.set_name(run["run_id"])
        others = {k: run.get(k) for k in RECORD_OTHERS}
        for key in NESTED_OTHERS:
            others.update(flatten({k: v for k, v in (run.get(key) or {}).items() if k != "epoch_seconds"}, f"{key}."))
        exp.log_others({k: v for k, v in others.items() if v is not None})

        last_epoch = len(run["timings"].get("epoch_seconds") or [])
        last_step = self.steps.get(last_epoch, 0)
        for epoch, seconds in enumerate(run["timings"].get("epoch_seconds") or [], 1):
            exp.log_metric(EPOCH_SECONDS, seconds, epoch=epoch, step=self.steps.get(epoch, 0))
        exp.log_metrics({k: run["metrics"][k] for k in TEST_METRICS if k in run["metrics"]},
                        epoch=last_epoch, step=last_step)

        with open(record_dir / "confusion_matrix.csv", newline="") as f:
            rows = list(csv.reader(f))
        exp.log_confusion_matrix(matrix=[[int(v) for v in row[1:]] for row in rows[1:]], labels=rows[0][1:],
                                 title="Test set (rows: true digit, columns: predicted)",
                                 file_name="confusion-matrix.json", epoch=last_epoch, step=last_step)
        exp.log_model(run["spec"]["name"], str(record_dir / "model.h5"), file_name="model.h5")
        exp.log_asset_data(run["environment"], name=ENVIRONMENT_ASSET)
        for name in ASSET_FILES:
            if (record_dir / name).exists():
                exp.log_asset(str(record_dir / name), file_name=name)

    def end(self, archive_dir: Path) -> tuple[Path | None, str | None]:
        """End the experiment; an offline archive (or an online run's fallback one) is moved into `archive_dir`."""
        error = None
        archive_dir.mkdir(parents=True, exist_ok=True)
        if self.mode == "offline":
            self.experiment.offline_directory = str(archive_dir)  # where comet_ml writes the zip at end()
        try:
            self.experiment.end()
        except Exception as e:  # noqa: BLE001 — e.g. uploads that did not finish; the archive says the rest
            error = f"ending the Comet experiment failed: {type(e).__name__}: {e}"
            self.log(f"[comet] {error}")
        archive = self.keep_archive(archive_dir)
        if archive is None and not any(archive_dir.iterdir()):
            archive_dir.rmdir()
        shutil.rmtree(self.scratch, ignore_errors=True)
        return archive, error

    def keep_archive(self, archive_dir: Path) -> Path | None:
        key = self.experiment.get_key()
        ended_in = Path(getattr(self.experiment, "offline_directory", None) or self.scratch)  # set by end()
        candidates = [archive_dir / f"{key}.zip", ended_in / f"{key}.zip", *sorted(self.scratch.glob(f"{key}*.zip"))]
        for path in candidates:
            if is_archive(path):  # comet_ml also leaves an empty placeholder zip where it started
                if path.parent != archive_dir:
                    path = Path(shutil.move(str(path), archive_dir / path.name))
                return path
        return None

    def abandon(self, unfinished_dir: Path, status: str, error: str | None) -> None:
        """The run did not complete: say so to Comet, end, keep the archive."""
        try:
            self.experiment.log_others({"status": status, "error": error or status})
        except Exception:  # noqa: BLE001 — the original error is what matters
            pass
        archive, _ = self.end(unfinished_dir)
        if archive:
            self.log(f"[comet] run {status}; its Comet archive is kept at {archive}")


PLATFORM = CometPlatform
