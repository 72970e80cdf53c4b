"""What leaves this machine and what comes back: one place for every platform.

Leaving — a Kaggle kernel, a CodaLab code bundle, a BEAT prefix:
    harness_files()      the one set of harness files a bundle carries
    scan_secrets()       one check, by file name and by value, for every bundle and archive
    deterministic_zip()  bytes that depend only on the members
    tree_sha256()        a folder's digest, from each file's path and digest
    spec_yaml()          the spec as YAML, checked to read back as the same spec hash

Coming back — a kernel's output, a run bundle, an archive — is untrusted:
    safe_name()          a server-sent relative name, or a refusal
    check_tree()         regular files and folders only, no links, bounded in count and size
    check_zip()          the same for an archive, before any client library opens it
    staging()            a hidden folder inside the runs folder (same file system, skipped by compare)
    adopt_record()       validate, confine, link, then rename one record into the runs folder

Python's tarfile `data` filter (PEP 706) is the model for the checks: absolute
names, `..`, links and special files are refused, naming the member.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

from core import environment
from core.data import file_sha256
from core.errors import HarnessError, UsageError
from core.record import RUN_JSON, RecordError, read_run_json, update_run_json, validate_run
from core.spec import ExperimentSpec, parse_spec

# --- Leaving: the harness a bundle carries ------------------------------------------------

# What a run elsewhere needs of the harness; tests, benchmarks, bundles and caches stay home.
HARNESS_PARTS = ("run.py", "requirements.txt", "core", "adapters", "cli", "results")
HARNESS_SUFFIXES = (".py", ".yaml", ".txt", ".json", ".md")
# Files that hold credentials by their nature, whatever they contain.
CREDENTIAL_NAME = re.compile(r"^(kaggle\.json|\.comet\.config|\.netrc|\.pypirc|credentials.*|client_secrets?.*"
                             r"|id_[rd]sa.*|id_ed25519.*|.*\.(pem|key|p12|pfx))$", re.I)
# A data file named like a secret (`tokens.json`, `api_key.txt`); Python modules may be named so.
SECRET_FILE_WORD = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION", re.I)
MIN_SECRET_LENGTH = 8  # shorter values would match by chance


def harness_files(root: Path = environment.HARNESS_ROOT) -> dict[str, Path]:
    """Bundle name (POSIX, relative) -> file, for the parts of the harness a remote run needs.

    Hidden files and folders, caches and links are left out; a credential-named file is refused later.
    """
    files = {}
    for top in HARNESS_PARTS:
        path = root / top
        if not path.exists():
            raise UsageError(f"{path}: missing — build bundles from a harness checkout")
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        for p in candidates:
            rel = p.relative_to(root)
            if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                continue
            if p.is_symlink() or not p.is_file() or p.suffix not in HARNESS_SUFFIXES:
                continue
            files[rel.as_posix()] = p
    return files


def read_members(files: dict[str, Path]) -> dict[str, bytes]:
    return {name: path.read_bytes() for name, path in files.items()}


def secret_values(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Where each secret of this machine comes from -> its value: secret-named environment variables and
    the platforms' own config files (kaggle.json, ~/.comet.config, the openml config)."""
    environ = os.environ if environ is None else environ
    values = {f"${k}": v for k, v in environ.items()
              if environment.SECRET_NAME.search(k) and len(v) >= MIN_SECRET_LENGTH}
    home = Path.home()
    kaggle_dirs = ([Path(environ["KAGGLE_CONFIG_DIR"])] if environ.get("KAGGLE_CONFIG_DIR") else
                   [home / ".kaggle", Path(environ.get("XDG_CONFIG_HOME") or home / ".config") / "kaggle"])
    for folder in kaggle_dirs:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            key = json.loads((folder / "kaggle.json").read_text()).get("key")
            if isinstance(key, str):
                values[str(folder / "kaggle.json")] = key
    config_lines = {home / ".comet.config": "api_key",
                    Path(environ.get("XDG_CONFIG_HOME") or home / ".config") / "openml" / "config": "apikey"}
    for path, name in config_lines.items():
        with contextlib.suppress(OSError, UnicodeDecodeError):
            for line in path.read_text().splitlines():
                key, sep, value = line.partition("=")
                if sep and key.strip().lower() == name and value.strip():
                    values[str(path)] = value.strip()
    return {where: v for where, v in values.items() if len(v) >= MIN_SECRET_LENGTH}


