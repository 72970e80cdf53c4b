"""Comet experiments as run records: offline archives (`<experiment key>.zip`) and, with a key, the REST API.

An offline archive is what `comet_ml.OfflineExperiment` writes and what
`comet upload` sends: `experiment.json` (key, workspace, project, tags, start
and stop times), `messages.json` (one JSON message per line: `parameter_msg`,
`metric_msg`, `log_other`, `file_upload`) and the uploaded files under
temporary names. `adapters/comet.py` logs a run into it like this, and
`record_from_log` reads it back into `run.json`'s shape (results/SCHEMA.md):

    spec                 parameters, flattened with dots (`optimizer.learning_rate`, `layers.0.filters`)
    history              metrics with an epoch, from the per-epoch callback (`accuracy`, `val_loss`, ...)
    metrics              `test_accuracy`, `test_loss`, and `final_<key>` = last epoch of each history key
    timings              metric `epoch_seconds` per epoch, others `timings.total_seconds`, `timings.mean_epoch_seconds`
    environment          asset `environment.json`
    everything else      others: `run_id`, `status`, `spec_hash`, `data_digest`, `seed`, `weights_sha256`, ...;
                         nested record keys flattened (`data.n_train`, `determinism.op_determinism`)

Reading an archive needs only zipfile and json; `comet_ml` is imported only to
fetch an experiment by key (`fetch_experiment`).
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from core.spec import parse_spec
from core.errors import HarnessError
from core.record import zip_names
from results.loaders import LoadedRun, Loader, LoaderError
from results.loaders.record import validate_run

ARCHIVE_FILES = ("experiment.json", "messages.json")
TEST_METRICS = ("test_accuracy", "test_loss")
EPOCH_SECONDS = "epoch_seconds"
ENVIRONMENT_ASSET = "environment.json"
PREDICTIONS_ASSET = "predictions.npy"
# Record keys whose values are objects, logged as others `<key>.<subkey>`.
NESTED_OTHERS = ("data", "determinism", "timings")
# What Comet adds by itself: step/epoch parameters and the process duration metric.
COMET_PARAMS = {"curr_step", "curr_epoch"}
COMET_METRICS = {"process duration"}
EMPTY = {"[]": [], "{}": {}}  # empty containers, logged as these strings (a flat parameter has no empty list)


# --- Flat names, as Comet shows parameters --------------------------------------

def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """The inverse of `flatten`: numeric parts become list indices."""
    root: dict[str, Any] = {}
    for name, value in flat.items():
        parts = name.split(".")
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = EMPTY.get(value, value) if isinstance(value, str) else value
    return _lists(root)


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if node and all(k.isdigit() for k in node):
        return [_lists(node[k]) for k in sorted(node, key=int)]
    return {k: _lists(v) for k, v in node.items()}


# --- What one Comet experiment holds ------------------------------------------------

@dataclasses.dataclass
class CometLog:
    """One Comet experiment as logged: from an offline archive or from the REST API."""

    key: str
    workspace: str | None
    project: str | None
    tags: list[str]
    params: dict[str, Any]          # manual parameters, name -> last value
    others: dict[str, Any]          # name -> last value
    metrics: list[dict[str, Any]]   # {name, value, epoch, step}, in logging order
    read_asset: Callable[[str], bytes | None]  # file name -> content, None if not logged
    origin: str                     # "archive" or "api"


def is_archive(path: Path) -> bool:
    """A zip holding Comet's experiment.json and messages.json (comet_ml also leaves empty placeholders)."""
    return path.suffix == ".zip" and set(ARCHIVE_FILES) <= zip_names(path)


