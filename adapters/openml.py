"""The OpenML platform: MNIST from dataset 554, the model as a flow, the run on a task.

    python run.py --platform openml [--openml-task 3573] [--openml-folds N] [--openml-cache DIR]
    python run.py push openml RUN_DIR          publish a saved run later (needs an API key)

Data: dataset 554 (`mnist_784`) through the `openml` client and its cache. Rows
0-59,999 are the official training set and 60,000-69,999 the test set; the
pixels become uint8 28x28 images that must match the harness's MNIST digests,
so the native run record is the canonical experiment on verified data.

The OpenML run is the task's own protocol (3573: 10-fold cross-validation over
all 70,000 rows): after the record is published, one model per fold is trained
with `core.experiment.fit_and_evaluate` (`--openml-folds N` keeps the first N),
and the run is saved into `<record>/openml/`, each file checked against the
server's upload rules (`adapters/openml_schema.py`); with an API key, flow and
run are posted. A failure there is the publish step's: the record stays
`completed`. No OpenML task can hold the official split; see
platforms/openml/README.md.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from adapters import openml_schema as schema
from adapters.base import Option, Platform
from core import data
from core.backend import backend_name
from core.data import DataError, Mnist
from core.environment import HARNESS_ROOT, installed_version
from core.errors import HarnessError, UsageError
from core.record import read_run_json
from core.spec import ExperimentSpec

DATASET_ID = 554  # mnist_784
DEFAULT_TASK = 3573  # Supervised Classification on mnist_784, 10-fold cross-validation
SAVED_RUN_DIR = "openml"  # inside the run record
SERVERS = {"production": "https://www.openml.org/api/v1/xml", "test": "https://test.openml.org/api/v1/xml"}
APIKEY_ENV = "OPENML_APIKEY"
# Flow identity: the name says harness and architecture; the external version says
# which code and libraries. `results/loaders/openml.py` parses the same prefix.
FLOW_PREFIX = "mnist_harness.keras.Sequential"
MODEL_SOURCES = ("core/experiment.py", "core/backend.py")  # the code that builds, trains, evaluates
DIGITS = [str(d) for d in range(10)]


class OpenMLError(HarnessError):
    """OpenML could not be reached, refused a request, or a saved run cannot be used."""


# --- What dataset 554 must hold -------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ExpectedData:
    """The row split of the dataset and the SHA-256 each resulting array must have."""

    n_train: int
    n_test: int
    digests: Mapping[str, str]


# Production: the official MNIST, checked by the harness's own `core.data.verify`.
MNIST_554 = ExpectedData(n_train=60000, n_test=10000, digests=data.DIGESTS)


def mnist_from_dataset(dataset, expected: ExpectedData = MNIST_554) -> tuple[Mnist, np.ndarray, np.ndarray]:
    """The verified train/test arrays of an OpenML dataset, and all its images and labels in row order.

    Raises DataError when the dataset is not MNIST as `expected` describes it:
    wrong number of rows or columns, pixels that are not bytes, labels that are
    not digits, or arrays whose digests differ. Never trains on other data.
    """
    where = f"OpenML dataset {dataset.dataset_id} ({dataset.name})"
    with client_errors(f"reading {where}"):
        x, y, _, _ = dataset.get_data(target=dataset.default_target_attribute)
    images, labels = _images(x, where), _digits(y, where)
    n_rows = expected.n_train + expected.n_test
    if len(images) != n_rows:
        raise DataError(f"{where}: {len(images)} rows, expected {n_rows} "
                        f"({expected.n_train} training + {expected.n_test} test images)")
    arrays = {"x_train": images[:expected.n_train], "y_train": labels[:expected.n_train],
              "x_test": images[expected.n_train:], "y_test": labels[expected.n_train:]}
    source = f"{where} via the openml client, rows 0-{expected.n_train - 1} train, {expected.n_train}-{n_rows - 1} test"
    if expected == MNIST_554:
        return data.verify(arrays, source), images, labels  # the official digests, the harness's check
    for name, array in arrays.items():
        got = data.array_sha256(array)
        if got != expected.digests[name]:
            raise DataError(f"{source}: {name} has SHA-256 {got[:16]}…, expected {expected.digests[name][:16]}…; "
                            "refusing to train on it")
    return Mnist(**arrays, source=source), images, labels


def _images(x, where: str) -> np.ndarray:
    """784 pixel columns of whole numbers in 0..255 -> uint8 (n, 28, 28), row-major as OpenML stores them."""
    if x.shape[1] != 784:
        raise DataError(f"{where}: {x.shape[1]} feature columns, expected 784 pixels (28x28)")
    try:
        values = x.to_numpy()
    except (TypeError, ValueError) as e:
        raise DataError(f"{where}: pixel columns are not numeric ({e})") from None
    if values.dtype != np.uint8:
        if values.dtype.kind not in "iuf":
            raise DataError(f"{where}: pixel columns have dtype {values.dtype}, expected numbers")
        if not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 255
                and np.array_equal(values, np.round(values))):
            raise DataError(f"{where}: pixel values are not whole numbers in 0..255")
        values = values.astype(np.uint8)
    return np.ascontiguousarray(values.reshape(len(values), 28, 28))


def _digits(y, where: str) -> np.ndarray:
    labels = np.asarray(y).astype(str)
    if not np.isin(labels, DIGITS).all():
        found = sorted(set(labels.tolist()) - set(DIGITS))[:5]
        raise DataError(f"{where}: class labels {found} are not the digits 0-9")
    return labels.astype(np.uint8)


# --- The openml client -----------------------------------------------------------

def openml_client(cache: str | Path | None = None, server: str | None = None):
    """The `openml` module, configured: cache folder, server, and the API key from `OPENML_APIKEY`.

    Without arguments the client keeps its own configuration (`~/.config/openml/config`,
    `OPENML_CACHE_DIR`). The key is only ever held in memory.
    """
    try:
        import openml
    except ImportError:
        raise UsageError("the OpenML platform needs the openml client: pip install openml==0.15.1") from None
    if cache:
        openml.config.set_root_cache_directory(Path(cache).expanduser().resolve())
    if server:
        openml.config.server = SERVERS.get(server, server)
    if os.environ.get(APIKEY_ENV):
        openml.config.apikey = os.environ[APIKEY_ENV]
    return openml


def has_api_key() -> bool:
    import openml

    return bool(openml.config.apikey)


@contextlib.contextmanager
def client_errors(doing: str) -> Iterator[None]:
    """Turn the client's failures (server, network, cache, file) into one readable OpenMLError."""
    from xml.parsers.expat import ExpatError

    import arff
    import openml
    import requests
    import urllib3

    try:
        yield
    except openml.exceptions.OpenMLNotAuthorizedError:
        raise OpenMLError(f"{doing}: the server refused the API key ({openml.config.server})") from None
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as e:
        raise OpenMLError(f"{doing}: cannot reach {openml.config.server} ({type(e).__name__}); "
                          f"the cache is {openml.config.get_cache_directory()}") from None
    except (openml.exceptions.PyOpenMLError, arff.ArffException, ExpatError, OSError, ValueError) as e:
        first_line = (str(e).strip().splitlines() or [""])[0]
        raise OpenMLError(f"{doing}: {type(e).__name__}: {first_line}") from None


