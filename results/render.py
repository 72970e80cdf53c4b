"""A Comparison as text (the terminal), Markdown, CSV or JSON; HTML lives in results/html.py.

Every format says the same things, in this order: any nondeterminism first and
loudly; then per experiment the runs side by side with the rows that differ
marked, the noise band with its own interval (or the `repeat` command that would
measure it), and every pair with its cause first (experiment, numerics, and how
many inert differences `--all` would list), its verdict, McNemar's p-value, the
95 % interval for the accuracy difference, and how far the predictions agree.
The JSON layout is documented in results/COMPARE_JSON.md and is kept stable.
Values come from untrusted records: NaN, infinities and huge numbers are shown
as "—" or in short, never crash a renderer, and never reach the JSON.
"""
from __future__ import annotations

import csv
import io
import json
import math
import shutil
from typing import Any, Callable

from results.compare import ROWS, VERDICTS, Comparison, Group, Pair, RunView
from results.facets import CAUSES, finite_number
from results.verdicts import cause_line, equal_facets, equal_text, fmt_p

MAX_TABLE_RUNS = 12  # columns per experiment in text and Markdown; csv, json and html list every run
MAX_PAIRS = 20  # pairs listed per experiment in text and Markdown (the loudest verdicts first)
MAX_MATRIX = 26
SYMBOLS = {"identical": "≡", "nondeterministic": "!", "same predictions": "=", "within noise": "≈", "divergent": "≠"}
MATRIX_LEGEND = ("≡ identical  ! NONDETERMINISTIC  = same predictions  ≈ within noise  ≠ divergent  · itself  "
                 "- not compared")
_ANSI = {"identical": "32", "same predictions": "32", "within noise": "33", "divergent": "31;1", "marked": "33;1",
         "nondeterministic": "97;41;1", "dim": "2", "bold": "1"}
JSON_FORMAT_VERSION = 2


# --- Values as people read them -----------------------------------------------------------

def display(key: str, value: Any) -> str:
    """One table cell; whatever a record holds, a short string."""
    if value is None or value == {}:
        return "—"
    if key in ("spec_hash", "data_digest", "weights_sha256", "predictions_sha256"):
        return str(value)[:8]
    if key in ("test_accuracy", "test_loss", "epoch_seconds", "total_seconds"):
        number = finite_number(value)
        if number is None:
            return "—"
        if key == "test_accuracy":
            return f"{number * 100:.2f} %"
        if key == "test_loss":
            return f"{number:.4g}" if abs(number) >= 1e4 else f"{number:.4f}"
        if key == "epoch_seconds":
            return f"{number:.2f} s"
        return f"{number:.1f} s" if number < 600 else f"{number / 60:.1f} min"
    if key == "epochs":
        ran, of = value.get("ran"), _short(value.get("of"))
        return str(ran) if ran == value.get("of") else f"{ran} of {of}"
    if key == "op_determinism":
        return "on" if value is True else "off" if value is False else _short(value)
    if key == "threads":
        return " / ".join(_threads(value.get(k)) for k in ("intra_op", "inter_op"))
    return _short(value)


def _threads(value: Any) -> str:
    if not value:
        return "auto"
    number = finite_number(value, 0, 1e6)
    return "—" if number is None else str(int(number)) if number == int(number) else str(number)


def _short(value: Any, cap: int = 60) -> str:
    text = str(value) if not (isinstance(value, int) and abs(value) > 10 ** 30) else f"{str(value)[:12]}…"
    return text if len(text) <= cap else text[: cap - 1] + "…"


