"""The canonical experiment, top to bottom: data, model, training, evaluation, record.

Read it like keras-io's mnist_convnet.py: one small function per stage, called
in order from `run_experiment`. Only the `keras` API is used here; the
backend-specific switches live in `core/backend.py`.
"""
from __future__ import annotations

import csv
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import yaml

from core import backend, console, environment
from core.data import Mnist
from core.errors import HarnessError
from core.record import (SCHEMA_VERSION, RecordWriter, new_run_id, predictions_sha256, utc_now,
                         weights_sha256)
from core.spec import ExperimentSpec

NUM_CLASSES = 10
INPUT_SHAPE = (28, 28, 1)


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
    with console.saving_hdf5_on_purpose():
        model.save(writer.path("model.h5"))
    config = json.loads(model.to_json())  # JSON first: get_config() holds tuples YAML would tag
    writer.path("model.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    np.save(writer.path("predictions.npy"), result["predictions"])
    with open(writer.path("history.csv"), "w", newline="") as f:
        w = csv.writer(f)
        keys = list(history)
        w.writerow(["epoch", *keys, "seconds"])
        for i, secs in enumerate(epoch_seconds):
            w.writerow([i + 1, *(repr(history[k][i]) for k in keys), f"{secs:.4f}"])
    with open(writer.path("confusion_matrix.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["true\\predicted", *range(NUM_CLASSES)])
        for i, row in enumerate(result["confusion"]):
            w.writerow([i, *row.tolist()])


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
    """
    started = time.perf_counter()
    data = data.limited(spec.data.train_limit, spec.data.test_limit)
    run_id = new_run_id(platform, spec.hash)
    writer = RecordWriter(runs_dir, run_id)
    epoch_seconds: list[float] = []
    run: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "run_id": run_id, "platform": platform, "status": "failed",
        "started_at": utc_now(), "finished_at": None, "spec": spec.to_dict(), "spec_hash": spec.hash,
        "data_digest": data.digest(), "data": {"source": data.source, "n_train": len(data.x_train),
                                               "n_test": len(data.x_test), "verified_by": data.verified_by},
        "seed": spec.seed, "determinism": {}, "environment": {}, "timings": {}, "metrics": {},
        "weights_sha256": None, "predictions_sha256": None, "error": None,
    }
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
        result = evaluate(model, spec, data)
        write_artifacts(writer, model, history, epoch_seconds, result)
        run.update({
            "status": "completed",
            "metrics": final_metrics(history, result),
            "weights_sha256": weights_sha256(model.get_weights()),
            "predictions_sha256": predictions_sha256(result["predictions"]),
            "history": history,
        })
    except BaseException as e:  # noqa: BLE001 — the record must say how the run ended
        run["status"] = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        run["error"] = f"{type(e).__name__}: {e}"
        run["traceback"] = traceback.format_exc(limit=20)
        failure = e
    else:
        failure = None
    run["finished_at"] = utc_now()
    run["timings"] = {"epoch_seconds": epoch_seconds, "total_seconds": time.perf_counter() - started,
                      "mean_epoch_seconds": sum(epoch_seconds) / len(epoch_seconds) if epoch_seconds else None}
    final = writer.publish(run)
    log(f"[run] record {run['status']}: {final}")
    if isinstance(failure, (KeyboardInterrupt, HarnessError)):
        failure.record = final  # the caller's finalize hook sees the published record
        raise failure
    if failure is not None:
        raise RunFailed(f"the run failed: {run['error']}\n  the record (with the traceback) is at {final}",
                        record=final) from failure
    return final


class RunFailed(HarnessError):
    """Training or evaluation raised; the failed record is published and named in the message."""

    exit_code = 4

    def __init__(self, message: str, record: Path | None = None):
        super().__init__(message)
        self.record = record
