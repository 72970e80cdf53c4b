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
import math
import re
import reprlib
from pathlib import Path
from typing import Any, Mapping

import yaml

from core.bounded import KiB, read_bounded
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

# --- Bounds: what a spec may cost to read ---------------------------------------
# A spec is a few KB; these bounds are far above any real one and far below what hurts.
MAX_SPEC_BYTES = 256 * KiB     # PyYAML reads ~1 MB/s: a 10 MB spec took 45 s
MAX_NODES = 20_000             # values after alias expansion (an alias bomb is small until expanded)
MAX_DEPTH = 32                 # nesting of mappings and lists
MAX_SEED = 2**32 - 1           # numpy's RandomState takes 0 <= seed < 2**32 (keras.utils.set_random_seed seeds it)
MAX_SIZE = 1 << 20             # filters, units, kernel and pool sizes, batch size: beyond this no model fits
MAX_EPOCHS = 100_000
# A name travels into run ids' neighbours, report file names, Kaggle slugs and Keras layer scopes.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")
_short_repr = reprlib.Repr()
_short_repr.maxlevel, _short_repr.maxstring, _short_repr.maxother = 2, 40, 40
_short_repr.maxlist = _short_repr.maxdict = 4


def short(value: Any) -> str:
    """A repr of at most a line: error messages never expand what they quote (reprlib bounds depth and width)."""
    text = _short_repr.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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
    """Read (bounded), override (`{"optimizer.learning_rate": 0.01}`), validate."""
    path = resolve_spec_path(name_or_path)
    source = str(path)
    try:
        # The user's own file: a link to it is followed; a FIFO or device is refused, not read.
        text = read_bounded(path, MAX_SPEC_BYTES, follow_symlinks=True).decode("utf-8")
    except FileNotFoundError:
        raise SpecError(source, "spec", "file not found") from None
    except UnicodeDecodeError:
        raise SpecError(source, "spec", "not UTF-8 text") from None
    except OSError as e:
        raise SpecError(source, "spec", f"cannot read it ({e.strerror or e})") from None
    return parse_spec(load_yaml(text, source), source=source, overrides=overrides)


def load_yaml(text: str, source: str) -> Any:
    """`yaml.safe_load`, then bounded: size, depth, values after alias expansion, JSON types only."""
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError(source, "spec", f"{len(text):,} characters; a spec may have at most {MAX_SPEC_BYTES:,}")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError(source, "spec", f"not valid YAML ({str(e).splitlines()[0]})") from None
    except RecursionError:
        raise SpecError(source, "spec", "nested too deeply") from None
    check_plain(raw, source)
    return raw


def check_plain(raw: Any, source: str, key: str = "spec") -> None:
    """Refuse what a spec must not hold: more than MAX_NODES values once aliases are expanded,
    nesting past MAX_DEPTH, a value that contains itself, NaN or infinity, and anything that is
    not JSON (dates, bytes, sets, non-string keys). Walks each shared node once (memoised), so
    an alias bomb is measured without being expanded."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()

    def size(node: Any, where: str, depth: int) -> int:
        if isinstance(node, (dict, list)):
            if id(node) in on_path:
                raise SpecError(source, where, "a YAML alias that contains itself")
            if id(node) in sizes:
                return sizes[id(node)]
            if depth > MAX_DEPTH:
                raise SpecError(source, where, f"nested more than {MAX_DEPTH} levels deep")
            on_path.add(id(node))
            total = 1
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for k, v in items:
                if isinstance(node, dict) and not isinstance(k, str):
                    raise SpecError(source, where, f"keys must be strings, got {type(k).__name__} {short(k)}")
                total += size(v, f"{where}.{k}" if where != "spec" else str(k), depth + 1)
                if total > MAX_NODES:
                    raise SpecError(source, where, f"more than {MAX_NODES:,} values once YAML aliases are "
                                                   "expanded (an alias bomb?)")
            on_path.discard(id(node))
            sizes[id(node)] = total
            return total
        if isinstance(node, float) and not math.isfinite(node):
            raise SpecError(source, where, f"{node} is not a finite number")
        if node is not None and not isinstance(node, (str, int, float, bool)):
            raise SpecError(source, where, f"a {type(node).__name__} value; a spec holds only strings, "
                                           "numbers, booleans, null, lists and mappings")
        return 1

    size(raw, key, 0)


def parse_spec(raw: Any, source: str = "<spec>", overrides: Mapping[str, Any] | None = None) -> ExperimentSpec:
    if not isinstance(raw, dict):
        raise SpecError(source, "spec", "must be a mapping of keys to values")
    check_plain(raw, source)
    raw = copy.deepcopy(raw)
    for key, value in (overrides or {}).items():
        check_plain(value, "command line", key)
        _set_dotted(raw, key, value, source)
    return _Validator(source).spec(raw)


def parse_set_option(text: str) -> tuple[str, Any]:
    """`key=value` from `--set`; the value is read as YAML (so 0.01 is a float), bounded as a spec is."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise SpecError("--set", short(text), "expected key=value, e.g. optimizer.learning_rate=0.01")
    try:
        return key.strip(), load_yaml(value, f"--set {key.strip()}")
    except SpecError as e:
        if e.problem.startswith("not valid YAML"):
            return key.strip(), value  # a plain string after all
        raise


