#!/usr/bin/env python3
"""Multi-platform reproducibility harness for the canonical MNIST experiment.

    python run.py --platform local [run options]     run the experiment, write a run record
    python run.py COMMAND --help                      any other command
    python run.py --verbose ...                       show TensorFlow's native log (quiet by default)

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
    "preflight": "cli.preflight:main",
    "reproduce": "cli.workflow:main",
    "test": "cli.workflow:main",
    "explore": "cli.workflow:main",
    "bench": "cli.bench:main",
}, help={
    "run": "run the experiment on a platform (the default command)",
    "repeat": "run the same spec with N seeds, to measure the noise band",
    "compare": "compare run records side by side, with reproducibility verdicts",
    "data": "fetch, verify or export MNIST",
    "bundle": "write a platform bundle (kaggle, codalab, beat)",
    "push": "upload a bundle, archive or saved run to its platform",
    "status": "status of a remote run",
    "pull": "download a remote run into runs/ as a run record",
    "preflight": "run a bundle here as its platform will (image, layout, user, network)",
    "reproduce": "run the presets and check their published claims",
    "test": "evaluate the saved models of several runs on the test set",
    "explore": "hyperparameter search (Optuna), every trial a run record",
    "bench": "benchmark the harness against bare Keras and this machine",
})

# Commands that never import TensorFlow: no native log to filter (core/console.py).
NO_TENSORFLOW = {"compare"}


def usage() -> str:
    lines = [__doc__.strip(), "", "commands:"]
    lines += [f"  {name:<10} {COMMANDS.help[name]}" for name in COMMANDS]
    return "\n".join(lines)


def main(argv: list[str] | None = None, *, process_entry: bool = False) -> int:
    """Run one command; `process_entry` when this is the process's own start (`python run.py`),
    which lets the console filter take over the process's stderr (core/console.py).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    # A global flag, taken from anywhere before `--`: no command has an option of that name.
    end = argv.index("--") if "--" in argv else len(argv)
    verbose = "--verbose" in argv[:end]
    argv = [a for a in argv[:end] if a != "--verbose"] + argv[end:]
    helping = argv in (["-h"], ["--help"])
    command = argv[0] if argv and argv[0] in COMMANDS else "run"
    from core import console  # the standard library only; must come before anything imports TensorFlow

    console.quiet(verbose=verbose, filter_stderr=process_entry and not helping and command not in NO_TENSORFLOW)
    if helping:
        from cli.run import build_parser  # light: argparse and the spec module only
        print(usage(), end="\n\n")
        build_parser().print_help()
        return 0
    if argv and argv[0] == command:
        argv.pop(0)
    from cli.errors import run_command
    return run_command(lambda: COMMANDS.load(command)(command, argv))


if __name__ == "__main__":
    sys.exit(main(process_entry=True))
