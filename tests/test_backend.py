"""Training settings that change how steps run, not what they compute: recorded, and bit-identical."""
from __future__ import annotations

import pytest

from core import backend, experiment
from core.errors import UsageError
from core.record import read_run_json
from core.spec import load_spec

# 900 training images: 8 steps of 128 (the last one short), so 3 steps per execution
# leaves a remainder, and validation and prediction run through the same loop.
SMALL = {"epochs": 1, "data.train_limit": 1000, "data.test_limit": 200}


def test_steps_per_execution_changes_nothing_computed(mnist, tmp_path, monkeypatch):
    spec = load_spec("canonical", SMALL)
    records = {}
    for steps in ("1", "3"):
        monkeypatch.setenv(backend.STEPS_PER_EXECUTION_ENV, steps)
        records[steps] = read_run_json(experiment.run_experiment(spec, mnist, tmp_path, "local", log=lambda m: None))
    one, three = records["1"], records["3"]
    assert one["determinism"]["steps_per_execution"] == 1 and three["determinism"]["steps_per_execution"] == 3
    assert one["determinism"]["jit_compile"] is False and three["determinism"]["jit_compile"] is False
    assert one["determinism"]["threads"]["intra_op"] >= 1
    assert one["weights_sha256"] == three["weights_sha256"]
    assert one["predictions_sha256"] == three["predictions_sha256"]
    assert one["history"] == three["history"]


@pytest.mark.parametrize("value", ["0", "many", "-2"])
def test_bad_setting_is_a_usage_error(monkeypatch, value):
    monkeypatch.setenv(backend.STEPS_PER_EXECUTION_ENV, value)
    with pytest.raises(UsageError, match=backend.STEPS_PER_EXECUTION_ENV):
        backend.compile_options()
