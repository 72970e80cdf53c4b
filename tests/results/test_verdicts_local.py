"""Verdicts and cause classes on REAL tiny records (1 epoch, 300/200 images) that differ in one thing at a time.

One interpreter trains A (seed 42, 2 intra-op threads), B (its rerun), C (seed 43), D (op determinism off)
and E (seed 42, one weight moved by one ulp after training: the weights of a run whose setup did not
reproduce). Thread pools cannot be resized once TensorFlow has started, so F (seed 42, one intra-op thread)
needs a second interpreter; the two run side by side.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from results.compare import compare_paths
from results.render import render_json, render_markdown, render_text

ROOT = Path(__file__).resolve().parents[2]

TRAIN = """
import dataclasses
import sys
import numpy as np
import keras
from core import data
from core.experiment import run_experiment
from core.spec import load_spec

folder, which = sys.argv[1], sys.argv[2]
mnist = data.load_cache()
spec = load_spec("canonical", {"epochs": 1, "data.train_limit": 300, "data.test_limit": 200})
quiet = lambda *_: None


class MoveOneWeight(keras.callbacks.Callback):
    # After training, the last layer's first weight goes up by one ulp: other weights, same everything else.
    def on_train_end(self, logs=None):
        layer = self.model.layers[-1]
        kernel, *rest = layer.get_weights()
        kernel.flat[0] = np.nextafter(kernel.flat[0], np.float32(np.inf))
        layer.set_weights([kernel, *rest])


if which == "main":
    run_experiment(spec, mnist, folder, "local", log=quiet)                               # A
    run_experiment(spec, mnist, folder, "local", log=quiet)                               # B: rerun
    run_experiment(dataclasses.replace(spec, seed=43), mnist, folder, "local", log=quiet)  # C
    run_experiment(spec, mnist, folder, "local", deterministic=False, log=quiet)          # D
    run_experiment(spec, mnist, folder, "local", callbacks=[MoveOneWeight()], log=quiet)  # E
else:
    run_experiment(spec, mnist, folder, "local", log=quiet)                               # F: one thread
"""


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory, mnist) -> Path:
    folder = tmp_path_factory.mktemp("one-difference-each")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", TRAIN, str(folder), which], cwd=ROOT,
                              env={**env, "HARNESS_INTRA_OP_THREADS": threads},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for which, threads in (("main", "2"), ("one-thread", "1"))]
    for p in procs:
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-3000:]
    return folder


@pytest.fixture(scope="module")
def judged(real_runs):
    cmp = compare_paths([real_runs])
    (group,) = cmp.groups
    runs = group.runs
    assert len(runs) == 6 and all(v.excluded is None for v in runs)
    threads = [v.fields["threads"]["intra_op"] for v in runs]
    one = threads.index(1)  # F ran beside the main process: find it by what it recorded
    main = [v for i, v in enumerate(runs) if i != one]
    by_role = dict(zip("ABCDE", main), F=runs[one])
    pairs = {}
    for p in group.pairs():
        pairs[frozenset((p.a.run_id, p.b.run_id))] = p
    return cmp, group, by_role, lambda x, y: pairs[frozenset((by_role[x].run_id, by_role[y].run_id))]


def causes(pair) -> dict[str, list[str]]:
    return {c: [d.what for d in pair.by_cause(c)] for c in ("experiment", "numerics", "inert")}


def test_the_rerun_is_identical_and_nothing_but_inert_facets_differ(judged):
    _, _, runs, pair = judged
    rerun = pair("A", "B")
    assert rerun.verdict == "identical"
    assert causes(rerun)["experiment"] == causes(rerun)["numerics"] == []
    assert rerun.test.b == rerun.test.c == 0 and rerun.test.p == 1.0
    assert runs["A"].run["environment"]["harness"]["code_sha256"]  # the code digest is recorded
    assert "env.TF_CLI_CONFIG_FILE" not in runs["A"].facets


def test_another_seed_is_the_experiment_with_a_test_and_an_interval(judged):
    _, group, _, pair = judged
    other = pair("A", "C")
    assert causes(other)["experiment"] == ["seed"] and causes(other)["numerics"] == []
    assert other.verdict in ("within noise", "divergent")
    b, c = other.test.b, other.test.c
    assert b + c > 0 and (c - b) / 2 == pytest.approx(other.delta_pp)  # 200 images: 1 image = 0.5 pp
    low, high = other.ci_pp
    assert low <= other.delta_pp <= high
    # 200 images: no band of 0.3 pp decides alone; the verdict follows McNemar's test
    assert (other.verdict == "divergent") == (other.test.p < 0.05 and abs(other.delta_pp) > group.band.pp)
    assert group.band.assumed and "`python run.py repeat --seeds 8 --seed 44 --spec canonical --test-limit 200 " \
        "--train-limit 300 --epochs 1` measures it" in group.band.describe()


def test_determinism_off_is_a_numerics_cause_never_nondeterminism(judged):
    _, _, runs, pair = judged
    off = pair("A", "D")
    assert causes(off)["numerics"] == ["determinism.op_determinism"] and causes(off)["experiment"] == []
    same = runs["A"].fields["weights_sha256"] == runs["D"].fields["weights_sha256"]
    assert off.verdict == ("identical" if same else off.verdict) and off.verdict != "nondeterministic"
    assert "same seed; numerics differ: op determinism on → off" in " ".join(render_text(judged[0]).split())


def test_one_thread_against_two_is_a_numerics_cause(judged):
    _, _, runs, pair = judged
    threads = pair("A", "F")
    assert causes(threads)["numerics"] == ["determinism.threads.intra_op"]
    assert causes(threads)["experiment"] == []
    same = runs["A"].fields["weights_sha256"] == runs["F"].fields["weights_sha256"]
    assert (threads.verdict == "identical") == same and threads.verdict != "nondeterministic"


def test_other_weights_from_the_same_setup_are_nondeterminism_shown_first_everywhere(judged):
    cmp, group, runs, pair = judged
    moved = pair("A", "E")
    assert runs["A"].fields["weights_sha256"] != runs["E"].fields["weights_sha256"]
    assert moved.verdict == "nondeterministic"
    assert causes(moved)["experiment"] == causes(moved)["numerics"] == []
    assert pair("B", "E").verdict == "nondeterministic"  # the rerun of A too
    assert pair("C", "E").verdict != "nondeterministic"  # another seed explains other weights
    text = render_text(cmp)
    assert text.startswith("!! NONDETERMINISM: 2 pairs")
    assert f"{runs['A'].run_id} vs {runs['E'].run_id}" in text and "equal: seed 42, data " in text
    md = render_markdown(cmp)
    assert md.split("\n")[2].startswith("> **⚠ NONDETERMINISM: 2 pairs")
    doc = json.loads(render_json(cmp))
    flagged = {frozenset((n["run_a"], n["run_b"])) for n in doc["nondeterminism"]}
    assert frozenset((runs["A"].run_id, runs["E"].run_id)) in flagged and len(flagged) == 2
    assert doc["nondeterminism"][0]["equal"]["seed"] == "42"
    assert doc["verdict_counts"]["nondeterministic"] == 2
    from results.html import render_html

    html = render_html(cmp)
    assert html.index("class=alarm") < html.index("<section")  # before every experiment
