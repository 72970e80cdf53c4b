"""The local platform: this machine, the default data chain, records under runs/."""
from __future__ import annotations

from pathlib import Path

from adapters.base import Platform, default_data
from core.data import Mnist
from core.spec import ExperimentSpec


class LocalPlatform(Platform):
    name = "local"

    def load_data(self, spec: ExperimentSpec) -> Mnist:
        return default_data(spec, self.log)

    def runs_dir(self) -> Path:
        return Path(self.options.runs_dir)


PLATFORM = LocalPlatform
