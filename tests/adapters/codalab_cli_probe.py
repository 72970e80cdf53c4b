"""Ask the real CodaLab CLI (codalab 1.7.5, Python 3.9) what it makes of our `cl` lines and formats.

Run by tests/adapters/test_codalab_cli.py with .venv-codalab/bin/python, never imported by
the harness (it imports only `codalab`). Reads one JSON request on stdin, writes one JSON
answer on stdout:

  {"argv": [[...], ...]}   each `cl` argv (without "cl") through Commands.build_parser, as
                           BundleCLI.do_command parses it, then what the command does with it
                           before it needs a server: the metadata defaults filled in
                           (get_missing_metadata), the server's metadata check
                           (Metadata.validate), bundle names (spec_util.check_name), target specs.
  {"formats": [...]}       formatting.parse_size / parse_duration of each string.

CODALAB_HOME must point at a scratch folder: the CLI's manager writes its config there.
"""
import contextlib
import io
import json
import math
import sys

from codalab.bundles.run_bundle import RunBundle
from codalab.bundles.uploaded_bundle import UploadedBundle
from codalab.common import UsageError
from codalab.lib import formatting, path_util, spec_util
from codalab.lib.bundle_cli import BundleCLI, Commands
from codalab.lib.cli_util import desugar_command, parse_key_target, parse_target_spec
from codalab.lib.codalab_manager import CodaLabManager
from codalab.objects.metadata import Metadata


def jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value if value is None or isinstance(value, (str, int, float, bool)) else repr(value)


def check_metadata(bundle_class, metadata):
    specs = bundle_class.METADATA_SPECS
    Metadata(specs, metadata).validate(specs)  # what the server does to a new bundle's metadata
    spec_util.check_name(metadata["name"])


def probe_argv(cli, parser, argv):
    err = io.StringIO()
    cli.stderr = err
    sys.argv = ["cl", *argv]  # CodaLabArgumentParser.error prints `cl help` when sys.argv is short
    try:
        with contextlib.redirect_stderr(err):
            args = parser.parse_args(cli.collapse_bare_command(list(argv)))
    except SystemExit as e:
        return {"ok": False, "stage": "parser", "exit": e.code, "error": err.getvalue().strip()}
    out = {"ok": True, "command": args.command, "function": args.function.__name__,
           "args": {k: jsonable(v) for k, v in vars(args).items() if k != "function"}}
    try:
        if args.function.__name__ == "do_run_command":
            targets, command = desugar_command(args.target_spec, args.command)
            metadata = BundleCLI.get_missing_metadata(RunBundle, args)
            check_metadata(RunBundle, metadata)
            keys = [parse_key_target(t) for t in targets]
            for _, target in keys:
                instance, worksheet, bundle, subpath = parse_target_spec(target)
                if not spec_util.UUID_REGEX.match(bundle):
                    spec_util.check_name(bundle)
            out.update(command_after_desugar=command, targets=keys, metadata=jsonable(metadata),
                       parsed_time=formatting.parse_duration(metadata["request_time"]),
                       parsed_memory=formatting.parse_size(metadata["request_memory"]))
        elif args.function.__name__ == "do_upload_command":
            metadata = BundleCLI.get_missing_metadata(UploadedBundle, args, initial_metadata={})
            check_metadata(UploadedBundle, metadata)
            for path in args.path:  # relative to the probe's working directory
                path_util.check_isvalid(path_util.normalize(path), "upload")
            out.update(metadata=jsonable(metadata))
        elif args.function.__name__ in ("do_wait_command", "do_download_command"):
            out.update(target=parse_target_spec(args.target_spec))
        elif args.function.__name__ == "do_work_command":
            tokens = args.worksheet_spec.split("::")
            out.update(client_is_explicit=spec_util.client_is_explicit(args.worksheet_spec), tokens=tokens)
    except (UsageError, ValueError) as e:
        out.update(ok=False, stage="after parse", error=f"{type(e).__name__}: {e}")
    return out


def network_options(parser):
    """Every option of `cl run` that sets request_network, with the value it stores."""
    run = parser._subparsers._group_actions[0].choices["run"]
    return [{"option_strings": a.option_strings, "const": a.const, "default": a.default,
             "type": type(a).__name__} for a in run._actions if a.dest == "md_request_network"]


def spec_default(name):
    return jsonable([s.default for s in RunBundle.METADATA_SPECS if s.key == name][0])


def parse_both(value):
    result = {}
    for kind, fn in (("size", formatting.parse_size), ("duration", formatting.parse_duration)):
        try:
            result[kind] = {"value": jsonable(fn(value))}
        except Exception as e:  # parse_size lets OverflowError out ("infk"): any error is a refusal
            result[kind] = {"error": type(e).__name__}
    return result


def main():
    request = json.load(sys.stdin)
    real_stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):  # the manager's first-run banner, for one
        answer = answer_for(request)
    json.dump(answer, real_stdout)


def answer_for(request):
    answer = {"version": __import__("codalab.common", fromlist=["CODALAB_VERSION"]).CODALAB_VERSION}
    if "argv" in request:
        cli = BundleCLI(CodaLabManager(), headless=False, stdout=io.StringIO(), stderr=io.StringIO())
        parser = Commands.build_parser(cli)
        answer["results"] = [probe_argv(cli, parser, argv) for argv in request["argv"]]
        answer["network_options"] = network_options(parser)
        answer["request_network_default"] = spec_default("request_network")
    if "formats" in request:
        answer["formats"] = [parse_both(v) for v in request["formats"]]
    return answer


if __name__ == "__main__":
    main()
