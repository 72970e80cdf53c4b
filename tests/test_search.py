"""core/search.py: search lists, trial specs, and resuming an Optuna study (no TensorFlow, no training)."""
import optuna
import pytest
from optuna.trial import TrialState

from core import search
from core.errors import UsageError
from core.search import SearchSpace, apply_params, trial_spec
from core.spec import load_spec


def space(**lists):
    return SearchSpace.from_lists({k: v for k, v in lists.items()})


def layer_types(spec):
    return [layer.type for layer in spec.layers]


def test_lists_are_parsed_typed_and_deduplicated():
    s = space(learning_rate="0.001, 0.01,0.001", batch_size="64,128", optimizer="Adam,sgd")
    assert s.values == {"learning_rate": (0.001, 0.01), "batch_size": (64, 128), "optimizer": ("adam", "sgd")}
    assert s.grid_size == 8
    assert len(s.combinations()) == 8


@pytest.mark.parametrize("lists, message", [
    ({"batch_size": "64,abc"}, "'abc' is not an integer"),
    ({"learning_rate": "0"}, "must be above 0"),
    ({"dropout": "0.5,1.0"}, "dropout rate must be below 1"),
    ({"optimizer": "adam,lion"}, "unknown optimizer 'lion'"),
    ({"epochs": "1,,2"}, "empty item"),
    ({}, "nothing to search"),
])
def test_bad_lists_say_what_is_wrong(lists, message):
    with pytest.raises(UsageError, match=message):
        SearchSpace.from_lists(lists)


def test_no_parameters_give_the_base_spec_and_its_hash():
    base = load_spec("canonical")
    spec, notes = trial_spec(base, {}, name="t")
    assert spec.hash == base.hash and notes == []


def test_decay_zero_is_no_decay_and_keeps_the_hash():
    base = load_spec("canonical")
    assert trial_spec(base, {"decay": 0.0}, name="t")[0].hash == base.hash
    decayed = trial_spec(base, {"decay": 0.001}, name="t")[0]
    assert decayed.optimizer.args["decay"] == 0.001 and decayed.hash != base.hash


def test_conv_layers_per_block_repeat_the_last_conv_with_its_batchnorm():
    spec = trial_spec(load_spec("bn-cnn"), {"conv_layers": 3}, name="t")[0]
    unit = ["Conv2D", "BatchNormalization", "Activation"]
    assert layer_types(spec) == unit * 3 + ["MaxPooling2D"] + unit * 3 + [
        "MaxPooling2D", "Dropout", "Flatten", "Dense", "Dropout", "Dense"]
    assert [l.args["filters"] for l in spec.layers if l.type == "Conv2D"] == [32, 32, 32, 64, 64, 64]


def test_one_conv_layer_per_block_keeps_the_first():
    spec = trial_spec(load_spec("keras-mnist-cnn"), {"conv_layers": 1}, name="t")[0]
    assert layer_types(spec) == ["Conv2D", "MaxPooling2D", "Dropout", "Flatten", "Dense", "Dropout", "Dense"]
    assert spec.layers[0].args["filters"] == 32


def test_filters_scale_every_conv_layer_and_sizes_apply_to_all():
    spec = trial_spec(load_spec("canonical"), {"filters": 16, "kernel_size": 5, "pool_size": 2}, name="t")[0]
    convs = [l.args for l in spec.layers if l.type == "Conv2D"]
    assert [c["filters"] for c in convs] == [16, 32]
    assert [c["kernel_size"] for c in convs] == [5, 5]


def test_dense_layers_units_and_dropout():
    base = load_spec("canonical")
    none = trial_spec(base, {"dense_layers": 0}, name="t")[0]
    assert layer_types(none)[-3:] == ["Dropout", "Flatten", "Dense"]
    two = trial_spec(base, {"dense_layers": 2, "dense_units": 64, "dropout": 0.1}, name="t")[0]
    assert layer_types(two)[-6:] == ["Flatten", "Dense", "Dropout", "Dense", "Dropout", "Dense"]
    assert [l.args["units"] for l in two.layers if l.type == "Dense"] == [64, 64, 10]
    assert {l.args["rate"] for l in two.layers if l.type == "Dropout"} == {0.1}


def test_switching_optimizer_drops_arguments_the_new_one_lacks():
    base = load_spec("keras-mnist-cnn")  # adadelta with rho and epsilon
    sgd = trial_spec(base, {"optimizer": "sgd", "momentum": 0.9, "learning_rate": 0.01}, name="t")[0]
    assert sgd.optimizer.name == "sgd" and dict(sgd.optimizer.args) == {"momentum": 0.9}
    adam, notes = trial_spec(base, {"optimizer": "adam", "momentum": 0.9}, name="t")
    assert dict(adam.optimizer.args) == {"epsilon": 1e-7}
    assert notes == ["momentum ignored: adam has none"]


