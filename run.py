#!/usr/bin/env python3
"""Multi-platform reproducibility harness for the canonical MNIST experiment.

    python run.py --platform local [run options]     run the experiment, write a run record
    python run.py COMMAND --help                      any other command

Commands are imported only when called: `--help` and `compare` never import TensorFlow.
"""
from __future__ import annotations

import importlib
import sys

# command -> (module in cli/, one-line help). The module defines main(argv) -> exit code.
COMMANDS = {
    "run": ("cli.run", "run the experiment on a platform (the default command)"),
    "repeat": ("cli.run", "run the same spec with N seeds, to measure the noise band"),
    "compare": ("cli.compare", "compare run records side by side, with reproducibility verdicts"),
    "data": ("cli.data", "fetch, verify or export MNIST"),
    "bundle": ("cli.remote", "write a platform bundle (kaggle, codalab)"),
    "push": ("cli.remote", "upload a bundle, archive or saved run to its platform"),
    "status": ("cli.remote", "status of a remote run"),
    "pull": ("cli.remote", "download a remote run into runs/ as a run record"),
    "preflight": ("cli.preflight", "run a bundle here as its platform will (image, layout, user, network)"),
    "reproduce": ("cli.workflow", "run the presets and check their published claims"),
    "test": ("cli.workflow", "evaluate the saved models of several runs on the test set"),
    "explore": ("cli.workflow", "hyperparameter search (Optuna), every trial a run record"),
    "bench": ("cli.bench", "benchmark the harness against bare Keras and this machine"),
}


def usage() -> str:
    lines = [__doc__.strip(), "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help") and len(argv) == 1:
        from cli.run import build_parser  # light: argparse and the spec module only
        print(usage(), end="\n\n")
        build_parser().print_help()
        return 0
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "run"
    module = importlib.import_module(COMMANDS[command][0])
    from cli.errors import run_command
    return run_command(lambda: module.main(command, argv))


if __name__ == "__main__":
    sys.exit(main())
