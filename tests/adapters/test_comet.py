"""The comet platform with the real comet_ml, offline: nothing here may leave 127.0.0.1.

All training happens in one child process (one TensorFlow import), through
`run.py`'s own entry point, so its console and comet_ml's log file are exactly
what a user gets: a local run, a Comet run without a key, a Comet run with a
fake key and an unreachable server, and a Comet run whose model Keras refuses.
The tests below read what it left; push and pull run in this process.
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
from core.record import flatten
from results.loaders.comet import read_archive

ROOT = Path(__file__).resolve().parents[2]
FAKE_KEY = "FAKEKEY_abc123_SHOULD_NOT_LEAK"
TINY = ["--epochs", "2", "--train-limit", "300", "--test-limit", "200"]
COMET_VARS = ("COMET_API_KEY", "COMET_WORKSPACE", "COMET_PROJECT_NAME", "COMET_URL_OVERRIDE", "COMET_CONFIG",
              "COMET_INI", "COMET_OFFLINE_DIRECTORY", "COMET_LOGGING_FILE", "COMET_LOGGING_FILE_LEVEL")

# The child: a network guard that lets only loopback through, then four runs through run.py's main().
DRIVER = r"""
import json, os, socket, sys
root, runs, tiny, fake_key = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
sys.path.insert(0, root)
attempts, real_connect, real_getaddrinfo = [], socket.socket.connect, socket.getaddrinfo
loopback = lambda host: isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1"))
def connect(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not loopback(address[0]):
        attempts.append(str(address)); raise OSError(f"network guard: no connection to {address}")
    return real_connect(sock, address)
def getaddrinfo(host, *args, **kwargs):
    if host is not None and not loopback(host):
        attempts.append(str(host)); raise socket.gaierror(f"network guard: no lookup of {host}")
    return real_getaddrinfo(host, *args, **kwargs)
socket.socket.connect, socket.getaddrinfo = connect, getaddrinfo

import run
exits = {}
def go(name, *argv):
    print(f"=== {name}", flush=True)
    try:
        exits[name] = run.main([*argv, "--runs-dir", os.path.join(runs, name)])
    except Exception as e:
        exits[name] = f"{type(e).__name__}: {e}"
    print(f"=== {name}: {exits[name]}", flush=True)
go("local", "--platform", "local", *tiny)
go("comet", "--platform", "comet", *tiny)
os.environ["COMET_API_KEY"] = fake_key
go("unreachable", "--platform", "comet", *tiny)
del os.environ["COMET_API_KEY"]
go("failed", "--platform", "comet", *tiny, "--set", "layers.0.kernel_size=40")
with open(os.path.join(runs, "driver.json"), "w") as f:
    json.dump({"exits": exits, "network_attempts": attempts}, f)
"""


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
def driven(tmp_path_factory):
    """Run DRIVER once; returns its folder (runs, HOME, comet.log), console and exit codes."""
    top = tmp_path_factory.mktemp("comet")
    runs, comet_log = top / "runs", top / "comet.log"
    runs.mkdir()
    env = comet_env(top, COMET_LOGGING_FILE=str(comet_log), COMET_LOGGING_FILE_LEVEL="DEBUG")
    out = subprocess.run([sys.executable, "-c", DRIVER, str(ROOT), str(runs), json.dumps(TINY), FAKE_KEY],
                         capture_output=True, text=True, timeout=900, env=env, cwd=top)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((runs / "driver.json").read_text())
    assert result["network_attempts"] == []
    return {"top": top, "runs": runs, "comet_log": comet_log, "stdout": out.stdout, "stderr": out.stderr,
            "exits": result["exits"]}


def record(driven, name: str) -> Path:
    assert driven["exits"][name] == 0, driven["exits"]
    (folder,) = [p for p in (driven["runs"] / name).iterdir() if (p / "run.json").is_file()]
    return folder


def archive_of(folder: Path) -> Path:
    return folder / read_run_json(folder)["links"]["comet"]["archive"]


def test_record_completes_and_names_its_offline_experiment(driven):
    run = read_run_json(record(driven, "comet"))
    assert run["status"] == "completed" and run["platform"] == "comet"
    links = run["links"]["comet"]
    assert links["mode"] == "offline" and "publish_error" not in links and "offline_reason" not in links
    assert links["archive"] == f"comet/{links['experiment_key']}.zip"
    assert archive_of(record(driven, "comet")).is_file()


def test_archive_holds_every_epoch_metric_and_spec_parameter(driven):
    folder = record(driven, "comet")
    run, log = read_run_json(folder), read_archive(archive_of(folder))

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
    assert log.read_asset("model.h5") == (folder / "model.h5").read_bytes()
    assert json.loads(log.read_asset("environment.json")) == run["environment"]
    matrix = json.loads(log.read_asset("confusion-matrix.json"))["matrix"]
    assert sum(map(sum, matrix)) == 200


def test_comet_run_and_local_run_of_the_same_spec_are_identical(driven):
    comet = record(driven, "comet")
    runs, skipped = discover([record(driven, "local"), archive_of(comet), comet])
    assert skipped == []
    local, from_archive, comet_record = runs
    assert (local.loader, from_archive.loader, comet_record.loader) == ("record", "comet-archive", "record")
    assert from_archive.run["platform"] == "comet" and from_archive.run["status"] == "completed"
    # the archive gives back the Comet run's own record, key for key
    assert {k: v for k, v in from_archive.run.items() if k != "links"} == \
           {k: v for k, v in comet_record.run.items() if k != "links"}
    for key in ("spec_hash", "data_digest", "weights_sha256", "predictions_sha256", "history"):
        assert from_archive.run[key] == local.run[key], key
    assert np.array_equal(from_archive.predictions(), local.predictions())


def test_comet_offline_cli_reads_the_archive(driven):
    out = subprocess.run([sys.executable, "-m", "comet_ml.scripts.comet_offline", "--csv",
                          str(archive_of(record(driven, "comet")))], capture_output=True, text=True, timeout=300,
                         env=comet_env(driven["top"], COMET_DISABLE_AUTO_LOGGING="1"))
    assert out.returncode == 0, out.stderr
    rows = out.stdout.splitlines()
    assert any('"metric","val_loss"' in row for row in rows)
    assert any('"param","optimizer.learning_rate","0.001"' in row for row in rows)


def test_unreachable_comet_still_completes_with_an_archive(driven):
    folder = record(driven, "unreachable")
    run = read_run_json(folder)
    assert run["status"] == "completed"
    links = run["links"]["comet"]
    assert links["mode"] == "offline" and "could not reach Comet" in links["offline_reason"]
    assert read_archive(archive_of(folder)).others["status"] == "completed"
    assert "logging to an offline archive instead" in driven["stdout"]
    assert "Connection refused" in driven["comet_log"].read_text()  # comet_ml did try, and logged it


def test_the_key_appears_in_no_file_and_no_output(driven):
    texts = {"stdout": driven["stdout"], "stderr": driven["stderr"]}
    for path in driven["top"].rglob("*"):  # records, archives, comet.log, whatever landed in HOME
        if path.is_file():
            texts[str(path)] = path.read_bytes().decode("latin-1")
            if zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as z:
                    texts.update({f"{path}:{n}": z.read(n).decode("latin-1") for n in z.namelist()})
    assert str(driven["comet_log"]) in texts and len(texts) > 40
    assert [where for where, text in texts.items() if FAKE_KEY in text] == []


def test_failed_run_keeps_a_failed_record_and_its_comet_archive(driven):
    runs = driven["runs"] / "failed"
    assert driven["exits"]["failed"] == 4  # RunFailed: Keras refuses a 40x40 kernel on 28x28 images
    assert "error: the run failed: ValueError" in driven["stderr"]
    (folder,) = [p for p in runs.iterdir() if p.name != "comet-unfinished"]
    assert read_run_json(folder)["status"] == "failed"
    (loaded,), skipped = discover([runs / "comet-unfinished"])
    assert skipped == []
    assert loaded.run["status"] == "failed" and loaded.run["error"].startswith("ValueError")
    assert loaded.run["spec"]["layers"][0]["kernel_size"] == 40


# --- push and pull, in this process (comet_ml, no TensorFlow) ----------------------------

@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """comet_env here, in a folder without .comet.config, and no connection beyond loopback."""
    for name in COMET_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in comet_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    real_connect = socket.socket.connect

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not str(address[0]).startswith("127."):
            raise AssertionError(f"test network guard: connection to {address}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return tmp_path


def test_push_needs_a_key(driven, isolated):
    from adapters.comet import CometError
    from cli.remote import push_comet as cli_push

    with pytest.raises(CometError, match="COMET_API_KEY"):
        cli_push([str(archive_of(record(driven, "comet")))])


def test_pull_needs_a_key(isolated):
    from adapters.comet import CometError
    from cli.remote import pull_comet as cli_pull

    with pytest.raises(CometError, match="COMET_API_KEY"):
        cli_pull(["0123456789abcdef0123456789abcdef"])


def test_push_refuses_what_is_not_an_archive(isolated):
    from cli.remote import push_comet as cli_push
    from core.errors import UsageError

    not_comet = isolated / "other.zip"
    with zipfile.ZipFile(not_comet, "w") as z:
        z.writestr("run.json", "{}")
    with pytest.raises(UsageError, match="not a Comet offline archive"):
        cli_push([str(not_comet)])
    with pytest.raises(UsageError, match="no Comet offline archive"):
        cli_push([str(isolated)])


def test_push_to_an_unreachable_server_fails_and_keeps_the_archive(driven):
    """`run.py push` as a user runs it, with a fake key: one error line, exit 1, the key nowhere."""
    folder = record(driven, "comet")
    before = archive_of(folder).read_bytes()
    out = subprocess.run([sys.executable, str(ROOT / "run.py"), "push", "comet", str(folder)],
                         capture_output=True, text=True, timeout=300, cwd=driven["top"],
                         env=comet_env(driven["top"], COMET_API_KEY=FAKE_KEY))
    assert out.returncode == 1
    assert "error: 1 of 1 archive(s) not uploaded" in out.stderr
    assert FAKE_KEY not in out.stdout + out.stderr
    assert archive_of(folder).read_bytes() == before
    assert "uploaded" not in read_run_json(folder)["links"]["comet"]


@pytest.mark.parametrize("file_path, why", [("/etc/hostname", "not a relative path"),
                                             ("../../outside.bin", "is not a plain file name"),
                                             ("not-in-the-archive.bin", "not a file in the archive")])
def test_push_refuses_an_archive_naming_a_file_outside_it_before_comet_ml_opens_it(tmp_path, file_path, why):
    """comet_ml's uploader joins a message's file_path to its temporary folder, then uploads and deletes that
    file; an absolute or climbing name would reach outside. The archive is refused before comet_ml sees it."""
    from adapters.remote import transfer
    from adapters.remote.comet import check_archive
    from cli.remote import push_comet

    archive = tmp_path / "0123456789abcdef0123456789abcdef.zip"
    message = {"type": "file_upload", "payload": {"file_path": file_path, "upload_type": "asset",
                                                  "additional_params": {}}}
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("experiment.json", json.dumps({"offline_id": archive.stem}))
        z.writestr("messages.json", json.dumps(message) + "\n")
        z.writestr("asset.bin", b"inside")
    with pytest.raises(transfer.Refused, match=why):
        check_archive(archive)
    with pytest.raises(transfer.Refused):
        push_comet([str(archive)])


def test_the_names_comet_is_logged_under_are_the_names_the_loader_reads():
    """The adapter writes and `results/loaders/comet.py` reads the same format; neither imports the other."""
    from adapters import comet as writer
    from results.loaders import comet as reader

    for name in ("ARCHIVE_FILES", "TEST_METRICS", "EPOCH_SECONDS", "ENVIRONMENT_ASSET", "NESTED_OTHERS"):
        assert getattr(writer, name) == getattr(reader, name), name
