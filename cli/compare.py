"""`run.py compare [PATH ...]`: run records side by side, with a reproducibility verdict per pair.

Imports no TensorFlow (and matplotlib only for --format html): comparing must stay instant.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from core.errors import UsageError

DEFAULT_BAND_WIDTH_PP = 0.1  # results.verdicts.DEFAULT_BAND_WIDTH_PP; not imported: --help stays instant

FORMATS = ("text", "md", "csv", "json", "html")
SUFFIX_FORMATS = {".md": "md", ".markdown": "md", ".csv": "csv", ".json": "json", ".html": "html", ".htm": "html",
                  ".txt": "text"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run.py compare",
        description="Compare run records side by side: runs grouped by experiment (the spec without its seed and "
                    "data source), rows that differ marked, and for each pair its cause first (what differs in the "
                    "experiment, in the numerics, and how many inert differences), then a verdict (identical, "
                    "NONDETERMINISTIC, same predictions, within noise, divergent) with McNemar's exact test and a "
                    "95%% interval for the accuracy difference.")
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="run folders, folders of them, or platform outputs a loader recognises (default: runs/)")
    parser.add_argument("--tolerance", type=float, metavar="PP",
                        help="noise band in percentage points of test accuracy, for experiments with fewer than "
                             "3 seeds (default: 0.3); with 3 or more seeds the band is measured")
    parser.add_argument("--format", choices=FORMATS,
                        help="text (default), md, csv (one row per run), json (documented in "
                             "results/COMPARE_JSON.md) or html (one self-contained report with plots); "
                             "default: from --out's suffix, else text")
    parser.add_argument("--out", metavar="FILE", help="write the report to FILE instead of the terminal")
    parser.add_argument("--all", dest="show_all", action="store_true",
                        help="list the inert differences of each pair too (platform name, paths, SDK versions, "
                             "bundle file hashes); by default only their number is shown")
    parser.add_argument("--band-width", type=float, metavar="PP", default=DEFAULT_BAND_WIDTH_PP,
                        help="the width of the noise band's 95%% interval to say how many seeds would reach "
                             f"(default: {DEFAULT_BAND_WIDTH_PP})")
    return parser


def main(command: str, argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.tolerance is not None and not 0 <= args.tolerance <= 100:
        raise UsageError(f"--tolerance must be a number of percentage points in [0, 100], got {args.tolerance}")
    if not 0 < args.band_width <= 100:
        raise UsageError(f"--band-width must be a number of percentage points in (0, 100], got {args.band_width}")
    fmt = args.format or (SUFFIX_FORMATS.get(Path(args.out).suffix.lower(), "text") if args.out else "text")
    out = Path(args.out) if args.out else None
    if out is not None and not out.parent.is_dir():
        raise UsageError(f"--out {out}: folder {out.parent} does not exist")
    if out is not None and out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file name")

    from results.compare import compare_paths
    from results.render import FORMATS as RENDERERS

    comparison = compare_paths(args.paths or ["runs"], args.tolerance, args.band_width)
    if fmt == "text":
        color = out is None and sys.stdout.isatty() and "NO_COLOR" not in os.environ
        report = RENDERERS["text"](comparison, color=color, show_all=args.show_all)
    else:
        report = RENDERERS[fmt](comparison, show_all=args.show_all)
    if out is None:
        sys.stdout.write(report)
        return 0
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(report, encoding="utf-8")
    os.replace(tmp, out)  # never a half-written report under the real name
    print(f"{fmt} report: {out} ({comparison.n_runs} runs, {len(comparison.groups)} experiments, "
          f"{len(comparison.skipped)} skipped)")
    return 0
