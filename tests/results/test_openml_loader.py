"""results/loaders/openml.py: saved OpenML runs of the harness as run records, without TensorFlow.

The saved runs here are written by the adapter's `save_run` (the client's
`OpenMLRun.to_filesystem`) from made-up probabilities, so no model is trained.
"""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from adapters.openml import build_flow, get_task, prediction_rows, save_run
from core.spec import load_spec
from results.loaders import discover
from results.loaders.openml import LoaderError, load_openml_run, spec_from_flow
from tests.adapters.openml_cache import write_dataset, write_task

ROOT = Path(__file__).resolve().parents[2]
N = 50


@pytest.fixture
def offline(tmp_path, monkeypatch):
    import openml

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(openml.config, "server", f"http://127.0.0.1:{port}/api/v1/xml")
    monkeypatch.setattr(openml.config, "connection_n_retries", 1)
    monkeypatch.setattr(openml.config, "_root_cache_directory", tmp_path / "cache")
    cache = Path(openml.config.get_cache_directory())
    rng = np.random.default_rng(1)
    labels = (np.arange(N) % 10).astype(np.uint8)
    write_dataset(cache, rng.integers(0, 256, (N, 28, 28), dtype=np.uint8), labels, f"http://127.0.0.1:{port}")
    return labels, f"http://127.0.0.1:{port}", cache


def saved_run(folder: Path, task, spec, splits, labels, rng) -> list[list]:
    rows = []
    for repeat, fold, test in splits:
        probabilities = rng.dirichlet(np.ones(10), size=len(test))
        rows += prediction_rows(task, repeat, fold, test, probabilities, labels[test])
    save_run(folder, task, build_flow(spec), spec, rows, {"predictive_accuracy": {0: {0: 0.5}}},
             f"mnist-harness run test; spec_name: {spec.name}; spec_hash: {spec.hash}")
    return rows


@pytest.mark.parametrize("overrides", [
    {},
    {"layers.0.kernel_size": [5, 3], "optimizer.beta_1": 0.8, "data.train_limit": 300, "data.test_limit": 200},
    {"optimizer": {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": True}, "split": 1.0},
])
def test_spec_and_hash_are_rebuilt_from_the_flow(overrides):
    spec = load_spec("canonical", overrides)
    flow = build_flow(spec)
    assert spec_from_flow(flow.name, flow.parameters) == spec.experiment_dict()


def four_folds(n: int) -> list:
    """4-fold cross-validation splits (the server's procedure 25) of n rows, row r in fold r % 4."""
    rows = np.arange(n)
    return [(0, f, rows[rows % 4 != f], rows[rows % 4 == f]) for f in range(4)]


def test_cv_run_gets_per_split_accuracies_and_never_a_test_set_accuracy(offline, tmp_path):
    labels, dead, cache = offline
    splits = four_folds(N)
    write_task(cache, 7, splits, dead)
    spec = load_spec("canonical")
    rng = np.random.default_rng(2)
    rows = saved_run(tmp_path / "saved", get_task(7), spec, [(r, f, test) for r, f, _, test in splits], labels, rng)
    (loaded,), skipped = discover([tmp_path / "saved"])
    assert not skipped
    per_split = {f: np.mean([r[4] == r[5] for r in rows if r[1] == f]) for f in range(4)}
    assert loaded.run["openml_split_accuracy"] == pytest.approx({f"repeat 0 fold {f}": a for f, a in per_split.items()})
    assert loaded.run["metrics"]["openml_predictive_accuracy"] == pytest.approx(np.mean(list(per_split.values())))
    assert loaded.run["metrics"]["openml_splits"] == 4 and "test_accuracy" not in loaded.run["metrics"]
    assert loaded.predictions() is None and loaded.run["predictions_sha256"] is None
    assert loaded.run["spec_hash"] == spec.hash and loaded.run["spec"]["name"] == "canonical"
    assert loaded.run["seed"] == 42 and loaded.run["data"]["n_test"] == N


def test_one_fold_of_four_reads_the_same_way(offline, tmp_path):
    labels, dead, cache = offline
    splits = four_folds(N)
    write_task(cache, 7, splits, dead)
    _, fold, _, test = splits[1]
    saved_run(tmp_path / "one", get_task(7), load_spec("canonical"), [(0, fold, test)], labels,
              np.random.default_rng(4))
    (loaded,), _ = discover([tmp_path / "one"])
    assert loaded.run["metrics"]["openml_splits"] == 1 and "test_accuracy" not in loaded.run["metrics"]
    assert list(loaded.run["openml_split_accuracy"]) == ["repeat 0 fold 1"]


def test_not_a_harness_flow_or_a_broken_file_is_skipped_with_a_reason(offline, tmp_path):
    labels, dead, cache = offline
    splits = four_folds(N)
    write_task(cache, 7, splits, dead)
    saved_run(tmp_path / "a", get_task(7), load_spec("canonical"), [(0, 0, splits[0][3])], labels,
              np.random.default_rng(3))
    flow_xml = tmp_path / "a" / "flow.xml"
    flow_xml.write_text(flow_xml.read_text().replace("mnist_harness.keras.Sequential(", "sklearn.Pipeline("))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "description.xml").write_text("<oml:run")
    (tmp_path / "b" / "predictions.arff").write_text("")
    runs, skipped = discover([tmp_path / "a", tmp_path / "b"])
    assert not runs
    reasons = {s.path.name: s.reason for s in skipped}
    assert "was not made by the mnist harness" in reasons["a"]
    assert reasons["b"].startswith("not a readable saved OpenML run")


def test_run_id_from_an_unreachable_server_is_a_loader_error(offline):
    with pytest.raises(LoaderError, match="OpenML run 123 from http://127.0.0.1"):
        load_openml_run(123)


def test_loader_imports_neither_tensorflow_nor_the_openml_client():
    code = ("import sys, results.loaders.openml as m; "
            "bad = [x for x in ('tensorflow', 'keras', 'openml', 'adapters') if x in sys.modules]; "
            "sys.exit(str(bad) if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
