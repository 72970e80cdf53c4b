"""Kaggle: a kernel bundle that carries the harness, the run inside a kernel, push / status / pull.

    python run.py bundle kaggle --out DIR [--id OWNER/SLUG] [--gpu] [--notebook] [spec options]
    python run.py push kaggle DIR                 # what `kaggle kernels push -p DIR` does
    python run.py status kaggle OWNER/SLUG [--wait]
    python run.py pull kaggle OWNER/SLUG          # the kernel's output -> runs/<run_id>/ + its log
    python run.py --platform kaggle               # inside a kernel (detected from KAGGLE_KERNEL_RUN_TYPE)

Kaggle runs one code file, so the bundle's file carries the harness as a base64
zip together with the spec it runs. Inside the kernel, MNIST comes from the
attached dataset under `<root>/input` and the record goes to `<root>/working`,
which Kaggle keeps as the kernel's output. The official client (`kaggle` 2.2.4 +
`kagglesdk`) is imported only by push/status/pull: `import kaggle` authenticates.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import string
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Iterator, Sequence

from adapters.base import Platform, default_data
from core import environment
from core.data import DataError, Mnist, find_idx_files, read_idx, read_npz, verify
from core.errors import HarnessError, UsageError
from core.record import PARTIAL_PREFIX, RUN_JSON, update_run_json, utc_now
from core.spec import ExperimentSpec

TEMPLATES = environment.HARNESS_ROOT / "platforms" / "kaggle"
METADATA_FILE = "kernel-metadata.json"  # the name the client reads (KaggleApi.KERNEL_METADATA_FILE)
DEFAULT_ROOT = "/kaggle"
DEFAULT_DATASET = "hojjatk/mnist-dataset"  # LeCun's four IDX files, dotted names, the official split
LOG_FILE = "kaggle-kernel.log"  # the kernel's log, saved into a pulled record
MANIFEST = "BUNDLE.json"  # inside the embedded zip: what was bundled, from which commit
# What the kernel needs of the harness; tests, bundles and caches stay home.
BUNDLED = ("run.py", "requirements.txt", "core", "adapters", "cli", "results")
BUNDLED_SUFFIXES = (".py", ".yaml", ".txt")
SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")  # what Kaggle makes of a title
OWNER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # a Kaggle user name
FINAL_STATUSES = ("complete", "error", "cancel_acknowledged")
INSTALL_HINT = "pip install kaggle==2.2.4 kagglesdk==0.1.37"


class KaggleError(HarnessError):
    """The Kaggle API refused a request or could not be reached."""


# --- Inside a kernel ------------------------------------------------------------------

def dataset_folders(input_dir: Path, preferred: Sequence[str] = ()) -> list[Path]:
    """Folders that may hold one attached dataset, the bundle's own datasets first.

    Kaggle mounts a dataset at `input/<slug>/` (older kernels) or at
    `input/datasets/<owner>/<slug>/` (newer ones); other namespaces count as one folder each.
    """
    folders = []
    for ref in preferred:
        owner, _, slug = ref.partition("/")
        folders += [input_dir / "datasets" / owner / slug, input_dir / slug]
    if input_dir.is_dir():
        for child in sorted(p for p in input_dir.iterdir() if p.is_dir()):
            if child.name == "datasets":
                folders += [slug for owner in sorted(child.iterdir()) if owner.is_dir()
                            for slug in sorted(owner.iterdir()) if slug.is_dir()]
            else:
                folders.append(child)
    unique = dict.fromkeys(f for f in folders if f.is_dir())
    return list(unique)


def read_mnist_folder(folder: Path) -> Mnist:
    """The verified MNIST in one dataset folder: the four IDX files (raw or .gz), else a Keras mnist.npz."""
    if find_idx_files(folder):  # some IDX files: all four must be there and verify
        return verify(read_idx(folder), f"kaggle input {folder} (IDX)")
    errors = []
    for npz in sorted(folder.rglob("*.npz")):
        try:
            return verify(read_npz(npz), f"kaggle input {npz}")
        except DataError as e:
            errors.append(str(e))
    raise DataError("; ".join(errors) or f"{folder}: no IDX files and no .npz file")


def find_mnist(input_dir: Path, preferred: Sequence[str] = ()) -> Mnist:
    """The first dataset folder under `input_dir` that holds MNIST with the official digests."""
    errors = []
    for folder in dataset_folders(input_dir, preferred):
        try:
            return read_mnist_folder(folder)
        except DataError as e:
            errors.append(str(e))
    looked = "\n  ".join(errors) or f"{input_dir} holds no dataset folders"
    raise DataError(f"no verified MNIST under {input_dir}:\n  {looked}\n"
                    f"Attach the dataset {DEFAULT_DATASET} to the kernel (dataset_sources in {METADATA_FILE}); "
                    "see platforms/kaggle/README.md")


def accelerator() -> dict[str, Any]:
    """What the kernel was given: GPUs (nvidia-smi), a TPU (its environment variables), or the CPU."""
    gpus = [g["name"] for g in environment.gpu_info()]
    tpu = os.environ.get("TPU_ACCELERATOR_TYPE") or os.environ.get("TPU_NAME")
    kind = "gpu" if gpus else "tpu" if tpu else "cpu"
    return {"kind": kind, "gpus": gpus, "tpu": tpu}


def image_info() -> dict[str, Any]:
    """The Kaggle Docker image: its build commit and date (env, or the files the image writes)."""
    def fact(var: str, path: str) -> str | None:
        if os.environ.get(var):
            return os.environ[var]
        with contextlib.suppress(OSError):
            return Path(path).read_text().strip() or None
        return None

    return {"git_commit": fact("GIT_COMMIT", "/etc/git_commit"), "build_date": fact("BUILD_DATE", "/etc/build_date"),
            "cuda_version": os.environ.get("CUDA_VERSION") or None}


def kaggle_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The KAGGLE_* variables a kernel sees, secrets (data proxy and user-secrets tokens) redacted."""
    environ = os.environ if environ is None else environ
    return environment.redact_env({k: v for k, v in environ.items() if k.startswith("KAGGLE_")})


