"""Several `explore` workers on ONE study: SQLite (new and existing) and a real PostgreSQL server.

What must hold: every worker exits 0, every grid point is trained exactly once (one run record
per point; a worker that draws a point already running waits and takes its value), and a worker
killed mid-trial leaves no trial RUNNING for ever: the next worker fails it by its heartbeat and
trains that point again. Real tiny trainings (1 epoch, 200 images), 2 workers.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from core import search

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--split", "0.9", "--train-limit", "200", "--test-limit", "100", "--epochs", "1", "--heartbeat", "1"]


def explore_cmd(storage: str, study: str, tmp: Path, lrs: str, *extra: str) -> list[str]:
    return [sys.executable, "run.py", "explore", "--learning-rate", lrs, *TINY, "--storage", storage,
            "--study", study, "--runs-dir", str(tmp / "runs"), "--out", str(tmp / "reports"), *extra]


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)


def finish(procs: list[subprocess.Popen], logs: list[Path], timeout: float = 900) -> None:
    for proc, log in zip(procs, logs):
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"worker hung:\n{log.read_text()[-3000:]}")
        assert code == 0, log.read_text()[-3000:]


def completed_records(runs: Path) -> list[dict]:
    return [r for r in (json.loads(p.read_text()) for p in runs.glob("*/run.json")) if r["status"] == "completed"]


def check_each_point_trained_once(storage: str, study_name: str, runs: Path, points: set[float]) -> list:
    study = optuna.load_study(study_name=study_name, storage=search.open_storage(storage))
    trials = study.get_trials(deepcopy=False)
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert {t.params["learning_rate"] for t in complete} == points
    trained = [t for t in complete if "duplicate_of" not in t.user_attrs]
    assert sorted(t.params["learning_rate"] for t in trained) == sorted(points)  # each point trained once
    records = completed_records(runs)
    assert sorted(r["spec"]["optimizer"]["learning_rate"] for r in records) == sorted(points)
    for t in complete:  # a copied trial names the record of the trial it waited for
        assert Path(t.user_attrs["record"]).name in {r["run_id"] for r in records}
    return trials


def two_workers(storage: str, study: str, tmp: Path, lrs: str) -> None:
    logs = [tmp / f"worker{i}.log" for i in range(2)]
    procs = [start(explore_cmd(storage, study, tmp, lrs), log) for log in logs]
    finish(procs, logs)


def test_two_workers_on_a_new_sqlite_study(tmp_path):
    storage = f"sqlite:///{tmp_path / 'new.db'}"  # neither the file nor the tables exist yet
    two_workers(storage, "new", tmp_path, "0.001,0.002,0.003")
    check_each_point_trained_once(storage, "new", tmp_path / "runs", {0.001, 0.002, 0.003})


def test_two_workers_on_an_existing_sqlite_study(tmp_path):
    storage = f"sqlite:///{tmp_path / 'old.db'}"
    cmd = explore_cmd(storage, "old", tmp_path, "0.001,0.002,0.003", "--trials", "1")
    assert subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=900).returncode == 0
    assert len(completed_records(tmp_path / "runs")) == 1
    two_workers(storage, "old", tmp_path, "0.001,0.002,0.003")
    check_each_point_trained_once(storage, "old", tmp_path / "runs", {0.001, 0.002, 0.003})


def test_a_killed_workers_trial_is_failed_by_its_heartbeat_and_trained_again(tmp_path):
    storage = f"sqlite:///{tmp_path / 'killed.db'}"
    runs = tmp_path / "runs"
    cmd = explore_cmd(storage, "killed", tmp_path, "0.001,0.002")
    victim = start(cmd, tmp_path / "victim.log")
    try:
        deadline = time.monotonic() + 600
        while not list(runs.glob(".partial-*")):  # its first trial is training
            assert victim.poll() is None, (tmp_path / "victim.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the first trial never started"
            time.sleep(0.2)
        victim.send_signal(signal.SIGKILL)  # no handler runs: the trial stays RUNNING in the database
        victim.wait(timeout=60)
    finally:
        if victim.poll() is None:
            victim.kill()
    study = optuna.load_study(study_name="killed", storage=storage)
    [killed] = [t for t in study.trials if t.state == TrialState.RUNNING]
    finish([start(cmd, tmp_path / "second.log")], [tmp_path / "second.log"])
    trials = check_each_point_trained_once(storage, "killed", runs, {0.001, 0.002})
    assert [t.state for t in trials if t.number == killed.number] == [TrialState.FAIL]
    assert len(list(runs.glob(".partial-*"))) == 1  # the killed run's unfinished folder, never a record


# --- A real PostgreSQL server on 127.0.0.1 ---------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster (Debian's package, `make postgres` installs it), trust auth on loopback."""
    try:
        import psycopg2  # noqa: F401 — pinned in requirements.txt
    except ImportError:
        pytest.skip("the psycopg2 driver is not installed in this interpreter (requirements.txt pins it)")
    made = subprocess.run(["make", "-s", "postgres"], cwd=ROOT, capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"PostgreSQL could not be installed (make postgres): {made.stderr.strip()[-300:]}")
    bin_dir = Path(made.stdout.strip().splitlines()[-1]).parent
    user = "postgres" if os.geteuid() == 0 else None  # the server refuses to run as root
    # Outside pytest's tmp folders (mode 0700, root's): the server's user must reach its own files.
    home = Path(tempfile.mkdtemp(prefix="harness-pg-"))
    if user:
        shutil.chown(home, user)
    data = home / "data"
    as_user = ["runuser", "-u", user, "--"] if user else []
    init = subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                          capture_output=True, text=True)
    assert init.returncode == 0, init.stderr[-2000:]
    port = free_port()
    log = home / "server.log"
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o",
                    f"-c listen_addresses=127.0.0.1 -p {port} -k {home} -c fsync=off", "start"],
                   check=True, capture_output=True)
    try:
        subprocess.run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "explore"],
                       check=True, capture_output=True)
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/explore"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def test_two_workers_on_one_postgresql_study(postgres, tmp_path):
    two_workers(postgres, "pg", tmp_path, "0.001,0.002,0.003")
    check_each_point_trained_once(postgres, "pg", tmp_path / "runs", {0.001, 0.002, 0.003})
    report = json.loads((tmp_path / "reports" / "explore-pg.json").read_text())
    assert report["storage"].startswith("postgresql+psycopg2://postgres@127.0.0.1:")


@pytest.mark.parametrize("args, message", [
    (["--epochs", "1,2", "--set", "epochs=3"], "--set epochs and --epochs both set epochs"),
    (["--learning-rate", "0.1,0.2", "--set", "optimizer={name: sgd, learning_rate: 0.1}"],
     "both set optimizer.learning_rate"),
    (["--learning-rate", "0.1", "--heartbeat", "0"], "--heartbeat must be at least 1 second"),
    (["--learning-rate", "0.1", "--study", "s" * 300], "at most 192 characters"),
    (["--learning-rate", "0.1", "--write-best", "my best.yaml"], "must be a plain spec name"),
])
def test_explore_refuses_conflicting_or_unusable_options(tmp_path, capsys, args, message):
    import run as harness

    code = harness.main(["explore", *args, "--storage", f"sqlite:///{tmp_path / 'x.db'}", "--out", str(tmp_path)])
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "x.db").exists()  # refused before the storage is opened


def test_a_storage_url_password_is_not_printed():
    assert search.storage_label("postgresql://me:s3cret@db:5432/optuna") == "postgresql://me:***@db:5432/optuna"
    assert search.storage_label("sqlite:///explore.db") == "sqlite:///explore.db"
