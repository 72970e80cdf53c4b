"""The canonical experiment, top to bottom: data, model, training, evaluation, record.

Read it like keras-io's mnist_convnet.py: one small function per stage, called
in order from `run_experiment`. Only the `keras` API is used here; the
backend-specific switches live in `core/backend.py`.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import yaml

from core import backend, console, environment
from core.data import Mnist
from core.errors import HarnessError
from core.record import (SCHEMA_VERSION, RecordWriter, describe_error, is_disk_full, predictions_sha256, utc_now,
                         weights_sha256, write_confusion_csv, write_history_csv)
from core.spec import ExperimentSpec, SpecError

NUM_CLASSES = 10
INPUT_SHAPE = (28, 28, 1)
# Beyond this the weights and the optimizer's slots outgrow a machine (the canonical model has 1.2M).
MAX_PARAMETERS = 100_000_000


# --- Stage 0: the architecture, checked before anything is written ----------------

def check_architecture(spec: ExperimentSpec) -> tuple[int, ...]:
    """The model's output shape, from Keras's own shape rules, without building a weight.

    Each layer is made (named, so Keras's automatic layer names are not used up) and
    asked for its output shape; nothing is built or trained. A kernel larger than its
    input, a model whose output is not one score per digit, or one too large to hold is a
    SpecError (exit 2) here, before a record exists. Called before the seeds are set:
    making a layer draws its initializer's default seed from Python's `random`, which
    `keras.utils.set_random_seed` resets afterwards. Making a layer also starts the
    backend's runtime, so its thread pools are sized first (as `backend.configure` would;
    sizing them again with the same numbers there is a no-op).
    """
    backend.configure_threads()
    import keras

    shape: tuple = (None, *INPUT_SHAPE)
    parameters = 0
    source = f"spec {spec.name}"
    for i, layer in enumerate(spec.layers):
        where = f"layers[{i}]"
        try:
            made = getattr(keras.layers, layer.type)(name=f"shape_check_{i}", **_layer_kwargs(layer.args))
            new = tuple(made.compute_output_shape(shape))
        except Exception as e:  # noqa: BLE001 — Keras says why in its own words (ValueError, TypeError)
            first = str(e).split(". ")[0].strip().rstrip(".")[:200]
            raise SpecError(source, where, f"{layer.type} cannot take a {_shape_text(shape)} input: {first}") from None
        if any(d is not None and d < 1 for d in new):
            raise SpecError(source, where, f"{layer.type} turns a {_shape_text(shape)} input into "
                                           f"{_shape_text(new)}: nothing left")
        parameters += _parameter_count(layer, shape, new)
        shape = new
    if shape[1:] != (NUM_CLASSES,):
        raise SpecError(source, "layers", f"the model's output is {_shape_text(shape)}, not one score per digit "
                                          f"({NUM_CLASSES}); put a Flatten before the Dense layers")
    if parameters > MAX_PARAMETERS:
        raise SpecError(source, "layers", f"{parameters:,} weights, more than the {MAX_PARAMETERS:,} a run may have")
    return shape


def _shape_text(shape: tuple) -> str:
    return "x".join(str(d) for d in shape[1:]) or "scalar"


def _parameter_count(layer, shape_in: tuple, shape_out: tuple) -> int:
    """Weights of one layer, from its input and output shapes (as Keras would create them)."""
    bias = 1 if layer.args.get("use_bias", True) else 0
    if layer.type == "Conv2D":
        k = layer.args["kernel_size"]
        kh, kw = (k, k) if isinstance(k, int) else (k[0], k[-1])
        return (kh * kw * shape_in[-1] + bias) * shape_out[-1]
    if layer.type == "Dense":
        return (shape_in[-1] + bias) * shape_out[-1]
    if layer.type == "BatchNormalization":
        return 4 * shape_in[-1]
    return 0


# --- Stage 1: the model, from the spec's layer list ----------------------------

def build_model(spec: ExperimentSpec):
    """A Sequential model: uint8 images in, scaled to [0, 1] inside the model, then the spec's layers.

    Scaling is the model's first layer so the data stays uint8 (55 MB) until a
    batch is made, and a saved model.h5 takes raw MNIST images.
    """
    import keras

    model = keras.Sequential(name=spec.name.replace("-", "_"))
    model.add(keras.Input(shape=INPUT_SHAPE))
    model.add(keras.layers.Rescaling(1.0 / 255))
    for layer in spec.layers:
        model.add(getattr(keras.layers, layer.type)(**_layer_kwargs(layer.args)))
    optimizer_class = {"adam": "Adam", "adamw": "AdamW", "nadam": "Nadam", "sgd": "SGD",
                       "rmsprop": "RMSprop", "adadelta": "Adadelta", "adagrad": "Adagrad"}[spec.optimizer.name]
    args = dict(spec.optimizer.args)
    decay, learning_rate = args.pop("decay", 0.0), spec.optimizer.learning_rate
    if decay:  # Keras 2's `decay`: lr / (1 + decay * iterations)
        learning_rate = keras.optimizers.schedules.InverseTimeDecay(learning_rate, decay_steps=1, decay_rate=decay)
    optimizer = getattr(keras.optimizers, optimizer_class)(learning_rate=learning_rate, **args)
    # How the steps are run (several per call into TensorFlow; XLA or not) is the backend's business.
    model.compile(loss=spec.loss, optimizer=optimizer, metrics=["accuracy"], **backend.compile_options())
    return model


def _layer_kwargs(args: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}


# --- Stage 2: training ------------------------------------------------------------

def split_sizes(n: int, split: float) -> tuple[int, int]:
    """(training, validation) image counts when the first `split` of `n` trains."""
    n_train = int(round(n * split))
    return n_train, n - n_train


def split_train_validation(data: Mnist, split: float):
    """The first `split` of the training set trains, the rest validates (as Keras's validation_split)."""
    n_train, _ = split_sizes(len(data.x_train), split)
    train = (data.x_train[:n_train], data.y_train[:n_train])
    val = (data.x_train[n_train:], data.y_train[n_train:]) if n_train < len(data.x_train) else None
    return train, val


def _targets(spec: ExperimentSpec, labels: np.ndarray) -> np.ndarray:
    if spec.loss == "sparse_categorical_crossentropy":
        return labels
    return np.eye(NUM_CLASSES, dtype=np.float32)[labels]


class EpochTimer:
    """Keras callback: wall seconds of each epoch (fit's own work only)."""

    def __new__(cls, seconds: list[float] | None = None):
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.seconds: list[float] = [] if seconds is None else seconds

            def on_epoch_begin(self, epoch, logs=None):
                self._t = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self._t)

        return _Timer()


