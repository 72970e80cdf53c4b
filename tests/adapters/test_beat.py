"""BEAT: the prefix checked by BEAT itself, one real run of BEAT's executor, compare, failures.

Everything BEAT-side is the real thing: the BEAT venv (`make beat-env`, built once and
shared), `beat experiments check` on the written prefix, and one `beat experiments run
--environment` of a tiny spec (300 images, 1 epoch) through `python run.py --platform beat`,
shared by the assertions below. The same spec runs locally beside it, for the comparison.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from adapters.remote import beat as remote
from core.record import RECORD_FILES, read_run_json
from core.spec import parse_spec
from results.loaders import discover
from results.loaders.record import validate_run

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--epochs", "1", "--train-limit", "300", "--test-limit", "200"]
TF_QUIET = {"TF_CPP_MIN_LOG_LEVEL": "2"}


def cli(*args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT, env={**os.environ, **TF_QUIET},
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def beat_env() -> Path:
    """The BEAT venv, built once by the idempotent `make beat-env` (a no-op when its stamp is fresh)."""
    proc = subprocess.run(["make", "-C", str(ROOT), "beat-env"], capture_output=True, text=True, timeout=3000)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        if "Could not find a version" in proc.stderr or "No matching distribution" in proc.stderr:
            pytest.skip(f"make beat-env could not reach the package index: {tail[0]}")
        pytest.fail(f"make beat-env failed: {tail[0]}")
    return remote.BEAT_VENV / "bin" / "python"


@pytest.fixture(scope="module")
def runs(beat_env, mnist, tmp_path_factory) -> types.SimpleNamespace:
    """One BEAT run of the tiny spec, and the same spec run locally at the same time."""
    runs_dir = tmp_path_factory.mktemp("beat-runs")
    local_dir = tmp_path_factory.mktemp("local-runs")
    local = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "--platform", "local", *TINY,
                              "--runs-dir", str(local_dir)], cwd=ROOT, env={**os.environ, **TF_QUIET},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    beat = cli("--platform", "beat", *TINY, "--runs-dir", str(runs_dir))
    local_out, _ = local.communicate(timeout=1200)
    assert beat.returncode == 0, beat.stdout[-3000:] + beat.stderr[-3000:]
    assert local.returncode == 0, local_out[-3000:]
    (beat_record,) = [p for p in runs_dir.iterdir() if not p.name.startswith(".")]
    (local_record,) = [p for p in local_dir.iterdir() if not p.name.startswith(".")]
    return types.SimpleNamespace(beat=beat_record, local=local_record, runs_dir=runs_dir, proc=beat)


def test_bundle_is_a_prefix_beat_accepts(beat_env, mnist, tmp_path):
    out = tmp_path / "bundle"
    proc = cli("bundle", "beat", "--out", str(out), *TINY)
    assert proc.returncode == 0, proc.stderr
    info = json.loads((out / remote.BUNDLE_INFO).read_text())
    assert info["data"] == {**info["data"], "n_train": 270, "n_validation": 30, "n_test": 200}
    # BEAT's own validation of the experiment and everything it uses (toolchain, algorithms,
    # database, data formats), against its JSON schemas.
    check = subprocess.run([str(beat_env.parent / "beat"), "--prefix", str(out / "prefix"), "experiments", "check",
                            info["experiment"]], capture_output=True, text=True, timeout=300)
    assert check.returncode == 0 and f"{info['experiment']} [ok]" in check.stderr, check.stdout + check.stderr  # BEAT logs to stderr
    # The data is the verified rows the spec uses, in Keras's layout, and the database names its SHA-256.
    with np.load(out / "data" / remote.DATABASE_FILE) as z:
        assert z["x_train"].shape == (300, 28, 28) and z["x_test"].shape == (200, 28, 28)
        assert np.array_equal(z["y_train"], mnist.y_train[:300])
    database = json.loads((out / "prefix" / "databases" / "mnist" / "1.json").read_text())
    views = database["protocols"][0]["views"]
    assert [views[s]["parameters"]["start"] for s in ("train", "validation", "test")] == [0, 270, 0]
    assert views["test"]["parameters"]["sha256"] == hashlib.sha256((out / "data" / "mnist.npz").read_bytes()).hexdigest()
    # BEAT has not run it: compare says so instead of inventing a run.
    found, skipped = discover([out])
    assert not found and "BEAT has not run it yet" in skipped[0].reason


def test_record_completes_and_validates(runs):
    run = read_run_json(runs.beat)
    validate_run(run, str(runs.beat))
    assert run["status"] == "completed" and run["platform"] == "beat" and run["error"] is None
    assert all((runs.beat / name).is_file() for name in RECORD_FILES)
    predictions = np.load(runs.beat / "predictions.npy")
    assert predictions.shape == (200,) and predictions.dtype == np.uint8
    assert hashlib.sha256(predictions.tobytes()).hexdigest() == run["predictions_sha256"]
    assert run["data"]["n_train"] == 300 and run["data"]["n_test"] == 200
    # The environment is the BEAT interpreter's, and says which BEAT ran which experiment.
    env = run["environment"]
    assert env["packages"]["numpy"].startswith("1.")
    info = env["platform_info"]
    assert info["beat"] == {"beat.core": "1.13.5", "beat.backend.python": "1.7.15", "beat.cmdline": "1.10.3"}
    assert info["experiment"] == remote.experiment_name(parse_spec(run["spec"]))
    assert info["interpreter"].endswith(".venv-beat/bin/python")
    # BEAT's analyzer, read back from BEAT's cache, agrees with the record on every count.
    links = run["links"]["beat"]
    assert links["executor_exit"] == 0 and links["agrees_with_record"] == {
        "test_accuracy": True, "test_loss": True, "confusion_matrix": True, "predictions_sha256": True}
    assert links["results"]["n_test"] == 200
    assert abs(links["results"]["accuracy"] - run["metrics"]["test_accuracy"]) < 1e-6
    assert (runs.beat / "beat" / "beat.log").is_file() and (runs.beat / "beat" / "experiment.json").is_file()
    # The work folder (prefix, cache, data) is gone after a successful run; nothing half-written is left.
    assert [p.name for p in runs.runs_dir.iterdir()] == [runs.beat.name]


def test_compare_reads_the_record_inside_a_bundle(runs, tmp_path):
    """A bundle BEAT ran holds its record in record/<run_id>/; compare finds it there, named as BEAT's."""
    bundle = tmp_path / "bundle"
    shutil.copytree(runs.beat / "beat", bundle)  # beat-bundle.json and friends, as the bundle had them
    shutil.copytree(runs.beat, bundle / "record" / runs.beat.name)
    (bundle / "record" / ".partial-20261201T000000Z-beat-00000000-0000").mkdir()  # an older, killed run
    found, skipped = discover([bundle])
    assert [(r.loader, r.run["run_id"]) for r in found] == [("beat", runs.beat.name)] and not skipped
    info = json.loads((bundle / remote.BUNDLE_INFO).read_text())
    (bundle / remote.BUNDLE_INFO).write_text(json.dumps({**info, "record_dir": "../elsewhere"}))
    found, skipped = discover([bundle])
    assert not found and "points outside the bundle" in skipped[0].reason


