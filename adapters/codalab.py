"""CodaLab Worksheets, inside a worker: data from the `data` dependency, the record into the bundle.

    run.py --platform codalab ...      inside a worker (the default where CODALAB=true)

The bundles, the `cl` commands and the pull are `adapters/remote/codalab.py`.
In a worker the dependencies are mounted read-only in the working directory under
their keys (`code/`, `data/`), and whatever the command writes there becomes the run
bundle. So the data is read from `data/mnist.npz`, the record goes to `./runs/<run_id>`,
and nothing is written under `code/` or `data/` (the command runs `python -B`).

The run uses no network, but it has it: `cl run` always requests network access
(request_network defaults to True and there is no flag to ask for none), so the manifest
and the record say so. Nothing needs it: the image `tensorflow/tensorflow:<our TensorFlow
pin>` brings Python, TensorFlow, Keras, NumPy and h5py; PyYAML, which it lacks, travels in
the code bundle as pure Python (`code/vendor/yaml`); MNIST is the data bundle.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from adapters.base import Option, Platform
from core.data import DataError, Mnist, read_npz, verify
from core.environment import HARNESS_ROOT, installed_version
from core.spec import ExperimentSpec

CODE_KEY, DATA_KEY = "code", "data"  # the dependency keys: where the worker mounts each bundle
DATA_FILE = "mnist.npz"
BUNDLE_INFO = "codalab-bundle.json"  # in the code bundle: what the worker records about its bundles
CODALAB_UUID = re.compile(r"^0x[0-9a-f]{32}$")  # bundles and worksheets (codalab/lib/spec_util.py UUID_REGEX)
# `cl run` asks for network access on every run: RunBundle's request_network metadata has
# default=True (codalab/bundles/run_bundle.py) and the CLI turns a bool spec into a
# store_true flag with no negation (Commands.metadata_arguments, codalab/lib/bundle_cli.py).
REQUEST_NETWORK = True
NETWORK_NOTE = ("the run has network access: `cl run` requests it for every run (request_network defaults "
                "to true, and the CLI has no flag to turn it off); the harness does not use it")


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
        info: dict[str, Any] = {"name": self.name, "in_worker": os.environ.get("CODALAB") == "true",
                                "request_network": REQUEST_NETWORK, "network": NETWORK_NOTE}
        cwd = Path.cwd().name
        if CODALAB_UUID.match(cwd):  # the worker's working directory is /<run bundle uuid>
            info["run_bundle_uuid"] = cwd
        bundle_file = HARNESS_ROOT / BUNDLE_INFO
        if bundle_file.is_file():
            bundle = json.loads(bundle_file.read_text())
            info["bundle"] = bundle
            # The image installs TensorFlow as `tensorflow-cpu`: read it under any distribution name.
            pinned, installed = bundle.get("pins", {}).get("tensorflow"), installed_version("tensorflow")
            info["tensorflow_matches_pin"] = pinned == installed
            if pinned and pinned != installed:
                self.log(f"[codalab] the image has TensorFlow {installed}, the harness pins {pinned}: "
                         "numbers may differ from a local run")
        return info

    def publish(self, record_dir: Path) -> None:
        """Nothing to send: what the command writes becomes the run bundle, and `pull codalab` fetches it."""
        return None


PLATFORM = CodaLabPlatform
