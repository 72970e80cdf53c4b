"""Compare run records: group them by experiment, line them up, give every pair a verdict.

Read top to bottom: `compare_paths` finds the records (the pluggable loaders in
results.loaders), `compare` groups the runs of one experiment together, and each
`Group` lines its runs up row by row (`ROWS`), measures the noise band, and
judges every pair of its runs (results/verdicts.py: identical, nondeterministic,
same predictions, within noise, divergent), with McNemar's test, an interval
for the accuracy difference, and what differs between the two runs classed by
cause (results/facets.py); prediction agreement comes from results/agreement.py.
The renderers (results/render.py, results/html.py) only format a `Comparison`.
Numpy only: no TensorFlow here.

One experiment is the spec without its seed and without where the data came
from (results.facets.experiment_dict). The data itself is compared by its digest.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from results.agreement import AgreementMatrix, first_line
from results.facets import (Difference, as_dict, differences, experiment_dict, experiment_hash, facets, run_fields,
                            spec_facets, spec_summary)
from results.loaders import LoadedRun, Skipped, discover
from results.testset import TestLabels
from results.verdicts import (ALPHA, DEFAULT_BAND_WIDTH_PP, DEFAULT_TOLERANCE_PP, DIVERGENT, IDENTICAL,
                              NONDETERMINISTIC, NOT_COMPARED, SAME_PREDICTIONS, SEVERITY, VERDICTS, WITHIN_NOISE,
                              McNemar, Pair, noise_band, setup_is_the_same)


def compare_paths(paths: Sequence[str | Path], tolerance_pp: float | None = None,
                  band_width_pp: float = DEFAULT_BAND_WIDTH_PP) -> Comparison:
    """Load every record under `paths` (see results.loaders.discover) and compare them."""
    runs, skipped = discover(paths)
    return compare(runs, skipped, tolerance_pp, paths, band_width_pp)


def compare(runs: Sequence[LoadedRun], skipped: Sequence[Skipped], tolerance_pp: float | None = None,
            paths: Sequence[str | Path] = (), band_width_pp: float = DEFAULT_BAND_WIDTH_PP) -> Comparison:
    """Group, line up and judge `runs`; `tolerance_pp` None means the default band."""
    seen, unique = set(), []
    for r in runs:  # the same folder named twice is one run
        key = (os.path.abspath(r.source), r.run.get("run_id"))
        if key not in seen:
            seen.add(key)
            unique.append(r)
    given = tolerance_pp is not None
    tolerance = DEFAULT_TOLERANCE_PP if tolerance_pp is None else tolerance_pp
    return Comparison(group_runs(unique, tolerance, given, band_width_pp=band_width_pp), list(skipped), tolerance,
                      [str(p) for p in paths])


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

    def nondeterministic(self) -> list[tuple[Group, Pair]]:
        """Every nondeterministic pair of every experiment: what each report shows first."""
        return [(g, p) for g in self.groups for p in g.nondeterministic_pairs()]


def group_runs(runs: Iterable[LoadedRun], tolerance_pp: float = DEFAULT_TOLERANCE_PP,
               tolerance_given: bool = False, labels: TestLabels | None = None,
               band_width_pp: float = DEFAULT_BAND_WIDTH_PP) -> list[Group]:
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
    groups = [Group(k, rs, tolerance_pp, tolerance_given, labels, band_width_pp) for k, rs in by_key.items()]
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
TIMING_SPREAD = 1.25  # timing rows are marked only when the slowest run is this much slower than the fastest


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
        """What could explain a difference (results.facets.facets), worked out when first needed."""
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
                 labels: TestLabels, band_width_pp: float = DEFAULT_BAND_WIDTH_PP):
        self.key = key
        ordered = sorted(loaded, key=lambda r: (str(r.run.get("started_at") or ""), str(r.run.get("run_id"))))
        self.runs = [RunView(column_label(i), r, run_fields(r.run)) for i, r in enumerate(ordered)]
        for view in self.runs:
            if view.fields["status"] != "completed":
                error = view.run.get("error")
                view.excluded = f"status {view.fields['status']}" + (f" ({first_line(error)})" if error else "")
            elif view.accuracy is None:
                view.excluded = "the record has no test accuracy (or one that is not a number in [0, 1])"
        self.compared = [v for v in self.runs if v.excluded is None]
        self.spec = experiment_dict(ordered[0].run) if ordered else None
        names = [str(as_dict(r.run.get("spec")).get("name")) for r in ordered]
        self.name = max(set(names), key=names.count) if names else "?"
        self.spec_differences: list[Difference] = []  # against the nearest other experiment
        self.nearest: Group | None = None
        by_seed: dict[Any, list[float]] = {}
        for v in self.compared:
            seed = v.fields["seed"]
            by_seed.setdefault(seed if isinstance(seed, (int, str)) else repr(seed), []).append(v.accuracy)
        full_spec = as_dict(ordered[0].run.get("spec")) if ordered else None
        self.band = noise_band(by_seed, tolerance_pp, tolerance_given, full_spec, band_width_pp)
        self.differing_rows = [row.key for row in ROWS if _row_differs(row, [v.fields[row.key] for v in self.runs])]
        self.agreement = AgreementMatrix([v.loaded for v in self.compared], [v.label for v in self.compared],
                                         lambda i, n: labels.for_run(self.compared[i].run, n))
        self._difference_cache: dict[tuple[int, int], list[Difference]] = {}
        self._signatures: dict[tuple, int] = {}
        self._facet_id: dict[int, int] = {}
        self.verdicts = self._verdict_matrix()

    @property
    def short_key(self) -> str:
        return self.key[:8] if not self.key.startswith("spec_hash:") else self.key

    @property
    def summary(self) -> str:
        return spec_summary(self.spec and {**self.spec, "name": self.name})

    # The verdicts -------------------------------------------------------------------------

    def _verdict_matrix(self) -> np.ndarray:
        """Every pair's verdict code at once (the order of results/verdicts.py: the first that holds)."""
        k = len(self.compared)
        acc = np.array([v.accuracy for v in self.compared], dtype=float) * 100
        delta = acc[None, :] - acc[:, None]  # [i, j]: j minus i
        weights, predictions = (_codes([v.fields[key] for v in self.compared])
                                for key in ("weights_sha256", "predictions_sha256"))
        seeds, data = (_codes([v.facets[key] for v in self.compared], missing="unset")
                       for key in ("seed", "data_digest"))
        same_weights = _equal(weights)
        # Nondeterminism: other weights from the same seed and data, and nothing of the experiment or its
        # numerics differs. Facets are compared only for such pairs: few, however many runs there are.
        same_setup = np.zeros((k, k), dtype=bool)
        candidates = ~same_weights & (weights[:, None] >= 0) & (weights[None, :] >= 0) & _equal(seeds) & _equal(data)
        for i, j in zip(*np.nonzero(np.triu(candidates, 1))):
            same_setup[i, j] = same_setup[j, i] = setup_is_the_same(self._differences(i, j), self.compared[i].facets)
        inside = np.abs(delta) <= self.band.pp + 1e-9
        # McNemar's exact test for the pairs outside the band, from the discordant counts of every pair.
        self.agreement.fill()
        rw = self.agreement.right_wrong
        tested = ~inside & (rw >= 0) & (rw.T >= 0) & ~same_weights & ~same_setup
        p = np.full((k, k), np.nan)
        i, j = np.nonzero(tested)
        if len(i):
            counts, inverse = np.unique(np.stack([rw[i, j], rw[j, i]], 1), axis=0, return_inverse=True)
            p[i, j] = np.array([McNemar(int(b), int(c)).p for b, c in counts])[inverse.ravel()]
        verdicts = np.full((k, k), DIVERGENT, dtype=np.int8)
        verdicts[inside | (tested & (p >= ALPHA))] = WITHIN_NOISE
        verdicts[_equal(predictions)] = SAME_PREDICTIONS
        verdicts[same_setup] = NONDETERMINISTIC
        verdicts[same_weights] = IDENTICAL
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
        return Pair(a, b, VERDICTS[self.verdicts[i, j]], (b.accuracy - a.accuracy) * 100, self._differences(i, j),
                    self.agreement.pair(i, j), self.band.pp)

    def _differences(self, i: int, j: int) -> list[Difference]:
        ids = (self._signature(i), self._signature(j))
        if ids not in self._difference_cache:  # runs of one machine share their facets: diff each combination once
            self._difference_cache[ids] = differences(self.compared[i].facets, self.compared[j].facets)
        return self._difference_cache[ids]

    def _signature(self, i: int) -> int:
        if i not in self._facet_id:
            key = tuple(sorted(self.compared[i].facets.items()))
            self._facet_id[i] = self._signatures.setdefault(key, len(self._signatures))
        return self._facet_id[i]

    def pairs(self, limit: int | None = None) -> list[Pair]:
        """Every pair in column order; with a limit, the loudest first (nondeterministic, divergent, …)."""
        i, j = np.triu_indices(len(self.compared), 1)
        if limit is not None and len(i) > limit:
            acc = np.array([v.accuracy for v in self.compared])
            severity = np.array([SEVERITY[v] for v in VERDICTS])[self.verdicts[i, j]]
            order = np.lexsort((-np.abs(acc[i] - acc[j]), -severity))[:limit]
            i, j = i[order], j[order]
        return [self.pair(int(a), int(b)) for a, b in zip(i, j)]

    def nondeterministic_pairs(self) -> list[Pair]:
        code = VERDICTS.index("nondeterministic")
        i, j = np.nonzero(np.triu(self.verdicts == code, 1))
        return [self.pair(int(a), int(b)) for a, b in zip(i, j)]


def _codes(values: Sequence[Any], missing: str = "") -> np.ndarray:
    """Equal strings -> equal non-negative codes; missing values -> -1 (never equal to anything)."""
    seen: dict[Any, int] = {}
    return np.array([seen.setdefault(v, len(seen)) if isinstance(v, str) and v and v != missing else -1
                     for v in values], dtype=np.int64)


def _equal(codes: np.ndarray) -> np.ndarray:
    """[i, j]: runs i and j have the same known value."""
    return (codes[:, None] == codes[None, :]) & (codes[:, None] >= 0)


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
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value
