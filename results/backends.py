"""Does the backend move the result? The backend x seed table of `run.py repeat --backends`.

Built on `results.compare`: the runs of every backend are one experiment there
(the backend is not in the spec), and each pair of equal seed is a pair of runs
whose only recorded cause of difference should be the backend. The question is
answered on the mean over seeds: the difference of two backends' means against
the seed noise band for such a mean.

    seed band, two runs       1.96·√2 × sd       (results.compare.BAND_FACTOR, as `compare` uses)
    seed band, mean of N      1.96·√2 × sd / √N  (the difference of two means of N independent seeds)

where sd is the standard deviation of test accuracy over seeds within one backend,
pooled over the backends (the backend held fixed: seed noise only). With fewer
than 3 seeds per backend there is no sd to speak of, and `compare`'s default
tolerance stands in, as it does there. Numpy only; no TensorFlow.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from results.compare import Group, compare_paths
from results.facets import INERT
from results.verdicts import BAND_FACTOR, DEFAULT_TOLERANCE_PP, MIN_SEEDS_FOR_BAND, Pair, cause_line


@dataclasses.dataclass
class BackendPair:
    a: str
    b: str
    delta_pp: float             # mean accuracy of b minus a, percentage points
    beyond: bool                # |delta| above the band for means
    same_seed: list[Pair]       # the run pairs of equal seed, a's run first

    @property
    def cause(self) -> str | None:
        """The first recorded difference of an equal-seed pair that can move a number (`compare` orders
        them data, seed, code, software, ...)."""
        for p in self.same_seed:
            causes = [d for d in p.differences if d.cause != INERT]
            if causes:
                return causes[0].what
        return None


@dataclasses.dataclass
class BackendMatrix:
    group: Group
    backends: list[str]
    seeds: list[int]
    accuracy: dict[str, dict[int, float]]   # backend -> seed -> test accuracy (mean over reruns), 0..1
    epoch_seconds: dict[str, float | None]  # backend -> median seconds per epoch of its runs
    sd_pp: float | None                     # pooled within-backend sd over seeds, pp
    band_pp: float                          # two runs
    band_mean_pp: float                     # the mean of the seeds
    measured: bool
    pairs: list[BackendPair]
    other_groups: int                       # experiments among the records that are not this one


def backend_matrix(records: Sequence[str | Path]) -> BackendMatrix:
    """Read the records (compare's loaders) and measure the table's figures."""
    comparison = compare_paths(list(records))
    if not comparison.groups:
        raise ValueError("no readable run records among " + ", ".join(map(str, records)))
    group = comparison.groups[0]  # largest first: the experiment the matrix ran
    views = group.compared
    backends = list(dict.fromkeys(str(v.fields["backend"]) for v in views))
    seeds = sorted({v.fields["seed"] for v in views if isinstance(v.fields["seed"], int)})
    runs: dict[str, dict[int, list[float]]] = {b: {} for b in backends}
    seconds: dict[str, list[float]] = {b: [] for b in backends}
    for v in views:
        if isinstance(v.fields["seed"], int):
            runs[str(v.fields["backend"])].setdefault(v.fields["seed"], []).append(v.accuracy)
        if v.fields["epoch_seconds"] is not None:
            seconds[str(v.fields["backend"])].append(v.fields["epoch_seconds"])
    accuracy = {b: {s: float(np.mean(a)) for s, a in per_seed.items()} for b, per_seed in runs.items()}

    measured = bool(backends) and all(len(accuracy[b]) >= MIN_SEEDS_FOR_BAND for b in backends)
    sd = pooled_sd_pp(accuracy) if measured else None
    n = min((len(accuracy[b]) for b in backends), default=1)
    band = BAND_FACTOR * sd if sd is not None else DEFAULT_TOLERANCE_PP
    band_mean = band / math.sqrt(n) if sd is not None else DEFAULT_TOLERANCE_PP

    index = {id(v): i for i, v in enumerate(views)}
    pairs = []
    for i, a in enumerate(backends):
        for b in backends[i + 1:]:
            delta = (np.mean(list(accuracy[b].values())) - np.mean(list(accuracy[a].values()))) * 100
            same = []
            for s in seeds:
                va = next((v for v in views if v.fields["backend"] == a and v.fields["seed"] == s), None)
                vb = next((v for v in views if v.fields["backend"] == b and v.fields["seed"] == s), None)
                if va is not None and vb is not None:
                    same.append(group.pair(index[id(va)], index[id(vb)]))  # either order: a's run first
            pairs.append(BackendPair(a, b, float(delta), abs(delta) > band_mean + 1e-9, same))
    return BackendMatrix(group, backends, seeds, accuracy,
                         {b: float(np.median(s)) if s else None for b, s in seconds.items()},
                         sd, band, band_mean, measured, pairs, len(comparison.groups) - 1)


def pooled_sd_pp(accuracy: dict[str, dict[int, float]]) -> float:
    """sqrt(Σ (n_b − 1)·var_b / Σ (n_b − 1)) over backends b, in percentage points."""
    num = den = 0.0
    for per_seed in accuracy.values():
        values = np.array(list(per_seed.values())) * 100
        if len(values) >= 2:
            num += (len(values) - 1) * float(np.var(values, ddof=1))
            den += len(values) - 1
    return math.sqrt(num / den) if den else 0.0


def agreement(pair: Pair, a: str, b: str) -> str:
    """How far two runs' test predictions agree, the runs named by their backends."""
    ag = pair.agreement
    if ag.n is None:
        return f"agreement not measured ({ag.note})"
    text = f"same class for {ag.same_class}/{ag.n} test images ({ag.share * 100:.1f} %)"
    if ag.a_right_b_wrong is not None:
        text += f"; only {a} right {ag.a_right_b_wrong}, only {b} right {ag.b_right_a_wrong}"
    return text


def render_matrix(m: BackendMatrix) -> str:
    """The table, the band and a verdict per backend pair, as plain text."""
    g = m.group
    out = [f"backend × seed: test accuracy (%) — experiment {g.short_key}, {g.summary}"]
    name_w = max([len(b) for b in m.backends] + [7])
    head = f"  {'backend':<{name_w}}" + "".join(f"  {'seed ' + str(s):>9}" for s in m.seeds)
    out.append(head + f"  {'mean':>7}  {'sd':>6}  {'s/epoch':>7}")  # s/epoch: a run's mean, median over runs
    for b in m.backends:
        cells = "".join(f"  {100 * m.accuracy[b][s]:>9.2f}" if s in m.accuracy[b] else f"  {'—':>9}" for s in m.seeds)
        values = np.array(list(m.accuracy[b].values())) * 100
        sd = f"{np.std(values, ddof=1):6.3f}" if len(values) >= 2 else f"{'—':>6}"
        secs = m.epoch_seconds[b]
        out.append(f"  {b:<{name_w}}{cells}  {values.mean():>7.2f}  {sd}  {secs:>7.1f}" if secs is not None
                   else f"  {b:<{name_w}}{cells}  {values.mean():>7.2f}  {sd}  {'—':>7}")
    out.append("")
    n = min(len(m.accuracy[b]) for b in m.backends)
    if m.measured:
        out.append(f"seed band: ±{m.band_pp:.2f} pp between two runs (1.96·√2 × {m.sd_pp:.3f} pp, the sd over seeds "
                   f"within a backend, pooled over {len(m.backends)} backends); ±{m.band_mean_pp:.2f} pp between "
                   f"two means of {n} seeds (÷ √{n})")
    else:
        out.append(f"seed band: ±{m.band_pp:.2f} pp, compare's default tolerance: fewer than {MIN_SEEDS_FOR_BAND} "
                   f"seeds per backend ({n}); `--seeds {MIN_SEEDS_FOR_BAND}` measures it")
    out.append("")
    out.append(f"backend pairs (mean over seeds, against ±{m.band_mean_pp:.2f} pp):")
    for p in m.pairs:
        verdict = ("BEYOND the seed band: the backend moves the result" if p.beyond
                   else "within the seed band: the backend does not move the result beyond seed noise")
        out.append(f"  {p.a} – {p.b}: Δ {p.delta_pp:+.2f} pp, {verdict}")
        if p.same_seed:
            verdicts = [q.verdict for q in p.same_seed]
            counts = ", ".join(f"{verdicts.count(v)} {v}" for v in dict.fromkeys(verdicts))
            first = p.same_seed[0]
            out.append(f"      equal-seed runs ({len(p.same_seed)}), compare's verdicts (its band ±{g.band.pp:.2f} pp "
                       f"over all these runs): {counts}; seed {first.a.fields['seed']}: "
                       f"{agreement(first, p.a, p.b)}")
            out.append(f"      cause: {p.cause or 'nothing recorded differs'}"
                       + (f" ({cause_line(first)})" if first.differences else ""))
    if m.other_groups:
        out.append(f"\n({m.other_groups} other experiment(s) among the records left out: run.py compare shows them)")
    return "\n".join(out)