def train(model, spec: ExperimentSpec, data: Mnist, callbacks: Sequence = (), verbose: int | str | None = None,
          epoch_seconds: list[float] | None = None):
    """model.fit on the spec's split; returns (history dict, epoch seconds).

    Each finished epoch's seconds are appended to `epoch_seconds` (when given) as it
    ends, so a run stopped half-way still knows how long its finished epochs took.
    """
    (x, y), val = split_train_validation(data, spec.split)
    timer = EpochTimer(epoch_seconds)
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2  # a bar on a terminal, a line per epoch in logs
    history = model.fit(
        x[..., None], _targets(spec, y),
        validation_data=(val[0][..., None], _targets(spec, val[1])) if val else None,
        batch_size=spec.batch_size, epochs=spec.epochs, shuffle=True,
        callbacks=[timer, *callbacks], verbose=verbose,
    )
    return {k: [float(v) for v in vs] for k, vs in history.history.items()}, timer.seconds


# --- Stage 3: evaluation on the official test set ---------------------------------

def evaluate(model, spec: ExperimentSpec, data: Mnist) -> dict[str, Any]:
    """One pass over the test set: class probabilities, predictions, loss, accuracy, confusion."""
    probabilities = model.predict(data.x_test[..., None], batch_size=max(spec.batch_size, 256), verbose=0)
    predictions = probabilities.argmax(axis=1).astype(np.uint8)
    p_true = np.clip(probabilities[np.arange(len(data.y_test)), data.y_test].astype(np.float64), 1e-7, 1 - 1e-7)
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(confusion, (data.y_test, predictions), 1)
    return {
        "probabilities": probabilities,
        "predictions": predictions,
        "test_loss": float(-np.log(p_true).mean()),  # categorical cross-entropy, as Keras clips it
        "test_accuracy": float((predictions == data.y_test).mean()),
        "confusion": confusion,
    }


# --- Stage 4: the record ------------------------------------------------------------

