"""Kaggle, inside a kernel: MNIST from the attached dataset, the record into the kernel's output.

    python run.py --platform kaggle               # inside a kernel (detected from KAGGLE_KERNEL_RUN_TYPE)

The kernel is written, pushed and pulled from this machine by `adapters/remote/kaggle.py`
(`run.py bundle|push|status|pull kaggle`). Inside the kernel, MNIST comes from the
attached dataset under `<root>/input` and the record goes to `<root>/working`, which
Kaggle keeps as the kernel's output.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

from adapters.base import Option, Platform, default_data
from core import environment
from core.data import DataError, Mnist, find_idx_files, read_idx, read_npz, verify
from core.spec import ExperimentSpec

METADATA_FILE = "kernel-metadata.json"  # the name the client reads (KaggleApi.KERNEL_METADATA_FILE)
DEFAULT_ROOT = "/kaggle"
DEFAULT_DATASET = "hojjatk/mnist-dataset"  # LeCun's four IDX files, dotted names, the official split
MANIFEST = "BUNDLE.json"  # inside the embedded zip: what was bundled, from which commit


# --- Inside a kernel ------------------------------------------------------------------

def dataset_folders(input_dir: Path, preferred: Sequence[str] = ()) -> list[Path]:
    """Folders that may hold one attached dataset, the bundle's own datasets first.

    Kaggle mounts a dataset at `input/<slug>/` (older kernels) or at
    `input/datasets/<owner>/<slug>/` (newer ones); other namespaces count as one folder each.
    """
    folders = []
    for ref in preferred:
        owner, _, slug = ref.partition("/")
        folders += [input_dir / "datasets" / owner / slug, input_dir / slug]
    if input_dir.is_dir():
        for child in sorted(p for p in input_dir.iterdir() if p.is_dir()):
            if child.name == "datasets":
                folders += [slug for owner in sorted(child.iterdir()) if owner.is_dir()
                            for slug in sorted(owner.iterdir()) if slug.is_dir()]
            else:
                folders.append(child)
    unique = dict.fromkeys(f for f in folders if f.is_dir())
    return list(unique)


def read_mnist_folder(folder: Path) -> Mnist:
    """The verified MNIST in one dataset folder: the four IDX files (raw or .gz), else a Keras mnist.npz."""
    if find_idx_files(folder):  # some IDX files: all four must be there and verify
        return verify(read_idx(folder), f"kaggle input {folder} (IDX)")
    errors = []
    for npz in sorted(folder.rglob("*.npz")):
        try:
            return verify(read_npz(npz), f"kaggle input {npz}")
        except DataError as e:
            errors.append(str(e))
    raise DataError("; ".join(errors) or f"{folder}: no IDX files and no .npz file")


def find_mnist(input_dir: Path, preferred: Sequence[str] = ()) -> Mnist:
    """The first dataset folder under `input_dir` that holds MNIST with the official digests."""
    errors = []
    for folder in dataset_folders(input_dir, preferred):
        try:
            return read_mnist_folder(folder)
        except DataError as e:
            errors.append(str(e))
    looked = "\n  ".join(errors) or f"{input_dir} holds no dataset folders"
    raise DataError(f"no verified MNIST under {input_dir}:\n  {looked}\n"
                    f"Attach the dataset {DEFAULT_DATASET} to the kernel (dataset_sources in {METADATA_FILE}); "
                    "see platforms/kaggle/README.md")


def accelerator() -> dict[str, Any]:
    """What the kernel was given: GPUs (nvidia-smi), a TPU (its environment variables), or the CPU."""
    gpus = [g["name"] for g in environment.gpu_info()]
    tpu = os.environ.get("TPU_ACCELERATOR_TYPE") or os.environ.get("TPU_NAME")
    kind = "gpu" if gpus else "tpu" if tpu else "cpu"
    return {"kind": kind, "gpus": gpus, "tpu": tpu}


def image_info() -> dict[str, Any]:
    """The Kaggle Docker image: its build commit and date (env, or the files the image writes)."""
    def fact(var: str, path: str) -> str | None:
        if os.environ.get(var):
            return os.environ[var]
        with contextlib.suppress(OSError):
            return Path(path).read_text().strip() or None
        return None

    return {"git_commit": fact("GIT_COMMIT", "/etc/git_commit"), "build_date": fact("BUILD_DATE", "/etc/build_date"),
            "cuda_version": os.environ.get("CUDA_VERSION") or None}


def kaggle_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The KAGGLE_* variables a kernel sees, secrets (data proxy and user-secrets tokens) redacted."""
    environ = os.environ if environ is None else environ
    return environment.redact_env({k: v for k, v in environ.items() if k.startswith("KAGGLE_")})


class KagglePlatform(Platform):
    """A Kaggle kernel: MNIST from the attached dataset, the record into the kernel's output."""

    name = "kaggle"
    OPTIONS = (
        Option("--kaggle-root", metavar="DIR", env="KAGGLE_ROOT", default=DEFAULT_ROOT,
               help=f"the kernel's file system root, holding input/ and working/ (default: $KAGGLE_ROOT or {DEFAULT_ROOT})"),
        Option("--kaggle-dataset", action="append", default=[], metavar="OWNER/SLUG",
               help="look for MNIST in this attached dataset first (the bundle passes its own)"),
    )

    @property
    def root(self) -> Path:
        return Path(self.option("kaggle_root") or os.environ.get("KAGGLE_ROOT", DEFAULT_ROOT))

    def load_data(self, spec: ExperimentSpec) -> Mnist:
        if spec.data.source in ("npz", "idx", "csv"):  # an explicit file wins
            return default_data(spec, self.log)
        mnist = find_mnist(self.root / "input", self.option("kaggle_dataset", []))
        self.log(f"[kaggle] MNIST from {mnist.source}, digests verified")
        return mnist

    def runs_dir(self) -> Path:
        runs = super().runs_dir()
        return runs if runs.is_absolute() else self.root / "working" / runs

    def publish(self, record_dir: Path) -> None:
        """Nothing to send: Kaggle keeps `working/` as the kernel's output, and `pull kaggle` fetches it."""
        return None

    def platform_info(self) -> dict[str, Any]:
        info = {"name": self.name, "root": str(self.root), "run_type": os.environ.get("KAGGLE_KERNEL_RUN_TYPE"),
                "kaggle_env": kaggle_env(), "image": image_info(), "accelerator": accelerator()}
        manifest = environment.HARNESS_ROOT / MANIFEST
        if manifest.exists():  # running from a bundle: which commit and spec it was built from
            info["bundle"] = json.loads(manifest.read_text())
        return info


PLATFORM = KagglePlatform