def get_task(task_id: int):
    """An OpenML classification task on dataset 554, from the cache or the server."""
    import openml

    with client_errors(f"getting OpenML task {task_id}"):
        task = openml.tasks.get_task(task_id, download_splits=True)
    if not isinstance(task, openml.tasks.OpenMLClassificationTask):
        raise OpenMLError(f"OpenML task {task_id} is a {task.task_type} task, not supervised classification")
    if task.dataset_id != DATASET_ID:
        raise OpenMLError(f"OpenML task {task_id} is on dataset {task.dataset_id}, not MNIST ({DATASET_ID})")
    if sorted(task.class_labels or []) != DIGITS:
        raise DataError(f"OpenML task {task_id}: class labels {task.class_labels}, expected the digits 0-9")
    return task


def task_splits(task) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """(repeat, fold, train rows, test rows) of every split of the task, in order."""
    repeats, folds, _ = task.get_split_dimensions()
    return [(r, f, *task.get_train_test_split_indices(fold=f, repeat=r)) for r in range(repeats) for f in range(folds)]


# --- The flow: the spec's model, described for OpenML --------------------------------

def spec_parameters(spec: ExperimentSpec) -> dict[str, Any]:
    """Every key of the spec that determines the numbers, flattened: `layers.0.filters`, `optimizer.learning_rate`, ...

    Layer types are not parameters: they are the architecture, in the flow's name.
    """
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, inner in enumerate(value):
                walk(f"{prefix}.{i}", {k: v for k, v in inner.items() if k != "type"})
        else:
            out[prefix] = value

    walk("", spec.experiment_dict())
    return out


