"""Platform adapters: one module per platform, looked up by name.

`core` knows nothing of platforms; each adapter says where the data is, where
the record goes, and how results leave the machine. Modules are imported only
when their platform is asked for, and import their SDKs only inside methods.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from core.errors import UsageError

# name -> module; each module defines `PLATFORM` (a Platform subclass) and may define
# `cli_bundle`, `cli_push`, `cli_pull`, `cli_status` (argv -> exit code).
PLATFORMS = {
    "local": "adapters.local",
    "comet": "adapters.comet",
    "openml": "adapters.openml",
    "kaggle": "adapters.kaggle",
    "codalab": "adapters.codalab",
    "beat": "adapters.beat",
}

# A platform that announces itself through the environment is the default there.
DETECT = {"KAGGLE_KERNEL_RUN_TYPE": "kaggle", "CODALAB": "codalab"}


def detect_platform(environ: dict[str, str] | None = None) -> str:
    """`kaggle` inside a Kaggle kernel, `codalab` inside a CodaLab worker, else `local`."""
    import os

    environ = os.environ if environ is None else environ
    for var, name in DETECT.items():
        if environ.get(var) and environ.get(var) != "false":
            return name
    return "local"


def platform_module(name: str) -> ModuleType:
    if name not in PLATFORMS:
        raise UsageError(f"unknown platform {name!r}; valid platforms are: {', '.join(sorted(PLATFORMS))}")
    try:
        return importlib.import_module(PLATFORMS[name])
    except ModuleNotFoundError as e:
        if e.name == PLATFORMS[name]:
            raise UsageError(f"platform {name!r} is not built yet in this checkout") from None
        raise


def get_platform(name: str):
    """The Platform class registered under `name`."""
    return platform_module(name).PLATFORM


def platform_command(name: str, command: str):
    """The `cli_<command>` function of a platform, or a UsageError listing who has one."""
    module = platform_module(name)
    fn = getattr(module, f"cli_{command}", None)
    if fn is None:
        having = [p for p in sorted(PLATFORMS) if _has(p, command)]
        raise UsageError(f"platform {name!r} has no '{command}' command; platforms with one: {', '.join(having) or 'none'}")
    return fn


def _has(name: str, command: str) -> bool:
    try:
        return hasattr(platform_module(name), f"cli_{command}")
    except UsageError:
        return False
