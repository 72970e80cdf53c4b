"""`run.py reproduce | test | explore`: check the presets' claims, test saved models, search hyperparameters.

    run.py reproduce [PRESET ...] [--seeds N]     run presets, write a claims table (reports/claims.md, .json)
    run.py test NAME RUN [RUN ...]                evaluate saved models on the test set (reports/NAME.md, .json)
    run.py explore --learning-rate 0.001,0.01 …   Optuna search, every trial a run record (reports/explore-STUDY.md)

Every run is a normal run record on the local platform. Full documentation: docs/workflow.md.
This module parses arguments and calls: the claims table is core/claims.py, the model test
core/model_test.py.
"""
from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import time
from pathlib import Path
from typing import Any

from adapters import get_platform
from cli.options import add_run_options, select_backend, spec_overrides
from core import claims as claims_mod
from core import model_test
from core.backend import release_model_memory  # noqa: F401 — explore's trials use it
from core.errors import UsageError
from core.record import read_run_json
from core.reports import check_report_name, format_seconds, markdown_table, write_report
from core.spec import SPECS_DIR, ExperimentSpec, list_presets, load_spec, parse_set_option, parse_spec


def main(command: str, argv: list[str]) -> int:
    return {"reproduce": reproduce, "test": test_models, "explore": explore}[command](argv)


def add_override_options(parser: argparse.ArgumentParser, title: str, searched: tuple[str, ...] = ()) -> None:
    """Spec overrides for quick checks (the same flags as `run`), minus those a search varies."""
    g = parser.add_argument_group(title)
    flags = {"epochs": (int, "override epochs"), "seed": (int, "override the first seed"),
             "batch-size": (int, "override batch_size"),
             "train-limit": (int, "train on the first N training images"),
             "test-limit": (int, "evaluate on the first N test images"),
             "split": (float, "fraction of the training set kept for training (0, 1]; the rest validates")}
    for flag, (kind, help_) in flags.items():
        if flag.replace("-", "_") not in searched:
            g.add_argument(f"--{flag}", type=kind, help=help_)
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any spec key, dotted: --set optimizer.learning_rate=0.01")


def local_platform(args: argparse.Namespace):
    """The local platform, writing records under --runs-dir."""
    return get_platform("local")(argparse.Namespace(runs_dir=args.runs_dir))


# --- reproduce ---------------------------------------------------------------------------

def reproduce(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="run.py reproduce",
        description="Run presets (all by default) on this machine and check their published claims. "
                    "Writes a claims table as Markdown and JSON. Verdict: the claim holds for the mean over "
                    "seeds (reproduced), misses by at most the noise band (within noise), or misses by more "
                    "(not reproduced); noise band = max(the claim's tolerance, 2 x the standard deviation "
                    f"over seeds), default tolerance {claims_mod.DEFAULT_TOLERANCE} (0.3 percentage points).")
    parser.add_argument("presets", nargs="*", metavar="PRESET",
                        help=f"preset names or spec files (default: all of {', '.join(list_presets())})")
    parser.add_argument("--seeds", type=int, default=1, help="runs per preset, seeds seed, seed+1, ... (default 1)")
    parser.add_argument("--out", default="reports", help="folder for the table (default: reports/)")
    parser.add_argument("--name", default="claims", help="table file name without extension (default: claims)")
    add_run_options(parser)
    add_override_options(parser, "spec overrides for quick checks (with any of them but --seed, "
                                 "the claims are reported as not tested)")
    args = parser.parse_args(argv)
    select_backend(args)
    if args.seeds < 1:
        raise UsageError("--seeds must be at least 1")
    check_report_name(args.name)
    overrides = spec_overrides(args)
    plan = claims_mod.plan_presets(args.presets or list_presets(), overrides)
    report = claims_mod.ClaimsReport(argv, args.seeds, overrides)
    md, js = claims_mod.reproduce(plan, local_platform(args), report, args.seeds, args.deterministic,
                                  args.out, args.name, log=lambda line: print(line, file=sys.stderr))
    print(report.markdown())
    print(f"claims table: {md} and {js}")
    return 1 if report.any_failed() else 0


# --- test ----------------------------------------------------------------------------------

