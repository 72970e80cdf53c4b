"""The experiment spec: a YAML file, validated into a frozen dataclass.

A spec describes the whole experiment — the layer stack, optimizer, loss,
batch size, epochs, split, seed and data — so that users change the
experiment by editing YAML, never code. Its hash identifies the experiment
everywhere (run records, comparisons, OpenML flows).

This module imports neither TensorFlow nor Keras: validation must be instant,
and `results` may read specs without paying for a deep-learning import.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Mapping

import yaml

from core.errors import UsageError
from core.record import canonical_json

SPECS_DIR = Path(__file__).parent / "specs"
DEFAULT_SPEC = "canonical"


class SpecError(UsageError):
    """A spec that cannot be used; the message names the file and the key."""

    def __init__(self, source: str, key: str, problem: str):
        self.source, self.key, self.problem = source, key, problem
        super().__init__(f"{source}: {key}: {problem}")


# --- What a spec may contain -------------------------------------------------
# Each layer type lists its arguments: name -> (accepted types, required?).
_INT, _FLOAT, _STR, _BOOL = (int,), (int, float), (str,), (bool,)
_SIZE = (int, list)  # 3 or [3, 3]
LAYER_ARGS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "Conv2D": {
        "filters": (_INT, True), "kernel_size": (_SIZE, True), "activation": (_STR, False),
        "padding": (_STR, False), "strides": (_SIZE, False), "use_bias": (_BOOL, False),
    },
    "MaxPooling2D": {"pool_size": (_SIZE, False), "strides": (_SIZE, False), "padding": (_STR, False)},
    "AveragePooling2D": {"pool_size": (_SIZE, False), "strides": (_SIZE, False), "padding": (_STR, False)},
    "Dropout": {"rate": (_FLOAT, True)},
    "Flatten": {},
    "Dense": {"units": (_INT, True), "activation": (_STR, False), "use_bias": (_BOOL, False)},
    "BatchNormalization": {"momentum": (_FLOAT, False), "epsilon": (_FLOAT, False)},
    "Activation": {"activation": (_STR, True)},
}
ACTIVATIONS = {"relu", "softmax", "sigmoid", "tanh", "linear", "elu", "selu", "gelu", "swish"}
PADDINGS = {"valid", "same"}
OPTIMIZER_ARGS: dict[str, set[str]] = {
    "adam": {"beta_1", "beta_2", "epsilon", "amsgrad", "weight_decay"},
    "adamw": {"beta_1", "beta_2", "epsilon", "amsgrad", "weight_decay"},
    "nadam": {"beta_1", "beta_2", "epsilon", "weight_decay"},
    "sgd": {"momentum", "nesterov", "weight_decay"},
    "rmsprop": {"rho", "momentum", "epsilon", "centered", "weight_decay"},
    "adadelta": {"rho", "epsilon", "weight_decay"},
    "adagrad": {"initial_accumulator_value", "epsilon", "weight_decay"},
}
# Any optimizer may take `decay`: Keras 2's lr / (1 + decay * iterations). Absent unless set,
# so specs without it keep their hash.
SCHEDULE_ARGS = {"decay"}
LOSSES = {"categorical_crossentropy", "sparse_categorical_crossentropy"}
DATA_SOURCES = {"auto", "cache", "keras", "pypi", "npz", "idx", "csv"}


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    type: str
    args: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    name: str
    learning_rate: float
    args: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class DataSpec:
    source: str = "auto"
    path: str | None = None  # for the npz/idx/csv sources
    train_limit: int | None = None
    test_limit: int | None = None


@dataclasses.dataclass(frozen=True)
class ExperimentSpec:
    """One experiment, completely. Build it with `load_spec` or `parse_spec`."""

    name: str
    description: str
    layers: tuple[LayerSpec, ...]
    optimizer: OptimizerSpec
    loss: str
    batch_size: int
    epochs: int
    split: float  # fraction of the training set kept for training; the rest validates
    seed: int
    data: DataSpec
    claims: tuple[Mapping[str, Any], ...] = ()  # published results this spec reproduces

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; `parse_spec(spec.to_dict())` gives the same spec."""
        d = dataclasses.asdict(self)
        d["layers"] = [{"type": l["type"], **l["args"]} for l in d["layers"]]
        opt = d["optimizer"]
        d["optimizer"] = {"name": opt["name"], "learning_rate": opt["learning_rate"], **opt["args"]}
        d["claims"] = list(d["claims"])
        return _plain(d)

    def experiment_dict(self) -> dict[str, Any]:
        """What determines the numbers: the spec minus its name, description and claims."""
        d = self.to_dict()
        for k in ("name", "description", "claims"):
            d.pop(k)
        return d

    @property
    def hash(self) -> str:
        """SHA-256 of the canonical JSON of `experiment_dict()`."""
        return hashlib.sha256(canonical_json(self.experiment_dict()).encode()).hexdigest()

    @property
    def short_hash(self) -> str:
        return self.hash[:8]


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# --- Loading and validation --------------------------------------------------

