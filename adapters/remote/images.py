"""A platform's image as a local environment: its Python and exactly its library versions.

`platforms/<name>/image.yaml` says which Python and which versions of the libraries the
harness uses a platform's image has (and which it lacks). `build_env` turns that into a
virtual environment, once, cached under the user cache folder and keyed by the hash of
the description (overrides included), so that `run.py preflight` can run a bundle with
the platform's numerics library stack before it is pushed.

Only the pinned libraries (and what pip resolves for them) go in: nothing of this
harness's own requirements (no PyYAML where the image has none, no comet_ml, no pandas).
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from core.data import cache_dir
from core.environment import HARNESS_ROOT
from core.errors import HarnessError, UsageError

PLATFORMS_DIR = HARNESS_ROOT / "platforms"
RECORD = "image-env.json"  # written last into the environment's folder: its presence means "built"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9][A-Za-z0-9.+!_-]*)$")
# One library under several distribution names: an override of one replaces the image's other.
ALIASES = ({"tensorflow", "tensorflow-cpu", "tensorflow-intel", "tensorflow-macos"},)


class ImageError(HarnessError):
    """The image's environment could not be built (no usable Python, pip failed, versions off)."""


def normalize(name: str) -> str:
    """PEP 503's normalized distribution name: `PyYAML` and `pyyaml`, `ml_dtypes` and `ml-dtypes` are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclasses.dataclass(frozen=True)
class ImageDescription:
    """What `platforms/<platform>/image.yaml` says, with `--with` overrides applied."""

    platform: str
    image: str
    date: str
    python: str
    packages: dict[str, str]
    absent: tuple[str, ...]
    sources: dict[str, str]
    run: dict[str, Any]
    overrides: dict[str, str]

    def key(self) -> dict[str, Any]:
        """What determines the environment; its hash names the cache folder."""
        return {"platform": self.platform, "image": self.image, "python": self.python,
                "packages": {normalize(k): v for k, v in sorted(self.packages.items())},
                "absent": sorted(normalize(a) for a in self.absent)}

    @property
    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.key(), sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    @property
    def python_minor(self) -> tuple[int, int]:
        major, minor = self.python.split(".")[:2]
        return int(major), int(minor)

    def version_of(self, *names: str) -> str | None:
        """The image's version of a library known under any of `names`."""
        wanted = {normalize(n) for n in names}
        return next((v for k, v in self.packages.items() if normalize(k) in wanted), None)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "absent": list(self.absent), "hash": self.hash}


def parse_with(values: Sequence[str]) -> dict[str, str]:
    """`--with PACKAGE==VERSION` values as {name: version}; anything else is a UsageError."""
    out = {}
    for value in values:
        m = PIN.match(value.strip())
        if not m:
            raise UsageError(f"--with {value!r}: expected PACKAGE==VERSION, e.g. --with tensorflow==2.19.1")
        out[m.group(1)] = m.group(2)
    return out


def load_image(platform: str, overrides: dict[str, str] | None = None,
               folder: Path = PLATFORMS_DIR) -> ImageDescription:
    """The image description of `platform`, overrides applied (an override of a library the
    image lacks adds it; one of `tensorflow` where the image has `tensorflow-cpu` replaces that)."""
    import yaml

    path = folder / platform / "image.yaml"
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        known = sorted(p.parent.name for p in folder.glob("*/image.yaml"))
        raise UsageError(f"platform {platform!r} has no image description ({path}); "
                         f"platforms with one: {', '.join(known) or 'none'}") from None
    except (OSError, yaml.YAMLError) as e:
        raise UsageError(f"{path}: unreadable ({e})") from None
    try:
        packages = {str(k): str(v) for k, v in raw["packages"].items()}
        desc = dict(platform=str(raw["platform"]), image=str(raw["image"]), date=str(raw.get("date", "")),
                    python=str(raw["python"]), absent=tuple(str(a) for a in raw.get("absent") or ()),
                    sources={str(k): str(v) for k, v in (raw.get("sources") or {}).items()},
                    run=dict(raw.get("run") or {}))
        if not re.match(r"^3\.\d+(\.\d+)?$", desc["python"]):
            raise ValueError(f"python: {desc['python']!r} is not a Python 3 version")
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise UsageError(f"{path}: not an image description ({type(e).__name__}: {e})") from None
    overrides = dict(overrides or {})
    for name, version in overrides.items():
        group = next((g for g in ALIASES if normalize(name) in g), {normalize(name)})
        same = [k for k in packages if normalize(k) in group]
        for k in same:
            del packages[k]
        packages[same[0] if same else name] = version  # keep the image's distribution name
    absent = tuple(a for a in desc["absent"] if normalize(a) not in {normalize(k) for k in packages})
    return ImageDescription(packages=packages, overrides=overrides, **{**desc, "absent": absent})