def table(group: Group, runs: list[RunView] | None = None, with_run_row: bool = False) -> list[tuple[str, list[str], bool]]:
    """The side-by-side rows: (label, one value per run, marked); library versions get a row each."""
    runs = group.runs if runs is None else runs
    rows = []
    for row in ROWS:
        if row.key == "run_id" and not with_run_row:
            continue
        marked = row.key in group.differing_rows
        if row.key == "versions":
            libraries = list(dict.fromkeys(lib for v in group.runs for lib in v.fields["versions"]))
            for lib in libraries:
                values = [v.fields["versions"].get(lib) for v in group.runs]
                rows.append((lib, [str(v.fields["versions"].get(lib) or "—") for v in runs], len(set(values)) > 1))
            continue
        rows.append((row.label, [display(row.key, v.fields[row.key]) for v in runs], marked))
    return rows


def agreement_text(pair: Pair, long: bool = True) -> str:
    ag = pair.agreement
    if ag.n is None:
        return f"agreement not measured ({ag.note})"
    text = f"same class {ag.same_class}/{ag.n} ({ag.share * 100:.1f} %)"
    a, b = pair.a.label, pair.b.label
    if ag.a_right_b_wrong is not None:
        text += f", {a} right & {b} wrong {ag.a_right_b_wrong}, {b} right & {a} wrong {ag.b_right_a_wrong}"
    elif long:
        text += f" ({ag.note})"
    return text


def evidence_text(pair: Pair) -> str:
    """`Δ +0.50 pp (95 % CI −1.21 to +2.20) · McNemar p = 0.754 (3 vs 2)`."""
    text = f"Δ {pp(pair.delta_pp)}"
    ci = pair.ci_pp
    if ci is not None:
        text += f" (95 % CI {ci[0]:+.2f} to {ci[1]:+.2f})"
    test = pair.test
    text += (f" · McNemar p = {fmt_p(test.p)} ({test.b} vs {test.c})" if test is not None
             else " · no McNemar test (right/wrong counts not known)")
    return text


def pp(value: float) -> str:
    return f"{value:+.2f} pp" if math.isfinite(value) else "— pp"


def nondeterminism_text(cmp: Comparison) -> list[str]:
    """The loud block every format opens with when some pair is nondeterministic (empty when none is)."""
    found = cmp.nondeterministic()
    if not found:
        return []
    n = len(found)
    lines = [f"NONDETERMINISM: {n} pair{'s' if n != 1 else ''} ran the same spec, seed, data and numerics and got "
             "different weights. This setup is not reproducible: fix it before trusting any other verdict."]
    for g, p in found[:MAX_PAIRS]:
        lines.append(f"{g.short_key} {g.name} {p.a.label}–{p.b.label} ({p.a.run_id} vs {p.b.run_id}), "
                     f"Δ {pp(p.delta_pp)}; equal: {equal_text(p)}")
    if n > MAX_PAIRS:
        lines.append(f"… and {n - MAX_PAIRS} more (--format json lists all)")
    return lines


def counts_text(group: Group) -> str:
    if len(group.compared) < 2:
        return "nothing to compare: " + ("one completed run" if group.compared else "no completed run")
    counts = group.verdict_counts()
    parts = [f"{n} {name.upper() if name == 'nondeterministic' else name}" for name, n in counts.items() if n]
    return f"{group.n_pairs} pair{'s' if group.n_pairs != 1 else ''}: " + ", ".join(parts)


def header(cmp: Comparison) -> str:
    where = ", ".join(cmp.paths) if cmp.paths else "the given records"
    n_exp = len(cmp.groups)
    text = (f"{cmp.n_runs} run{'s' if cmp.n_runs != 1 else ''} of {n_exp} experiment{'s' if n_exp != 1 else ''} "
            f"from {where}")
    if cmp.skipped:
        text += f"; {len(cmp.skipped)} skipped"
    return text


def experiment_title(group: Group) -> str:
    return f"experiment {group.short_key} — {group.summary}"