class KagglePlatform(Platform):
    """A Kaggle kernel: MNIST from the attached dataset, the record into the kernel's output."""

    name = "kaggle"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--kaggle-root", default=os.environ.get("KAGGLE_ROOT", DEFAULT_ROOT), metavar="DIR",
                            help="the kernel's file system root, holding input/ and working/ "
                                 f"(default: $KAGGLE_ROOT or {DEFAULT_ROOT})")
        parser.add_argument("--kaggle-dataset", action="append", default=[], metavar="OWNER/SLUG",
                            help="look for MNIST in this attached dataset first (the bundle passes its own)")

    @property
    def root(self) -> Path:
        return Path(getattr(self.options, "kaggle_root", None) or os.environ.get("KAGGLE_ROOT", DEFAULT_ROOT))

    def load_data(self, spec: ExperimentSpec) -> Mnist:
        if spec.data.source in ("npz", "idx", "csv"):  # an explicit file wins
            return default_data(spec, self.log)
        mnist = find_mnist(self.root / "input", getattr(self.options, "kaggle_dataset", []))
        self.log(f"[kaggle] MNIST from {mnist.source}, digests verified")
        return mnist

    def runs_dir(self) -> Path:
        runs = Path(getattr(self.options, "runs_dir", "runs"))
        return runs if runs.is_absolute() else self.root / "working" / runs

    def platform_info(self) -> dict[str, Any]:
        info = {"name": self.name, "root": str(self.root), "run_type": os.environ.get("KAGGLE_KERNEL_RUN_TYPE"),
                "kaggle_env": kaggle_env(), "image": image_info(), "accelerator": accelerator()}
        manifest = environment.HARNESS_ROOT / MANIFEST
        if manifest.exists():  # running from a bundle: which commit and spec it was built from
            info["bundle"] = json.loads(manifest.read_text())
        return info


PLATFORM = KagglePlatform


# --- The bundle ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class KaggleBundle:
    """A kernel folder `kaggle kernels push -p` accepts: kernel-metadata.json and one code file."""

    folder: Path
    metadata: dict[str, Any]
    spec_hash: str

    @property
    def code_file(self) -> Path:
        return self.folder / self.metadata["code_file"]

    def files(self) -> list[Path]:
        return [self.folder / METADATA_FILE, self.code_file]


