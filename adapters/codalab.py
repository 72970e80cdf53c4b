"""CodaLab Worksheets: a code bundle, a data bundle, the exact `cl` commands, and the run in a worker.

    run.py bundle codalab --out DIR [spec options] [resources]   code/, data/, codalab-run.sh, the manifest
    run.py push codalab DIR                                      run DIR/codalab-run.sh (needs `cl` on PATH)
    run.py pull codalab BUNDLE                                   `cl download` a run bundle; its record goes to runs/
    run.py --platform codalab ...                                inside a worker (the default where CODALAB=true)

In a worker the dependencies are mounted read-only in the working directory under
their keys (`code/`, `data/`), and whatever the command writes there becomes the run
bundle. So the data is read from `data/mnist.npz`, the record goes to `./runs/<run_id>`,
and nothing is written under `code/` or `data/` (the command runs `python -B`).

The run uses no network, but it has it: `cl run` always requests network access
(request_network defaults to True and there is no flag to ask for none), so the manifest
and the record say so. Nothing needs it: the image `tensorflow/tensorflow:<our TensorFlow
pin>` brings Python, TensorFlow, Keras, NumPy and h5py; PyYAML, which it lacks, travels in
the code bundle as pure Python (`code/vendor/yaml`); MNIST is the data bundle.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import string
import subprocess
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from adapters.base import Platform
from cli.options import add_spec_options, spec_from_args, spec_overrides
from core.data import SHAPES, DataError, Mnist, file_sha256, load_mnist, read_npz, verify
from core.environment import HARNESS_ROOT, HARNESS_STAMP, git_state, harness_stamp, installed_version
from core.errors import HarnessError, UsageError
from core.record import PARTIAL_PREFIX, read_run_json, update_run_json, utc_now
from core.spec import ExperimentSpec, load_spec

TEMPLATES = HARNESS_ROOT / "platforms" / "codalab"
CODE_KEY, DATA_KEY = "code", "data"  # the dependency keys: where the worker mounts each bundle
DATA_FILE = "mnist.npz"
SPEC_FILE = "spec.yaml"
BUNDLE_INFO = "codalab-bundle.json"  # in the code bundle: what the worker records about its bundles
SCRIPT, MANIFEST = "codalab-run.sh", "codalab-manifest.json"
DOWNLOADS = "downloads"
RUN_UUID_FILE = "codalab-run-uuid.txt"  # in the bundle folder: the run bundle's uuid, as `cl run` printed it
RUN_UUID = "$RUN_UUID"  # in the manifest's `cl` argv: the uuid the script captured from `cl run`

# What the code bundle holds: the harness and its specs, nothing else.
CODE_PARTS = ("core", "adapters", "cli", "results", "run.py")
CODE_SUFFIXES = {".py", ".yaml", ".yml", ".json", ".md", ".txt", ".csv"}
CREDENTIAL_FILES = re.compile(r"^(kaggle\.json|credentials.*|client_secrets?.*|id_[rd]sa.*|.*\.(pem|key|p12))$", re.I)
SECRET_LIKE = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION", re.I)

# CodaLab's own formats: names (codalab/lib/spec_util.py NAME_REGEX), uuids (UUID_REGEX).
NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.\-]*$")
CODALAB_UUID = re.compile(r"^0x[0-9a-f]{32}$")  # bundles and worksheets
# `cl run` asks for network access on every run: RunBundle's request_network metadata has
# default=True (codalab/bundles/run_bundle.py) and the CLI turns a bool spec into a
# store_true flag with no negation (Commands.metadata_arguments, codalab/lib/bundle_cli.py).
REQUEST_NETWORK = True
NETWORK_NOTE = ("the run has network access: `cl run` requests it for every run (request_network defaults "
                "to true, and the CLI has no flag to turn it off); the harness does not use it")
# no shell-special characters: codalab-run.sh echoes it inside double quotes
INSTANCE_URL = re.compile(r"^https?://[A-Za-z0-9.\-]+(:\d+)?(/[A-Za-z0-9._~/\-]*)?$")
IMAGE = re.compile(r"^[A-Za-z0-9][\w.\-/:@]*$")

INSTALL_HINT = (
    "the CodaLab CLI `cl` is not on PATH. It needs its own environment: the `codalab` package pins old "
    "dependencies (apache-beam 2.38) and does not install on Python 3.11, so keep it out of this venv:\n"
    "  make codalab-cli && export PATH=\"$PATH:$PWD/.venv-codalab/bin\"   (codalab 1.7.5, pinned)\n"
    "or\n"
    "  pipx install --python python3.9 codalab\n"
    "or\n"
    "  python3.9 -m venv ~/.venvs/codalab && ~/.venvs/codalab/bin/pip install codalab "
    "&& export PATH=\"$PATH:$HOME/.venvs/codalab/bin\"\n"
    "then `cl work https://worksheets.codalab.org::` logs you in. See platforms/codalab/README.md."
)


class CodaLabError(HarnessError):
    """The CodaLab CLI is missing, or one of its commands failed."""


# --- Inside a worker ------------------------------------------------------------------

class CodaLabPlatform(Platform):
    """A CodaLab worker: data from the `data` dependency, the record into the working directory."""

    name = "codalab"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--data-dir", default=DATA_KEY,
                            help=f"the data bundle's folder in the working directory (default: {DATA_KEY}, "
                                 f"where `cl run {DATA_KEY}:<bundle>` mounts it)")

    def load_data(self, spec: ExperimentSpec) -> Mnist:
        path = Path(self.options.data_dir) / DATA_FILE
        if not path.is_file():
            raise DataError(f"{path}: not found. On CodaLab the data is the data bundle, mounted by "
                            f"`cl run ... {DATA_KEY}:<data bundle>` (see codalab-run.sh); "
                            "build one with `python run.py bundle codalab --out DIR`")
        if spec.data.source not in ("auto", "cache"):
            self.log(f"[codalab] the spec names data source {spec.data.source!r}; "
                     f"on CodaLab the data is the data bundle {path}")
        return verify(read_npz(path), f"CodaLab data bundle {path}")

    def runs_dir(self) -> Path:
        return Path(self.options.runs_dir)

    def platform_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"name": self.name, "in_worker": os.environ.get("CODALAB") == "true",
                                "request_network": REQUEST_NETWORK, "network": NETWORK_NOTE}
        cwd = Path.cwd().name
        if CODALAB_UUID.match(cwd):  # the worker's working directory is /<run bundle uuid>
            info["run_bundle_uuid"] = cwd
        bundle_file = HARNESS_ROOT / BUNDLE_INFO
        if bundle_file.is_file():
            bundle = json.loads(bundle_file.read_text())
            info["bundle"] = bundle
            # The image installs TensorFlow as `tensorflow-cpu`: read it under any distribution name.
            pinned, installed = bundle.get("pins", {}).get("tensorflow"), installed_version("tensorflow")
            info["tensorflow_matches_pin"] = pinned == installed
            if pinned and pinned != installed:
                self.log(f"[codalab] the image has TensorFlow {installed}, the harness pins {pinned}: "
                         "numbers may differ from a local run")
        return info


PLATFORM = CodaLabPlatform


# --- The bundle -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CodaLabRun:
    """What the `cl` commands ask for: bundle names, the command in the worker, its resources."""

    code_name: str
    data_name: str
    run_name: str
    command: str
    docker_image: str
    memory: str
    cpus: int
    time: str
    gpus: int
    instance: str
    worksheet: str | None
    description: str

    @property
    def download_path(self) -> str:
        return f"{DOWNLOADS}/{self.run_name}"

    def dependencies(self) -> list[dict[str, str]]:
        return [{"key": CODE_KEY, "bundle": self.code_name}, {"key": DATA_KEY, "bundle": self.data_name}]

    def cl_commands(self) -> dict[str, list[str]]:
        """Each step's argv, in order; codalab-run.sh is these, shell-quoted.

        `wait` and `download` name the run by the uuid `cl run` printed (RUN_UUID in the argv,
        "$RUN_UUID" in the script): a name resolves in the current worksheet of the shell's
        CodaLab session (codalab_manager.session_name), which another terminal may not share.
        """
        # --request-network is what `cl run` asks for anyway (REQUEST_NETWORK); written out so
        # the command says what the run gets.
        resources = ["--request-docker-image", self.docker_image, "--request-memory", self.memory,
                     "--request-cpus", str(self.cpus), "--request-time", self.time, "--request-network"]
        if self.gpus:
            resources += ["--request-gpus", str(self.gpus)]
        return {
            "work": ["cl", "work", f"{self.instance}::{self.worksheet or ''}"],
            "upload_code": ["cl", "upload", CODE_KEY, "-n", self.code_name,
                            "-d", f"MNIST harness code and spec: {self.description}"],
            "upload_data": ["cl", "upload", DATA_KEY, "-n", self.data_name,
                            "-d", "MNIST (official, SHA-256 verified), Keras mnist.npz layout"],
            "run": ["cl", "run", *(f"{d['key']}:{d['bundle']}" for d in self.dependencies()), self.command,
                    *resources, "-n", self.run_name, "-d", self.description],
            "wait": ["cl", "wait", RUN_UUID],
            "download": ["cl", "download", RUN_UUID, "-o", self.download_path],
        }


class _Template(string.Template):
    delimiter = "@"  # bash owns `$`


def manifest_template() -> dict[str, Any]:
    return json.loads((TEMPLATES / "manifest.template.json").read_text())


def pinned_versions(root: Path = HARNESS_ROOT) -> dict[str, str]:
    """`name==version` lines of requirements.txt, names lower-cased."""
    pins = {}
    req = root / "requirements.txt"
    for line in (req.read_text().splitlines() if req.is_file() else []):
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            pins[name.strip().lower()] = version.strip()
    return pins


def write_mnist_npz(mnist: Mnist, path: Path) -> None:
    """Keras's mnist.npz layout (x_train, y_train, x_test, y_test), deflated, the same bytes every time.

    `numpy.savez_compressed` stamps each member with the current time, so its digest
    changes from build to build; fixed zip timestamps make the data bundle's digest
    (and hence its name) a property of the data alone.
    """
    arrays = mnist.arrays()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name in SHAPES:
            member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            member.compress_type = zipfile.ZIP_DEFLATED
            with z.open(member, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, arrays[name], allow_pickle=False)


def _keep_in_code_bundle(path: Path) -> bool:
    name = path.name
    if name.startswith(".") or name == "__pycache__" or CREDENTIAL_FILES.match(name):
        return False
    if path.is_dir():
        return True
    if path.suffix not in CODE_SUFFIXES:
        return False
    return path.suffix == ".py" or not SECRET_LIKE.search(name)  # `tokens.json`, `api_key.txt`: out


def write_code_bundle(dest: Path, spec: ExperimentSpec, root: Path = HARNESS_ROOT) -> dict[str, Any]:
    """The harness code, the resolved spec and vendored PyYAML under `dest`; returns what went in."""
    for part in CODE_PARTS:
        src = root / part
        if not src.exists():
            raise UsageError(f"{src}: missing — build the bundle from a harness checkout")
        if src.is_file():
            shutil.copy2(src, dest / part)
            continue
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(root)
            if all(_keep_in_code_bundle(root.joinpath(*rel.parts[:i + 1])) for i in range(len(rel.parts))):
                if path.is_file():
                    (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, dest / rel)
    spec_path = dest / SPEC_FILE
    import yaml

    spec_path.write_text(f"# {spec.name}, spec hash {spec.hash}: the spec this bundle runs, overrides applied\n"
                         + yaml.safe_dump(spec.to_dict(), sort_keys=False))
    if load_spec(spec_path).hash != spec.hash:
        raise HarnessError(f"{spec_path}: the written spec does not read back as spec {spec.short_hash}")
    return {"vendored": vendor_pyyaml(dest / "vendor")}


def vendor_pyyaml(vendor: Path) -> dict[str, str]:
    """Pure-Python PyYAML (no C extension, so any CPython 3 reads it) into `vendor/yaml`."""
    import yaml

    src = Path(yaml.__file__).parent
    (vendor / "yaml").mkdir(parents=True)
    for module in sorted(src.glob("*.py")):
        shutil.copy2(module, vendor / "yaml" / module.name)
    for f in metadata.distribution("PyYAML").files or []:
        if f.name.upper().startswith("LICENSE"):
            shutil.copy2(f.locate(), vendor / "PyYAML-LICENSE")
    return {"PyYAML": yaml.__version__}


def tree_sha256(folder: Path) -> tuple[int, str]:
    """(file count, SHA-256 over each file's relative path and SHA-256, sorted)."""
    lines = [f"{p.relative_to(folder).as_posix()}:{file_sha256(p)}\n"
             for p in sorted(folder.rglob("*")) if p.is_file()]
    return len(lines), hashlib.sha256("".join(lines).encode()).hexdigest()


def cl_text(text: str) -> str:
    """`text` as CodaLab metadata may hold it: ASCII only (metadata_util.fill_missing_metadata refuses the rest)."""
    return text.encode("ascii", "backslashreplace").decode("ascii")


def _name_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]+", "-", text).strip("-") or "spec"


