"""The presets in core/specs/: each validates, carries its claims, and builds exactly the documented stack.

Expected parameter counts are computed here by hand from the layer shapes
(Conv2D: (k*k*in + 1) * filters; Dense: (in + 1) * units; BatchNormalization:
4 * channels, half of them non-trainable) and compared with what Keras builds.
"""
from pathlib import Path

import pytest
import yaml

from core.claims import parse_claims
from core.experiment import build_model
from core.spec import SPECS_DIR, list_presets, load_spec, parse_spec


def conv(k, channels_in, filters):
    return (k * k * channels_in + 1) * filters


def dense(n_in, units):
    return (n_in + 1) * units


def bn(channels):
    return 4 * channels  # gamma, beta (trainable), moving mean, moving variance (not)


# (Keras layer class, parameters) for each preset; spatial sizes in the comments (3x3 valid convs, 2x2 pools).
STACKS = {
    # 28 -> conv 26 -> pool 13 -> conv 11 -> pool 5
    "canonical": [("Rescaling", 0), ("Conv2D", conv(3, 1, 32)), ("MaxPooling2D", 0), ("Conv2D", conv(3, 32, 64)),
                  ("MaxPooling2D", 0), ("Dropout", 0), ("Flatten", 0), ("Dense", dense(5 * 5 * 64, 128)),
                  ("Dropout", 0), ("Dense", dense(128, 10))],
    # 28 -> conv 26 -> conv 24 -> pool 12
    "keras-mnist-cnn": [("Rescaling", 0), ("Conv2D", conv(3, 1, 32)), ("Conv2D", conv(3, 32, 64)),
                        ("MaxPooling2D", 0), ("Dropout", 0), ("Flatten", 0), ("Dense", dense(12 * 12 * 64, 128)),
                        ("Dropout", 0), ("Dense", dense(128, 10))],
    # 28 -> 26 -> 24 -> pool 12 -> 10 -> 8 -> pool 4
    "bn-cnn": [("Rescaling", 0),
               ("Conv2D", conv(3, 1, 32)), ("BatchNormalization", bn(32)), ("Activation", 0),
               ("Conv2D", conv(3, 32, 32)), ("BatchNormalization", bn(32)), ("Activation", 0),
               ("MaxPooling2D", 0),
               ("Conv2D", conv(3, 32, 64)), ("BatchNormalization", bn(64)), ("Activation", 0),
               ("Conv2D", conv(3, 64, 64)), ("BatchNormalization", bn(64)), ("Activation", 0),
               ("MaxPooling2D", 0), ("Dropout", 0), ("Flatten", 0),
               ("Dense", dense(4 * 4 * 64, 256)), ("Dropout", 0), ("Dense", dense(256, 10))],
}
STACKS["keras-mnist-cnn-adam-2ep"] = STACKS["keras-mnist-cnn"]


def test_the_four_presets_exist():
    assert set(STACKS) <= set(list_presets())


@pytest.mark.parametrize("preset", sorted(STACKS))
def test_preset_builds_the_documented_stack(preset):
    model = build_model(load_spec(preset))
    built = [(type(layer).__name__, layer.count_params()) for layer in model.layers]
    assert built == STACKS[preset]
    assert model.count_params() == sum(n for _, n in STACKS[preset])
    assert model.output_shape == (None, 10)


def test_known_totals():
    # The Keras example's model.summary() prints 1,199,882 parameters.
    assert sum(n for _, n in STACKS["keras-mnist-cnn"]) == 1_199_882
    assert sum(n for _, n in STACKS["bn-cnn"]) == 330_730