def resolve_spec_path(name_or_path: str | Path) -> Path:
    """A preset name (`canonical`) or a path to a YAML file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    preset = SPECS_DIR / f"{name_or_path}.yaml"
    if preset.exists():
        return preset
    valid = ", ".join(list_presets())
    raise SpecError(str(name_or_path), "spec", f"no such file or preset; presets are: {valid}")


def list_presets() -> list[str]:
    return sorted(p.stem for p in SPECS_DIR.glob("*.yaml"))


def load_spec(name_or_path: str | Path = DEFAULT_SPEC, overrides: Mapping[str, Any] | None = None) -> ExperimentSpec:
    """Read, override (`{"optimizer.learning_rate": 0.01}`), validate."""
    path = resolve_spec_path(name_or_path)
    source = str(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpecError(source, "spec", "file not found") from None
    except yaml.YAMLError as e:
        raise SpecError(source, "spec", f"not valid YAML ({str(e).splitlines()[0]})") from None
    return parse_spec(raw, source=source, overrides=overrides)


def parse_spec(raw: Any, source: str = "<spec>", overrides: Mapping[str, Any] | None = None) -> ExperimentSpec:
    if not isinstance(raw, dict):
        raise SpecError(source, "spec", "must be a mapping of keys to values")
    raw = copy.deepcopy(raw)
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value, source)
    return _Validator(source).spec(raw)


def parse_set_option(text: str) -> tuple[str, Any]:
    """`key=value` from `--set`; the value is read as a YAML scalar (so 0.01 is a float)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise SpecError("--set", text, "expected key=value, e.g. optimizer.learning_rate=0.01")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        return key.strip(), value


def _set_dotted(raw: dict, dotted: str, value: Any, source: str) -> None:
    parts = dotted.split(".")
    node: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise SpecError(source, where, f"no such list index (0..{len(node) - 1})")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise SpecError(source, where, "cannot set a key inside a scalar value")


