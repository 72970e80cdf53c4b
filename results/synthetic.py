"""Hand-built run records, for tests and for the 1,000-record comparison benchmark.

Each record is a real record folder (run.json, predictions.npy, history.csv,
confusion_matrix.csv; no model file) made without TensorFlow. The numbers
behave the way real runs do: the same spec, seed and machine with op
determinism give bit-identical weights; another machine moves a handful of
predictions; another seed moves a few dozen; a different spec is a different
experiment with its own accuracy.

    from results.synthetic import write_synthetic_records
    write_synthetic_records("bench/records", 1000)        # several specs, seeds, platforms
    write_record("runs", seed=43, machine="kaggle-gpu")   # one record, the rest made up plausibly
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from core.record import PARTIAL_PREFIX, RUN_JSON, SCHEMA_VERSION, predictions_sha256, write_confusion_csv, write_history_csv
from core.spec import ExperimentSpec, load_spec

N_CLASSES = 10
START = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.timezone.utc)

_XEON_FLAGS = ["avx", "avx2", "avx512bw", "avx512cd", "avx512dq", "avx512f", "avx512vl", "f16c", "fma",
               "sse4_1", "sse4_2"]
_PACKAGES = {"tensorflow": "2.21.0", "keras": "3.15.1", "numpy": "2.4.6", "h5py": "3.14.0", "jax": None,
             "jaxlib": None, "torch": None, "comet_ml": "3.58.8", "openml": "0.15.1", "kaggle": "2.2.4"}

# The machines records come from: what their fingerprint says, and how fast an epoch of the canonical spec runs.
MACHINES: dict[str, dict[str, Any]] = {
    "local-cpu": {"platform": "local", "cpu": "Intel(R) Xeon(R) Processor", "flags": _XEON_FLAGS, "cores": 2,
                  "gpus": [], "packages": {}, "env": {}, "epoch_seconds": 10.4},
    "kaggle-gpu": {"platform": "kaggle", "cpu": "Intel(R) Xeon(R) CPU @ 2.00GHz", "flags": _XEON_FLAGS[:1] + _XEON_FLAGS[7:],
                   "cores": 4, "gpus": [{"name": "Tesla P100-PCIE-16GB", "driver": "560.35.03", "memory": "16384 MiB"}],
                   "packages": {"tensorflow": "2.18.0", "keras": "3.8.0", "numpy": "1.26.4", "h5py": "3.12.1",
                                "comet_ml": None, "openml": None, "kaggle": "1.7.4"},
                   "env": {"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VERSION": "12.6.2"}, "epoch_seconds": 2.1},
    "codalab-cpu": {"platform": "codalab", "cpu": "AMD EPYC 7763 64-Core Processor",
                    "flags": ["avx", "avx2", "f16c", "fma", "sse4_1", "sse4_2"], "cores": 4, "gpus": [],
                    "packages": {"comet_ml": None, "kaggle": None}, "env": {"OMP_NUM_THREADS": "4"},
                    "epoch_seconds": 7.6},
}
# Platforms that run on another's machine: Comet and OpenML log runs made here.
PLATFORM_MACHINE = {"local": "local-cpu", "comet": "local-cpu", "openml": "local-cpu",
                    "kaggle": "kaggle-gpu", "codalab": "codalab-cpu"}

# Experiments of the synthetic set: spec overrides, and the test accuracy the spec reaches.
SPEC_VARIANTS: list[tuple[dict[str, Any], float]] = [
    ({}, 0.9912),
    ({"optimizer.learning_rate": 0.01}, 0.9861),
    ({"batch_size": 64}, 0.9918),
    ({"epochs": 3}, 0.9874),
    ({"layers.6.units": 256}, 0.9921),
    ({"layers.7.rate": 0.3}, 0.9905),
]


def mnist_test_labels() -> np.ndarray:
    """The real test labels when the data cache has them, else a fixed stand-in (records still load)."""
    from results.testset import TestLabels

    y = TestLabels().y_test()
    return y if y is not None else np.random.default_rng(0).integers(0, N_CLASSES, 10000).astype(np.uint8)


def _rng(*key: Any) -> np.random.Generator:
    digest = hashlib.sha256(repr(key).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _flip(predictions: np.ndarray, labels: np.ndarray, idx: np.ndarray, rng: np.random.Generator) -> None:
    """Make the images at idx wrong (a plausible wrong class), or right again if they were wrong."""
    wrong = predictions[idx] != labels[idx]
    predictions[idx[wrong]] = labels[idx[wrong]]
    shift = rng.integers(1, N_CLASSES, int((~wrong).sum()))
    predictions[idx[~wrong]] = (labels[idx[~wrong]] + shift) % N_CLASSES


def synthetic_predictions(labels: np.ndarray, accuracy: float, spec_key: str, seed: int,
                          machine: str = "local-cpu", nondeterminism: Any = None) -> np.ndarray:
    """Predictions of a model of `spec_key` near `accuracy`: hard images shared by every seed,
    a seed's own mistakes, a few images moved by another machine or by a nondeterministic run."""
    n = len(labels)
    predictions = labels.astype(np.uint8).copy()
    n_wrong = max(1, round((1 - accuracy) * n))
    hard = _rng("hard", spec_key).permutation(n)[: int(n_wrong * 0.7)]
    _flip(predictions, labels, hard, _rng("hard-class", spec_key))
    seed_rng = _rng("seed", spec_key, seed)
    n_seed = max(0, int(seed_rng.normal(n_wrong * 0.3, max(1.0, n_wrong * 0.08))))
    _flip(predictions, labels, seed_rng.choice(n, n_seed, replace=False), seed_rng)
    if machine != "local-cpu":  # other kernels, other rounding: a handful of images change
        m_rng = _rng("machine", spec_key, seed, machine)
        _flip(predictions, labels, m_rng.choice(n, max(1, n // 2000), replace=False), m_rng)
    if nondeterminism is not None:
        nd_rng = _rng("nondeterministic", spec_key, seed, machine, nondeterminism)
        _flip(predictions, labels, nd_rng.choice(n, max(1, n // 3000), replace=False), nd_rng)
    return predictions


def _environment(machine: str, deterministic: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    m = MACHINES[machine]
    packages = {**_PACKAGES, **m["packages"]}
    gpu = bool(m["gpus"])
    threads = {"intra_op": 0, "inter_op": 0}
    runtime = {"keras_backend": "tensorflow", "keras": packages["keras"], "floatx": "float32",
               "image_data_format": "channels_last", "tensorflow": packages["tensorflow"],
               "devices": ["/device:CPU:0"] + (["/device:GPU:0"] if gpu else []),
               "gpu_devices": ["/physical_device:GPU:0"] if gpu else [], "cuda_build": "12.5.1", "cudnn_build": "9",
               "threads": threads, "onednn": "default (on for x86 CPUs)", "xla_jit": "off"}
    environment = {
        "python": "3.11.7" if machine != "kaggle-gpu" else "3.10.14", "python_implementation": "CPython",
        "os": "Linux 6.1.0", "platform": "Linux-6.1.0-x86_64-with-glibc2.36",
        "cpu": {"model": m["cpu"], "numeric_flags": m["flags"], "logical_cores": m["cores"],
                "affinity_cores": m["cores"]},
        "gpus": m["gpus"], "packages": packages, "env": dict(m["env"]),
        "harness": {"commit": "008a49dd67f5cd71e210b40d38902dd250e3c9c6", "dirty": False,
                    "code_sha256": hashlib.sha256(b"the computing code of the synthetic harness").hexdigest()},
        "platform_info": {"name": m["platform"]}, "runtime": runtime,
    }
    determinism = {"seed": None, "op_determinism": deterministic, "set_random_seed": True,
                   "backend": "tensorflow", "threads": threads}
    return environment, determinism


def _history(epochs: int, accuracy: float, rng: np.random.Generator) -> dict[str, list[float]]:
    e = np.arange(1, epochs + 1)
    rise = 1 - np.exp(-1.3 * e)
    val_acc = 0.9 + (accuracy + 0.0015 - 0.9) * rise + rng.normal(0, 0.0008, epochs)
    acc = 0.86 + (accuracy - 0.004 - 0.86) * rise + rng.normal(0, 0.0008, epochs)
    return {"accuracy": acc.tolist(), "loss": (0.45 * np.exp(-0.45 * e) + 0.025 + rng.normal(0, 0.002, epochs)).tolist(),
            "val_accuracy": np.minimum(val_acc, 0.9995).tolist(),
            "val_loss": (0.09 * np.exp(-0.4 * e) + 0.03 + rng.normal(0, 0.002, epochs)).tolist()}


def write_record(folder: str | Path, *, spec: ExperimentSpec | None = None, seed: int = 42,
                 platform: str = "local", machine: str | None = None, deterministic: bool = True,
                 predictions: np.ndarray | None = None, labels: np.ndarray | None = None,
                 accuracy: float | None = None, weights: str | None = None, test_loss: float | None = None,
                 epoch_seconds: Sequence[float] | None = None, status: str = "completed",
                 when: dt.datetime | None = None, run_id: str | None = None, nondeterminism: Any = None,
                 data_digest: str | None = None, n_train: int | None = None) -> Path:
    """One record folder under `folder`; whatever is not given is made up plausibly and consistently.

    `weights` is any string naming the trained weights: records with the same
    one get the same `weights_sha256` (default: spec, seed, machine, and for a
    nondeterministic run, `nondeterminism`).
    """
    spec = spec or load_spec("canonical")
    if spec.seed != seed:
        spec = _with_seed(spec, seed)
    machine = machine or PLATFORM_MACHINE.get(platform, "local-cpu")
    labels = mnist_test_labels() if labels is None else labels
    n_test = spec.data.test_limit or len(labels)
    labels = labels[:n_test]
    spec_key = _seedless_key(spec)
    if predictions is None:
        predictions = synthetic_predictions(labels, accuracy or 0.991, spec_key, seed, machine,
                                            None if deterministic else nondeterminism)
    predictions = np.asarray(predictions, dtype=np.uint8)
    rng = _rng("outcome", spec_key, seed, machine, None if deterministic else nondeterminism, weights)
    test_accuracy = float((predictions == labels[: len(predictions)]).mean())
    if weights is None:
        weights = f"{spec_key}/{seed}/{machine}/{nondeterminism if not deterministic else ''}"
    history = _history(spec.epochs, test_accuracy, _rng("history", weights))
    when = when or START
    if epoch_seconds is None:  # smaller batches: more steps, slower epochs
        platform_seconds = MACHINES[machine]["epoch_seconds"] * (128 / spec.batch_size) ** 0.5
        epoch_seconds = (platform_seconds * (1 + 0.04 * rng.standard_normal(spec.epochs))).clip(0.1).tolist()
        epoch_seconds[0] *= 1.15  # the first epoch traces the graph
    total = float(sum(epoch_seconds)) + 3.5
    environment, determinism = _environment(machine, deterministic)
    determinism["seed"] = seed
    run_id = run_id or f"{when:%Y%m%dT%H%M%S}Z-{platform}-{spec.short_hash}-{hashlib.sha256(repr((when, platform, seed, weights)).encode()).hexdigest()[:4]}"
    completed = status == "completed"
    run = {
        "schema_version": SCHEMA_VERSION, "run_id": run_id, "platform": platform, "status": status,
        "started_at": when.isoformat(timespec="seconds"),
        "finished_at": (when + dt.timedelta(seconds=total)).isoformat(timespec="seconds"),
        "spec": spec.to_dict(), "spec_hash": spec.hash,
        "data_digest": data_digest or _data_digest(spec, n_train),
        "data": {"source": "cache /home/user/.cache/mnist-harness/mnist-uint8.npz",
                 "n_train": n_train or spec.data.train_limit or 60000, "n_test": n_test},
        "seed": seed, "determinism": determinism, "environment": environment,
        "timings": {"epoch_seconds": list(epoch_seconds), "total_seconds": total,
                    "mean_epoch_seconds": float(np.mean(epoch_seconds)) if len(epoch_seconds) else None},
        "metrics": {}, "weights_sha256": None, "predictions_sha256": None, "error": None,
    }
    if completed:
        loss = test_loss if test_loss is not None else 0.02 + 1.6 * (1 - test_accuracy) + abs(rng.normal(0, 0.002))
        run.update({
            "metrics": {"test_accuracy": test_accuracy, "test_loss": float(loss),
                        **{f"final_{k}": v[-1] for k, v in history.items()}},
            "history": history,
            "weights_sha256": hashlib.sha256(f"weights:{weights}".encode()).hexdigest(),
            "predictions_sha256": predictions_sha256(predictions),
        })
    else:
        run["error"] = "KeyboardInterrupt: signal 15" if status == "interrupted" else "RuntimeError: out of memory"
    out = Path(folder) / run_id
    out.mkdir(parents=True, exist_ok=False)
    if completed:
        np.save(out / "predictions.npy", predictions)
        write_history_csv(out / "history.csv", history, epoch_seconds)
        _write_confusion(out / "confusion_matrix.csv", labels[: len(predictions)], predictions)
    (out / RUN_JSON).write_text(json.dumps(run, indent=2) + "\n")
    return out


def write_partial(folder: str | Path, name: str = "20260105T090000Z-local-00000000-dead") -> Path:
    """A run killed before it published: a `.partial-` folder without run.json."""
    out = Path(folder) / f"{PARTIAL_PREFIX}{name}"
    out.mkdir(parents=True)
    (out / "history.csv").write_text("epoch,accuracy,loss,seconds\n1,0.9,0.3,10.0\n")
    return out


def write_synthetic_records(folder: str | Path, n: int, *, seed: int = 0, labels: np.ndarray | None = None,
                            variants: Sequence[tuple[Mapping[str, Any], float]] = SPEC_VARIANTS,
                            seeds: int = 8) -> list[Path]:
    """n records under `folder`: several specs, `seeds` seeds each, every platform, reruns included.

    About one run in ten has op determinism off; on the GPU machine those differ
    from run to run. Deterministic for a given `seed`. Returns the record folders.
    """
    labels = mnist_test_labels() if labels is None else labels
    rng = np.random.default_rng(seed)
    specs = [load_spec("canonical", dict(overrides)) for overrides, _ in variants]
    weights = np.array([4.0] + [1.0] * (len(variants) - 1))
    platforms = list(PLATFORM_MACHINE)
    paths = []
    for i in range(n):
        v = int(rng.choice(len(variants), p=weights / weights.sum()))
        run_seed = 42 + int(rng.integers(0, seeds))
        platform = platforms[int(rng.integers(0, len(platforms)))]
        deterministic = bool(rng.random() > 0.1)
        paths.append(write_record(
            folder, spec=_with_seed(specs[v], run_seed), seed=run_seed, platform=platform,
            deterministic=deterministic, labels=labels, accuracy=variants[v][1],
            nondeterminism=i, when=START + dt.timedelta(minutes=7 * i)))
    return paths


def _with_seed(spec: ExperimentSpec, seed: int) -> ExperimentSpec:
    import dataclasses

    return dataclasses.replace(spec, seed=seed)


def _seedless_key(spec: ExperimentSpec) -> str:
    d = spec.experiment_dict()
    d.pop("seed")
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _data_digest(spec: ExperimentSpec, n_train: int | None) -> str:
    from core.data import FULL_DIGEST

    if not spec.data.train_limit and not spec.data.test_limit and not n_train:
        return FULL_DIGEST
    from results.testset import TestLabels

    digest = TestLabels().expected_digest(n_train or spec.data.train_limit or 60000, spec.data.test_limit or 10000)
    return digest or hashlib.sha256(f"cut:{spec.data.train_limit}:{spec.data.test_limit}".encode()).hexdigest()


def _write_confusion(path: Path, labels: np.ndarray, predictions: np.ndarray) -> None:
    confusion = np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    write_confusion_csv(path, confusion)
