"""What one run says about itself, and what differs between two runs, each difference classed by its cause.

`run_fields` gives the side-by-side table's values; `facets` flattens
everything about a run that could explain a different result into
`name -> value` (names are run.json paths, `environment.` left off);
`differences` lists the facets two runs disagree on; `cause_of` puts each in
one of three classes:

    experiment  what was asked for: the seed, the data digest, the code that computes
    numerics    what computes it: libraries, backend, device and driver, CPU kernel
                features, thread counts, determinism switches, XLA, oneDNN, numerics variables
    inert       what cannot move a number: platform name, paths and ids, bundle file
                hashes, platform SDKs and h5py, logging variables, the harness commit
                when the code digest says the computing code is the same

A facet this module does not know is classed *numerics*: calling a real
cause inert could make a numerics change look like nondeterminism.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import re
from typing import Any

from core import record
from core.environment import touches_numerics

EXPERIMENT, NUMERICS, INERT = "experiment", "numerics", "inert"
CAUSES = (EXPERIMENT, NUMERICS, INERT)

# Spec keys that do not make another experiment: a spec's own hash covers the seed (so seeds could never be
# compared) and where the data came from (so a Kaggle input folder and the local cache could never be compared).
NOT_THE_EXPERIMENT = ("name", "description", "claims", "seed")
NOT_THE_EXPERIMENT_DATA = ("source", "path")
VERSION_PACKAGES = ("tensorflow", "keras", "jax", "torch", "numpy")
# Recorded packages that cannot move a number: platform SDKs, and h5py (it only saves the model).
INERT_PACKAGES = {"comet_ml", "openml", "kaggle", "kagglesdk", "h5py"}
# Variables TensorFlow and its OpenMP runtime set in os.environ when imported: the second run of a
# `repeat` process recorded them, the first did not, yet both ran with them. Not a difference at all.
SET_BY_IMPORTS = {"TPU_ML_PLATFORM", "TPU_ML_PLATFORM_VERSION", "KMP_DUPLICATE_LIB_OK", "KMP_INIT_AT_FORK"}
# environment.runtime keys that repeat another facet are left out.
_RUNTIME_REPEATS = {"keras_backend", "keras", "tensorflow", "devices", "threads"}
# A CPU's model and core count select no kernel: the kernels follow cpu.numeric_flags, the thread pools are
# recorded in determinism.threads.
_INERT_CPU = {"cpu.model", "cpu.logical_cores", "cpu.affinity_cores"}
CODE_DIGEST = "harness.code_sha256"


# --- Reading values safely ------------------------------------------------------------------

def as_dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def finite_number(value: Any, low: float = -math.inf, high: float = math.inf) -> float | None:
    """A real number in [low, high], else None: NaN, infinities, bools, strings and ints too big for a float are not."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) and low <= number <= high else None


def flat(prefix: str, value: Any) -> dict[str, str]:
    """core.record.flatten with facet strings for values; a list of plain values stays one facet
    (a CPU's flags, a GPU list), a list of objects is indexed (`layers.0.type`). Nothing for an empty object."""
    if isinstance(value, dict) and not value:
        return {}
    return {k: scalar(v) for k, v in record.flatten(_join_plain_lists(value), f"{prefix}." if prefix else "").items()}


def _join_plain_lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _join_plain_lists(v) for k, v in value.items()}
    if isinstance(value, list):
        if any(isinstance(v, (dict, list)) for v in value):
            return [_join_plain_lists(v) for v in value]
        return ", ".join(scalar(v) for v in value) if value else "none"
    return value


def scalar(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, int) and abs(value) > 10 ** 30:
        return f"{str(value)[:12]}… ({len(str(abs(value)))} digits)"  # a huge int is still one cell
    return str(value)


# --- The table's values -----------------------------------------------------------------------

