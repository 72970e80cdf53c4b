"""The verdict for a pair of runs of one experiment, and the noise band it is measured against.

A pair's verdict is the first of these that holds:

    identical          equal weights_sha256
    nondeterministic   same seed, same data, same code, no numerics difference, yet other weights:
                       a reproducibility defect of the setup (shown first, loudly, in every format)
    same predictions   equal predictions_sha256
    within noise       |Δ test accuracy| inside the experiment's noise band, or McNemar's exact
                       test cannot tell the two apart on this test set (p >= 0.05)
    divergent          outside the band, and the test says the accuracies differ

Every pair also carries McNemar's p-value and a 95 % interval for the
accuracy difference (results.stats), and its differences split by cause
(results.facets). The noise band: from N >= 3 seeds, 1.96·√2 × the seed
standard deviation (a 95 % band for two runs of independent seeds), with the
chi-square interval of that sd; with fewer seeds it is assumed, and the
`repeat` command that would measure it is named.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

from results import stats
from results.agreement import Agreement
from results.facets import EXPERIMENT, INERT, NUMERICS, Difference, as_dict, flat

IDENTICAL, NONDETERMINISTIC, SAME_PREDICTIONS, WITHIN_NOISE, DIVERGENT = range(5)
VERDICTS = ("identical", "nondeterministic", "same predictions", "within noise", "divergent")
NOT_COMPARED = -1
# How loud each verdict is: the order pairs are listed in when only some are shown.
SEVERITY = {"nondeterministic": 4, "divergent": 3, "within noise": 2, "same predictions": 1, "identical": 0}
ALPHA = 0.05  # McNemar's test: below this the test set tells the two accuracies apart
DEFAULT_TOLERANCE_PP = 0.3
MIN_SEEDS_FOR_BAND = 3
# A 95 % band for the difference of two runs of independent seeds: 1.96 · √2 · sd.
BAND_FACTOR = stats.Z * math.sqrt(2)
# `repeat`'s default: with 10 seeds the band's 95 % interval is 0.69–1.83 × its estimate; with 3 it is
# 0.52–6.3 × (stats.sd_ratio_interval). 20 seeds would give 0.76–1.46 × at twice the cost.
REPEAT_SEEDS = 10
DEFAULT_BAND_WIDTH_PP = 0.1  # the width of the band's 95 % interval that `seeds_for_width` aims at


# --- The noise band -------------------------------------------------------------------------

@dataclasses.dataclass
class NoiseBand:
    """How far test accuracy moves with the seed alone, in percentage points, and how well that is known."""

    pp: float
    origin: str  # "measured", "default" or "tolerance" (--tolerance given)
    seeds: list[Any]
    sd_pp: float | None = None
    sd_ci_pp: tuple[float, float] | None = None  # 95 % chi-square interval for the seed sd
    target_width_pp: float = DEFAULT_BAND_WIDTH_PP
    seeds_for_target: int | None = None  # seeds that would make the band's interval target_width_pp wide
    repeat_command: str | None = None  # for an assumed band: what would measure it

    @property
    def assumed(self) -> bool:
        return self.origin != "measured"

    @property
    def pp_ci(self) -> tuple[float, float] | None:
        """The band's own 95 % interval: BAND_FACTOR × the sd's."""
        if self.sd_ci_pp is None:
            return None  # two accuracies never differ by more than 100 pp, whatever a few seeds suggest
        return BAND_FACTOR * self.sd_ci_pp[0], min(100.0, BAND_FACTOR * self.sd_ci_pp[1])

    def describe(self) -> str:
        if self.origin == "measured":
            low, high = self.pp_ci
            more = (f"{self.seeds_for_target} seeds would narrow that interval to {self.target_width_pp:.2f} pp"
                    if self.seeds_for_target else
                    f"no practical number of seeds narrows that interval to {self.target_width_pp:.2f} pp")
            if self.seeds_for_target and self.seeds_for_target <= len(self.seeds):
                more = f"narrower than {self.target_width_pp:.2f} pp already"
            return (f"±{self.pp:.2f} pp, measured over {len(self.seeds)} seeds ({_seed_list(self.seeds)}): "
                    f"1.96·√2 × their standard deviation {self.sd_pp:.3f} pp (95 % CI {self.sd_ci_pp[0]:.3f}–"
                    f"{self.sd_ci_pp[1]:.3f} pp), so the band is {low:.2f}–{high:.2f} pp; {more}")
        source = "the default" if self.origin == "default" else "from --tolerance"
        why = f"fewer than {MIN_SEEDS_FOR_BAND} seeds of this experiment ({len(self.seeds)}: {_seed_list(self.seeds)})"
        return f"±{self.pp:.2f} pp, assumed ({source}): {why}; `{self.repeat_command}` measures it"


def _seed_list(seeds: Sequence[Any]) -> str:
    if len(seeds) > 6:
        return f"{', '.join(map(str, seeds[:3]))}, …, {seeds[-1]}"
    return ", ".join(map(str, seeds))


def sorted_seeds(seeds) -> list[Any]:
    return sorted(seeds, key=lambda s: (not isinstance(s, int), str(s) if not isinstance(s, int) else s))


def noise_band(accuracy_by_seed: dict[Any, list[float]], tolerance_pp: float, tolerance_given: bool,
               spec: dict[str, Any] | None = None, target_width_pp: float = DEFAULT_BAND_WIDTH_PP) -> NoiseBand:
    """1.96·√2 × the sd of the per-seed mean accuracy over >= 3 seeds, with its interval; else the tolerance."""
    seeds = sorted_seeds(accuracy_by_seed)
    if len(seeds) >= MIN_SEEDS_FOR_BAND:
        means = [math.fsum(accuracy_by_seed[s]) / len(accuracy_by_seed[s]) * 100 for s in seeds]
        mean = math.fsum(means) / len(means)
        sd = math.sqrt(math.fsum((m - mean) ** 2 for m in means) / (len(means) - 1))
        return NoiseBand(BAND_FACTOR * sd, "measured", seeds, sd, stats.sd_interval(sd, len(seeds)),
                         target_width_pp, stats.seeds_for_width(sd, target_width_pp, BAND_FACTOR))
    return NoiseBand(tolerance_pp, "tolerance" if tolerance_given else "default", seeds,
                     target_width_pp=target_width_pp, repeat_command=repeat_command(spec, seeds))


# Spec keys `run.py repeat` has an option for; the rest go through --set.
_SPEC_OPTIONS = {"epochs": "--epochs", "batch_size": "--batch-size", "data.train_limit": "--train-limit",
                 "data.test_limit": "--test-limit", "split": "--split"}


def repeat_command(spec: dict[str, Any] | None, seeds: Sequence[Any], total: int = REPEAT_SEEDS) -> str:
    """The `python run.py repeat` line that adds seeds to `seeds` up to `total`, for this spec."""
    ints = [s for s in seeds if isinstance(s, int) and not isinstance(s, bool)]
    start = max(ints) + 1 if ints else 42
    words = ["python", "run.py", "repeat", "--seeds", str(max(1, total - len(seeds))), "--seed", str(start)]
    words += _spec_words(spec)
    return " ".join(words)


def _spec_words(spec: dict[str, Any] | None) -> list[str]:
    """`--spec NAME` and the overrides that turn the preset into `spec`; a placeholder when it is no preset."""
    from core.errors import UsageError
    from core.spec import list_presets, load_spec

    name = as_dict(spec).get("name")
    if not spec or name not in list_presets():  # a name from a record is never used as a path
        return ["--spec", "SPEC.yaml"]
    try:
        preset = load_spec(name).to_dict()
    except UsageError:
        return ["--spec", "SPEC.yaml"]
    skip = {"name", "description", "claims", "seed", "data.source", "data.path"}
    have = flat("", {k: v for k, v in preset.items() if k != "layers"})
    want = flat("", {k: v for k, v in spec.items() if k != "layers"})
    if preset.get("layers") != spec.get("layers"):
        return ["--spec", "SPEC.yaml"]
    words = ["--spec", name]
    for key in sorted(set(have) | set(want)):
        if key in skip or have.get(key) == want.get(key):
            continue
        value = want.get(key, "unset")
        if value == "unset" or not all(c.isalnum() or c in "._-" for c in value):
            return ["--spec", "SPEC.yaml"]  # nothing a command line would carry faithfully
        words += [_SPEC_OPTIONS[key], value] if key in _SPEC_OPTIONS else ["--set", f"{key}={value}"]
    return words


# --- The pair -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class McNemar:
    """McNemar's exact test: b = images only A got right, c = images only B got right."""

    b: int
    c: int

    @property
    def p(self) -> float:
        return stats.mcnemar_exact_p(self.b, self.c)