def harness_files(root: Path = environment.HARNESS_ROOT) -> dict[str, Path]:
    """Archive name -> file, for the parts of the harness a kernel runs."""
    files = {}
    for top in BUNDLED:
        path = root / top
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        for p in candidates:
            rel = p.relative_to(root)
            if p.is_file() and p.suffix in BUNDLED_SUFFIXES and not any(
                    part.startswith((".", "__pycache__")) for part in rel.parts):
                files[rel.as_posix()] = p
    return files


def deterministic_zip(members: dict[str, bytes]) -> bytes:
    """A zip whose bytes depend only on the members: sorted, fixed timestamps and modes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            z.writestr(info, members[name], compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    return buf.getvalue()


def secret_values() -> dict[str, str]:
    """Values that must never appear in a bundle: secret-named variables and kaggle.json's key."""
    values = {f"${k}": v for k, v in os.environ.items() if environment.SECRET_NAME.search(k) and len(v) >= 8}
    for folder in _config_dirs():
        with contextlib.suppress(OSError, ValueError, AttributeError):
            key = json.loads((folder / "kaggle.json").read_text()).get("key")
            if isinstance(key, str) and len(key) >= 8:
                values[str(folder / "kaggle.json")] = key
    return values


def _config_dirs() -> list[Path]:
    """Where the Kaggle client looks for kaggle.json."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return [Path(os.environ["KAGGLE_CONFIG_DIR"])]
    home = Path.home()
    return [home / ".kaggle", Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "kaggle"]


def check_no_secrets(blobs: dict[str, bytes]) -> None:
    """Refuse to write a bundle that contains a credential of this machine."""
    for where, value in secret_values().items():
        for name, blob in blobs.items():
            if value.encode() in blob:
                raise UsageError(f"refusing to write the bundle: {name} contains the value of {where}")


def kernel_id(given: str | None, spec: ExperimentSpec) -> str:
    """OWNER/SLUG from --id, else $KAGGLE_USERNAME/mnist-<spec>-<hash>; checked as the client checks it."""
    if given is None:
        owner = os.environ.get("KAGGLE_USERNAME")
        if not owner:
            raise UsageError("give the kernel's --id OWNER/SLUG (or set KAGGLE_USERNAME to use the default slug)")
        slug = re.sub(r"[^a-z0-9]+", "-", f"mnist {spec.name} {spec.short_hash}".lower()).strip("-")
        given = f"{owner}/{slug}"
    owner, sep, slug = given.partition("/")
    if not sep or not OWNER.match(owner) or not SLUG.match(slug) or len(slug) < 5:
        raise UsageError(f"--id {given!r}: expected OWNER/SLUG, the slug at least 5 characters of lowercase "
                         "letters, digits and hyphens (the id Kaggle derives from the title)")
    return given


def kernel_title(slug: str) -> str:
    """A title that Kaggle turns back into `slug` (the client warns when they disagree)."""
    return slug.replace("-", " ")


def kernel_script(*, spec: ExperimentSpec, kernel: str, harness: bytes, run_args: list[str], commit: str) -> str:
    encoded = base64.b64encode(harness).decode()
    template = string.Template((TEMPLATES / "kernel_entry.py.template").read_text())
    return template.substitute(
        spec_name=" ".join(spec.name.split()), spec_hash=spec.hash, spec_hash_short=spec.short_hash,
        kernel_id=kernel, commit=commit, run_args=repr(run_args),
        harness_sha256=hashlib.sha256(harness).hexdigest(),
        harness_zip="\n".join(encoded[i:i + 100] for i in range(0, len(encoded), 100)),
    )


def kernel_notebook(script: str, spec: ExperimentSpec, kernel: str) -> str:
    """The script as the one code cell of an nbformat-4 notebook, with a line of explanation."""
    intro = (f"# MNIST reproducibility harness: spec `{' '.join(spec.name.split())}` ({spec.short_hash})\n\n"
             "Generated by `python run.py bundle kaggle --notebook`; rebuild the bundle rather than editing it. "
             "The cell below unpacks the harness, trains on the attached MNIST dataset and writes the run "
             f"record to `/kaggle/working/runs/`. Fetch it with `python run.py pull kaggle {kernel}`.")
    notebook = {
        "cells": [
            {"cell_type": "markdown", "id": "harness-about", "metadata": {}, "source": intro},
            {"cell_type": "code", "id": "harness-run", "metadata": {}, "execution_count": None,
             "outputs": [], "source": script},
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                     "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    return json.dumps(notebook, indent=1) + "\n"


def build_bundle(out: Path, spec: ExperimentSpec, *, kernel: str, gpu: bool = False, notebook: bool = False,
                 datasets: Sequence[str] = (DEFAULT_DATASET,), private: bool = True, internet: bool = False,
                 deterministic: bool = True, machine_shape: str | None = None) -> KaggleBundle:
    """Write the kernel folder for `spec` into `out`; returns what was written."""
    import yaml

    from core.spec import parse_spec

    spec_yaml = yaml.safe_dump(spec.to_dict(), sort_keys=False).encode()
    if parse_spec(yaml.safe_load(spec_yaml)).hash != spec.hash:  # the kernel must run exactly this spec
        raise HarnessError(f"spec {spec.name!r} does not survive a YAML round trip with the same hash")
    run_args = [arg for ds in datasets for arg in ("--kaggle-dataset", ds)]
    if not deterministic:
        run_args.append("--no-determinism")
    members = {name: path.read_bytes() for name, path in harness_files().items()}
    members["spec.yaml"] = spec_yaml
    harness = environment.git_state()
    members[environment.HARNESS_STAMP] = environment.harness_stamp(harness).encode()  # the kernel has no git
    manifest = {"kernel": kernel, "spec_name": spec.name, "spec_hash": spec.hash, "harness": harness,
                "dataset_sources": list(datasets), "run_args": run_args,
                "files": {name: hashlib.sha256(blob).hexdigest() for name, blob in sorted(members.items())}}
    members[MANIFEST] = (json.dumps(manifest, indent=2) + "\n").encode()
    packed = deterministic_zip(members)

    script = kernel_script(spec=spec, kernel=kernel, harness=packed, run_args=run_args,
                           commit=harness["commit"] or "unknown (not a git checkout)")
    code_text = kernel_notebook(script, spec, kernel) if notebook else script
    metadata = json.loads((TEMPLATES / "kernel-metadata.template.json").read_text())
    metadata.update({
        "id": kernel, "title": kernel_title(kernel.partition("/")[2]),
        "code_file": "kernel.ipynb" if notebook else "kernel.py",
        "kernel_type": "notebook" if notebook else "script",
        "is_private": private, "enable_internet": internet, "dataset_sources": list(datasets),
        "enable_gpu": gpu or (machine_shape or "").startswith("Nvidia"),
        "enable_tpu": (machine_shape or "").startswith("Tpu"),
    })
    if machine_shape:
        metadata["machine_shape"] = machine_shape
    metadata_text = json.dumps(metadata, indent=2) + "\n"
    check_no_secrets({**members, metadata["code_file"]: code_text.encode(), METADATA_FILE: metadata_text.encode()})

    _prepare_out(out)
    for name, text in ((metadata["code_file"], code_text), (METADATA_FILE, metadata_text)):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out / name)
    return KaggleBundle(out, metadata, spec.hash)


def _prepare_out(out: Path) -> None:
    """An empty folder, or a previous bundle's (whose code file goes)."""
    out.mkdir(parents=True, exist_ok=True)
    old = out / METADATA_FILE
    if old.exists():
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            code = Path(json.loads(old.read_text())["code_file"]).name
            (out / code).unlink(missing_ok=True)
        return
    if any(out.iterdir()):
        raise UsageError(f"--out {out}: the folder is not empty and holds no kernel bundle; give a new folder")


