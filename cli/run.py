"""`run.py [run] --platform NAME` and `run.py repeat --seeds N`."""
from __future__ import annotations

import argparse
import dataclasses
import shlex

from adapters import PLATFORMS, detect_platform, get_platform
from cli.options import add_platform_options, add_run_options, add_spec_options, spec_from_args
from core import console
from core.errors import UsageError
from core.record import read_run_json


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
    return extra.parse_args(argv), platform_cls


def main(command: str, argv: list[str]) -> int:
    prog = "run.py repeat" if command == "repeat" else "run.py [run]"
    args, platform_cls = parse(argv, prog)
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
    print("run records:\n  " + "\n  ".join(str(r) for r in records))
    print(f"compare them: python run.py compare {' '.join(str(r) for r in records)}")
    return 0
