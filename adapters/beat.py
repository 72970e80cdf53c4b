"""BEAT (Idiap's evaluation platform): the platform class, and the code BEAT's blocks run.

    run.py --platform beat [spec options]       write a prefix, run BEAT's executor, adopt the record
    run.py bundle beat --out DIR [spec options]  only write the prefix (adapters/remote/beat.py)

Two interpreters meet here. `BeatPlatform` runs in the harness's venv and hands the run to
adapters/remote/beat.py, which runs `beat experiments run --environment .venv-beat/bin/python`.
The `*_block` functions run inside BEAT's `execute` processes, in the BEAT venv (numpy<2,
see platforms/beat/requirements.txt), called by the thin algorithms in
platforms/beat/prefix/algorithms/harness/. They run the same `core` stages as every other
platform: the training block trains (core.experiment.build_model, train) and writes the
model and history into the record folder *before* the model leaves as a BEAT output, so a
failure later in BEAT never loses the trained model; the test block evaluates
(core.experiment.evaluate) and publishes the complete record. BEAT's analyzer reports its
own accuracy, loss and confusion matrix, which the harness checks against the record.

At the top this module imports only what both venvs have (the standard library, core's
numpy-only modules, adapters.base); TensorFlow, Keras and BEAT are imported inside the
functions that need them, so `--platform beat --help` imports neither.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from adapters.base import Option, Platform
from core.data import Mnist
from core.spec import ExperimentSpec

TRAIN_JSON = "train.json"  # in <record>/beat/: what the training block knew when it finished
TRAIN_ERROR, PREDICT_ERROR = "train-error.txt", "predict-error.txt"  # a failed block's traceback
ERROR_FILES = (TRAIN_ERROR, PREDICT_ERROR)
BEAT_DIR = "beat"  # the record's folder for BEAT's files (experiment declaration, executor log)
DEFAULT_TIMEOUT_S = 4 * 3600


class BeatPlatform(Platform):
    """`--platform beat`: the experiment as a BEAT experiment, run by BEAT's local executor.

    `run` is BEAT's, not the base's: the experiment runs in BEAT's blocks (another
    interpreter), and adapters/remote/beat.py adopts the record they wrote. The base's
    guarded `publish` and `finalize` still run after it, as on every platform.
    """

    name = "beat"
    OPTIONS = (
        Option("--beat-python", metavar="PATH",
               help="the interpreter BEAT's blocks run in (needs platforms/beat/requirements.txt; its folder must "
                    "hold BEAT's `beat`, `execute`, `databases_provider`). Default: .venv-beat/bin/python, built "
                    "by `make beat-env` on first use"),
        Option("--beat-timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
               help=f"stop BEAT after this long (default: {DEFAULT_TIMEOUT_S} s); the run fails with exit code 4"),
        Option("--beat-keep", action="store_true",
               help="keep BEAT's prefix, cache and data (<runs-dir>/.beat-<run_id>/) after a successful run; "
                    "a failed run always keeps them"),
    )

    def load_data(self, spec: ExperimentSpec) -> Mnist:
        from adapters.base import default_data

        return default_data(spec, self.log)

    def publish(self, record_dir: Path) -> dict[str, Any] | None:
        return None  # the record is local; `bundle beat` writes a prefix for a BEAT instance

    def execute(self, spec: ExperimentSpec, deterministic: bool) -> Path:
        """Write the prefix, run BEAT's executor on it, adopt the record it wrote (base.run publishes and finalizes)."""
        from adapters.remote import beat as remote

        return remote.run_spec(spec, self.load_data(spec), self.runs_dir(), deterministic=deterministic,
                               beat_python=self.option("beat_python"),
                               timeout_s=self.option("beat_timeout", DEFAULT_TIMEOUT_S),
                               keep=bool(self.option("beat_keep", False)), log=self.log)


# --- Inside BEAT's blocks (the BEAT venv) -----------------------------------------------------

