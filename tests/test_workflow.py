"""`run.py reproduce | test | explore` end to end on tiny data (300 training / 200 test images, 1 epoch).

Needs the MNIST cache (`python run.py data fetch`, which `make test` runs first).
"""
import json
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

import run as harness
from core import search
from core.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--train-limit", "300", "--test-limit", "200", "--epochs", "1"]
PRESET = "keras-mnist-cnn-adam-2ep"


def records(runs_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(runs_dir.glob("*/run.json"))]


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    """One tiny reproduce of one preset with two seeds and a validation split."""
    root = tmp_path_factory.mktemp("reproduce")
    code = harness.main(["reproduce", PRESET, "--seeds", "2", "--split", "0.9", *TINY,
                         "--runs-dir", str(root / "runs"), "--out", str(root / "reports")])
    return code, root, json.loads((root / "reports" / "claims.json").read_text())


def test_reproduce_writes_a_claims_table_over_seeds(reproduced):
    code, root, table = reproduced
    assert code == 0
    (preset,) = table["presets"]
    assert preset["preset"] == PRESET and table["seeds"] == 2
    assert [r["seed"] for r in preset["runs"]] == [42, 43]
    assert [r["metric"] for r in preset["rows"]] == ["test_loss", "test_accuracy"]
    for row in preset["rows"]:
        values = [r["metrics"][row["metric"]] for r in preset["runs"]]
        assert row["measured"]["values"] == values
        assert row["measured"]["mean"] == pytest.approx(statistics.mean(values))
        assert row["measured"]["spread"] == pytest.approx(statistics.stdev(values))
    markdown = (root / "reports" / "claims.md").read_text()
    assert f"| {PRESET} | test_loss == 0.0397 |" in markdown
    assert "(n=2)" in markdown and "**Overrides:" in markdown


def test_reproduce_with_overrides_does_not_pass_or_fail_the_claims(reproduced):
    _, _, table = reproduced
    (preset,) = table["presets"]
    assert preset["changed"] == ["data.test_limit", "data.train_limit", "epochs", "split"]
    assert {row["verdict"] for row in preset["rows"]} == {"untested"}
    assert all("not the published conditions" in row["verdict_text"] for row in preset["rows"])


def test_reproduce_runs_are_normal_records_with_the_split(reproduced):
    _, root, _ = reproduced
    runs = records(root / "runs")
    assert [r["status"] for r in runs] == ["completed", "completed"]
    for r in runs:
        assert r["spec"]["name"] == PRESET and r["spec"]["split"] == 0.9
        assert (r["data"]["n_train"], r["data"]["n_test"]) == (300, 200)
        assert "final_val_accuracy" in r["metrics"]  # 270 train, 30 validate
    assert (root / "runs" / runs[0]["run_id"] / "model.h5").is_file()
    assert (root / "runs" / runs[0]["run_id"] / "model.yaml").is_file()


def test_test_command_evaluates_saved_models_in_one_table(reproduced):
    _, root, table = reproduced
    records_ = [Path(r["record"]) for r in table["presets"][0]["runs"]]
    # One run by id (looked up under --runs-dir), one by path.
    code = harness.main(["test", "pair", records_[0].name, str(records_[1]), "--runs-dir", str(root / "runs"),
                         "--out", str(root / "reports"), "--test-limit", "200"])
    assert code == 0
    result = json.loads((root / "reports" / "pair.json").read_text())
    assert result["test_set"]["n_test"] == 200
    for row, record in zip(result["runs"], records_):
        run = json.loads((record / "run.json").read_text())
        assert row["run_id"] == run["run_id"]
        assert row["test_accuracy"] == pytest.approx(run["metrics"]["test_accuracy"])
        assert row["test_loss"] == pytest.approx(run["metrics"]["test_loss"], rel=1e-4)
        assert row["predictions_differing_from_record"] == 0  # the saved model.h5 is the model that was run
    preds = [np.load(r / "predictions.npy") for r in records_]
    differ = int((preds[0] != preds[1]).sum())
    assert result["pairwise_disagreements"] == [[0, differ], [differ, 0]]
    assert result["disagreement_indices"] == np.flatnonzero(preds[0] != preds[1]).tolist()
    markdown = (root / "reports" / "pair.md").read_text()
    assert "| #1 | — |" in markdown and f"disagree on {differ} of 200 images" in markdown