def write_artifacts(writer: RecordWriter, model, history: dict[str, list[float]],
                    epoch_seconds: list[float], result: dict[str, Any]) -> None:
    """The record's files, smallest first: a full disk costs model.h5, not the run's numbers.

    A file whose write fails is removed (half an HDF5 file is no model, and it holds
    the space run.json needs) before the error goes on.
    """
    def history_csv(path: Path) -> None:
        write_history_csv(path, history, epoch_seconds)

    def confusion_csv(path: Path) -> None:
        write_confusion_csv(path, result["confusion"])

    def _save_hdf5(path: Path) -> None:
        with console.saving_hdf5_on_purpose():
            model.save(path)

    config = json.loads(model.to_json())  # JSON first: get_config() holds tuples YAML would tag
    writers: list[tuple[str, Callable[[Path], Any]]] = [
        ("history.csv", history_csv),
        ("confusion_matrix.csv", confusion_csv),
        ("predictions.npy", lambda p: np.save(p, result["predictions"])),
        ("model.yaml", lambda p: p.write_text(yaml.safe_dump(config, sort_keys=False))),
        ("model.h5", _save_hdf5),
    ]
    for name, write in writers:
        try:
            write(writer.path(name))
        except BaseException as e:
            writer.path(name).unlink(missing_ok=True)
            if is_disk_full(e) and not getattr(e, "filename", None):  # h5py names no file
                raise OSError(e.errno, os.strerror(e.errno), name) from e
            raise


def final_metrics(history: dict[str, list[float]], result: dict[str, Any]) -> dict[str, Any]:
    """Test metrics, and the last epoch's training/validation values as `final_<name>`."""
    metrics = {"test_accuracy": result["test_accuracy"], "test_loss": result["test_loss"]}
    metrics.update({f"final_{key}": values[-1] for key, values in history.items()})
    return metrics


# --- Train and test without a record (extra models of a platform's own protocol) ---------

def fit_and_evaluate(spec: ExperimentSpec, data: Mnist, *, deterministic: bool = True) -> dict[str, Any]:
    """Stages 1-3 on `data` (already limited and split as the caller wants), from the spec's seed.

    For models a platform trains beyond the run record (OpenML's cross-validation
    folds): the same configure/build/train/evaluate sequence as `run_experiment`,
    and nothing is written. Returns `evaluate`'s result plus the phases' seconds.
    """
    backend.configure(spec.seed, deterministic)  # every extra model starts from the spec's seed too
    model = build_model(spec)
    started = time.perf_counter()
    history, _ = train(model, spec, data)
    trained = time.perf_counter()
    result = evaluate(model, spec, data)
    result.update(history=history, train_seconds=trained - started, test_seconds=time.perf_counter() - trained)
    return result


# --- The whole run ---------------------------------------------------------------------

