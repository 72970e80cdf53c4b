"""The OpenML platform offline, with the real openml client reading a cache built here.

Every test gets its own cache (a failed `get_task` deletes its cache folder),
the server is a closed loopback port or a loopback upload server
(`openml_cache.UploadServer`) that keeps what the client posts, and a socket
guard fails any test that tries to reach anything but 127.0.0.1. The run-path tests use a few hundred
generated images, passing their own digests through `ExpectedData`; the
production check (official MNIST digests) is tested on the real MNIST, put
into the same cache layout, and on data it must refuse.
"""
from __future__ import annotations

import argparse
import re
import shutil
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import run as run_py
from adapters import openml_schema as schema
from adapters.openml import (MNIST_554, ExpectedData, OpenMLError, OpenMLPlatform, build_flow, confidence_values,
                             flow_identity, get_task, mnist_from_dataset, prediction_rows, run_files, save_run,
                             spec_parameters, task_splits)
from adapters.remote.openml import read_saved_run
from core import data
from core.data import DataError
from core.errors import UsageError
from core.record import read_run_json
from core.spec import load_spec
from results.loaders import discover
from tests.adapters.openml_cache import UploadServer, stratified_folds, write_dataset, write_task

LOOPBACK = ("127.0.0.1", "::1", "localhost")
N_TRAIN, N_TEST = 240, 60
SPECS = Path(__file__).resolve().parents[2] / "core" / "specs"


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


# --- Offline client configuration ---------------------------------------------------------

def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def offline_openml(mp: pytest.MonkeyPatch, root: Path, server: str | None = None) -> SimpleNamespace:
    """Point the client at `root` and `server` (default: a closed loopback port); refuse every non-loopback connection."""
    import openml

    real_connect = socket.socket.connect

    def connect(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in LOOPBACK:
            raise AssertionError(f"test tried to reach {address}")
        return real_connect(sock, address)

    port = closed_port()
    mp.setattr(socket.socket, "connect", connect)
    mp.setattr(openml.config, "server", server or f"http://127.0.0.1:{port}/api/v1/xml")
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
    """Dataset 554 stand-in (generated, parquet with float64 pixels) and task 3573 (10-fold CV)."""
    write_dataset(oml.cache, IMAGES, LABELS, oml.dead_url, pixel_dtype=np.float64)
    write_task(oml.cache, 3573, stratified_folds(LABELS, 10), oml.dead_url)
    return oml


def platform_options(env: SimpleNamespace, runs: Path, **overrides) -> argparse.Namespace:
    options = {"runs_dir": str(runs), "openml_task": 3573, "openml_folds": None, "openml_cache": str(env.root),
               "openml_server": env.server, "openml_publish": True, "deterministic": True}
    return argparse.Namespace(**{**options, **overrides})


def tiny_spec(**overrides):
    return load_spec("canonical", {"epochs": 1, "batch_size": 32, **overrides})


def run_platform(tmp: Path, task: int, folds: int | None, server: str | None = None, key: str | None = None,
                 **spec_overrides):
    """One OpenML-platform run on a fresh cache; the patches stay active while the module uses the record."""
    import openml

    mp = pytest.MonkeyPatch()
    env = offline_openml(mp, tmp / "openml-cache", server)
    if key:
        mp.setenv("OPENML_APIKEY", key)
        mp.setattr(openml.config, "apikey", "")  # the adapter copies the key in; undone afterwards
    write_dataset(env.cache, IMAGES, LABELS, env.dead_url, pixel_dtype=np.float64)
    write_task(env.cache, 3573, stratified_folds(LABELS, 10), env.dead_url)
    write_task(env.cache, 3574, stratified_folds(LABELS, 4), env.dead_url)  # 4-fold CV (procedure 25)
    logs: list[str] = []
    spec = tiny_spec(**spec_overrides)
    platform = OpenMLPlatform(platform_options(env, tmp / "runs", openml_task=task, openml_folds=folds),
                              log=logs.append, expected=TINY)
    record = platform.run(spec)
    if key:  # the client keeps the key the adapter gave it; later tests of the module run without one
        mp.delenv("OPENML_APIKEY")
        mp.setattr(openml.config, "apikey", "")
    return mp, SimpleNamespace(env=env, record=record, spec=spec, logs=logs, run=read_run_json(record))


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory):
    """Task 3573 (10-fold CV) limited to 2 folds: the native model, then one model per fold."""
    mp, result = run_platform(tmp_path_factory.mktemp("cv"), 3573, folds=2)
    yield result
    mp.undo()


