"""The OpenML platform: MNIST from dataset 554, the model as a flow, the run on a task.

    python run.py --platform openml [--openml-task 3573] [--openml-folds N] [--openml-cache DIR]
    python run.py push openml RUN_DIR          publish a saved run later (needs an API key)
    python run.py push openml --holdout-task   publish the official 60k/10k split as a task

Data: dataset 554 (`mnist_784`) through the `openml` client and its cache. Rows
0-59,999 are the official training set and 60,000-69,999 the test set; the
pixels become uint8 28x28 images that must match the harness's MNIST digests,
so the native run record is the canonical experiment on verified data.

The OpenML run: the same spec on an OpenML task. The common MNIST task 3573 is
10-fold cross-validation, so one model is trained per fold (`--openml-folds N`
keeps the first N); a task whose only split is the official holdout reuses the
native run's test predictions instead. The run is always saved with
`OpenMLRun.to_filesystem` into `<record>/openml/`; flow and run are published
only when an API key is configured (`OPENML_APIKEY` or the openml config file).
See platforms/openml/README.md.
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
    if len(name) > 1024:  # OpenML's limit; a very deep spec is named by its layer digest
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
    """The spec's model as an `OpenMLFlow`: one parameter per spec key, defaults from this spec."""
    from openml.flows import OpenMLFlow

    name, external_version, dependencies = flow_identity(spec)
    parameters, meta = {}, {}
    for key, value in spec_parameters(spec).items():
        parameters[key] = json.dumps(value)
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
    lines = ["Keras Sequential CNN for MNIST from the mnist-harness (core/experiment.py, build_model), "
             "built from an experiment spec.",
             "Input: uint8 images (28, 28, 1), scaled to [0, 1] by a Rescaling(1/255) layer, then:"]
    for i, layer in enumerate(spec.layers):
        args = ", ".join(f"{k}={v}" for k, v in layer.args.items())
        lines.append(f"  {i}. {layer.type}({args})")
    opt = spec.optimizer
    lines += [f"Training: {opt.name} (learning_rate={opt.learning_rate}"
              + "".join(f", {k}={v}" for k, v in opt.args.items()) + f"), loss {spec.loss}, "
              f"batch_size {spec.batch_size}, epochs {spec.epochs}; the first {spec.split:g} of each "
              f"training set trains, the rest validates; seed {spec.seed}.",
              "Parameters: one per spec key (JSON values); defaults are the spec this flow was first built from, "
              "each run's parameter settings are its own."]
    return "\n".join(lines)


# --- The run: predictions on the task's splits -----------------------------------------

def prediction_rows(task, repeat: int, fold: int, rows: np.ndarray, probabilities: np.ndarray,
                    truth: np.ndarray) -> list[list]:
    """OpenML's prediction lines (repeat, fold, sample, row_id, prediction, correct, confidence.0-9)."""
    from openml.runs.functions import format_prediction

    return [format_prediction(task, repeat=repeat, fold=fold, index=int(row), prediction=str(int(np.argmax(p))),
                              truth=str(int(t)), proba={label: float(p[int(label)]) for label in task.class_labels})
            for row, p, t in zip(rows, probabilities, truth)]


def parameter_settings(flow, flow_id: int | None = None) -> list[dict[str, Any]]:
    """The run's parameter settings (this spec's values), with the flow id once the flow is published."""
    settings = []
    for name, value in flow.parameters.items():
        setting = {"oml:name": name, "oml:value": value}
        if flow_id is not None:
            setting["oml:component"] = flow_id
        settings.append(setting)
    return settings


def save_run(folder: Path, task, flow, spec: ExperimentSpec, rows: list[list],
             fold_evaluations: dict, description: str) -> None:
    """Build the `OpenMLRun` and write it with the client's `to_filesystem` (description.xml, predictions.arff, flow.xml)."""
    from openml.runs import OpenMLRun

    run = OpenMLRun(
        task_id=task.task_id, flow_id=None, dataset_id=task.dataset_id, flow=flow, flow_name=flow.name,
        model=spec,  # the untrained model's full description; not pickled (store_model=False)
        data_content=rows, fold_evaluations=fold_evaluations, parameter_settings=parameter_settings(flow),
        tags=["mnist_harness", f"spec_{spec.short_hash}"], setup_string=f"mnist_harness spec_hash={spec.hash}",
        description_text=description,
    )
    with client_errors(f"saving the OpenML run into {folder}"):
        run.to_filesystem(folder, store_model=False)