@dataclasses.dataclass
class Pair:
    a: Any  # RunView
    b: Any
    verdict: str
    delta_pp: float  # test accuracy of b minus a, percentage points
    differences: list[Difference]
    agreement: Agreement
    band_pp: float = DEFAULT_TOLERANCE_PP

    @property
    def test(self) -> McNemar | None:
        d = self.agreement.discordant
        return None if d is None else McNemar(*d)

    @property
    def ci_pp(self) -> tuple[float, float] | None:
        """95 % interval for accuracy(b) − accuracy(a) in pp (Newcombe 1998, paired), when the counts are known."""
        ag = self.agreement
        if ag.discordant is None or ag.both_right is None or not ag.n:
            return None
        neither = ag.n - ag.both_right - ag.a_right_b_wrong - ag.b_right_a_wrong
        low, high = stats.paired_difference_ci(ag.both_right, ag.a_right_b_wrong, ag.b_right_a_wrong, neither)
        return low * 100, high * 100

    def by_cause(self, cause: str) -> list[Difference]:
        return [d for d in self.differences if d.cause == cause]

    @property
    def reason(self) -> str:
        """Why this verdict, in a clause."""
        if self.verdict == "identical":
            return "the same weights, bit for bit"
        if self.verdict == "nondeterministic":
            return "same spec, seed, data and numerics, yet other weights: the setup is not reproducible"
        if self.verdict == "same predictions":
            return "other weights, the same class for every test image"
        inside = abs(self.delta_pp) <= self.band_pp + 1e-9
        test = self.test
        if self.verdict == "within noise" and not inside and test is not None:
            return (f"outside the ±{self.band_pp:.2f} pp band, but McNemar p = {fmt_p(test.p)}: "
                    "this test set cannot tell the two apart")
        if self.verdict == "within noise":
            return f"inside the ±{self.band_pp:.2f} pp band"
        tail = f", McNemar p = {fmt_p(test.p)}" if test is not None else ", no right/wrong counts for a test"
        return f"outside the ±{self.band_pp:.2f} pp band{tail}"


