"""The hand-built records that tests and the 1,000-record benchmark use are records compare reads like real ones."""
from __future__ import annotations

import json

from results.compare import compare_paths
from results.synthetic import write_synthetic_records


def test_synthetic_records_cover_specs_seeds_and_platforms(tmp_path, y_test):
    paths = write_synthetic_records(tmp_path, 40, labels=y_test)
    assert len(paths) == len({p.name for p in paths}) == 40
    for p in paths:
        assert {f.name for f in p.iterdir()} == {"run.json", "predictions.npy", "history.csv", "confusion_matrix.csv"}
    cmp = compare_paths([tmp_path])
    assert cmp.n_runs == 40 and not cmp.skipped
    assert len(cmp.groups) >= 3
    assert len({v.fields["platform"] for g in cmp.groups for v in g.runs}) >= 4
    assert cmp.groups[0].band.origin == "measured"
    for g in cmp.groups:  # what the record says agrees with its files
        for v in g.runs:
            p = v.loaded.predictions()
            assert v.accuracy == (p == y_test).mean()
            assert len(json.loads((v.loaded.source / "run.json").read_text())["history"]["accuracy"]) == \
                v.run["spec"]["epochs"]


def test_the_same_arguments_write_the_same_records(tmp_path, y_test):
    a = write_synthetic_records(tmp_path / "a", 12, labels=y_test, seed=3)
    b = write_synthetic_records(tmp_path / "b", 12, labels=y_test, seed=3)
    assert [p.name for p in a] == [p.name for p in b]
    assert all((x / "predictions.npy").read_bytes() == (y / "predictions.npy").read_bytes() for x, y in zip(a, b))
