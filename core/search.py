"""Hyperparameter search: comma-separated lists -> a search space -> one spec per trial.

Every parameter edits the base spec (canonical unless told otherwise), so a
parameter that is not searched keeps the base spec's value, and the trial's spec
is a normal spec with a normal hash:

    learning_rate, batch_size, epochs   the spec keys of the same name
    optimizer                           optimizer.name; base optimizer args the new one lacks are dropped
    momentum                            optimizer.momentum (sgd and rmsprop only; ignored for the others)
    decay                               optimizer.decay (Keras 2's lr / (1 + decay * iterations)); 0 = none
    conv_layers                         Conv2D layers per block (a block ends at a pooling layer):
                                        keeps the first N, or repeats the block's last conv layer
                                        with its BatchNormalization/Activation
    filters                             the first Conv2D's filters; the others scale with it (32/64 -> 16/32)
    kernel_size, pool_size              every Conv2D kernel / every pooling window
    dense_layers                        hidden Dense layers after Flatten (0 allowed): keeps the first N
                                        or repeats the last with its Dropout
    dense_units                         units of every hidden Dense layer
    dropout                             rate of every Dropout layer

A combination whose feature maps shrink below 1x1 is infeasible: its trial is
pruned with the reason, never run. Optuna is imported only by the functions
that use it; nothing here imports TensorFlow.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import hashlib
import itertools
import math
import random
import re
import sys
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, Mapping

from core.errors import HarnessError, UsageError
from core.record import read_run_json
from core.reports import format_seconds, markdown_table
from core.spec import OPTIMIZER_ARGS, SCHEDULE_ARGS, ExperimentSpec, SpecError, canonical_json, parse_spec

CONV = "Conv2D"
POOLS = ("MaxPooling2D", "AveragePooling2D")
INPUT_SIZE = (28, 28)
DEFAULT_DENSE = {"type": "Dense", "units": 128, "activation": "relu"}  # when a base spec has no hidden Dense
MOMENTUM_OPTIMIZERS = {name for name, args in OPTIMIZER_ARGS.items() if "momentum" in args}
SAMPLERS = ("grid", "random", "tpe")
# metric -> (run.json metrics key, Optuna direction)
METRICS = {
    "val_accuracy": ("final_val_accuracy", "maximize"),
    "val_loss": ("final_val_loss", "minimize"),
    "test_accuracy": ("test_accuracy", "maximize"),
    "test_loss": ("test_loss", "minimize"),
}


class InfeasibleSpec(HarnessError):
    """A combination of parameters that cannot be built (feature maps below 1x1)."""


@dataclasses.dataclass(frozen=True)
class Parameter:
    name: str
    kind: type
    help: str
    minimum: float | None = None  # inclusive
    positive: bool = False  # the minimum itself is excluded


PARAMETERS: tuple[Parameter, ...] = (
    Parameter("learning_rate", float, "optimizer learning rates", 0.0, positive=True),
    Parameter("batch_size", int, "batch sizes", 1),
    Parameter("epochs", int, "epochs", 1),
    Parameter("optimizer", str, f"optimizers ({', '.join(sorted(OPTIMIZER_ARGS))})"),
    Parameter("momentum", float, "momentum (sgd, rmsprop)", 0.0),
    Parameter("decay", float, "learning-rate decay, Keras 2 style: lr / (1 + decay * iterations)", 0.0),
    Parameter("dense_layers", int, "number of hidden Dense layers", 0),
    Parameter("dense_units", int, "units per hidden Dense layer", 1),
    Parameter("filters", int, "filters of the first Conv2D (the others scale with it)", 1),
    Parameter("conv_layers", int, "Conv2D layers per block", 1),
    Parameter("kernel_size", int, "Conv2D kernel sizes", 1),
    Parameter("pool_size", int, "pooling window sizes", 1),
    Parameter("dropout", float, "rate of every Dropout layer", 0.0),
)
PARAMETER_NAMES = tuple(p.name for p in PARAMETERS)


def parse_values(text: str, param: Parameter) -> tuple:
    """`"0.001, 0.01"` -> (0.001, 0.01), checked against the parameter's type; duplicates dropped."""
    flag = "--" + param.name.replace("_", "-")
    values = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            raise UsageError(f"{flag} {text!r}: empty item in the comma-separated list")
        try:
            value = param.kind(item) if param.kind is not str else item.lower()
        except ValueError:
            raise UsageError(f"{flag}: {item!r} is not {'an integer' if param.kind is int else 'a number'}") from None
        if param.kind is float and not math.isfinite(value):
            raise UsageError(f"{flag}: {item!r} is not a finite number")
        if param.minimum is not None and (value < param.minimum or (param.positive and value == param.minimum)):
            raise UsageError(f"{flag}: {item} must be {'above' if param.positive else 'at least'} {param.minimum:g}")
        if param.name == "optimizer" and value not in OPTIMIZER_ARGS:
            raise UsageError(f"{flag}: unknown optimizer {item!r}; valid: {', '.join(sorted(OPTIMIZER_ARGS))}")
        if param.name == "dropout" and value >= 1:
            raise UsageError(f"{flag}: dropout rate must be below 1, got {item}")
        if value not in values:
            values.append(value)
    return tuple(values)


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Parameter name -> the values to try, in PARAMETERS order."""

    values: Mapping[str, tuple]

    @classmethod
    def from_lists(cls, lists: Mapping[str, str | None]) -> "SearchSpace":
        """From the command line's comma-separated strings (None: not searched)."""
        space = {p.name: parse_values(lists[p.name], p) for p in PARAMETERS if lists.get(p.name) is not None}
        if not space:
            raise UsageError("nothing to search: give at least one comma-separated list, e.g. "
                             "--learning-rate 0.001,0.01 --batch-size 64,128")
        return cls(space)

    @property
    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.values.values())

    def combinations(self) -> list[dict[str, Any]]:
        names = list(self.values)
        return [dict(zip(names, combo)) for combo in itertools.product(*self.values.values())]

    def to_dict(self) -> dict[str, list]:
        return {k: list(v) for k, v in self.values.items()}

    def suggest(self, trial) -> dict[str, Any]:
        """Ask an Optuna trial for one value of every parameter."""
        return {name: trial.suggest_categorical(name, list(values)) for name, values in self.values.items()}


