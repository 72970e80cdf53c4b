"""CodaLab Worksheets from this machine: a code bundle, a data bundle, the exact `cl` commands, the pull.

    run.py bundle codalab --out DIR [spec options] [resources]   code/, data/, codalab-run.sh, the manifest
    run.py push codalab DIR                                      run DIR/codalab-run.sh (needs `cl` on PATH)
    run.py pull codalab BUNDLE                                   `cl download` a run bundle; its record goes to runs/

The code bundle is `transfer.harness_files()` with the resolved spec, the commit
stamp and vendored PyYAML, secret-scanned as every bundle is; the data bundle is
MNIST as one verified, byte-reproducible `mnist.npz`.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import shlex
import shutil
import string
import subprocess
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from adapters.codalab import (BUNDLE_INFO, CODALAB_UUID, CODE_KEY, DATA_FILE, DATA_KEY, NETWORK_NOTE,
                              REQUEST_NETWORK)
from adapters.remote import transfer
from core import environment
from core.data import SHAPES, Mnist, file_sha256, load_mnist, read_npz, verify
from core.environment import HARNESS_ROOT, installed_version
from core.errors import HarnessError, UsageError
from core.record import read_run_json, utc_now
from core.spec import ExperimentSpec

TEMPLATES = HARNESS_ROOT / "platforms" / "codalab"
SPEC_FILE = "spec.yaml"
SCRIPT, MANIFEST = "codalab-run.sh", "codalab-manifest.json"
DOWNLOADS = "downloads"
RUN_UUID_FILE = "codalab-run-uuid.txt"  # in the bundle folder: the run bundle's uuid, as `cl run` printed it
RUN_UUID = "$RUN_UUID"  # in the manifest's `cl` argv: the uuid the script captured from `cl run`

# CodaLab's own formats: names (codalab/lib/spec_util.py NAME_REGEX); sizes and durations below.
NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.\-]*$")
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


def write_code_bundle(dest: Path, spec: ExperimentSpec, root: Path = HARNESS_ROOT) -> tuple[dict[str, Any], dict[str, Any]]:
    """The harness files, the resolved spec, the commit stamp and vendored PyYAML under `dest`, all
    secret-scanned before anything is written; returns (git state, what was vendored)."""
    members = transfer.read_members(transfer.harness_files(root))
    members[SPEC_FILE] = transfer.spec_yaml(
        spec, f"# {spec.name}, spec hash {spec.hash}: the spec this bundle runs, overrides applied\n")
    harness, members[environment.HARNESS_STAMP] = transfer.harness_stamp()  # the worker has no git
    vendored, vendor_files = pyyaml_files()
    members.update(vendor_files)
    transfer.scan_secrets(members, "the CodaLab code bundle")
    for name, blob in members.items():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_bytes(blob)
    return harness, {"vendored": vendored}


def pyyaml_files() -> tuple[dict[str, str], dict[str, bytes]]:
    """Pure-Python PyYAML (no C extension, so any CPython 3 reads it) as `vendor/yaml/*.py`, with its licence."""
    import yaml

    src = Path(yaml.__file__).parent
    files = {f"vendor/yaml/{m.name}": m.read_bytes() for m in sorted(src.glob("*.py"))}
    for f in metadata.distribution("PyYAML").files or []:
        if f.name.upper().startswith("LICENSE"):
            files["vendor/PyYAML-LICENSE"] = Path(f.locate()).read_bytes()
    return {"PyYAML": yaml.__version__}, files


def cl_text(text: str) -> str:
    """`text` as CodaLab metadata may hold it: ASCII only (metadata_util.fill_missing_metadata refuses the rest)."""
    return text.encode("ascii", "backslashreplace").decode("ascii")


def _name_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]+", "-", text).strip("-") or "spec"


@dataclasses.dataclass(frozen=True)
class Resources:
    """What `cl run --request-*` asks for, and where: the instance and worksheet."""

    docker_image: str | None
    gpus: int
    memory: str
    cpus: int
    time: str
    worksheet: str | None
    instance: str

    @classmethod
    def defaults(cls) -> "Resources":
        template = manifest_template()
        res = template["resources"]
        return cls(docker_image=None, gpus=res["gpus"], memory=res["memory"], cpus=res["cpus"], time=res["time"],
                   worksheet=template["worksheet"], instance=template["instance"])


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


def check_resources(args: Resources) -> None:
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


def docker_image(requested: str | None, gpus: int, tensorflow: str | None, template: dict[str, Any]) -> str:
    """The image asked for, else TensorFlow's own image at our pin (its -gpu variant when GPUs are requested)."""
    if requested:
        return requested
    if not tensorflow:
        raise UsageError("cannot tell which TensorFlow the harness pins (no requirements.txt); pass --docker-image")
    return template["resources"]["docker_image_gpu" if gpus else "docker_image"].format(tensorflow=tensorflow)