def merge_overrides(sets: list[str], flags: Mapping[str, Any]) -> dict[str, Any]:
    """`--set KEY=VALUE` options and the dedicated flags' overrides (`{"epochs": 3}`), as one mapping.

    A key given twice — by two `--set`s, or by `--set` and its own flag, or a `--set` of
    a mapping holding a flag's key — is refused: which one wins would be a silent rule.
    """
    overrides: dict[str, Any] = {}
    for text in sets:
        key, value = parse_set_option(text)
        _refuse_overlap(overrides, key, f"--set {key}")
        overrides[key] = value
    for key, value in flags.items():
        if value is None:
            continue
        flag = "--" + key.split(".")[-1].replace("_", "-")
        _refuse_overlap(overrides, key, flag)
        overrides[key] = value
    return overrides


def _refuse_overlap(overrides: Mapping[str, Any], key: str, given_by: str) -> None:
    for other in overrides:
        if other == key or other.startswith(key + ".") or key.startswith(other + "."):
            raise SpecError("command line", key, f"given twice ({given_by} and an earlier --set {other}); "
                                                 "give each key once")


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
            raise self.fail(key, f"expected {names}, got {type(value).__name__} {short(value)}")
        if types == _FLOAT and not isinstance(value, bool):
            if abs(value) > 1e300 or not math.isfinite(value):  # NaN, infinity, or an int too big for a float
                raise self.fail(key, f"{value} is not a finite number")
            return float(value)
        return value

    def positive_int(self, value: Any, key: str, allow_none: bool = False, maximum: int | None = None) -> int | None:
        if value is None and allow_none:
            return None
        value = self.typed(value, _INT, key)
        if value < 1:
            raise self.fail(key, f"must be a positive integer, got {short(value)}")
        if maximum is not None and value > maximum:
            raise self.fail(key, f"must be at most {maximum:,}, got {short(value)}")
        return value

    def spec(self, raw: dict) -> ExperimentSpec:
        self.keys(raw, self.TOP_KEYS, "", self.REQUIRED)
        split = self.typed(raw.get("split", 1.0), _FLOAT, "split")
        if not 0.0 < split <= 1.0:
            raise self.fail("split", f"must be in (0, 1] (fraction kept for training), got {short(split)}")
        seed = self.typed(raw["seed"], _INT, "seed")
        if not 0 <= seed <= MAX_SEED:
            raise self.fail("seed", f"must be in 0..{MAX_SEED} (2**32 - 1, what numpy's generator takes), got {short(seed)}")
        loss = self.typed(raw["loss"], _STR, "loss")
        if loss not in LOSSES:
            raise self.fail("loss", f"unknown loss {short(loss)}; valid losses are: {', '.join(sorted(LOSSES))}")
        claims = raw.get("claims", [])
        if not isinstance(claims, list) or not all(isinstance(c, dict) for c in claims):
            raise self.fail("claims", "expected a list of mappings")
        name = self.typed(raw.get("name", "unnamed"), _STR, "name")
        if not NAME.fullmatch(name):
            raise self.fail("name", f"{short(name)} is not a plain name: 1-120 letters, digits, '.', '_', '-', "
                                    "starting with a letter or digit (it names files and reports)")
        data = self.data(raw.get("data", {}))
        n_train = round(min(60000, data.train_limit or 60000) * split)
        if n_train < 1:
            raise self.fail("split", f"{split} of {min(60000, data.train_limit or 60000)} training images "
                                     "leaves none to train on")
        return ExperimentSpec(
            name=name,
            description=self.typed(raw.get("description", ""), _STR, "description"),
            layers=self.layers(raw["layers"]),
            optimizer=self.optimizer(raw["optimizer"]),
            loss=loss,
            batch_size=self.positive_int(raw["batch_size"], "batch_size", maximum=MAX_SIZE),
            epochs=self.positive_int(raw["epochs"], "epochs", maximum=MAX_EPOCHS),
            split=split,
            seed=seed,
            data=data,
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
                raise self.fail(f"{where}.type", f"unknown layer {short(kind)}; valid layers are: {', '.join(sorted(LAYER_ARGS))}")
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
            if len(sizes) not in (1, 2) or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= MAX_SIZE
                                                   for s in sizes):
                raise self.fail(where, f"expected a positive integer or a pair of them, got {short(value)}")
        elif key in ("filters", "units") and not 1 <= value <= MAX_SIZE:
            raise self.fail(where, f"must be a positive integer up to {MAX_SIZE:,}, got {short(value)}")
        elif key == "rate" and not 0.0 <= value < 1.0:
            raise self.fail(where, f"dropout rate must be in [0, 1), got {short(value)}")
        elif key == "activation" and value not in ACTIVATIONS:
            raise self.fail(where, f"unknown activation {short(value)}; valid: {', '.join(sorted(ACTIVATIONS))}")
        elif key == "padding" and value not in PADDINGS:
            raise self.fail(where, f"padding must be 'valid' or 'same', got {short(value)}")
        elif key in ("momentum", "epsilon") and not (value >= 0 and math.isfinite(value)):
            raise self.fail(where, f"must be a finite number >= 0, got {short(value)}")

    def optimizer(self, raw: Any) -> OptimizerSpec:
        if isinstance(raw, str):
            raw = {"name": raw}
        if not isinstance(raw, dict) or "name" not in raw:
            raise self.fail("optimizer", "expected a mapping with a 'name'")
        name = self.typed(raw["name"], _STR, "optimizer.name").lower()
        if name not in OPTIMIZER_ARGS:
            raise self.fail("optimizer.name", f"unknown optimizer {short(name)}; valid: {', '.join(sorted(OPTIMIZER_ARGS))}")
        self.keys(raw, {"name", "learning_rate"} | OPTIMIZER_ARGS[name] | SCHEDULE_ARGS, "optimizer.", {"learning_rate"})
        lr = self.typed(raw["learning_rate"], _FLOAT, "optimizer.learning_rate")
        if lr <= 0:
            raise self.fail("optimizer.learning_rate", f"must be positive, got {short(lr)}")
        args = {}
        for k in sorted(raw):
            if k in ("name", "learning_rate"):
                continue
            v = raw[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                if not isinstance(v, bool) or k not in ("amsgrad", "nesterov", "centered"):
                    raise self.fail(f"optimizer.{k}", f"expected a number, got {short(v)}")
            elif not (v >= 0 and math.isfinite(v)):
                raise self.fail(f"optimizer.{k}", f"must be a finite number >= 0, got {short(v)}")
            args[k] = float(v) if not isinstance(v, bool) else v
        return OptimizerSpec(name, lr, args)

    def data(self, raw: Any) -> DataSpec:
        if not isinstance(raw, dict):
            raise self.fail("data", "expected a mapping")
        self.keys(raw, {"source", "path", "train_limit", "test_limit"}, "data.")
        source = self.typed(raw.get("source", "auto"), _STR, "data.source")
        if source not in DATA_SOURCES:
            raise self.fail("data.source", f"unknown source {short(source)}; valid: {', '.join(sorted(DATA_SOURCES))}")
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
