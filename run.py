#!/usr/bin/env python3
"""Multi-platform reproducibility harness for the canonical MNIST experiment.

    python run.py --platform local [run options]     run the experiment, write a run record
    python run.py COMMAND --help                      any other command

Commands are imported only when called: `--help` and `compare` never import TensorFlow.
"""
from __future__ import annotations

import sys

from core.registry import Registry

# command -> "module:function" in cli/; the function is main(command, argv) -> exit code.
COMMANDS = Registry("command", {
    "run": "cli.run:main",
    "repeat": "cli.run:main",
    "compare": "cli.compare:main",
    "data": "cli.data:main",
    "bundle": "cli.remote:main",
    "push": "cli.remote:main",
    "status": "cli.remote:main",
    "pull": "cli.remote:main",
    "reproduce": "cli.workflow:main",
    "test": "cli.workflow:main",
    "explore": "cli.workflow:main",
    "bench": "cli.bench:main",
}, help={
    "run": "run the experiment on a platform (the default command)",
    "repeat": "run the same spec with N seeds, to measure the noise band",
    "compare": "compare run records side by side, with reproducibility verdicts",
    "data": "fetch, verify or export MNIST",
    "bundle": "write a platform bundle (kaggle, codalab)",
    "push": "upload a bundle, archive or saved run to its platform",
    "status": "status of a remote run",
    "pull": "download a remote run into runs/ as a run record",
    "reproduce": "run the presets and check their published claims",
    "test": "evaluate the saved models of several runs on the test set",
    "explore": "hyperparameter search (Optuna), every trial a run record",
    "bench": "benchmark the harness against bare Keras and this machine",
})


def usage() -> str:
    lines = [__doc__.strip(), "", "commands:"]
    lines += [f"  {name:<10} {COMMANDS.help[name]}" for name in COMMANDS]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help") and len(argv) == 1:
        from cli.run import build_parser  # light: argparse and the spec module only
        print(usage(), end="\n\n")
        build_parser().print_help()
        return 0
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "run"
    from cli.errors import run_command
    return run_command(lambda: COMMANDS.load(command)(command, argv))


if __name__ == "__main__":
    sys.exit(main())