def nearest_text(group: Group) -> str | None:
    """How this experiment's spec differs from the nearest other one, which it is never compared with."""
    if group.nearest is None:
        return None
    diffs = [f"{d.what} ({d.b} here, {d.a} there)" for d in group.spec_differences[:6]]
    more = f" and {len(group.spec_differences) - 6} more keys" if len(group.spec_differences) > 6 else ""
    n = len(group.nearest.runs)
    return (f"differs from experiment {group.nearest.short_key} ({n} run{'s' if n != 1 else ''}) in "
            f"{', '.join(diffs)}{more}; runs of different experiments are never compared")


def matrix_symbol(group: Group, i: int, j: int) -> str:  # noqa: D401
    code = int(group.verdicts[i, j])
    return "·" if i == j else SYMBOLS[VERDICTS[code]] if code >= 0 else "-"


# --- Text ---------------------------------------------------------------------------------

class _Style:
    def __init__(self, color: bool):
        self.color = color

    def __call__(self, text: str, kind: str) -> str:
        return f"\x1b[{_ANSI[kind]}m{text}\x1b[0m" if self.color and kind in _ANSI else text


def render_text(cmp: Comparison, color: bool = False, width: int | None = None, show_all: bool = False) -> str:
    style = _Style(color)
    width = width or max(80, min(shutil.get_terminal_size((120, 24)).columns, 200))
    out = []
    loud = nondeterminism_text(cmp)
    if loud:
        out += [style(f"!! {loud[0]}", "nondeterministic")] + [f"   {line}" for line in loud[1:]] + [""]
    out.append(style(header(cmp), "bold"))
    if not cmp.groups:
        out.append("no run records found: a run folder holds run.json (python run.py --platform local makes one)")
    for g in cmp.groups:
        out.append(f"  {g.short_key}  {g.name:<14} {len(g.runs):>4} run{'s' if len(g.runs) != 1 else ' '}  {counts_text(g)}")
    for g in cmp.groups:
        out += ["", style(experiment_title(g), "bold")]
        near = nearest_text(g)
        if near:
            out.append(f"  {near}")
        shown = g.runs[:MAX_TABLE_RUNS]
        out += [""] + _text_table(g, shown, width, style)
        if len(g.runs) > len(shown):
            out.append(f"  … and {len(g.runs) - len(shown)} more runs (--format csv, json or html shows every run)")
        out.append("")
        for v in shown:
            excluded = style(f"  — no verdict: {v.excluded}", "dim") if v.excluded else ""
            source = v.loaded.source
            where = f"in {source.parent}" if source.name == v.run_id else str(source)
            out.append(f"  {v.label:>3}  {v.run_id}  ({where}){excluded}")
        out += ["", f"  noise band {g.band.describe()}", f"  {counts_text(g)}"]
        pairs = g.pairs(limit=MAX_PAIRS)
        for p in pairs:
            name = p.verdict.upper() if p.verdict == "nondeterministic" else p.verdict
            out.append(f"  {p.a.label:>3}–{p.b.label:<3} {cause_line(p, show_all)}")
            out.append(f"           {style(name, p.verdict)}: {p.reason}")
            out.append(f"           {evidence_text(p)} · {agreement_text(p)}")
        if g.n_pairs > len(pairs):
            more = g.n_pairs - len(pairs)
            out.append(f"  … {more} more pair{'s' if more != 1 else ''} (the loudest verdicts are listed; "
                       "--format json has all)")
        if 3 <= len(g.compared) <= MAX_MATRIX:
            labels = [v.label for v in g.compared]
            out += ["", f"  verdict matrix: {MATRIX_LEGEND}", "       " + " ".join(f"{l:>2}" for l in labels)]
            for i, l in enumerate(labels):
                cells = [style(f"{matrix_symbol(g, i, j):>2}", VERDICTS[g.verdicts[i, j]] if i != j else "dim")
                         for j in range(len(labels))]
                out.append(f"    {l:>2} " + " ".join(cells))
    if cmp.skipped:
        out += ["", style(f"skipped ({len(cmp.skipped)})", "bold")]
        out += [f"  {s.path}: {s.reason}" for s in cmp.skipped]
    return "\n".join(out) + "\n"


