"""The one place that knows which Keras backend runs: determinism and thread settings.

`core/experiment.py` builds and trains with the `keras` API only, so the same
code can run on the JAX or PyTorch backends; what has no backend-neutral API
(op determinism, thread pools) lives here.
"""
from __future__ import annotations

import os
from typing import Any


def backend_name() -> str:
    """The Keras backend that will be used, without importing Keras."""
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def configure(seed: int, deterministic: bool = True) -> dict[str, Any]:
    """Seed every generator and set determinism; returns what was set, for the record.

    Must run before any model is built.
    """
    import keras

    keras.utils.set_random_seed(seed)  # Python, NumPy and the backend's generators
    settings: dict[str, Any] = {"seed": seed, "op_determinism": False,
                                "set_random_seed": True, "backend": keras.backend.backend()}
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