def read_saved_run(folder: Path):
    """A run saved by `save_run`, read back with the client (`OpenMLRun.from_filesystem`)."""
    import xmltodict
    from openml.runs import OpenMLRun

    if (folder / SAVED_RUN_DIR / "description.xml").is_file():
        folder = folder / SAVED_RUN_DIR  # a run record folder
    with client_errors(f"reading the saved OpenML run in {folder}"):
        run = OpenMLRun.from_filesystem(folder, expect_model=False)
        # from_filesystem drops parameter settings of runs whose flow is unpublished; they are in the file.
        description = xmltodict.parse((folder / "description.xml").read_text(),
                                      force_list=("oml:parameter_setting",))["oml:run"]
    run.parameter_settings = [{"oml:name": s["oml:name"], "oml:value": s["oml:value"]}
                              for s in description.get("oml:parameter_setting") or []]
    run.description_text = _arff_comment(folder / "predictions.arff")  # else a publish replaces it by the time
    return run


def _arff_comment(path: Path) -> str | None:
    """The leading `%` lines of an ARFF file: liac-arff's `description`."""
    lines = []
    with open(path) as f:
        for line in f:
            if not line.startswith("%"):
                break
            lines.append(line[1:].strip())
    return "\n".join(lines) or None


def missing_predictions(run, task) -> list[str]:
    """Splits of the task the saved run does not cover completely (OpenML evaluates complete runs only)."""
    predicted: dict[tuple[int, int], set[int]] = defaultdict(set)
    for line in run.data_content:
        predicted[(int(line[0]), int(line[1]))].add(int(line[3]))
    missing = []
    for repeat, fold, _, test in task_splits(task):
        got = predicted.get((repeat, fold), set())
        if got != set(test.tolist()):
            missing.append(f"repeat {repeat} fold {fold}: {len(got)} of {len(test)} test rows")
    return missing


