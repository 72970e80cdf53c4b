"""CodaLab Worksheets, inside a worker: data from the `data` dependency, the record into the bundle.

    run.py --platform codalab ...      inside a worker (the default where CODALAB=true)

The bundles, the `cl` commands and the pull are `adapters/remote/codalab.py`.
In a worker the dependencies are mounted read-only in the working directory under
their keys (`code/`, `data/`), and whatever the command writes there becomes the run
bundle. So the data is read from `data/mnist.npz`, the record goes to `./runs/<run_id>`,
and nothing is written under `code/` or `data/` (the command runs `python -B`).

The run needs no network: the image `tensorflow/tensorflow:<our TensorFlow pin>` brings
Python, TensorFlow, Keras, NumPy and h5py; PyYAML, which it lacks, travels in the code
bundle as pure Python (`code/vendor/yaml`); MNIST is the data bundle.
"""
from __future__ import annotations

import json
import os
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from adapters.base import Option, Platform
from core.data import DataError, Mnist, read_npz, verify
from core.environment import HARNESS_ROOT
from core.spec import ExperimentSpec

CODE_KEY, DATA_KEY = "code", "data"  # the dependency keys: where the worker mounts each bundle
DATA_FILE = "mnist.npz"
BUNDLE_INFO = "codalab-bundle.json"  # in the code bundle: what the worker records about its bundles
CODALAB_UUID = re.compile(r"^0x[0-9a-f]{32}$")  # bundles and worksheets


# --- Inside a worker ------------------------------------------------------------------

class CodaLabPlatform(Platform):
    """A CodaLab worker: data from the `data` dependency, the record into the working directory."""

    name = "codalab"
    OPTIONS = (Option("--data-dir", default=DATA_KEY,
                      help=f"the data bundle's folder in the working directory (default: {DATA_KEY}, "
                           f"where `cl run {DATA_KEY}:<bundle>` mounts it)"),)

    def load_data(self, spec: ExperimentSpec) -> Mnist:
        path = Path(self.option("data_dir", DATA_KEY)) / DATA_FILE
        if not path.is_file():
            raise DataError(f"{path}: not found. On CodaLab the data is the data bundle, mounted by "
                            f"`cl run ... {DATA_KEY}:<data bundle>` (see codalab-run.sh); "
                            "build one with `python run.py bundle codalab --out DIR`")
        if spec.data.source not in ("auto", "cache"):
            self.log(f"[codalab] the spec names data source {spec.data.source!r}; "
                     f"on CodaLab the data is the data bundle {path}")
        return verify(read_npz(path), f"CodaLab data bundle {path}")

    def platform_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"name": self.name, "in_worker": os.environ.get("CODALAB") == "true"}
        cwd = Path.cwd().name
        if CODALAB_UUID.match(cwd):  # the worker's working directory is /<run bundle uuid>
            info["run_bundle_uuid"] = cwd
        bundle_file = HARNESS_ROOT / BUNDLE_INFO
        if bundle_file.is_file():
            bundle = json.loads(bundle_file.read_text())
            info["bundle"] = bundle
            pinned, installed = bundle.get("pins", {}).get("tensorflow"), _version("tensorflow")
            info["tensorflow_matches_pin"] = pinned == installed
            if pinned and pinned != installed:
                self.log(f"[codalab] the image has TensorFlow {installed}, the harness pins {pinned}: "
                         "numbers may differ from a local run")
        return info

    def publish(self, record_dir: Path) -> None:
        """Nothing to send: what the command writes becomes the run bundle, and `pull codalab` fetches it."""
        return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


PLATFORM = CodaLabPlatform