PARAMETER_TYPES = {"filters": "integer", "units": "integer", "batch_size": "integer", "epochs": "integer",
                   "seed": "integer", "train_limit": "integer", "test_limit": "integer", "rate": "numeric",
                   "learning_rate": "numeric", "split": "numeric", "activation": "string", "padding": "string",
                   "loss": "string", "name": "string", "source": "string", "path": "string"}
# The flow name must leave room for "(version)" in the server's fullName column (openml_schema.FULL_NAME_MAX).
NAME_MAX = schema.FULL_NAME_MAX - schema.VERSION_DIGITS - 2
DESCRIPTION_MAX = 1024  # oml:basic_latin1024 (openml.implementation.upload.xsd)


def harness_source_digest() -> str:
    """SHA-256 (12 hex) of the code that builds, trains and evaluates the model, as OpenML suggests for versions."""
    h = hashlib.sha256()
    for rel in MODEL_SOURCES:
        h.update(rel.encode() + b"\0" + (HARNESS_ROOT / rel).read_bytes())
    return h.hexdigest()[:12]


def flow_identity(spec: ExperimentSpec) -> tuple[str, str, str]:
    """(name, external_version, dependencies): the same spec architecture and software give the same three.

    Hyperparameter values are not part of the identity (they are the run's parameter
    settings); the set of parameter names is, so OpenML's stored flow always matches.
    """
    name = f"{FLOW_PREFIX}({','.join(layer.type for layer in spec.layers)})"
    if len(name) > NAME_MAX:  # a very deep spec is named by its layer digest
        name = f"{FLOW_PREFIX}.{hashlib.sha256(name.encode()).hexdigest()[:16]}"
    params = hashlib.sha256("\n".join(spec_parameters(spec)).encode()).hexdigest()[:8]
    versions = {"keras": _version("keras"), "tensorflow": _version("tensorflow"), "backend": backend_name()}
    external = f"mnist_harness={harness_source_digest()},params={params}," + ",".join(f"{k}={v}" for k, v in versions.items())
    dependencies = "\n".join([f"mnist_harness (model code digest {harness_source_digest()})",
                              f"keras=={versions['keras']}", f"tensorflow=={versions['tensorflow']}",
                              f"keras backend: {versions['backend']}"])
    return name, external, dependencies


def _version(package: str) -> str:
    return installed_version(package) or "none"  # tensorflow-cpu, tensorflow-intel, ... count as tensorflow


def build_flow(spec: ExperimentSpec):
    """The spec's model as an `OpenMLFlow`: one parameter per spec key (JSON, ASCII), defaults from this spec."""
    from openml.flows import OpenMLFlow

    name, external_version, dependencies = flow_identity(spec)
    parameters, meta = {}, {}
    for key, value in spec_parameters(spec).items():
        parameters[key] = json.dumps(value)  # ensure_ascii: oml:basic_latin2048
        meta[key] = {"data_type": PARAMETER_TYPES.get(key.rsplit(".", 1)[-1]), "description": _describe(key)}
    return OpenMLFlow(
        name=name, description=flow_description(spec), model=None, components={},
        parameters=parameters, parameters_meta_info=meta, external_version=external_version,
        tags=["mnist_harness"], language="English", dependencies=dependencies, class_name="keras.Sequential",
    )


def _describe(key: str) -> str:
    parts = key.split(".")
    if parts[0] == "layers":
        return f"layer {parts[1]}: {parts[2]}"
    return {"data": "data selection", "optimizer": "optimizer"}.get(parts[0], "training") + f": {parts[-1]}"