def test_models(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="run.py test",
        description="Evaluate the saved models (model.h5) of several runs on the verified MNIST test set, in "
                    "one table: loss, accuracy, agreement with each record's own predictions, and pairwise "
                    "disagreements. Writes OUT/NAME.md and OUT/NAME.json.")
    parser.add_argument("name", metavar="NAME", help="report name: the table goes to OUT/NAME.md and .json")
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="run record folders, folders of them, or run ids under --runs-dir")
    parser.add_argument("--runs-dir", default="runs", help="where run ids are looked up (default: runs/)")
    parser.add_argument("--out", default="reports", help="folder for the table (default: reports/)")
    parser.add_argument("--test-limit", type=int, help="evaluate on the first N test images only")
    parser.add_argument("--source", default="auto", choices=["auto", "cache", "npz", "idx", "csv"],
                        help="where the test set comes from (default: the verified cache chain)")
    parser.add_argument("--path", help="file or folder for --source npz/idx/csv")
    args = parser.parse_args(argv)
    check_report_name(args.name)
    if args.test_limit is not None and args.test_limit < 1:
        raise UsageError("--test-limit must be a positive integer")
    from results.loaders import discover

    runs, unreadable = discover(run_paths(args.runs, Path(args.runs_dir)))
    models, skipped = model_test.usable_runs(runs, [(str(s.path), s.reason) for s in unreadable])
    for path, reason in skipped:
        print(f"[test] skipped {path}: {reason}", file=sys.stderr)
    if not models:
        raise UsageError("no run with a saved model among: " + ", ".join(args.runs))

    from core.data import load_mnist

    data = load_mnist(args.source, args.path, log=print).limited(None, args.test_limit)
    table = model_test.ModelTest.evaluate(models, data, skipped)
    for path, reason in table.skipped[len(skipped):]:
        print(f"[test] skipped {path}: {reason}", file=sys.stderr)
    if not table.runs:
        raise UsageError(f"none of the {len(models)} saved model(s) could be tested (reasons above)")
    md, js = write_report(args.out, args.name, table.markdown(args.name), table.to_dict(args.name))
    print(table.markdown(args.name))
    print(f"test table: {md} and {js}")
    return 0


def run_paths(paths: list[str], runs_dir: Path) -> list[Path]:
    """Each RUN argument as a path: itself if it exists, else a run id under --runs-dir."""
    resolved = []
    for p in paths:
        if Path(p).exists():
            resolved.append(Path(p))
        elif (runs_dir / p).exists():
            resolved.append(runs_dir / p)
        else:
            raise UsageError(f"no run record {p!r}: not a folder, nor a run id under {runs_dir}/")
    return resolved


# --- explore -------------------------------------------------------------------------------

def explore(argv: list[str]) -> int:
    from core import search

    args = explore_parser().parse_args(argv)
    select_backend(args)
    lists = {p.name: getattr(args, p.name) for p in search.PARAMETERS}
    space = search.SearchSpace.from_lists(lists)
    overrides = fixed_overrides(args)
    base = load_spec(args.spec, overrides)
    metric = args.metric or ("val_accuracy" if base.split < 1.0 else "test_accuracy")
    if metric.startswith("val_") and base.split >= 1.0:
        raise UsageError(f"--metric {metric} needs a validation split: give --split 0.9 "
                         "(the base spec trains on all images)")
    search.check_values(base, space)
    name = args.study or search.default_study_name(base, space, metric)
    report_name = "explore-" + re.sub(r"[^A-Za-z0-9._-]", "-", name)
    check_report_name(report_name)
    if len(report_name) > 200:  # + ".json" must stay a file name the file system holds (255 bytes)
        raise UsageError(f"--study {name[:40]}...: at most 192 characters")
    if args.write_best:
        check_best_path(Path(args.write_best))
    target = args.trials or (space.grid_size if args.sampler == "grid" else 10)
    if args.sampler == "grid" and target > space.grid_size:
        print(f"[explore] the grid has {space.grid_size} points; running {space.grid_size}, not {target}")
        target = space.grid_size

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own lines report trials; no traceback on Ctrl-C
    if args.heartbeat < 1:
        raise UsageError("--heartbeat must be at least 1 second")
    search.check_set_keys(overrides, space)
    storage = search.open_storage(args.storage, heartbeat=args.heartbeat)
    direction = search.METRICS[metric][1]
    sampler_seed = base.seed if args.sampler_seed is None else args.sampler_seed
    study = search.open_study(storage, name, search.make_sampler(args.sampler, space, sampler_seed),
                              search.study_identity(base, space, metric), direction)
    print(f"[explore] study {name!r} in {search.storage_label(args.storage)}: {search.finished_trials(study)} of {target} trials done; "
          f"{args.sampler} search over {', '.join(f'{k}={list(v)}' for k, v in space.values.items())}; "
          f"{'maximize' if direction == 'maximize' else 'minimize'} {metric}")
    if metric.startswith("test_"):
        print("[explore] note: choosing by a test-set metric uses the test set for model selection; "
              "prefer --split 0.9 --metric val_accuracy")
    objective = search.TrialObjective(study, space, base, metric, local_platform(args), args.deterministic, name)
    try:
        search.run_study(study, space, objective, target, grid=args.sampler == "grid")
    finally:
        report = search.ExploreReport(study, space, metric, name, search.storage_label(args.storage))
        md, js = write_report(args.out, report_name, report.markdown(), report.to_dict())
    print(report.markdown())
    print(f"explore table: {md} and {js}")
    if args.write_best:
        search.write_best(study, Path(args.write_best), name, metric)
    return 0


