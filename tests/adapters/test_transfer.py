"""The shared machinery for what leaves the machine and what comes back (adapters/remote/transfer.py)."""
from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path

import pytest

from adapters.remote import transfer
from core.errors import UsageError
from core.record import RUN_JSON, read_run_json

RUN_ID = "20261201T000000Z-kaggle-164670d5-ab12"


def record(folder: Path, run_id: str = RUN_ID, **extra) -> Path:
    folder.mkdir(parents=True)
    run = {"schema_version": 1, "run_id": run_id, "platform": "kaggle", "status": "completed",
           "spec": {"name": "canonical"}, "spec_hash": "0" * 64, **extra}
    (folder / RUN_JSON).write_text(json.dumps(run))
    (folder / "history.csv").write_text("epoch\n")
    return folder


def test_adopt_moves_a_valid_record_into_place_with_links_and_extras(tmp_path):
    runs = tmp_path / "runs"
    log_file = tmp_path / "kernel.log"
    log_file.write_text("the kernel's log\n")
    with transfer.staging(runs, "pull") as staging:
        dest, new = transfer.adopt_record(record(staging / "out" / "runs" / RUN_ID), runs, platform="kaggle",
                                          links={"kernel": "me/x"}, extras={"kaggle-kernel.log": log_file})
    assert new and dest == runs / RUN_ID
    assert read_run_json(dest)["links"]["kaggle"] == {"kernel": "me/x"}
    assert (dest / "kaggle-kernel.log").read_text() == "the kernel's log\n"
    assert sorted(p.name for p in runs.iterdir()) == [RUN_ID], "the staging folder is gone"


def test_adopt_keeps_an_existing_record_unless_forced(tmp_path):
    runs = tmp_path / "runs"
    record(runs / RUN_ID, note="first")
    with transfer.staging(runs, "pull") as staging:
        dest, new = transfer.adopt_record(record(staging / "a", note="second"), runs, platform="kaggle", links={})
        assert not new and read_run_json(dest)["note"] == "first"
        dest, new = transfer.adopt_record(record(staging / "b", note="third"), runs, platform="kaggle", links={},
                                          force=True)
    assert new and read_run_json(dest)["note"] == "third"


def test_adopt_refuses_a_record_with_a_link_and_writes_nothing_outside(tmp_path):
    runs, outside = tmp_path / "runs", tmp_path / "outside"
    victim = record(outside / "victim")
    before = (victim / RUN_JSON).read_bytes()
    with transfer.staging(runs, "pull") as staging:
        (staging / "bundle" / "runs").mkdir(parents=True)
        os.symlink(victim, staging / "bundle" / "runs" / RUN_ID)  # a downloaded bundle's link to a folder outside
        assert transfer.record_folders(staging / "bundle") == [], "walking never follows the link"
        with pytest.raises(transfer.Refused, match="symbolic link"):
            transfer.check_tree(staging / "bundle", "run bundle")
        planted = record(staging / "r")
        os.symlink(victim / RUN_JSON, planted / "model.h5")
        with pytest.raises(transfer.Refused, match="model.h5: a symbolic link"):
            transfer.adopt_record(planted, runs, platform="codalab", links={"x": 1})
    assert (victim / RUN_JSON).read_bytes() == before and sorted(os.listdir(victim)) == ["history.csv", RUN_JSON]
    assert list(runs.iterdir()) == []


def test_adopt_refuses_a_destination_that_is_a_link(tmp_path):
    runs, outside = tmp_path / "runs", tmp_path / "elsewhere"
    outside.mkdir()
    runs.mkdir()
    os.symlink(outside, runs / RUN_ID)
    with transfer.staging(runs, "pull") as staging, pytest.raises(transfer.Refused, match="not a record folder"):
        transfer.adopt_record(record(staging / "r"), runs, platform="kaggle", links={}, force=True)
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("run_id", ["../escape", ".hidden", "a/b", "x\ny", "", 7])
def test_adopt_refuses_a_run_id_that_is_no_folder_name(tmp_path, run_id):
    runs = tmp_path / "runs"
    with transfer.staging(runs, "pull") as staging, pytest.raises(transfer.Refused, match="run_id"):
        transfer.adopt_record(record(staging / "r", run_id=run_id), runs, platform="kaggle", links={})


