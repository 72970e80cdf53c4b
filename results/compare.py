"""Compare run records: group them by experiment, line them up, give every pair a verdict.

The story, top to bottom: `compare_paths` finds the records (the pluggable
loaders in results.loaders), `group_runs` puts the runs of one experiment
together, and each `Group` lines its runs up row by row (`ROWS`), measures the
noise band, and gives every pair of its runs a verdict:

    identical         equal weights_sha256
    same predictions  equal predictions_sha256
    within noise      |delta test accuracy| inside the experiment's noise band
    divergent         none of these

with what differs between the two runs and could explain it (`facets`), and
how far their test predictions agree. The renderers (results/render.py,
results/html.py) only format a `Comparison`. Numpy only: no TensorFlow here.

One experiment is the spec without its seed and without where the data came
from: a spec's own `spec_hash` covers the seed (so seeds could never be
compared) and the data source (so a Kaggle input folder and the local cache
could never be compared). The data itself is compared by its digest.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from results.loaders import LoadedRun, Skipped, discover
from results.testset import TestLabels

VERDICTS = ("identical", "same predictions", "within noise", "divergent")
IDENTICAL, SAME_PREDICTIONS, WITHIN_NOISE, DIVERGENT = range(4)
NOT_COMPARED = -1
DEFAULT_TOLERANCE_PP = 0.3
MIN_SEEDS_FOR_BAND = 3
# A 95% band for the difference of two runs of independent seeds: 1.96 * sqrt(2) * sd.
BAND_FACTOR = 1.96 * math.sqrt(2)
# Spec keys that do not make another experiment (see the module docstring).
NOT_THE_EXPERIMENT = ("name", "description", "claims", "seed")
NOT_THE_EXPERIMENT_DATA = ("source", "path")
TIMING_SPREAD = 1.25  # timing rows are marked only when the slowest run is this much slower than the fastest


# --- What one run says about itself ----------------------------------------------

@dataclasses.dataclass(frozen=True)
class Row:
    key: str
    label: str
    marked: str = "differs"  # "differs": marked when values differ; "spread": timings; "never"


ROWS = (
    Row("run_id", "run", "never"),
    Row("platform", "platform"),
    Row("spec_hash", "spec hash"),
    Row("seed", "seed"),
    Row("data_digest", "data digest"),
    Row("data_source", "data source"),
    Row("backend", "backend"),
    Row("device", "device"),
    Row("versions", "library versions"),
    Row("op_determinism", "op determinism"),
    Row("threads", "threads intra/inter"),
    Row("epochs", "epochs"),
    Row("test_accuracy", "test accuracy"),
    Row("test_loss", "test loss"),
    Row("epoch_seconds", "seconds / epoch", "spread"),
    Row("total_seconds", "total time", "spread"),
    Row("weights_sha256", "weights"),
    Row("predictions_sha256", "predictions"),
    Row("status", "status"),
)
VERSION_PACKAGES = ("tensorflow", "keras", "jax", "torch", "numpy")


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def device_name(run: dict[str, Any]) -> str:
    """`GPU <name>` if the run had one, else the CPU model and its cores."""
    env = _dict(run.get("environment"))
    gpus = [g.get("name", "?") for g in env.get("gpus") or [] if isinstance(g, dict)]
    if gpus:
        return "GPU " + " + ".join(gpus)
    cpu = _dict(env.get("cpu"))
    model = " ".join(re.sub(r"\(R\)|\(TM\)|\bCPU\b|\bProcessor\b|\b\d+-Core\b", "", str(cpu.get("model") or "")).split())
    cores = cpu.get("affinity_cores") or cpu.get("logical_cores")
    return (model or "unknown CPU") + (f", {cores} cores" if cores else "")


def run_fields(run: dict[str, Any]) -> dict[str, Any]:
    """The side-by-side table's values for one run, full precision (the renderers shorten them)."""
    env, det = _dict(run.get("environment")), _dict(run.get("determinism"))
    runtime, metrics, timings = _dict(env.get("runtime")), _dict(run.get("metrics")), _dict(run.get("timings"))
    packages, spec = _dict(env.get("packages")), _dict(run.get("spec"))
    epoch_seconds = [s for s in timings.get("epoch_seconds") or [] if _number(s) is not None]
    versions = {"python": env.get("python")} if env.get("python") else {}
    versions.update({p: packages[p] for p in VERSION_PACKAGES if packages.get(p)})
    threads = det.get("threads") if isinstance(det.get("threads"), dict) else runtime.get("threads")
    return {
        "run_id": run.get("run_id"),
        "platform": run.get("platform"),
        "spec_hash": run.get("spec_hash"),
        "seed": run.get("seed"),
        "data_digest": run.get("data_digest"),
        "data_source": _dict(spec.get("data")).get("source"),
        "backend": det.get("backend") or runtime.get("keras_backend"),
        "device": device_name(run),
        "versions": versions,
        "op_determinism": det.get("op_determinism"),
        "threads": threads if isinstance(threads, dict) else None,
        "epochs": {"ran": len(epoch_seconds), "of": spec.get("epochs")},
        "test_accuracy": _number(metrics.get("test_accuracy")),
        "test_loss": _number(metrics.get("test_loss")),
        "epoch_seconds": sum(epoch_seconds) / len(epoch_seconds) if epoch_seconds else None,
        "total_seconds": _number(timings.get("total_seconds")),
        "weights_sha256": run.get("weights_sha256"),
        "predictions_sha256": run.get("predictions_sha256"),
        "status": run.get("status"),
    }