def read_archive(path: str | Path) -> CometLog:
    """Parse an offline archive; LoaderError if it is not one or is damaged."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            experiment = json.loads(z.read("experiment.json"))
            lines = z.read("messages.json").decode().splitlines()
    except (OSError, KeyError, zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LoaderError(f"{path}: not a readable Comet offline archive ({e})") from None

    params: dict[str, Any] = {}
    others: dict[str, Any] = {}
    metrics: list[dict[str, Any]] = []
    files: dict[str, str] = {}  # logged file name -> member of the zip
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            message = json.loads(line)
            kind, payload = message["type"], message["payload"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise LoaderError(f"{path}: messages.json line {number} is not a Comet message") from None
        if kind == "parameter_msg":
            param = payload.get("param") or payload.get("params") or {}  # "params" when the value is a list
            if param.get("source", "manual") == "manual":
                params[param["paramName"]] = param["paramValue"]
        elif kind == "metric_msg":
            m = payload["metric"]
            metrics.append({"name": m["metricName"], "value": m["metricValue"],
                            "epoch": m.get("epoch"), "step": m.get("step")})
        elif kind == "log_other":
            others[payload["key"]] = payload["value"]
        elif kind == "file_upload":
            name = (payload.get("additional_params") or {}).get("fileName")
            if name and payload.get("file_path"):
                files[name] = payload["file_path"]

    def read_asset(name: str) -> bytes | None:
        if name not in files:
            return None
        with zipfile.ZipFile(path) as z:
            return z.read(files[name])

    return CometLog(key=experiment.get("offline_id") or path.stem, workspace=experiment.get("workspace"),
                    project=experiment.get("project_name"), tags=list(experiment.get("tags") or []),
                    params=params, others=others, metrics=metrics, read_asset=read_asset, origin="archive")


# --- A Comet experiment back into run.json's shape ------------------------------------

def record_from_log(log: CometLog, where: str) -> dict[str, Any]:
    """The run record this experiment was logged from; LoaderError if it was not logged by the harness."""
    others = log.others
    if "spec_hash" not in others:
        raise LoaderError(f"{where}: a Comet experiment, but not one logged by this harness (no spec_hash)")
    spec = unflatten({k: v for k, v in log.params.items() if k not in COMET_PARAMS})
    try:
        spec_hash = parse_spec(spec, source=where).hash
    except HarnessError as e:
        raise LoaderError(f"{where}: the logged parameters are not a valid spec ({e})") from None
    if spec_hash != others["spec_hash"]:
        raise LoaderError(f"{where}: the logged parameters give spec hash {spec_hash[:8]}, "
                          f"not the logged {str(others['spec_hash'])[:8]}")

    history: dict[str, dict[int, float]] = {}
    epoch_seconds: dict[int, float] = {}
    metrics: dict[str, float] = {}
    for m in log.metrics:
        name, value, epoch = m["name"], m["value"], m["epoch"]
        if name in TEST_METRICS:
            metrics[name] = value
        elif name == EPOCH_SECONDS and epoch is not None:
            epoch_seconds[int(epoch)] = value
        elif epoch is not None and name not in COMET_METRICS and not name.startswith("sys."):
            history.setdefault(name, {})[int(epoch)] = value
    history_lists = {name: [values[e] for e in sorted(values)] for name, values in sorted(history.items())}
    metrics.update({f"final_{name}": values[-1] for name, values in history_lists.items()})

    nested = unflatten({k: v for k, v in others.items() if k.split(".")[0] in NESTED_OTHERS and "." in k})
    timings = nested.get("timings", {})
    timings["epoch_seconds"] = [epoch_seconds[e] for e in sorted(epoch_seconds)]
    environment = log.read_asset(ENVIRONMENT_ASSET)

    status = others.get("status", "interrupted")
    error = others.get("error")
    if status == "running":  # the process ended before the harness closed the experiment
        status, error = "interrupted", error or "the Comet experiment ended before the run finished"
    run = {
        "schema_version": others.get("schema_version", 1),
        "run_id": others.get("run_id") or others.get("Name") or log.key,
        "platform": "comet",
        "status": status,
        "error": error,
        "started_at": others.get("started_at"),
        "finished_at": others.get("finished_at"),
        "spec": spec,
        "spec_hash": spec_hash,
        "data_digest": others.get("data_digest"),
        "data": nested.get("data", {}),
        "seed": others.get("seed", spec.get("seed")),
        "determinism": nested.get("determinism", {}),
        "environment": json.loads(environment) if environment else {},
        "timings": timings,
        "metrics": metrics,
        "history": history_lists,
        "weights_sha256": others.get("weights_sha256"),
        "predictions_sha256": others.get("predictions_sha256"),
        "links": {"comet": {"experiment_key": log.key, "workspace": log.workspace, "project": log.project,
                            "source": log.origin, "tags": log.tags}},
    }
    return validate_run(run, where)


@dataclasses.dataclass
class CometLoadedRun(LoadedRun):
    """A run read from Comet: its predictions are the logged `predictions.npy` asset."""

    read_asset: Callable[[str], bytes | None] | None = None

    def predictions(self) -> np.ndarray | None:
        raw = self.read_asset(PREDICTIONS_ASSET) if self.read_asset else None
        return None if raw is None else np.load(io.BytesIO(raw), allow_pickle=False)


class CometArchiveLoader(Loader):
    """A Comet offline archive written by `--platform comet` (in `<record>/comet/`, or anywhere)."""

    name = "comet-archive"

    def recognizes(self, path: Path) -> bool:
        return is_archive(path)

    def load(self, path: Path) -> list[LoadedRun]:
        log = read_archive(path)
        run = record_from_log(log, str(path))
        return [CometLoadedRun(run, path, self.name, read_asset=log.read_asset)]


# --- Online: an experiment by key, through comet_ml.API ------------------------------------

def fetch_log(experiment_key: str, api_key: str | None = None) -> CometLog:
    """Read an uploaded experiment through the REST API (key from COMET_API_KEY or ~/.comet.config).

    The REST API returns every value as text; numbers, booleans and nulls are
    read back with `value_from_text`. Not exercised against a live server in
    the test suite (no network there); the archive path shares all the rest.
    """
    os.environ.setdefault("COMET_DISABLE_AUTO_LOGGING", "1")  # no import hooks: we only read
    os.environ.setdefault("COMET_ERROR_TRACKING_ENABLE", "false")
    try:
        import comet_ml
    except ImportError:
        raise LoaderError("fetching a Comet experiment needs comet_ml: pip install comet_ml") from None
    api_key = api_key or comet_ml.config.get_api_key(None, comet_ml.get_config())
    if not api_key:
        raise LoaderError("fetching a Comet experiment needs an API key: set COMET_API_KEY "
                          "(https://www.comet.com/account-settings/apiKeys)")
    try:
        experiment = comet_ml.API(api_key=api_key).get_experiment_by_key(experiment_key)
        if experiment is None:
            raise LoaderError(f"no Comet experiment {experiment_key} visible with this API key")
        params = {p["name"]: value_from_text(p["valueCurrent"]) for p in experiment.get_parameters_summary() or []}
        others = {o["name"]: value_from_text(o["valueCurrent"]) for o in experiment.get_others_summary() or []}
        metrics = [{"name": m["metricName"], "value": float(m["metricValue"]), "epoch": m.get("epoch"),
                    "step": m.get("step")} for m in experiment.get_metrics() or []]
        assets = {a["fileName"]: a["assetId"] for a in experiment.get_asset_list()}
        tags = list(experiment.get_tags() or [])
    except LoaderError:
        raise
    except Exception as e:  # noqa: BLE001 — network and REST errors become one readable line
        message = str(e).replace(api_key, "<redacted>")
        raise LoaderError(f"could not fetch Comet experiment {experiment_key}: {type(e).__name__}: {message}") from None

    def read_asset(name: str) -> bytes | None:
        return experiment.get_asset(assets[name], return_type="binary") if name in assets else None

    return CometLog(key=experiment_key, workspace=experiment.workspace, project=experiment.project_name, tags=tags,
                    params=params, others=others, metrics=metrics, read_asset=read_asset, origin="api")


def fetch_experiment(experiment_key: str, api_key: str | None = None) -> CometLoadedRun:
    """An uploaded Comet experiment as a loaded run, beside the records `discover` finds."""
    log = fetch_log(experiment_key, api_key)
    where = f"comet:{experiment_key}"
    return CometLoadedRun(record_from_log(log, where), Path(where), "comet-api", read_asset=log.read_asset)


def value_from_text(text: Any) -> Any:
    """`"0.001"` -> 0.001, `"true"`/`"True"` -> True, `"null"`/`"None"` -> None, `"relu"` -> `"relu"`."""
    if not isinstance(text, str):
        return text
    if text in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[text]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
