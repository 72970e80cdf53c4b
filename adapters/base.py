"""The platform interface: what differs between a laptop, Kaggle, CodaLab, OpenML, Comet and BEAT.

A Platform answers where the data is (`load_data`) and what happens to the
record once it is complete (`publish`: an upload, or nothing). Everything else
has a default: records go to `--runs-dir`, no extra Keras callbacks, a
`finalize(record_dir, status)` hook that runs after every run, finished or not.

Sinks never sink the run (Sacred's `Run._safe_call`): the record is published
first, then `publish` and `finalize` are called through `_safe_call`, which
catches any exception, reports it in one line and writes it into the record's
`links.<platform>` — the record stays `completed`.
"""
from __future__ import annotations

import abc
import argparse
import dataclasses
import os
import traceback
from pathlib import Path
from typing import Any, Callable, ClassVar

from core.data import Mnist, load_mnist
from core.errors import HarnessError
from core.record import RUN_JSON, read_run_json, update_run_json
from core.spec import ExperimentSpec


@dataclasses.dataclass(frozen=True)
class Option:
    """One platform option of `run.py --platform NAME`, as data; `cli/` turns it into an argparse argument."""

    flag: str
    help: str
    default: Any = None
    type: Callable[[str], Any] | None = None
    action: str | None = None
    metavar: str | None = None
    dest: str | None = None
    env: str | None = None  # an environment variable that sets the default when the command is parsed

    def argparse_kwargs(self) -> dict[str, Any]:
        default = os.environ.get(self.env, self.default) if self.env else self.default
        kwargs = {"help": self.help, "default": default, "action": self.action, "type": self.type,
                  "metavar": self.metavar, "dest": self.dest}
        return {k: v for k, v in kwargs.items() if v is not None}

    @property
    def attribute(self) -> str:
        return self.dest or self.flag.lstrip("-").replace("-", "_")


class Platform(abc.ABC):
    """One execution platform. Subclasses set `name` (and `OPTIONS`) and implement the abstract members."""

    name: ClassVar[str]
    OPTIONS: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, options: argparse.Namespace, log: Callable[[str], None] = print):
        self.options = options
        self.log = log

    def option(self, attribute: str, default: Any = None) -> Any:
        """A parsed option by attribute name; `default` where the namespace lacks it (a caller built its own)."""
        value = getattr(self.options, attribute, None)
        return default if value is None else value

    @abc.abstractmethod
    def load_data(self, spec: ExperimentSpec) -> Mnist:
        """The verified MNIST arrays, from wherever this platform keeps them."""

    @abc.abstractmethod
    def publish(self, record_dir: Path) -> dict[str, Any] | None:
        """Send the completed record somewhere; returns links to store in run.json, or None (nothing to send)."""

    def runs_dir(self) -> Path:
        """The folder that receives run records: `--runs-dir`."""
        return Path(self.option("runs_dir", "runs"))

    def platform_info(self) -> dict[str, Any]:
        """Facts about the platform for the environment fingerprint (image, accelerator, ...)."""
        return {"name": self.name}

    def callbacks(self, spec: ExperimentSpec) -> list:
        """Extra Keras callbacks for training (live logging)."""
        return []

    def finalize(self, record_dir: Path | None, status: str) -> dict[str, Any] | None:
        """Runs after every run, completed or not (close a live session); returns links for run.json, or None.

        `record_dir` is the published record, or None when the run failed before it had one.
        """
        return None

    def run(self, spec: ExperimentSpec, deterministic: bool = True) -> Path:
        """Run the experiment (`execute`), then publish the record and finalize; returns the record folder.

        A failed or interrupted run re-raises after `finalize`, with its record published.
        """
        record, status = None, "failed"
        try:
            record = self.execute(spec, deterministic)
            status = "completed"
        except BaseException as e:
            status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
            record = getattr(e, "record", None)  # set when the run had published its record (RunFailed too)
            raise
        finally:
            if status == "completed":
                self._safe_call("publish", self.publish, record)
            self._safe_call("finalize", self.finalize, record, status)
        return record

    def execute(self, spec: ExperimentSpec, deterministic: bool) -> Path:
        """Load data and run the experiment in this process; returns the published record.

        A platform whose experiment runs elsewhere (BEAT's executor) overrides this, and only this.
        """
        from core.experiment import check_architecture, run_experiment  # nothing heavy until here

        check_architecture(spec)  # an impossible model is exit 2 before data, callbacks or a record
        data = self.load_data(spec)
        return run_experiment(spec, data, self.runs_dir(), self.name, deterministic=deterministic,
                              callbacks=self.callbacks(spec), platform_info=self.platform_info(), log=self.log)

    def _safe_call(self, step: str, fn: Callable[..., dict[str, Any] | None], record: Path | None, *args) -> None:
        """Call a sink; whatever it raises is reported and noted in the record, never raised."""
        try:
            links = fn(record, *args)
        except Exception as e:  # noqa: BLE001 — Sacred's _safe_call: one failing sink never sinks the run
            message = str(e) if isinstance(e, HarnessError) else f"{type(e).__name__}: {e}"
            where = f"the run record is complete at {record}" if record else "the run has no record"
            self.log(f"[{self.name}] {step} failed: {message} — {where}")
            links = {f"{step}_error": message}
            if not isinstance(e, HarnessError):
                links[f"{step}_traceback"] = traceback.format_exc(limit=8)
        if links and record is not None and (Path(record) / RUN_JSON).is_file():
            try:
                existing = read_run_json(record).get("links", {}).get(self.name, {})
                update_run_json(record, {"links": {self.name: {**existing, **links}}})
            except (OSError, ValueError) as e:
                self.log(f"[{self.name}] could not note the {step} links in {record}: {e}")


def default_data(spec: ExperimentSpec, log: Callable[[str], None] = print) -> Mnist:
    """The spec's data source (the default chain for `auto`)."""
    return load_mnist(spec.data.source, spec.data.path, log=log)