def device_name(run: dict[str, Any]) -> str:
    """`GPU <name>` if the run had one, else the CPU model and its cores."""
    env = as_dict(run.get("environment"))
    gpus = [str(g.get("name", "?")) for g in env.get("gpus") or [] if isinstance(g, dict)]
    if gpus:
        return "GPU " + " + ".join(gpus)
    cpu = as_dict(env.get("cpu"))
    model = " ".join(re.sub(r"\(R\)|\(TM\)|\bCPU\b|\bProcessor\b|\b\d+-Core\b", "", str(cpu.get("model") or "")).split())
    cores = finite_number(cpu.get("affinity_cores") or cpu.get("logical_cores"), 1, 1e6)
    return (model or "unknown CPU") + (f", {int(cores)} cores" if cores else "")


def run_fields(run: dict[str, Any]) -> dict[str, Any]:
    """The side-by-side table's values for one run, full precision (the renderers shorten them).

    Numbers that cannot be true (NaN, infinities, an accuracy outside [0, 1],
    negative or absurd seconds) are None: a record is untrusted input.
    """
    env, det = as_dict(run.get("environment")), as_dict(run.get("determinism"))
    runtime, metrics, timings = as_dict(env.get("runtime")), as_dict(run.get("metrics")), as_dict(run.get("timings"))
    spec = as_dict(run.get("spec"))
    raw_seconds = timings.get("epoch_seconds") if isinstance(timings.get("epoch_seconds"), list) else []
    epoch_seconds = [s for s in (finite_number(x, 0, 1e9) for x in raw_seconds) if s is not None]
    versions = {"python": env.get("python")} if env.get("python") else {}
    versions.update({p: v for p in VERSION_PACKAGES if (v := _package(env, p))})
    threads = det.get("threads") if isinstance(det.get("threads"), dict) else runtime.get("threads")
    return {
        "run_id": run.get("run_id"),
        "platform": run.get("platform"),
        "spec_hash": run.get("spec_hash"),
        "seed": run.get("seed"),
        "data_digest": run.get("data_digest"),
        "data_source": as_dict(spec.get("data")).get("source"),
        "backend": det.get("backend") or runtime.get("keras_backend"),
        "device": device_name(run),
        "versions": versions,
        "op_determinism": det.get("op_determinism"),
        "threads": threads if isinstance(threads, dict) else None,
        "epochs": {"ran": len(raw_seconds), "of": spec.get("epochs")},
        "test_accuracy": finite_number(metrics.get("test_accuracy"), 0, 1),
        "test_loss": finite_number(metrics.get("test_loss")),
        "epoch_seconds": math.fsum(epoch_seconds) / len(epoch_seconds) if epoch_seconds else None,
        "total_seconds": finite_number(timings.get("total_seconds"), 0, 1e9),
        "weights_sha256": run.get("weights_sha256"),
        "predictions_sha256": run.get("predictions_sha256"),
        "status": run.get("status"),
    }


def _package(env: dict[str, Any], name: str) -> Any:
    """A package's version; for tensorflow and keras, what the running library said when the distribution
    has another name (`tensorflow-cpu`, `tf-nightly` record no `tensorflow` package)."""
    version = as_dict(env.get("packages")).get(name)
    if not version and name in ("tensorflow", "keras"):
        version = as_dict(env.get("runtime")).get(name)
    return version


# --- Facets -------------------------------------------------------------------------------------