def test_a_vanishing_feature_map_is_infeasible():
    with pytest.raises(search.InfeasibleSpec, match="Conv2D with window 7x7 gets a 5x5 feature map"):
        trial_spec(load_spec("canonical"), {"kernel_size": 7, "conv_layers": 3}, name="t")
    assert search.check_feasible(load_spec("keras-mnist-cnn")) == (12, 12)


def test_searching_a_layer_the_base_lacks_is_a_usage_error(tmp_path):
    mlp = tmp_path / "mlp.yaml"
    mlp.write_text("layers: [{type: Flatten}, {type: Dense, units: 10, activation: softmax}]\n"
                   "optimizer: {name: adam, learning_rate: 0.001}\nloss: categorical_crossentropy\n"
                   "batch_size: 32\nepochs: 1\nseed: 1\n")
    with pytest.raises(UsageError, match="cannot search kernel_size"):
        search.check_values(load_spec(mlp), space(kernel_size="3,5"))
    raw = load_spec(mlp).to_dict()
    apply_params(raw, {"dense_layers": 1})  # adds a hidden layer where there was none
    assert [l["type"] for l in raw["layers"]] == ["Flatten", "Dense", "Dense"]


# --- the study: storage, resume, retry -------------------------------------------------

def open_grid_study(tmp_path, s, name="s", identity=None):
    storage = search.open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    sampler = search.make_sampler("grid", s, seed=0)
    return search.open_study(storage, name, sampler, identity or {"space": s.to_dict()}, "maximize")


def run_until_covered(study, s, objective, limit=10):
    for _ in range(limit):
        search.retry_failed(study, s)
        if search.grid_covered(study, s):
            return
        study.optimize(objective, n_trials=1)
    raise AssertionError("grid never covered")


def test_an_interrupted_grid_trial_is_run_again_on_resume(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = space(learning_rate="0.1,0.2,0.3")
    study = open_grid_study(tmp_path, s)
    calls = []

    def interrupted_second(trial):
        lr = s.suggest(trial)["learning_rate"]
        calls.append(lr)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C or SIGTERM in the middle of the second trial
        return lr

    study.optimize(interrupted_second, n_trials=1)
    with pytest.raises(KeyboardInterrupt):
        study.optimize(interrupted_second, n_trials=1)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL]
    failed_lr = study.trials[1].params["learning_rate"]

    # A new process opens the same storage and study, and continues.
    resumed = open_grid_study(tmp_path, s)
    assert search.retry_failed(resumed, s) == [1]
    assert search.retry_failed(resumed, s) == []  # queued once, not twice
    run_until_covered(resumed, s, lambda trial: s.suggest(trial)["learning_rate"])
    complete = [t for t in resumed.trials if t.state == TrialState.COMPLETE]
    assert sorted(t.params["learning_rate"] for t in complete) == [0.1, 0.2, 0.3]
    assert resumed.trials[2].params["learning_rate"] == failed_lr  # the retry ran the interrupted point
    assert search.finished_trials(resumed) == 3
    ranked = search.ranked_trials(resumed)
    assert [t.value for t in ranked[:3]] == [0.3, 0.2, 0.1] and ranked[3].state == TrialState.FAIL


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # ask/tell by hand, as a dying worker leaves it
def test_a_trial_killed_before_drawing_its_parameters_keeps_its_grid_point(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = space(batch_size="32,64")
    study = open_grid_study(tmp_path, s)
    dead = study.ask()  # the worker died right after the trial was created
    study.tell(dead, state=TrialState.FAIL)
    assert search.retry_failed(study, s) == [0]
    run_until_covered(study, s, lambda trial: float(s.suggest(trial)["batch_size"]))
    assert search.finished_trials(study) == 2


def test_a_study_with_another_search_refuses_to_resume(tmp_path):
    s = space(learning_rate="0.1,0.2")
    open_grid_study(tmp_path, s, identity={"search_space": {"learning_rate": [0.1, 0.2]}})
    with pytest.raises(UsageError, match="searches something else"):
        open_grid_study(tmp_path, s, identity={"search_space": {"learning_rate": [0.1, 0.5]}})


def test_default_study_name_is_stable_for_the_same_search():
    base = load_spec("canonical")
    a = search.default_study_name(base, space(learning_rate="0.1,0.2"), "val_accuracy")
    assert a == search.default_study_name(base, space(learning_rate="0.1, 0.2"), "val_accuracy")
    assert a != search.default_study_name(base, space(learning_rate="0.1,0.3"), "val_accuracy")
    assert a.startswith("canonical-")


def test_a_bad_storage_url_is_a_usage_error():
    with pytest.raises(UsageError, match="cannot open storage"):
        search.open_storage("notadb://x")


def test_the_best_spec_file_loads_as_a_spec(tmp_path):
    spec = trial_spec(load_spec("canonical"), {"learning_rate": 0.01}, name="t")[0]
    path = tmp_path / "best.yaml"
    path.write_text(search.best_spec_yaml(spec.to_dict(), "best", "line one\nline two"))
    loaded = load_spec(path)
    assert path.read_text().startswith("# line one\n# line two\n")
    assert loaded.name == "best" and loaded.hash == spec.hash and loaded.claims == ()