def fmt_p(p: float) -> str:
    return "1" if p >= 0.9995 else f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def setup_is_the_same(differences: Sequence[Difference], fa: dict[str, str]) -> bool:
    """Same seed (a known one), and nothing that is the experiment or its numerics differs."""
    return fa.get("seed", "unset") != "unset" and not any(d.cause in (EXPERIMENT, NUMERICS) for d in differences)


# --- Saying it --------------------------------------------------------------------------------

def cause_line(pair: Pair, show_all: bool = False) -> str:
    """`same seed; numerics differ: tensorflow 2.18.0 → 2.21.0, GPU P100 → CPU (9 inert differences: --all)`."""
    a, b = pair.a.label, pair.b.label
    experiment = pair.by_cause(EXPERIMENT)
    first = [d.describe(a, b, short=True) for d in experiment]
    if not any(d.what == "seed" for d in experiment):
        first.insert(0, "same seed")
    clauses = [", ".join(first)]
    numerics = pair.by_cause(NUMERICS)
    clauses.append("numerics differ: " + ", ".join(d.describe(a, b, short=True) for d in numerics)
                   if numerics else "same numerics")
    text = "; ".join(clauses)
    inert = pair.by_cause(INERT)
    if inert and show_all:
        text += "; inert: " + ", ".join(d.describe(a, b, short=True) for d in inert)
    elif inert:
        text += f" ({len(inert)} inert difference{'s' if len(inert) != 1 else ''}: --all)"
    return text


# Facets a nondeterminism report names as equal: what a reader checks first.
EQUAL_FACETS = ("seed", "data_digest", "harness.code_sha256", "packages.tensorflow", "packages.keras",
                "packages.numpy", "packages.jax", "packages.torch", "determinism.backend",
                "determinism.op_determinism", "determinism.threads.intra_op", "determinism.threads.inter_op",
                "gpus", "cpu.model")


def equal_facets(pair: Pair) -> dict[str, str]:
    """What the two runs of a nondeterministic pair had in common (the facets a reader checks first)."""
    fa, fb = pair.a.facets, pair.b.facets
    return {k: fa[k] for k in EQUAL_FACETS if k in fa and fa[k] == fb.get(k) and fa[k] not in ("unset", "none")
            or (k == "gpus" and fa.get(k) == fb.get(k) == "none")}


def equal_text(pair: Pair) -> str:
    names = {"data_digest": "data", "harness.code_sha256": "code", "gpus": "GPUs", "cpu.model": "CPU"}
    parts = []
    for k, v in equal_facets(pair).items():
        name = names.get(k) or Difference(k, "", "").short
        parts.append(f"{name} {v[:8] if k in ('data_digest', 'harness.code_sha256') else v}")
    return ", ".join(parts)