# --- From parameters to a spec -------------------------------------------------------

def trial_spec(base: ExperimentSpec, params: Mapping[str, Any], name: str,
               description: str = "") -> tuple[ExperimentSpec, list[str]]:
    """The base spec with `params` applied, validated, and notes on parameters that did not apply."""
    raw = base.to_dict()
    raw.update(name=name, description=description, claims=[])
    notes = apply_params(raw, params)
    spec = parse_spec(raw, source=name)
    check_feasible(spec)
    return spec, notes


def check_values(base: ExperimentSpec, space: SearchSpace) -> None:
    """Each value on its own must give a valid spec (before any trial runs); SpecError/UsageError if not."""
    for name, values in space.values.items():
        for value in values:
            raw = base.to_dict()
            apply_params(raw, {name: value})
            parse_spec(raw, source=f"--{name.replace('_', '-')} {value}")


def apply_params(raw: dict[str, Any], params: Mapping[str, Any]) -> list[str]:
    """Edit a raw spec dict in place; returns notes on parameters that did not apply."""
    notes: list[str] = []
    unknown = set(params) - set(PARAMETER_NAMES)
    if unknown:
        raise UsageError(f"unknown search parameter(s): {', '.join(sorted(unknown))}")
    opt = raw["optimizer"]
    if "optimizer" in params and params["optimizer"] != opt["name"]:
        allowed = OPTIMIZER_ARGS[params["optimizer"]] | SCHEDULE_ARGS | {"name", "learning_rate"}
        raw["optimizer"] = opt = {k: v for k, v in opt.items() if k in allowed}
        opt["name"] = params["optimizer"]
    if "learning_rate" in params:
        opt["learning_rate"] = params["learning_rate"]
    if "momentum" in params:
        if opt["name"] in MOMENTUM_OPTIMIZERS:
            opt["momentum"] = params["momentum"]
        else:
            notes.append(f"momentum ignored: {opt['name']} has none")
    if "decay" in params:
        opt.pop("decay", None)
        if params["decay"]:  # 0 means no decay; leaving the key out keeps the spec hash of no decay
            opt["decay"] = params["decay"]
    for key in ("batch_size", "epochs"):
        if key in params:
            raw[key] = params[key]
    stack = LayerStack.parse(raw["layers"])
    for key in ("conv_layers", "filters", "kernel_size", "pool_size", "dense_layers", "dense_units"):
        if key in params:
            getattr(stack, f"set_{key}")(params[key])
    if "dropout" in params:
        stack.set_dropout(params["dropout"])
    raw["layers"] = stack.layers()
    return notes


