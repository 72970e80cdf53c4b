"""The one place that knows which Keras backend runs: its seeds, determinism, compile and thread settings.

`core/experiment.py` builds and trains with the `keras` API only, so the same
code runs on TensorFlow, JAX and PyTorch; what has no backend-neutral API
(op determinism, thread pools, how steps are compiled) lives here, one branch
per backend, and everything set is returned for the record's `determinism`.

The backend is chosen by KERAS_BACKEND, which Keras reads once, when it is
first imported: `select()` must run before anything imports keras, and one
process runs one backend. Under JAX and PyTorch nothing here imports
TensorFlow (keras.utils.set_random_seed would: see `seed_everything`).
"""
from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

BACKENDS = ("tensorflow", "jax", "torch")
DEFAULT_BACKEND = "tensorflow"
# What each backend needs installed (`make backends` installs jax and torch: requirements-backends.txt).
BACKEND_PACKAGES = {"tensorflow": ("tensorflow",), "jax": ("jax", "jaxlib"), "torch": ("torch",)}
INSTALL_HINT = "make backends (or: pip install -r requirements-backends.txt)"

# How training runs, as opposed to what it computes (that is the spec). Each can be
# set from the environment and is written into the record's `determinism`, so
# `compare` can show it; `run.py bench` measured the defaults (bench/README.md).
STEPS_PER_EXECUTION_ENV = "HARNESS_STEPS_PER_EXECUTION"
JIT_COMPILE_ENV = "HARNESS_JIT_COMPILE"
THREADS_ENV = {"intra_op": "HARNESS_INTRA_OP_THREADS", "inter_op": "HARNESS_INTER_OP_THREADS"}
# Per backend, measured on the canonical model (issue #21, bench/README.md):
# - TensorFlow: 32 steps per call into the runtime (Python round trips ÷ 32, the same numbers);
#   XLA off: ~10x slower per step on CPU for these convolutions, and Keras turns it off under
#   op determinism anyway (keras/src/trainers/trainer.py: model_supports_jit).
# - JAX: jit on, its default: without it JAX runs op by op, 1.9x slower, and other numbers.
#   One step per call: Keras unrolls steps_per_execution steps inside one jitted function
#   (keras/src/backend/jax/trainer.py), so 32 would compile 32 copies of the step.
# - PyTorch: eager (Keras's "auto" for torch), and one step per call: Keras refuses more
#   ("steps_per_execution must be 1 with the PyTorch backend", keras/src/backend/torch/trainer.py).
DEFAULT_STEPS_PER_EXECUTION = {"tensorflow": 32, "jax": 1, "torch": 1}
MAX_STEPS_PER_EXECUTION = {"torch": 1}
DEFAULT_JIT_COMPILE = {"tensorflow": False, "jax": True, "torch": False}
# XLA's GPU autotuner and atomics make JAX GPU runs vary unless this flag is set before JAX starts;
# XLA on CPU is deterministic without it. It is harmless on CPU.
JAX_DETERMINISM_FLAG = "--xla_gpu_deterministic_ops=true"
# cuBLAS needs a fixed workspace for deterministic results (PyTorch's reproducibility notes);
# read when CUDA starts, unused on CPU.
CUBLAS_WORKSPACE = ("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def backend_name() -> str:
    """The Keras backend that will be used, without importing Keras."""
    return os.environ.get("KERAS_BACKEND", DEFAULT_BACKEND)


def installed(name: str) -> bool:
    """Whether the backend's packages are importable (found, not imported)."""
    return all(importlib.util.find_spec(p) is not None for p in BACKEND_PACKAGES[name])


def check_backend(name: str) -> str:
    """`name` if it is a known, installed backend; a UsageError naming the valid ones or the install otherwise."""
    from core.errors import UsageError

    if name not in BACKENDS:
        raise UsageError(f"backend {name!r}: valid backends are {', '.join(BACKENDS)}")
    if not installed(name):
        raise UsageError(f"backend {name}: {' and '.join(BACKEND_PACKAGES[name])} not installed; {INSTALL_HINT}")
    return name


def select(name: str | None, deterministic: bool = True) -> str:
    """Make `name` (default: KERAS_BACKEND, else TensorFlow) the backend of this process; returns it.

    Sets KERAS_BACKEND and the variables the backend reads when it starts, so it
    must run before keras is imported; if keras already runs another backend
    that is a UsageError, not a silent switch.
    """
    from core.errors import UsageError

    name = check_backend(name or backend_name())
    if "keras" in sys.modules:
        running = sys.modules["keras"].backend.backend()
        if running != name:
            raise UsageError(f"--backend {name}: keras is already running on {running} in this process")
    os.environ["KERAS_BACKEND"] = name
    if deterministic and name == "jax":
        flags = os.environ.get("XLA_FLAGS", "")
        if JAX_DETERMINISM_FLAG not in flags.split():
            os.environ["XLA_FLAGS"] = f"{flags} {JAX_DETERMINISM_FLAG}".strip()
    if deterministic and name == "torch":
        os.environ.setdefault(*CUBLAS_WORKSPACE)
    return name


def seed_everything(seed: int) -> None:
    """Python, NumPy, the backend's own generator and Keras's global SeedGenerator.

    What keras.utils.set_random_seed does (keras/src/utils/rng_utils.py), except that
    it also seeds TensorFlow whenever TensorFlow is installed, importing it (~2 s, and
    TensorFlow's thread pools) into a JAX or PyTorch run; here only the running
    backend is touched.
    """
    import random

    import numpy as np
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED

    global_state.set_global_attribute(GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)
    name = backend_name()
    if name == "tensorflow":
        import tensorflow as tf

        tf.random.set_seed(seed)
    elif name == "torch":
        import torch

        torch.manual_seed(seed)  # all devices, CUDA included
    # JAX has no global generator: Keras draws its keys from the SeedGenerators seeded above.


def keep_tensorflow_out() -> None:
    """Stop Keras importing TensorFlow into a JAX or torch process to serialise a model.

    Keras's config serialisers ask its lazy TensorFlow handle `tf.available` before
    `isinstance(obj, tf.TensorShape)` (keras/src/saving/serialization_lib.py,
    keras/src/legacy/saving/json_utils.py), and `available` imports TensorFlow when it is
    installed: model.save and model.to_json would load it (~2 s, its thread pools, its
    environment variables). With TensorFlow not imported no object can be a TensorFlow
    type, so the answer "not available" is true; the handle still imports on real use.
    """
    from keras.src.utils import module_utils

    if "tensorflow" not in sys.modules:
        module_utils.tensorflow._available = False


def configure(seed: int, deterministic: bool = True) -> dict[str, Any]:
    """Seed every generator, size the thread pools and set determinism; returns what was set
    (with `compile_options()`), for the record. Must run before any model is built.
    """
    name = check_backend(backend_name())  # the variables `select` sets are the CLI's, set before the fingerprint
    threads = configure_threads()  # before anything starts the backend's runtime
    import keras

    if name != "tensorflow":
        keep_tensorflow_out()
    seed_everything(seed)
    settings: dict[str, Any] = {"seed": seed, "op_determinism": False, "set_random_seed": True,
                                "backend": keras.backend.backend(), "threads": threads, **compile_options()}
    if name == "tensorflow":
        import tensorflow as tf

        if deterministic:
            tf.config.experimental.enable_op_determinism()
        elif hasattr(tf.config.experimental, "disable_op_determinism"):
            tf.config.experimental.disable_op_determinism()
        settings["op_determinism"] = deterministic
    elif name == "torch":
        import torch

        torch.use_deterministic_algorithms(deterministic)
        # cuDNN picks the fastest kernel per shape unless told not to; unused on CPU.
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cudnn.benchmark = not deterministic
        settings["op_determinism"] = torch.are_deterministic_algorithms_enabled()
    elif name == "jax":
        import jax

        # XLA on CPU is deterministic; on a GPU only with the flag `select` put into XLA_FLAGS.
        on_cpu = jax.default_backend() == "cpu"
        settings["op_determinism"] = on_cpu or JAX_DETERMINISM_FLAG in os.environ.get("XLA_FLAGS", "").split()
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
    """`steps_per_execution` and `jit_compile` for `model.compile`: the running backend's defaults,
    or HARNESS_STEPS_PER_EXECUTION / HARNESS_JIT_COMPILE.

    Several steps per execution change nothing computed (the same batches in the
    same order, the same random stream); compiling (XLA, jit) may change rounding,
    so it is part of the record either way.
    """
    from core.errors import UsageError

    name = backend_name()
    steps = _env_int(STEPS_PER_EXECUTION_ENV, DEFAULT_STEPS_PER_EXECUTION.get(name, 1), 1)
    if steps > MAX_STEPS_PER_EXECUTION.get(name, steps):
        raise UsageError(f"{STEPS_PER_EXECUTION_ENV}={steps}: the {name} backend runs one step per execution")
    return {"steps_per_execution": steps,
            "jit_compile": bool(_env_int(JIT_COMPILE_ENV, int(DEFAULT_JIT_COMPILE.get(name, False)), 0))}


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def configure_threads() -> dict[str, int]:
    """Size the backend's thread pools from HARNESS_INTRA_OP_THREADS / HARNESS_INTER_OP_THREADS
    (0 or unset: one thread per usable core); returns the sizes in effect.

    Thread counts decide how reductions are split, so they are part of what makes
    two runs bit-identical (PyTorch with 1 thread trains other weights than with 2);
    the record keeps them. Must run before the first op.
    """
    from core.errors import UsageError

    wanted = {pool: _env_int(env, 0, 0) for pool, env in THREADS_ENV.items()}
    name = backend_name()
    cores = usable_cores()
    if name == "tensorflow":
        import tensorflow as tf

        if wanted["intra_op"]:
            tf.config.threading.set_intra_op_parallelism_threads(wanted["intra_op"])
        if wanted["inter_op"]:
            tf.config.threading.set_inter_op_parallelism_threads(wanted["inter_op"])
        # 0 means TensorFlow picks: one thread per usable core.
        return {"intra_op": tf.config.threading.get_intra_op_parallelism_threads() or cores,
                "inter_op": tf.config.threading.get_inter_op_parallelism_threads() or cores}
    if name == "torch":
        import torch

        # Set, never left to torch: its default is the number of *physical* cores, which
        # differs between two machines that both report 2 usable cores.
        torch.set_num_threads(wanted["intra_op"] or cores)
        inter = wanted["inter_op"] or cores
        if torch.get_num_interop_threads() != inter:
            try:
                torch.set_num_interop_threads(inter)
            except RuntimeError:  # only before the first parallel work; a second run in a process keeps it
                pass
        return {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}
    # JAX: XLA's CPU client runs one thread per usable core and has no setting for it
    # (its old intra_op_parallelism_threads flag is gone); pin the process (taskset) instead.
    if any(wanted.values()):
        raise UsageError(f"{' / '.join(THREADS_ENV.values())}: the jax backend cannot size its thread pool; "
                         "run it under `taskset -c 0-N` to give it N+1 cores")
    return {"intra_op": cores, "inter_op": cores}


def release_model_memory() -> None:
    """Drop the last model's graph state between runs of one process."""
    import keras

    keras.backend.clear_session()


def runtime_info() -> dict[str, Any]:
    """Backend, its versions, devices, thread pools and numerics switches, for the record."""
    import keras

    name = keras.backend.backend()
    info: dict[str, Any] = {"keras_backend": name, "keras": keras.__version__,
                            "floatx": keras.config.floatx(), "image_data_format": keras.config.image_data_format()}
    if name == "tensorflow":
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
    elif name == "jax":
        import jax
        import jaxlib

        info.update({
            "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "devices": [f"{d.platform}:{d.id} {d.device_kind}" for d in jax.devices()],
            "gpu_devices": [str(d) for d in jax.devices() if d.platform == "gpu"],
            "xla_backend": jax.default_backend(),
            "x64": bool(jax.config.jax_enable_x64),
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
        })
    elif name == "torch":
        import torch

        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
            if torch.cuda.is_available() else []
        info.update({
            "torch": torch.__version__,
            "devices": ["cpu", *(f"cuda:{i}" for i in range(len(gpus)))],
            "gpu_devices": gpus,
            "cuda_build": torch.version.cuda, "cudnn_build": torch.backends.cudnn.version() if gpus else None,
            "threads": {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()},
            "mkldnn": torch.backends.mkldnn.is_available(),
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "matmul_precision": torch.get_float32_matmul_precision(),
        })
    return info