def flow_description(spec: ExperimentSpec) -> str:
    """At most 1,024 ASCII characters: the layers with their arguments while they fit, else their types only.

    The complete spec is in the parameters; the description is for people.
    """
    opt = spec.optimizer
    head = ("Keras Sequential CNN for MNIST from the mnist-harness (core/experiment.py build_model); "
            "uint8 28x28x1 images, Rescaling(1/255), then:")
    tail = (f"Training: {opt.name}(learning_rate={opt.learning_rate}"
            + "".join(f",{k}={_short(v)}" for k, v in opt.args.items())
            + f"), loss {spec.loss}, batch {spec.batch_size}, {spec.epochs} epochs, first {spec.split:g} trains, "
            f"seed {spec.seed}. Every spec key is a parameter (JSON); a run's settings are its spec.")
    detailed = " ".join(f"{layer.type}(" + ",".join(f"{k}={_short(v)}" for k, v in layer.args.items()) + ")"
                        for layer in spec.layers)
    plain = f"{len(spec.layers)} layers: " + ",".join(layer.type for layer in spec.layers)
    for layers in (detailed, plain, f"{len(spec.layers)} layers (their types are in the flow name)"):
        text = f"{head}\n{layers}\n{tail}"
        if len(text) <= DESCRIPTION_MAX:
            return text
    return text[:DESCRIPTION_MAX]


def _short(value: Any) -> str:
    return json.dumps(value, separators=(",", ":")).strip('"')  # ASCII, compact


# --- The run: predictions on the task's splits -----------------------------------------

# The evaluation engine scores the argmax of each row's confidences (weka's Evaluation,
# EvaluationEngine evaluate/EvaluateBatchPredictions.java), and its other measures
# (MAE, RMSE, AUC) average them: six decimals move those by at most 5e-7 per value, below
# the six decimals it writes scores with (apiconnector's "#.######"). A row whose rounding
# would tie or move the argmax keeps full float32 precision.
CONFIDENCE_DECIMALS = 6


def confidence_values(probabilities: np.ndarray) -> list[list[float | int]]:
    """Each row's confidences, rounded; exact 0 and 1 as integers (liac-arff writes `str(value)`)."""
    rounded = np.round(probabilities.astype(np.float64), CONFIDENCE_DECIMALS)
    moved = rounded.argmax(axis=1) != probabilities.argmax(axis=1)
    rows = []
    for p, r, keep in zip(probabilities, rounded, moved):
        values = p.astype(np.float64) if keep else r
        rows.append([int(v) if v in (0.0, 1.0) else float(v) for v in values.tolist()])
    return rows


def prediction_rows(task, repeat: int, fold: int, rows: np.ndarray, probabilities: np.ndarray,
                    truth: np.ndarray) -> list[list]:
    """OpenML's prediction lines (repeat, fold, sample, row_id, prediction, correct, confidence.0-9)."""
    from openml.runs.functions import format_prediction

    labels = task.class_labels
    return [format_prediction(task, repeat=repeat, fold=fold, index=int(row), prediction=str(int(np.argmax(p))),
                              truth=str(int(t)), proba=dict(zip(labels, c)))
            for row, p, t, c in zip(rows, probabilities, truth, confidence_values(probabilities))]


def parameter_settings(flow, flow_id: int | None = None) -> list[dict[str, Any]]:
    """The run's parameter settings (this spec's values), with the flow id once the flow is published."""
    settings = []
    for name, value in flow.parameters.items():
        setting = {"oml:name": name, "oml:value": value}
        if flow_id is not None:
            setting["oml:component"] = flow_id
        settings.append(setting)
    return settings


def run_files(run, task, flow_id: int | None) -> dict[str, str]:
    """The texts of description.xml, predictions.arff (and, before the flow is published, flow.xml), checked.

    They are written by the client's own serializers and checked against the server's
    rules; an unpublished flow's id is checked as 0 (the id the server will give is
    unknown, and the schema needs one).
    """
    import arff

    run.flow_id = flow_id if flow_id is not None else 0
    run.parameter_settings = parameter_settings(run.flow, flow_id)
    try:
        description = run._to_xml()
        repeats, folds, _ = task.get_split_dimensions()
        schema.check_run_xml(description, folds=folds, repeats=repeats)
    finally:
        run.flow_id = flow_id
    arff_dict = run._generate_arff_dict()
    schema.check_predictions_header(arff_dict["attributes"], task.class_labels)
    files = {"description.xml": run._to_xml() if flow_id is None else description,
             "predictions.arff": arff.dumps(arff_dict)}
    if flow_id is None:
        files["flow.xml"] = run.flow._to_xml()
        schema.check_flow_xml(files["flow.xml"])
    return files