def scan_secrets(members: dict[str, bytes], what: str, environ: dict[str, str] | None = None) -> None:
    """Refuse to let `members` leave the machine if one is a credential file or holds a secret's value.

    By name: credential files (kaggle.json, keys, certificates), and data files named
    like secrets. By value: every secret of `secret_values` in any member's bytes.
    """
    for name in members:
        base = PurePosixPath(name).name
        if CREDENTIAL_NAME.match(base) or (not base.endswith(".py") and SECRET_FILE_WORD.search(base)):
            raise UsageError(f"refusing to write {what}: {name} is named like a credential file; "
                             "move it out of the harness tree")
    for where, value in secret_values(environ).items():
        needle = value.encode()
        for name, blob in members.items():
            if needle in blob:
                raise UsageError(f"refusing to write {what}: {name} contains the value of {where}")


def deterministic_zip(members: dict[str, bytes]) -> bytes:
    """A zip whose bytes depend only on the members: sorted, fixed timestamps and modes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            z.writestr(info, members[name], compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    return buf.getvalue()


def tree_sha256(folder: Path) -> tuple[int, str]:
    """(file count, SHA-256 over each file's relative path and SHA-256, sorted)."""
    lines = [f"{p.relative_to(folder).as_posix()}:{file_sha256(p)}\n"
             for p in sorted(folder.rglob("*")) if p.is_file()]
    return len(lines), hashlib.sha256("".join(lines).encode()).hexdigest()


def spec_yaml(spec: ExperimentSpec, header: str = "") -> bytes:
    """The spec as YAML that reads back as the same spec hash (the remote run must run exactly this spec)."""
    import yaml

    text = header + yaml.safe_dump(spec.to_dict(), sort_keys=False)
    if parse_spec(yaml.safe_load(text)).hash != spec.hash:
        raise HarnessError(f"spec {spec.name!r} does not survive a YAML round trip with the same hash")
    return text.encode()


def harness_stamp() -> tuple[dict[str, Any], bytes]:
    """(git state, the HARNESS_COMMIT.json bytes a bundle carries: a remote run has no git)."""
    state = environment.git_state()
    return state, environment.harness_stamp(state).encode()


def members_digest(members: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(blob).hexdigest() for name, blob in sorted(members.items())}


def write_new_folder(out: Path, fill: Callable[[Path], Any]) -> Any:
    """Fill a hidden sibling of `out`, then rename it to `out`: a half-written bundle never sits under
    the name asked for. `out` must not exist, or be an empty folder."""
    if out.is_symlink() or (out.exists() and (not out.is_dir() or any(out.iterdir()))):
        raise UsageError(f"--out {out}: already exists and is not an empty folder; choose another or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        result = fill(partial)
        if out.exists():
            out.rmdir()
        os.replace(partial, out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return result


# --- Coming back: untrusted names, trees and archives --------------------------------------

MAX_FILES = 10_000
MAX_BYTES = 4 * 2**30       # a record with a big model and the Comet archive is well under this
MAX_RATIO = 200             # compressed -> uncompressed; text compresses ~10x, a bomb 1000x
# One path segment: what a record, a kernel output or a bundle uses; no control characters.
SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9_.+@=,-][A-Za-z0-9_.+@=, -]{0,254}\Z")


class Refused(HarnessError):
    """Something that came from a platform breaks the confinement rules; names the member and why."""

    exit_code = 3


def safe_name(name: str, where: str) -> PurePosixPath:
    """A server- or archive-given relative path, checked segment by segment (no `/x`, `..`, `\\n`, `\\`)."""
    if not name or name.startswith("/") or "\\" in name:
        raise Refused(f"{where}: refusing {name[:200]!r}: not a relative path")
    for part in name.split("/"):  # raw segments: PurePosixPath would fold `a/./b` and `a//b` away
        if part in (".", "..") or not SAFE_SEGMENT.match(part):
            raise Refused(f"{where}: refusing {name[:200]!r}: the part {part[:80]!r} is not a plain file name")
    return PurePosixPath(name)


# The same rule as a regular expression, for clients that take a filter (the Kaggle client's
# `file_pattern` is searched with re.search): \A and \Z, because `$` also matches before a newline.
SAFE_NAME_PATTERN = r"\A(?!.*(?:\A|/)\.\.?(?:/|\Z))[A-Za-z0-9_.+@=,-][A-Za-z0-9_.+@=, /-]{0,1000}\Z"


def check_tree(root: Path, where: str, max_files: int = MAX_FILES, max_bytes: int = MAX_BYTES) -> None:
    """Everything under `root` is a folder or a regular file: no symlinks, no devices or FIFOs,
    at most `max_files` entries and `max_bytes` bytes. Nothing is followed."""
    count, total = 0, 0
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = Path(folder) / name
            st = path.lstat()
            rel = path.relative_to(root).as_posix()
            count += 1
            if stat.S_ISLNK(st.st_mode):
                raise Refused(f"{where}: refusing {rel}: a symbolic link (to {os.readlink(path)[:120]!r})")
            if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                raise Refused(f"{where}: refusing {rel}: not a regular file or folder")
            total += st.st_size if stat.S_ISREG(st.st_mode) else 0
            if count > max_files or total > max_bytes:
                raise Refused(f"{where}: more than {max_files:,} entries or {max_bytes:,} bytes; refusing it")


def check_zip(path: Path, where: str, max_files: int = MAX_FILES, max_bytes: int = MAX_BYTES) -> list[str]:
    """Member names of a zip that is safe to extract: plain relative names, regular files only,
    bounded count, size and compression ratio. Returns the file members' names."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise Refused(f"{where}: not a readable zip ({e})") from None
    if len(infos) > max_files:
        raise Refused(f"{where}: {len(infos):,} members, more than {max_files:,}")
    names, total = [], 0
    for info in infos:
        safe_name(info.filename.rstrip("/"), where)
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0: no Unix type recorded (a plain zip member)
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise Refused(f"{where}: refusing {info.filename!r}: not a regular file (a link or device)")
        total += info.file_size
        if total > max_bytes:
            raise Refused(f"{where}: more than {max_bytes:,} bytes uncompressed; refusing it")
        if info.file_size > 1_000_000 and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise Refused(f"{where}: {info.filename!r} expands {info.file_size // max(info.compress_size, 1)}x; "
                          "refusing a zip bomb")
        if not info.is_dir():
            names.append(info.filename)
    return names


# --- Coming back: adopting a record -------------------------------------------------------

@contextlib.contextmanager
def staging(runs_dir: Path, prefix: str) -> Iterator[Path]:
    """A hidden folder inside `runs_dir` (compare skips it; records leave it by rename), removed after."""
    if runs_dir.is_symlink():
        raise UsageError(f"--runs-dir {runs_dir}: is a symbolic link; give the real folder")
    runs_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{prefix}-", dir=runs_dir))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def record_folders(tree: Path, skip: tuple[str, ...] = ()) -> list[Path]:
    """Published record folders under `tree` (a `run.json` file), up to four levels down, not under hidden
    folders (`.partial-` ones are unfinished) or the top-level folders named in `skip`. No link is followed."""
    found = []
    for folder, dirs, files in os.walk(tree, followlinks=False):
        rel = Path(folder).relative_to(tree)
        dirs[:] = [d for d in sorted(dirs) if not d.startswith(".") and not (rel == Path(".") and d in skip)
                   and len(rel.parts) < 4]
        if RUN_JSON in files and rel != Path("."):
            found.append(Path(folder))
            dirs[:] = []
    return found


def adopt_record(folder: Path, runs_dir: Path, *, platform: str, links: dict[str, Any],
                 extras: dict[str, Path] | None = None, force: bool = False,
                 log: Callable[[str], None] = print) -> tuple[Path, bool]:
    """Move one pulled record folder into `runs_dir/<run_id>/`; returns (destination, whether it is new).

    The folder must sit on the same file system as `runs_dir` (use `staging`). It is
    checked whole first — no links, no special files, bounded size — and its run.json
    validated (schema, status, a run id usable as a folder name). Then `extras`
    (name -> file, e.g. the platform's log) are copied in, `links.<platform>` is written,
    and one rename puts the record in place. A record already there is kept unless
    `force`; a link or file in its place is never followed or replaced.
    """
    where = f"pulled record {folder.name}"
    check_tree(folder, where)
    try:
        run = validate_run(read_run_json(folder), where)
    except (OSError, ValueError, RecordError) as e:
        raise Refused(f"{where}: not a readable run record ({str(e)[:300]})") from None
    dest = runs_dir / run["run_id"]
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise Refused(f"{dest}: exists and is not a record folder; remove it yourself")
    if dest.exists() and not force:
        log(f"[{platform}] {dest} is already here (pull --force replaces it)")
        return dest, False
    for name, source in (extras or {}).items():
        target = folder / safe_name(name, where)
        if source.is_file() and not source.is_symlink():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    existing = run.get("links", {}).get(platform, {}) if isinstance(run.get("links"), dict) else {}
    update_run_json(folder, {"links": {platform: {**(existing if isinstance(existing, dict) else {}), **links}}})
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(folder, dest)  # the record appears whole, or not at all
    return dest, True

