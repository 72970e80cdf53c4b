"""Training end to end on a few hundred real images: record, determinism, reload."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from core import experiment
from core.record import predictions_sha256, read_run_json
from core.spec import load_spec

TINY = {"epochs": 1, "data.train_limit": 300, "data.test_limit": 200}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, mnist):
    runs = tmp_path_factory.mktemp("runs")
    spec = load_spec("canonical", TINY)
    first = experiment.run_experiment(spec, mnist, runs, "local", log=lambda m: None)
    second = experiment.run_experiment(spec, mnist, runs, "local", log=lambda m: None)
    return spec, first, second


def test_canonical_model_has_the_documented_stack():
    model = experiment.build_model(load_spec("canonical"))
    # conv 3x3x1x32+32, conv 3x3x32x64+64, dense 5*5*64x128+128, dense 128x10+10
    assert model.count_params() == 320 + 18496 + 204928 + 1290
    assert [l.__class__.__name__ for l in model.layers] == [
        "Rescaling", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Dropout", "Flatten", "Dense", "Dropout", "Dense"]


def test_record_is_complete(two_runs):
    spec, first, _ = two_runs
    run = read_run_json(first)
    assert run["status"] == "completed" and run["error"] is None
    assert run["spec_hash"] == spec.hash and run["seed"] == spec.seed
    assert run["determinism"]["op_determinism"] is True
    assert run["environment"]["packages"]["tensorflow"] and run["environment"]["runtime"]["keras_backend"] == "tensorflow"
    assert run["data"] == {"source": run["data"]["source"], "n_train": 300, "n_test": 200,
                           "verified_by": run["data"]["verified_by"]}
    assert run["data"]["verified_by"] in ("sha256", "stamp")
    assert len(run["timings"]["epoch_seconds"]) == 1
    assert 0.0 <= run["metrics"]["test_accuracy"] <= 1.0 and "final_val_loss" in run["metrics"]
    for name in ("history.csv", "model.h5", "model.yaml", "predictions.npy", "confusion_matrix.csv"):
        assert (first / name).stat().st_size > 0, name
    rows = list(csv.DictReader(open(first / "history.csv")))
    assert len(rows) == 1 and float(rows[0]["val_accuracy"]) == pytest.approx(run["metrics"]["final_val_accuracy"])
    confusion = np.loadtxt(first / "confusion_matrix.csv", delimiter=",", skiprows=1, dtype=int)[:, 1:]
    assert confusion.sum() == 200 and np.trace(confusion) == round(run["metrics"]["test_accuracy"] * 200)


def test_same_spec_and_seed_give_bit_identical_weights(two_runs):
    _, first, second = two_runs
    a, b = read_run_json(first), read_run_json(second)
    assert a["weights_sha256"] == b["weights_sha256"]
    assert a["predictions_sha256"] == b["predictions_sha256"]
    print(f"\ndeterminism: {a['weights_sha256']} == {b['weights_sha256']}")


def test_another_seed_gives_other_weights(two_runs, mnist, tmp_path):
    spec, first, _ = two_runs
    other = load_spec("canonical", {**TINY, "seed": spec.seed + 1})
    rec = experiment.run_experiment(other, mnist, tmp_path, "local", log=lambda m: None)
    assert read_run_json(rec)["weights_sha256"] != read_run_json(first)["weights_sha256"]


def test_reloaded_model_reproduces_predictions_hash(two_runs, mnist):
    import keras

    _, first, _ = two_runs
    model = keras.models.load_model(first / "model.h5")
    predicted = model.predict(mnist.x_test[:200, ..., None], verbose=0).argmax(axis=1)  # raw uint8 in
    assert predictions_sha256(predicted) == read_run_json(first)["predictions_sha256"]
    np.testing.assert_array_equal(np.load(first / "predictions.npy"), predicted)
    assert model.optimizer is not None and model.optimizer.iterations.numpy() == 3  # optimizer state saved


def test_an_impossible_architecture_is_refused_before_a_record_exists(mnist, tmp_path):
    from core.spec import SpecError

    spec = load_spec("canonical", {**TINY, "layers.0.kernel_size": 30})  # valid YAML, impossible for 28x28
    with pytest.raises(SpecError, match="layers\\[0\\]: Conv2D cannot take a 28x28x1 input"):
        experiment.run_experiment(spec, mnist, tmp_path, "local", log=lambda m: None)
    assert list(tmp_path.iterdir()) == []


def test_a_failing_run_publishes_a_failed_record(mnist, tmp_path):
    import keras

    class Crash(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise ValueError("the loss went somewhere odd")

    spec = load_spec("canonical", TINY)
    with pytest.raises(experiment.RunFailed, match="the run failed: ValueError") as e:
        experiment.run_experiment(spec, mnist, tmp_path, "local", callbacks=[Crash()], log=lambda m: None)
    [folder] = list(tmp_path.iterdir())
    run = json.loads((folder / "run.json").read_text())
    assert run["status"] == "failed" and "ValueError" in run["error"] and run["traceback"]
    assert str(folder) in str(e.value)


def test_an_interrupted_run_keeps_the_seconds_of_its_finished_epochs(mnist, tmp_path):
    import keras

    class StopInSecondEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    spec = load_spec("canonical", {**TINY, "epochs": 3})
    with pytest.raises(KeyboardInterrupt):
        experiment.run_experiment(spec, mnist, tmp_path, "local", callbacks=[StopInSecondEpoch()], log=lambda m: None)
    [folder] = list(tmp_path.iterdir())
    run = json.loads((folder / "run.json").read_text())
    assert run["status"] == "interrupted"
    [seconds] = run["timings"]["epoch_seconds"]  # epoch 1 finished, epoch 2 never did
    assert 0 < seconds < run["timings"]["total_seconds"]