def test_special_files_and_oversized_trees_are_refused(tmp_path):
    tree = tmp_path / "t"
    tree.mkdir()
    os.mkfifo(tree / "pipe")
    with pytest.raises(transfer.Refused, match="pipe: not a regular file"):
        transfer.check_tree(tree, "download")
    (tree / "pipe").unlink()
    for i in range(5):
        (tree / f"f{i}").write_bytes(b"x" * 10)
    with pytest.raises(transfer.Refused, match="more than 4 entries"):
        transfer.check_tree(tree, "download", max_files=4)
    with pytest.raises(transfer.Refused, match="more than 40 entries or 40 bytes"):
        transfer.check_tree(tree, "download", max_files=40, max_bytes=40)


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "a/../../x", "ok\n../../x", "a\\b", "a/./b", ""])
def test_server_names_that_could_leave_the_folder_are_refused(name):
    with pytest.raises(transfer.Refused):
        transfer.safe_name(name, "kernel output")
    assert not re.search(transfer.SAFE_NAME_PATTERN, name), "the Kaggle client's filter refuses it too"


@pytest.mark.parametrize("name", ["run.json", "runs/20261201T000000Z-kaggle-x-ab12/model.h5", "mnist-harness.log"])
def test_plain_names_pass_both_checks(name):
    assert str(transfer.safe_name(name, "kernel output")) == name
    assert re.search(transfer.SAFE_NAME_PATTERN, name)


def test_zip_checks_refuse_escaping_names_links_and_bombs(tmp_path):
    def make(name: str, members: dict[str, bytes], link: str | None = None) -> Path:
        path = tmp_path / name
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for member, blob in members.items():
                z.writestr(member, blob)
            if link:
                info = zipfile.ZipInfo(link)
                info.external_attr = 0o120777 << 16
                z.writestr(info, "/etc/passwd")
        return path

    assert transfer.check_zip(make("ok.zip", {"a/b.txt": b"hi"}), "archive") == ["a/b.txt"]
    with pytest.raises(transfer.Refused, match="not a relative path"):
        transfer.check_zip(make("abs.zip", {"/tmp/x": b"hi"}), "archive")
    with pytest.raises(transfer.Refused, match=r"'\.\.'"):
        transfer.check_zip(make("dots.zip", {"../x": b"hi"}), "archive")
    with pytest.raises(transfer.Refused, match="link or device"):
        transfer.check_zip(make("link.zip", {}, link="innocent"), "archive")
    with pytest.raises(transfer.Refused, match="zip bomb"):
        transfer.check_zip(make("bomb.zip", {"zeros": b"\0" * 20_000_000}), "archive")


def test_one_secret_scan_by_name_and_by_value(monkeypatch):
    monkeypatch.setenv("SOME_SERVICE_TOKEN", "tok-1234567890")
    transfer.scan_secrets({"core/spec.py": b"print('hello')", "core/token_rules.py": b"x = 1"}, "a bundle")
    with pytest.raises(UsageError, match=r"core/x.py contains the value of \$SOME_SERVICE_TOKEN"):
        transfer.scan_secrets({"core/x.py": b"KEY = 'tok-1234567890'"}, "a bundle")
    for name in ("adapters/kaggle.json", "notes/api_key.txt", "certs/server.pem", "id_ed25519"):
        with pytest.raises(UsageError, match="named like a credential"):
            transfer.scan_secrets({name: b"{}"}, "a bundle")


def test_secrets_of_the_platforms_config_files_are_scanned_for(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KAGGLE_CONFIG_DIR", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    (tmp_path / ".kaggle").mkdir()
    (tmp_path / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": "u", "key": "kaggle-key-0000"}))
    (tmp_path / ".comet.config").write_text("[comet]\napi_key = comet-key-1111\n")
    (tmp_path / ".config" / "openml").mkdir(parents=True)
    (tmp_path / ".config" / "openml" / "config").write_text("apikey = openml-key-2222\n")
    found = transfer.secret_values({})
    assert sorted(found.values()) == ["comet-key-1111", "kaggle-key-0000", "openml-key-2222"]


def test_harness_files_are_one_set_for_every_bundle():
    files = transfer.harness_files()
    assert {"run.py", "requirements.txt", "core/spec.py", "core/specs/canonical.yaml", "adapters/remote/transfer.py",
            "results/SCHEMA.md"} <= set(files)
    assert not [n for n in files if n.startswith("tests/") or "__pycache__" in n or "/." in n]