# CodaLab's sizes and durations, parsed by the rules of codalab/lib/formatting.py (parse_size,
# parse_duration, codalab 1.7.5). The server applies them to a run's request_memory and
# request_disk ('size') and request_time ('duration') when it validates the new bundle
# (codalab/objects/metadata.py, Metadata.validate), so a value they refuse is a failed
# `cl run`. The rules: a value ending in a digit is a plain number, int() for a size
# ("1.5" is refused) and float() for a duration; otherwise everything but the last
# character is a float and the last character, either case, is the unit. The factors are
# applied one after another, as there, so a duration rounds the same way.
SIZE_UNITS = {"k": (1024,), "m": (1024, 1024), "g": (1024, 1024, 1024), "t": (1024, 1024, 1024, 1024)}
DURATION_UNITS = {"s": (), "m": (60,), "h": (60, 60), "d": (60, 60, 24), "y": (60, 60, 24, 365)}


def parse_size(s: str) -> int:
    """Bytes, as CodaLab's formatting.parse_size reads `s`; ValueError where it refuses it."""
    try:
        if s[-1].isdigit():
            return int(s)
        n, factors = float(s[:-1]), SIZE_UNITS.get(s[-1].lower())
        if factors is not None:
            for f in factors:
                n = n * f
            return int(n)
    except (IndexError, ValueError, OverflowError):  # OverflowError: CodaLab's int(inf) raises it uncaught
        pass
    raise ValueError(f"Invalid size: {s}, expected <number>[<k|m|g|t>]")