class BlockError(RuntimeError):
    """What BEAT reports as the block's user error: one line saying what is wrong."""


def _run_parameters(parameters: dict[str, Any]) -> tuple[dict[str, Any], ExperimentSpec]:
    from core.spec import parse_spec

    run = json.loads(parameters["run"])
    spec = parse_spec(run["spec"], "the BEAT experiment's `run` parameter")
    if spec.hash != run["spec_hash"]:
        raise BlockError(f"the spec in the experiment has hash {spec.short_hash}, the bundle says "
                         f"{run['spec_hash'][:8]}: the experiment declaration was edited")
    return run, spec


def _record_folders(run: dict[str, Any]) -> tuple[Path, Path]:
    """(partial, final): the record is assembled under `.partial-<run_id>` and renamed when complete."""
    from core.record import PARTIAL_PREFIX

    root = Path(run["record_dir"])
    return root / f"{PARTIAL_PREFIX}{run['run_id']}", root / run["run_id"]


def _read_rows(loader, image: str, label: str):
    """All images and labels a data loader serves, in order, and (end data index, rows) of each unit.

    A unit is a run of consecutive rows (platforms/beat/prefix/databases/mnist/1.py).
    """
    import numpy as np

    images, labels, units = [], [], []
    for i in range(loader.count()):
        data, _, end = loader[i]
        images.append(data[image].value)
        labels.append(data[label].value)
        units.append((end, len(labels[-1])))
    x = np.concatenate(images).astype(np.uint8, copy=False) if images else np.zeros((0, 28, 28), np.uint8)
    y = np.concatenate(labels).astype(np.uint8, copy=False) if labels else np.zeros((0,), np.uint8)
    return x, y, units


def _check_digest(name: str, array, run: dict[str, Any]) -> None:
    from core.data import array_sha256

    got, want = array_sha256(array), run["digests"][name]
    if got != want:
        raise BlockError(f"BEAT served {name} with SHA-256 {got[:12]}…, the verified data has {want[:12]}…")


def _empty_mnist_part():
    import numpy as np

    return np.zeros((0, 28, 28), np.uint8), np.zeros((0,), np.uint8)


def _artifacts(model, history, epoch_seconds, result) -> dict[str, bytes]:
    """The record files as core.experiment.write_artifacts writes them (the one writer), as bytes."""
    from core.experiment import write_artifacts

    with tempfile.TemporaryDirectory(prefix="beat-artifacts-") as tmp:
        folder = Path(tmp)

        class _Writer:  # write_artifacts asks only for paths inside the record folder
            def path(self, name: str) -> Path:
                return folder / name

        write_artifacts(_Writer(), model, history, epoch_seconds, result)
        return {p.name: p.read_bytes() for p in folder.iterdir()}