class _Validator:
    """Turns a raw mapping into an ExperimentSpec or raises SpecError naming the key."""

    TOP_KEYS = {"name", "description", "layers", "optimizer", "loss", "batch_size", "epochs",
                "split", "seed", "data", "claims"}
    REQUIRED = {"layers", "optimizer", "loss", "batch_size", "epochs", "seed"}

    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, problem: str) -> SpecError:
        return SpecError(self.source, key, problem)

    def keys(self, mapping: dict, allowed: set[str], where: str, required: set[str] = frozenset()) -> None:
        for k in mapping:
            if k not in allowed:
                raise self.fail(f"{where}{k}", f"unknown key; valid keys are: {', '.join(sorted(allowed))}")
        for k in sorted(required):
            if k not in mapping:
                raise self.fail(f"{where}{k}", "required key is missing")

    def typed(self, value: Any, types: tuple[type, ...], key: str) -> Any:
        # bool is an int in Python; a YAML `true` must not pass as a number.
        if isinstance(value, bool) and bool not in types:
            ok = False
        else:
            ok = isinstance(value, types)
        if not ok:
            names = " or ".join(t.__name__ for t in types)
            raise self.fail(key, f"expected {names}, got {type(value).__name__} {value!r}")
        return float(value) if types == _FLOAT and not isinstance(value, bool) else value

    def positive_int(self, value: Any, key: str, allow_none: bool = False) -> int | None:
        if value is None and allow_none:
            return None
        value = self.typed(value, _INT, key)
        if value < 1:
            raise self.fail(key, f"must be a positive integer, got {value}")
        return value

    def spec(self, raw: dict) -> ExperimentSpec:
        self.keys(raw, self.TOP_KEYS, "", self.REQUIRED)
        split = self.typed(raw.get("split", 1.0), _FLOAT, "split")
        if not 0.0 < split <= 1.0:
            raise self.fail("split", f"must be in (0, 1] (fraction kept for training), got {split}")
        seed = self.typed(raw["seed"], _INT, "seed")
        if seed < 0:
            raise self.fail("seed", f"must be >= 0, got {seed}")
        loss = self.typed(raw["loss"], _STR, "loss")
        if loss not in LOSSES:
            raise self.fail("loss", f"unknown loss {loss!r}; valid losses are: {', '.join(sorted(LOSSES))}")
        claims = raw.get("claims", [])
        if not isinstance(claims, list) or not all(isinstance(c, dict) for c in claims):
            raise self.fail("claims", "expected a list of mappings")
        return ExperimentSpec(
            name=self.typed(raw.get("name", "unnamed"), _STR, "name"),
            description=self.typed(raw.get("description", ""), _STR, "description"),
            layers=self.layers(raw["layers"]),
            optimizer=self.optimizer(raw["optimizer"]),
            loss=loss,
            batch_size=self.positive_int(raw["batch_size"], "batch_size"),
            epochs=self.positive_int(raw["epochs"], "epochs"),
            split=split,
            seed=seed,
            data=self.data(raw.get("data", {})),
            claims=tuple(claims),
        )

    def layers(self, raw: Any) -> tuple[LayerSpec, ...]:
        if not isinstance(raw, list) or not raw:
            raise self.fail("layers", "expected a non-empty list of layers")
        out = []
        for i, layer in enumerate(raw):
            where = f"layers[{i}]"
            if not isinstance(layer, dict) or "type" not in layer:
                raise self.fail(where, "each layer is a mapping with a 'type'")
            kind = layer["type"]
            if kind not in LAYER_ARGS:
                raise self.fail(f"{where}.type", f"unknown layer {kind!r}; valid layers are: {', '.join(sorted(LAYER_ARGS))}")
            schema = LAYER_ARGS[kind]
            args = {k: v for k, v in layer.items() if k != "type"}
            self.keys(args, set(schema), f"{where}.", {k for k, (_, req) in schema.items() if req})
            for k, v in args.items():
                self.layer_arg(kind, k, v, schema[k][0], f"{where}.{k}")
            out.append(LayerSpec(kind, {k: args[k] for k in sorted(args)}))
        if out[-1].type != "Dense" or out[-1].args.get("units") != 10:
            raise self.fail(f"layers[{len(out) - 1}]", "the last layer must be Dense with 10 units (one per digit)")
        return tuple(out)

    def layer_arg(self, kind: str, key: str, value: Any, types: tuple[type, ...], where: str) -> None:
        self.typed(value, types, where)
        if types == _SIZE:
            sizes = value if isinstance(value, list) else [value]
            if len(sizes) not in (1, 2) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes):
                raise self.fail(where, f"expected a positive integer or a pair of them, got {value!r}")
        elif key in ("filters", "units") and value < 1:
            raise self.fail(where, f"must be a positive integer, got {value}")
        elif key == "rate" and not 0.0 <= value < 1.0:
            raise self.fail(where, f"dropout rate must be in [0, 1), got {value}")
        elif key == "activation" and value not in ACTIVATIONS:
            raise self.fail(where, f"unknown activation {value!r}; valid: {', '.join(sorted(ACTIVATIONS))}")
        elif key == "padding" and value not in PADDINGS:
            raise self.fail(where, f"padding must be 'valid' or 'same', got {value!r}")

    def optimizer(self, raw: Any) -> OptimizerSpec:
        if isinstance(raw, str):
            raw = {"name": raw}
        if not isinstance(raw, dict) or "name" not in raw:
            raise self.fail("optimizer", "expected a mapping with a 'name'")
        name = self.typed(raw["name"], _STR, "optimizer.name").lower()
        if name not in OPTIMIZER_ARGS:
            raise self.fail("optimizer.name", f"unknown optimizer {name!r}; valid: {', '.join(sorted(OPTIMIZER_ARGS))}")
        self.keys(raw, {"name", "learning_rate"} | OPTIMIZER_ARGS[name] | SCHEDULE_ARGS, "optimizer.", {"learning_rate"})
        lr = self.typed(raw["learning_rate"], _FLOAT, "optimizer.learning_rate")
        if lr <= 0:
            raise self.fail("optimizer.learning_rate", f"must be positive, got {lr}")
        args = {}
        for k in sorted(raw):
            if k in ("name", "learning_rate"):
                continue
            v = raw[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                if not isinstance(v, bool) or k not in ("amsgrad", "nesterov", "centered"):
                    raise self.fail(f"optimizer.{k}", f"expected a number, got {v!r}")
            elif v < 0:
                raise self.fail(f"optimizer.{k}", f"must be >= 0, got {v}")
            args[k] = float(v) if not isinstance(v, bool) else v
        return OptimizerSpec(name, lr, args)

    def data(self, raw: Any) -> DataSpec:
        if not isinstance(raw, dict):
            raise self.fail("data", "expected a mapping")
        self.keys(raw, {"source", "path", "train_limit", "test_limit"}, "data.")
        source = self.typed(raw.get("source", "auto"), _STR, "data.source")
        if source not in DATA_SOURCES:
            raise self.fail("data.source", f"unknown source {source!r}; valid: {', '.join(sorted(DATA_SOURCES))}")
        path = raw.get("path")
        if path is not None:
            self.typed(path, _STR, "data.path")
        if source in ("npz", "idx", "csv") and not path:
            raise self.fail("data.path", f"source {source!r} needs a path")
        return DataSpec(
            source=source, path=path,
            train_limit=self.positive_int(raw.get("train_limit"), "data.train_limit", allow_none=True),
            test_limit=self.positive_int(raw.get("test_limit"), "data.test_limit", allow_none=True),
        )