def _flat(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}", v, out)
    elif isinstance(value, list):
        out[prefix] = ", ".join(_scalar(v) for v in value) if value else "none"
    else:
        out[prefix] = _scalar(value)


def _scalar(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


# Recorded packages that cannot move a number: platform SDKs, and h5py (it only saves the model).
NO_NUMERICS_PACKAGES = {"comet_ml", "openml", "kaggle", "kagglesdk", "h5py"}
# Variables TensorFlow and its OpenMP runtime set in os.environ when imported: the second run of a
# `repeat` process records them, the first does not, yet both ran with them.
SET_BY_IMPORTS = {"TPU_ML_PLATFORM", "TPU_ML_PLATFORM_VERSION", "KMP_DUPLICATE_LIB_OK", "KMP_INIT_AT_FORK"}
# Where a facet comes from in run.json; environment.runtime keys that repeat another facet are left out.
_RUNTIME_REPEATS = {"keras_backend", "keras", "tensorflow", "devices", "threads"}


def facets(run: dict[str, Any]) -> dict[str, str]:
    """What about a run could explain a different result, flattened to `name -> value`.

    Names are paths in run.json (`environment.` left off): data_digest, seed,
    platform, python, packages.*, determinism.*, runtime.*, cpu.*, gpus, env.*,
    harness.*, platform_info.*. New keys a platform records show up by themselves.
    """
    env, det = _dict(run.get("environment")), _dict(run.get("determinism"))
    out: dict[str, str] = {
        "data_digest": _scalar(run.get("data_digest")),
        "seed": _scalar(run.get("seed")),
        "platform": _scalar(run.get("platform")),
        "python": _scalar(env.get("python")),
    }
    _flat("packages", {k: v for k, v in _dict(env.get("packages")).items() if k not in NO_NUMERICS_PACKAGES}, out)
    _flat("determinism", {k: v for k, v in det.items() if k != "seed"}, out)
    runtime = {k: v for k, v in _dict(env.get("runtime")).items() if k not in _RUNTIME_REPEATS}
    if not det.get("backend") and _dict(env.get("runtime")).get("keras_backend"):
        runtime["keras_backend"] = env["runtime"]["keras_backend"]
    _flat("runtime", runtime, out)
    cpu = _dict(env.get("cpu"))
    _flat("cpu", cpu, out)
    gpus = [g for g in env.get("gpus") or [] if isinstance(g, dict)]
    out["gpus"] = "; ".join(f"{g.get('name')} (driver {g.get('driver')})" for g in gpus) or "none"
    _flat("env", {k: v for k, v in _dict(env.get("env")).items() if k not in SET_BY_IMPORTS}, out)
    harness = _dict(env.get("harness"))
    out["harness.commit"] = _scalar(harness.get("commit"))[:12]
    out["harness.dirty"] = _scalar(harness.get("dirty"))
    _flat("platform_info", {k: v for k, v in _dict(env.get("platform_info")).items() if k != "name"}, out)
    return out


# The order a person wants to read differences in: the data, the seed, then the software, then the machine.
_FACET_ORDER = ("data_digest", "seed", "platform", "packages.", "python", "determinism.", "runtime.", "gpus",
                "cpu.", "env.", "harness.", "platform_info.")


def _facet_rank(name: str) -> tuple[int, str]:
    for i, prefix in enumerate(_FACET_ORDER):
        if name == prefix or (prefix.endswith(".") and name.startswith(prefix)):
            return i, name
    return len(_FACET_ORDER), name


@dataclasses.dataclass(frozen=True)
class Difference:
    """One thing that differs between two runs (or two specs): a run.json path and both values."""

    what: str
    a: str
    b: str

    def describe(self, a: str = "A", b: str = "B") -> str:
        if self.what == "cpu.numeric_flags":  # long lists: say what only one side has
            fa, fb = set(self.a.split(", ")), set(self.b.split(", "))
            parts = [f"only {a}: {', '.join(sorted(fa - fb))}" if fa - fb else "",
                     f"only {b}: {', '.join(sorted(fb - fa))}" if fb - fa else ""]
            return f"{self.what} ({'; '.join(p for p in parts if p)})"
        return f"{self.what} {self.a} → {self.b}"


def differences(fa: dict[str, str], fb: dict[str, str]) -> list[Difference]:
    keys = sorted(set(fa) | set(fb), key=_facet_rank)
    return [Difference(k, fa.get(k, "unset"), fb.get(k, "unset")) for k in keys if fa.get(k, "unset") != fb.get(k, "unset")]


# --- Experiments ---------------------------------------------------------------------

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
    out: dict[str, str] = {}
    if spec:
        for key, value in spec.items():
            if key == "layers" and isinstance(value, list):
                for i, layer in enumerate(value):
                    _flat(f"layers.{i}", layer, out)
            else:
                _flat(key, value, out)
    return out


def spec_summary(spec: dict[str, Any] | None) -> str:
    """`canonical: 12 epochs, batch 128, adam lr 0.001, 9 layers, all 60000/10000 images`."""
    if not spec:
        return "no spec in the record"
    opt = _dict(spec.get("optimizer"))
    data = _dict(spec.get("data"))
    train, test = data.get("train_limit"), data.get("test_limit")
    images = "all images" if not train and not test else f"{train or 'all'} train / {test or 'all'} test images"
    epochs = spec.get("epochs")
    return (f"{spec.get('name', 'unnamed')}: {epochs} epoch{'s' if epochs != 1 else ''}, batch {spec.get('batch_size')}, "
            f"{opt.get('name')} lr {opt.get('learning_rate')}, {len(spec.get('layers') or [])} layers, "
            f"split {spec.get('split')}, {images}")


# --- The verdict ingredients ------------------------------------------------------------

@dataclasses.dataclass
class NoiseBand:
    """How far test accuracy moves with the seed alone, in percentage points."""

    pp: float
    origin: str  # "measured", "default" or "tolerance" (--tolerance given)
    seeds: list[int]
    sd_pp: float | None = None

    def describe(self) -> str:
        if self.origin == "measured":
            return (f"±{self.pp:.2f} pp, measured over {len(self.seeds)} seeds ({_seed_list(self.seeds)}): "
                    f"1.96·√2 × their standard deviation ({self.sd_pp:.3f} pp), a 95% band for two seeds")
        why = f"fewer than {MIN_SEEDS_FOR_BAND} seeds of this experiment ({len(self.seeds)})"
        source = "the default" if self.origin == "default" else "from --tolerance"
        return f"±{self.pp:.2f} pp, {source}: {why}; `python run.py repeat --seeds {MIN_SEEDS_FOR_BAND}` measures it"


def _seed_list(seeds: Sequence[int]) -> str:
    if len(seeds) > 6:
        return f"{', '.join(map(str, seeds[:3]))}, …, {seeds[-1]}"
    return ", ".join(map(str, seeds))


def noise_band(accuracy_by_seed: dict[Any, list[float]], tolerance_pp: float, tolerance_given: bool) -> NoiseBand:
    """1.96·√2 × the sd of the per-seed mean accuracy over >= 3 seeds; else the tolerance."""
    seeds = sorted(accuracy_by_seed, key=lambda s: (not isinstance(s, int), str(s) if not isinstance(s, int) else s))
    if len(seeds) >= MIN_SEEDS_FOR_BAND:
        means = np.array([np.mean(accuracy_by_seed[s]) for s in seeds]) * 100
        sd = float(np.std(means, ddof=1))
        return NoiseBand(BAND_FACTOR * sd, "measured", seeds, sd)
    return NoiseBand(tolerance_pp, "tolerance" if tolerance_given else "default", seeds)


@dataclasses.dataclass
class Agreement:
    """How far two runs' test predictions agree; counts are None where they cannot be known (see note)."""

    n: int | None = None
    same_class: int | None = None
    a_right_b_wrong: int | None = None
    b_right_a_wrong: int | None = None
    note: str | None = None

    @property
    def share(self) -> float | None:
        return self.same_class / self.n if self.n and self.same_class is not None else None


@dataclasses.dataclass
class RunView:
    """One loaded run as compare sees it: its column label, table values and facets."""

    label: str
    loaded: LoadedRun
    fields: dict[str, Any]
    excluded: str | None = None  # why the run gets no verdicts (failed, no accuracy)
    _facets: dict[str, str] | None = dataclasses.field(default=None, repr=False)

    @property
    def facets(self) -> dict[str, str]:
        """What could explain a difference (see `facets`); worked out only for runs whose pairs are shown."""
        if self._facets is None:
            self._facets = facets(self.loaded.run)
        return self._facets

    @property
    def run(self) -> dict[str, Any]:
        return self.loaded.run

    @property
    def run_id(self) -> str:
        return str(self.fields["run_id"])

    @property
    def accuracy(self) -> float | None:
        return self.fields["test_accuracy"]


@dataclasses.dataclass
class Pair:
    a: RunView
    b: RunView
    verdict: str
    delta_pp: float  # test accuracy of b minus a, percentage points
    differences: list[Difference]
    agreement: Agreement


# --- One experiment: its runs side by side, and a verdict for each pair -----------------

def column_label(i: int) -> str:
    """A, B, …, Z, AA, AB, …"""
    label = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        label = chr(65 + r) + label
    return label


class Group:
    """The runs of one experiment, lined up and compared pairwise."""

    def __init__(self, key: str, loaded: Sequence[LoadedRun], tolerance_pp: float, tolerance_given: bool,
                 labels: TestLabels):
        self.key = key
        ordered = sorted(loaded, key=lambda r: (str(r.run.get("started_at") or ""), str(r.run.get("run_id"))))
        self.runs = [RunView(column_label(i), r, run_fields(r.run)) for i, r in enumerate(ordered)]
        for view in self.runs:
            if view.fields["status"] != "completed":
                error = view.run.get("error")
                view.excluded = f"status {view.fields['status']}" + (f" ({_first_line(error)})" if error else "")
            elif view.accuracy is None:
                view.excluded = "the record has no test accuracy"
        self.compared = [v for v in self.runs if v.excluded is None]
        self.spec = experiment_dict(ordered[0].run) if ordered else None
        names = [str(_dict(r.run.get("spec")).get("name")) for r in ordered]
        self.name = max(set(names), key=names.count) if names else "?"
        self.spec_differences: list[Difference] = []  # against the nearest other experiment
        self.nearest: Group | None = None
        by_seed: dict[Any, list[float]] = {}
        for v in self.compared:
            seed = v.fields["seed"]
            by_seed.setdefault(seed if isinstance(seed, (int, str)) else repr(seed), []).append(v.accuracy)
        self.band = noise_band(by_seed, tolerance_pp, tolerance_given)
        self.differing_rows = [row.key for row in ROWS if _row_differs(row, [v.fields[row.key] for v in self.runs])]
        self._labels = labels
        self._predictions: dict[int, tuple[np.ndarray | None, str | None]] = {}
        self._labels_of: dict[int, tuple[np.ndarray | None, str | None]] = {}
        self._same: np.ndarray | None = None
        self._right_wrong: np.ndarray | None = None
        self.verdicts = self._verdict_matrix()
        self._difference_cache: dict[tuple[int, int], list[Difference]] = {}
        self._signatures: dict[tuple, int] = {}
        self._facet_id: dict[int, int] = {}

    @property
    def short_key(self) -> str:
        return self.key[:8] if not self.key.startswith("spec_hash:") else self.key

    @property
    def summary(self) -> str:
        return spec_summary(self.spec and {**self.spec, "name": self.name})

    # The verdicts -------------------------------------------------------------------------

    def _verdict_matrix(self) -> np.ndarray:
        k = len(self.compared)
        acc = np.array([v.accuracy for v in self.compared], dtype=float) * 100
        verdicts = np.full((k, k), DIVERGENT, dtype=np.int8)
        verdicts[np.abs(acc[:, None] - acc[None, :]) <= self.band.pp + 1e-9] = WITHIN_NOISE
        for key, verdict in (("predictions_sha256", SAME_PREDICTIONS), ("weights_sha256", IDENTICAL)):
            codes = _codes([v.fields[key] for v in self.compared])
            verdicts[(codes[:, None] == codes[None, :]) & (codes[:, None] >= 0)] = verdict
        np.fill_diagonal(verdicts, NOT_COMPARED)
        return verdicts

    def verdict_counts(self) -> dict[str, int]:
        upper = self.verdicts[np.triu_indices(len(self.compared), 1)]
        return {name: int((upper == code).sum()) for code, name in enumerate(VERDICTS)}

    @property
    def n_pairs(self) -> int:
        k = len(self.compared)
        return k * (k - 1) // 2

    def pair(self, i: int, j: int) -> Pair:
        """The verdict for compared runs i and j (indices into `compared`)."""
        a, b = self.compared[i], self.compared[j]
        ids = (self._signature(i), self._signature(j))
        if ids not in self._difference_cache:  # runs of one machine share their facets: diff each combination once
            self._difference_cache[ids] = differences(a.facets, b.facets)
        return Pair(a, b, VERDICTS[self.verdicts[i, j]], (b.accuracy - a.accuracy) * 100,
                    self._difference_cache[ids], self._agreement(i, j))

    def _signature(self, i: int) -> int:
        if i not in self._facet_id:
            key = tuple(sorted(self.compared[i].facets.items()))
            self._facet_id[i] = self._signatures.setdefault(key, len(self._signatures))
        return self._facet_id[i]

    def pairs(self, limit: int | None = None) -> list[Pair]:
        """Every pair in column order; with a limit, the most divergent first."""
        i, j = np.triu_indices(len(self.compared), 1)
        if limit is not None and len(i) > limit:
            acc = np.array([v.accuracy for v in self.compared])
            order = np.lexsort((-np.abs(acc[i] - acc[j]), -self.verdicts[i, j]))[:limit]
            i, j = i[order], j[order]
        if len(i) > 2 * len(self.compared):  # many pairs per run: whole matrices are cheaper than pair by pair
            self._fill_matrices()
        return [self.pair(int(a), int(b)) for a, b in zip(i, j)]

    # Prediction agreement. Predictions are read only when a pair needs them: a terminal report lists
    # a few pairs per experiment; listing every pair (JSON) fills whole matrices at once instead.

    def _prediction(self, i: int) -> tuple[np.ndarray | None, str | None]:
        if i not in self._predictions:
            self._predictions[i] = _read_predictions(self.compared[i].loaded)
        return self._predictions[i]

    def _truth(self, i: int, n: int) -> tuple[np.ndarray | None, str | None]:
        """The run's test labels, if its record proves which images it used."""
        if i not in self._labels_of:
            self._labels_of[i] = self._labels.for_run(self.compared[i].run, n)
        return self._labels_of[i]

    def _fill_matrices(self) -> None:
        """Agreement of every pair at once: matrix products per group of equally long predictions."""
        if self._same is not None:
            return
        k = len(self.compared)
        self._same = np.full((k, k), -1, dtype=np.int64)
        self._right_wrong = np.full((k, k), -1, dtype=np.int64)  # [i, j]: i right where j is wrong
        by_length: dict[int, list[int]] = {}
        for i in range(k):
            p, _ = self._prediction(i)
            if p is not None:
                by_length.setdefault(len(p), []).append(i)
        for members in by_length.values():
            if len(members) < 2:
                continue
            # Reruns share their predictions: the work is done once per distinct row, then spread out.
            distinct, inverse = distinct_rows(np.stack([self._prediction(i)[0] for i in members]))
            self._same[np.ix_(members, members)] = same_class_counts(distinct)[np.ix_(inverse, inverse)]
            with_labels, rows, truth = [], [], None
            for m, i in enumerate(members):  # records that prove their data hold the same first-n labels
                y, _ = self._truth(i, distinct.shape[1])
                if y is not None:
                    with_labels.append(i)
                    rows.append(inverse[m])
                    truth = y
            if len(with_labels) >= 2:
                right = distinct == truth
                right_wrong = right.sum(1)[:, None] - both_true_counts(right)
                self._right_wrong[np.ix_(with_labels, with_labels)] = right_wrong[np.ix_(rows, rows)]

    def _agreement(self, i: int, j: int) -> Agreement:
        a, b = self.compared[i], self.compared[j]
        (pa, note_a), (pb, note_b) = self._prediction(i), self._prediction(j)
        for view, p, note in ((a, pa, note_a), (b, pb, note_b)):
            if p is None:
                return Agreement(note=f"{view.label}: {note}")
        if len(pa) != len(pb):
            return Agreement(note=f"{a.label} has {len(pa)} test predictions and {b.label} {len(pb)}: "
                                  "not the same test images, agreement not measured")
        (ya, why_a), (yb, why_b) = self._truth(i, len(pa)), self._truth(j, len(pb))
        if self._same is not None:
            agreement = Agreement(n=len(pa), same_class=int(self._same[i, j]))
            if ya is not None and yb is not None:
                agreement.a_right_b_wrong = int(self._right_wrong[i, j])
                agreement.b_right_a_wrong = int(self._right_wrong[j, i])
        else:
            agreement = Agreement(n=len(pa), same_class=int(np.count_nonzero(pa == pb)))
            if ya is not None and yb is not None:
                ra, rb = pa == ya, pb == yb
                agreement.a_right_b_wrong = int(np.count_nonzero(ra & ~rb))
                agreement.b_right_a_wrong = int(np.count_nonzero(rb & ~ra))
        if agreement.a_right_b_wrong is None:
            who, why = (a, why_a) if why_a else (b, why_b)
            agreement.note = f"right/wrong counts not known: {who.label}: {why}"
        return agreement


def distinct_rows(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct rows of a 2-D array, in first-seen order; each row's index into them)."""
    seen: dict[bytes, int] = {}
    inverse = np.array([seen.setdefault(row.tobytes(), len(seen)) for row in block], dtype=np.intp)
    first = np.unique(inverse, return_index=True)[1]
    return block[first], inverse


def same_class_counts(predictions: np.ndarray) -> np.ndarray:
    """[i, j] = how many images runs i and j put in the same class; predictions is (runs, images).

    No loop over pairs of images: agreement with the per-image majority class,
    plus agreement among the few (image, class) entries that leave the majority.
    """
    classes = int(predictions.max()) + 1 if predictions.size else 1
    votes = np.stack([(predictions == c).sum(0) for c in range(classes)])
    agree = predictions == votes.argmax(0)
    same = both_true_counts(agree)
    run, image = np.nonzero(~agree)
    if run.size:
        entries, column = np.unique(image * classes + predictions[run, image], return_inverse=True)
        off = np.zeros((len(predictions), len(entries)), dtype=bool)
        off[run, column.ravel()] = True
        same += both_true_counts(off)
    return same


def both_true_counts(mask: np.ndarray) -> np.ndarray:
    """[i, j] = in how many columns rows i and j of a boolean matrix are both true.

    Packed into 64-bit words and popcounted: no BLAS, whose worker threads
    spin for longer than these small products take on a busy machine.
    """
    packed = np.packbits(mask, axis=1)
    packed = np.pad(packed, ((0, 0), (0, -packed.shape[1] % 8)))
    words = np.ascontiguousarray(packed).view(np.uint64)
    counts = np.empty((len(words), len(words)), dtype=np.int64)
    for i, row in enumerate(words):
        counts[i] = np.bitwise_count(row & words).sum(1)
    return counts


def _read_predictions(loaded: LoadedRun) -> tuple[np.ndarray | None, str | None]:
    try:
        p = loaded.predictions()
    except (OSError, ValueError, EOFError) as e:
        return None, f"unreadable predictions.npy ({type(e).__name__}: {_first_line(e)})"
    if p is None:
        return None, "no predictions file in the record"
    if p.ndim != 1 or not np.issubdtype(p.dtype, np.integer) or (
            p.dtype != np.uint8 and p.size and (p.min() < 0 or p.max() > 255)):
        return None, f"predictions.npy is {p.dtype}{list(p.shape)}, not one class per test image"
    return p.astype(np.uint8, copy=False), None


def _codes(values: Sequence[Any]) -> np.ndarray:
    """Equal strings -> equal non-negative codes; missing values -> -1 (never equal to anything)."""
    seen: dict[Any, int] = {}
    return np.array([seen.setdefault(v, len(seen)) if isinstance(v, str) and v else -1 for v in values], dtype=np.int64)


def _row_differs(row: Row, values: list[Any]) -> bool:
    if row.marked == "never" or len(values) < 2:
        return False
    if row.marked == "spread":
        numbers = [v for v in values if v is not None]
        return bool(numbers) and min(numbers) > 0 and max(numbers) / min(numbers) >= TIMING_SPREAD
    return len({_hashable(v) for v in values}) > 1


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


def _first_line(text: Any) -> str:
    lines = str(text).strip().splitlines()
    return lines[0][:200] if lines else ""


# --- All of it ---------------------------------------------------------------------------

@dataclasses.dataclass
class Comparison:
    groups: list[Group]
    skipped: list[Skipped]
    tolerance_pp: float
    paths: list[str]

    @property
    def n_runs(self) -> int:
        return sum(len(g.runs) for g in self.groups)

    def verdict_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(VERDICTS, 0)
        for g in self.groups:
            for name, n in g.verdict_counts().items():
                counts[name] += n
        return counts


def group_runs(runs: Iterable[LoadedRun], tolerance_pp: float = DEFAULT_TOLERANCE_PP,
               tolerance_given: bool = False, labels: TestLabels | None = None) -> list[Group]:
    """One Group per experiment, largest first; each group knows how its spec differs from the nearest other."""
    labels = labels or TestLabels()
    by_key: dict[str, list[LoadedRun]] = {}
    known: dict[Any, str] = {}  # spec_hash -> experiment: one spec hash is one spec, hashed once
    for r in runs:
        spec_hash = r.run.get("spec_hash")
        key = known.get(spec_hash) if isinstance(spec_hash, str) else None
        if key is None:
            key = experiment_hash(r.run)
            if isinstance(spec_hash, str):
                known[spec_hash] = key
        by_key.setdefault(key, []).append(r)
    groups = [Group(k, rs, tolerance_pp, tolerance_given, labels) for k, rs in by_key.items()]
    groups.sort(key=lambda g: (-len(g.runs), g.runs[0].run_id))
    _link_nearest(groups)
    return groups


def _link_nearest(groups: list[Group], max_groups: int = 40) -> None:
    """For each experiment, the other one whose spec differs in the fewest keys (the largest, past 40)."""
    flat = [spec_facets(g.spec) for g in groups]
    for i, g in enumerate(groups):
        candidates = [j for j in range(len(groups)) if j != i] if len(groups) <= max_groups else ([0] if i else [1])
        best = None
        for j in candidates:
            diff = differences(flat[j], flat[i])
            if best is None or len(diff) < len(best[1]):
                best = (j, diff)
        if best:
            g.nearest, g.spec_differences = groups[best[0]], best[1]


def compare(runs: Sequence[LoadedRun], skipped: Sequence[Skipped], tolerance_pp: float | None = None,
            paths: Sequence[str | Path] = ()) -> Comparison:
    """Group, line up and judge `runs`; `tolerance_pp` None means the default band."""
    seen, unique = set(), []
    for r in runs:  # the same folder named twice is one run
        key = (os.path.abspath(r.source), r.run.get("run_id"))
        if key not in seen:
            seen.add(key)
            unique.append(r)
    given = tolerance_pp is not None
    tolerance = DEFAULT_TOLERANCE_PP if tolerance_pp is None else tolerance_pp
    return Comparison(group_runs(unique, tolerance, given), list(skipped), tolerance, [str(p) for p in paths])


def compare_paths(paths: Sequence[str | Path], tolerance_pp: float | None = None) -> Comparison:
    """Load every record under `paths` (see results.loaders.discover) and compare them."""
    runs, skipped = discover(paths)
    return compare(runs, skipped, tolerance_pp, paths)