# --- The interpreter ---------------------------------------------------------------------

def _pyenv_root() -> Path | None:
    if os.environ.get("PYENV_ROOT"):
        return Path(os.environ["PYENV_ROOT"])
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=20)
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    home = Path.home() / ".pyenv"
    return home if home.is_dir() else None


def _version_of(python: Path) -> tuple[int, ...] | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError):
        out = subprocess.run([str(python), "-c", "import sys; print('.'.join(map(str, sys.version_info[:3])))"],
                             capture_output=True, text=True, timeout=60)
        if out.returncode == 0:
            return tuple(int(p) for p in out.stdout.strip().split("."))
    return None


def python_candidates() -> dict[tuple[int, ...], Path]:
    """Pythons on this machine: pyenv's versions, then `python3.X` on PATH; version -> executable."""
    found: dict[tuple[int, ...], Path] = {}
    root = _pyenv_root()
    if root and (root / "versions").is_dir():
        for folder in sorted((root / "versions").iterdir()):
            exe = folder / "bin" / "python"
            if re.match(r"^3\.\d+\.\d+$", folder.name) and exe.is_file():
                found[tuple(int(p) for p in folder.name.split("."))] = exe
    for minor in range(6, 20):
        exe = shutil.which(f"python3.{minor}")
        if exe and not any(v[:2] == (3, minor) for v in found):
            version = _version_of(Path(exe))
            if version:
                found[version] = Path(exe)
    return found


def find_python(wanted: str, candidates: dict[tuple[int, ...], Path] | None = None) -> dict[str, Any]:
    """The Python closest to `wanted`: the same version, else the same minor (newest patch), else the
    nearest minor. Returns {"path", "version", "requested", "match": exact|minor|nearest, "note"}."""
    candidates = python_candidates() if candidates is None else candidates
    if not candidates:
        raise ImageError(f"no Python 3 interpreter found (pyenv versions or python3.X on PATH) for Python {wanted}")
    want = tuple(int(p) for p in wanted.split("."))
    exact = [v for v in candidates if v[:len(want)] == want]
    if exact:
        version, match = max(exact), "exact"
    else:
        same_minor = [v for v in candidates if v[:2] == want[:2]]
        if same_minor:
            version, match = max(same_minor), "minor"
        else:  # the nearest minor, the newer one on a tie
            version = min(candidates, key=lambda v: (abs(v[1] - want[1]), -v[1], tuple(-p for p in v)))
            match = "nearest"
    used = ".".join(map(str, version))
    note = None
    if match == "minor":
        note = f"Python {used} stands in for the image's {wanted} (same minor version; no {wanted} here)"
    elif match == "nearest":
        note = f"Python {used} stands in for the image's {wanted}: no Python {'.'.join(map(str, want[:2]))} here"
    return {"path": str(candidates[version]), "version": used, "requested": wanted, "match": match, "note": note}