def run_experiment(spec: ExperimentSpec, data: Mnist, runs_dir: str | Path, platform: str, *,
                   deterministic: bool = True, callbacks: Sequence = (), platform_info: dict | None = None,
                   log: Callable[[str], None] = print) -> Path:
    """Train and evaluate `spec` on `data` and publish a run record; returns its folder.

    A failure or Ctrl-C still publishes a record, with status `failed` or
    `interrupted` and the error, then re-raises (the exception's `record`
    attribute names the published folder). What a platform does with a
    finished record — uploads, extra models — happens after this returns.
    The metrics are in the record as soon as they exist, so a run whose files
    cannot all be written (a full disk) still publishes them, in a `failed`
    record; see RecordWriter.publish.
    """
    started = time.perf_counter()
    check_architecture(spec)  # exit 2 with nothing written for a model that cannot be built
    data = data.limited(spec.data.train_limit, spec.data.test_limit)
    writer = RecordWriter.create(runs_dir, platform, spec.hash)
    run_id = writer.run_id
    epoch_seconds: list[float] = []
    run: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "run_id": run_id, "platform": platform, "status": "failed",
        "started_at": utc_now(), "finished_at": None, "spec": spec.to_dict(), "spec_hash": spec.hash,
        "data_digest": data.digest(), "data": {"source": data.source, "n_train": len(data.x_train),
                                               "n_test": len(data.x_test), "verified_by": data.verified_by},
        "seed": spec.seed, "determinism": {}, "environment": {}, "timings": {}, "metrics": {},
        "weights_sha256": None, "predictions_sha256": None, "error": None,
    }
    failure: BaseException | None = None
    with Interrupts() as interrupts:
        try:
            run["environment"] = environment.fingerprint({"platform_info": platform_info} if platform_info else None)
            run["determinism"] = backend.configure(spec.seed, deterministic)
            run["environment"]["runtime"] = backend.runtime_info()
            model = build_model(spec)
            # What Keras settled on (it turns XLA off by itself when op determinism is on).
            run["determinism"].update(steps_per_execution=model.steps_per_execution, jit_compile=bool(model.jit_compile))
            log(f"[run] {run_id}: {spec.name} ({spec.short_hash}), {len(data.x_train)} train / "
                f"{len(data.x_test)} test images, {spec.epochs} epochs")
            history, _ = train(model, spec, data, callbacks, epoch_seconds=epoch_seconds)
            interrupts.check()  # a signal whose KeyboardInterrupt some library caught still stops the run
            result = evaluate(model, spec, data)
            interrupts.check()
            run.update({  # the numbers first: whatever fails from here on, the record keeps them
                "metrics": final_metrics(history, result),
                "weights_sha256": weights_sha256(model.get_weights()),
                "predictions_sha256": predictions_sha256(result["predictions"]),
                "history": history,
            })
            write_artifacts(writer, model, history, epoch_seconds, result)
            run["status"] = "completed"
        except BaseException as e:  # noqa: BLE001 — the record must say how the run ended
            interrupts.finishing = True  # a second Ctrl-C / SIGTERM from here on waits for the record
            failure = e
            run["status"] = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
            run["error"] = describe_error(e) if is_disk_full(e) else f"{type(e).__name__}: {e}"
            run["traceback"] = traceback.format_exc(limit=20)
        interrupts.finishing = True
        run["finished_at"] = utc_now()
        run["timings"] = {"epoch_seconds": epoch_seconds, "total_seconds": time.perf_counter() - started,
                          "mean_epoch_seconds": sum(epoch_seconds) / len(epoch_seconds) if epoch_seconds else None}
        try:
            final = writer.publish(run)
        except OSError as e:  # not even a small run.json fits: say so, and keep the run's own error first
            if failure is None or isinstance(failure, KeyboardInterrupt):
                raise RunFailed(f"the run {run['status'] if failure else 'finished'} but its record could not be "
                                f"written: {describe_error(e)}") from None
            raise RunFailed(f"the run failed: {run['error']}; and its record could not be written: "
                            f"{describe_error(e)}") from failure
    log(f"[run] record {run['status']}: {final}")
    if run.get("record_error"):
        log(f"[run] {run['record_error']}; dropped: {', '.join(run.get('files_dropped', [])) or 'nothing'}")
    if isinstance(failure, (KeyboardInterrupt, HarnessError)):
        failure.record = final  # the caller's finalize hook sees the published record
        raise failure
    if failure is not None:
        raise RunFailed(f"the run failed: {run['error']} (record with the traceback: {final})",
                        record=final) from failure
    if run.get("record_error"):
        raise RunFailed(f"the run finished, but {run['record_error']}; its metrics are in the failed record {final}",
                        record=final)
    if interrupts.pending:
        interrupted = KeyboardInterrupt(f"signal {interrupts.pending}")  # came while the completed record was written
        interrupted.record = final
        raise interrupted
    return final


class Interrupts:
    """SIGINT and SIGTERM raise KeyboardInterrupt once; a second one never tears the record.

    While the record is being finished (`finishing`), or while the first interrupt is
    still being handled (Keras unwinding its `fit`), another signal is only remembered
    (`pending`). Outside the main thread signals cannot be handled here; nothing changes.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.finishing = False
        self.pending: int | None = None
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> "Interrupts":
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._saved[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame) -> None:
        self.pending = signum  # remembered even when raised: code that catches it cannot hide it (`check`)
        if self.finishing or isinstance(sys.exc_info()[1], KeyboardInterrupt):
            return
        raise KeyboardInterrupt(f"signal {signum}")

    def check(self) -> None:
        """Raise the interrupt a signal asked for, if the KeyboardInterrupt it raised was swallowed."""
        if self.pending is not None and not self.finishing:
            raise KeyboardInterrupt(f"signal {self.pending}")

    def __exit__(self, *exc) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)


class RunFailed(HarnessError):
    """Training or evaluation raised; the failed record is published and named in the message."""

    exit_code = 4

    def __init__(self, message: str, record: Path | None = None):
        super().__init__(message)
        self.record = record
