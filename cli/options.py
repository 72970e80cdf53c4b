"""Options shared by every command that runs the experiment (run, repeat, reproduce, explore)."""
from __future__ import annotations

import argparse
from typing import Any

from core import backend
from core.spec import DEFAULT_SPEC, ExperimentSpec, load_spec, merge_overrides


def add_spec_options(parser: argparse.ArgumentParser, spec_default: str | None = DEFAULT_SPEC) -> None:
    g = parser.add_argument_group("experiment spec (each override gives a new spec and a new spec hash)")
    g.add_argument("--spec", default=spec_default, metavar="PATH|PRESET",
                   help=f"YAML spec file or preset name in core/specs/ (default: {spec_default})")
    g.add_argument("--epochs", type=int, help="override epochs")
    g.add_argument("--seed", type=int, help="override seed")
    g.add_argument("--batch-size", type=int, help="override batch_size")
    g.add_argument("--train-limit", type=int, help="train on the first N training images")
    g.add_argument("--test-limit", type=int, help="evaluate on the first N test images")
    g.add_argument("--split", type=float, help="fraction of the training set kept for training (0, 1]; the rest validates")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any spec key, dotted: --set optimizer.learning_rate=0.01 --set layers.6.units=256")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("run")
    g.add_argument("--runs-dir", default="runs", help="where run records go (default: runs/)")
    g.add_argument("--no-determinism", dest="deterministic", action="store_false",
                   help="turn the backend's op determinism off (faster on GPU; recorded in the record)")
    g.add_argument("--backend", choices=backend.BACKENDS, default=None,
                   help=f"Keras backend to train on (default: $KERAS_BACKEND, else {backend.DEFAULT_BACKEND}); "
                        f"jax and torch: {backend.INSTALL_HINT}")


def select_backend(args: argparse.Namespace) -> str:
    """Make --backend (or KERAS_BACKEND) this process's Keras backend; call before anything imports keras."""
    return backend.select(getattr(args, "backend", None), getattr(args, "deterministic", True))


# flag (argparse dest) -> the spec key it overrides
FLAG_KEYS = (("epochs", "epochs"), ("seed", "seed"), ("batch_size", "batch_size"), ("split", "split"),
             ("train_limit", "data.train_limit"), ("test_limit", "data.test_limit"))


def add_platform_options(parser: argparse.ArgumentParser, platform_cls) -> None:
    """The platform's own options (`Platform.OPTIONS`, declared as data) as an argument group."""
    if platform_cls.OPTIONS:
        group = parser.add_argument_group(f"{platform_cls.name} platform")
        for option in platform_cls.OPTIONS:
            group.add_argument(option.flag, **option.argparse_kwargs())


def spec_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """`--set` and the dedicated flags the parser has, as overrides; a key given twice is refused."""
    flags = {key: getattr(args, flag, None) for flag, key in FLAG_KEYS}
    return merge_overrides(args.set, flags)


def spec_from_args(args: argparse.Namespace, spec: str | None = None) -> ExperimentSpec:
    return load_spec(spec or args.spec, spec_overrides(args))
