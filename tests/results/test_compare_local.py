"""Records the local platform makes on tiny real data: `repeat` runs seeds, a rerun of a seed is identical."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from results.compare import compare_paths

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--epochs", "1", "--train-limit", "300", "--test-limit", "200"]


@pytest.fixture(scope="module")
def local_runs(tmp_path_factory) -> Path:
    """`run.py repeat --seeds 2` (seeds 42 and 43), then `run.py --seed 42` again: one interpreter, one TF import."""
    folder = tmp_path_factory.mktemp("local-runs")
    tiny = [*TINY, "--runs-dir", str(folder)]
    code = (f"import run; assert run.main(['repeat', '--seeds', '2', *{tiny!r}]) == 0; "
            f"assert run.main(['--seed', '42', *{tiny!r}]) == 0")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "compare them: python run.py compare" in p.stdout
    return folder


def test_a_rerun_of_the_same_seed_is_identical_and_another_seed_is_not(local_runs):
    (group,) = compare_paths([local_runs]).groups
    a, b, c = group.runs
    assert [v.fields["seed"] for v in (a, b, c)] == [42, 43, 42]
    assert a.fields["spec_hash"] != b.fields["spec_hash"]  # the seed is in the spec hash, yet one experiment
    pairs = {(p.a.label, p.b.label): p for p in group.pairs()}
    rerun = pairs["A", "C"]
    assert rerun.verdict == "identical"
    assert "seed" not in [d.what for d in rerun.differences]
    assert rerun.agreement.same_class == rerun.agreement.n == 200
    for key in (("A", "B"), ("B", "C")):
        other_seed = pairs[key]
        assert other_seed.verdict != "identical"
        assert other_seed.differences[0].what == "seed" and other_seed.differences[0].cause == "experiment"
        ag = other_seed.agreement
        assert ag.n == 200 and ag.a_right_b_wrong is not None
        # the right/wrong counts and the accuracies come from different files; they must tell the same story
        assert ag.b_right_a_wrong - ag.a_right_b_wrong == pytest.approx(other_seed.delta_pp * 2)
    assert group.band.origin == "default" and group.band.seeds == [42, 43]


def test_compare_over_real_records_runs_without_tensorflow(local_runs):
    code = ("import sys, run; rc = run.main(['compare', sys.argv[1]]); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow imported'; sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code, str(local_runs)], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    words = " ".join(p.stdout.split())
    assert "A–C same seed; same numerics identical: the same weights, bit for bit" in words, p.stdout
