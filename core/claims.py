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

`ClaimsReport` is the table `run.py reproduce` writes, and `reproduce()` fills it by running
the presets. Reading claims and judging numbers is plain arithmetic: this module imports no
TensorFlow (the platform it is given runs the experiment).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import math
import operator
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from core.errors import HarnessError
from core.record import read_run_json
from core.reports import format_seconds, markdown_table, write_report
from core.spec import ExperimentSpec, SpecError, load_spec

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


# --- The claims table: run the presets, judge their claims ---------------------------------

@dataclasses.dataclass(frozen=True)
class PresetPlan:
    """One preset as published, as it will run (with the overrides), and its claims."""

    preset: str
    published: ExperimentSpec
    used: ExperimentSpec
    claims: tuple[Claim, ...]


def plan_presets(presets: Sequence[str], overrides: dict[str, Any]) -> list[PresetPlan]:
    """Every preset and its claims, validated before the first run (a SpecError names the bad one)."""
    plan = []
    for preset in presets:
        published = load_spec(preset)
        plan.append(PresetPlan(preset, published, load_spec(preset, overrides), parse_claims(published, preset)))
    return plan


def reproduce(plan: Sequence[PresetPlan], platform, report: "ClaimsReport", seeds: int, deterministic: bool,
              out: str | Path, name: str, log: Callable[[str], None] = print) -> tuple[Path, Path]:
    """Run each preset with `seeds` seeds on `platform`, rewriting the table after each; returns its paths.

    A preset that crashes is reported as failed and the others still run; a HarnessError (bad
    data or input: every preset would fail the same way) or Ctrl-C writes the table and stops.
    """
    from core.backend import release_model_memory

    md_js = None
    for p in plan:
        report.start(p.preset, p.published, p.used, p.claims)
        try:
            for i in range(seeds):
                started = time.perf_counter()
                record = platform.run(dataclasses.replace(p.used, seed=p.used.seed + i), deterministic=deterministic)
                report.add_run(p.preset, record, time.perf_counter() - started)
                release_model_memory()
        except Exception as e:  # noqa: BLE001 — one preset's crash must not lose the others' results
            report.fail(p.preset, e)
            if isinstance(e, HarnessError):
                report.write(out, name)
                raise
            log(f"[reproduce] {p.preset} failed: {type(e).__name__}: {e}")
        except KeyboardInterrupt:
            report.fail(p.preset, KeyboardInterrupt("interrupted"))
            report.write(out, name)
            raise
        md_js = report.write(out, name)
    return md_js


