"""`run.py [run] --platform NAME`, `run.py repeat --seeds N` and `run.py repeat --backends A,B --seeds N`."""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import subprocess
import sys
from pathlib import Path

from adapters import PLATFORMS, detect_platform, get_platform
from cli.options import add_platform_options, add_run_options, add_spec_options, select_backend, spec_from_args
from core import backend, console
from core.errors import HarnessError, UsageError
from core.record import read_run_json

RECORDS_HEADER = "run records:"  # what `repeat` prints before its record folders, one per line


def build_parser(platform_cls=None, prog: str = "run.py [run]") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Run the experiment on a platform and write a run record.")
    parser.add_argument("--platform", default=detect_platform(), metavar="NAME",
                        help=f"where it runs: {', '.join(PLATFORMS.names())} (default: detected from the "
                             f"environment, else local; here: {detect_platform()}). "
                             "Platform options: run.py --platform NAME --help")
    add_spec_options(parser)
    add_run_options(parser)
    if platform_cls is not None:
        add_platform_options(parser, platform_cls)
    return parser


def parse(argv: list[str], prog: str) -> tuple[argparse.Namespace, type]:
    """Two passes: find --platform, then parse with that platform's own options."""
    first, _ = build_parser(prog=prog).parse_known_args([a for a in argv if a not in ("-h", "--help")])
    platform_cls = get_platform(first.platform)
    extra = build_parser(platform_cls, prog)
    if prog.endswith("repeat"):
        # 10 seeds: the measured band's 95 % interval is 0.69–1.83 × its estimate (3 seeds: 0.52–6.3 ×);
        # results.verdicts.REPEAT_SEEDS, not imported here so `repeat --help` stays instant.
        extra.add_argument("--seeds", type=int, default=10,
                           help="number of seeds: seed, seed+1, ... (default 10: enough to know the noise band "
                                "within 0.69-1.83 x, see `compare`)")
        extra.add_argument("--backends", metavar="A,B,...",
                           help=f"run the seeds on each of these backends ({', '.join(backend.BACKENDS)}), one "
                                "process per backend, and print the backend x seed table: does the backend move "
                                "the result beyond the seed noise band?")
    return extra.parse_args(argv), platform_cls


def main(command: str, argv: list[str]) -> int:
    prog = "run.py repeat" if command == "repeat" else "run.py [run]"
    args, platform_cls = parse(argv, prog)
    if getattr(args, "backends", None):
        return repeat_backends(args, argv)
    select_backend(args)  # before anything below imports keras
    spec = spec_from_args(args)
    platform = platform_cls(args)
    if command == "run":
        record = platform.run(spec, deterministic=args.deterministic)
        run = read_run_json(record)
        following = [(f"python run.py repeat --seeds 3 {shlex.join(argv)}".rstrip(), "the noise band of this spec")]
        earlier = console.earlier_run(record, run["spec_hash"])
        if earlier is not None:
            following.insert(0, (shlex.join(["python", "run.py", "compare", str(earlier), str(record)]),
                                 "against the last run of this spec"))
        print(console.run_summary(run, record, following))
        return 0
    if args.seeds < 1:
        raise UsageError("--seeds must be at least 1")
    records = []
    for i in range(args.seeds):
        seeded = dataclasses.replace(spec, seed=spec.seed + i)
        records.append(platform.run(seeded, deterministic=args.deterministic))
    for record in records:
        print(console.run_summary(read_run_json(record), record))
    print(RECORDS_HEADER + "\n  " + "\n  ".join(str(r) for r in records))
    print(f"compare them: python run.py compare {' '.join(str(r) for r in records)}")
    return 0


def parse_backends(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names or len(set(names)) != len(names):
        raise UsageError(f"--backends {value!r}: give distinct backends separated by commas, e.g. tensorflow,jax,torch")
    return [backend.check_backend(n) for n in names]


def without_backend_options(argv: list[str]) -> list[str]:
    """argv minus --backends/--backend (and their values), for the per-backend children."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--backends", "--backend"):
            skip = True
        elif not a.startswith(("--backends=", "--backend=")):
            out.append(a)
    return out


def repeat_backends(args: argparse.Namespace, argv: list[str]) -> int:
    """`repeat --seeds N` once per backend, each in its own process (Keras takes one backend per
    process), then the backend x seed table from their records."""
    names = parse_backends(args.backends)
    if args.seeds < 1:
        raise UsageError("--seeds must be at least 1")
    spec_from_args(args)  # a bad spec stops here, before the first child starts
    child_argv = without_backend_options(argv)
    records: list[Path] = []
    failed: list[str] = []
    for name in names:
        print(f"[repeat] backend {name}: {args.seeds} seed(s)", flush=True)
        found, returncode = _run_child([sys.executable, str(Path(__file__).resolve().parent.parent / "run.py"),
                                        "repeat", "--backend", name, *child_argv])
        records += found
        if returncode != 0:
            failed.append(f"{name} (exit {returncode})")
            if returncode == 130:
                raise KeyboardInterrupt
    from results.backends import backend_matrix, render_matrix

    if records:
        print()
        print(render_matrix(backend_matrix(records)))
        print(f"\ncompare them: python run.py compare {' '.join(str(r) for r in records)}")
    if failed:
        raise RepeatFailed(f"repeat failed on {', '.join(failed)}; the table above leaves those runs out")
    return 0


def _run_child(cmd: list[str]) -> tuple[list[Path], int]:
    """Run one `repeat` child, passing its output through; the record folders it printed, and its exit code."""
    records, in_list = [], False
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            if line.rstrip() == RECORDS_HEADER:
                in_list = True
            elif in_list and line.startswith("  "):
                records.append(Path(line.strip()))
            else:
                in_list = False
    return records, proc.returncode


class RepeatFailed(HarnessError):
    exit_code = 4