def publish_saved_run(folder: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Publish a saved run (its flow first, if OpenML does not know it yet); returns the links for run.json."""
    import openml

    if not has_api_key():
        raise OpenMLError(f"no OpenML API key: set {APIKEY_ENV} or `apikey = ...` in "
                          f"{openml.config.determine_config_file_path()}")
    run = read_saved_run(folder)
    task = get_task(run.task_id)
    missing = missing_predictions(run, task)
    if missing:
        raise OpenMLError(f"the saved run does not cover task {task.task_id} completely ({'; '.join(missing[:3])}"
                          f"{'; ...' if len(missing) > 3 else ''}); OpenML evaluates complete runs only — "
                          "run again without --openml-folds, --train-limit or --test-limit")
    server = openml.config.server
    with client_errors(f"publishing to {server}"):
        flow = run.flow
        flow.publish()  # finds the existing flow by name + external version, or uploads it
        run.flow_id = flow.flow_id
        run.parameter_settings = parameter_settings(flow, flow.flow_id)
        run.publish()
    log(f"[openml] published run {run.run_id} (flow {flow.flow_id}, task {task.task_id}): {run.openml_url}")
    return {"server": server, "task_id": task.task_id, "flow_id": flow.flow_id, "run_id": run.run_id,
            "flow_url": flow.openml_url, "run_url": run.openml_url}


# --- The canonical holdout as a task -------------------------------------------------------

def holdout_task(estimation_procedure_id: int):
    """The official split (train rows 0-59,999, test 60,000-69,999) as a supervised classification task on 554.

    OpenML's "custom holdout" estimation procedure takes the test rows as the
    `custom_testset` task input (JSON); openml-python 0.15.1 has no argument for
    it, so the input is added to the task's upload XML.
    """
    from openml.tasks import OpenMLClassificationTask, TaskType

    class HoldoutTask(OpenMLClassificationTask):
        def _to_dict(self):
            task = super()._to_dict()
            test_rows = list(range(MNIST_554.n_train, MNIST_554.n_train + MNIST_554.n_test))
            task["oml:task_inputs"]["oml:input"].append(
                {"@name": "custom_testset", "#text": json.dumps(test_rows, separators=(",", ":"))})
            return task

    return HoldoutTask(task_type_id=TaskType.SUPERVISED_CLASSIFICATION, task_type="Supervised Classification",
                       data_set_id=DATASET_ID, target_name="class", estimation_procedure_id=estimation_procedure_id,
                       evaluation_measure="predictive_accuracy")


def publish_holdout_task(estimation_procedure_id: int | None, log: Callable[[str], None] = print) -> int:
    """Upload the canonical holdout task; returns its id. Looks up the custom-holdout procedure if not given."""
    import openml

    if not has_api_key():
        raise OpenMLError(f"creating a task needs an OpenML API key: set {APIKEY_ENV} or the openml config file")
    with client_errors(f"creating the holdout task on {openml.config.server}"):
        if estimation_procedure_id is None:
            procedures = openml.tasks.functions._get_estimation_procedure_list()
            custom = [p["id"] for p in procedures if p["type"] == "customholdout"
                      and p["task_type_id"] == openml.tasks.TaskType.SUPERVISED_CLASSIFICATION]
            if not custom:
                raise OpenMLError(f"{openml.config.server} lists no custom-holdout estimation procedure")
            estimation_procedure_id = custom[0]
        task = holdout_task(estimation_procedure_id).publish()
    log(f"[openml] created task {task.task_id}: dataset {DATASET_ID}, official train/test split; "
        f"run it with --openml-task {task.task_id}")
    return task.task_id


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
        self.spec, self.deterministic = spec, deterministic
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
        """The task's protocol after the record: its models, the saved OpenML run, and (with a key) the upload.

        Runs after the record is published, so a fold or a save that fails is noted in
        `links.openml.publish_error` and the record stays `completed`.
        """
        self.save_openml_run(record_dir)
        if not self.option("openml_publish", True):
            return None
        if not has_api_key():
            self.log(f"[openml] no API key ({APIKEY_ENV} or the openml config file): the run is saved in "
                     f"{record_dir / SAVED_RUN_DIR}; publish it later with: python run.py push openml {record_dir}")
            return None
        run = read_saved_run(record_dir)
        missing = missing_predictions(run, get_task(run.task_id))
        if missing:
            self.log(f"[openml] not publishing: the run covers part of task {run.task_id} "
                     f"({len(missing)} split(s) incomplete); it is saved in {record_dir / SAVED_RUN_DIR}")
            return None
        return publish_saved_run(record_dir, self.log)

    def save_openml_run(self, record_dir: Path) -> None:
        """Predict every split of the task (or the first N) and save the OpenML run into the record."""
        spec, task = self.spec, self.task
        all_splits = task_splits(task)
        splits = all_splits[: self.option("openml_folds")]
        rows: list[list] = []
        evaluations: dict[str, dict[int, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
        for repeat, fold, train_rows, test_rows in splits:
            if self._is_official_holdout(train_rows, test_rows):
                # The record's model trained on exactly this split: its test predictions are this fold's.
                rows_used, probabilities, timing = self._native_fold(record_dir, test_rows)
            else:
                rows_used, probabilities, timing = self._train_fold(spec, repeat, fold, len(splits), train_rows, test_rows)
            truth = self.labels[rows_used]
            rows += prediction_rows(task, repeat, fold, rows_used, probabilities, truth)
            evaluations["predictive_accuracy"][repeat][fold] = float((probabilities.argmax(1) == truth).mean())
            for measure, value in timing.items():
                evaluations[measure][repeat][fold] = value
        description = (f"mnist-harness run {record_dir.name}; spec_name: {spec.name}; "
                       f"spec_hash: {spec.hash}; task {task.task_id}, {len(splits)} of {len(all_splits)} splits")
        flow = build_flow(spec)
        save_run(record_dir / SAVED_RUN_DIR, task, flow, spec, rows, _plain(evaluations), description)
        self.log(f"[openml] saved the OpenML run ({len(rows)} predictions, {len(splits)} split(s) of task "
                 f"{task.task_id}, flow {flow.name}) in the record's {SAVED_RUN_DIR}/")

    def _is_official_holdout(self, train_rows: np.ndarray, test_rows: np.ndarray) -> bool:
        n_train, n_test = self.expected.n_train, self.expected.n_test
        return (len(train_rows) == n_train and len(test_rows) == n_test
                and np.array_equal(np.sort(train_rows), np.arange(n_train))
                and np.array_equal(np.sort(test_rows), np.arange(n_train, n_train + n_test)))

    def _native_fold(self, record_dir: Path, test_rows: np.ndarray):
        import keras

        model = keras.models.load_model(record_dir / "model.h5", compile=False)
        n_predicted = read_run_json(record_dir)["data"]["n_test"]  # the first test_limit test images
        index = test_rows - self.expected.n_train
        keep = index < n_predicted
        images = self.images[test_rows[keep]]
        probabilities = model.predict(images[..., None], batch_size=max(self.spec.batch_size, 256), verbose=0)
        return test_rows[keep], probabilities, {}

    def _train_fold(self, spec: ExperimentSpec, repeat: int, fold: int, n_splits: int,
                    train_rows: np.ndarray, test_rows: np.ndarray):
        from core.experiment import fit_and_evaluate

        fold_data = Mnist(x_train=self.images[train_rows], y_train=self.labels[train_rows],
                          x_test=self.images[test_rows], y_test=self.labels[test_rows],
                          source=f"task {self.task.task_id} repeat {repeat} fold {fold}"
                          ).limited(spec.data.train_limit, spec.data.test_limit)
        self.log(f"[openml] split {fold + 1}/{n_splits} (repeat {repeat}, fold {fold}): "
                 f"{len(fold_data.x_train)} train / {len(fold_data.x_test)} test images")
        result = fit_and_evaluate(spec, fold_data, deterministic=self.deterministic)
        train_ms, test_ms = result["train_seconds"] * 1000, result["test_seconds"] * 1000
        timing = {"wall_clock_time_millis_training": train_ms, "wall_clock_time_millis_testing": test_ms,
                  "wall_clock_time_millis": train_ms + test_ms}
        return test_rows[: len(fold_data.x_test)], result["probabilities"], timing


def _plain(nested: Any) -> Any:
    return {k: _plain(v) for k, v in nested.items()} if isinstance(nested, dict) else nested


PLATFORM = OpenMLPlatform