class ClaimsReport:
    """The claims table, rewritten after every preset so an interrupted reproduce keeps what it measured."""

    def __init__(self, argv: list[str], seeds: int, overrides: dict[str, Any]):
        self.argv, self.seeds, self.overrides = argv, seeds, overrides
        self.presets: dict[str, dict[str, Any]] = {}
        self.environment: dict[str, Any] = {}

    def start(self, preset: str, published: ExperimentSpec, used: ExperimentSpec, claims) -> None:
        self.presets[preset] = {"preset": preset, "spec_name": published.name, "spec_hash": used.hash,
                                "published_spec_hash": published.hash,
                                "changed": changed_conditions(published, used),
                                "claims": claims, "runs": [], "seconds": 0.0, "error": None}

    def add_run(self, preset: str, record: Path, seconds: float) -> None:
        run = read_run_json(record)
        entry = self.presets[preset]
        entry["seconds"] += seconds
        entry["runs"].append({"run_id": run["run_id"], "record": str(record), "seed": run["seed"],
                              "status": run["status"], "seconds": seconds, "metrics": run["metrics"]})
        if not self.environment:
            env = run.get("environment", {})
            runtime = env.get("runtime", {})
            self.environment = {"cpu": env.get("cpu", {}).get("model"),
                                "logical_cores": env.get("cpu", {}).get("logical_cores"),
                                "gpus": [g.get("name") for g in env.get("gpus") or [] if isinstance(g, dict)],
                                "tensorflow": runtime.get("tensorflow"), "keras": runtime.get("keras"),
                                "python": env.get("python")}

    def fail(self, preset: str, error: BaseException) -> None:
        self.presets[preset]["error"] = f"{type(error).__name__}: {error}"

    def any_failed(self) -> bool:
        return any(p["error"] for p in self.presets.values())

    def rows(self, entry: dict[str, Any]) -> list[dict[str, Any]]:
        """One row per claim, or per recorded metric for a preset without claims."""
        rows = []
        targets = entry["claims"] or [None for _ in RECORDED_METRICS]
        for i, claim in enumerate(targets):
            metric = claim.metric if claim else RECORDED_METRICS[i]
            values = tuple(float(r["metrics"][metric]) for r in entry["runs"]
                           if isinstance(r["metrics"].get(metric), (int, float)))
            measurement = Measurement(values) if values else None
            if entry["error"]:
                verdict = Verdict(FAILED, f"failed: {entry['error']}")
            elif claim is None:
                verdict = Verdict(RECORDED, "recorded" + (
                    f" (changed: {', '.join(entry['changed'])})" if entry["changed"] else ""))
            else:
                verdict = judge(claim, measurement, entry["changed"])
            rows.append({"metric": metric, "claim": dataclasses.asdict(claim) if claim else None,
                         "claim_text": claim.text() if claim else f"{metric}: none published",
                         "measured": measurement.to_dict() if measurement else None,
                         "measured_text": measurement.text() if measurement else "—",
                         "verdict": verdict.status, "verdict_text": verdict.text, "band": verdict.band})
        return rows

    def to_dict(self) -> dict[str, Any]:
        presets = []
        for entry in self.presets.values():
            e = {k: v for k, v in entry.items() if k != "claims"}
            e["rows"] = self.rows(entry)
            presets.append(e)
        return {"title": "claims table", "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "command": ["run.py", "reproduce", *self.argv], "seeds": self.seeds, "overrides": self.overrides,
                "noise_band": f"max(claim tolerance (default {DEFAULT_TOLERANCE}), "
                              "2 x standard deviation over seeds)",
                "environment": self.environment, "presets": presets}

    def markdown(self) -> str:
        data = self.to_dict()
        env = self.environment
        lines = ["# Claims table", "",
                 f"`python run.py reproduce {' '.join(self.argv)}` — {data['generated_at']}, "
                 f"{self.seeds} seed(s) per preset.",
                 f"Machine: {env.get('cpu') or '?'} ({env.get('logical_cores') or '?'} logical cores"
                 f"{', GPU: ' + ', '.join(env['gpus']) if env.get('gpus') else ', no GPU'}); "
                 f"TensorFlow {env.get('tensorflow') or '?'}, Keras {env.get('keras') or '?'}.",
                 f"Noise band: {data['noise_band']}; measured = mean ± sample standard deviation over seeds.", ""]
        if self.overrides:
            shown = ", ".join(f"{k}={v}" for k, v in self.overrides.items())
            lines += [f"**Overrides: {shown}.** Claims are not tested under changed conditions.", ""]
        table = []
        for e in data["presets"]:
            runs = len(e["runs"])
            time_text = format_seconds(e["seconds"]) + (f" ({format_seconds(e['seconds'] / runs)}/run)" if runs > 1 else "")
            for row in e["rows"]:
                table.append([e["preset"], row["claim_text"], row["measured_text"], row["verdict_text"], runs, time_text])
        lines += [markdown_table(["preset", "claim", "measured", "verdict", "runs", "time"], table), "", "Sources:"]
        for e in data["presets"]:
            for row in e["rows"]:
                if row["claim"]:
                    lines.append(f"- {e['preset']}, {row['claim_text']}: {row['claim']['source']}")
        lines += ["", "Run records:"]
        lines += [f"- {e['preset']}: " + ", ".join(r["record"] for r in e["runs"]) for e in data["presets"] if e["runs"]]
        return "\n".join(lines)

    def write(self, out: str, name: str) -> tuple[Path, Path]:
        return write_report(out, name, self.markdown(), self.to_dict())
