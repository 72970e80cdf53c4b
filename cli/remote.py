"""`run.py bundle|push|status|pull PLATFORM ...`: parse the command line, call `adapters.remote.<platform>`.

One registry maps "COMMAND PLATFORM" to the function here that parses its
arguments; the work itself is the plain functions of `adapters/remote/`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from cli.options import add_spec_options, spec_from_args, spec_overrides
from core.errors import UsageError
from core.registry import Registry

REMOTE = Registry("platform command", {
    "bundle kaggle": "cli.remote:bundle_kaggle",
    "push kaggle": "cli.remote:push_kaggle",
    "status kaggle": "cli.remote:status_kaggle",
    "pull kaggle": "cli.remote:pull_kaggle",
    "bundle codalab": "cli.remote:bundle_codalab",
    "push codalab": "cli.remote:push_codalab",
    "pull codalab": "cli.remote:pull_codalab",
    "push comet": "cli.remote:push_comet",
    "pull comet": "cli.remote:pull_comet",
    "push openml": "cli.remote:push_openml",
    "bundle beat": "cli.remote:bundle_beat",
})


def main(command: str, argv: list[str]) -> int:
    platforms = sorted(name.split()[1] for name in REMOTE if name.split()[0] == command)
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: run.py {command} PLATFORM [options]   (PLATFORM: {', '.join(platforms)})\n"
              f"       run.py {command} PLATFORM --help")
        if not argv:
            raise UsageError(f"'{command}' needs a platform")
        return 0
    if f"{command} {argv[0]}" not in REMOTE:
        raise UsageError(f"platform {argv[0]!r} has no '{command}' command; platforms with one: {', '.join(platforms)}")
    return REMOTE.load(f"{command} {argv[0]}")(argv[1:])


def _runs_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where records go (default: runs/)")
    parser.add_argument("--force", action="store_true", help="replace records that were pulled before")


# --- Kaggle ----------------------------------------------------------------------------------

def bundle_kaggle(argv: list[str]) -> int:
    from adapters.kaggle import DEFAULT_DATASET
    from adapters.remote import kaggle

    parser = argparse.ArgumentParser(
        prog="run.py bundle kaggle",
        description="Write a Kaggle kernel folder (kernel-metadata.json + one code file carrying the harness "
                    "and the spec) that `run.py push kaggle DIR` or `kaggle kernels push -p DIR` uploads.")
    parser.add_argument("--out", required=True, type=Path, help="the kernel folder to write")
    parser.add_argument("--id", dest="kernel_id", metavar="OWNER/SLUG",
                        help="the kernel's id (default: $KAGGLE_USERNAME/mnist-<spec name>-<spec hash>)")
    parser.add_argument("--gpu", action="store_true", help="ask Kaggle for a GPU (enable_gpu)")
    parser.add_argument("--accelerator", metavar="SHAPE",
                        help="a Kaggle machine shape (machine_shape), e.g. NvidiaTeslaT4, NvidiaL4, TpuV38")
    parser.add_argument("--notebook", action="store_true", help="a notebook (kernel.ipynb) instead of a script")
    parser.add_argument("--dataset", action="append", metavar="OWNER/SLUG",
                        help=f"the MNIST dataset to attach (default: {DEFAULT_DATASET}); repeatable")
    parser.add_argument("--public", action="store_true", help="make the kernel public (default: private)")
    parser.add_argument("--internet", action="store_true",
                        help="let the kernel reach the internet (default: off; the kernel needs none)")
    parser.add_argument("--no-determinism", dest="deterministic", action="store_false",
                        help="turn TensorFlow op determinism off in the kernel (faster on GPU)")
    add_spec_options(parser)
    args = parser.parse_args(argv)
    spec = spec_from_args(args)
    datasets = [kaggle.check_dataset(ds) for ds in args.dataset or [DEFAULT_DATASET]]
    bundle = kaggle.build_bundle(args.out, spec, kernel=kaggle.kernel_id(args.kernel_id, spec), gpu=args.gpu,
                                 notebook=args.notebook, datasets=datasets, private=not args.public,
                                 internet=args.internet, deterministic=args.deterministic,
                                 machine_shape=kaggle.check_machine_shape(args.accelerator))
    print(f"kernel bundle {bundle.metadata['id']} (spec {spec.name}, {spec.short_hash}) in {bundle.folder}:")
    for path in bundle.files():
        print(f"  {path.name:<22} {path.stat().st_size:>9,} bytes")
    print(f"push it: python run.py push kaggle {bundle.folder}   (or: kaggle kernels push -p {bundle.folder})")
    return 0


def push_kaggle(argv: list[str]) -> int:
    from adapters.remote import kaggle

    parser = argparse.ArgumentParser(prog="run.py push kaggle",
                                     description="Upload a kernel folder (from `run.py bundle kaggle`) as a new "
                                                 "kernel version; Kaggle then runs it.")
    parser.add_argument("folder", type=Path, help="the kernel folder (holding kernel-metadata.json)")
    parser.add_argument("--timeout", type=int, metavar="SECONDS", help="the kernel session's time limit")
    parser.add_argument("--accelerator", metavar="NAME",
                        help="a machine shape (e.g. NvidiaTeslaT4); overrides enable_gpu of the metadata")
    args = parser.parse_args(argv)
    kaggle.push(args.folder, timeout=args.timeout, accelerator=args.accelerator)
    return 0


def status_kaggle(argv: list[str]) -> int:
    from adapters.remote import kaggle

    parser = argparse.ArgumentParser(prog="run.py status kaggle", description="Status of a kernel's latest run.")
    parser.add_argument("kernel", metavar="OWNER/SLUG", help="the kernel's id, as in its kernel-metadata.json")
    parser.add_argument("--wait", action="store_true", help="poll until the run ends; exit 1 if it failed")
    parser.add_argument("--interval", type=float, default=30.0, metavar="SECONDS", help="polling interval (default 30)")
    args = parser.parse_args(argv)
    status = kaggle.follow(args.kernel, wait=args.wait, interval=args.interval,
                           log=lambda line: print(line, flush=True))
    if status == "complete":
        print(f"fetch the record: python run.py pull kaggle {args.kernel}")
    return 1 if args.wait and status != "complete" else 0


def pull_kaggle(argv: list[str]) -> int:
    from adapters.remote import kaggle

    parser = argparse.ArgumentParser(prog="run.py pull kaggle",
                                     description="Download a kernel's output into runs/ as run records, "
                                                 "with the kernel log.")
    parser.add_argument("kernel", metavar="OWNER/SLUG", help="the kernel's id, as in its kernel-metadata.json")
    _runs_dir(parser)
    args = parser.parse_args(argv)
    pulled = kaggle.pull(args.kernel, args.runs_dir, force=args.force)
    for record in pulled:
        print(f"run record: {record}")
    if not pulled:
        print("no new run records")
    return 0


# --- CodaLab ---------------------------------------------------------------------------------

def bundle_codalab(argv: list[str]) -> int:
    from adapters.remote import codalab

    defaults, template = codalab.Resources.defaults(), codalab.manifest_template()["resources"]
    parser = argparse.ArgumentParser(
        prog="run.py bundle codalab",
        description="Write a CodaLab bundle: the code and data bundles, codalab-run.sh with the exact `cl` "
                    "commands, and codalab-manifest.json. Spec options are applied now and baked into the bundle.")
    parser.add_argument("--out", required=True, type=Path, help="folder to create (must not exist or be empty)")
    add_spec_options(parser)
    g = parser.add_argument_group("CodaLab run (cl run --request-*)")
    g.add_argument("--docker-image", help=f"image (default: {template['docker_image']}, "
                                          f"{template['docker_image_gpu']} with --gpus; {{tensorflow}} is our TensorFlow pin)")
    g.add_argument("--gpus", type=int, default=defaults.gpus, help=f"GPUs to request (default: {defaults.gpus})")
    g.add_argument("--memory", default=defaults.memory, help=f"memory (default: {defaults.memory})")
    g.add_argument("--cpus", type=int, default=defaults.cpus, help=f"CPUs (default: {defaults.cpus})")
    g.add_argument("--time", default=defaults.time, help=f"time limit (default: {defaults.time})")
    g.add_argument("--worksheet", default=defaults.worksheet,
                   help="worksheet name for `cl work` (default: your home worksheet)")
    g.add_argument("--instance", default=defaults.instance, help=f"CodaLab instance (default: {defaults.instance})")
    args = parser.parse_args(argv)
    resources = codalab.Resources(docker_image=args.docker_image, gpus=args.gpus, memory=args.memory,
                                  cpus=args.cpus, time=args.time, worksheet=args.worksheet, instance=args.instance)
    codalab.check_resources(resources)
    spec = spec_from_args(args)
    manifest = codalab.bundle(args.out, spec, resources, spec_overrides(args))
    codalab.print_summary(args.out, manifest)
    return 0


def push_codalab(argv: list[str]) -> int:
    from adapters.remote import codalab

    parser = argparse.ArgumentParser(prog="run.py push codalab",
                                     description="Upload a CodaLab bundle and run it: runs DIR/codalab-run.sh.")
    parser.add_argument("dir", type=Path, help="a folder written by `run.py bundle codalab --out DIR`")
    codalab.push(parser.parse_args(argv).dir)
    return 0


def pull_codalab(argv: list[str]) -> int:
    from adapters.remote import codalab

    parser = argparse.ArgumentParser(prog="run.py pull codalab",
                                     description="Download a CodaLab run bundle (`cl download`) and put its run "
                                                 "record into the runs folder.")
    parser.add_argument("bundle", help="run bundle: <instance>::<uuid> (push prints it), its uuid, or WORKSHEET//NAME; "
                                       "a bare NAME resolves only in the current worksheet of this shell's `cl` session")
    _runs_dir(parser)
    args = parser.parse_args(argv)
    pulled = codalab.pull(args.bundle, args.runs_dir, force=args.force)
    for dest, new in pulled:
        print(f"{'pulled run record' if new else 'already in runs'}: {dest}")
    print(f"compare: python run.py compare {' '.join(str(d) for d, _ in pulled)} {args.runs_dir}")
    return 0


# --- Comet -----------------------------------------------------------------------------------

def push_comet(argv: list[str]) -> int:
    from adapters.remote import comet

    parser = argparse.ArgumentParser(prog="run.py push comet",
                                     description="Upload Comet offline archives (written by --platform comet without "
                                                 "a key, or when Comet could not be reached). Needs COMET_API_KEY.")
    parser.add_argument("archives", nargs="+", type=Path, metavar="ARCHIVE",
                        help="a <experiment key>.zip, or a run record folder holding one in comet/")
    parser.add_argument("--comet-workspace", metavar="NAME", help="upload into this workspace instead of the archive's")
    parser.add_argument("--comet-project", metavar="NAME", help="upload into this project instead of the archive's")
    parser.add_argument("--force", action="store_true", help="upload again an archive that was uploaded before")
    args = parser.parse_args(argv)
    comet.push(args.archives, workspace=args.comet_workspace, project=args.comet_project, force=args.force)
    return 0


def pull_comet(argv: list[str]) -> int:
    from adapters.remote import comet

    parser = argparse.ArgumentParser(prog="run.py pull comet",
                                     description="Fetch a Comet experiment logged by the harness (needs COMET_API_KEY) "
                                                 "and write it into runs/ as a run record, for `compare`.")
    parser.add_argument("experiment_key", metavar="EXPERIMENT_KEY")
    _runs_dir(parser)
    args = parser.parse_args(argv)
    record = comet.pull(args.experiment_key, args.runs_dir, force=args.force)
    print(f"run record: {record}" if record else "no new run records")
    return 0


# --- OpenML ----------------------------------------------------------------------------------

def push_openml(argv: list[str]) -> int:
    from adapters.openml import APIKEY_ENV, SAVED_RUN_DIR
    from adapters.remote import openml

    parser = argparse.ArgumentParser(
        prog="run.py push openml",
        description=f"Publish a saved OpenML run (the record's {SAVED_RUN_DIR}/ folder) and its flow, and link "
                    f"their ids in run.json. Needs an API key: {APIKEY_ENV} or `apikey = ...` in the openml "
                    "config file. (No OpenML task can hold the official 60k/10k split: see platforms/openml/README.md.)")
    parser.add_argument("run_dir", nargs="?", type=Path, help="a run record folder (or its openml/ folder)")
    parser.add_argument("--openml-server", metavar="URL|test|production")
    parser.add_argument("--openml-cache", metavar="DIR")
    args = parser.parse_args(argv)
    if args.run_dir is None:
        raise UsageError("give the run record folder to publish")
    openml.push_run(args.run_dir, server=args.openml_server, cache=args.openml_cache)
    return 0


# --- BEAT ------------------------------------------------------------------------------------

def bundle_beat(argv: list[str]) -> int:
    from adapters.base import default_data
    from adapters.remote import beat

    parser = argparse.ArgumentParser(
        prog="run.py bundle beat",
        description="Write a BEAT prefix for the spec (data formats, a database over the verified MNIST rows, "
                    "algorithms running the harness, toolchain, experiment) and print the command that runs it. "
                    "`run.py --platform beat` does this and runs it.")
    parser.add_argument("--out", required=True, type=Path, help="folder to create (must not exist or be empty)")
    parser.add_argument("--no-determinism", dest="deterministic", action="store_false",
                        help="turn TensorFlow op determinism off in the blocks (recorded)")
    add_spec_options(parser)
    args = parser.parse_args(argv)
    spec = spec_from_args(args)
    info = beat.bundle(args.out, spec, default_data(spec), deterministic=args.deterministic)
    data = info["data"]
    print(f"BEAT prefix: {args.out / 'prefix'}  (experiment {info['experiment']}, {data['n_train']} train / "
          f"{data['n_validation']} validation / {data['n_test']} test images)\n"
          f"run it (make beat-env first): {' '.join(beat.beat_command(args.out, info, beat.BEAT_VENV / 'bin' / 'python'))}\n"
          f"check it: {beat.BEAT_VENV / 'bin' / 'beat'} --prefix {args.out.resolve() / 'prefix'} experiments check "
          f"{info['experiment']}\n"
          f"the record appears in {args.out.resolve() / info['record_dir']}/; compare: python run.py compare {args.out}")
    return 0
