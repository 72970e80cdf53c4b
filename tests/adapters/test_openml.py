"""The OpenML platform offline, with the real openml client reading a cache built here.

Every test gets its own cache (a failed `get_task` deletes its cache folder),
the server is a closed loopback port, and a socket guard fails any test that
tries to reach anything but 127.0.0.1. The run-path tests use a few hundred
generated images, passing their own digests through `ExpectedData`; the
production check (official MNIST digests) is tested on the real MNIST, put
into the same cache layout, and on data it must refuse.
"""
from __future__ import annotations

import argparse
import json
import shutil
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import run as run_py
from adapters.openml import (MNIST_554, ExpectedData, OpenMLError, OpenMLPlatform, build_flow, flow_identity,
                             get_task, holdout_task, mnist_from_dataset, read_saved_run, spec_parameters)
from core import data
from core.data import DataError
from core.errors import UsageError
from core.record import read_run_json
from core.spec import load_spec
from results.loaders import discover
from tests.adapters.openml_cache import stratified_folds, write_dataset, write_task

LOOPBACK = ("127.0.0.1", "::1", "localhost")
N_TRAIN, N_TEST = 240, 60
HOLDOUT_TASK = 99554  # stands for a published official-holdout task on 554


def generated_mnist(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """300 uint8 28x28 images, each digit's images sharing a bright stripe so a model can learn something."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(N_TRAIN + N_TEST) % 10).astype(np.uint8)
    images = rng.integers(0, 64, (len(labels), 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        images[i, 2 + 2 * label: 4 + 2 * label, :] = 255
    return images, labels


IMAGES, LABELS = generated_mnist()
TINY = ExpectedData(N_TRAIN, N_TEST, {
    "x_train": data.array_sha256(IMAGES[:N_TRAIN]), "y_train": data.array_sha256(LABELS[:N_TRAIN]),
    "x_test": data.array_sha256(IMAGES[N_TRAIN:]), "y_test": data.array_sha256(LABELS[N_TRAIN:]),
})


def holdout_split() -> list:
    return [(0, 0, np.arange(N_TRAIN), np.arange(N_TRAIN, N_TRAIN + N_TEST))]


# --- Offline client configuration ---------------------------------------------------------

def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def offline_openml(mp: pytest.MonkeyPatch, root: Path) -> SimpleNamespace:
    """Point the client at `root` and a closed loopback server; refuse every non-loopback connection."""
    import openml

    real_connect = socket.socket.connect

    def connect(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in LOOPBACK:
            raise AssertionError(f"test tried to reach {address}")
        return real_connect(sock, address)

    port = closed_port()
    mp.setattr(socket.socket, "connect", connect)
    mp.setattr(openml.config, "server", f"http://127.0.0.1:{port}/api/v1/xml")
    mp.setattr(openml.config, "apikey", "")
    mp.setattr(openml.config, "connection_n_retries", 1)
    mp.setattr(openml.config, "_root_cache_directory", root)
    mp.delenv("OPENML_APIKEY", raising=False)
    return SimpleNamespace(root=root, server=openml.config.server, dead_url=f"http://127.0.0.1:{port}",
                           cache=Path(openml.config.get_cache_directory()))


@pytest.fixture
def oml(tmp_path, monkeypatch) -> SimpleNamespace:
    """A fresh, empty cache for this test."""
    return offline_openml(monkeypatch, tmp_path / "openml-cache")


@pytest.fixture
def tiny_cache(oml) -> SimpleNamespace:
    """Dataset 554 stand-in (generated, parquet with float64 pixels), task 3573 (10-fold CV) and a holdout task."""
    write_dataset(oml.cache, IMAGES, LABELS, oml.dead_url, pixel_dtype=np.float64)
    write_task(oml.cache, 3573, stratified_folds(LABELS, 10), oml.dead_url)
    write_task(oml.cache, HOLDOUT_TASK, holdout_split(), oml.dead_url, procedure="customholdout")
    return oml


def platform_options(env: SimpleNamespace, runs: Path, **overrides) -> argparse.Namespace:
    options = {"runs_dir": str(runs), "openml_task": 3573, "openml_folds": None, "openml_cache": str(env.root),
               "openml_server": env.server, "openml_publish": True, "deterministic": True}
    return argparse.Namespace(**{**options, **overrides})


def tiny_spec():
    return load_spec("canonical", {"epochs": 1, "batch_size": 32})


def run_platform(tmp: Path, task: int, folds: int | None):
    """One OpenML-platform run on a fresh cache; the patches stay active while the module uses the record."""
    mp = pytest.MonkeyPatch()
    env = offline_openml(mp, tmp / "openml-cache")
    write_dataset(env.cache, IMAGES, LABELS, env.dead_url, pixel_dtype=np.float64)
    write_task(env.cache, 3573, stratified_folds(LABELS, 10), env.dead_url)
    write_task(env.cache, HOLDOUT_TASK, holdout_split(), env.dead_url, procedure="customholdout")
    logs: list[str] = []
    spec = tiny_spec()
    platform = OpenMLPlatform(platform_options(env, tmp / "runs", openml_task=task, openml_folds=folds),
                              log=logs.append, expected=TINY)
    record = platform.run(spec)
    return mp, SimpleNamespace(env=env, record=record, spec=spec, logs=logs, run=read_run_json(record))


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory):
    """Task 3573 (10-fold CV) limited to 2 folds: the native model plus one model per fold."""
    mp, result = run_platform(tmp_path_factory.mktemp("cv"), 3573, folds=2)
    yield result
    mp.undo()


@pytest.fixture(scope="module")
def holdout_run(tmp_path_factory):
    """A task whose only split is the official holdout: the native predictions are reused."""
    mp, result = run_platform(tmp_path_factory.mktemp("holdout"), HOLDOUT_TASK, folds=None)
    yield result
    mp.undo()


# --- Data from the cache -------------------------------------------------------------------

def test_task_and_dataset_come_from_the_cache_offline(tiny_cache):
    task = get_task(3573)
    assert task.class_labels == [str(d) for d in range(10)]
    assert task.get_split_dimensions() == (1, 10, 1)
    mnist, images, labels = mnist_from_dataset(task.get_dataset(), TINY)
    assert mnist.x_train.dtype == np.uint8 and mnist.x_train.shape == (N_TRAIN, 28, 28)
    assert np.array_equal(images, IMAGES) and np.array_equal(labels, LABELS)
    assert np.array_equal(mnist.x_test, IMAGES[N_TRAIN:]) and np.array_equal(mnist.y_test, LABELS[N_TRAIN:])


def test_arff_data_file_reads_the_same(oml):
    import openml

    write_dataset(oml.cache, IMAGES, LABELS, oml.dead_url, data_format="arff")
    mnist, images, _ = mnist_from_dataset(openml.datasets.get_dataset(554), TINY)
    assert np.array_equal(images, IMAGES) and mnist.digest() == data.Mnist(
        IMAGES[:N_TRAIN], LABELS[:N_TRAIN], IMAGES[N_TRAIN:], LABELS[N_TRAIN:], "x").digest()


def test_task_missing_from_cache_and_server_unreachable_is_one_clear_error(oml):
    with pytest.raises(OpenMLError, match="getting OpenML task 3573: cannot reach http://127.0.0.1"):
        get_task(3573)


def test_generated_data_is_refused_by_the_production_check(tiny_cache):
    import openml

    with pytest.raises(DataError, match=r"300 rows, expected 70000 \(60000 training \+ 10000 test images\)"):
        mnist_from_dataset(openml.datasets.get_dataset(554), MNIST_554)


def test_cli_run_on_a_cache_that_is_not_mnist_exits_3_without_a_record(tiny_cache, tmp_path, capsys):
    runs = tmp_path / "runs"
    rc = run_py.main(["--platform", "openml", "--openml-cache", str(tiny_cache.root), "--openml-server",
                      tiny_cache.server, "--runs-dir", str(runs), "--epochs", "1"])
    assert rc == 3
    assert "error: OpenML dataset 554 (mnist_784): 300 rows, expected 70000" in capsys.readouterr().err
    assert not runs.exists() or not any(runs.iterdir())


def test_wrong_columns_are_refused(oml):
    import openml

    write_dataset(oml.cache, IMAGES, LABELS, oml.dead_url, drop_last_pixel=True)
    with pytest.raises(DataError, match="783 feature columns, expected 784 pixels"):
        mnist_from_dataset(openml.datasets.get_dataset(554), TINY)


def test_real_mnist_in_the_openml_cache_passes_the_harness_digests(oml, mnist):
    import openml

    images = np.concatenate([mnist.x_train, mnist.x_test])
    write_dataset(oml.cache, images, np.concatenate([mnist.y_train, mnist.y_test]), oml.dead_url,
                  data_format="parquet")
    mnist, _, _ = mnist_from_dataset(openml.datasets.get_dataset(554), MNIST_554)
    assert mnist.digest() == data.FULL_DIGEST


def test_one_changed_pixel_is_refused_by_the_harness_digests(oml, mnist):
    import openml

    images = np.concatenate([mnist.x_train, mnist.x_test])
    images[123, 14, 14] ^= 1
    write_dataset(oml.cache, images, np.concatenate([mnist.y_train, mnist.y_test]), oml.dead_url,
                  data_format="parquet")
    with pytest.raises(DataError, match="x_train has SHA-256 .* this is not the official MNIST; refusing"):
        mnist_from_dataset(openml.datasets.get_dataset(554), MNIST_554)


# --- The flow ---------------------------------------------------------------------------------

def test_same_spec_gives_the_same_flow(oml):
    from openml.flows import OpenMLFlow
    from openml.flows.functions import assert_flows_equal
    import xmltodict

    first, second = build_flow(tiny_spec()), build_flow(tiny_spec())
    assert first._to_xml() == second._to_xml()
    assert_flows_equal(first, second)
    assert first.name == "mnist_harness.keras.Sequential(Conv2D,MaxPooling2D,Conv2D,MaxPooling2D,Dropout,Flatten,Dense,Dropout,Dense)"
    from importlib import metadata
    for part in (f"keras={metadata.version('keras')}", f"tensorflow={metadata.version('tensorflow')}", "mnist_harness="):
        assert part in first.external_version
    assert first.parameters["optimizer.learning_rate"] == "0.001"
    assert first.parameters["layers.0.filters"] == "32" and first.parameters["seed"] == "42"
    assert set(first.parameters) == set(spec_parameters(tiny_spec()))
    assert "0. Conv2D(activation=relu, filters=32, kernel_size=3, padding=valid)" in first.description
    assert "tensorflow==" in first.dependencies
    assert_flows_equal(first, OpenMLFlow._from_dict(xmltodict.parse(first._to_xml())))


def test_hyperparameters_change_settings_not_identity_and_architecture_changes_the_name(oml):
    base = tiny_spec()
    faster = load_spec("canonical", {"epochs": 1, "batch_size": 32, "optimizer.learning_rate": 0.01})
    wider = load_spec("canonical", {"epochs": 1, "batch_size": 32, "layers.6.units": 256})
    assert flow_identity(faster) == flow_identity(base) and flow_identity(wider) == flow_identity(base)
    assert build_flow(faster).parameters["optimizer.learning_rate"] == "0.01"
    smaller = load_spec("canonical", {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 10,
                                                                        "activation": "softmax"}]})
    assert build_flow(smaller).name == "mnist_harness.keras.Sequential(Flatten,Dense)"
    beta = load_spec("canonical", {"optimizer.beta_1": 0.8})  # one more parameter: a new external version
    assert flow_identity(beta)[0] == flow_identity(base)[0] and flow_identity(beta)[1] != flow_identity(base)[1]


# --- The run on a task --------------------------------------------------------------------------

def test_cv_run_writes_a_complete_record_and_a_saved_openml_run(cv_run):
    run, record = cv_run.run, cv_run.record
    assert run["status"] == "completed" and run["platform"] == "openml"
    assert run["data_digest"] == data.Mnist(IMAGES[:N_TRAIN], LABELS[:N_TRAIN], IMAGES[N_TRAIN:],
                                            LABELS[N_TRAIN:], "x").digest()
    assert run["data"]["n_train"] == N_TRAIN and run["data"]["n_test"] == N_TEST
    assert "OpenML dataset 554" in run["data"]["source"]
    for name in ("model.h5", "predictions.npy", "history.csv", "confusion_matrix.csv"):
        assert (record / name).is_file()
    assert sorted(p.name for p in (record / "openml").iterdir()) == ["description.xml", "flow.xml", "predictions.arff"]
    info = run["environment"]["platform_info"]
    assert info["task_id"] == 3573 and info["folds_limit"] == 2 and info["publish"] is False
    assert "links" not in run  # nothing was published: no API key
    assert any("publish it later with: python run.py push openml" in line for line in cv_run.logs)
    assert sum("split " in line and "train /" in line for line in cv_run.logs) == 2  # two fold models


def test_saved_run_round_trips_through_from_filesystem(cv_run):
    from openml.runs import OpenMLRun

    saved = OpenMLRun.from_filesystem(cv_run.record / "openml", expect_model=False)
    assert saved.task_id == 3573 and saved.flow_id is None
    assert saved.flow.name == build_flow(cv_run.spec).name
    assert saved.flow.parameters == build_flow(cv_run.spec).parameters
    folds = stratified_folds(LABELS, 10)
    expected_rows = [int(r) for _, f, _, test in folds[:2] for r in test]
    assert [int(line[3]) for line in saved.data_content] == expected_rows
    for line in saved.data_content:
        repeat, fold, sample, row, prediction, correct, *confidence = line
        assert correct == str(LABELS[int(row)]) and prediction == str(int(np.argmax(confidence)))
        assert abs(sum(confidence) - 1) < 1e-4
    accuracy = saved.fold_evaluations["predictive_accuracy"][0]
    assert sorted(accuracy) == [0, 1]
    for fold in (0, 1):
        lines = [l for l in saved.data_content if int(l[1]) == fold]
        assert accuracy[fold] == pytest.approx(np.mean([l[4] == l[5] for l in lines]))
    assert saved.fold_evaluations["wall_clock_time_millis_training"][0][1] > 0
    reread = read_saved_run(cv_run.record)  # what a publish uploads
    assert {s["oml:name"] for s in reread.parameter_settings} == set(saved.flow.parameters)
    assert f"spec_hash: {cv_run.spec.hash}" in reread.description_text


def test_holdout_task_reuses_the_native_predictions(holdout_run):
    from openml.runs import OpenMLRun

    saved = OpenMLRun.from_filesystem(holdout_run.record / "openml", expect_model=False)
    native = np.load(holdout_run.record / "predictions.npy")
    assert [int(l[3]) for l in saved.data_content] == list(range(N_TRAIN, N_TRAIN + N_TEST))
    assert [int(l[4]) for l in saved.data_content] == native.tolist()
    assert saved.fold_evaluations["predictive_accuracy"][0][0] == pytest.approx(
        holdout_run.run["metrics"]["test_accuracy"])
    assert not any("split 1/1" in line for line in holdout_run.logs)  # no second training


# --- Back into the comparison ---------------------------------------------------------------------

def test_loader_turns_the_saved_holdout_run_into_a_comparable_record(holdout_run):
    runs, skipped = discover([holdout_run.record / "openml"])
    assert not skipped and len(runs) == 1
    loaded, native = runs[0], holdout_run.run
    assert loaded.loader == "openml" and loaded.run["platform"] == "openml"
    assert loaded.run["spec_hash"] == native["spec_hash"]
    assert loaded.run["metrics"]["test_accuracy"] == pytest.approx(native["metrics"]["test_accuracy"])
    assert loaded.run["predictions_sha256"] == native["predictions_sha256"]
    assert np.array_equal(loaded.predictions(), np.load(holdout_run.record / "predictions.npy"))
    both, _ = discover([holdout_run.record, holdout_run.record / "openml"])
    assert [r.loader for r in both] == ["record", "openml"]


def test_loader_reads_a_cv_run_without_pretending_it_is_a_test_set(cv_run):
    (loaded,), _ = discover([cv_run.record / "openml"])
    assert loaded.run["spec_hash"] == cv_run.run["spec_hash"]
    assert loaded.run["metrics"]["openml_splits"] == 2 and "test_accuracy" not in loaded.run["metrics"]
    assert loaded.predictions() is None and loaded.run["links"]["openml"] == {"task_id": 3573}


# --- Publishing -------------------------------------------------------------------------------------

def test_push_without_a_key_is_refused_and_the_record_is_untouched(holdout_run, capsys):
    before = (holdout_run.record / "run.json").read_text()
    assert run_py.main(["push", "openml", str(holdout_run.record)]) == 1
    assert "error: no OpenML API key: set OPENML_APIKEY" in capsys.readouterr().err
    assert (holdout_run.record / "run.json").read_text() == before


@pytest.fixture
def api_key(monkeypatch):
    """Sets OPENML_APIKEY; the key the adapter copies into the client is removed afterwards."""
    import openml

    monkeypatch.setattr(openml.config, "apikey", openml.config.apikey)
    key = "s3cr3t" * 6
    monkeypatch.setenv("OPENML_APIKEY", key)
    return key


def test_push_of_an_incomplete_run_is_refused_before_any_upload(cv_run, api_key, capsys):
    assert run_py.main(["push", "openml", str(cv_run.record)]) == 1
    err = capsys.readouterr().err
    assert "does not cover task 3573 completely (repeat 0 fold 2: 0 of 30 test rows" in err


def test_push_with_an_unreachable_server_fails_clearly_and_keeps_the_key_out(holdout_run, api_key, capsys):
    before = (holdout_run.record / "run.json").read_text()
    assert run_py.main(["push", "openml", str(holdout_run.record / "openml")]) == 1
    assert f"error: publishing to {holdout_run.env.server}: cannot reach" in capsys.readouterr().err
    assert (holdout_run.record / "run.json").read_text() == before
    for path in holdout_run.record.rglob("*"):
        if path.is_file():
            assert api_key.encode() not in path.read_bytes(), path


def test_holdout_task_upload_names_the_official_test_rows(oml, capsys):
    import xmltodict

    inputs = xmltodict.parse(holdout_task(24)._to_xml())["oml:task_inputs"]["oml:input"]
    by_name = {i["@name"]: i["#text"] for i in inputs}
    assert by_name["source_data"] == "554" and by_name["target_feature"] == "class"
    assert json.loads(by_name["custom_testset"]) == list(range(60000, 70000))
    assert len(by_name["custom_testset"]) < 65535  # fits the server's TEXT column
    assert run_py.main(["push", "openml", "--holdout-task"]) == 1
    assert "creating a task needs an OpenML API key" in capsys.readouterr().err


def test_push_usage_errors(tmp_path, capsys):
    assert run_py.main(["push", "openml"]) == 2
    assert run_py.main(["push", "openml", str(tmp_path)]) == 2
    assert "no saved OpenML run (openml/description.xml)" in capsys.readouterr().err


def test_a_failing_fold_leaves_the_record_completed_with_the_publish_error(tiny_cache, tmp_path):
    """The task's own protocol runs after the record is published: a fold that cannot be trained (here a
    split naming a row past the dataset's end) is noted in links.openml.publish_error, nothing else."""
    n = len(LABELS)
    write_task(tiny_cache.cache, 4242, [(0, 0, np.arange(50), np.array([n + 5]))], tiny_cache.dead_url)
    logs: list[str] = []
    platform = OpenMLPlatform(platform_options(tiny_cache, tmp_path / "runs", openml_task=4242),
                              log=logs.append, expected=TINY)
    record = platform.run(tiny_spec())
    run = read_run_json(record)
    assert run["status"] == "completed" and run["error"] is None
    assert "IndexError" in run["links"]["openml"]["publish_error"]
    assert not (record / "openml").exists()
    assert any("publish failed" in line for line in logs)


def test_folds_option_must_be_positive(tiny_cache, tmp_path):
    platform = OpenMLPlatform(platform_options(tiny_cache, tmp_path, openml_folds=0), expected=TINY)
    with pytest.raises(UsageError, match="--openml-folds must be at least 1"):
        platform.run(tiny_spec())
