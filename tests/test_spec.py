from pathlib import Path

import pytest
import yaml

from core.spec import SpecError, list_presets, load_spec, parse_set_option, parse_spec

CANONICAL_STACK = ["Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Dropout", "Flatten", "Dense", "Dropout", "Dense"]


def canonical_raw():
    return yaml.safe_load(Path("core/specs/canonical.yaml").read_text())


def test_canonical_spec_is_the_documented_experiment():
    spec = load_spec("canonical")
    assert [l.type for l in spec.layers] == CANONICAL_STACK
    conv1, _, conv2 = spec.layers[:3]
    assert (conv1.args["filters"], conv1.args["kernel_size"], conv1.args["activation"], conv1.args["padding"]) == (32, 3, "relu", "valid")
    assert (conv2.args["filters"], conv2.args["kernel_size"]) == (64, 3)
    assert spec.layers[4].args["rate"] == 0.25 and spec.layers[7].args["rate"] == 0.5
    assert spec.layers[6].args == {"activation": "relu", "units": 128}
    assert spec.layers[8].args == {"activation": "softmax", "units": 10}
    assert (spec.optimizer.name, spec.loss, spec.batch_size, spec.epochs) == ("adam", "categorical_crossentropy", 128, 12)
    assert "canonical" in list_presets()


def test_hash_is_stable_and_ignores_name_but_not_numbers():
    a, b = load_spec("canonical"), parse_spec(canonical_raw())
    assert a.hash == b.hash and len(a.hash) == 64
    renamed = parse_spec({**canonical_raw(), "name": "other", "description": "x"})
    assert renamed.hash == a.hash
    assert load_spec("canonical", {"epochs": 3}).hash != a.hash
    assert load_spec("canonical", {"optimizer.learning_rate": 0.01}).hash != a.hash


def test_round_trip_through_dict_keeps_hash():
    spec = load_spec("canonical", {"data.train_limit": 500})
    again = parse_spec(spec.to_dict())
    assert again == spec and again.hash == spec.hash


def test_overrides_reach_nested_keys_and_list_items():
    spec = load_spec("canonical", dict([parse_set_option("layers.6.units=256"), parse_set_option("optimizer.learning_rate=0.01")]))
    assert spec.layers[6].args["units"] == 256
    assert spec.optimizer.learning_rate == 0.01


@pytest.mark.parametrize("mutate, key, words", [
    (lambda r: r.update(epoch=3), "epoch", "unknown key"),
    (lambda r: r.update(epochs=-1), "epochs", "positive"),
    (lambda r: r.update(epochs="12"), "epochs", "expected int"),
    (lambda r: r.update(epochs=True), "epochs", "expected int"),
    (lambda r: r.update(split=0.0), "split", "(0, 1]"),
    (lambda r: r.update(split=1.5), "split", "(0, 1]"),
    (lambda r: r["layers"].insert(0, {"type": "Conv3D", "filters": 2}), "layers[0].type", "unknown layer"),
    (lambda r: r["layers"][0].update(filterz=3), "layers[0].filterz", "unknown key"),
    (lambda r: r["layers"][0].pop("filters"), "layers[0].filters", "required"),
    (lambda r: r["layers"][4].update(rate=1.5), "layers[4].rate", "[0, 1)"),
    (lambda r: r["layers"][0].update(activation="relux"), "layers[0].activation", "unknown activation"),
    (lambda r: r.update(optimizer={"name": "adamm", "learning_rate": 0.1}), "optimizer.name", "unknown optimizer"),
    (lambda r: r.update(optimizer={"name": "adam", "learning_rate": -1}), "optimizer.learning_rate", "positive"),
    (lambda r: r.update(optimizer={"name": "adam", "learning_rate": 0.1, "momentum": 0.9}), "optimizer.momentum", "unknown key"),
    (lambda r: r.update(loss="mse"), "loss", "unknown loss"),
    (lambda r: r.update(data={"source": "npz"}), "data.path", "needs a path"),
    (lambda r: r.update(data={"train_limit": 0}), "data.train_limit", "positive"),
    (lambda r: r["layers"].pop(), "layers[7]", "Dense with 10 units"),
])
def test_bad_specs_are_refused_naming_file_and_key(mutate, key, words):
    raw = canonical_raw()
    mutate(raw)
    with pytest.raises(SpecError) as e:
        parse_spec(raw, source="my.yaml")
    assert e.value.key == key
    assert str(e.value).startswith(f"my.yaml: {key}: ")
    assert words in str(e.value)
    assert e.value.exit_code == 2


def test_unreadable_specs(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("layers: [\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="presets are: .*canonical"):
        load_spec("no-such-preset")
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="mapping"):
        load_spec(listy)
