"""Platform adapters: one module per platform, looked up by name.

`core` knows nothing of platforms; each adapter says where the data is, where
the record goes, and how results leave the machine. Modules are imported only
when their platform is asked for, and import their SDKs only inside methods.
What runs on this machine for a platform (bundles, push, pull) is `adapters.remote`.
"""
from __future__ import annotations

import os

from core.registry import Registry

PLATFORMS = Registry("platform", {
    "local": "adapters.local:LocalPlatform",
    "comet": "adapters.comet:CometPlatform",
    "openml": "adapters.openml:OpenMLPlatform",
    "kaggle": "adapters.kaggle:KagglePlatform",
    "codalab": "adapters.codalab:CodaLabPlatform",
    "beat": "adapters.beat:BeatPlatform",
})

# A platform that announces itself through the environment is the default there.
DETECT = {"KAGGLE_KERNEL_RUN_TYPE": "kaggle", "CODALAB": "codalab"}


def detect_platform(environ: dict[str, str] | None = None) -> str:
    """`kaggle` inside a Kaggle kernel, `codalab` inside a CodaLab worker, else `local`."""
    environ = os.environ if environ is None else environ
    for var, name in DETECT.items():
        if environ.get(var) and environ.get(var) != "false":
            return name
    return "local"


def get_platform(name: str):
    """The Platform class registered under `name` (UsageError listing the valid names otherwise)."""
    return PLATFORMS.load(name)
