"""A finished run is never lost: a full disk while the record is written, two SIGTERMs in a row.

The full disk is a real one: a tmpfs of a few hundred KB, mounted for the test (needs root,
as `.ci/run` has; skipped otherwise, saying so).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from core import record
from tests.conftest import ROOT


@contextlib.contextmanager
def small_disk(tmp_path: Path, size: str):
    """A tmpfs of `size` at tmp_path/disk; unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a real full disk) needs root")
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path, leave: int = 0) -> None:
    """Write to `path` until the disk is full, then give back `leave` bytes."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with contextlib.suppress(OSError):
        while True:
            os.write(fd, b"\0" * 512)
    os.close(fd)
    if leave:
        os.truncate(path, max(0, path.stat().st_size - leave))


def a_run(**extra) -> dict:
    return {"schema_version": 1, "run_id": "r", "platform": "local", "status": "completed", "spec": {"name": "x"},
            "spec_hash": "ab" * 32, "metrics": {"test_accuracy": 0.99}, "error": None,
            "environment": {"padding": "e" * 40_000}, "history": {"loss": [0.1] * 2000},
            "traceback": None, **extra}


def test_full_disk_drops_model_h5_first_and_keeps_the_metrics(tmp_path):
    with small_disk(tmp_path, "256k") as disk:
        w = record.RecordWriter(disk / "runs", "r")
        (w.path("history.csv")).write_text("epoch,loss\n1,0.1\n")
        fill(w.path("model.h5"), leave=8192)  # room for a small run.json, not for this one
        final = w.publish(a_run())
        run = json.loads((final / "run.json").read_text())
        assert run["status"] == "failed" and run["files_dropped"] == ["model.h5"]
        assert run["metrics"] == {"test_accuracy": 0.99}
        assert "disk full (No space left on device)" in run["record_error"]
        assert sorted(os.listdir(final)) == ["history.csv", "run.json"]  # no .tmp left, no partial
        assert os.listdir(disk / "runs") == ["r"]


def test_a_disk_too_full_for_any_run_json_says_so_with_the_metrics(tmp_path):
    with small_disk(tmp_path, "64k") as disk:
        w = record.RecordWriter(disk / "runs", "r")
        fill(disk / "not-ours")  # outside the record: nothing of ours can be dropped to make room
        with pytest.raises(record.RecordNotWritten) as e:
            w.publish(a_run())
        message = str(e.value)
        assert "disk full" in message and '"test_accuracy": 0.99' in message and "\n" not in message
        assert not any(p.name.endswith(".tmp") for p in w.partial.iterdir())  # the space is given back


def test_disk_full_while_training_writes_its_files_is_one_line_and_a_failed_record_with_metrics(tmp_path, mnist):
    from core import experiment
    from core.spec import load_spec

    spec = load_spec("canonical", {"epochs": 1, "data.train_limit": 300, "data.test_limit": 200})
    with small_disk(tmp_path, "1m") as disk:  # the small files and run.json fit; model.h5 (2.7 MB) does not
        with pytest.raises(experiment.RunFailed) as e:
            experiment.run_experiment(spec, mnist, disk / "runs", "local", log=lambda m: None)
        message = str(e.value)
        assert "disk full (No space left on device) writing model.h5" in message and "\n" not in message
        [folder] = (disk / "runs").iterdir()
        run = json.loads((folder / "run.json").read_text())
        assert run["status"] == "failed" and run["metrics"]["test_accuracy"] >= 0 and run["weights_sha256"]
        assert "model.h5" not in os.listdir(folder) and "predictions.npy" in os.listdir(folder)


def test_cli_reports_a_full_disk_in_one_line_with_exit_4(tmp_path):
    with small_disk(tmp_path, "1m") as disk:
        out = subprocess.run([sys.executable, str(ROOT / "run.py"), "--epochs", "1", "--train-limit", "300",
                              "--test-limit", "200", "--runs-dir", str(disk / "runs")],
                             capture_output=True, text=True, timeout=600,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        assert out.returncode == 4, out.stderr[-2000:]
        [line] = [l for l in out.stderr.splitlines() if l.startswith("error:")]
        assert "disk full" in line and "Traceback" not in out.stderr
        [folder] = (disk / "runs").iterdir()
        assert json.loads((folder / "run.json").read_text())["metrics"]["test_accuracy"] >= 0


def test_a_storm_of_sigterms_still_leaves_an_interrupted_record(tmp_path):
    """The first SIGTERM interrupts training; the ones right after it must not tear the record."""
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "--epochs", "50", "--train-limit", "2000",
                             "--test-limit", "200", "--runs-dir", str(runs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"})
    try:
        for line in proc.stdout:  # training has started once the run announces itself
            if line.startswith("[run] ") and "epochs" in line:
                break
        published = lambda: [p for p in runs.iterdir() if not p.name.startswith(".")] if runs.exists() else []
        sent = 0
        proc.send_signal(signal.SIGTERM)  # two back to back: an interrupted record can be out within 5 ms
        proc.send_signal(signal.SIGTERM)
        sent = 2
        while proc.poll() is None and not published() and sent < 2000:
            proc.send_signal(signal.SIGTERM)
            sent += 1
            time.sleep(0.005)
        proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    [folder] = published()
    run = json.loads((folder / "run.json").read_text())
    assert run["status"] == "interrupted" and run["error"].startswith("KeyboardInterrupt")
    assert not [p for p in runs.iterdir() if p.name.startswith(".")]


def test_a_record_is_never_overwritten_and_ids_carry_48_random_bits(tmp_path):
    ids = {record.new_run_id("local", "ab" * 32) for _ in range(2000)}
    assert len(ids) == 2000 and all(len(i.rsplit("-", 1)[1]) == 12 for i in ids)
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError):
        record.RecordWriter(tmp_path, "taken")  # a published record of that id
    w = record.RecordWriter(tmp_path, "twice")
    with pytest.raises(FileExistsError):
        record.RecordWriter(tmp_path, "twice")  # another run assembling under the same id
    (tmp_path / "twice").mkdir()  # appears while the first is running
    with pytest.raises(FileExistsError):
        w.publish(a_run())
    assert w.partial.exists() and list((tmp_path / "twice").iterdir()) == []
    assert record.RecordWriter.create(tmp_path, "local", "cd" * 32).partial.name.startswith(".partial-")
