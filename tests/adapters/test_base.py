"""The platform base class: sinks are guarded (Sacred's _safe_call), finalize always runs."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from adapters.base import Platform
from core.data import Mnist
from core.experiment import RunFailed
from core.record import read_run_json
from core.spec import load_spec


class SinkPlatform(Platform):
    """A platform of the test's own: MNIST from the session cache, a sink that does what the test says."""

    name = "sink"

    def __init__(self, options, mnist: Mnist, publish_raises: BaseException | None = None, fail_training: bool = False):
        self.lines: list[str] = []
        super().__init__(options, log=self.lines.append)
        self.mnist = mnist
        self.publish_raises = publish_raises
        self.fail_training = fail_training
        self.finalized: list[tuple[Path | None, str]] = []

    def callbacks(self, spec):
        import keras

        class Explode(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                raise ValueError("the training step exploded")

        return [Explode()] if self.fail_training else []

    def load_data(self, spec):
        return self.mnist

    def publish(self, record_dir):
        if self.publish_raises is not None:
            raise self.publish_raises
        return {"uploaded": True}

    def finalize(self, record_dir, status):
        self.finalized.append((record_dir, status))
        return {"finalized": status}


def tiny(**overrides):
    return load_spec("canonical", {"epochs": 1, "data.train_limit": 200, "data.test_limit": 100, **overrides})


def test_a_publish_that_raises_any_exception_leaves_a_completed_record_with_the_error(tmp_path, mnist):
    platform = SinkPlatform(argparse.Namespace(runs_dir=str(tmp_path)), mnist, publish_raises=RuntimeError("disk on fire"))
    record = platform.run(tiny())
    run = read_run_json(record)
    assert run["status"] == "completed" and run["metrics"]["test_accuracy"] is not None
    links = run["links"]["sink"]
    assert links["publish_error"] == "RuntimeError: disk on fire"
    assert "disk on fire" in links["publish_traceback"]
    assert links["finalized"] == "completed"  # finalize still ran, after the failed publish
    assert platform.finalized == [(record, "completed")]
    assert any("publish failed: RuntimeError: disk on fire" in line for line in platform.lines)


def test_a_run_that_fails_is_finalized_with_its_failed_record(tmp_path, mnist):
    platform = SinkPlatform(argparse.Namespace(runs_dir=str(tmp_path)), mnist, fail_training=True)
    with pytest.raises(RunFailed) as failed:
        platform.run(tiny())
    record = failed.value.record
    assert read_run_json(record)["status"] == "failed"
    assert platform.finalized == [(record, "failed")]
    assert read_run_json(record)["links"]["sink"] == {"finalized": "failed"}  # no publish for a failed run


def test_platform_options_are_data_that_cli_turns_into_arguments():
    from adapters import PLATFORMS
    from cli.run import build_parser

    for name in PLATFORMS:
        platform = PLATFORMS.load(name)
        args = build_parser(platform).parse_args([])
        for option in platform.OPTIONS:
            assert hasattr(args, option.attribute), f"{name}: {option.flag}"
