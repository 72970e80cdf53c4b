"""Verdicts, noise bands, differences and prediction agreement, on hand-built records (results.synthetic)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import math
from statistics import NormalDist

import numpy as np
import pytest

from core.spec import load_spec
from results.agreement import same_class_counts
from results.compare import SEVERITY, VERDICTS, compare_paths
from results.synthetic import START, synthetic_predictions, write_record

FULL = load_spec("canonical")  # 10,000 test images: 1 image = 0.01 pp


def at(minutes: int) -> dt.datetime:
    return START + dt.timedelta(minutes=minutes)


def moved(base: np.ndarray, labels: np.ndarray, make_wrong: int, make_right: int) -> np.ndarray:
    """base with `make_wrong` right images made wrong and `make_right` wrong ones made right."""
    p = base.copy()
    right, wrong = np.flatnonzero(p == labels), np.flatnonzero(p != labels)
    p[right[:make_wrong]] = (labels[right[:make_wrong]] + 1) % 10
    p[wrong[:make_right]] = labels[wrong[:make_right]]
    return p


def only_pair(folder, tolerance=None):
    cmp = compare_paths([folder], tolerance)
    (group,) = cmp.groups
    (pair,) = group.pairs()
    return group, pair


def test_same_weights_are_identical_and_the_other_platform_is_named(tmp_path, small_spec, y_test):
    write_record(tmp_path, spec=small_spec, platform="local", labels=y_test, when=at(0))
    write_record(tmp_path, spec=small_spec, platform="comet", labels=y_test, when=at(1))  # Comet logs a local run
    group, pair = only_pair(tmp_path)
    assert pair.verdict == "identical"
    assert [d.what for d in pair.differences] == ["platform"]
    assert (pair.agreement.n, pair.agreement.same_class) == (200, 200)
    assert (pair.agreement.a_right_b_wrong, pair.agreement.b_right_a_wrong) == (0, 0)
    assert "platform" in group.differing_rows and "weights_sha256" not in group.differing_rows


def test_equal_predictions_from_other_weights_are_same_predictions(tmp_path, y_test):
    p = synthetic_predictions(y_test, 0.99, "k", 42)
    write_record(tmp_path, spec=FULL, predictions=p, labels=y_test, weights="one", when=at(0))
    write_record(tmp_path, spec=FULL, predictions=p, labels=y_test, weights="two", machine="kaggle-gpu",
                 platform="kaggle", when=at(1))
    _, pair = only_pair(tmp_path)
    assert pair.verdict == "same predictions"
    whats = [d.what for d in pair.differences]
    assert {"platform", "packages.tensorflow", "gpus", "cpu.model"} <= set(whats)
    causes = {d.what: d.cause for d in pair.differences}
    assert causes["packages.kaggle"] == causes["packages.h5py"] == causes["platform"] == "inert"  # cannot move a number
    assert causes["packages.tensorflow"] == causes["gpus"] == "numerics"
    assert pair.agreement.same_class == 10000 and pair.delta_pp == 0


def test_a_small_accuracy_change_is_within_the_default_band_and_counted_both_ways(tmp_path, y_test):
    base = synthetic_predictions(y_test, 0.99, "k", 42)
    other = moved(base, y_test, make_wrong=12, make_right=5)
    write_record(tmp_path, spec=FULL, predictions=base, labels=y_test, weights="a", when=at(0))
    write_record(tmp_path, spec=FULL, predictions=other, labels=y_test, weights="b", when=at(1), deterministic=False,
                 nondeterminism=1)
    group, pair = only_pair(tmp_path)
    assert pair.verdict == "within noise"
    assert pair.delta_pp == pytest.approx(-0.07)
    assert group.band.origin == "default" and group.band.pp == 0.3
    ag = pair.agreement
    assert (ag.n, ag.a_right_b_wrong, ag.b_right_a_wrong) == (10000, 12, 5)
    assert ag.same_class == int((base == other).sum()) == 10000 - 17
    assert [d.what for d in pair.differences] == ["determinism.op_determinism"]


def test_a_large_accuracy_change_is_divergent(tmp_path, y_test):
    base = synthetic_predictions(y_test, 0.99, "k", 42)
    write_record(tmp_path, spec=FULL, predictions=base, labels=y_test, weights="a", when=at(0))
    write_record(tmp_path, spec=FULL, seed=43, predictions=moved(base, y_test, 80, 0), labels=y_test, weights="b",
                 when=at(1))
    group, pair = only_pair(tmp_path)
    assert pair.verdict == "divergent"
    assert pair.delta_pp == pytest.approx(-0.8)
    assert [d.what for d in pair.differences] == ["seed"]
    assert group.band.seeds == [42, 43]  # seeds of one spec are one experiment
    assert {"seed", "spec_hash", "test_accuracy"} <= set(group.differing_rows)


def test_tolerance_widens_the_band_when_seeds_are_too_few(tmp_path, y_test):
    base = synthetic_predictions(y_test, 0.99, "k", 42)
    write_record(tmp_path, spec=FULL, predictions=base, labels=y_test, weights="a", when=at(0))
    write_record(tmp_path, spec=FULL, seed=43, predictions=moved(base, y_test, 40, 0), labels=y_test, weights="b",
                 when=at(1))
    assert only_pair(tmp_path)[1].verdict == "divergent"
    group, pair = only_pair(tmp_path, tolerance=0.5)
    assert pair.verdict == "within noise"
    assert group.band.origin == "tolerance" and "--tolerance" in group.band.describe()


def test_three_seeds_measure_the_band(tmp_path, y_test):
    base = synthetic_predictions(y_test, 0.99, "k", 42)
    wrong_by_seed = {42: 0, 43: 6, 44: 15, 45: 9}
    for i, (seed, n) in enumerate(wrong_by_seed.items()):
        write_record(tmp_path, spec=FULL, seed=seed, predictions=moved(base, y_test, n, 0), labels=y_test,
                     weights=str(seed), when=at(i))
    write_record(tmp_path, spec=FULL, seed=42, predictions=moved(base, y_test, 2, 0), labels=y_test,
                 weights="42-gpu", platform="kaggle", when=at(9))  # a second run of seed 42 counts once, as a mean
    (group,) = compare_paths([tmp_path], 5.0).groups
    accuracy = {s: (base == y_test).mean() * 100 - n / 100 for s, n in wrong_by_seed.items()}
    accuracy[42] = (accuracy[42] + accuracy[42] - 0.02) / 2
    expected = NormalDist().inv_cdf(0.975) * math.sqrt(2) * np.std(list(accuracy.values()), ddof=1)
    assert group.band.origin == "measured"  # --tolerance only stands in when seeds are too few
    assert group.band.seeds == [42, 43, 44, 45]
    assert group.band.pp == pytest.approx(expected)
    for pair in group.pairs():
        if pair.verdict not in ("identical", "same predictions"):
            assert (pair.verdict == "within noise") == (abs(pair.delta_pp) <= group.band.pp)
    assert "measured over 4 seeds" in group.band.describe()


def test_other_specs_are_other_experiments_and_the_data_source_is_not(tmp_path, y_test):
    write_record(tmp_path, spec=FULL, labels=y_test, when=at(0))
    pypi = dataclasses.replace(FULL, data=dataclasses.replace(FULL.data, source="pypi"))
    write_record(tmp_path, spec=pypi, labels=y_test, weights="pypi", when=at(1))
    fast = load_spec("canonical", {"optimizer.learning_rate": 0.01})
    write_record(tmp_path, spec=fast, labels=y_test, when=at(2))
    cmp = compare_paths([tmp_path])
    big, small = cmp.groups
    assert len(big.runs) == 2 and len(small.runs) == 1
    assert pypi.hash != FULL.hash and "data_source" in big.differing_rows
    assert [(d.what, d.a, d.b) for d in small.spec_differences] == [("optimizer.learning_rate", "0.001", "0.01")]
    assert small.n_pairs == 0 and big.n_pairs == 1


def test_failed_runs_stand_in_the_table_without_verdicts(tmp_path, small_spec, y_test):
    write_record(tmp_path, spec=small_spec, labels=y_test, when=at(0))
    write_record(tmp_path, spec=small_spec, labels=y_test, when=at(1), status="failed", weights="x")
    write_record(tmp_path, spec=small_spec, labels=y_test, when=at(2), weights="y", platform="codalab")
    (group,) = compare_paths([tmp_path]).groups
    assert [v.label for v in group.runs] == ["A", "B", "C"]
    assert group.runs[1].excluded.startswith("status failed (RuntimeError")
    assert [(p.a.label, p.b.label) for p in group.pairs()] == [("A", "C")]
    assert "status" in group.differing_rows


def test_predictions_of_different_lengths_are_not_compared_image_by_image(tmp_path, y_test):
    base = synthetic_predictions(y_test, 0.99, "k", 42)
    write_record(tmp_path, spec=FULL, predictions=base, labels=y_test, weights="a", when=at(0))
    write_record(tmp_path, spec=FULL, predictions=base[:9000], labels=y_test, weights="b", when=at(1))
    _, pair = only_pair(tmp_path)
    assert pair.agreement.n is None and pair.agreement.same_class is None
    assert "10000 test predictions and B 9000" in pair.agreement.note


def test_without_test_labels_agreement_is_given_without_right_and_wrong(tmp_path, monkeypatch, y_test):
    base = synthetic_predictions(y_test, 0.99, "k", 42)
    write_record(tmp_path / "r", spec=FULL, predictions=base, labels=y_test, weights="a", when=at(0))
    write_record(tmp_path / "r", spec=FULL, predictions=moved(base, y_test, 3, 0), labels=y_test, weights="b",
                 when=at(1))
    monkeypatch.setenv("MNIST_HARNESS_CACHE", str(tmp_path / "empty-cache"))
    _, pair = only_pair(tmp_path / "r")
    assert pair.agreement.same_class == 9997
    assert pair.agreement.a_right_b_wrong is None
    assert "not in the data cache" in pair.agreement.note


def test_data_that_is_not_official_mnist_gets_no_right_and_wrong(tmp_path, y_test):
    base = synthetic_predictions(y_test, 0.99, "k", 42)
    write_record(tmp_path, spec=FULL, predictions=base, labels=y_test, weights="a", when=at(0))
    write_record(tmp_path, spec=FULL, predictions=base, labels=y_test, weights="b", when=at(1), data_digest="0" * 64)
    _, pair = only_pair(tmp_path)
    assert pair.agreement.same_class == 10000 and pair.agreement.a_right_b_wrong is None
    assert "data digest" in pair.agreement.note
    assert pair.differences[0].what == "data_digest"


def test_same_class_counts_match_a_plain_loop():
    rng = np.random.default_rng(7)
    p = rng.integers(0, 10, (30, 400)).astype(np.uint8)
    p[:, :250] = p[0, :250]  # mostly agreeing runs, as real ones are
    p[4] = p[9]
    expected = np.array([[(a == b).sum() for b in p] for a in p])
    assert (same_class_counts(p) == expected).all()


def test_a_big_experiment_is_judged_pair_by_pair_consistently(tmp_path, y_test):
    from results.synthetic import write_synthetic_records

    write_synthetic_records(tmp_path, 60, labels=y_test, variants=[({}, 0.991)], seeds=4)
    (group,) = compare_paths([tmp_path]).groups
    pairs = group.pairs()
    assert len(pairs) == group.n_pairs == 60 * 59 // 2
    counts = {v: sum(p.verdict == v for p in pairs) for v in VERDICTS}
    assert counts == group.verdict_counts() and counts["identical"] > 0
    for p in pairs[::37]:  # spot checks against the records themselves
        a, b = p.a.loaded.predictions(), p.b.loaded.predictions()
        assert p.agreement.same_class == int((a == b).sum())
        assert p.agreement.a_right_b_wrong == int(((a == y_test) & (b != y_test)).sum())
        same_weights = p.a.run["weights_sha256"] == p.b.run["weights_sha256"]
        assert (p.verdict == "identical") == same_weights
    (fresh,) = compare_paths([tmp_path]).groups
    capped = fresh.pairs(limit=10)  # the loudest first: nondeterminism, then divergence
    assert len(capped) == 10 and capped[0].verdict == max((p.verdict for p in pairs), key=SEVERITY.get)
    assert counts["nondeterministic"] > 0  # op determinism off on both: same seed, machine and numerics, other weights
    by_labels = {(p.a.label, p.b.label): p.agreement for p in pairs}
    assert all(p.agreement == by_labels[p.a.label, p.b.label] for p in capped)


def test_the_experiment_hash_is_the_spec_hash_without_seed_and_data_source():
    import core.spec
    from results.facets import canonical_json, experiment_hash

    d = {"b": [1.5, {"z": None, "a": True}], "a": "é"}
    assert canonical_json(d) == core.spec.canonical_json(d)
    spec = load_spec("canonical", {"seed": 7, "data.source": "pypi"})
    run = {"spec": spec.to_dict(), "spec_hash": spec.hash}
    same = load_spec("canonical", {"seed": 8})
    assert experiment_hash(run) == experiment_hash({"spec": same.to_dict(), "spec_hash": same.hash})
    other = load_spec("canonical", {"epochs": 2})
    assert experiment_hash(run) != experiment_hash({"spec": other.to_dict(), "spec_hash": other.hash})


def test_a_tensorflow_cpu_install_still_names_its_tensorflow_version(tmp_path, small_spec, y_test):
    import json

    a = write_record(tmp_path, spec=small_spec, labels=y_test, when=at(0))
    b = write_record(tmp_path, spec=small_spec, labels=y_test, when=at(1), weights="b")
    run = json.loads((b / "run.json").read_text())
    run["environment"]["packages"]["tensorflow"] = None  # pip's tensorflow-cpu: no "tensorflow" distribution
    run["environment"]["runtime"]["tensorflow"] = "2.18.0"
    (b / "run.json").write_text(json.dumps(run))
    group, pair = only_pair(tmp_path)
    assert [(d.what, d.a, d.b, d.cause) for d in pair.differences] == [
        ("packages.tensorflow", "2.21.0", "2.18.0", "numerics")]
    assert pair.verdict == "same predictions" and a.name in pair.a.run_id
    assert group.runs[1].fields["versions"]["tensorflow"] == "2.18.0"


def test_a_harness_commit_counts_only_when_the_computing_code_changed(tmp_path, small_spec, y_test):
    import json

    def harness(record, **changes):
        run = json.loads((record / "run.json").read_text())
        run["environment"]["harness"].update(changes)
        (record / "run.json").write_text(json.dumps(run))

    write_record(tmp_path, spec=small_spec, labels=y_test, when=at(0))
    b = write_record(tmp_path, spec=small_spec, labels=y_test, when=at(1), weights="b")
    harness(b, commit="1" * 40, dirty=True)  # a README edit: new commit, same computing code
    _, pair = only_pair(tmp_path)
    assert {d.what: d.cause for d in pair.differences} == {"harness.commit": "inert", "harness.dirty": "inert"}
    assert pair.verdict == "nondeterministic"  # other weights, and nothing that computes differs
    harness(b, code_sha256="2" * 64)  # core/experiment.py changed
    _, pair = only_pair(tmp_path)
    assert [d.what for d in pair.by_cause("experiment")] == ["harness.code_sha256"]
    assert pair.verdict == "same predictions"
    harness(b, code_sha256=None)  # an old record without a digest: the commit is all there is
    _, pair = only_pair(tmp_path)
    assert {d.what for d in pair.by_cause("experiment")} == {"harness.code_sha256", "harness.commit", "harness.dirty"}
