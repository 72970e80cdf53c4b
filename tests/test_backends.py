"""Three backends, one experiment: TensorFlow, JAX and PyTorch each deterministic, recorded alike, compared.

One child process per backend (Keras takes its backend once per process) trains
the same tiny spec twice in-process; every test below reads those six records.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from core import backend
from core.errors import UsageError
from core.record import read_run_json
from results.backends import backend_matrix, render_matrix
from results.compare import compare_paths
from tests.conftest import ROOT, run_cli

TINY = {"epochs": 1, "data.train_limit": 640, "data.test_limit": 200}  # 576 train / 64 validate: 5 steps

# Two runs of one spec and seed in one process, on the backend named in argv[1].
CHILD = """
import json, sys
sys.path.insert(0, sys.argv[3])
from core import backend
backend.select(sys.argv[1])
from core import data, experiment
from core.spec import load_spec
spec = load_spec("canonical", json.loads(sys.argv[4]))
mnist = data.load_cache()
records = [str(experiment.run_experiment(spec, mnist, sys.argv[2], "local", log=lambda m: None)) for _ in range(2)]
import keras
print(json.dumps({"records": records, "keras_backend": keras.backend.backend(),
                  "tensorflow_imported": "tensorflow" in sys.modules}))
"""


@pytest.fixture(scope="module")
def backend_runs(backends_installed, mnist, tmp_path_factory):
    """backend -> the child's report: two record folders, and whether TensorFlow was imported."""
    runs = {}
    for name in backends_installed:
        folder = tmp_path_factory.mktemp(f"runs-{name}")
        proc = subprocess.run([sys.executable, "-c", CHILD, name, str(folder), str(ROOT), json.dumps(TINY)],
                              capture_output=True, text=True, timeout=900,
                              env={**_env_without("KERAS_BACKEND"), "TF_CPP_MIN_LOG_LEVEL": "2"})
        assert proc.returncode == 0, f"{name}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        runs[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    return runs


def _env_without(*names):
    import os

    return {k: v for k, v in os.environ.items() if k not in names}


@pytest.mark.parametrize("name", backend.BACKENDS)
def test_each_backend_is_bit_identical_with_its_rerun(backend_runs, name):
    report = backend_runs[name]
    assert report["keras_backend"] == name
    first, second = (read_run_json(p) for p in report["records"])
    for run in (first, second):
        assert run["status"] == "completed"
        assert run["determinism"]["backend"] == name and run["determinism"]["op_determinism"] is True
    assert first["weights_sha256"] == second["weights_sha256"]
    assert first["predictions_sha256"] == second["predictions_sha256"]
    assert first["history"] == second["history"]
    for part in ("env", "runtime", "packages", "cpu"):  # nothing the first run did shows up in the second
        assert first["environment"][part] == second["environment"][part], part


def test_each_backend_records_its_own_settings_versions_and_devices(backend_runs):
    det = {name: read_run_json(r["records"][0])["determinism"] for name, r in backend_runs.items()}
    runtime = {name: read_run_json(r["records"][0])["environment"]["runtime"] for name, r in backend_runs.items()}
    assert det["tensorflow"]["jit_compile"] is False and det["tensorflow"]["steps_per_execution"] == 32
    assert det["jax"]["jit_compile"] is True and det["jax"]["steps_per_execution"] == 1
    assert det["torch"]["jit_compile"] is False and det["torch"]["steps_per_execution"] == 1
    cores = backend.usable_cores()
    assert det["torch"]["threads"]["intra_op"] == cores == runtime["torch"]["threads"]["intra_op"]
    assert runtime["tensorflow"]["tensorflow"] and runtime["jax"]["jax"] == "0.10.2" and runtime["jax"]["jaxlib"]
    assert runtime["torch"]["torch"].startswith("2.13.0")
    assert any(d.startswith("cpu") for d in runtime["jax"]["devices"]) and "cpu" in runtime["torch"]["devices"]
    assert runtime["tensorflow"]["devices"]


@pytest.mark.parametrize("name", ["jax", "torch"])
def test_no_tensorflow_import_under_the_other_backends(backend_runs, name):
    assert backend_runs[name]["tensorflow_imported"] is False


@pytest.mark.parametrize("name", ["jax", "torch"])
def test_model_saved_under_another_backend_loads_under_tensorflow_with_the_same_classes(backend_runs, mnist, name):
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip(f"this test process runs keras on {keras.backend.backend()}, not TensorFlow")
    record = backend_runs[name]["records"][0]
    model = keras.saving.load_model(f"{record}/model.h5", compile=False)
    x = mnist.x_test[:TINY["data.test_limit"], ..., None]
    predicted = model.predict(x, batch_size=256, verbose=0).argmax(axis=1).astype(np.uint8)
    assert np.array_equal(predicted, np.load(f"{record}/predictions.npy"))


def test_compare_groups_the_backends_into_one_experiment_and_names_the_backend(backend_runs):
    records = [p for r in backend_runs.values() for p in r["records"]]
    comparison = compare_paths(records)
    assert len(comparison.groups) == 1 and len(comparison.groups[0].runs) == 6
    group = comparison.groups[0]
    by_backend = {}
    for i, view in enumerate(group.compared):
        by_backend.setdefault(view.fields["backend"], []).append(i)
    for name, (i, j) in by_backend.items():
        assert group.pair(i, j).verdict == "identical", name
    cross = group.pair(by_backend["tensorflow"][0], by_backend["jax"][0])
    assert cross.verdict != "identical"
    assert cross.differences[0].what == "determinism.backend"
    assert (cross.differences[0].a, cross.differences[0].b) == ("tensorflow", "jax")