def train_block(parameters: dict[str, Any], data_loaders, outputs) -> bool:
    """BEAT's training block: the canonical training on the data BEAT serves; the model leaves as bytes."""
    import traceback

    import numpy as np

    from core import backend, environment
    from core.experiment import build_model, split_sizes, train
    from core.record import utc_now, weights_sha256, write_json

    run, spec = _run_parameters(parameters)
    partial, final = _record_folders(run)
    if final.exists():
        raise BlockError(f"{final}: a record of this bundle exists already; write a new bundle for a new run")
    (partial / BEAT_DIR).mkdir(parents=True, exist_ok=True)
    started_at, started = utc_now(), time.perf_counter()
    epoch_seconds: list[float] = []
    try:
        x_tr, y_tr, units = _read_rows(data_loaders.loaderOf("train_image"), "train_image", "train_label")
        x_va, y_va, _ = _read_rows(data_loaders.loaderOf("validation_image"), "validation_image", "validation_label")
        # The spec's split is "the first `split` trains, the rest validates" (core.experiment
        # split_train_validation): the two BEAT sets put back together are the training array.
        x, y = np.concatenate([x_tr, x_va]), np.concatenate([y_tr, y_va])
        _check_digest("x_train", x, run)
        _check_digest("y_train", y, run)
        if split_sizes(len(x), spec.split) != (len(x_tr), len(x_va)):
            raise BlockError(f"BEAT served {len(x_tr)} training and {len(x_va)} validation images; "
                             f"split {spec.split} of {len(x)} is {split_sizes(len(x), spec.split)}")
        x_test, y_test = _empty_mnist_part()
        data = Mnist(x_train=x, y_train=y, x_test=x_test, y_test=y_test, source=run["data"]["source"])
        read_seconds = time.perf_counter() - started

        # The same stages, in the same order, as core.experiment.run_experiment.
        env = environment.fingerprint({"platform_info": platform_info(run)})
        determinism = backend.configure(spec.seed, run["deterministic"])
        env["runtime"] = backend.runtime_info()
        model = build_model(spec)
        determinism.update(steps_per_execution=model.steps_per_execution, jit_compile=bool(model.jit_compile))
        history, _ = train(model, spec, data, epoch_seconds=epoch_seconds)

        files = _artifacts(model, history, epoch_seconds, {"predictions": np.zeros(0, np.uint8),
                                                           "confusion": np.zeros((10, 10), np.int64)})
        for name in ("model.h5", "model.yaml", "history.csv"):  # the test block writes the others
            (partial / name).write_bytes(files[name])
        write_json(partial / BEAT_DIR / TRAIN_JSON, {
            "run_id": run["run_id"], "started_at": started_at, "environment": env, "determinism": determinism,
            "history": history, "epoch_seconds": epoch_seconds, "weights_sha256": weights_sha256(model.get_weights()),
            "n_train": len(x_tr), "n_validation": len(x_va), "read_seconds": read_seconds,
            "train_seconds": time.perf_counter() - started,
        })
    except BaseException:
        (partial / BEAT_DIR / TRAIN_ERROR).write_text(traceback.format_exc(limit=20))
        raise
    # Only now does the model leave: one data unit spanning the whole train channel.
    model_bytes = np.frombuffer(files["model.h5"], dtype=np.uint8)
    outputs["model"].write({"value": model_bytes}, units[-1][0])
    return True


def predict_block(parameters: dict[str, Any], data_loaders, outputs) -> bool:
    """BEAT's test block: evaluate the model BEAT passed on, write the probabilities, publish the record."""
    import traceback

    run, _ = _run_parameters(parameters)
    partial, _ = _record_folders(run)
    try:
        return _predict(parameters, data_loaders, outputs)
    except BaseException:
        if partial.is_dir():
            (partial / BEAT_DIR / PREDICT_ERROR).write_text(traceback.format_exc(limit=20))
        raise