def parse_duration(s: str) -> float:
    """Seconds, as CodaLab's formatting.parse_duration reads `s`; ValueError where it refuses it."""
    try:
        if s[-1].isdigit():
            return float(s)
        n, factors = float(s[:-1]), DURATION_UNITS.get(s[-1].lower())
        if factors is not None:
            for f in factors:
                n = n * f
            return n
    except (IndexError, ValueError):
        pass
    raise ValueError(f"Invalid duration: {s}, expected <number>[<s|m|h|d|y>]")


def check_size(flag: str, value: str) -> int:
    """A size CodaLab accepts, and one that asks for something: finite, more than 0 bytes, ASCII."""
    # The CLI refuses metadata with non-ASCII characters (metadata_util.fill_missing_metadata).
    try:
        n = parse_size(value) if value.isascii() else None
    except ValueError:
        n = None
    if n is None or n <= 0:
        raise UsageError(f"{flag} {value!r}: CodaLab reads sizes as <integer> bytes or <number><k|m|g|t> "
                         "(4g, 512m, 1.5g; not 1.5, which it refuses), more than 0")
    return n


def check_duration(flag: str, value: str) -> float:
    """A duration CodaLab accepts, and one that allows some time: finite, more than 0 seconds, ASCII."""
    try:
        n = parse_duration(value) if value.isascii() else None
    except ValueError:
        n = None
    if n is None or not 0 < n < float("inf"):  # CodaLab itself takes "infs" and "nanm"; a run needs a limit
        raise UsageError(f"{flag} {value!r}: CodaLab reads durations as <seconds> or <number><s|m|h|d|y> "
                         "(30m, 2h, 1.5d), more than 0")
    return n