def build_bundle(folder: Path, spec: ExperimentSpec, args: Resources, overrides: dict[str, Any]) -> dict[str, Any]:
    """Write code/, data/, the script and the manifest into `folder`; returns the manifest."""
    template = manifest_template()
    pins = pinned_versions()
    tensorflow = pins.get("tensorflow") or installed_version("tensorflow")
    image = docker_image(args.docker_image, args.gpus, tensorflow, template)
    built_at, stamp = utc_now(), f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}"

    # The data bundle: every image the spec may use, verified, in one file.
    (folder / DATA_KEY).mkdir()
    data_file = folder / DATA_KEY / DATA_FILE
    mnist = load_mnist(spec.data.source, spec.data.path)
    write_mnist_npz(mnist, data_file)
    verify(read_npz(data_file), f"data bundle {data_file}")  # reads back as the official MNIST
    data_sha = file_sha256(data_file)

    names = {k: v.format(stamp=stamp, data_sha12=data_sha[:12], spec_name=_name_part(spec.name),
                         spec_hash8=spec.short_hash) for k, v in template["names"].items()}
    harness = environment.git_state()
    commit = (harness["commit"] or "unknown")[:12] + ("+dirty" if harness["dirty"] else "")
    plan = CodaLabRun(code_name=names["code"], data_name=names["data"], run_name=names["run"],
                      command=template["command"], docker_image=image, memory=args.memory, cpus=args.cpus,
                      time=args.time, gpus=args.gpus, instance=args.instance, worksheet=args.worksheet,
                      description=cl_text(f"{spec.name} (spec {spec.short_hash}), harness {commit}"))

    # The code bundle, with a note of what it was built for (the worker records it).
    (folder / CODE_KEY).mkdir()
    harness, code = write_code_bundle(folder / CODE_KEY, spec)
    bundle_info = {"built_at": built_at, "harness": harness, "spec": {"name": spec.name, "hash": spec.hash},
                   "bundles": {"code": plan.code_name, "data": plan.data_name, "run": plan.run_name},
                   "docker_image": image, "pins": {k: pins.get(k) for k in ("tensorflow", "keras")},
                   "vendored": code["vendored"], "data_sha256": data_sha, "request_network": REQUEST_NETWORK}
    (folder / CODE_KEY / BUNDLE_INFO).write_text(json.dumps(bundle_info, indent=2) + "\n")
    n_files, code_sha = transfer.tree_sha256(folder / CODE_KEY)

    commands = plan.cl_commands()
    manifest = {
        "manifest_version": template["manifest_version"],
        "built_at": built_at,
        "harness": harness,
        "instance": plan.instance,
        "worksheet": plan.worksheet,
        "spec": {"name": spec.name, "hash": spec.hash, "file": f"{CODE_KEY}/{SPEC_FILE}",
                 "overrides": overrides},
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


def bundle(out: Path, spec: ExperimentSpec, resources: Resources, overrides: dict[str, Any]) -> dict[str, Any]:
    """Write the whole CodaLab bundle into a new folder `out` (all or nothing); returns its manifest."""
    check_resources(resources)
    return transfer.write_new_folder(out, lambda folder: build_bundle(folder, spec, resources, overrides))


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


def push(folder: Path, log=print) -> str | None:
    """Run the bundle's codalab-run.sh: cl work, upload ×2, run, wait, download; the run's pull spec."""
    script = folder / SCRIPT
    if not script.is_file() or not (folder / MANIFEST).is_file():
        raise UsageError(f"{folder}: not a CodaLab bundle (no {SCRIPT} and {MANIFEST}); "
                         "write one with `python run.py bundle codalab --out DIR`")
    _require_cl()
    rc = subprocess.run(["bash", str(script)]).returncode
    uuid, spec = run_uuid(folder), None
    if uuid:
        # The uuid works from any shell; the run's name resolves only in this shell's worksheet.
        spec = pull_spec(json.loads((folder / MANIFEST).read_text()).get("instance"), uuid)
        log(f"run bundle {uuid}: pull it from any shell with `python run.py pull codalab {spec}`")
    if rc != 0:
        raise CodaLabError(f"{script} exited with status {rc}; the lines above say which `cl` step failed")
    return spec


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


def pull(bundle: str, runs_dir: Path, *, force: bool = False, log=print) -> list[tuple[Path, bool]]:
    """`cl download` a run bundle into a staging folder and adopt each run record in it.

    The download is untrusted: it is checked whole (no links, no special files) before
    anything reads it, and each record goes through `transfer.adopt_record`, with
    CodaLab's stdout and stderr under `codalab/` and `links.codalab`.
    """
    cl = _require_cl()
    from results.loaders.codalab import why_no_record  # what `compare` would say of the bundle

    with transfer.staging(runs_dir, "codalab-pull") as staging:
        bundle_dir = staging / "bundle"
        proc = subprocess.run([cl, "download", bundle, "-o", str(bundle_dir)], capture_output=True, text=True)
        if proc.returncode != 0 or not bundle_dir.is_dir():
            why = (proc.stderr.strip() or proc.stdout.strip() or "it wrote nothing").splitlines()[-1]
            # `[<instance>::][<worksheet>//]<bundle>` (BundleCLI.resolve_target); a bare name is looked
            # up in the current worksheet of this shell's session (CodaLabManager.session_name).
            _, _, target = bundle.rpartition("::")
            hint = ("" if CODALAB_UUID.match(target) or "//" in target else
                    "; a bare name is looked up in this shell's current worksheet: pass the uuid "
                    "(push prints it) or WORKSHEET//NAME")
            raise CodaLabError(f"cl download {bundle}: {why}{hint}")
        transfer.check_tree(bundle_dir, f"run bundle {bundle}")
        records = transfer.record_folders(bundle_dir, skip=(CODE_KEY, DATA_KEY))
        if not records:
            raise CodaLabError(f"run bundle {bundle} holds no run record "
                               f"({why_no_record(bundle_dir)}); see `cl cat {bundle}/stderr`")
        pulled = []
        for record in records:
            uuid = None
            try:
                uuid = read_run_json(record).get("environment", {}).get("platform_info", {}).get("run_bundle_uuid")
            except (OSError, ValueError, AttributeError):
                pass  # adopt_record says what is wrong with it
            links = {"bundle": bundle, "run_bundle_uuid": uuid, "pulled_at": utc_now()}
            extras = {f"codalab/{name}": bundle_dir / name for name in ("stdout", "stderr")}
            try:
                pulled.append(transfer.adopt_record(record, runs_dir, platform="codalab", links=links,
                                                    extras=extras, force=force, log=log))
            except transfer.Refused as e:
                log(f"[codalab] skipped {record.relative_to(bundle_dir)}: {e}")
        return pulled
