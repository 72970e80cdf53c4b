import json
import os

import numpy as np
import pytest

from core import record


def test_run_ids_sort_by_time_and_name_platform_and_spec():
    import datetime as dt
    t0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    a = record.new_run_id("local", "ab" * 32, t0)
    b = record.new_run_id("kaggle", "cd" * 32, t0 + dt.timedelta(seconds=1))
    assert a.startswith("20260102T030405Z-local-abababab-")
    assert sorted([b, a]) == [a, b]


def test_publish_is_one_rename_and_partial_is_hidden(tmp_path):
    w = record.RecordWriter(tmp_path, "run1")
    w.path("history.csv").write_text("epoch\n")
    assert [p.name for p in tmp_path.iterdir()] == [".partial-run1"]
    assert not (tmp_path / "run1").exists()
    final = w.publish({"status": "completed", "x": 1})
    assert final == tmp_path / "run1" and not w.partial.exists()
    assert json.loads((final / "run.json").read_text()) == {"status": "completed", "x": 1}
    assert (final / "history.csv").exists()


def test_publish_refuses_unknown_status(tmp_path):
    w = record.RecordWriter(tmp_path, "run1")
    with pytest.raises(ValueError):
        w.publish({"status": "done"})
    assert not (tmp_path / "run1").exists()


def test_update_run_json_merges_links_atomically(tmp_path):
    w = record.RecordWriter(tmp_path, "r")
    final = w.publish({"status": "completed", "links": {"a": {"id": 1}}})
    record.update_run_json(final, {"links": {"b": {"id": 2}}})
    assert record.read_run_json(final)["links"] == {"a": {"id": 1}, "b": {"id": 2}}
    assert sorted(os.listdir(final)) == ["run.json"]  # no temporary file left behind


def test_hashes_are_content_hashes():
    w = [np.ones((2, 3), np.float32), np.zeros(3, np.float32)]
    assert record.weights_sha256(w) == record.weights_sha256([x.copy() for x in w])
    assert record.weights_sha256(w) != record.weights_sha256([w[0].reshape(3, 2), w[1]])  # shape counts
    w2 = [w[0].copy(), w[1].copy()]
    w2[1][0] = np.nextafter(np.float32(0), np.float32(1))  # one ulp
    assert record.weights_sha256(w) != record.weights_sha256(w2)
    p = np.array([1, 2, 3], dtype=np.int64)
    assert record.predictions_sha256(p) == record.predictions_sha256(p.astype(np.uint8))


def test_json_refuses_nan(tmp_path):
    with pytest.raises(ValueError):
        record.write_json(tmp_path / "x.json", {"v": float("nan")})