def test_test_command_skips_a_bad_model_and_tests_the_others(reproduced, tmp_path, capsys):
    """One model.h5 that is not HDF5 and one cut short: both skipped with a reason, the good one tested."""
    _, root, table = reproduced
    good = Path(table["presets"][0]["runs"][0]["record"])
    bad = {}
    for name, damage in (("garbage", lambda b: b"this is not an HDF5 file\n" * 40), ("truncated", lambda b: b[:len(b) // 2])):
        copy = tmp_path / name
        shutil.copytree(good, copy)
        (copy / "model.h5").write_bytes(damage((good / "model.h5").read_bytes()))
        bad[name] = copy
    out = tmp_path / "reports"
    code = harness.main(["test", "mixed", str(bad["garbage"]), str(good), str(bad["truncated"]),
                         "--out", str(out), "--test-limit", "200"])
    assert code == 0
    result = json.loads((out / "mixed.json").read_text())
    assert [r["record"] for r in result["runs"]] == [str(good)]
    assert result["pairwise_disagreements"] == [[0]]
    skipped = {s["path"]: s["reason"] for s in result["skipped"]}
    assert set(skipped) == {str(bad["garbage"]), str(bad["truncated"])}
    assert all(r.startswith("model.h5 could not be tested: ") and "\n" not in r for r in skipped.values())
    assert f"- {bad['garbage']}: model.h5 could not be tested" in (out / "mixed.md").read_text()
    err = capsys.readouterr().err
    assert f"[test] skipped {bad['truncated']}: model.h5 could not be tested" in err and "Traceback" not in err


def test_test_command_with_no_usable_model_says_so(reproduced, tmp_path, capsys):
    _, root, table = reproduced
    copy = tmp_path / "bad"
    shutil.copytree(Path(table["presets"][0]["runs"][0]["record"]), copy)
    (copy / "model.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    assert harness.main(["test", "none", str(copy), "--out", str(tmp_path), "--test-limit", "200"]) == 2
    assert "none of the 1 saved model(s) could be tested" in capsys.readouterr().err
    assert not (tmp_path / "none.json").exists()


@pytest.mark.parametrize("argv, message", [
    (["test", "a/b", "run"], "must be a plain name"),
    (["test", "t", "no-such-run", "--runs-dir", "/nonexistent"], "no run record 'no-such-run'"),
    (["reproduce", "no-such-preset"], "no such file or preset"),
    (["reproduce", "canonical", "--seeds", "0"], "--seeds must be at least 1"),
    (["explore"], "nothing to search"),
    (["explore", "--learning-rate", "0.01", "--split", "1.0", "--metric", "val_accuracy"], "needs a validation split"),
    (["explore", "--spec", "keras-mnist-cnn", "--dense-units", "64", "--kernel-size", "3,x"], "'x' is not an integer"),
])
def test_user_mistakes_exit_2_with_one_line(argv, message, capsys):
    assert harness.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_explore_resumes_after_an_interruption(tmp_path):
    storage = f"sqlite:///{tmp_path / 'explore.db'}"
    runs_dir = tmp_path / "runs"
    argv = ["explore", "--learning-rate", "0.001,0.003", "--decay", "0.001", "--split", "0.9", *TINY,
            "--storage", storage, "--study", "resume-test", "--runs-dir", str(runs_dir),
            "--out", str(tmp_path / "reports")]

    # A first worker: interrupted (SIGTERM, as Ctrl-C) while its second trial trains.
    with open(tmp_path / "worker.log", "w") as log:
        worker = subprocess.Popen([sys.executable, "run.py", *argv], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: second_trial_training(storage, runs_dir), worker, tmp_path / "worker.log")
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=600) == 130
        finally:
            if worker.poll() is None:
                worker.kill()
    study = optuna.load_study(study_name="resume-test", storage=storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL]
    interrupted_lr = study.trials[1].params["learning_rate"]
    assert sorted(r["status"] for r in records(runs_dir)) == ["completed", "interrupted"]

    # The same command again: the interrupted grid point runs again, and the grid is done.
    best = tmp_path / "best.yaml"
    assert harness.main(argv + ["--write-best", str(best)]) == 0
    study = optuna.load_study(study_name="resume-test", storage=storage)
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert study.trials[2].params["learning_rate"] == interrupted_lr
    assert {t.params["learning_rate"] for t in study.trials if t.state == TrialState.COMPLETE} == {0.001, 0.003}
    runs = records(runs_dir)
    assert sorted(r["status"] for r in runs) == ["completed", "completed", "interrupted"]
    for t in study.trials:
        if t.state == TrialState.COMPLETE:  # every trial is a normal run record with its own spec
            run = json.loads((Path(t.user_attrs["record"]) / "run.json").read_text())
            assert run["spec"]["optimizer"] == {"name": "adam", "learning_rate": t.params["learning_rate"],
                                                "decay": 0.001}
            assert run["metrics"]["final_val_accuracy"] == t.value

    report = json.loads((tmp_path / "reports" / "explore-resume-test.json").read_text())
    ranked = [t for t in report["trials"] if t["rank"]]
    assert [t["rank"] for t in ranked] == [1, 2]
    assert ranked[0]["value"] >= ranked[1]["value"]
    assert report["trials"][-1]["state"] == "fail"

    spec = load_spec(best)
    assert spec.name == "best" and spec.optimizer.learning_rate == study.best_trial.params["learning_rate"]
    assert spec.hash == study.best_trial.user_attrs["spec_hash"]

    # Once the grid is done, running the command again runs nothing.
    assert harness.main(argv) == 0
    assert len(records(runs_dir)) == 3


def second_trial_training(storage: str, runs_dir: Path) -> bool:
    """Trial 0 is complete and trial 1 has drawn its parameters and started its record."""
    # Look at the files first: the database is read only near the moment awaited.
    if not (list(runs_dir.glob("*/run.json")) and list(runs_dir.glob(".partial-*"))):
        return False
    trials = optuna.load_study(study_name="resume-test", storage=search.open_storage(storage)).trials
    return (len(trials) == 2 and trials[0].state == TrialState.COMPLETE and trials[1].state == TrialState.RUNNING
            and "learning_rate" in trials[1].params)


def wait_for(condition, process: subprocess.Popen, log: Path, limit_s: float = 1800) -> None:
    """Poll until `condition()`; fail with the worker's log if it exits first (limit: a hung worker)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"worker exited {process.returncode} early:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"worker never reached the state awaited:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