def test_same_weights_as_the_local_run(runs):
    beat, local = read_run_json(runs.beat), read_run_json(runs.local)
    assert beat["spec_hash"] == local["spec_hash"] and beat["data_digest"] == local["data_digest"]
    # Same machine, same TensorFlow/Keras; only numpy (1.26 vs 2.x) differs, and it computes no weight.
    assert beat["weights_sha256"] == local["weights_sha256"]
    assert beat["predictions_sha256"] == local["predictions_sha256"]
    assert beat["metrics"] == local["metrics"]


def test_compare_lines_it_up_beside_the_local_run(runs):
    proc = cli("compare", str(runs.beat), str(runs.local), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    (experiment,) = report["experiments"]
    (pair,) = experiment["pairs"]
    assert pair["verdict"] == "identical", pair
    text = cli("compare", str(runs.beat), str(runs.local)).stdout
    assert "beat" in text and "local" in text and "numpy" in text and "identical" in text


def test_a_timeout_ends_with_one_line_and_a_failed_record(beat_env, mnist, tmp_path):
    proc = cli("--platform", "beat", *TINY, "--runs-dir", str(tmp_path), "--beat-timeout", "2", timeout=600)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "BEAT timed out after 2 s" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    (record,) = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    run = read_run_json(record)
    assert run["status"] == "failed" and "timed out" in run["error"]
    # BEAT's process group is stopped: nothing of this run is still running.
    (work,) = [p for p in tmp_path.iterdir() if p.name.startswith(".beat-")]
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(work) not in ps


def test_a_block_error_is_one_line_and_a_failed_record(beat_env, mnist, tmp_path):
    # A spec the validator accepts but Keras cannot build: the training block fails inside BEAT.
    proc = cli("--platform", "beat", *TINY, "--set", "layers.0.kernel_size=29", "--runs-dir", str(tmp_path))
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("error: BEAT failed in block `training`: ValueError: Computed output size"), proc.stderr
    (record,) = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    run = read_run_json(record)
    validate_run(run, str(record))
    assert run["status"] == "failed" and run["weights_sha256"] is None and "ValueError" in run["traceback"]
    assert (record / "beat" / "beat.log").is_file()


def test_a_missing_beat_interpreter_is_one_line_and_exit_2(tmp_path):
    proc = cli("--platform", "beat", *TINY, "--runs-dir", str(tmp_path), "--beat-python", str(tmp_path / "no" / "python"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: --beat-python") and not list(tmp_path.iterdir())


def test_a_failure_after_training_keeps_the_trained_model(tmp_path):
    """BEAT stops after the training block: the failed record carries the model and history."""
    from adapters.beat import BEAT_DIR, TRAIN_JSON
    from core.spec import load_spec

    spec = load_spec("canonical", {"epochs": 1})
    work = tmp_path / ".beat-x"
    info = {"run_id": "20261201T000000Z-beat-aaaaaaaa-0000", "record_dir": "record", "experiment": "harness/x",
            "data": {"data_digest": "d" * 64, "n_train": 9, "n_validation": 1, "n_test": 5}}
    partial = work / "record" / f".partial-{info['run_id']}"
    (partial / BEAT_DIR).mkdir(parents=True)
    (partial / "model.h5").write_bytes(b"trained")
    (partial / "history.csv").write_text("epoch,loss,seconds\n1,0.5,1.0\n")
    (partial / "predictions.npy").write_bytes(b"half")  # a test block stopped while writing
    (partial / BEAT_DIR / TRAIN_JSON).write_text(json.dumps({
        "started_at": "2026-12-01T00:00:00+00:00", "history": {"loss": [0.5]}, "epoch_seconds": [1.0],
        "weights_sha256": "w" * 64, "determinism": {"seed": 42}, "environment": {"python": "3.11"},
        "train_seconds": 2.0}))
    (work / remote.LOG).write_text("Captured user error:\n    RuntimeError: the test block broke\n")
    record = remote._publish_unfinished(work, info, spec, tmp_path, "failed", "BEAT failed: the test block broke",
                                        "2026-12-01T00:00:00+00:00", log=lambda _: None)
    run = read_run_json(record)
    validate_run(run, str(record))
    assert run["status"] == "failed" and run["weights_sha256"] == "w" * 64
    assert "training had finished" in run["error"] and run["metrics"] == {"final_loss": 0.5}
    assert (record / "model.h5").read_bytes() == b"trained" and not (record / "predictions.npy").exists()
    assert (record / "beat" / "beat.log").is_file()


def test_beat_error_line_names_the_block_and_the_exception():
    # The shape of BEAT 1.13.5's log for a failing block (from a real run, paths shortened):
    # the captured user error is the repr of the traceback, the exception glued to the source line.
    log = ("Running `harness/mnist_train/1' for block `training'\nStart the execution of 'harness/mnist_train/1'\n"
           "Block did not execute properly - outputs were reset\n  Standard output:\n    \n  Standard error:\n"
           "    [01/Dec/2026 17:41:18 - execute.py - beat.backend.python.data] WARNING: Removing cache files\n"
           "  Captured user error:\n"
           "    'File \"harness/mnist_train/1.py\", line 16, in process\\n    from adapters.beat import train_block"
           "ModuleNotFoundError: No module named \\'adapters\\''\n"
           "  Captured system error:\n    \nError: Error occured: returned value is 1\n")
    assert remote.beat_error_line(log) == "block `training`: ModuleNotFoundError: No module named 'adapters'"
    traceback_text = "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: Computed output size would be zero\n"
    assert remote.beat_error_line(log, traceback_text) == "block `training`: ValueError: Computed output size would be zero"
    assert remote.beat_error_line("Error: Error occured: returned value is 1\n") == "Error: Error occured: returned value is 1"