def facets(run: dict[str, Any]) -> dict[str, str]:
    """What about a run could explain a different result, flattened to `name -> value`.

    Names are paths in run.json (`environment.` left off): data_digest, seed,
    platform, python, packages.*, determinism.*, runtime.*, cpu.*, gpus, env.*,
    harness.*, platform_info.*. New keys a platform records show up by themselves.
    """
    env, det = as_dict(run.get("environment")), as_dict(run.get("determinism"))
    out: dict[str, str] = {
        "data_digest": scalar(run.get("data_digest")),
        "seed": scalar(run.get("seed")),
        "platform": scalar(run.get("platform")),
        "python": scalar(env.get("python")),
    }
    packages = {**as_dict(env.get("packages"))}
    for name in ("tensorflow", "keras"):
        packages[name] = _package(env, name)
    out.update(flat("packages", packages))
    out.update(flat("determinism", {k: v for k, v in det.items() if k != "seed"}))
    runtime = {k: v for k, v in as_dict(env.get("runtime")).items() if k not in _RUNTIME_REPEATS}
    if not det.get("backend") and as_dict(env.get("runtime")).get("keras_backend"):
        runtime["keras_backend"] = env["runtime"]["keras_backend"]
    out.update(flat("runtime", runtime))
    out.update(flat("cpu", as_dict(env.get("cpu"))))
    gpus = [g for g in env.get("gpus") or [] if isinstance(g, dict)]
    out["gpus"] = "; ".join(f"{g.get('name')} (driver {g.get('driver')})" for g in gpus) or "none"
    out.update(flat("env", {k: v for k, v in as_dict(env.get("env")).items() if k not in SET_BY_IMPORTS}))
    harness = as_dict(env.get("harness"))
    out["harness.commit"] = scalar(harness.get("commit"))[:12]
    out["harness.dirty"] = scalar(harness.get("dirty"))
    out[CODE_DIGEST] = scalar(harness.get("code_sha256"))
    out.update(flat("platform_info", {k: v for k, v in as_dict(env.get("platform_info")).items() if k != "name"}))
    return out


def cause_of(name: str, fa: dict[str, str], fb: dict[str, str]) -> str:
    """The cause class of a differing facet (see the module docstring); `fa`, `fb` are the two runs' facets."""
    if name in ("seed", "data_digest", CODE_DIGEST):
        return EXPERIMENT
    if name in ("harness.commit", "harness.dirty"):
        # The commit moves with every README edit; only the digest of the computing code says whether the
        # experiment's code changed. Without a digest on both sides the commit is all there is to go by.
        known = fa.get(CODE_DIGEST, "unset") != "unset" and fb.get(CODE_DIGEST, "unset") != "unset"
        return INERT if known else EXPERIMENT
    if name == "platform" or name.startswith("platform_info.") or name in _INERT_CPU:
        return INERT
    if name.startswith("packages."):
        return INERT if name.split(".", 1)[1] in INERT_PACKAGES else NUMERICS
    if name.startswith("env."):
        return NUMERICS if touches_numerics(name[4:]) else INERT
    return NUMERICS  # python, determinism.*, runtime.*, gpus, cpu.numeric_flags and anything new


# The order a person wants to read differences in: the data, the seed, then the software, then the machine.
_FACET_ORDER = ("data_digest", "seed", CODE_DIGEST, "platform", "packages.", "python", "determinism.", "runtime.",
                "gpus", "cpu.", "env.", "harness.", "platform_info.")


@functools.lru_cache(maxsize=8192)
def _facet_rank(name: str) -> tuple[int, str]:
    for i, prefix in enumerate(_FACET_ORDER):
        if name == prefix or (prefix.endswith(".") and name.startswith(prefix)):
            return i, name
    return len(_FACET_ORDER), name


_SHORT = {"determinism.op_determinism": "op determinism", "determinism.threads.intra_op": "intra-op threads",
          "determinism.threads.inter_op": "inter-op threads", "determinism.jit_compile": "XLA jit_compile",
          "determinism.steps_per_execution": "steps per execution", "runtime.xla_jit": "XLA auto-jit",
          "runtime.onednn": "oneDNN", CODE_DIGEST: "code digest", "data_digest": "data digest"}