def _predict(parameters: dict[str, Any], data_loaders, outputs) -> bool:
    import numpy as np

    from core import backend
    from core.experiment import evaluate, final_metrics
    from core.record import SCHEMA_VERSION, predictions_sha256, utc_now, weights_sha256, write_json

    import keras

    run, spec = _run_parameters(parameters)
    partial, final = _record_folders(run)
    trained = json.loads((partial / BEAT_DIR / TRAIN_JSON).read_text())
    started = time.perf_counter()
    backend.configure(spec.seed, run["deterministic"])  # the same thread pools and op determinism as training

    model_loader = data_loaders.loaderOf("model")
    data, _, _ = model_loader[0]
    with tempfile.TemporaryDirectory(prefix="beat-model-") as tmp:
        path = Path(tmp) / "model.h5"
        path.write_bytes(np.ascontiguousarray(data["model"].value, dtype=np.uint8).tobytes())
        model = keras.models.load_model(path)
    got = weights_sha256(model.get_weights())
    if got != trained["weights_sha256"]:
        raise BlockError(f"the model BEAT passed on has weights {got[:12]}…, the training block's were "
                         f"{trained['weights_sha256'][:12]}…")

    x_test, y_test, units = _read_rows(data_loaders.loaderOf("image"), "image", "label")
    _check_digest("x_test", x_test, run)
    _check_digest("y_test", y_test, run)
    x_train, y_train = _empty_mnist_part()
    test_data = Mnist(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, source=run["data"]["source"])
    result = evaluate(model, spec, test_data)
    first = 0
    for end, rows in units:  # the probabilities in the same units as the test images came
        outputs["probabilities"].write({"value": np.asarray(result["probabilities"][first:first + rows],
                                                            dtype=np.float32)}, end)
        first += rows

    history, epoch_seconds = trained["history"], trained["epoch_seconds"]
    files = _artifacts(model, history, epoch_seconds, result)
    for name in ("predictions.npy", "confusion_matrix.csv"):
        (partial / name).write_bytes(files[name])
    record = {
        "schema_version": SCHEMA_VERSION, "run_id": run["run_id"], "platform": "beat", "status": "completed",
        "started_at": trained["started_at"], "finished_at": utc_now(), "spec": spec.to_dict(),
        "spec_hash": spec.hash, "data_digest": run["data_digest"],
        "data": {**run["data"], "n_train": trained["n_train"] + trained["n_validation"], "n_test": len(y_test)},
        "seed": spec.seed, "determinism": trained["determinism"], "environment": trained["environment"],
        "timings": {"epoch_seconds": epoch_seconds,
                    "total_seconds": trained["train_seconds"] + time.perf_counter() - started,
                    "mean_epoch_seconds": sum(epoch_seconds) / len(epoch_seconds) if epoch_seconds else None},
        "metrics": final_metrics(history, result),
        "weights_sha256": trained["weights_sha256"],
        "predictions_sha256": predictions_sha256(result["predictions"]),
        "error": None, "history": history,
    }
    write_json(partial / "run.json", record)
    os.replace(partial, final)  # complete: BEAT's analyzer may still fail, the record stands
    return True


def platform_info(run: dict[str, Any]) -> dict[str, Any]:
    """BEAT's versions and this experiment's name, from inside the BEAT interpreter."""
    from importlib import metadata

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {"name": "beat", "experiment": run["experiment"], "executor": "beat experiments run --environment",
            "interpreter": sys.executable,
            "beat": {p: version(p) for p in ("beat.core", "beat.backend.python", "beat.cmdline")},
            # numpy<2 brings an older ml_dtypes than the harness venv; the fingerprint's
            # `packages` does not list it, so it is named here.
            "packages_extra": {p: version(p) for p in ("ml_dtypes", "setuptools", "pyzmq")}}


# --- Reading BEAT's results back (the BEAT venv: `python -m adapters.beat results ...`) ------------

def read_results(prefix: str, cache: str, experiment: str) -> dict[str, Any]:
    """The analyzer's results, read from BEAT's cache by BEAT's own reader.

    As beat/cmdline/experiments.py load_result does: the scheduled analyzer's
    `result.path` + ".data" under the cache, opened with CachedDataSource.
    """
    from beat.backend.python.data import CachedDataSource
    from beat.core.experiment import Experiment

    exp = Experiment(prefix, experiment)
    if not exp.valid:
        raise BlockError(f"experiment {experiment}: " + "; ".join(exp.errors))
    for name, block in exp.setup().items():
        config = block["configuration"]
        if "result" in config:
            source = CachedDataSource()
            if not source.setup(os.path.join(cache, config["result"]["path"] + ".data"), prefix):
                raise BlockError(f"the analyzer `{name}` has no results in {cache}")
            data, _, _ = source[0]
            return {"block": name, "path": config["result"]["path"],
                    "results": {k: (v.item() if hasattr(v, "item") else v) for k, v in data.as_dict().items()}}
    raise BlockError(f"experiment {experiment} has no analyzer")


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "results":
        try:
            print(json.dumps(read_results(*argv[1:])))
        except BlockError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        return 0
    print("usage: python -m adapters.beat results PREFIX CACHE EXPERIMENT", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