# --- The environment -----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ImageEnv:
    """A built environment: its folder, interpreter, and the record of how it was built."""

    folder: Path
    record: dict[str, Any]

    @property
    def python(self) -> Path:
        return self.folder / "bin" / "python"

    @property
    def base_prefix(self) -> Path:
        """The interpreter installation the venv runs on (it must be readable wherever the venv runs)."""
        return Path(self.record["python"]["base_prefix"])

    def packages(self) -> dict[str, str]:
        return dict(self.record["installed"])


def images_dir() -> Path:
    """`$HARNESS_IMAGES_DIR`, else `<user cache>/mnist-harness/images`."""
    env = os.environ.get("HARNESS_IMAGES_DIR")
    return Path(env) if env else cache_dir() / "images"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder per environment at a time (parallel test sessions, two terminals)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cached_env(desc: ImageDescription, root: Path | None = None) -> ImageEnv | None:
    folder = (root or images_dir()) / f"{desc.platform}-{desc.hash[:16]}"
    with contextlib.suppress(OSError, ValueError):
        record = json.loads((folder / RECORD).read_text())
        if record.get("image", {}).get("hash") == desc.hash and (folder / "bin" / "python").exists():
            return ImageEnv(folder, record)
    return None


def build_env(desc: ImageDescription, root: Path | None = None, log: Callable[[str], None] = print) -> ImageEnv:
    """The environment for `desc`, built now unless it is in the cache; checked against the description."""
    root = root or images_dir()
    with _locked(root / f".{desc.platform}-{desc.hash[:16]}.lock"):
        env = cached_env(desc, root)
        if env is not None:
            return env
        folder = root / f"{desc.platform}-{desc.hash[:16]}"
        shutil.rmtree(folder, ignore_errors=True)  # a build that was interrupted: start over
        python = find_python(desc.python)
        log(f"[preflight] building the {desc.platform} image environment ({desc.image}) in {folder}")
        if python["note"]:
            log(f"[preflight] {python['note']}")
        started = time.monotonic()
        _run([python["path"], "-m", "venv", str(folder)], "create the virtual environment")
        pins = [f"{name}=={version}" for name, version in desc.packages.items()]
        log(f"[preflight] pip install {' '.join(pins)}")
        _run([str(folder / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
              "-q", *pins], f"install {' '.join(pins)}")
        installed, base_prefix = _inspect(folder / "bin" / "python")
        _check(desc, installed)
        record = {"image": desc.to_dict(), "python": {**python, "base_prefix": base_prefix},
                  "installed": installed, "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "build_seconds": round(time.monotonic() - started, 1)}
        tmp = folder / f".{RECORD}.tmp"
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        tmp.replace(folder / RECORD)
        log(f"[preflight] built in {record['build_seconds']:.0f} s")
        return ImageEnv(folder, record)


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip() or f"exit status {proc.returncode}").splitlines()[-3:]
        raise ImageError(f"could not {what}: " + " | ".join(tail))


def _inspect(python: Path) -> tuple[dict[str, str], str]:
    """Every distribution in the environment (normalized name -> version), and its base prefix."""
    code = ("import json, sys; from importlib import metadata; "
            "print(json.dumps([sys.base_prefix, {d.metadata['Name']: d.version for d in metadata.distributions()}]))")
    out = subprocess.run([str(python), "-I", "-c", code], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise ImageError(f"the environment's Python does not start: {out.stderr.strip()[-300:]}")
    base_prefix, dists = json.loads(out.stdout)
    return {normalize(k): v for k, v in sorted(dists.items())}, base_prefix


def _check(desc: ImageDescription, installed: dict[str, str]) -> None:
    wrong = [f"{name} {installed.get(normalize(name))} (wanted {version})" for name, version in desc.packages.items()
             if installed.get(normalize(name)) != version]
    extra = [name for name in desc.absent if normalize(name) in installed]
    if wrong or extra:
        raise ImageError("the environment is not the image: " + "; ".join(
            [*(f"has {w}" for w in wrong), *(f"has {e}, which the image lacks" for e in extra)]))
