"""Every kind of path that is not a readable record is skipped with its reason, never a traceback."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from core.record import SCHEMA_VERSION
from results.loaders import LOADERS, Loader, discover, registered_loaders
from results.synthetic import write_partial, write_record

ROOT = Path(__file__).resolve().parents[2]


def broken_records(folder: Path, y_test) -> dict[str, str]:
    """One good record and one folder per skip reason; returns name -> the reason's telling words."""
    write_record(folder, labels=y_test)
    (folder / "notes").mkdir()
    (folder / "notes" / "readme.txt").write_text("not a run\n")
    corrupt = write_record(folder, labels=y_test, weights="corrupt", platform="kaggle")
    (corrupt / "run.json").write_text('{"schema_version": 1, "run_id": ')
    newer = write_record(folder, labels=y_test, weights="newer", platform="codalab")
    run = json.loads((newer / "run.json").read_text())
    (newer / "run.json").write_text(json.dumps({**run, "schema_version": SCHEMA_VERSION + 1}))
    lacking = write_record(folder, labels=y_test, weights="lacking", platform="openml")
    (lacking / "run.json").write_text(json.dumps({"schema_version": 1, "run_id": "x"}))
    partial = write_partial(folder)
    return {"notes": "not a run record", corrupt.name: "corrupt run.json", newer.name: "newer than this harness",
            lacking.name: "lacks platform, status, spec, spec_hash", partial.name: "incomplete"}


def test_each_skip_reason_is_listed_and_the_good_record_still_loads(tmp_path, y_test):
    expected = broken_records(tmp_path, y_test)
    runs, skipped = discover([tmp_path, tmp_path / "no-such-folder"])
    assert len(runs) == 1 and runs[0].loader == "record"
    reasons = {s.path.name: s.reason for s in skipped}
    assert reasons.pop("no-such-folder") == "no such file or folder"
    assert set(reasons) == set(expected)
    for name, words in expected.items():
        assert words in reasons[name], (name, reasons[name])


def test_compare_lists_skipped_paths_without_a_traceback(tmp_path, y_test):
    expected = broken_records(tmp_path, y_test)
    p = subprocess.run([sys.executable, "run.py", "compare", str(tmp_path), str(tmp_path / "missing")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stdout + p.stderr
    assert f"skipped ({len(expected) + 1})" in p.stdout
    for words in list(expected.values()) + ["no such file or folder"]:
        assert words in p.stdout


def test_compare_of_nothing_says_so(tmp_path):
    p = subprocess.run([sys.executable, "run.py", "compare", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0 and "no run records found" in p.stdout
    assert "not a run record" in p.stdout


def test_loaders_are_registered_abcs():
    loaders = registered_loaders()
    assert len(loaders) == len(LOADERS.names()) and all(isinstance(l, Loader) for l in loaders)
    assert loaders[0].recognizes(ROOT) is False  # the repository root is not a record
