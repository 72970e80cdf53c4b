"""The environment fingerprint: everything about this machine that can move a number.

Recorded in every run record, so that `compare` can say *why* two runs differ.
Anything whose name looks like a secret is redacted before it is written.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from importlib import machinery, metadata
from pathlib import Path
from typing import Any

from core import console

HARNESS_ROOT = Path(__file__).resolve().parent.parent

# Variables that can change numerics or threading, or pick the accelerator. Named, not matched by a bare
# `TF_` prefix: Terraform's TF_CLI_CONFIG_FILE, TF_VAR_*, TF_LOG move no number. The TensorFlow names are
# the ones its sources read with ReadBoolFromEnvVar/getenv for kernels, threads, determinism and precision
# (tensorflow/core/util/env_var.cc callers, tensorflow/core/common_runtime/*, xla/debug_options_flags.cc).
NUMERIC_ENV_NAMES = frozenset({
    "TF_ENABLE_ONEDNN_OPTS", "TF_DETERMINISTIC_OPS", "TF_CUDNN_DETERMINISTIC", "TF_CUDNN_USE_AUTOTUNE",
    "TF_CUDNN_USE_FRONTEND", "TF_CUDNN_RESET_RND_GEN_STATE", "TF_XLA_FLAGS", "TF_NUM_INTEROP_THREADS",
    "TF_NUM_INTRAOP_THREADS", "TF_GPU_THREAD_MODE", "TF_GPU_THREAD_COUNT", "TF_ENABLE_XLA",
    "TF_ENABLE_AUTO_MIXED_PRECISION", "TF_ENABLE_AUTO_MIXED_PRECISION_GRAPH_REWRITE", "TF_USE_LEGACY_KERAS",
    "TF_ENABLE_CUBLAS_TENSOR_OP_MATH", "TF_ENABLE_CUDNN_TENSOR_OP_MATH", "TF_ENABLE_CUDNN_RNN_TENSOR_OP_MATH",
    "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS", "TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "TF_DISABLE_MKL", "TF_MKL_OPTIMIZE_PRIMITIVE_MEMUSE",
    "XLA_FLAGS", "CUDA_VISIBLE_DEVICES", "CUDA_VERSION", "NVIDIA_TF32_OVERRIDE", "CUBLAS_WORKSPACE_CONFIG",
    "KERAS_BACKEND", "PYTHONHASHSEED", "JAX_ENABLE_X64", "JAX_PLATFORMS", "JAX_DEFAULT_MATMUL_PRECISION",
    "JAX_DEFAULT_DTYPE_BITS", "JAX_THREEFRY_PARTITIONABLE", "TPU_NAME",
    # PyTorch: TF32 matmuls on Ampere and later GPUs (torch/csrc/Context.cpp reads it)
    "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE",
})
# Whole families that are about threads, kernels or precision (OpenMP, MKL, OpenBLAS, oneDNN, Intel OpenMP).
NUMERIC_ENV_PREFIXES = ("OMP_", "MKL_", "OPENBLAS_", "KMP_", "ONEDNN_", "DNNL_", "TF_XLA_", "TF_MKL_")


def touches_numerics(name: str) -> bool:
    """Whether an environment variable can change what is computed (see NUMERIC_ENV_NAMES)."""
    return name in NUMERIC_ENV_NAMES or name.startswith(NUMERIC_ENV_PREFIXES)


SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION", re.IGNORECASE)
REDACTED = "<redacted>"
# Variables TensorFlow sets in its own process when it is imported: recorded only when
# they were already set before (by the user), so a second run in one process records
# the same environment as the first.
# TPU_SKIP_MDS_QUERY: set by JAX's import on a machine without TPUs (jax/_src/cloud_tpu_init.py), and
# TensorFlow imports JAX when it is installed (tensorflow/lite/python/util.py: `from jax import jit`).
# TF_FORCE_GPU_ALLOW_GROWTH: set by Keras's import under the JAX and torch backends (keras/src/backend/config.py).
SET_BY_IMPORTS = ("KMP_", "TPU_ML_PLATFORM", "TPU_SKIP_MDS_QUERY", "TF_FORCE_GPU_ALLOW_GROWTH")
_ENV_AT_START = frozenset(os.environ)
# CPU flags that select different kernels in oneDNN/Eigen, hence different rounding.
NUMERIC_CPU_FLAGS = re.compile(r"^(sse4_1|sse4_2|avx|avx2|fma|f16c|avx512\w*|amx\w*|avx_vnni)$")
PACKAGES = ("tensorflow", "keras", "numpy", "h5py", "jax", "jaxlib", "torch", "comet_ml", "openml", "kaggle")


def redact_env(env: dict[str, str]) -> dict[str, str]:
    return {k: (REDACTED if SECRET_NAME.search(k) else v) for k, v in sorted(env.items())}


def numeric_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment variables that affect numerics, secrets redacted."""
    if environ is None:
        environ = {k: v for k, v in os.environ.items() if k in _ENV_AT_START or not k.startswith(SET_BY_IMPORTS)}
    # How much TensorFlow logs moves no number; `environment.logging` records it (core/console.py).
    return redact_env({k: v for k, v in environ.items() if touches_numerics(k) and k not in console.LOGGING_ENV})