def cli_bundle(argv: list[str]) -> int:
    from cli.options import add_spec_options, spec_from_args

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
    if args.accelerator and not re.match(r"^[A-Za-z0-9]+$", args.accelerator):
        raise UsageError(f"--accelerator {args.accelerator!r}: expected a machine shape such as NvidiaTeslaT4")
    datasets = args.dataset or [DEFAULT_DATASET]
    for ds in datasets:
        owner, _, slug = ds.partition("/")
        if not OWNER.match(owner) or not SLUG.match(slug):
            raise UsageError(f"--dataset {ds!r}: expected OWNER/SLUG, as in kaggle.com/datasets/OWNER/SLUG")
    bundle = build_bundle(args.out, spec, kernel=kernel_id(args.kernel_id, spec), gpu=args.gpu,
                          notebook=args.notebook, datasets=datasets, private=not args.public,
                          internet=args.internet, deterministic=args.deterministic,
                          machine_shape=args.accelerator)
    print(f"kernel bundle {bundle.metadata['id']} (spec {spec.name}, {spec.short_hash}) in {bundle.folder}:")
    for path in bundle.files():
        print(f"  {path.name:<22} {path.stat().st_size:>9,} bytes")
    print(f"push it: python run.py push kaggle {bundle.folder}   (or: kaggle kernels push -p {bundle.folder})")
    return 0


