"""The one place that knows which Keras backend runs: determinism and thread settings.

`core/experiment.py` builds and trains with the `keras` API only, so the same
code can run on the JAX or PyTorch backends; what has no backend-neutral API
(op determinism, thread pools) lives here.
"""
from __future__ import annotations

import os
from typing import Any

# How training runs, as opposed to what it computes (that is the spec). Each can be
# set from the environment and is written into the record's `determinism`, so
# `compare` can show it; `run.py bench` measured the defaults (bench/README.md).
STEPS_PER_EXECUTION_ENV = "HARNESS_STEPS_PER_EXECUTION"
JIT_COMPILE_ENV = "HARNESS_JIT_COMPILE"
THREADS_ENV = {"intra_op": "HARNESS_INTRA_OP_THREADS", "inter_op": "HARNESS_INTER_OP_THREADS"}
DEFAULT_STEPS_PER_EXECUTION = 32  # Python round trips per epoch ÷ 32; the same steps, the same numbers
DEFAULT_JIT_COMPILE = False  # XLA on CPU: ~10x slower per step for these convolutions, and ~1 min to compile


def backend_name() -> str:
    """The Keras backend that will be used, without importing Keras."""
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def configure(seed: int, deterministic: bool = True) -> dict[str, Any]:
    """Seed every generator, size the thread pools and set determinism; returns what was set
    (with `compile_options()`), for the record. Must run before any model is built.
    """
    threads = configure_threads()  # before anything starts the backend's runtime
    import keras

    keras.utils.set_random_seed(seed)  # Python, NumPy and the backend's generators
    settings: dict[str, Any] = {"seed": seed, "op_determinism": False,
                                "set_random_seed": True, "backend": keras.backend.backend(),
                                "threads": threads, **compile_options()}
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if deterministic:
            tf.config.experimental.enable_op_determinism()
        else:
            tf.config.experimental.disable_op_determinism() if hasattr(
                tf.config.experimental, "disable_op_determinism") else None
        settings["op_determinism"] = deterministic
    elif keras.backend.backend() == "torch":
        import torch

        torch.use_deterministic_algorithms(deterministic)
        settings["op_determinism"] = deterministic
    elif keras.backend.backend() == "jax":
        # XLA on CPU is deterministic; on GPU determinism needs this flag before start-up.
        settings["op_determinism"] = "--xla_gpu_deterministic_ops=true" in os.environ.get("XLA_FLAGS", "")
    return settings


def _env_int(name: str, default: int, minimum: int) -> int:
    from core.errors import UsageError

    raw = os.environ.get(name, "")
    try:
        value = int(raw) if raw.strip() else default
    except ValueError:
        raise UsageError(f"{name}={raw!r}: expected a whole number") from None
    if value < minimum:
        raise UsageError(f"{name}={raw!r}: must be at least {minimum}")
    return value


def compile_options() -> dict[str, Any]:
    """`steps_per_execution` and `jit_compile` for `model.compile`, from the environment or the defaults.

    Several steps per execution change nothing computed (the same batches in the
    same order, the same random stream); XLA does change rounding, so it is off
    unless HARNESS_JIT_COMPILE=1, and either way it is recorded.
    """
    return {"steps_per_execution": _env_int(STEPS_PER_EXECUTION_ENV, DEFAULT_STEPS_PER_EXECUTION, 1),
            "jit_compile": bool(_env_int(JIT_COMPILE_ENV, int(DEFAULT_JIT_COMPILE), 0))}


def configure_threads() -> dict[str, int]:
    """Size the backend's thread pools from HARNESS_INTRA_OP_THREADS / HARNESS_INTER_OP_THREADS
    (0 or unset: the backend's default, all cores); returns the sizes in effect.

    Thread counts decide how reductions are split, so they are part of what makes
    two runs bit-identical; the record keeps them. Must run before the first op.
    """
    wanted = {pool: _env_int(env, 0, 0) for pool, env in THREADS_ENV.items()}
    if backend_name() != "tensorflow":
        return wanted
    import tensorflow as tf

    if wanted["intra_op"]:
        tf.config.threading.set_intra_op_parallelism_threads(wanted["intra_op"])
    if wanted["inter_op"]:
        tf.config.threading.set_inter_op_parallelism_threads(wanted["inter_op"])
    # 0 means TensorFlow picks: one thread per usable core.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"intra_op": tf.config.threading.get_intra_op_parallelism_threads() or cores,
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads() or cores}


def release_model_memory() -> None:
    """Drop the last model's graph state between runs of one process."""
    import keras

    keras.backend.clear_session()


def runtime_info() -> dict[str, Any]:
    """Backend, its version, devices, thread pools and numerics switches, for the record."""
    import keras

    info: dict[str, Any] = {"keras_backend": keras.backend.backend(), "keras": keras.__version__,
                            "floatx": keras.config.floatx(), "image_data_format": keras.config.image_data_format()}
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        build = tf.sysconfig.get_build_info()
        info.update({
            "tensorflow": tf.__version__,
            "devices": [d.name for d in tf.config.list_logical_devices()],
            "gpu_devices": [d.name for d in tf.config.list_physical_devices("GPU")],
            "cuda_build": build.get("cuda_version"), "cudnn_build": build.get("cudnn_version"),
            "threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                        "inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on for x86 CPUs)"),
            "xla_jit": tf.config.optimizer.get_jit() or "off",
        })
    return info
