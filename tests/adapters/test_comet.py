"""The comet platform with the real comet_ml, offline: nothing here may leave 127.0.0.1.

Two tiny runs share one TensorFlow import (a Comet run and a local run of the
same spec); the secret test runs `run.py` in a subprocess, so that comet_ml's
console and log file are set up as a user gets them.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from core.data import cache_dir
from core.record import read_run_json
from results.loaders import discover
from results.loaders.comet import flatten, read_archive

ROOT = Path(__file__).resolve().parents[2]
FAKE_KEY = "FAKEKEY_abc123_SHOULD_NOT_LEAK"
TINY = ["--epochs", "2", "--train-limit", "300", "--test-limit", "200"]
COMET_VARS = ("COMET_API_KEY", "COMET_WORKSPACE", "COMET_PROJECT_NAME", "COMET_URL_OVERRIDE", "COMET_CONFIG",
              "COMET_INI", "COMET_OFFLINE_DIRECTORY", "COMET_LOGGING_FILE", "COMET_LOGGING_FILE_LEVEL")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on exit: connections are refused


def comet_env(home: Path, **extra: str) -> dict[str, str]:
    """No key, no config file, no reachable server, no crash reports, quick failure, MNIST from the cache."""
    env = {k: v for k, v in os.environ.items() if k not in COMET_VARS}
    env.update(HOME=str(home), MNIST_HARNESS_CACHE=str(cache_dir()),
               COMET_URL_OVERRIDE=f"http://127.0.0.1:{closed_port()}/clientlib/",
               COMET_ERROR_TRACKING_ENABLE="false", COMET_HTTP_SESSION_RETRY_TOTAL="0",
               COMET_GET_OR_ADD_EXPERIMENT_RETRY_TOTAL="0", COMET_GET_OR_ADD_EXPERIMENT_RETRY_CONNECT="0")
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def isolated(tmp_path_factory):
    """This module's environment (see comet_env), a working folder without .comet.config, and a network guard."""
    home = tmp_path_factory.mktemp("home")
    attempts: list = []
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def loopback_only(host) -> bool:
        return isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1"))

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not loopback_only(address[0]):
            attempts.append(address)
            raise OSError(f"test network guard: no connection to {address}")
        return real_connect(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if host is not None and not loopback_only(host):
            attempts.append(host)
            raise socket.gaierror(f"test network guard: no lookup of {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        for name in COMET_VARS:
            mp.delenv(name, raising=False)
        for name, value in comet_env(home).items():
            mp.setenv(name, value)
        mp.chdir(home)
        mp.setattr(socket.socket, "connect", connect)
        mp.setattr(socket, "getaddrinfo", getaddrinfo)
        yield home
    assert attempts == [], f"something tried to leave this machine: {attempts}"


def run_in_process(platform: str, runs_dir: Path, *extra: str) -> Path:
    from cli.run import main

    assert main("run", ["--platform", platform, *TINY, "--runs-dir", str(runs_dir), *extra]) == 0
    (record,) = [p for p in runs_dir.iterdir() if (p / "run.json").is_file()]
    return record


@pytest.fixture(scope="module")
def comet_record(isolated, tmp_path_factory) -> Path:
    return run_in_process("comet", tmp_path_factory.mktemp("comet-runs"))


@pytest.fixture(scope="module")
def local_record(isolated, tmp_path_factory) -> Path:
    return run_in_process("local", tmp_path_factory.mktemp("local-runs"))


def archive_of(record: Path) -> Path:
    links = read_run_json(record)["links"]["comet"]
    return record / links["archive"]


def test_record_completes_and_names_its_offline_experiment(comet_record):
    run = read_run_json(comet_record)
    assert run["status"] == "completed" and run["platform"] == "comet"
    links = run["links"]["comet"]
    assert links["mode"] == "offline" and "publish_error" not in links
    assert links["archive"] == f"comet/{links['experiment_key']}.zip"
    assert archive_of(comet_record).is_file()


def test_archive_holds_every_epoch_metric_and_spec_parameter(comet_record):
    run = read_run_json(comet_record)
    log = read_archive(archive_of(comet_record))

    logged = {(m["name"], m["epoch"]): m for m in log.metrics}
    assert set(run["history"]) == {"accuracy", "loss", "val_accuracy", "val_loss"}
    steps = set()
    for name, values in run["history"].items():
        for epoch, value in enumerate(values, 1):
            assert logged[(name, epoch)]["value"] == value, (name, epoch)
            steps.add(logged[(name, epoch)]["step"])
    assert steps == {3, 6}  # 270 training images in batches of 128: 3 steps an epoch
    for name in ("test_accuracy", "test_loss"):
        assert [m["value"] for m in log.metrics if m["name"] == name] == [run["metrics"][name]]

    spec_params = flatten(run["spec"])
    assert {k: log.params[k] for k in spec_params} == spec_params
    assert log.params["optimizer.learning_rate"] == 0.001 and log.params["layers.0.filters"] == 32

    assert log.others["spec_hash"] == run["spec_hash"] and log.others["data_digest"] == run["data_digest"]
    assert log.others["weights_sha256"] == run["weights_sha256"]
    assert sorted(log.tags) == sorted(["platform:comet", "backend:tensorflow", f"spec:{run['spec_hash'][:8]}"])
    assert log.read_asset("model.h5") == (comet_record / "model.h5").read_bytes()
    assert json.loads(log.read_asset("environment.json")) == run["environment"]
    matrix = json.loads(log.read_asset("confusion-matrix.json"))["matrix"]
    assert sum(map(sum, matrix)) == 200


def test_comet_run_and_local_run_of_the_same_spec_are_identical(comet_record, local_record):
    runs, skipped = discover([local_record, archive_of(comet_record), comet_record])
    assert skipped == []
    local, from_archive, comet = runs
    assert (local.loader, from_archive.loader, comet.loader) == ("record", "comet-archive", "record")
    assert from_archive.run["platform"] == "comet" and from_archive.run["status"] == "completed"
    # the archive gives back the Comet run's own record, key for key
    assert {k: v for k, v in from_archive.run.items() if k != "links"} == \
           {k: v for k, v in comet.run.items() if k != "links"}
    for key in ("spec_hash", "data_digest", "weights_sha256", "predictions_sha256", "history"):
        assert from_archive.run[key] == local.run[key], key
    assert np.array_equal(from_archive.predictions(), local.predictions())


def test_comet_offline_cli_reads_the_archive(isolated, comet_record):
    out = subprocess.run([sys.executable, "-m", "comet_ml.scripts.comet_offline", "--csv",
                          str(archive_of(comet_record))], capture_output=True, text=True, timeout=300,
                         env=comet_env(isolated, COMET_DISABLE_AUTO_LOGGING="1"))
    assert out.returncode == 0, out.stderr
    rows = out.stdout.splitlines()
    assert any('"metric","val_loss"' in row for row in rows)
    assert any('"param","optimizer.learning_rate","0.001"' in row for row in rows)


def test_unreachable_comet_still_completes_and_never_shows_the_key(tmp_path):
    """A fake key, a closed port: the run completes offline; the key is in no file and no output."""
    runs, comet_log = tmp_path / "runs", tmp_path / "comet.log"
    env = comet_env(tmp_path, COMET_API_KEY=FAKE_KEY, COMET_LOGGING_FILE=str(comet_log),
                    COMET_LOGGING_FILE_LEVEL="DEBUG")
    out = subprocess.run([sys.executable, str(ROOT / "run.py"), "--platform", "comet", "--epochs", "1",
                          "--train-limit", "300", "--test-limit", "200", "--runs-dir", str(runs)],
                         capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    (record,) = runs.iterdir()
    run = read_run_json(record)
    assert run["status"] == "completed"
    links = run["links"]["comet"]
    assert links["mode"] == "offline" and "could not reach Comet" in links["offline_reason"]
    assert read_archive(record / links["archive"]).others["status"] == "completed"
    assert "logging to an offline archive instead" in out.stdout

    assert comet_log.stat().st_size > 0  # comet_ml did log, at DEBUG, the failed connection
    assert "Connection refused" in comet_log.read_text()
    texts = {"stdout": out.stdout, "stderr": out.stderr}
    for path in tmp_path.rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_bytes().decode("latin-1")
            if zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as z:
                    texts.update({f"{path}:{n}": z.read(n).decode("latin-1") for n in z.namelist()})
    assert len(texts) > 15
    assert [where for where, text in texts.items() if FAKE_KEY in text] == []


def test_failed_run_keeps_a_failed_record_and_its_comet_archive(isolated, tmp_path):
    from cli.run import main

    runs = tmp_path / "runs"
    with pytest.raises(ValueError):  # a 40x40 kernel does not fit a 28x28 image: Keras refuses the model
        main("run", ["--platform", "comet", *TINY, "--runs-dir", str(runs), "--set", "layers.0.kernel_size=40"])
    (record,) = [p for p in runs.iterdir() if p.name != "comet-unfinished"]
    assert read_run_json(record)["status"] == "failed"
    (loaded,), skipped = discover([runs / "comet-unfinished"])
    assert skipped == []
    assert loaded.run["status"] == "failed" and loaded.run["error"].startswith("ValueError")
    assert loaded.run["spec"]["layers"][0]["kernel_size"] == 40


def test_push_needs_a_key(isolated, comet_record):
    from adapters.comet import CometError, cli_push

    with pytest.raises(CometError, match="COMET_API_KEY"):
        cli_push([str(archive_of(comet_record))])


def test_push_refuses_what_is_not_an_archive(isolated, tmp_path):
    from adapters.comet import cli_push
    from core.errors import UsageError

    not_comet = tmp_path / "other.zip"
    with zipfile.ZipFile(not_comet, "w") as z:
        z.writestr("run.json", "{}")
    with pytest.raises(UsageError, match="not a Comet offline archive"):
        cli_push([str(not_comet)])
    with pytest.raises(UsageError, match="no Comet offline archive"):
        cli_push([str(tmp_path)])


def test_push_to_an_unreachable_server_fails_and_keeps_the_archive(isolated, comet_record, capfd, monkeypatch):
    from adapters.comet import CometError, cli_push

    monkeypatch.setenv("COMET_API_KEY", FAKE_KEY)
    archive = archive_of(comet_record)
    before = archive.read_bytes()
    with pytest.raises(CometError, match="1 of 1 archive"):
        cli_push([str(comet_record)])  # the record folder: its comet/ archive
    out, err = capfd.readouterr()
    assert FAKE_KEY not in out + err
    assert archive.read_bytes() == before
    assert "uploaded" not in read_run_json(comet_record)["links"]["comet"]
