"""run.py as a user types it: errors, interruption, the local platform on real MNIST."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, run_cli

TINY = ["--epochs", "1", "--train-limit", "300", "--test-limit", "200"]


def records(folder):
    return sorted(p for p in folder.iterdir()) if folder.exists() else []


def test_help_lists_commands_and_platforms():
    out = run_cli("--help")
    assert out.returncode == 0
    for word in ("compare", "repeat", "bundle", "--platform", "--set", "--no-determinism", "kaggle, local"):
        assert word in out.stdout


@pytest.mark.parametrize("args, code, message", [
    (["--epochs", "-3"], 2, "canonical.yaml: epochs: must be a positive integer"),
    (["--set", "optimizer.lr=0.1"], 2, "canonical.yaml: optimizer.lr: unknown key"),
    (["--split", "1.5"], 2, "split: must be in (0, 1]"),
    (["--set", "layers.0.type=Conv9D"], 2, "layers[0].type: unknown layer 'Conv9D'"),
    (["--spec", "nope"], 2, "no such file or preset"),
    (["--platform", "colab"], 2, "unknown platform 'colab'; valid platforms are: beat, codalab, comet, kaggle, local, openml"),
])
def test_bad_input_is_one_message_exit_code_and_nothing_written(tmp_path, args, code, message):
    out = run_cli(*args, "--runs-dir", str(tmp_path / "runs"))
    assert out.returncode == code, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert records(tmp_path / "runs") == []


def test_bad_spec_file_names_the_file(tmp_path):
    spec = tmp_path / "mine.yaml"
    spec.write_text((ROOT / "core/specs/canonical.yaml").read_text().replace("epochs: 12", "epochs: 12\nepoch: 3"))
    out = run_cli("--spec", str(spec), "--runs-dir", str(tmp_path / "runs"))
    assert out.returncode == 2 and f"{spec}: epoch: unknown key" in out.stderr


def test_impossible_architecture_gives_a_failed_record_not_a_traceback(tmp_path, mnist):
    out = run_cli(*TINY, "--set", "layers.0.kernel_size=30", "--runs-dir", str(tmp_path))
    assert out.returncode == 4
    # TensorFlow's native start-up chatter may precede it; our message is the last thing said.
    last = out.stderr[out.stderr.rindex("error: "):]
    assert last.startswith("error: the run failed: ValueError") and "Traceback" not in out.stderr
    [rec] = records(tmp_path)
    assert json.loads((rec / "run.json").read_text())["status"] == "failed"


def _start_run(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([sys.executable, str(ROOT / "run.py"), "--epochs", "50", "--train-limit", "2000",
                             "--test-limit", "200", "--runs-dir", str(tmp_path)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_training(proc, tmp_path, timeout=240):
    deadline = time.time() + timeout
    for line in proc.stdout:  # the "[run] <id>: ..." line is printed when training starts
        if line.startswith("[run] ") or time.time() > deadline:
            break
    time.sleep(1.0)
    assert [p.name for p in records(tmp_path)][0].startswith(".partial-")


def test_killed_run_leaves_no_record_that_looks_complete(tmp_path, mnist):
    proc = _start_run(tmp_path)
    _wait_for_training(proc, tmp_path)
    proc.kill()
    proc.wait(timeout=60)
    names = [p.name for p in records(tmp_path)]
    assert len(names) == 1 and names[0].startswith(".partial-")
    assert not (tmp_path / names[0] / "run.json").exists()


def test_terminated_run_publishes_an_interrupted_record(tmp_path, mnist):
    proc = _start_run(tmp_path)
    _wait_for_training(proc, tmp_path)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 130
    [rec] = records(tmp_path)
    run = json.loads((rec / "run.json").read_text())
    assert run["status"] == "interrupted" and "KeyboardInterrupt" in run["error"]


def test_local_platform_on_real_mnist(tmp_path, mnist):
    """Integration: a few thousand real images, one epoch, the official test set."""
    out = run_cli("--platform", "local", "--epochs", "1", "--train-limit", "4000", "--runs-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr[-2000:]
    [rec] = records(tmp_path)
    assert f"run record: {rec}" in out.stdout
    run = json.loads((rec / "run.json").read_text())
    assert run["status"] == "completed" and run["platform"] == "local"
    assert run["data"]["n_test"] == 10000
    assert run["metrics"]["test_accuracy"] > 0.70, run["metrics"]  # 28 steps of Adam: ~0.8; chance is 0.1
