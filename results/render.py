"""A Comparison as text (the terminal), Markdown, CSV or JSON; HTML lives in results/html.py.

Every format says the same things: per experiment, the runs side by side with
the rows that differ marked, the noise band and where it came from, and every
pair's verdict with what differs and how far the predictions agree. The JSON
layout is documented in results/COMPARE_JSON.md and is kept stable.
"""
from __future__ import annotations

import csv
import io
import json
import math
import shutil
from typing import Any, Callable

from results.compare import ROWS, VERDICTS, Comparison, Group, Pair, RunView

MAX_TABLE_RUNS = 12  # columns per experiment in text and Markdown; csv, json and html list every run
MAX_PAIRS = 20  # pairs listed per experiment in text and Markdown (the most divergent first)
MAX_MATRIX = 26
SYMBOLS = {"identical": "≡", "same predictions": "=", "within noise": "≈", "divergent": "≠"}
MATRIX_LEGEND = "≡ identical  = same predictions  ≈ within noise  ≠ divergent  · itself  - not compared"
_ANSI = {"identical": "32", "same predictions": "32", "within noise": "33", "divergent": "31;1", "marked": "33;1",
         "dim": "2", "bold": "1"}
JSON_FORMAT_VERSION = 1


# --- Values as people read them -----------------------------------------------------------

def display(key: str, value: Any) -> str:
    if value is None or value == {}:
        return "—"
    if key in ("spec_hash", "data_digest", "weights_sha256", "predictions_sha256"):
        return str(value)[:8]
    if key == "test_accuracy":
        return f"{value * 100:.2f} %"
    if key == "test_loss":
        return f"{value:.4f}"
    if key == "epoch_seconds":
        return f"{value:.2f} s"
    if key == "total_seconds":
        return f"{value:.1f} s" if value < 600 else f"{value / 60:.1f} min"
    if key == "epochs":
        return str(value["ran"]) if value["ran"] == value["of"] else f"{value['ran']} of {value['of']}"
    if key == "op_determinism":
        return "on" if value is True else "off" if value is False else str(value)
    if key == "threads":
        return " / ".join(str(value.get(k) or "auto") for k in ("intra_op", "inter_op"))
    return str(value)


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


def differences_text(pair: Pair, limit: int = 12) -> str:
    diffs = [d.describe(pair.a.label, pair.b.label) for d in pair.differences]
    if not diffs:
        return "nothing recorded differs"
    more = f", and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return "; ".join(diffs[:limit]) + more


def counts_text(group: Group) -> str:
    if len(group.compared) < 2:
        return "nothing to compare: " + ("one completed run" if group.compared else "no completed run")
    counts = group.verdict_counts()
    parts = [f"{n} {name}" for name, n in counts.items() if n]
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


def matrix_symbol(group: Group, i: int, j: int) -> str:
    code = int(group.verdicts[i, j])
    return "·" if i == j else SYMBOLS[VERDICTS[code]] if code >= 0 else "-"


# --- Text ---------------------------------------------------------------------------------

class _Style:
    def __init__(self, color: bool):
        self.color = color

    def __call__(self, text: str, kind: str) -> str:
        return f"\x1b[{_ANSI[kind]}m{text}\x1b[0m" if self.color and kind in _ANSI else text


def render_text(cmp: Comparison, color: bool = False, width: int | None = None) -> str:
    style = _Style(color)
    width = width or max(80, min(shutil.get_terminal_size((120, 24)).columns, 200))
    out = [style(header(cmp), "bold")]
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
            verdict = style(f"{p.verdict:<16}", p.verdict)
            out.append(f"  {p.a.label:>3}–{p.b.label:<3} {verdict} Δ accuracy {p.delta_pp:+7.2f} pp   {agreement_text(p)}")
            out.append(f"           differs: {differences_text(p)}")
        if g.n_pairs > len(pairs):
            out.append(f"  … {g.n_pairs - len(pairs)} more pairs (the most divergent are listed; --format json has all)")
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


def render_markdown(cmp: Comparison) -> str:
    out = ["# Run comparison", "", header(cmp) + ".", ""]
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
            out += ["| pair | verdict | Δ accuracy | prediction agreement | what differs |", "|---|---|---:|---|---|"]
            for p in pairs:
                out.append(f"| {p.a.label}–{p.b.label} | **{p.verdict}** | {p.delta_pp:+.2f} pp | "
                           f"{_md(agreement_text(p))} | {_md(differences_text(p))} |")
            if g.n_pairs > len(pairs):
                out.append(f"\n… {g.n_pairs - len(pairs)} more pairs (the most divergent are listed; json has all).")
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
               "noise_band_pp", "noise_band_origin", "differs_in_experiment", "verdicts", "no_verdict_because")


def render_csv(cmp: Comparison) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for g in cmp.groups:
        index = {id(v): i for i, v in enumerate(g.compared)}
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
                        g.band.origin, ";".join(g.differing_rows), verdicts, v.excluded or ""])
    return buf.getvalue()


# --- JSON (documented in results/COMPARE_JSON.md) ---------------------------------------------

def comparison_dict(cmp: Comparison) -> dict[str, Any]:
    return {
        "format": "harness-compare",
        "format_version": JSON_FORMAT_VERSION,
        "paths": cmp.paths,
        "tolerance_pp": cmp.tolerance_pp,
        "n_runs": cmp.n_runs,
        "verdict_counts": cmp.verdict_counts(),
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
        "noise_band": {"pp": g.band.pp, "origin": g.band.origin, "seeds": g.band.seeds, "sd_pp": g.band.sd_pp,
                       "description": g.band.describe()},
        "verdict_counts": g.verdict_counts(),
        "pairs": [_pair_dict(p) for p in g.pairs()],
    }


def _finite(value: Any) -> Any:
    """A record's values with NaN and infinities (which json.loads accepts) as null: strict JSON out."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _pair_dict(p: Pair) -> dict[str, Any]:
    ag = p.agreement
    return {
        "a": p.a.label, "b": p.b.label, "run_a": p.a.run_id, "run_b": p.b.run_id,
        "verdict": p.verdict,
        "delta_accuracy_pp": p.delta_pp,
        "differences": [d.what for d in p.differences],  # the values: each run's "facets"
        "agreement": {"n": ag.n, "same_class": ag.same_class, "share": ag.share,
                      "a_right_b_wrong": ag.a_right_b_wrong, "b_right_a_wrong": ag.b_right_a_wrong, "note": ag.note},
    }


COMPACT_JSON_PAIRS = 2000  # past this many pairs the JSON is written without indentation


def render_json(cmp: Comparison) -> str:
    compact = sum(g.n_pairs for g in cmp.groups) > COMPACT_JSON_PAIRS
    return json.dumps(comparison_dict(cmp), indent=None if compact else 1, allow_nan=False, default=str) + "\n"


def render_html(cmp: Comparison) -> str:
    from results.html import render_html as html  # matplotlib is imported only for this format

    return html(cmp)


FORMATS: dict[str, Callable[..., str]] = {
    "text": render_text, "md": render_markdown, "csv": render_csv, "json": render_json, "html": render_html,
}
