"""Published claims, kept next to each preset, and the verdict of measured runs on them.

A claim is one mapping in a spec's `claims` list:

    - metric: test_accuracy      # a key of run.json's `metrics`
      op: ">="                   # >, >=, <, <=, or == (equal within the noise band)
      value: 0.9925
      tolerance: 0.003           # optional, default 0.003 (0.3 percentage points of accuracy)
      source: https://...        # where the number was published, or a reference

The noise band is max(tolerance, 2 x the standard deviation over seeds): a claim
holds if the mean over seeds satisfies `op`; if it misses by no more than the band
it is "within noise"; otherwise "not reproduced". A run whose spec differs from
the preset (other than its seed) did not test the claim at all.

Imports no TensorFlow: reading claims and judging numbers is plain arithmetic.
"""
from __future__ import annotations

import dataclasses
import math
import operator
from typing import Any, Callable, Mapping, Sequence

from core.spec import ExperimentSpec, SpecError

DEFAULT_TOLERANCE = 0.003
OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
    "==": lambda measured, claimed: math.isclose(measured, claimed),
}
CLAIM_KEYS = {"metric", "op", "value", "tolerance", "source", "note"}
REQUIRED_KEYS = {"metric", "op", "value", "source"}
# What a preset without a published number records instead.
RECORDED_METRICS = ("test_accuracy", "test_loss")

# Verdict statuses, as written to the JSON table.
REPRODUCED, WITHIN_NOISE, NOT_REPRODUCED = "reproduced", "within_noise", "not_reproduced"
UNTESTED, RECORDED, NOT_MEASURED, FAILED = "untested", "recorded", "not_measured", "failed"


@dataclasses.dataclass(frozen=True)
class Claim:
    metric: str
    op: str
    value: float
    tolerance: float
    source: str
    note: str = ""

    def text(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


def parse_claims(spec: ExperimentSpec, source: str | None = None) -> tuple[Claim, ...]:
    """The spec's claims, validated; a SpecError names the claim and the key."""
    where = source or spec.name
    claims = []
    for i, raw in enumerate(spec.claims):
        key = f"claims[{i}]"
        unknown = set(raw) - CLAIM_KEYS
        if unknown:
            raise SpecError(where, f"{key}.{sorted(unknown)[0]}",
                            f"unknown key; valid keys are: {', '.join(sorted(CLAIM_KEYS))}")
        missing = REQUIRED_KEYS - set(raw)
        if missing:
            raise SpecError(where, f"{key}.{sorted(missing)[0]}", "required key is missing")
        if raw["op"] not in OPS:
            raise SpecError(where, f"{key}.op", f"unknown operator {raw['op']!r}; valid: {', '.join(OPS)}")
        for name in ("value", "tolerance"):
            value = raw.get(name, 0.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise SpecError(where, f"{key}.{name}", f"expected a number, got {value!r}")
        tolerance = float(raw.get("tolerance", DEFAULT_TOLERANCE))
        if tolerance < 0:
            raise SpecError(where, f"{key}.tolerance", f"must be >= 0, got {tolerance}")
        for name in ("metric", "source"):
            if not isinstance(raw[name], str) or not raw[name].strip():
                raise SpecError(where, f"{key}.{name}", "expected a non-empty string")
        claims.append(Claim(raw["metric"], raw["op"], float(raw["value"]), tolerance,
                            " ".join(raw["source"].split()), str(raw.get("note", ""))))
    return tuple(claims)


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One metric over N runs (seeds): mean and sample standard deviation (0 for one run)."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return math.fsum(self.values) / len(self.values)

    @property
    def spread(self) -> float:
        if len(self.values) < 2:
            return 0.0
        m = self.mean
        return math.sqrt(math.fsum((v - m) ** 2 for v in self.values) / (len(self.values) - 1))

    def text(self) -> str:
        if self.n == 1:
            return f"{self.mean:.4f}"
        return f"{self.mean:.4f} ± {self.spread:.4f} (n={self.n})"

    def to_dict(self) -> dict[str, Any]:
        return {"values": list(self.values), "mean": self.mean, "spread": self.spread, "n": self.n,
                "min": min(self.values), "max": max(self.values)}


@dataclasses.dataclass(frozen=True)
class Verdict:
    status: str
    text: str
    band: float | None = None


def noise_band(claim: Claim, measurement: Measurement) -> float:
    """max(the claim's tolerance, 2 x the spread over seeds)."""
    return max(claim.tolerance, 2.0 * measurement.spread)


def judge(claim: Claim, measurement: Measurement | None, changed: Sequence[str] = ()) -> Verdict:
    """The verdict of `measurement` (over seeds) on `claim`; `changed` lists spec keys not as published."""
    if changed:
        return Verdict(UNTESTED, f"not tested: not the published conditions ({', '.join(changed)} changed)")
    if measurement is None:
        return Verdict(NOT_MEASURED, f"not measured: the runs have no {claim.metric!r} metric")
    band = noise_band(claim, measurement)
    mean, diff = measurement.mean, measurement.mean - claim.value
    holds = abs(diff) <= band if claim.op == "==" else OPS[claim.op](mean, claim.value)
    if holds:
        return Verdict(REPRODUCED, f"reproduced ({diff:+.4f}, band ±{band:.4f})", band)
    if abs(diff) <= band:
        return Verdict(WITHIN_NOISE, f"within noise ({diff:+.4f}, band ±{band:.4f})", band)
    return Verdict(NOT_REPRODUCED, f"not reproduced ({diff:+.4f}, band ±{band:.4f})", band)


def changed_conditions(published: ExperimentSpec, used: ExperimentSpec) -> list[str]:
    """Dotted spec keys where `used` differs from `published`, ignoring the seed."""
    a, b = _flatten(published.experiment_dict()), _flatten(used.experiment_dict())
    return sorted(k for k in set(a) | set(b) if k != "seed" and a.get(k) != b.get(k))


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{"data": {"train_limit": 3}, "layers": [{"units": 9}]} -> {"data.train_limit": 3, "layers.0.units": 9}."""
    if isinstance(obj, Mapping):
        items = obj.items()
    elif isinstance(obj, list):
        items = enumerate(obj)
    else:
        return {prefix.rstrip("."): obj}
    out: dict[str, Any] = {}
    for k, v in items:
        out.update(_flatten(v, f"{prefix}{k}."))
    return out