def _text_table(group: Group, runs: list[RunView], width: int, style: _Style) -> list[str]:
    rows = table(group, runs)
    cap = 22
    cells = [[v if len(v) <= cap else v[: cap - 1] + "…" for v in values] for _, values, _ in rows]
    label_w = max(len(label) for label, _, _ in rows) + 6
    col_w = [max([len(runs[c].label)] + [len(r[c]) for r in cells]) + 2 for c in range(len(runs))]
    blocks = 1  # as few blocks of columns as fit the width, of even size
    while True:
        per = -(-len(runs) // blocks)
        chunks = [range(i, min(i + per, len(runs))) for i in range(0, len(runs), per)]
        if per == 1 or all(label_w + sum(col_w[c] for c in chunk) <= width for chunk in chunks):
            break
        blocks += 1
    lines = []
    for chunk in chunks:
        if lines:
            lines.append("")
        lines.append((" " * label_w + "".join(f"{runs[c].label:<{col_w[c]}}" for c in chunk)).rstrip())
        for (label, _, marked), values in zip(rows, cells):
            mark = style("*", "marked") if marked else " "
            lines.append((f"  {mark} {label:<{label_w - 4}}" + "".join(f"{values[c]:<{col_w[c]}}" for c in chunk)).rstrip())
    if any(marked for _, _, marked in rows):
        lines.append(style("  * differs between these runs", "dim"))
    return lines


# --- Markdown -----------------------------------------------------------------------------

def _md(text: Any) -> str:
    return str(text).replace("|", "\\|")


def render_markdown(cmp: Comparison, show_all: bool = False) -> str:
    out = ["# Run comparison", ""]
    loud = nondeterminism_text(cmp)
    if loud:
        out += [f"> **⚠ {_md(loud[0])}**", ">"] + [f"> - {_md(line)}" for line in loud[1:]] + [""]
    out += [header(cmp) + ".", ""]
    if cmp.groups:
        out += ["| experiment | name | runs | verdicts |", "|---|---|---:|---|"]
        out += [f"| `{g.short_key}` | {_md(g.name)} | {len(g.runs)} | {_md(counts_text(g))} |" for g in cmp.groups]
    else:
        out.append("No run records found.")
    for g in cmp.groups:
        out += ["", f"## {_md(experiment_title(g))}", ""]
        near = nearest_text(g)
        if near:
            out += [f"_{_md(near)}_", ""]
        shown = g.runs[:MAX_TABLE_RUNS]
        out.append("| | " + " | ".join(f"**{v.label}**" for v in shown) + " |")
        out.append("|---|" + "---|" * len(shown))
        out.append("| run | " + " | ".join(f"`{_md(v.run_id)}`" for v in shown) + " |")
        for label, values, marked in table(g, shown):
            name = f"**{_md(label)}** ≠" if marked else _md(label)
            out.append(f"| {name} | " + " | ".join(_md(v) for v in values) + " |")
        if len(g.runs) > len(shown):
            out.append(f"\n… and {len(g.runs) - len(shown)} more runs (csv, json and html list every run).")
        out += ["", "Rows marked ≠ differ between these runs."]
        excluded = [v for v in g.runs if v.excluded]
        if excluded:
            out += [""] + [f"- {v.label} has no verdict: {_md(v.excluded)}" for v in excluded]
        out += ["", f"**Noise band** {_md(g.band.describe())}.", "", f"**Verdicts** {_md(counts_text(g))}.", ""]
        pairs = g.pairs(limit=MAX_PAIRS)
        if pairs:
            out += ["| pair | cause | verdict | Δ accuracy (95 % CI) | McNemar p | prediction agreement |",
                    "|---|---|---|---:|---:|---|"]
            for p in pairs:
                ci = p.ci_pp
                interval = f" ({ci[0]:+.2f} to {ci[1]:+.2f})" if ci else ""
                test = p.test
                verdict = "**NONDETERMINISTIC** ⚠" if p.verdict == "nondeterministic" else f"**{p.verdict}**"
                out.append(f"| {p.a.label}–{p.b.label} | {_md(cause_line(p, show_all))} | {verdict}: {_md(p.reason)} | "
                           f"{pp(p.delta_pp)}{interval} | {fmt_p(test.p) + f' ({test.b} vs {test.c})' if test else '—'} | "
                           f"{_md(agreement_text(p))} |")
            if g.n_pairs > len(pairs):
                out.append(f"\n… {g.n_pairs - len(pairs)} more pairs (the loudest verdicts are listed; json has all).")
        if 3 <= len(g.compared) <= MAX_MATRIX:
            labels = [v.label for v in g.compared]
            out += ["", f"Verdict matrix — {MATRIX_LEGEND}", "", "| | " + " | ".join(labels) + " |",
                    "|---|" + "---|" * len(labels)]
            for i, l in enumerate(labels):
                out.append(f"| **{l}** | " + " | ".join(matrix_symbol(g, i, j) for j in range(len(labels))) + " |")
    if cmp.skipped:
        out += ["", f"## Skipped ({len(cmp.skipped)})", ""]
        out += [f"- `{_md(s.path)}`: {_md(s.reason)}" for s in cmp.skipped]
    return "\n".join(out) + "\n"


# --- CSV: one row per run -------------------------------------------------------------------

CSV_COLUMNS = ("experiment", "label", "run_id", "source", "platform", "status", "spec_hash", "seed", "data_digest",
               "data_source", "backend", "device", "python", "tensorflow", "keras", "jax", "torch", "numpy",
               "op_determinism", "threads_intra_op", "threads_inter_op", "epochs_ran", "epochs", "test_accuracy",
               "test_loss", "seconds_per_epoch", "total_seconds", "weights_sha256", "predictions_sha256",
               "noise_band_pp", "noise_band_origin", "noise_band_low_pp", "noise_band_high_pp", "differs_in_experiment",
               "verdicts", "no_verdict_because")


def render_csv(cmp: Comparison, show_all: bool = False) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for g in cmp.groups:
        index = {id(v): i for i, v in enumerate(g.compared)}
        band_limits = [round(x, 6) for x in g.band.pp_ci] if g.band.pp_ci else ["", ""]
        for v in g.runs:
            f = v.fields
            threads = f["threads"] or {}
            i = index.get(id(v))
            verdicts = "" if i is None else ";".join(
                f"{o.label}={VERDICTS[g.verdicts[i, j]]}" for j, o in enumerate(g.compared) if j != i)
            w.writerow([g.key, v.label, v.run_id, v.loaded.source, f["platform"], f["status"], f["spec_hash"],
                        f["seed"], f["data_digest"], f["data_source"], f["backend"], f["device"],
                        *(f["versions"].get(k, "") for k in ("python", "tensorflow", "keras", "jax", "torch", "numpy")),
                        f["op_determinism"], threads.get("intra_op"), threads.get("inter_op"),
                        f["epochs"]["ran"], f["epochs"]["of"], f["test_accuracy"], f["test_loss"], f["epoch_seconds"],
                        f["total_seconds"], f["weights_sha256"], f["predictions_sha256"], round(g.band.pp, 6),
                        g.band.origin, *band_limits,
                        ";".join(g.differing_rows), verdicts, v.excluded or ""])
    return buf.getvalue()


# --- JSON (documented in results/COMPARE_JSON.md) ---------------------------------------------

def comparison_dict(cmp: Comparison) -> dict[str, Any]:
    # What compare computes is finite (accuracies are in [0, 1]); what records hold passes _finite.
    return {
        "format": "harness-compare",
        "format_version": JSON_FORMAT_VERSION,
        "paths": cmp.paths,
        "tolerance_pp": cmp.tolerance_pp,
        "n_runs": cmp.n_runs,
        "verdict_counts": cmp.verdict_counts(),
        "nondeterminism": [{"experiment_hash": g.key, "a": p.a.label, "b": p.b.label, "run_a": p.a.run_id,
                            "run_b": p.b.run_id, "delta_accuracy_pp": p.delta_pp, "equal": equal_facets(p)}
                           for g, p in cmp.nondeterministic()],
        "experiments": [_group_dict(g) for g in cmp.groups],
        "skipped": [{"path": str(s.path), "reason": s.reason} for s in cmp.skipped],
    }


def _group_dict(g: Group) -> dict[str, Any]:
    return {
        "experiment_hash": g.key,
        "name": g.name,
        "summary": g.summary,
        "spec": _finite(g.spec),
        "nearest_experiment": None if g.nearest is None else {
            "experiment_hash": g.nearest.key,
            "differences": [{"what": d.what, "this": d.b, "nearest": d.a} for d in g.spec_differences]},
        "runs": [{"label": v.label, "run_id": v.run_id, "source": str(v.loaded.source), "loader": v.loaded.loader,
                  "fields": _finite(v.fields), "facets": v.facets, "verdicts": v.excluded is None,
                  "no_verdict_because": v.excluded} for v in g.runs],
        "differing_rows": g.differing_rows,
        "noise_band": {"pp": g.band.pp, "origin": g.band.origin, "assumed": g.band.assumed, "seeds": g.band.seeds,
                       "sd_pp": g.band.sd_pp, "sd_ci_pp": list(g.band.sd_ci_pp) if g.band.sd_ci_pp else None,
                       "pp_ci": list(g.band.pp_ci) if g.band.pp_ci else None,
                       "target_width_pp": g.band.target_width_pp, "seeds_for_target": g.band.seeds_for_target,
                       "repeat_command": g.band.repeat_command, "description": g.band.describe()},
        "verdict_counts": g.verdict_counts(),
        "pairs": [_pair_dict(p) for p in g.pairs()],
    }


def _finite(value: Any) -> Any:
    """Values with NaN and infinities (which json.loads accepts in a record) as null: strict JSON out."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _pair_dict(p: Pair) -> dict[str, Any]:
    ag, test, ci = p.agreement, p.test, p.ci_pp
    return {
        "a": p.a.label, "b": p.b.label, "run_a": p.a.run_id, "run_b": p.b.run_id,
        "verdict": p.verdict,
        "reason": p.reason,
        "causes": {cause: [d.what for d in p.by_cause(cause)] for cause in CAUSES},
        "delta_accuracy_pp": p.delta_pp,
        "delta_ci_pp": list(ci) if ci else None,
        "mcnemar": None if test is None else {"b": test.b, "c": test.c, "p": test.p},
        "differences": [d.what for d in p.differences],  # the values: each run's "facets"
        "agreement": {"n": ag.n, "same_class": ag.same_class, "share": ag.share,
                      "a_right_b_wrong": ag.a_right_b_wrong, "b_right_a_wrong": ag.b_right_a_wrong, "note": ag.note},
    }


COMPACT_JSON_PAIRS = 2000  # past this many pairs the JSON is written without indentation


def render_json(cmp: Comparison, show_all: bool = True) -> str:
    compact = sum(g.n_pairs for g in cmp.groups) > COMPACT_JSON_PAIRS
    return json.dumps(comparison_dict(cmp), indent=None if compact else 1, allow_nan=False, default=str) + "\n"


def render_html(cmp: Comparison, show_all: bool = False) -> str:
    from results.html import render_html as html  # matplotlib is imported only for this format

    return html(cmp, show_all)


FORMATS: dict[str, Callable[..., str]] = {
    "text": render_text, "md": render_markdown, "csv": render_csv, "json": render_json, "html": render_html,
}
