"""The HTML report: one self-contained file, every plot a PNG inlined as base64.

Per experiment: a verdict matrix, training and validation curves of all runs
overlaid, the side-by-side table with changed rows highlighted, every pair's
verdict with what differs, a confusion matrix per run and seconds per epoch per
run. Drawn with matplotlib's object API (no pyplot, no global state, no display).
"""
from __future__ import annotations

import base64
import csv
import datetime as dt
import html
import io
import re
from typing import Any

import numpy as np
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from results.compare import VERDICTS, Comparison, Group, RunView
from results.facets import INERT, finite_number
from results.render import agreement_text, counts_text, header, nearest_text, nondeterminism_text, pp, table
from results.verdicts import cause_line, fmt_p

MAX_PLOTTED_RUNS = 12  # curves, confusion matrices and timings per experiment
MAX_MATRIX_RUNS = 40
MAX_ANNOTATED_RUNS = 8  # up to this many runs, the matrix cells show McNemar's p and the Δ too
MAX_HTML_PAIRS = 200
VERDICT_COLORS = {"identical": "#1a7f37", "nondeterministic": "#6639ba", "same predictions": "#4ac26b",
                  "within noise": "#d4a72c", "divergent": "#cf222e"}
NOT_COMPARED_COLOR = "#eaeef2"
SYMBOLS = {"identical": "≡", "nondeterministic": "!", "same predictions": "=", "within noise": "≈", "divergent": "≠"}
MAX_PLOT_VALUE = 1e12  # history values past this (or NaN, infinite) are not plotted: a record is untrusted
RUN_COLORS = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bc4c00", "#1b7c83", "#bf3989", "#6e7781",
              "#4d2d00", "#0550ae", "#a40e26", "#116329"]

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;margin:0;background:#f6f8fa}
main{max-width:1280px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 4px} h2{font-size:20px;margin:0 0 6px} h3{font-size:15px;margin:18px 0 6px;color:#57606a}
.muted{color:#57606a} code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:13px}
section{background:#fff;border:1px solid #d0d7de;border-radius:10px;padding:20px;margin:20px 0}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{background:#fff;border:1px solid #d0d7de;border-radius:10px;padding:12px 16px;min-width:220px}
.card b{font-size:22px;display:block}
.badge{display:inline-block;border-radius:12px;padding:1px 10px;color:#fff;font-size:13px;font-weight:600;white-space:nowrap}
.identical{background:#1a7f37}.same-predictions{background:#4ac26b}.within-noise{background:#d4a72c}.divergent{background:#cf222e}
.nondeterministic{background:#6639ba}
.alarm{background:#ffebe9;border:3px solid #cf222e;border-radius:10px;padding:14px 18px;margin:16px 0}
.alarm h2{color:#a40e26;margin:0 0 6px} .alarm li{margin:4px 0}
.cause{font-weight:600} .reason{color:#57606a;font-size:12.5px}
tr.nondeterministic-row td{background:#fbefff}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border-bottom:1px solid #eaeef2;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f6f8fa;position:sticky;top:0}
table.side td:first-child{color:#57606a;white-space:nowrap}
table.side tr.differs td{background:#fff8c5}
table.side tr.differs td:first-child{font-weight:600;color:#1f2328;border-left:4px solid #d4a72c}
.scroll{overflow-x:auto}
.figs{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.figs img{max-width:100%;border:1px solid #eaeef2;border-radius:6px}
.note{background:#ddf4ff;border:1px solid #54aeff;border-radius:6px;padding:8px 12px;margin:10px 0}
.warn{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:8px 12px;margin:10px 0}
details{margin:8px 0} summary{cursor:pointer;color:#0969da}
"""

HOW_TO_READ = """<p><b>How to read this.</b> Runs are grouped by experiment: the spec without its seed or data source.
Within one, each pair of runs gets a verdict: <span class="badge identical">identical</span> (the same weights, bit for bit),
<span class="badge same-predictions">same predictions</span> (other weights, the same predicted class for every test image),
<span class="badge within-noise">within noise</span> (test accuracy differs by less than the seed-to-seed noise band, or
McNemar's exact test cannot tell the two apart on this test set) or <span class="badge divergent">divergent</span>;
<span class="badge nondeterministic">nondeterministic</span> means the same spec, seed, data and numerics gave other weights:
the setup itself is not reproducible. Each pair names its cause first: what differs in the <i>experiment</i> (seed, data,
code), in the <i>numerics</i> (libraries, device, threads, determinism switches), and how many <i>inert</i> differences
(platform name, paths, SDK versions) there are; then McNemar's p-value and the 95 % interval for the accuracy difference
(Newcombe's, for paired proportions). Highlighted table rows differ between runs. Different experiments are never compared.</p>"""


def render_html(cmp: Comparison, show_all: bool = False) -> str:
    counts = cmp.verdict_counts()
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8>"
             f"<meta name=viewport content='width=device-width,initial-scale=1'>"
             f"<title>Run comparison: {cmp.n_runs} runs</title><style>{CSS}</style></head><body><main>",
             "<h1>Reproducibility report</h1>", _alarm(cmp),
             f"<p class=muted>{_e(header(cmp))} · made {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}</p>",
             "<div class=cards>",
             f"<div class=card><b>{cmp.n_runs}</b>runs in {len(cmp.groups)} experiment(s)</div>"]
    parts += [f"<div class=card><b>{n}</b>{_badge(name)} pairs</div>" for name, n in counts.items()]
    if cmp.skipped:
        parts.append(f"<div class=card><b>{len(cmp.skipped)}</b>skipped</div>")
    parts += ["</div>", f"<div class=note>{HOW_TO_READ}</div>"]
    if not cmp.groups:
        parts.append("<section><p>No run records found. A run folder holds <code>run.json</code>; "
                     "<code>python run.py --platform local</code> makes one.</p></section>")
    if len(cmp.groups) > 1:
        parts.append("<section><h2>Experiments</h2><table><tr><th>experiment</th><th>spec</th><th>runs</th>"
                     "<th>verdicts</th></tr>")
        parts += [f"<tr><td><a href='#exp-{g.short_key}' class=mono>{_e(g.short_key)}</a></td><td>{_e(g.summary)}</td>"
                  f"<td>{len(g.runs)}</td><td>{_verdict_badges(g)}</td></tr>" for g in cmp.groups]
        parts.append("</table></section>")
    parts += [_group_section(g, show_all) for g in cmp.groups]
    if cmp.skipped:
        parts.append(f"<section><h2>Skipped ({len(cmp.skipped)})</h2><table><tr><th>path</th><th>reason</th></tr>")
        parts += [f"<tr><td class=mono>{_e(s.path)}</td><td>{_e(s.reason)}</td></tr>" for s in cmp.skipped]
        parts.append("</table></section>")
    parts.append("</main></body></html>\n")
    return "\n".join(parts)


def _alarm(cmp: Comparison) -> str:
    """The nondeterminism box, above everything else; empty when there is none."""
    loud = nondeterminism_text(cmp)
    if not loud:
        return ""
    return (f"<div class=alarm><h2>⚠ Nondeterminism</h2><p>{_e(loud[0].removeprefix('NONDETERMINISM: '))}</p><ul>" +
            "".join(f"<li class=mono>{_e(line)}</li>" for line in loud[1:]) + "</ul></div>")


def _group_section(g: Group, show_all: bool = False) -> str:
    out = [f"<section id='exp-{_e(g.short_key)}'><h2>Experiment <span class=mono>{_e(g.short_key)}</span></h2>",
           f"<p>{_e(g.summary)}</p>", f"<p>{_verdict_badges(g)}</p>"]
    near = nearest_text(g)
    if near:
        out.append(f"<p class=muted>{_e(near)}</p>")
    out.append(f"<p><b>Noise band</b> {_code(g.band.describe())}</p>")
    plotted = g.runs[:MAX_PLOTTED_RUNS]
    if len(g.runs) > len(plotted):
        out.append(f"<div class=warn>{len(g.runs)} runs: the plots show the first {len(plotted)}; "
                   "the table, the pairs and the verdict matrix cover more.</div>")
    figs = []
    if len(g.compared) >= 2:
        figs.append(_img(verdict_matrix_figure(g), "verdict matrix"))
    curves = curves_figure(g, plotted)
    if curves is not None:
        figs.append(_img(curves, "training and validation curves"))
    out.append("<div class=figs>" + "".join(figs) + "</div>")
    out.append("<h3>Side by side</h3><div class=scroll><table class=side><tr><th></th>" +
               "".join(f"<th>{_e(v.label)}<br><span class='mono muted' title='{_e(v.loaded.source)}'>"
                       f"{_e(v.run_id)}</span></th>" for v in g.runs) + "</tr>")
    for label, values, marked in table(g):
        out.append(f"<tr class='{'differs' if marked else ''}'><td>{_e(label)}</td>" +
                   "".join(f"<td>{_e(x)}</td>" for x in values) + "</tr>")
    out.append("</table></div>")
    excluded = [v for v in g.runs if v.excluded]
    if excluded:
        out.append("<p class=muted>" + "<br>".join(f"{_e(v.label)} has no verdict: {_e(v.excluded)}" for v in excluded)
                   + "</p>")
    pairs = g.pairs(limit=MAX_HTML_PAIRS)
    if pairs:
        out.append(f"<h3>Pairs ({_e(counts_text(g))})</h3><div class=scroll><table><tr><th>pair</th><th>cause</th>"
                   "<th>verdict</th><th>Δ accuracy</th><th>95 % CI</th><th>McNemar p</th>"
                   "<th>prediction agreement</th></tr>")
        for p in pairs:
            ci, test = p.ci_pp, p.test
            inert = p.by_cause(INERT)
            hidden = (f"<details><summary>{len(inert)} inert difference{'s' if len(inert) != 1 else ''}</summary>"
                      + "<br>".join(_e(d.describe(p.a.label, p.b.label)) for d in inert) + "</details>"
                      if inert and not show_all else "")
            row_class = " class=nondeterministic-row" if p.verdict == "nondeterministic" else ""
            out.append(f"<tr{row_class}><td>{_e(p.a.label)}–{_e(p.b.label)}</td>"
                       f"<td><span class=cause>{_e(_cause_head(p, show_all))}</span>{hidden}</td>"
                       f"<td>{_badge(p.verdict)}<div class=reason>{_e(p.reason)}</div></td>"
                       f"<td>{_e(pp(p.delta_pp))}</td>"
                       f"<td>{_e(f'{ci[0]:+.2f} to {ci[1]:+.2f} pp') if ci else '—'}</td>"
                       f"<td>{_e(f'{fmt_p(test.p)} ({test.b} vs {test.c})') if test else '—'}</td>"
                       f"<td>{_e(agreement_text(p))}</td></tr>")
        out.append("</table></div>")
        if g.n_pairs > len(pairs):
            out.append(f"<p class=muted>… {g.n_pairs - len(pairs)} more pairs; the loudest verdicts are listed "
                       "(--format json has all).</p>")
    figs = []
    confusion = confusion_figure(plotted)
    if confusion is not None:
        figs.append(_img(confusion, "confusion matrices", tight=False))
    timing = timing_figure(plotted)
    if timing is not None:
        figs.append(_img(timing, "seconds per epoch"))
    if figs:
        out.append("<h3>Confusion matrices and speed</h3><div class=figs>" + "".join(figs) + "</div>")
    out.append("</section>")
    return "\n".join(out)


def _cause_head(p, show_all: bool) -> str:
    """The pair's cause line; the inert count goes into the <details> under it instead of `(… --all)`."""
    line = cause_line(p, show_all)
    return line if show_all else line.rsplit(" (", 1)[0] if line.endswith(": --all)") else line


# --- Figures ------------------------------------------------------------------------------

def verdict_matrix_figure(g: Group) -> Figure:
    runs = g.compared[:MAX_MATRIX_RUNS]
    k = len(runs)
    codes = g.verdicts[:k, :k].astype(int)
    size = min(7.5, 1.6 + 0.42 * k)
    fig = Figure(figsize=(size + 1.8, size))
    ax = fig.add_subplot()
    cmap = ListedColormap([NOT_COMPARED_COLOR] + [VERDICT_COLORS[v] for v in VERDICTS])
    ax.imshow(codes + 1, cmap=cmap, vmin=0, vmax=len(VERDICTS), interpolation="nearest")
    if k <= 16:
        for i in range(k):
            for j in range(k):
                if i != j:
                    # Few runs: each cell also carries McNemar's p (upper triangle) or the Δ (lower), in pp.
                    note = ""
                    if k <= MAX_ANNOTATED_RUNS:
                        pair = g.pair(min(i, j), max(i, j))
                        test = pair.test
                        note = (f"\n{fmt_p(test.p).removeprefix('0')}" if test else "") if i < j else f"\n{pair.delta_pp:+.1f}"
                    ax.text(j, i, SYMBOLS[VERDICTS[codes[i, j]]] + note, ha="center", va="center", color="white",
                            fontsize=13 if k <= 10 and not note else 7.5 if note else 9, fontweight="bold")
    labels = [v.label for v in runs]
    ax.set_xticks(range(k), labels)
    ax.set_yticks(range(k), labels)
    ax.tick_params(length=0)
    ax.xaxis.tick_top()
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(f"Verdicts ({'assumed' if g.band.assumed else 'measured'} noise band ±{g.band.pp:.2f} pp)"
                 + ("\nabove the diagonal: McNemar p; below: Δ accuracy, pp" if k <= MAX_ANNOTATED_RUNS else ""),
                 fontsize=11, pad=24)
    ax.legend(handles=[Patch(color=VERDICT_COLORS[v], label=f"{SYMBOLS[v]} {v}") for v in VERDICTS],
              loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False, fontsize=9)
    return fig


def _history(v: RunView) -> dict[str, list[float]]:
    history = v.run.get("history")
    if isinstance(history, dict) and history:
        series = {str(k): vals for k, vals in history.items() if isinstance(vals, list)}
    else:
        path = v.loaded.artifact("history.csv")
        if path is None:
            return {}
        try:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            series = {k: [_float(r.get(k)) for r in rows] for k in (rows[0] if rows else {}) if k not in ("epoch", "seconds")}
        except (OSError, ValueError, csv.Error):
            return {}
    plotted = {}
    for k, vals in series.items():  # a series with one NaN, infinite or absurd value is not drawn at all
        numbers = [finite_number(x, -MAX_PLOT_VALUE, MAX_PLOT_VALUE) for x in vals]
        if numbers and all(x is not None for x in numbers):
            plotted[k] = numbers
    return plotted


def _float(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def curves_figure(g: Group, runs: list[RunView]) -> Figure | None:
    """Accuracy and loss per epoch, every run overlaid; runs with the very same history share one line."""
    lines: dict[str, tuple[list[RunView], dict[str, list[float]]]] = {}
    for v in runs:
        h = _history(v)
        if h:
            lines.setdefault(repr(sorted(h.items())), ([], h))[0].append(v)
    if not lines:
        return None
    epochs_max = max(len(vals) for _, h in lines.values() for vals in h.values())
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    for col, metric in enumerate(("accuracy", "loss")):
        ax = fig.add_subplot(1, 2, col + 1)
        for views, h in lines.values():
            color = RUN_COLORS[g.runs.index(views[0]) % len(RUN_COLORS)]
            name = " = ".join(v.label for v in views)
            seeds = sorted({str(v.fields["seed"]) for v in views})
            platforms = "/".join(sorted({str(v.fields["platform"]) for v in views}))
            for key, style, marker in ((metric, "-", "o"), (f"val_{metric}", "--", "s")):
                values = h.get(key)
                if values:
                    ax.plot(range(1, len(values) + 1), values, style, color=color, marker=marker if epochs_max < 15 else None,
                            markersize=5, markerfacecolor=color if key == metric else "white",
                            label=f"{name}  {platforms} · seed {', '.join(seeds)}" if key == metric else None)
        ax.set_title(f"{metric} — solid ●: training, dashed ◻: validation", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_xlim(0.5, epochs_max + 0.5)
        ax.set_xticks(range(1, epochs_max + 1, max(1, epochs_max // 12)))
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=8, frameon=False, loc="best" if epochs_max < 50 else "lower right")
    return fig


def _confusion(v: RunView) -> np.ndarray | None:
    path = v.loaded.artifact("confusion_matrix.csv")
    if path is None:
        return None
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))[1:]
        matrix = np.array([[int(x) for x in row[1:]] for row in rows], dtype=np.int64)
    except (OSError, ValueError, OverflowError, csv.Error):  # a count past int64 is no confusion matrix
        return None
    if matrix.size and (matrix.min() < 0 or matrix.max() > 10 ** 9):
        return None
    return matrix if matrix.ndim == 2 and matrix.shape[0] == matrix.shape[1] and matrix.size else None


def confusion_figure(runs: list[RunView]) -> Figure | None:
    """Small multiples: the correct counts on the diagonal in grey, mistakes in red (log scale), the biggest labelled."""
    matrices = [(v, m) for v in runs if (m := _confusion(v)) is not None]
    if not matrices:
        return None
    cols = min(4, len(matrices))
    rows = -(-len(matrices) // cols)
    fig = Figure(figsize=(2.9 * cols, 3.0 * rows))
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.06, top=0.93, wspace=0.35, hspace=0.45)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    worst = max(int((m - np.diag(np.diag(m))).max()) for _, m in matrices)
    for ax, (v, m) in zip(axes, matrices):
        n = m.shape[0]
        mistakes = np.ma.masked_where(np.eye(n, dtype=bool) | (m == 0), m)
        ax.imshow(np.eye(n), cmap=ListedColormap(["white", "#eaeef2"]))
        ax.imshow(mistakes, cmap="Reds", norm=LogNorm(vmin=1, vmax=max(worst, 2)))
        off = np.where(np.eye(n, dtype=bool), 0, m)
        for flat in np.argsort(off, axis=None)[::-1][:4]:  # the four most frequent mistakes
            t, p = divmod(int(flat), n)
            if off[t, p]:
                ax.text(p, t, str(off[t, p]), ha="center", va="center", fontsize=7, color="white")
        for i in range(n):
            ax.text(i, i, str(m[i, i]), ha="center", va="center", fontsize=5.5, color="#57606a")
        acc = np.trace(m) / max(m.sum(), 1)
        ax.set_title(f"{v.label} · {v.fields['platform']} · seed {v.fields['seed']} · {acc * 100:.2f} %", fontsize=8.5)
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
        ax.tick_params(labelsize=6.5, length=0)
        ax.set_xlabel("predicted", fontsize=7.5, labelpad=1)
        ax.set_ylabel("true", fontsize=7.5, labelpad=1)
    for ax in axes[len(matrices):]:
        ax.set_visible(False)
    return fig


def timing_figure(runs: list[RunView]) -> Figure | None:
    timed = []
    for v in runs:
        timings = v.run.get("timings") if isinstance(v.run.get("timings"), dict) else {}
        raw = timings.get("epoch_seconds") if isinstance(timings.get("epoch_seconds"), list) else []
        seconds = [s for s in (finite_number(x, 0, 1e9) for x in raw) if s is not None]
        timed.append((v, seconds))
    timed = [(v, s) for v, s in timed if s]
    if not timed:
        return None
    fig = Figure(figsize=(6.5, 0.9 + 0.42 * len(timed)), layout="constrained")
    ax = fig.add_subplot()
    for y, (v, seconds) in enumerate(timed):
        color = RUN_COLORS[runs.index(v) % len(RUN_COLORS)]
        ax.barh(y, np.mean(seconds), color=color, alpha=0.35)
        ax.scatter(seconds, [y] * len(seconds), color=color, s=14, zorder=3)
        ax.text(np.mean(seconds), y, f"  {np.mean(seconds):.2f} s", va="center", fontsize=8)
    ax.set_yticks(range(len(timed)), [f"{v.label} {v.fields['platform']} · {v.fields['device'][:28]}" for v, _ in timed],
                  fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(max(s) for _, s in timed) * 1.18)  # room for the labels
    ax.set_xlabel("seconds per epoch (bar: mean, dots: each epoch)")
    ax.grid(axis="x", alpha=0.3)
    return fig


# --- HTML bits ------------------------------------------------------------------------------

def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _code(text: str) -> str:
    """Escaped, with `backticks` as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(text))


def _badge(verdict: str) -> str:
    return f"<span class='badge {verdict.replace(' ', '-')}'>{_e(verdict)}</span>"


def _verdict_badges(g: Group) -> str:
    if len(g.compared) < 2:
        return _e(counts_text(g))
    return " ".join(f"{_badge(name)} {n}" for name, n in g.verdict_counts().items() if n)


def _img(fig: Figure, alt: str, tight: bool = True) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight" if tight else None)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f"<img alt='{_e(alt)}' src='data:image/png;base64,{data}'>"