def cpu_info() -> dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), []
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name":
                model = value.strip()
            elif key == "flags" and not flags:
                flags = sorted(f for f in value.split() if NUMERIC_CPU_FLAGS.match(f))
    except OSError:
        pass
    return {"model": model, "numeric_flags": flags, "logical_cores": os.cpu_count(),
            "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}


def gpu_info() -> list[dict[str, str]]:
    """GPUs as nvidia-smi reports them (name, driver, memory); empty without one."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            gpus.append({"name": parts[0], "driver": parts[1], "memory": parts[2]})
    return gpus


# One import name, several distributions: TensorFlow's CPU image installs `tensorflow-cpu`
# (its Dockerfile installs ${TENSORFLOW_PACKAGE}), Windows wheels are `tensorflow-intel`,
# Apple's `tensorflow-macos`, ARM Linux `tensorflow-aarch64`, nightlies `tf-nightly*`.
# Asking only for the distribution named `tensorflow` reads None in all of those.
DISTRIBUTIONS = {
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel", "tensorflow-macos",
                   "tensorflow-aarch64", "tensorflow-rocm", "intel-tensorflow", "tf-nightly", "tf-nightly-cpu",
                   "tf-nightly-gpu"),
    "keras": ("keras", "keras-nightly"),
    "jax": ("jax", "jax-nightly"),
    "comet_ml": ("comet_ml",),
}


def installed_version(module: str, path: list[str] | None = None) -> str | None:
    """The installed version of the package imported as `module`, whatever its distribution is called.

    None when no module of that name is on `path` (sys.path by default). Otherwise the
    known distribution names first (cheap), then whichever distribution ships the
    top-level module, then the module's `__version__` if something already imported it
    (it is never imported here: the fingerprint stays cheap).
    """
    this_process = path is None  # only then does sys.modules say anything about `path`
    path = list(sys.path if this_process else path)
    if machinery.PathFinder.find_spec(module, path) is None and not (this_process and module in sys.modules):
        return None
    known = DISTRIBUTIONS.get(module, (module,))
    for names in (known, None):  # the scan of every distribution only when no known name is installed
        for name in names or _providers(module, path):
            dist = next(iter(metadata.distributions(name=name, path=path)), None)
            if dist is not None and dist.version:
                return dist.version
    loaded = sys.modules.get(module) if this_process else None
    version = getattr(loaded, "__version__", None)
    return version if isinstance(version, str) else None


def _providers(module: str, path: list[str]) -> list[str]:
    """Distributions that ship the top-level module `module` (their top_level.txt, else their RECORD)."""
    names = set()
    for dist in metadata.distributions(path=path):
        top = (dist.read_text("top_level.txt") or "").split()
        if not top:
            top = [f.parts[0].removesuffix(".py") for f in dist.files or () if f.parts]
        if module in top and dist.metadata["Name"]:
            names.add(dist.metadata["Name"])
    return sorted(names)


def package_versions() -> dict[str, str | None]:
    """{import name: installed version or None} for the packages that can move a number."""
    return {name: installed_version(name) for name in PACKAGES}


# The code that computes: what a trained model depends on besides the spec, the data and the libraries.
# `compare` counts a harness change only when this digest differs, not when the commit does.
COMPUTING_CODE = ("core/experiment.py", "core/backend.py", "core/spec.py", "core/data.py")


def code_digest(root: Path = HARNESS_ROOT) -> str | None:
    """SHA-256 over the COMPUTING_CODE files (name and bytes of each); None if one is missing."""
    h = hashlib.sha256()
    for name in COMPUTING_CODE:
        try:
            content = (root / name).read_bytes()
        except OSError:
            return None
        h.update(f"{name}\0{len(content)}\0".encode())
        h.update(content)
    return h.hexdigest()


HARNESS_STAMP = "HARNESS_COMMIT.json"  # written into bundles that run where there is no git


def git_state(root: Path = HARNESS_ROOT) -> dict[str, Any]:
    """The harness's commit and whether the tree was dirty.

    Outside a git checkout (a Kaggle kernel, a CodaLab worker) the stamp that the
    bundle was built with answers instead; nulls when there is neither.
    """
    def git(*args: str) -> str | None:
        try:
            p = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return p.stdout.strip() if p.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")  # an unpacked bundle inside someone else's repo is not ours
    commit = git("rev-parse", "HEAD") if top and Path(top).resolve() == root.resolve() else None
    if commit is None:
        return _stamped_state(root)
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status)}


def _stamped_state(root: Path) -> dict[str, Any]:
    try:
        stamp = json.loads((root / HARNESS_STAMP).read_text())
        return {"commit": stamp["commit"], "dirty": stamp["dirty"], "from": HARNESS_STAMP}
    except (OSError, ValueError, KeyError, TypeError):
        return {"commit": None, "dirty": None}


def harness_stamp(state: dict[str, Any]) -> str:
    """The HARNESS_STAMP file's text for a bundle built from the checkout whose `git_state()` this is."""
    return json.dumps({"commit": state["commit"], "dirty": state["dirty"]}, indent=2) + "\n"


def fingerprint(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The machine and software; cheap, imports nothing heavy. `backend.runtime_info()` adds the rest."""
    fp = {
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "cpu": cpu_info(),
        "gpus": gpu_info(),
        "packages": package_versions(),
        "env": numeric_env(),
        "harness": {**git_state(), "code_sha256": code_digest()},
        "logging": console.logging_state(),
    }
    if extra:
        fp.update(redact_nested(extra))
    return fp


def redact_nested(obj: Any) -> Any:
    """Redact every mapping value whose key looks like a secret, at any depth."""
    if isinstance(obj, dict):
        return {k: (REDACTED if isinstance(k, str) and SECRET_NAME.search(k) else redact_nested(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact_nested(v) for v in obj]
    return obj