# --- The Kaggle API: push, status, pull ------------------------------------------------

def kaggle_api():
    """An authenticated `KaggleApi` (the official client), or one clear message why not."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # `import kaggle` authenticates, and prints help if it can't
            from kaggle.api.kaggle_api_extended import KaggleApi
    except ImportError as e:
        raise KaggleError(f"the Kaggle client is not installed ({e.name}): {INSTALL_HINT}") from None
    api = KaggleApi()
    with _api_errors("authentication"), contextlib.redirect_stdout(io.StringIO()):
        try:
            api.authenticate()
        except SystemExit:
            raise KaggleError(
                "no usable Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY, or KAGGLE_API_TOKEN, or save "
                "kaggle.json in ~/.kaggle/ (or $KAGGLE_CONFIG_DIR); see platforms/kaggle/README.md") from None
    return api


@contextlib.contextmanager
def _api_errors(action: str) -> Iterator[None]:
    """The client's exceptions as one readable line (requests' messages name the URL, never a header)."""
    import requests

    try:
        yield
    except requests.HTTPError as e:
        code = e.response.status_code if e.response is not None else "?"
        hint = " (are the credentials right?)" if code in (401, 403) else ""
        raise KaggleError(f"Kaggle {action}: HTTP {code}{hint}: {e}") from None
    except requests.RequestException as e:
        raise KaggleError(f"Kaggle {action}: cannot reach the Kaggle API ({type(e).__name__}: {e})") from None
    except ValueError as e:  # the client's own checks of ids and metadata
        raise UsageError(f"Kaggle {action}: {e}") from None


def _kernel_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kernel", metavar="OWNER/SLUG", help="the kernel's id, as in its kernel-metadata.json")


def cli_push(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="run.py push kaggle",
                                     description="Upload a kernel folder (from `run.py bundle kaggle`) as a new "
                                                 "kernel version; Kaggle then runs it.")
    parser.add_argument("folder", type=Path, help="the kernel folder (holding kernel-metadata.json)")
    parser.add_argument("--timeout", type=int, metavar="SECONDS", help="the kernel session's time limit")
    parser.add_argument("--accelerator", metavar="NAME",
                        help="a machine shape (e.g. NvidiaTeslaT4); overrides enable_gpu of the metadata")
    args = parser.parse_args(argv)
    try:
        kernel = json.loads((args.folder / METADATA_FILE).read_text())["id"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{args.folder}: no readable {METADATA_FILE} with an id ({e}); "
                         "build the folder with `run.py bundle kaggle --out DIR`") from None
    api = kaggle_api()
    with _api_errors("push"):
        response = api.kernels_push(str(args.folder), timeout=args.timeout, acc=args.accelerator)
    if response.error:
        raise KaggleError(f"Kaggle refused the kernel: {response.error}")
    print(f"pushed {response.ref}, version {response.version_number}: {response.url}")
    if response.invalid_dataset_sources:
        print(f"error: Kaggle did not attach {', '.join(response.invalid_dataset_sources)}; "
              "the kernel will find no MNIST")
        return 1
    print(f"follow it: python run.py status kaggle {kernel} --wait")
    return 0


def kernel_status(api, kernel: str) -> tuple[str, str | None]:
    """(status, failure message) of the kernel's latest version: queued, running, complete, error, ..."""
    with _api_errors("status"):
        response = api.kernels_status(kernel)
    return response.status.name.lower(), response.failure_message or None