def save_run(folder: Path, task, flow, spec: ExperimentSpec, rows: list[list],
             fold_evaluations: dict, description: str, log: Callable[[str], None] = print) -> dict[str, int]:
    """Check the run against the server's rules and write it into `folder` (atomically); returns file sizes.

    The files are those `OpenMLRun.to_filesystem` writes (and `from_filesystem` reads).
    """
    from openml.runs import OpenMLRun

    run = OpenMLRun(
        task_id=task.task_id, flow_id=None, dataset_id=task.dataset_id, flow=flow, flow_name=flow.name,
        model=spec, data_content=rows, fold_evaluations=fold_evaluations, parameter_settings=parameter_settings(flow),
        tags=["mnist_harness", f"spec_{spec.short_hash}"], setup_string=f"mnist_harness spec_hash={spec.hash}",
        description_text=description,
    )
    with client_errors(f"saving the OpenML run into {folder}"):
        files = run_files(run, task, None)
        _write_folder(folder, files)
    sizes = {name: len(text.encode()) for name, text in files.items()}
    for warning in schema.upload_size_warnings({k: v for k, v in sizes.items() if k != "flow.xml"}):
        log(f"[openml] warning: {warning}")
    return sizes


def _write_folder(folder: Path, files: dict[str, str]) -> None:
    """Write `files` into a hidden sibling, then rename it to `folder` (replacing an older one)."""
    import shutil

    staging = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(parents=True)
        for name, text in files.items():
            (staging / name).write_text(text, encoding="ascii")
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # nothing half-written stays in the record


# --- The platform ------------------------------------------------------------------------

