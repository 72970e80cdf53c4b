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

    def publish(self, record_dir: Path) -> None:
        return None  # the record in runs/ is where it ends


PLATFORM = LocalPlatform