@pytest.fixture(scope="module")
def published_run(tmp_path_factory):
    """A complete 4-fold run published in-process to the loopback upload server."""
    server = UploadServer()
    mp, result = run_platform(tmp_path_factory.mktemp("published"), 3574, folds=None, server=server.url,
                              key="k3y" * 10)
    result.server = server
    yield result
    mp.undo()
    server.close()


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
    assert "Conv2D(activation=relu,filters=32,kernel_size=3,padding=valid) MaxPooling2D(" in first.description
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




# --- What the server accepts: every preset, a deep spec, and the rules one by one -----------------

def deep_spec(n_layers: int = 20):
    """A generated spec of `n_layers` layers: Conv2D/BatchNormalization/Activation blocks, Flatten, Dense."""
    layers = []
    for i in range((n_layers + 1) // 3):
        layers += [{"type": "Conv2D", "filters": 8 + i, "kernel_size": 3, "padding": "same"},
                   {"type": "BatchNormalization"}, {"type": "Activation", "activation": "relu"}]
    layers = layers[: n_layers - 2] + [{"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}]
    assert len(layers) == n_layers
    return load_spec("canonical", {"name": f"deep-{n_layers}", "layers": layers})


PRESETS = sorted(p.stem for p in SPECS.glob("*.yaml"))


def fake_run(task, spec, splits, rng) -> list[list]:
    """Prediction lines of made-up probabilities (no training) for the given (repeat, fold, _, test) splits."""
    rows = []
    for repeat, fold, _, test in splits:
        probabilities = rng.dirichlet(np.ones(10) * 0.1, size=len(test)).astype(np.float32)
        rows += prediction_rows(task, repeat, fold, test, probabilities, LABELS[test])
    return rows


@pytest.mark.parametrize("spec", [*PRESETS, "deep-20", "deep-62", "deep-400"])
def test_every_preset_and_a_20_layer_spec_give_a_flow_and_run_the_server_accepts(spec, tiny_cache, tmp_path):
    from openml.runs import OpenMLRun

    spec = deep_spec(int(spec[5:])) if spec.startswith("deep-") else load_spec(spec)
    flow = build_flow(spec)
    schema.check_flow_xml(flow._to_xml())  # also run by save_run; here on its own, for every preset
    assert len(flow.description) <= 1024 and len(flow.name) <= 1012 and len(flow.external_version) <= 128
    task = get_task(3573)
    splits = task_splits(task)
    run = OpenMLRun(task_id=3573, flow_id=None, dataset_id=554, flow=flow, model=spec, parameter_settings=[],
                    data_content=fake_run(task, spec, splits, np.random.default_rng(0)),
                    fold_evaluations={"predictive_accuracy": {0: {f: 0.5 for f in range(10)}}},
                    tags=["mnist_harness", f"spec_{spec.short_hash}"], setup_string=f"mnist_harness spec_hash={spec.hash}")
    published = run_files(run, task, flow_id=4242)  # checked with a flow id, as posted
    schema.check_run_xml(published["description.xml"], folds=10, repeats=1)
    assert "<oml:flow_id>4242</oml:flow_id>" in published["description.xml"]
    sizes = save_run(tmp_path / "saved", task, flow, spec, run.data_content,
                     {"predictive_accuracy": {0: {0: 0.5}}}, "test")
    assert sorted(sizes) == ["description.xml", "flow.xml", "predictions.arff"]


@pytest.mark.parametrize("n_layers, listing", [
    (20, "Conv2D(filters=8,kernel_size=3,padding=same) BatchNormalization() Activation(activation=relu)"),
    (62, "62 layers (their types are in the flow name)"),  # the argument and type listings do not fit
])
def test_deep_specs_keep_every_layer_in_the_name_and_every_key_in_the_parameters(n_layers, listing):
    spec = deep_spec(n_layers)
    flow = build_flow(spec)
    assert flow.name.count(",") == n_layers - 1
    assert set(flow.parameters) == set(spec_parameters(spec)) and f"layers.{n_layers - 5}.filters" in flow.parameters
    assert listing in flow.description


def test_a_spec_too_deep_for_the_name_is_named_by_its_layer_digest():
    flow = build_flow(deep_spec(400))
    assert len(flow.name) < 100 and flow.name.startswith("mnist_harness.keras.Sequential.")
    schema.check_flow_xml(flow._to_xml())


def test_bn_cnn_description_fits_now():
    flow = build_flow(load_spec("bn-cnn"))
    assert len(flow.description) <= 1024
    assert "BatchNormalization() Activation(activation=relu)" in flow.description  # layers with their arguments


def test_a_spec_value_longer_than_the_server_allows_is_one_error_naming_it():
    flow = build_flow(load_spec("canonical", {"data.path": "x" * 3000}))
    with pytest.raises(schema.SchemaError, match=r"oml:parameter\[name=data.path\]/oml:default_value is 3002 "
                                                 r"characters; oml:basic_latin2048 allows at most 2048 "
                                                 r"\(openml_OS/views/pages/api_new/v1/xsd/openml.implementation"):
        schema.check_flow_xml(flow._to_xml())


@pytest.mark.parametrize("edit, message", [
    (lambda x: x.replace("<oml:description>Keras", "<oml:description>" + "d" * 1100 + "Keras"),
     r"oml:flow/oml:description is \d+ characters; oml:basic_latin1024 allows at most 1024"),
    (lambda x: x.replace("mnist_harness.keras.Sequential(", "mnist harness(", 1),
     r"oml:flow/oml:name has ' ', which oml:casual_string1024 does not allow"),
    (lambda x: x.replace("<oml:language>English</oml:language>", "") .replace(
        "</oml:dependencies>", "</oml:dependencies>\n\t<oml:language>English</oml:language>"),
     r"oml:language comes after elements the schema puts after it"),
    (lambda x: x.replace("<oml:description>Keras", "<oml:description>Kéras"),
     r"has 'é', which oml:basic_latin1024 does not allow"),
    (lambda x: x.replace("mnist_harness.keras.Sequential(", "mnist_harness.keras.Sequential(" + "A," * 457, 1),
     r"oml:name is 1021 characters; the server stores name\(version\) in implementation.fullName varchar\(1024\)"),
])
def test_flow_rule_violations_name_the_field_and_the_limit(edit, message):
    with pytest.raises(schema.SchemaError, match=message):
        schema.check_flow_xml(edit(build_flow(tiny_spec())._to_xml()))


@pytest.mark.parametrize("edit, message", [
    (lambda x: re.sub(r"(predictive_accuracy</oml:name>\s*<oml:value>)0.5", r"\g<1>nan", x),
     r"oml:evaluation\[name=predictive_accuracy\]/oml:value is 'nan', not an xs:double"),
    (lambda x: x.replace("<oml:flow_id>7</oml:flow_id>", ""), r"oml:run: oml:flow_id is required"),
    (lambda x: x.replace("<oml:name>layers.0.filters</oml:name>", "<oml:name>layers.0.filters=1</oml:name>"),
     r"has '=', which oml:casual_string1024 does not allow"),
    (lambda x: x.replace('fold="0"', 'fold="10"', 1), r"for fold 10: the task has 10 \(folds 0-9\)"),
    (lambda x: x.replace("<oml:name>predictive_accuracy</oml:name>", "<oml:name>accuracy</oml:name>", 1),
     r"run measure 'accuracy' is not one the harness reports"),
])
def test_run_rule_violations_name_the_field_and_the_limit(tiny_cache, edit, message):
    from openml.runs import OpenMLRun

    spec = tiny_spec()
    task = get_task(3573)
    run = OpenMLRun(task_id=3573, flow_id=None, dataset_id=554, flow=build_flow(spec), parameter_settings=[],
                    data_content=fake_run(task, spec, task_splits(task), np.random.default_rng(1)),
                    fold_evaluations={"predictive_accuracy": {0: {0: 0.5}}})
    xml = run_files(run, task, flow_id=7)["description.xml"]
    schema.check_run_xml(xml, folds=10, repeats=1)
    with pytest.raises(schema.SchemaError, match=message):
        schema.check_run_xml(edit(xml), folds=10, repeats=1)


def test_upload_size_warnings_follow_the_server_images_php_ini():
    assert schema.upload_size_warnings({"predictions.arff": 2 * 1024 * 1024}) == []
    (one,) = schema.upload_size_warnings({"predictions.arff": 2 * 1024 * 1024 + 1})
    assert "above upload_max_filesize = 2M" in one and "docker/config/php.ini" in one
    both = schema.upload_size_warnings({"a": 2_000_000, "b": 2_000_000, "c": 2_000_000, "d": 2_500_000})
    assert len(both) == 2 and "above post_max_size = 8M" in both[1]  # d is above 2M too


# --- Compact confidences ---------------------------------------------------------------------------

def test_confidences_are_rounded_to_six_decimals_and_keep_the_argmax():
    p = np.array([[0.9999996, 3e-7, 1e-7, 0, 0, 0, 0, 0, 0, 0],
                  [0.4000001, 0.4000004, 0.1999995, 0, 0, 0, 0, 0, 0, 0],  # rounding would tie 0 and 1
                  [0.25, 0.75, 0, 0, 0, 0, 0, 0, 0, 0]], dtype=np.float32)
    first, second, third = confidence_values(p)
    assert first == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert int(np.argmax(second)) == 1 and second[1] == float(np.float32(0.4000004))  # full precision kept
    assert third == [0.25, 0.75, 0, 0, 0, 0, 0, 0, 0, 0]


# --- The run on a task, after the record -----------------------------------------------------------

def test_cv_run_writes_a_complete_record_then_the_saved_openml_run(cv_run):
    run, record = cv_run.run, cv_run.record
    assert run["status"] == "completed" and run["platform"] == "openml"
    assert run["data_digest"] == data.Mnist(IMAGES[:N_TRAIN], LABELS[:N_TRAIN], IMAGES[N_TRAIN:],
                                            LABELS[N_TRAIN:], "x").digest()
    assert run["data"]["n_train"] == N_TRAIN and run["data"]["n_test"] == N_TEST
    assert "OpenML dataset 554" in run["data"]["source"]
    for name in ("model.h5", "predictions.npy", "history.csv", "confusion_matrix.csv"):
        assert (record / name).is_file()
    assert sorted(p.name for p in (record / "openml").iterdir()) == ["description.xml", "flow.xml", "predictions.arff"]
    assert not any(p.name.startswith(".") for p in record.iterdir())  # no staging folder left
    info = run["environment"]["platform_info"]
    assert info["task_id"] == 3573 and info["folds_limit"] == 2 and info["publish"] is False
    assert run["links"]["openml"] == {"saved": "openml", "task_id": 3573}  # saved, not published: no API key
    assert any("publish it later with: python run.py push openml" in line for line in cv_run.logs)
    assert sum("split " in line and "train /" in line for line in cv_run.logs) == 2  # two fold models
    # the folds were trained after the record was written: its timings are the native run's alone
    assert run["timings"]["total_seconds"] < sum(run["timings"]["epoch_seconds"]) + 120


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


def test_predictions_are_written_compactly(cv_run):
    text = (cv_run.record / "openml" / "predictions.arff").read_text()
    data_lines = text.split("@DATA\n", 1)[1].strip().splitlines()
    assert len(data_lines) == 60
    for line in data_lines:
        *_, last = line.split(",")
        for value in line.split(",")[6:]:
            assert value in ("0", "1") or len(value.split(".")[-1].split("e")[0]) <= 9, line


def test_loader_reads_a_cv_run_as_the_tasks_protocol_not_a_test_set(cv_run):
    (loaded,), _ = discover([cv_run.record / "openml"])
    assert loaded.run["spec_hash"] == cv_run.run["spec_hash"]
    assert loaded.run["metrics"]["openml_splits"] == 2 and "test_accuracy" not in loaded.run["metrics"]
    assert loaded.predictions() is None and loaded.run["links"]["openml"] == {"task_id": 3573}


# --- Publishing: what the real client posts, on a loopback server ----------------------------------

def test_a_complete_run_is_published_and_the_posted_bodies_pass_the_check(published_run):
    run, server, folder = published_run.run, published_run.server, published_run.record / "openml"
    assert run["status"] == "completed"
    links = run["links"]["openml"]
    assert links["flow_id"] == UploadServer.FLOW_ID and links["run_id"] == UploadServer.RUN_ID
    assert links["task_id"] == 3574 and links["run_url"].endswith("/r/777")
    paths = [r["path"].rsplit("/api/v1/xml/", 1)[1] for r in server.requests]
    assert paths == ["flow/exists", "flow/", "run/"]
    (flow_post,), (run_post,) = server.posted("/flow/"), server.posted("/run/")
    schema.check_flow_xml(flow_post["description"].decode())
    schema.check_run_xml(run_post["description"].decode(), folds=4, repeats=1)
    # the saved files are the posted ones, byte for byte
    assert flow_post["description"] == (folder / "flow.xml").read_bytes()
    assert run_post["description"] == (folder / "description.xml").read_bytes()
    assert run_post["predictions"] == (folder / "predictions.arff").read_bytes()
    assert b"<oml:flow_id>4242</oml:flow_id>" in run_post["description"]
    assert run_post["api_key"] == b"k3y" * 10  # the key travels as a form field, never in a file
    for path in published_run.record.rglob("*"):
        if path.is_file():
            assert b"k3y" * 10 not in path.read_bytes(), path


def test_published_predictions_cover_every_fold_of_the_task(published_run):
    from openml.runs import OpenMLRun

    saved = OpenMLRun.from_filesystem(published_run.record / "openml", expect_model=False)
    assert saved.flow_id == UploadServer.FLOW_ID
    assert sorted(int(line[3]) for line in saved.data_content) == list(range(N_TRAIN + N_TEST))
    assert sorted(saved.fold_evaluations["predictive_accuracy"][0]) == [0, 1, 2, 3]


def test_a_save_the_server_would_refuse_leaves_a_completed_record_with_publish_error(tmp_path):
    mp, result = run_platform(tmp_path, 3573, folds=1, **{"data.path": "x" * 3000})
    try:
        assert result.run["status"] == "completed"
        error = result.run["links"]["openml"]["publish_error"]
        assert "data.path" in error and "oml:basic_latin2048 allows at most 2048" in error
        assert not (result.record / "openml").exists()  # nothing half-written
    finally:
        mp.undo()


@pytest.fixture
def complete_record(cv_run, tmp_path, monkeypatch):
    """A copy of the cv record whose saved run covers all of 3573 (made-up predictions), a key set, and a
    function starting the loopback upload server and pointing the client at it."""
    record = tmp_path / cv_run.record.name
    shutil.copytree(cv_run.record, record)
    servers: list[UploadServer] = []

    def serve(**kwargs) -> UploadServer:
        server = UploadServer(**kwargs)
        servers.append(server)
        env = offline_openml(monkeypatch, tmp_path / "cache", server.url)
        write_dataset(env.cache, IMAGES, LABELS, env.dead_url, pixel_dtype=np.float64)
        write_task(env.cache, 3573, stratified_folds(LABELS, 10), env.dead_url)
        monkeypatch.setenv("OPENML_APIKEY", "p" * 32)
        spec, task = cv_run.spec, get_task(3573)
        shutil.rmtree(record / "openml")
        save_run(record / "openml", task, build_flow(spec), spec,
                 fake_run(task, spec, task_splits(task), np.random.default_rng(5)),
                 {"predictive_accuracy": {0: {f: 0.5 for f in range(10)}}}, f"spec_hash: {spec.hash}")
        return server

    yield record, serve
    for server in servers:
        server.close()


def test_push_posts_the_saved_files_and_links_them(complete_record, capsys):
    record, serve = complete_record
    server = serve()
    assert run_py.main(["push", "openml", str(record), "--openml-server", server.url]) == 0
    assert "linked in" in capsys.readouterr().out
    links = read_run_json(record)["links"]["openml"]
    assert links["run_id"] == UploadServer.RUN_ID and links["flow_id"] == UploadServer.FLOW_ID
    (run_post,) = server.posted("/run/")
    assert run_post["description"] == (record / "openml" / "description.xml").read_bytes()
    schema.check_run_xml(run_post["description"].decode(), folds=10, repeats=1)


def test_push_refused_by_the_server_is_one_clear_error_and_the_record_is_untouched(complete_record, capsys):
    record, serve = complete_record
    server = serve(refuse=(202, "Problem validating uploaded description file"))
    before = (record / "run.json").read_text()
    assert run_py.main(["push", "openml", str(record), "--openml-server", server.url]) == 1
    err = capsys.readouterr().err
    assert f"error: publishing to {server.url}:" in err and "202" in err
    assert (record / "run.json").read_text() == before


def test_push_without_a_key_is_refused_and_the_record_is_untouched(cv_run, capsys):
    before = (cv_run.record / "run.json").read_text()
    assert run_py.main(["push", "openml", str(cv_run.record)]) == 1
    assert "error: no OpenML API key: set OPENML_APIKEY" in capsys.readouterr().err
    assert (cv_run.record / "run.json").read_text() == before


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


def test_push_usage_errors(tmp_path, capsys):
    assert run_py.main(["push", "openml"]) == 2
    assert run_py.main(["push", "openml", str(tmp_path)]) == 2
    assert "no saved OpenML run (openml/description.xml)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit:  # the dead path is gone: argparse refuses the option
        run_py.main(["push", "openml", "--holdout-task"])
    assert exit.value.code == 2 and "unrecognized arguments: --holdout-task" in capsys.readouterr().err


def test_a_failing_fold_leaves_the_record_completed_with_the_publish_error(tiny_cache, tmp_path):
    """The task's own protocol runs after the record is published: a fold that cannot be trained (here a
    split naming a row past the dataset's end) is noted in links.openml.publish_error, nothing else."""
    n = len(LABELS)
    folds = stratified_folds(LABELS, 4)
    folds[0] = (0, 0, folds[0][2], np.array([n + 5]))  # 4-fold CV (procedure 25), its first fold broken
    write_task(tiny_cache.cache, 4242, folds, tiny_cache.dead_url)
    logs: list[str] = []
    platform = OpenMLPlatform(platform_options(tiny_cache, tmp_path / "runs", openml_task=4242, openml_folds=1),
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


def test_saving_a_run_above_the_servers_upload_limit_warns_and_still_saves(tiny_cache, tmp_path):
    spec, task = tiny_spec(), get_task(3573)
    rows = fake_run(task, spec, task_splits(task), np.random.default_rng(7)) * 100  # 30,000 lines
    logs: list[str] = []
    sizes = save_run(tmp_path / "big", task, build_flow(spec), spec, rows, {"predictive_accuracy": {0: {0: 0.5}}},
                     "big", log=logs.append)
    assert sizes["predictions.arff"] == (tmp_path / "big" / "predictions.arff").stat().st_size > 2 * 1024 * 1024
    (warning,) = logs
    assert warning.startswith("[openml] warning: predictions.arff is ") and "upload_max_filesize = 2M" in warning
