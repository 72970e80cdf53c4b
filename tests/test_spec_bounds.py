"""Hostile and impossible specs: refused with one line and exit 2, before anything is written."""
from __future__ import annotations

import json
import os

import pytest

from core import spec as spec_mod
from core.spec import SpecError, load_spec
from tests.conftest import ROOT, run_cli

CANONICAL = (ROOT / "core/specs/canonical.yaml").read_text()
TINY = ["--epochs", "1", "--train-limit", "300", "--test-limit", "200"]

# Nine levels of nine: 9**9 = 387 million values once expanded, 1 KB as YAML.
ALIAS_BOMB = "\n".join(
    ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    + [f"a{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}]" for i in range(1, 9)])


def spec_with(tmp_path, text: str, name: str = "s.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


BASE = "\n".join(l for l in CANONICAL.split("\nclaims:")[0].splitlines()
                 if not l.startswith(("description", "  Keras", "  "*1 + "stack")) and not l.startswith("  ") or
                 l.startswith(("  - {", "  source", "  train_limit", "  test_limit", "  path")))
ANCHORS = "\n".join("    " + l for l in ALIAS_BOMB.splitlines())  # inside the first claim


@pytest.mark.parametrize("extra, problem", [
    (f"claims:\n  - source: s\n{ANCHORS}\n    bomb: *a8", "once YAML aliases are expanded"),  # hashing expands it
    (f"claims:\n  - source: s\n{ANCHORS}\ndescription: *a8", "once YAML aliases are expanded"),  # and a repr
    ("claims: &loop [*loop]", "contains itself"),
    ("claims: [{when: 2020-01-02}]", "a date value"),
    ("claims: [{1: x}]", "keys must be strings"),
    ("claims: [{value: .nan}]", "not a finite number"),
    ("claims: [{value: !!binary aGVsbG8=}]", "a bytes value"),
])
def test_yaml_that_would_expand_or_not_hash_is_refused(tmp_path, extra, problem):
    path = spec_with(tmp_path, BASE + "\n" + extra + "\n")
    with pytest.raises(SpecError) as e:
        load_spec(path)
    assert problem in e.value.problem, str(e.value)
    assert len(str(e.value)) < 400


def test_an_alias_bomb_is_measured_not_expanded():
    raw = spec_mod.load_yaml("x: [1]", "t")  # sanity: small is fine
    assert raw == {"x": [1]}
    with pytest.raises(SpecError, match="once YAML aliases are expanded"):
        spec_mod.load_yaml(ALIAS_BOMB, "bomb")


def test_a_large_spec_is_refused_before_it_is_parsed(tmp_path):
    path = spec_with(tmp_path, CANONICAL + "\n# " + "x" * (spec_mod.MAX_SPEC_BYTES + 1))
    with pytest.raises(SpecError, match="more than the"):
        load_spec(path)


def test_deep_nesting_is_refused(tmp_path):
    path = spec_with(tmp_path, CANONICAL.replace("claims:", "claims: [" + "[" * 5000 + "]" * 5000 + "]\nold:"))
    with pytest.raises(SpecError, match="nested"):
        load_spec(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_or_device_as_spec_is_refused_not_read(tmp_path):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)  # nobody writes: reading it would block for ever
    with pytest.raises(SpecError, match="a FIFO, not a regular file"):
        load_spec(fifo)
    with pytest.raises(SpecError, match="character device"):
        load_spec("/dev/zero")


@pytest.mark.parametrize("overrides, key, problem", [
    ({"optimizer.learning_rate": float("nan")}, "optimizer.learning_rate", "not a finite number"),
    ({"split": float("inf")}, "split", "not a finite number"),
    ({"optimizer.beta_1": float("inf")}, "optimizer.beta_1", "finite"),
    ({"layers.5.rate": float("nan")}, "layers.5.rate", "not a finite number"),
    ({"seed": 2**32}, "seed", "0..4294967295"),
    ({"seed": 10**400}, "seed", "0..4294967295"),
    ({"optimizer.learning_rate": 10**400}, "optimizer.learning_rate", "not a finite number"),
    ({"layers.6.units": 10**12}, "layers[6].units", "up to 1,048,576"),
    ({"name": "a/b"}, "name", "not a plain name"),
    ({"name": "x" * 300}, "name", "not a plain name"),
    ({"name": "nul\0"}, "name", "not a plain name"),
    ({"split": 0.001, "data.train_limit": 100}, "split", "leaves none to train on"),
])
def test_values_the_backend_or_the_file_system_cannot_take_are_refused(overrides, key, problem):
    with pytest.raises(SpecError) as e:
        load_spec("canonical", overrides)
    assert e.value.key == key and problem in e.value.problem, str(e.value)


def test_error_messages_quote_a_bounded_repr():
    with pytest.raises(SpecError) as e:
        load_spec("canonical", {"seed": ["x" * 10_000] * 1000})
    assert len(str(e.value)) < 300


@pytest.mark.parametrize("args, message", [
    (["--set", "epochs=3", "--epochs", "5"], "epochs: given twice (--epochs and an earlier --set epochs)"),
    (["--set", "data={train_limit: 5}", "--train-limit", "3"], "data.train_limit: given twice"),
    (["--set", "seed=1", "--set", "seed=2"], "seed: given twice"),
    (["--set", "layers.0.kernel_size=40"], "layers[0]: Conv2D cannot take a 28x28x1 input"),
    (["--seed", "4294967296"], "seed: must be in 0..4294967295"),
    (["--split", "nan"], "split: nan is not a finite number"),
])
def test_cli_refuses_before_anything_is_written(tmp_path, args, message):
    out = run_cli(*args, *TINY, "--runs-dir", str(tmp_path / "runs"))
    assert out.returncode == 2, out.stderr[-2000:]
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len([l for l in out.stderr.splitlines() if l.startswith("error:")]) == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("overrides, message", [
    ({"layers.2.kernel_size": 14}, "layers[2]: Conv2D cannot take a 13x13x32 input"),
    ({"layers.3.pool_size": 12}, "layers[3]: MaxPooling2D cannot take a 11x11x64 input"),
    ({"layers.5": {"type": "Dropout", "rate": 0.1}}, "the model's output is 5x5x10, not one score per digit"),
    ({"layers.6.units": 1_000_000}, "weights, more than the 100,000,000 a run may have"),
])
def test_impossible_architectures_are_spec_errors(overrides, message):
    from core.experiment import check_architecture
    with pytest.raises(SpecError) as e:
        check_architecture(load_spec("canonical", overrides))
    assert message in str(e.value)


def test_the_shape_check_leaves_layer_names_and_weights_as_they_were(mnist, tmp_path):
    """Making the check's layers must not shift Keras's automatic names or the seeded weights."""
    from core import experiment
    spec = load_spec("canonical", {"epochs": 1, "data.train_limit": 300, "data.test_limit": 200})
    experiment.check_architecture(spec)
    a = experiment.run_experiment(spec, mnist, tmp_path / "a", "local", log=lambda m: None)
    experiment.check_architecture(spec)
    experiment.check_architecture(spec)
    b = experiment.run_experiment(spec, mnist, tmp_path / "b", "local", log=lambda m: None)
    ra, rb = (json.loads((p / "run.json").read_text()) for p in (a, b))
    assert ra["weights_sha256"] == rb["weights_sha256"]
    assert "shape_check" not in (a / "model.yaml").read_text()