def _check_resources(args: argparse.Namespace) -> None:
    check_size("--memory", args.memory)
    check_duration("--time", args.time)
    if args.cpus < 1:
        raise UsageError(f"--cpus must be at least 1, got {args.cpus}")
    if args.gpus < 0:
        raise UsageError(f"--gpus must be 0 or more, got {args.gpus}")
    if args.worksheet is not None and not (NAME.match(args.worksheet) or CODALAB_UUID.match(args.worksheet)):
        raise UsageError(f"--worksheet {args.worksheet!r}: a CodaLab worksheet name matches {NAME.pattern}")
    if not (INSTANCE_URL.match(args.instance) or NAME.match(args.instance)):
        raise UsageError(f"--instance {args.instance!r}: expected a URL (https://worksheets.codalab.org) "
                         "or an alias from your CodaLab config (main)")
    if args.docker_image is not None and not IMAGE.match(args.docker_image):
        raise UsageError(f"--docker-image {args.docker_image!r}: not a Docker image reference")


def bundle_parser() -> argparse.ArgumentParser:
    defaults = manifest_template()
    res = defaults["resources"]
    parser = argparse.ArgumentParser(
        prog="run.py bundle codalab",
        description="Write a CodaLab bundle: the code and data bundles, codalab-run.sh with the exact `cl` "
                    "commands, and codalab-manifest.json. Spec options are applied now and baked into the bundle.")
    parser.add_argument("--out", required=True, type=Path, help="folder to create (must not exist or be empty)")
    add_spec_options(parser)
    g = parser.add_argument_group("CodaLab run (cl run --request-*)")
    g.add_argument("--docker-image", help=f"image (default: {res['docker_image']}, {res['docker_image_gpu']} "
                                          "with --gpus; {tensorflow} is our TensorFlow pin)")
    g.add_argument("--gpus", type=int, default=res["gpus"], help=f"GPUs to request (default: {res['gpus']})")
    g.add_argument("--memory", default=res["memory"], help=f"memory (default: {res['memory']})")
    g.add_argument("--cpus", type=int, default=res["cpus"], help=f"CPUs (default: {res['cpus']})")
    g.add_argument("--time", default=res["time"], help=f"time limit (default: {res['time']})")
    g.add_argument("--worksheet", default=defaults["worksheet"],
                   help="worksheet name for `cl work` (default: your home worksheet)")
    g.add_argument("--instance", default=defaults["instance"],
                   help=f"CodaLab instance (default: {defaults['instance']})")
    return parser