def explore_parser() -> argparse.ArgumentParser:
    from core import search

    parser = argparse.ArgumentParser(
        prog="run.py explore",
        description="Hyperparameter search with Optuna: each option takes a comma-separated list of values; "
                    "every trial is a normal run record (local platform). The study lives in an Optuna RDB "
                    "storage (SQLite by default; a database URL shares it across machines), so re-running the "
                    "same command resumes it, and failed or interrupted trials are run again.")
    parser.add_argument("--spec", default="canonical", metavar="PATH|PRESET", help="base spec (default: canonical)")
    g = parser.add_argument_group("search space (comma-separated lists; one value fixes a parameter)")
    aliases = {"dense_units": ["--dense-size"], "conv_layers": ["--conv-per-block"]}
    for p in search.PARAMETERS:
        flag = "--" + p.name.replace("_", "-")
        g.add_argument(flag, *aliases.get(p.name, []), dest=p.name, metavar="V[,V...]", help=p.help)
    s = parser.add_argument_group("study")
    s.add_argument("--sampler", choices=search.SAMPLERS, default="grid",
                   help="grid (every combination), random, or tpe (Optuna's model-based sampler); default grid")
    s.add_argument("--trials", type=int, help="finished trials the study should have (default: the grid size "
                                              "for grid, else 10); a second run continues to this total")
    s.add_argument("--storage", default="sqlite:///explore.db",
                   help="Optuna RDB storage URL (default sqlite:///explore.db); e.g. postgresql://user@host/db "
                        "to share one study across machines")
    s.add_argument("--study", help="study name (default: base spec name + a hash of the search, so the same "
                                   "command resumes the same study)")
    s.add_argument("--metric", choices=sorted(search.METRICS),
                   help="what to optimise (default: val_accuracy with a validation split, else test_accuracy)")
    s.add_argument("--sampler-seed", type=int, help="seed of the sampler (default: the spec's seed)")
    s.add_argument("--heartbeat", type=int, default=30, metavar="SECONDS",
                   help="each running trial writes a heartbeat this often; one silent for 4 heartbeats is a killed "
                        "worker's: it is marked failed and run again (default 30)")
    s.add_argument("--out", default="reports", help="folder for the ranked table (default: reports/)")
    s.add_argument("--write-best", metavar="PATH", help="write the best trial as a spec YAML file")
    add_run_options(parser)
    add_override_options(parser, "base spec overrides shared by every trial", searched=("epochs", "batch_size"))
    return parser


def fixed_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The base spec's overrides that every trial shares (the searched ones are per trial)."""
    from cli.options import FLAG_KEYS
    from core import search
    from core.spec import merge_overrides

    # --epochs and --batch-size are search lists here, not overrides
    flags = {key: getattr(args, flag, None) for flag, key in FLAG_KEYS if flag not in search.PARAMETER_NAMES}
    return merge_overrides(args.set, flags)


def check_best_path(path: Path) -> None:
    from core.spec import NAME

    if path.suffix not in (".yaml", ".yml"):
        raise UsageError(f"--write-best {path}: give a .yaml path")
    if not NAME.fullmatch(path.stem):  # the file name becomes the spec's name
        raise UsageError(f"--write-best {path}: the file name must be a plain spec name "
                         "(letters, digits, '.', '_', '-')")
    if path.resolve().parent == SPECS_DIR.resolve() and path.exists():
        raise UsageError(f"--write-best {path}: will not overwrite a preset; choose another name")