@dataclasses.dataclass
class LayerStack:
    """A layer list seen as: conv blocks, Flatten, hidden dense units, the output layer.

    A block is its conv units (a Conv2D with the BatchNormalization/Activation/...
    layers after it) and a tail (the pooling layer and what follows it before the
    next Conv2D). A dense unit is a hidden Dense layer with the layers after it.
    """

    prefix: list[dict]  # layers before the first Conv2D
    blocks: list[tuple[list[list[dict]], list[dict]]]
    flatten: list[dict]  # [Flatten], or [] for a stack without one
    head_prefix: list[dict]
    dense_units: list[list[dict]]
    output: dict

    @classmethod
    def parse(cls, layers: list[dict]) -> "LayerStack":
        layers = copy.deepcopy(layers)
        types = [layer["type"] for layer in layers]
        cut = types.index("Flatten") if "Flatten" in types else None
        conv_part, head = (layers[:cut], layers[cut + 1:-1]) if cut is not None else (layers[:-1], [])
        prefix: list[dict] = []
        blocks: list[tuple[list[list[dict]], list[dict]]] = []
        units: list[list[dict]] = []
        tail: list[dict] = []
        for layer in conv_part:
            if layer["type"] == CONV:
                if tail:
                    blocks.append((units, tail))
                    units, tail = [], []
                units.append([layer])
            elif layer["type"] in POOLS or tail:
                tail.append(layer)
            elif units:
                units[-1].append(layer)
            else:
                prefix.append(layer)
        if units or tail:
            blocks.append((units, tail))
        head_prefix: list[dict] = []
        dense: list[list[dict]] = []
        for layer in head:
            if layer["type"] == "Dense":
                dense.append([layer])
            elif dense:
                dense[-1].append(layer)
            else:
                head_prefix.append(layer)
        return cls(prefix, blocks, [layers[cut]] if cut is not None else [], head_prefix, dense, layers[-1])

    def layers(self) -> list[dict]:
        out = list(self.prefix)
        for units, tail in self.blocks:
            out += [layer for unit in units for layer in unit] + tail
        out += self.flatten + self.head_prefix + [layer for unit in self.dense_units for layer in unit]
        return out + [self.output]

    def _convs(self) -> list[dict]:
        return [unit[0] for units, _ in self.blocks for unit in units]

    def _need(self, what: str, present: bool) -> None:
        if not present:
            raise UsageError(f"cannot search {what}: the base spec has no such layers")

    def set_conv_layers(self, n: int) -> None:
        self._need("conv_layers", bool(self._convs()))
        self.blocks = [(_resize(units, n), tail) if units else (units, tail) for units, tail in self.blocks]

    def set_filters(self, n: int) -> None:
        convs = self._convs()
        self._need("filters", bool(convs))
        factor = n / convs[0]["filters"]
        for conv in convs:
            conv["filters"] = max(1, round(conv["filters"] * factor))

    def set_kernel_size(self, k: int) -> None:
        self._need("kernel_size", bool(self._convs()))
        for conv in self._convs():
            conv["kernel_size"] = k

    def set_pool_size(self, p: int) -> None:
        pools = [layer for _, tail in self.blocks for layer in tail if layer["type"] in POOLS]
        self._need("pool_size", bool(pools))
        for pool in pools:
            pool["pool_size"] = p

    def set_dense_layers(self, n: int) -> None:
        self._need("dense_layers", bool(self.flatten))
        self.dense_units = _resize(self.dense_units, n) if self.dense_units else [[dict(DEFAULT_DENSE)] for _ in range(n)]

    def set_dense_units(self, n: int) -> None:
        self._need("dense_units", bool(self.dense_units))
        for unit in self.dense_units:
            unit[0]["units"] = n

    def set_dropout(self, rate: float) -> None:
        dropouts = [layer for layer in self.layers() if layer["type"] == "Dropout"]
        self._need("dropout", bool(dropouts))
        for layer in dropouts:
            layer["rate"] = rate