@dataclasses.dataclass(frozen=True)
class Difference:
    """One thing that differs between two runs (or two specs): a run.json path, both values, and its cause."""

    what: str
    a: str
    b: str
    cause: str = NUMERICS

    @property
    def short(self) -> str:
        """The name as the pair line says it: `tensorflow`, `op determinism`, `env.OMP_NUM_THREADS`."""
        if self.what in _SHORT:
            return _SHORT[self.what]
        for prefix in ("packages.", "runtime.", "determinism."):
            if self.what.startswith(prefix):
                return self.what[len(prefix):]
        return self.what

    def describe(self, a: str = "A", b: str = "B", short: bool = False) -> str:
        name = self.short if short else self.what
        if self.what == "gpus":  # the device, as a person names it
            return f"{_device(self.a)} → {_device(self.b)}"
        if self.what == "cpu.numeric_flags":  # long lists: say what only one side has
            fa, fb = set(self.a.split(", ")), set(self.b.split(", "))
            parts = [f"only {a}: {', '.join(sorted(fa - fb))}" if fa - fb else "",
                     f"only {b}: {', '.join(sorted(fb - fa))}" if fb - fa else ""]
            return f"{name} ({'; '.join(p for p in parts if p)})"
        if self.what in ("data_digest", CODE_DIGEST, "harness.commit"):
            return f"{name} {self.a[:8]} → {self.b[:8]}"
        return f"{name} {_cut(self.a)} → {_cut(self.b)}"


def _device(gpus: str) -> str:
    if gpus in ("none", "unset"):
        return "CPU" if gpus == "none" else "device unset"
    names = [g.split(" (driver")[0] for g in gpus.split("; ")]
    return "GPU " + " + ".join(re.sub(r"^(Tesla|NVIDIA) ", "", n) for n in names)


def _cut(text: str, cap: int = 40) -> str:
    return text if len(text) <= cap else text[: cap - 1] + "…"


def differences(fa: dict[str, str], fb: dict[str, str]) -> list[Difference]:
    """The facets whose values differ, in reading order, each with its cause class."""
    keys = sorted((k for k in set(fa) | set(fb) if fa.get(k, "unset") != fb.get(k, "unset")), key=_facet_rank)
    return [Difference(k, fa.get(k, "unset"), fb.get(k, "unset"), cause_of(k, fa, fb)) for k in keys]


# --- Experiments ---------------------------------------------------------------------------------

def experiment_dict(run: dict[str, Any]) -> dict[str, Any] | None:
    """The spec minus what does not make another experiment; None when the record has no spec."""
    spec = run.get("spec")
    if not isinstance(spec, dict):
        return None
    d = {k: v for k, v in spec.items() if k not in NOT_THE_EXPERIMENT}
    if isinstance(d.get("data"), dict):
        d["data"] = {k: v for k, v in d["data"].items() if k not in NOT_THE_EXPERIMENT_DATA}
    return d


def canonical_json(obj: Any) -> str:
    """The JSON core.spec hashes (sorted keys, no spaces); written out here so compare needs no YAML import."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def experiment_hash(run: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of `experiment_dict` (as core.spec hashes a spec)."""
    d = experiment_dict(run)
    if d is None:
        return f"spec_hash:{run.get('spec_hash')}"
    try:
        return hashlib.sha256(canonical_json(d).encode()).hexdigest()
    except (TypeError, ValueError):
        return f"spec_hash:{run.get('spec_hash')}"


def spec_facets(spec: dict[str, Any] | None) -> dict[str, str]:
    """A spec flattened to `optimizer.learning_rate`, `layers.7.rate`, … -> value."""
    return flat("", spec) if spec else {}


def spec_summary(spec: dict[str, Any] | None) -> str:
    """`canonical: 12 epochs, batch 128, adam lr 0.001, 9 layers, all 60000/10000 images`."""
    if not spec:
        return "no spec in the record"
    opt = as_dict(spec.get("optimizer"))
    data = as_dict(spec.get("data"))
    train, test = data.get("train_limit"), data.get("test_limit")
    images = "all images" if not train and not test else f"{scalar(train or 'all')} train / {scalar(test or 'all')} test images"
    epochs = spec.get("epochs")
    layers = spec.get("layers") if isinstance(spec.get("layers"), list) else []
    return (f"{scalar(spec.get('name', 'unnamed'))}: {scalar(epochs)} epoch{'s' if epochs != 1 else ''}, "
            f"batch {scalar(spec.get('batch_size'))}, {scalar(opt.get('name'))} lr {scalar(opt.get('learning_rate'))}, "
            f"{len(layers)} layers, split {scalar(spec.get('split'))}, {images}")
