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
from core.record import predictions_sha256
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


def test_holdout_run_gets_test_metrics_and_predictions_in_row_order(offline, tmp_path):
    labels, dead, cache = offline
    test_rows = np.arange(40, N)
    write_task(cache, 7, [(0, 0, np.arange(40), test_rows)], dead, procedure="customholdout")
    spec = load_spec("canonical")
    rng = np.random.default_rng(2)
    shuffled = rng.permutation(test_rows)  # OpenML's split files need not be sorted
    rows = saved_run(tmp_path / "saved", get_task(7), spec, [(0, 0, shuffled)], labels, rng)
    (loaded,), skipped = discover([tmp_path / "saved"])
    assert not skipped
    by_row = {int(r[3]): r for r in rows}
    expected = np.array([int(by_row[r][4]) for r in test_rows], dtype=np.uint8)
    assert np.array_equal(loaded.predictions(), expected)
    assert loaded.run["predictions_sha256"] == predictions_sha256(expected)
    truth = labels[test_rows]
    assert loaded.run["metrics"]["test_accuracy"] == pytest.approx((expected == truth).mean())
    p_true = [float(by_row[r][6 + labels[r]]) for r in test_rows]
    assert loaded.run["metrics"]["test_loss"] == pytest.approx(-np.mean(np.log(np.clip(p_true, 1e-7, 1 - 1e-7))))
    assert loaded.run["spec_hash"] == spec.hash and loaded.run["spec"]["name"] == "canonical"
    assert loaded.run["data"]["test_rows"] == [40, N - 1] and loaded.run["seed"] == 42


def test_not_a_harness_flow_or_a_broken_file_is_skipped_with_a_reason(offline, tmp_path):
    labels, dead, cache = offline
    write_task(cache, 7, [(0, 0, np.arange(40), np.arange(40, N))], dead)
    saved_run(tmp_path / "a", get_task(7), load_spec("canonical"), [(0, 0, np.arange(40, N))], labels,
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