def cli_status(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="run.py status kaggle", description="Status of a kernel's latest run.")
    _kernel_arg(parser)
    parser.add_argument("--wait", action="store_true", help="poll until the run ends; exit 1 if it failed")
    parser.add_argument("--interval", type=float, default=30.0, metavar="SECONDS", help="polling interval (default 30)")
    args = parser.parse_args(argv)
    api = kaggle_api()
    while True:
        status, message = kernel_status(api, args.kernel)
        print(f"{args.kernel}: {status}" + (f" ({message})" if message else ""), flush=True)
        if not args.wait or status in FINAL_STATUSES:
            break
        time.sleep(args.interval)
    if args.wait and status != "complete":
        return 1
    if status == "complete":
        print(f"fetch the record: python run.py pull kaggle {args.kernel}")
    return 0


# Kernel output names are the server's; never let one climb out of the download folder.
SAFE_OUTPUT_NAME = r"^(?!/)(?!.*(?:^|/)\.\.(?:/|$))"


def pull_records(api, kernel: str, runs_dir: Path, force: bool = False, log=print) -> list[Path]:
    """Download the kernel's output and move each run record in it to `runs_dir/<run_id>/`.

    The kernel log goes into each record as kaggle-kernel.log, and run.json gets
    `links.kaggle`. A record already in `runs_dir` is kept unless `force`.
    """
    from results.loaders import LoaderError
    from results.loaders.record import validate_run

    owner, _, slug = kernel.partition("/")
    status, _ = kernel_status(api, kernel)
    if status != "complete":
        log(f"[kaggle] {kernel} is {status}: its output may be an earlier version's")
    runs_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".kaggle-pull-", dir=runs_dir))  # hidden: compare skips it
    try:
        with _api_errors("pull"):
            files, _ = api.kernels_output(kernel, str(staging), file_pattern=SAFE_OUTPUT_NAME, force=True, quiet=True)
        kernel_log = staging / f"{slug}.log"
        found = sorted(p.parent for p in staging.rglob(RUN_JSON) if not p.parent.name.startswith(PARTIAL_PREFIX))
        if not found:
            kept = runs_dir / f".kaggle-output-{slug}"
            shutil.rmtree(kept, ignore_errors=True)
            staging.rename(kept)
            raise KaggleError(f"the output of {kernel} ({len(files)} files) holds no run record; "
                              f"it is kept in {kept} (the kernel log: {kept / kernel_log.name})")
        pulled = []
        for folder in found:
            try:
                run = validate_run(json.loads((folder / RUN_JSON).read_text()), str(folder))
            except (LoaderError, ValueError) as e:
                log(f"[kaggle] skipped {folder.relative_to(staging)}: {e}")
                continue
            run_id = str(run["run_id"])
            if not re.match(r"^[\w.-]+$", run_id) or run_id.startswith("."):
                log(f"[kaggle] skipped {folder.relative_to(staging)}: unusable run_id {run_id!r}")
                continue
            dest = runs_dir / run_id
            if dest.exists() and not force:
                log(f"[kaggle] {dest} is already here (pull --force replaces it)")
                continue
            if kernel_log.exists():
                shutil.copyfile(kernel_log, folder / LOG_FILE)
            update_run_json(folder, {"links": {"kaggle": {
                "kernel": kernel, "url": f"https://www.kaggle.com/code/{owner}/{slug}", "kernel_status": status,
                "pulled_at": utc_now(), "log": LOG_FILE if kernel_log.exists() else None}}})
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(folder, dest)  # the record appears whole, or not at all
            pulled.append(dest)
        return pulled
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def cli_pull(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="run.py pull kaggle",
                                     description="Download a kernel's output into runs/ as run records, "
                                                 "with the kernel log.")
    _kernel_arg(parser)
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where records go (default: runs/)")
    parser.add_argument("--force", action="store_true", help="replace records that were pulled before")
    args = parser.parse_args(argv)
    api = kaggle_api()
    pulled = pull_records(api, args.kernel, args.runs_dir, force=args.force)
    for record in pulled:
        print(f"run record: {record}")
    if not pulled:
        print("no new run records")
    return 0