def _resize(units: list[list[dict]], n: int) -> list[list[dict]]:
    """The first n units, or all of them and copies of the last."""
    return units[:n] + [copy.deepcopy(units[-1]) for _ in range(n - len(units))]


def check_feasible(spec: ExperimentSpec) -> tuple[int, int]:
    """The feature-map size after the conv and pooling layers; InfeasibleSpec if it vanishes."""
    size = INPUT_SIZE
    for i, layer in enumerate(spec.layers):
        if layer.type != CONV and layer.type not in POOLS:
            continue
        window = _pair(layer.args.get("kernel_size" if layer.type == CONV else "pool_size", 2))
        strides = _pair(layer.args.get("strides", 1 if layer.type == CONV else window))
        same = layer.args.get("padding", "valid") == "same"
        new = tuple(math.ceil(n / s) if same else (n - w) // s + 1 for n, w, s in zip(size, window, strides))
        if min(new) < 1:
            raise InfeasibleSpec(f"layers[{i}] {layer.type} with window {window[0]}x{window[1]} gets a "
                                 f"{size[0]}x{size[1]} feature map: nothing left to convolve or pool")
        size = new
    return size


def _pair(value: int | list | tuple) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[-1])


# --- The Optuna study ---------------------------------------------------------------------

def study_identity(base: ExperimentSpec, space: SearchSpace, metric: str) -> dict[str, Any]:
    """What must match to resume a study: the base spec, the search space, the metric."""
    return {"base_spec_hash": base.hash, "search_space": space.to_dict(), "metric": metric}


def default_study_name(base: ExperimentSpec, space: SearchSpace, metric: str) -> str:
    """`canonical-3fa1c2d0`: the same command names the same study, so re-running it resumes."""
    digest = hashlib.sha256(canonical_json(study_identity(base, space, metric)).encode()).hexdigest()
    return f"{base.name}-{digest[:8]}"


