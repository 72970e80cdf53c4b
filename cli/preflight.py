"""`run.py preflight kaggle|codalab [BUNDLE]`: run a bundle here as its platform will, then the verdict.

Parsing only; the work is adapters/remote/preflight.py (the run), images.py (the image's
environment) and sandbox.py (user, network, read-only inputs).
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

from cli.options import add_spec_options, spec_from_args, spec_overrides
from core.errors import UsageError

PLATFORMS = ("kaggle", "codalab")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run.py preflight",
        description="Run a bundle here the way its platform will run it — the platform image's Python and "
                    "library versions (platforms/<platform>/image.yaml, built once into the user cache), its "
                    "file layout, a non-root user, no network where the platform gives none — and compare the "
                    "record with a local run of the same spec. Prints one verdict line, then the comparison. "
                    "Exit 0 when the bundle ran (whatever the verdict), 4 when it crashed there.")
    parser.add_argument("platform", choices=PLATFORMS, help="the platform whose image and layout to use")
    parser.add_argument("bundle", nargs="?", type=Path,
                        help="a folder from `run.py bundle PLATFORM --out DIR` (default: one is made from the "
                             "spec options)")
    parser.add_argument("--with", dest="with_", action="append", default=[], metavar="PACKAGE==VERSION",
                        help="override one of the image's versions (repeatable): --with tensorflow==2.19.1")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"),
                        help="where the preflight record goes and the local record is looked for (default: runs/)")
    parser.add_argument("--offline", action="store_true",
                        help="cut the network even where the platform's run has one (CodaLab's default)")
    parser.add_argument("--tolerance", type=float, metavar="PP", help="noise band for the verdict (default: 0.3)")
    parser.add_argument("--build-only", action="store_true",
                        help="only build (or find) the image environment and print its folder")
    parser.add_argument("--keep-sandbox", action="store_true", help="leave the sandbox folder for inspection")
    add_spec_options(parser)
    return parser


def main(command: str, argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from adapters.remote import images, preflight

    overrides = images.parse_with(args.with_)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731 (stdout: the verdict first)
    if args.build_only:
        env = images.build_env(images.load_image(args.platform, overrides), log=log)
        print(f"{args.platform} image environment: {env.folder} (Python {env.record['python']['version']}, "
              f"built in {env.record['build_seconds']:.0f} s)")
        return 0
    if args.bundle is not None and spec_overrides(args):
        raise UsageError("give a bundle or spec options, not both (the bundle carries its spec)")
    with contextlib.ExitStack() as stack:
        bundle = args.bundle
        if bundle is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="preflight-bundle-")))
            with contextlib.redirect_stdout(sys.stderr):
                if args.platform == "kaggle":
                    bundle = preflight.make_kaggle_bundle(spec_from_args(args), folder / "bundle")
                else:
                    bundle = preflight.make_codalab_bundle(spec_from_args(args), folder / "bundle",
                                                           spec_overrides(args))
        elif not bundle.is_dir():
            raise UsageError(f"{bundle}: not a folder; give a bundle folder from `run.py bundle {args.platform}`")
        result = preflight.run_preflight(args.platform, bundle, overrides=overrides, runs_dir=args.runs_dir,
                                         offline=args.offline, keep=args.keep_sandbox, log=log)
    line, comparison = preflight.verdict(result, args.tolerance)
    from results.render import render_text

    print(line)
    print(f"preflight record: {result.record}   local record: {result.local}"
          + (" (run now)" if result.ran_local else ""))
    print()
    sys.stdout.write(render_text(comparison))
    return 0