def cli_bundle(argv: list[str]) -> int:
    args = bundle_parser().parse_args(argv)
    _check_resources(args)
    spec = spec_from_args(args)
    out: Path = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out}: already exists and is not an empty folder; choose another or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}{PARTIAL_PREFIX}{secrets.token_hex(3)}"
    partial.mkdir()
    try:
        manifest = build_bundle(partial, spec, args)
        if out.exists():
            out.rmdir()
        os.replace(partial, out)  # a half-written bundle never sits under the name asked for
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    print_summary(out, manifest)
    return 0


def docker_image(requested: str | None, gpus: int, tensorflow: str | None, template: dict[str, Any]) -> str:
    """The image asked for, else TensorFlow's own image at our pin (its -gpu variant when GPUs are requested)."""
    if requested:
        return requested
    if not tensorflow:
        raise UsageError("cannot tell which TensorFlow the harness pins (no requirements.txt); pass --docker-image")
    return template["resources"]["docker_image_gpu" if gpus else "docker_image"].format(tensorflow=tensorflow)


def build_bundle(folder: Path, spec: ExperimentSpec, args: argparse.Namespace) -> dict[str, Any]:
    """Write code/, data/, the script and the manifest into `folder`; returns the manifest."""
    template = manifest_template()
    pins = pinned_versions()
    tensorflow = pins.get("tensorflow") or installed_version("tensorflow")
    image = docker_image(args.docker_image, args.gpus, tensorflow, template)
    built_at, stamp = utc_now(), f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}"
    harness = git_state()

    # The data bundle: every image the spec may use, verified, in one file.
    (folder / DATA_KEY).mkdir()
    data_file = folder / DATA_KEY / DATA_FILE
    mnist = load_mnist(spec.data.source, spec.data.path)
    write_mnist_npz(mnist, data_file)
    verify(read_npz(data_file), f"data bundle {data_file}")  # reads back as the official MNIST
    data_sha = file_sha256(data_file)

    names = {k: v.format(stamp=stamp, data_sha12=data_sha[:12], spec_name=_name_part(spec.name),
                         spec_hash8=spec.short_hash) for k, v in template["names"].items()}
    commit = (harness["commit"] or "unknown")[:12] + ("+dirty" if harness["dirty"] else "")
    plan = CodaLabRun(code_name=names["code"], data_name=names["data"], run_name=names["run"],
                      command=template["command"], docker_image=image, memory=args.memory, cpus=args.cpus,
                      time=args.time, gpus=args.gpus, instance=args.instance, worksheet=args.worksheet,
                      description=cl_text(f"{spec.name} (spec {spec.short_hash}), harness {commit}"))

    # The code bundle, with a note of what it was built for (the worker records it).
    (folder / CODE_KEY).mkdir()
    code = write_code_bundle(folder / CODE_KEY, spec)
    bundle_info = {"built_at": built_at, "harness": harness, "spec": {"name": spec.name, "hash": spec.hash},
                   "bundles": {"code": plan.code_name, "data": plan.data_name, "run": plan.run_name},
                   "docker_image": image, "pins": {k: pins.get(k) for k in ("tensorflow", "keras")},
                   "request_network": REQUEST_NETWORK,
                   "vendored": code["vendored"], "data_sha256": data_sha}
    (folder / CODE_KEY / BUNDLE_INFO).write_text(json.dumps(bundle_info, indent=2) + "\n")
    (folder / CODE_KEY / HARNESS_STAMP).write_text(harness_stamp(harness))  # the worker has no git
    n_files, code_sha = tree_sha256(folder / CODE_KEY)

    commands = plan.cl_commands()
    manifest = {
        "manifest_version": template["manifest_version"],
        "built_at": built_at,
        "harness": harness,
        "instance": plan.instance,
        "worksheet": plan.worksheet,
        "spec": {"name": spec.name, "hash": spec.hash, "file": f"{CODE_KEY}/{SPEC_FILE}",
                 "overrides": spec_overrides(args)},
        "bundles": {
            "code": {"name": plan.code_name, "path": CODE_KEY, "files": n_files, "sha256": code_sha,
                     "vendored": code["vendored"]},
            "data": {"name": plan.data_name, "path": DATA_KEY, "file": f"{DATA_KEY}/{DATA_FILE}",
                     "bytes": data_file.stat().st_size, "sha256": data_sha, "data_digest": mnist.digest()},
            "run": {"name": plan.run_name, "download": plan.download_path},
        },
        "dependencies": plan.dependencies(),
        "command": plan.command,
        "resources": {"docker_image": image, "memory": plan.memory, "cpus": plan.cpus, "time": plan.time,
                      "gpus": plan.gpus, "network": REQUEST_NETWORK, "network_note": NETWORK_NOTE},
        "image": {**template["image"], "tensorflow_pin": tensorflow, "keras_pin": pins.get("keras")},
        "cl": list(commands.values()),
        "cl_placeholders": {RUN_UUID: "the run bundle's uuid, as `cl run` printed it (the script saves it "
                                      f"to {RUN_UUID_FILE})"},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")

    script = _Template((TEMPLATES / f"{SCRIPT}.template").read_text()).substitute(
        built_at=built_at, commit=commit, spec_name=spec.name, spec_hash=spec.hash, docker_image=image,
        run_name=plan.run_name, download=plan.download_path, run_uuid_file=RUN_UUID_FILE, instance=plan.instance,
        **{f"cl_{step}": shell_line(argv) for step, argv in commands.items()})
    (folder / SCRIPT).write_text(script)
    (folder / SCRIPT).chmod(0o755)
    return manifest


def shell_line(argv: list[str]) -> str:
    """argv shell-quoted, with RUN_UUID left for the shell to expand ("$RUN_UUID")."""
    return " ".join(f'"{a}"' if a == RUN_UUID else shlex.quote(a) for a in argv)


def print_summary(out: Path, manifest: dict[str, Any]) -> None:
    b, r = manifest["bundles"], manifest["resources"]
    print(f"CodaLab bundle: {out}\n"
          f"  code  {out / b['code']['path']}  ({b['code']['files']} files, spec {manifest['spec']['name']} "
          f"{manifest['spec']['hash'][:8]})  -> {b['code']['name']}\n"
          f"  data  {out / b['data']['file']}  ({b['data']['bytes'] / 1e6:.1f} MB, sha256 "
          f"{b['data']['sha256'][:16]}…)  -> {b['data']['name']}\n"
          f"  run   {manifest['command']}\n"
          f"        on {r['docker_image']}, {r['memory']}, {r['cpus']} CPUs, {r['gpus']} GPUs, {r['time']}, "
          f"with network (cl run always asks for it)  -> {b['run']['name']}\n"
          f"next: bash {out / SCRIPT}   (or: python run.py push codalab {out})")


# --- Push and pull ----------------------------------------------------------------------

def _require_cl() -> str:
    cl = shutil.which("cl")
    if cl is None:
        raise CodaLabError(INSTALL_HINT)
    return cl


def cli_push(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="run.py push codalab",
                                     description="Upload a CodaLab bundle and run it: runs DIR/codalab-run.sh.")
    parser.add_argument("dir", type=Path, help="a folder written by `run.py bundle codalab --out DIR`")
    args = parser.parse_args(argv)
    script = args.dir / SCRIPT
    if not script.is_file() or not (args.dir / MANIFEST).is_file():
        raise UsageError(f"{args.dir}: not a CodaLab bundle (no {SCRIPT} and {MANIFEST}); "
                         "write one with `python run.py bundle codalab --out DIR`")
    _require_cl()
    rc = subprocess.run(["bash", str(script)]).returncode
    uuid = run_uuid(args.dir)
    if uuid:
        # The uuid works from any shell; the run's name resolves only in this shell's worksheet.
        instance = json.loads((args.dir / MANIFEST).read_text()).get("instance")
        print(f"run bundle {uuid}: pull it from any shell with "
              f"`python run.py pull codalab {pull_spec(instance, uuid)}`")
    if rc != 0:
        raise CodaLabError(f"{script} exited with status {rc}; the lines above say which `cl` step failed")
    return 0


def pull_spec(instance: str | None, uuid: str) -> str:
    """`<instance>::<uuid>`: names the run bundle whichever instance and worksheet the shell's session is on."""
    return f"{instance}::{uuid}" if instance else uuid


def run_uuid(bundle_dir: Path) -> str | None:
    """The run bundle's uuid that codalab-run.sh saved, or None (not run yet, or `cl run` failed)."""
    try:
        text = (bundle_dir / RUN_UUID_FILE).read_text()[:100].strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if CODALAB_UUID.match(text) else None


def cli_pull(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="run.py pull codalab",
                                     description="Download a CodaLab run bundle (`cl download`) and put its run "
                                                 "record into the runs folder.")
    parser.add_argument("bundle", help="run bundle: its uuid (0x..., printed by push), or WORKSHEET//NAME; a bare "
                                       "NAME resolves only in the current worksheet of this shell's `cl` session")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run records go (default: runs/)")
    args = parser.parse_args(argv)
    cl = _require_cl()
    from results.loaders.codalab import record_folders, why_no_record  # what `compare` sees in a run bundle

    args.runs_dir.mkdir(parents=True, exist_ok=True)
    # A hidden folder inside the runs folder: `compare` skips it, and records move out by rename.
    with tempfile.TemporaryDirectory(dir=args.runs_dir, prefix=".codalab-pull-") as tmp:
        bundle_dir = Path(tmp) / "bundle"
        proc = subprocess.run([cl, "download", args.bundle, "-o", str(bundle_dir)], capture_output=True, text=True)
        if proc.returncode != 0 or not bundle_dir.is_dir():
            why = (proc.stderr.strip() or proc.stdout.strip() or "it wrote nothing").splitlines()[-1]
            # `[<instance>::][<worksheet>//]<bundle>` (BundleCLI.resolve_target); a bare name is looked
            # up in the current worksheet of this shell's session (CodaLabManager.session_name).
            _, _, spec = args.bundle.rpartition("::")
            hint = ("" if CODALAB_UUID.match(spec) or "//" in spec else
                    "; a bare name is looked up in this shell's current worksheet: pass the uuid "
                    "(push prints it) or WORKSHEET//NAME")
            raise CodaLabError(f"cl download {args.bundle}: {why}{hint}")
        pulled = [_keep_record(record, bundle_dir, args.bundle, args.runs_dir) for record in record_folders(bundle_dir)]
        if not pulled:
            raise CodaLabError(f"run bundle {args.bundle} holds no run record "
                               f"({why_no_record(bundle_dir)}); see `cl cat {args.bundle}/stderr`")
    for dest, new in pulled:
        print(f"{'pulled run record' if new else 'already in runs'}: {dest}")
    print(f"compare: python run.py compare {' '.join(str(d) for d, _ in pulled)} {args.runs_dir}")
    return 0


def _keep_record(record: Path, bundle_dir: Path, bundle: str, runs_dir: Path) -> tuple[Path, bool]:
    """Move one record from the download into runs_dir, with CodaLab's stdout/stderr and a link."""
    dest = runs_dir / record.name
    if dest.exists():
        return dest, False
    extra = record / "codalab"
    extra.mkdir(exist_ok=True)
    for name in ("stdout", "stderr"):
        if (bundle_dir / name).is_file():
            shutil.copy2(bundle_dir / name, extra / name)
    run = read_run_json(record)
    uuid = run.get("environment", {}).get("platform_info", {}).get("run_bundle_uuid")
    update_run_json(record, {"links": {"codalab": {"bundle": bundle, "run_bundle_uuid": uuid, "pulled_at": utc_now()}}})
    os.replace(record, dest)
    return dest, True
