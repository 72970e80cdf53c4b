"""The platform interface: what differs between a laptop, Kaggle, CodaLab, OpenML and Comet.

A Platform answers two questions — where is the data, where does the record
go — and may add Keras callbacks (live logging) and a `publish` step (upload)
that runs after the record is complete. A failing publish is reported and
written into the record; it never loses the finished run.
"""
from __future__ import annotations

import abc
import argparse
from pathlib import Path
from typing import Any, Callable, ClassVar

from core.data import Mnist, load_mnist
from core.errors import HarnessError
from core.record import update_run_json
from core.spec import ExperimentSpec


class Platform(abc.ABC):
    """One execution platform. Subclasses set `name` and implement the abstract members."""

    name: ClassVar[str]

    def __init__(self, options: argparse.Namespace, log: Callable[[str], None] = print):
        self.options = options
        self.log = log

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Platform-specific options of `run.py --platform NAME`; none by default."""

    @abc.abstractmethod
    def load_data(self, spec: ExperimentSpec) -> Mnist:
        """The verified MNIST arrays, from wherever this platform keeps them."""

    @abc.abstractmethod
    def runs_dir(self) -> Path:
        """The folder that receives run records."""

    def platform_info(self) -> dict[str, Any]:
        """Facts about the platform for the environment fingerprint (image, accelerator, ...)."""
        return {"name": self.name}

    def callbacks(self, spec: ExperimentSpec) -> list:
        """Extra Keras callbacks for training (live logging); none by default."""
        return []

    def on_result(self, partial_dir: Path, result: dict[str, Any]) -> None:
        """Save platform files into the record before it is published (has the probabilities)."""

    def publish(self, record_dir: Path) -> dict[str, Any] | None:
        """Send the completed record somewhere; returns links to store in run.json, or None."""
        return None

    def run(self, spec: ExperimentSpec, deterministic: bool = True) -> Path:
        """Load data, run the experiment, publish the record; returns the record folder."""
        from core.experiment import check_architecture, run_experiment  # imports nothing heavy until here

        check_architecture(spec)  # an impossible model is exit 2 before data, callbacks or a record
        data = self.load_data(spec)
        record = run_experiment(spec, data, self.runs_dir(), self.name, deterministic=deterministic,
                                callbacks=self.callbacks(spec), platform_info=self.platform_info(),
                                on_result=self.on_result, log=self.log)
        self.safe_publish(record)
        return record

    def safe_publish(self, record: Path) -> None:
        """Run `publish`; on failure, report it and note it in the record, which stays complete."""
        try:
            links = self.publish(record)
        except HarnessError as e:
            self.log(f"[{self.name}] publish failed: {e} — the run record is complete at {record}")
            links = {"publish_error": str(e)}
        if links:
            update_run_json(record, {"links": {self.name: links}})


def default_data(spec: ExperimentSpec, log: Callable[[str], None] = print) -> Mnist:
    """The spec's data source (the default chain for `auto`)."""
    return load_mnist(spec.data.source, spec.data.path, log=log)