class OpenMLPlatform(Platform):
    """Runs the spec on verified MNIST from OpenML; then, after the record is published, the task's own
    protocol (one model per split), saved into the record and, with a key, published."""

    name = "openml"
    OPTIONS = (
        Option("--openml-task", type=int, default=DEFAULT_TASK, metavar="ID",
               help=f"OpenML task on dataset {DATASET_ID} (default {DEFAULT_TASK}: 10-fold cross-validation)"),
        Option("--openml-folds", type=int, metavar="N",
               help="train only the first N splits of the task (quick checks; such a run is saved, not published)"),
        Option("--openml-cache", metavar="DIR",
               help="openml cache folder (default: $OPENML_CACHE_DIR or the openml config file's)"),
        Option("--openml-server", metavar="URL|test|production",
               help="OpenML server (default: the openml config file's, else production)"),
        Option("--no-openml-publish", dest="openml_publish", action="store_false",
               help="save the OpenML run but do not publish it, even with an API key"),
    )

    def __init__(self, options: argparse.Namespace, log: Callable[[str], None] = print,
                 expected: ExpectedData = MNIST_554):
        super().__init__(options, log)
        self.expected = expected
        self.deterministic = True
        self.spec: ExperimentSpec | None = None
        self.task = None
        self.images: np.ndarray | None = None
        self.labels: np.ndarray | None = None

    def run(self, spec: ExperimentSpec, deterministic: bool = True) -> Path:
        folds = self.option("openml_folds")
        if folds is not None and folds < 1:
            raise UsageError("--openml-folds must be at least 1")
        self.spec, self.deterministic = spec, deterministic  # the fold models are trained as the record's
        return super().run(spec, deterministic)

    def load_data(self, spec: ExperimentSpec) -> Mnist:
        openml_client(self.option("openml_cache"), self.option("openml_server"))
        self.task = get_task(self.option("openml_task", DEFAULT_TASK))
        with client_errors(f"getting OpenML dataset {self.task.dataset_id}"):
            dataset = self.task.get_dataset()
        mnist, self.images, self.labels = mnist_from_dataset(dataset, self.expected)
        self.log(f"[openml] {mnist.source}: digests verified; task {self.task.task_id}")
        return mnist

    def platform_info(self) -> dict[str, Any]:
        import openml

        return {"name": self.name, "server": openml.config.server, "cache": openml.config.get_cache_directory(),
                "dataset_id": DATASET_ID, "task_id": self.task.task_id if self.task else None,
                "folds_limit": self.option("openml_folds"),
                "publish": bool(self.option("openml_publish", True)) and has_api_key()}

    def publish(self, record_dir: Path) -> dict[str, Any] | None:
        """After the record is complete: the task's folds, the saved OpenML run, and (with a key) its upload."""
        if read_run_json(record_dir).get("status") != "completed":
            return None
        folder, n_splits = self.save_task_run(record_dir)
        if not self.option("openml_publish", True):
            return {"saved": SAVED_RUN_DIR, "task_id": self.task.task_id}
        if not has_api_key():
            self.log(f"[openml] no API key ({APIKEY_ENV} or the openml config file): the run is saved in "
                     f"{folder}; publish it later with: python run.py push openml {record_dir}")
            return {"saved": SAVED_RUN_DIR, "task_id": self.task.task_id}
        if n_splits < len(task_splits(self.task)) or self.spec.data.train_limit or self.spec.data.test_limit:
            self.log(f"[openml] not publishing: the run covers part of task {self.task.task_id}; "
                     f"it is saved in {folder}")
            return {"saved": SAVED_RUN_DIR, "task_id": self.task.task_id}
        from adapters.remote.openml import publish_saved_run

        return publish_saved_run(folder, self.log)

    def save_task_run(self, record_dir: Path) -> tuple[Path, int]:
        """Train one model per split of the task (or the first N) and save the OpenML run into the record."""
        from core.experiment import fit_and_evaluate

        spec, task = self.spec, self.task
        all_splits = task_splits(task)
        splits = all_splits[: self.option("openml_folds")]
        rows: list[list] = []
        evaluations: dict[str, dict[int, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
        for i, (repeat, fold, train_rows, test_rows) in enumerate(splits):
            fold_data = Mnist(x_train=self.images[train_rows], y_train=self.labels[train_rows],
                              x_test=self.images[test_rows], y_test=self.labels[test_rows],
                              source=f"task {task.task_id} repeat {repeat} fold {fold}")
            limits = spec.data.train_limit, spec.data.test_limit
            self.log(f"[openml] split {i + 1}/{len(splits)} (repeat {repeat}, fold {fold}): "
                     f"{len(train_rows)} train / {len(test_rows)} test rows"
                     + (" (limited to the first {} / {})".format(*limits) if any(limits) else ""))
            result = fit_and_evaluate(spec, fold_data, deterministic=self.deterministic)
            used = test_rows[: len(result["probabilities"])]  # a test_limit keeps the first rows
            rows += prediction_rows(task, repeat, fold, used, result["probabilities"], self.labels[used])
            for measure, value in (("predictive_accuracy", result["test_accuracy"]),
                                   ("wall_clock_time_millis_training", result["train_seconds"] * 1000),
                                   ("wall_clock_time_millis_testing", result["test_seconds"] * 1000),
                                   ("wall_clock_time_millis", (result["train_seconds"] + result["test_seconds"]) * 1000)):
                evaluations[measure][repeat][fold] = value
            self.log(f"[openml] split {i + 1}/{len(splits)}: accuracy {result['test_accuracy']:.4f}")
        description = (f"mnist-harness run {record_dir.name}; spec_name: {spec.name}; "
                       f"spec_hash: {spec.hash}; task {task.task_id}, {len(splits)} of {len(all_splits)} splits")
        flow = build_flow(spec)
        folder = record_dir / SAVED_RUN_DIR
        sizes = save_run(folder, task, flow, spec, rows, {k: {r: dict(f) for r, f in v.items()} for k, v in evaluations.items()},
                         description, self.log)
        self.log(f"[openml] saved the OpenML run ({len(rows)} predictions, {len(splits)} split(s) of task "
                 f"{task.task_id}, predictions.arff {sizes['predictions.arff']:,} bytes) in {folder}")
        return folder, len(splits)



PLATFORM = OpenMLPlatform