def test_backend_matrix_answers_per_backend_pair(backend_runs):
    records = [p for r in backend_runs.values() for p in r["records"]]
    m = backend_matrix(records)
    assert m.backends == list(backend_runs) and m.seeds == [42]
    assert not m.measured  # one seed: compare's default tolerance stands in, and the table says so
    assert [(p.a, p.b) for p in m.pairs] == [("tensorflow", "jax"), ("tensorflow", "torch"), ("jax", "torch")]
    for p in m.pairs:
        assert p.cause == "determinism.backend"
        assert p.beyond == (abs(p.delta_pp) > m.band_mean_pp)
    text = render_matrix(m)
    assert "seed band: ±0.30 pp, compare's default tolerance" in text
    assert text.count("cause: determinism.backend") == 3


def test_pooled_band_from_three_seeds(tmp_path):
    from results.backends import pooled_sd_pp

    acc = {"tensorflow": {1: 0.990, 2: 0.992, 3: 0.994}, "jax": {1: 0.980, 2: 0.981, 3: 0.982}}
    # variances 0.04 and 0.01 pp², 2 degrees of freedom each: pooled sd sqrt(0.025)
    assert pooled_sd_pp(acc) == pytest.approx(0.025 ** 0.5)


def test_repeat_backends_runs_the_matrix_and_prints_the_table(backends_installed, mnist, tmp_path):
    # Two backends are enough for the plumbing (a child per backend, their records, the table);
    # the three-backend table is tested above on the fixture's records.
    out = run_cli("repeat", "--backends", "jax,torch", "--seeds", "1", "--epochs", "1",
                  "--train-limit", "300", "--test-limit", "100", "--runs-dir", str(tmp_path), timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "backend × seed: test accuracy (%)" in out.stdout and "jax – torch:" in out.stdout
    assert "cause: determinism.backend" in out.stdout
    runs = [json.loads(p.read_text()) for p in tmp_path.glob("*/run.json")]
    assert sorted(r["determinism"]["backend"] for r in runs) == ["jax", "torch"]


# --- Settings and choice, without training --------------------------------------------

@pytest.mark.parametrize("name, steps, jit", [("tensorflow", 32, False), ("jax", 1, True), ("torch", 1, False)])
def test_compile_options_are_the_backends_own(monkeypatch, name, steps, jit):
    monkeypatch.setenv("KERAS_BACKEND", name)
    monkeypatch.delenv(backend.STEPS_PER_EXECUTION_ENV, raising=False)
    monkeypatch.delenv(backend.JIT_COMPILE_ENV, raising=False)
    assert backend.compile_options() == {"steps_per_execution": steps, "jit_compile": jit}


def test_torch_refuses_several_steps_per_execution(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    monkeypatch.setenv(backend.STEPS_PER_EXECUTION_ENV, "4")
    with pytest.raises(UsageError, match="torch backend runs one step per execution"):
        backend.compile_options()


def test_unknown_backend_lists_the_valid_ones():
    with pytest.raises(UsageError, match="valid backends are tensorflow, jax, torch"):
        backend.check_backend("mxnet")


@pytest.mark.parametrize("args, message", [
    (["--backend", "mxnet"], "invalid choice: 'mxnet'"),
    (["repeat", "--seeds", "2", "--backends", "tensorflow,mxnet"], "valid backends are tensorflow, jax, torch"),
    (["repeat", "--seeds", "2", "--backends", "jax,jax"], "distinct backends"),
])
def test_bad_backend_is_a_usage_error(args, message):
    out = run_cli(*args)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_child_argv_leaves_the_backend_options_out():
    from cli.run import without_backend_options

    assert without_backend_options(["--backends", "jax,torch", "--seeds", "3", "--backend=torch", "--epochs", "2"]) \
        == ["--seeds", "3", "--epochs", "2"]


@pytest.mark.parametrize("argv, env, chosen", [
    ([], {}, "tensorflow"), ([], {"KERAS_BACKEND": "torch"}, "torch"),
    (["--backend", "jax"], {"KERAS_BACKEND": "torch"}, "jax"),
])
def test_keras_backend_variable_is_honoured_and_the_flag_wins(backends_installed, argv, env, chosen):
    code = ("import os, sys; from cli.run import parse; from cli.options import select_backend; "
            f"args, _ = parse({argv!r}, 'run.py [run]'); print(select_backend(args), os.environ['KERAS_BACKEND'], "
            "'keras' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**_env_without("KERAS_BACKEND"), **env})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [chosen, chosen, "False"]  # chosen before anything imported keras


def test_switching_backend_after_keras_is_imported_is_refused(monkeypatch):
    import keras

    running = keras.backend.backend()
    other = next(b for b in backend.BACKENDS if b != running and backend.installed(b)) \
        if any(b != running and backend.installed(b) for b in backend.BACKENDS) else None
    if other is None:
        pytest.skip("no second backend installed to switch to")
    monkeypatch.setenv("KERAS_BACKEND", running)
    with pytest.raises(UsageError, match=f"already running on {running}"):
        backend.select(other)
    assert backend.select(running) == running