def test_bn_cnn_layers_in_detail():
    model = build_model(load_spec("bn-cnn"))
    convs = [l for l in model.layers if type(l).__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [32, 32, 64, 64]
    assert all(c.kernel_size == (3, 3) and c.activation.__name__ == "linear" for c in convs)  # ReLU after BN
    assert [l.activation.__name__ for l in model.layers if type(l).__name__ == "Activation"] == ["relu"] * 4
    non_trainable = sum(int(w.numpy().size) for w in model.non_trainable_weights)
    assert non_trainable == 2 * (32 + 32 + 64 + 64)  # moving mean and variance
    assert model.layers[-1].activation.__name__ == "softmax"


def test_keras_mnist_cnn_spells_out_keras2_adadelta():
    raw = yaml.safe_load((SPECS_DIR / "keras-mnist-cnn.yaml").read_text())
    assert raw["optimizer"] == {"name": "adadelta", "learning_rate": 1.0, "rho": 0.95, "epsilon": 1e-7}
    assert (raw["batch_size"], raw["epochs"], raw["split"]) == (128, 12, 1.0)
    import keras

    optimizer = build_model(load_spec("keras-mnist-cnn")).optimizer
    assert isinstance(optimizer, keras.optimizers.Adadelta)
    config = optimizer.get_config()
    assert config["learning_rate"] == pytest.approx(1.0)
    assert config["rho"] == pytest.approx(0.95) and config["epsilon"] == pytest.approx(1e-7)
    dropouts = [l.rate for l in build_model(load_spec("keras-mnist-cnn")).layers if type(l).__name__ == "Dropout"]
    assert dropouts == [0.25, 0.5]


def test_adam_2ep_differs_from_keras_mnist_cnn_only_in_optimizer_and_epochs():
    a, b = load_spec("keras-mnist-cnn").to_dict(), load_spec("keras-mnist-cnn-adam-2ep").to_dict()
    changed = {k for k in a if a[k] != b[k]}
    assert changed == {"name", "description", "optimizer", "epochs", "claims"}
    assert b["epochs"] == 2 and b["optimizer"]["name"] == "adam"


@pytest.mark.parametrize("preset, expected", [
    ("canonical", {("test_accuracy", ">", 0.98)}),
    ("keras-mnist-cnn", {("test_accuracy", ">=", 0.9925)}),
    ("keras-mnist-cnn-adam-2ep", {("test_loss", "==", 0.0397), ("test_accuracy", "==", 0.9872)}),
    ("bn-cnn", set()),
])
def test_preset_claims(preset, expected):
    claims = parse_claims(load_spec(preset))
    assert {(c.metric, c.op, c.value) for c in claims} == expected
    for c in claims:
        assert "http" in c.source or "issue #8" in c.source


def test_keras_mnist_cnn_claim_cites_the_keras_example():
    (claim,) = parse_claims(load_spec("keras-mnist-cnn"))
    assert "github.com/keras-team/keras/blob/2.3.1/examples/mnist_cnn.py" in claim.source


def test_decay_is_keras2_inverse_time_decay():
    import keras

    spec = load_spec("canonical", {"optimizer.decay": 0.01})
    model = build_model(spec)
    schedule = keras.optimizers.schedules.deserialize(model.optimizer.get_config()["learning_rate"])
    assert type(schedule).__name__ == "InverseTimeDecay"
    assert float(schedule(100)) == pytest.approx(0.001 / (1 + 0.01 * 100))


def test_no_decay_key_unless_set():
    assert "decay" not in load_spec("canonical").to_dict()["optimizer"]
    assert "decay" in load_spec("canonical", {"optimizer.decay": 0.01}).to_dict()["optimizer"]


def test_a_decayed_bn_model_round_trips_through_hdf5(tmp_path: Path):
    import keras

    model = build_model(load_spec("bn-cnn", {"optimizer.decay": 0.001}))
    model.save(tmp_path / "model.h5")  # what every run record stores
    loaded = keras.models.load_model(tmp_path / "model.h5")
    assert [type(l).__name__ for l in loaded.layers] == [name for name, _ in STACKS["bn-cnn"]]
    assert loaded.count_params() == model.count_params()


def test_every_preset_round_trips_through_its_dict():
    for preset in list_presets():
        spec = load_spec(preset)
        assert parse_spec(spec.to_dict()).hash == spec.hash
