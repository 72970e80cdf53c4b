"""One bad input never stops a comparison: every hostile record, archive or folder is a skip with a reason."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from results.compare import compare_paths
from results.loaders import discover
from results.synthetic import write_record
from tests.conftest import ROOT


def copy_good(good: Path, folder: Path, name: str) -> Path:
    target = folder / name
    shutil.copytree(good, target)
    return target


@pytest.fixture
def hostile(tmp_path, y_test):
    """Two good records and one of each kind of hostile input, all in one runs folder."""
    runs = tmp_path / "runs"
    outside = tmp_path / "outside"
    outside.mkdir()
    good = write_record(runs, labels=y_test)
    write_record(runs, labels=y_test, weights="other", platform="kaggle")
    secret = write_record(outside, labels=y_test, platform="openml")  # a record outside runs/
    before = {p: p.stat().st_mtime_ns for p in outside.rglob("*")}
    reasons = {}

    def bad(name: str, reason: str, make) -> None:
        folder = copy_good(good, runs, name)
        make(folder)
        reasons[name] = reason

    bad("a-list", "run.json is not a JSON object", lambda f: (f / "run.json").write_text("[1, 2]"))
    bad("deep", "nested too deeply", lambda f: (f / "run.json").write_text("[" * 100_000 + "]" * 100_000))
    bad("huge", "more than the 67,108,864", lambda f: os.truncate(f / "run.json", 100 << 20))  # sparse, 100 MB
    bad("binary", "corrupt run.json", lambda f: (f / "run.json").write_bytes(b"\xff\xfe\x00garbage"))
    bad("no-keys", "lacks", lambda f: (f / "run.json").write_text("{}"))
    bad("link-run-json", "a symbolic link; not followed",
        lambda f: ((f / "run.json").unlink(), (f / "run.json").symlink_to(secret / "run.json")))
    bad("fifo-run-json", "not a run record",
        lambda f: ((f / "run.json").unlink(), os.mkfifo(f / "run.json")))
    bad("status-list", "unknown status", lambda f: (f / "run.json").write_text(
        json.dumps({**json.loads((good / "run.json").read_text()), "status": ["x"] * 5})))
    (runs / "linked-folder").symlink_to(secret, target_is_directory=True)
    reasons["linked-folder"] = "a symbolic link; not followed"
    bomb = runs / "bomb.zip"  # a "Comet archive" whose messages.json inflates to 200 MB
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("experiment.json", "{}")
        with z.open("messages.json", "w", force_zip64=True) as m:
            for _ in range(200):
                m.write(b" " * (1 << 20))
    reasons["bomb.zip"] = "member messages.json inflates to 209,715,200 bytes"
    notdict = runs / "odd.zip"
    with zipfile.ZipFile(notdict, "w") as z:
        z.writestr("experiment.json", "[]")
        z.writestr("messages.json", '{"type": "metric_msg", "payload": {"metric": 5}}\n')
    reasons["odd.zip"] = "experiment.json is not a JSON object"
    truncated = copy_good(good, runs, "npy-tib")
    (truncated / "predictions.npy").write_bytes(
        b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776,), }"
        + b" " * 46 + b"\n")
    return {"runs": runs, "reasons": reasons, "outside": outside, "before": before, "good": good}


def test_every_hostile_input_is_skipped_with_its_reason_and_the_good_ones_compared(hostile):
    runs, skipped = discover([hostile["runs"]])
    by_name = {s.path.name: s.reason for s in skipped}
    for name, reason in hostile["reasons"].items():
        assert name in by_name, (name, by_name)
        assert reason in by_name[name], (name, by_name[name])
    assert {r.source.name for r in runs} >= {hostile["good"].name, "npy-tib"}
    assert all(str(hostile["outside"]) not in str(r.source) for r in runs)


def test_compare_of_a_hostile_folder_exits_0_and_touches_nothing_outside(hostile, tmp_path):
    out = tmp_path / "report.json"
    p = subprocess.run([sys.executable, "run.py", "compare", str(hostile["runs"]), "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-3000:]
    report = json.loads(out.read_text())
    assert len(report["skipped"]) >= len(hostile["reasons"])
    assert {p: p.stat().st_mtime_ns for p in hostile["outside"].rglob("*")} == hostile["before"]
    comparison = compare_paths([hostile["runs"]])
    npy = next(v for g in comparison.groups for v in g.runs if v.loaded.source.name == "npy-tib")
    assert npy is not None  # its predictions are refused, the record itself still compares


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to drop "
                                                                             "to a user who cannot read a folder")
def test_an_unreadable_folder_is_a_skip_not_a_crash(tmp_path, y_test):
    runs = tmp_path / "runs"
    write_record(runs, labels=y_test)
    locked = runs / "locked"
    locked.mkdir()
    write_record(locked / "inside", labels=y_test)
    os.chmod(locked, 0o000)
    for p in [tmp_path, *tmp_path.parents]:
        if p != Path("/"):
            os.chmod(p, os.stat(p).st_mode | 0o005)  # nobody may walk down to runs/
    for p in runs.rglob("*"):
        if p != locked and locked not in p.parents:
            os.chmod(p, os.stat(p).st_mode | 0o005)
    os.chmod(runs, 0o755)
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "run.py",
                        "compare", str(runs), "--format", "json"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    os.chmod(locked, 0o755)
    assert p.returncode == 0, p.stderr[-3000:]
    report = json.loads(p.stdout)
    [locked_skip] = [s for s in report["skipped"] if s["path"].endswith("locked")]
    assert "unreadable" in locked_skip["reason"] and "Permission denied" in locked_skip["reason"]
    assert len(report["experiments"]) == 1


@pytest.mark.parametrize("kind", ["symlink", "fifo", "device"])
def test_compare_out_refuses_to_replace_a_link_or_special_file(tmp_path, kind, y_test):
    runs = tmp_path / "runs"
    write_record(runs, labels=y_test)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    target = tmp_path / "report.md"
    if kind == "symlink":
        target.symlink_to(victim)
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        target = Path("/dev/null")
    p = subprocess.run([sys.executable, "run.py", "compare", str(runs), "--out", str(target)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "is a link or a special file; not replaced" in p.stderr, p.stderr
    assert victim.read_text() == "keep me"
    assert kind != "symlink" or target.is_symlink()
    assert [x.name for x in tmp_path.iterdir() if x.name.endswith(".tmp")] == []