def make_sampler(name: str, space: SearchSpace, seed: int):
    import optuna

    if name == "grid":
        return optuna.samplers.GridSampler(space.to_dict(), seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    raise UsageError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")


def storage_label(url: str) -> str:
    """The storage URL as it may be printed: a password in it is not."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


# Messages of the errors two workers meet when they create the same tables or study at once
# (SQLite: "table trial_params already exists"; PostgreSQL: a duplicate pg_type or relation;
# both: a unique constraint on the version row) or wait on each other's lock: retried.
_RACE = re.compile(r"already exists|duplicate key|UNIQUE constraint|unique constraint|database is locked|deadlock",
                   re.IGNORECASE)


def open_storage(url: str, heartbeat: int = 30, attempts: int = 10):
    """Optuna's RDB storage at `url`, safe for several workers on one study.

    - Creating the tables races when workers start together on a new database: the loser's
      error is retried (then the tables exist and creation is skipped).
    - SQLite: every transaction begins IMMEDIATE, so a read-then-write (Optuna claiming a
      waiting trial: read WAITING, write RUNNING) holds the write lock from its read on, as
      PostgreSQL's SELECT ... FOR UPDATE does; otherwise two workers can claim one trial.
    - Heartbeats: a trial whose worker was killed is failed after 4 silent heartbeats (by
      whichever worker looks next), then run again by `retry_failed`.
    """
    import optuna
    import sqlalchemy.exc

    sqlite = url.startswith("sqlite")
    # SQLite allows one writer at a time; wait for the lock (other workers, heartbeats) instead of failing.
    engine_kwargs = {"connect_args": {"timeout": 120}} if sqlite else {"pool_pre_ping": True}
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat,
                                                     grace_period=4 * heartbeat)
            break
        except ModuleNotFoundError as e:
            raise UsageError(f"storage {storage_label(url)!r} needs the database driver {e.name!r}: "
                             "pip install it") from None
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.IntegrityError,
                optuna.exceptions.StorageInternalError) as e:
            if _RACE.search(str(e)) and attempt < attempts - 1:
                time.sleep(random.uniform(0.05, 0.3) * (attempt + 1))  # another worker is creating the tables
                continue
            raise UsageError(f"cannot open storage {storage_label(url)!r}: {_first_line(e)}") from None
        except (sqlalchemy.exc.ArgumentError, ValueError) as e:
            raise UsageError(f"cannot open storage {storage_label(url)!r}: {_first_line(e)}") from None
    if sqlite:
        _begin_immediate(storage.engine)
    return storage


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def _begin_immediate(engine) -> None:
    """SQLAlchemy's recipe for SQLite: pysqlite's own BEGIN off, `BEGIN IMMEDIATE` on every transaction."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _autocommit_driver(dbapi_connection, connection_record):
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections made before the listeners would not have them


def open_study(storage, name: str, sampler, identity: dict[str, Any], direction: str, attempts: int = 10):
    """Create the study, or load it and check it searches the same thing (two workers may create it at once)."""
    import optuna

    for attempt in range(attempts):
        try:
            study = optuna.create_study(storage=storage, study_name=name, sampler=sampler,
                                        direction=direction, load_if_exists=True)
            break
        except (KeyError, optuna.exceptions.DuplicatedStudyError, optuna.exceptions.StorageInternalError):
            if attempt == attempts - 1:
                raise
            time.sleep(random.uniform(0.05, 0.3) * (attempt + 1))  # created meanwhile: load it next time
    stored = study.user_attrs.get("identity")
    if stored is None:
        study.set_user_attr("identity", identity)  # two workers may both set it: the same value
    elif stored != identity:
        differs = ", ".join(k for k in identity if stored.get(k) != identity[k])
        raise UsageError(f"study {name!r} in this storage searches something else ({differs} differ); "
                         "resume it with its original options or pick a new --study name")
    return study


# The spec keys each searched parameter sets: a `--set` of one of them would be silently replaced.
SEARCHED_KEYS = {"learning_rate": "optimizer.learning_rate", "batch_size": "batch_size", "epochs": "epochs",
                 "optimizer": "optimizer", "momentum": "optimizer.momentum", "decay": "optimizer.decay"}


def check_set_keys(overrides: Mapping[str, Any], space: SearchSpace) -> None:
    """Refuse a `--set` of a key the search itself sets (the search would overwrite it in every trial)."""
    for name in space.values:
        key = SEARCHED_KEYS.get(name, "layers")
        for given in overrides:
            if given == key or given.startswith(key + ".") or key.startswith(given + "."):
                raise UsageError(f"--set {given} and --{name.replace('_', '-')} both set {key}; "
                                 "search it or fix it, not both")


def retry_failed(study, space: SearchSpace) -> list[int]:
    """Queue again each failed trial (interrupted, killed, crashed) not yet retried, unless another
    trial already covers its parameters. Returns the numbers of the trials queued again.

    Optuna's own retry callback makes the copy, so a grid trial keeps its grid point
    (even one killed before its parameters were drawn).
    """
    import optuna
    from optuna.trial import TrialState

    def key(params: Mapping[str, Any]) -> str:
        return canonical_json({k: params.get(k) for k in space.values})

    trials = study.get_trials(deepcopy=False)
    covered = {key(t.params) for t in trials if t.state != TrialState.FAIL}
    covered |= {key(t.system_attrs.get("fixed_params", {})) for t in trials if t.state == TrialState.WAITING}
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback()
    queued = []
    for t in trials:
        if t.state != TrialState.FAIL or t.number in retried:
            continue
        if set(t.params) == set(space.values):
            if key(t.params) in covered:
                continue
            covered.add(key(t.params))
        retry(study, t)
        queued.append(t.number)
    return queued


def covered_points(study, space: SearchSpace) -> int:
    """How many combinations of the space have a completed or pruned trial."""
    from optuna.trial import TrialState

    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    done = {canonical_json(t.params) for t in finished}
    return sum(canonical_json(c) in done for c in space.combinations())


def grid_covered(study, space: SearchSpace) -> bool:
    """Has every combination of the space a completed or pruned trial?"""
    return covered_points(study, space) == space.grid_size


def finished_trials(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def ranked_trials(study) -> list:
    """Completed trials best first, then pruned, failed and running ones by number."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    sign = -1.0 if study.direction.name == "MAXIMIZE" else 1.0
    complete = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: (sign * t.value, t.number))
    rest = sorted((t for t in trials if t.state != TrialState.COMPLETE), key=lambda t: t.number)
    return complete + rest


def best_spec_yaml(spec_dict: dict[str, Any], name: str, header: str) -> str:
    """A spec file for the best trial: `name`, the trial's spec, no claims."""
    import yaml

    spec = dict(spec_dict, name=name, claims=[])
    parse_spec(spec, source=name)  # what we write must load
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    return comment + yaml.safe_dump(spec, sort_keys=False, default_flow_style=None, width=100)


# --- Workers: one study, several processes or machines ---------------------------------------
# Optuna's samplers decide on a trial's parameters without a lock, so two workers can draw the
# same grid point (the GridSampler hands out running points once none is left unstarted) and a
# random or resumed search can draw a spec already running elsewhere. What makes "trained once"
# hold is a claim per spec: creating a study is the one write every RDB storage makes atomic
# (a unique study name), so the claim is a tiny study named after the spec. A trial that finds
# its spec claimed by a running trial waits for it and takes its value; a claim whose trial
# failed (killed, interrupted, crashed) is superseded by the next generation's claim.

CLAIM_POLL_S = 2.0


def claim_name(study_name: str, spec_hash: str, generation: int) -> str:
    return f"{study_name}::claim::{spec_hash[:16]}::{generation}"


def claim_spec(study, spec_hash: str, trial_number: int, worker: str,
               ownerless_is_dead: bool = False) -> dict[str, Any] | None:
    """Claim `spec_hash` for this trial; None when claimed, else the owner (`{"trial", "worker"}` or {}:
    a claim made a moment ago, whose owner is not written yet; `ownerless_is_dead` passes over it)."""
    import optuna
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    storage = study._storage
    generation = 0
    while True:
        name = claim_name(study.study_name, spec_hash, generation)
        try:
            claim_id = storage.create_new_study([StudyDirection.MINIMIZE], name)
        except optuna.exceptions.DuplicatedStudyError:
            owner = storage.get_study_user_attrs(storage.get_study_id_from_name(name)).get("owner") or {}
            if owner.get("trial") == trial_number and owner.get("worker") == worker:
                return None  # our own claim, asked again
            state = _trial_state(study, owner.get("trial"))
            if state == TrialState.FAIL or (not owner and ownerless_is_dead):
                generation += 1  # its trial failed (or its maker died making it): the next claim is free
                continue
            return owner
        storage.set_study_user_attr(claim_id, "owner", {"trial": trial_number, "worker": worker})
        return None


def _trial_state(study, number: int | None):
    if number is None:
        return None
    for t in study.get_trials(deepcopy=False):
        if t.number == number:
            return t.state
    return None


def run_study(study, space: SearchSpace, objective, target: int, grid: bool) -> None:
    """Run trials until `target` grid points are covered (grid: a trial that copied another's value
    covers nothing new) or `target` trials are finished; failed trials are queued again first."""
    while (covered_points(study, space) if grid else finished_trials(study)) < target:
        queued = retry_failed(study, space)
        if queued:
            print(f"[explore] queued again the failed trial(s) {', '.join(map(str, queued))}")
        study.optimize(objective, n_trials=1)


class TrialObjective:
    """One Optuna trial: the spec for its parameters, a run record on the local platform, the metric."""

    def __init__(self, study, space, base: ExperimentSpec, metric: str, platform, deterministic: bool, study_name: str):
        self.study, self.space, self.base, self.metric = study, space, base, metric
        self.platform, self.deterministic, self.study_name = platform, deterministic, study_name
        self.worker = uuid.uuid4().hex  # this process, in the claims it makes

    def __call__(self, trial) -> float:
        import optuna

        params = self.space.suggest(trial)
        shown = params_text(params)
        try:
            spec, notes = trial_spec(self.base, params, name=f"{self.base.name}-trial-{trial.number}",
                                     description=f"explore study {self.study_name}, trial {trial.number}: {shown}")
            from core.experiment import check_architecture  # Keras's shape rules; TensorFlow is loaded by now

            check_architecture(spec)
        except (InfeasibleSpec, SpecError) as e:
            reason = str(e).split(": ", 1)[-1] if isinstance(e, SpecError) else str(e)
            trial.set_user_attr("pruned_reason", reason)
            print(f"[explore] trial {trial.number} ({shown}) pruned: {reason}")
            raise optuna.TrialPruned(reason) from None
        trial.set_user_attr("spec_hash", spec.hash)
        trial.set_user_attr("spec", spec.to_dict())
        if notes:
            trial.set_user_attr("notes", notes)
        twin = self.twin(spec.hash, trial.number) or self.wait_for_claim(spec.hash, trial, shown)
        if twin is not None:  # a random, resumed or concurrent search drew a spec already run: reuse its record
            for key in ("run_id", "record", "metrics", "seconds"):
                trial.set_user_attr(key, twin.user_attrs.get(key))
            trial.set_user_attr("duplicate_of", twin.number)
            print(f"[explore] trial {trial.number} ({shown}) = trial {twin.number}: not run again")
            if twin.state.name == "PRUNED":
                trial.set_user_attr("pruned_reason", twin.user_attrs.get("pruned_reason"))
                raise optuna.TrialPruned(f"as trial {twin.number}")
            return twin.value
        print(f"[explore] trial {trial.number}: {shown}" + (f" ({'; '.join(notes)})" if notes else ""))
        started = time.perf_counter()
        record = self.platform.run(spec, deterministic=self.deterministic)
        import keras

        keras.backend.clear_session()  # drop this model's graph state before the next trial
        run = read_run_json(record)
        metrics = run["metrics"]
        trial.set_user_attr("run_id", run["run_id"])
        trial.set_user_attr("record", str(record))
        trial.set_user_attr("metrics", metrics)
        trial.set_user_attr("seconds", time.perf_counter() - started)
        value = metrics.get(METRICS[self.metric][0])
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            trial.set_user_attr("pruned_reason", f"{self.metric} is {value} (training diverged?)")
            raise optuna.TrialPruned(f"{self.metric} is {value}")
        print(f"[explore] trial {trial.number}: {self.metric} {value:.4f} ({run['run_id']})")
        return float(value)

    def twin(self, spec_hash: str, number: int):
        from optuna.trial import TrialState

        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.number != number and t.user_attrs.get("spec_hash") == spec_hash:
                return t
        return None

    def wait_for_claim(self, spec_hash: str, trial, shown: str):
        """None once this trial holds the spec's claim; else the finished trial that held it."""
        import optuna
        from optuna.trial import TrialState

        said = False
        ownerless_since: float | None = None
        grace = 4 * (self.study._storage.get_heartbeat_interval() or 30)
        while True:
            dead = ownerless_since is not None and time.monotonic() - ownerless_since > grace
            owner = claim_spec(self.study, spec_hash, trial.number, self.worker, ownerless_is_dead=dead)
            if owner is None:
                return None
            if not owner and ownerless_since is None:
                ownerless_since = time.monotonic()  # its maker writes the owner right after creating it
            state = _trial_state(self.study, owner.get("trial"))
            if state in (TrialState.COMPLETE, TrialState.PRUNED):
                return next(t for t in self.study.get_trials(deepcopy=False) if t.number == owner["trial"])
            if not said:
                print(f"[explore] trial {trial.number} ({shown}): the same spec is running as trial "
                      f"{owner.get('trial')} in another worker; waiting for it")
                said = True
            with warnings.catch_warnings():  # a killed owner's trial is failed here, then claimed anew
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)
            time.sleep(CLAIM_POLL_S)


def params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


class ExploreReport:
    """The study's trials, best first."""

    def __init__(self, study, space, metric: str, name: str, storage: str):
        self.study, self.space, self.metric, self.name, self.storage = study, space, metric, name, storage
        self.trials = ranked_trials(study)

    def to_dict(self) -> dict[str, Any]:
        trials = []
        for rank, t in enumerate(self.trials, 1):
            trials.append({"rank": rank if t.state.name == "COMPLETE" else None, "number": t.number,
                           "state": t.state.name.lower(), "value": t.value, "params": t.params,
                           **{k: t.user_attrs.get(k) for k in ("run_id", "record", "metrics", "seconds", "spec_hash",
                                                               "duplicate_of", "pruned_reason", "notes")}})
        return {"title": f"explore {self.name}", "study": self.name, "storage": self.storage,
                "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "metric": self.metric, "direction": self.study.direction.name.lower(),
                "search_space": self.space.to_dict(), "trials": trials}

    def markdown(self) -> str:
        rows = []
        for rank, t in enumerate(self.trials, 1):
            m = t.user_attrs.get("metrics") or {}
            state = t.state.name.lower()
            note = (f"same spec as trial {t.user_attrs['duplicate_of']}" if "duplicate_of" in t.user_attrs
                    else t.user_attrs.get("pruned_reason") or ("" if state == "complete" else state))
            rows.append([rank if state == "complete" else "—", t.number, params_text(t.params),
                         _num(t.value), _num(m.get("test_accuracy")), _num(m.get("test_loss")),
                         format_seconds(t.user_attrs["seconds"]) if t.user_attrs.get("seconds") else "—",
                         t.user_attrs.get("run_id") or "—", note])
        lines = [f"# Explore: {self.name}", "",
                 f"Optuna study `{self.name}` ({self.storage}), {len(self.trials)} trials, "
                 f"{self.study.direction.name.lower()} {self.metric}.", "",
                 markdown_table(["rank", "trial", "parameters", self.metric, "test accuracy", "test loss",
                                 "time", "run", "note"], rows)]
        return "\n".join(lines)


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "—"


def write_best(study, path: Path, name: str, metric: str) -> None:
    """The best trial's spec as a YAML file (atomically); a note on stderr when no trial completed."""
    try:
        best = study.best_trial
    except ValueError:
        print("[explore] no completed trial yet: nothing written to --write-best", file=sys.stderr)
        return
    header = (f"Best trial ({best.number}) of Optuna study {name!r}: {metric} {best.value:.4f}, "
              f"{params_text(best.params)}.\nWritten by `python run.py explore --write-best`; "
              "the spec is the trial's exactly (its data limits included).")
    text = best_spec_yaml(best.user_attrs["spec"], path.stem, header)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    print(f"best trial {best.number} written as a spec: {path} (run it: python run.py --spec {path})")
