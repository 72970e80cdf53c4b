"""Preflight: run a bundle here the way its platform will, and say beforehand whether the result moves.

    python run.py preflight kaggle BUNDLE    # or spec options instead of BUNDLE
    python run.py preflight codalab BUNDLE

The bundle runs in the platform's image environment (`images.build_env`: the image's
Python and exactly its library versions), laid out as the platform lays it out, as a
non-root user and without network where the platform's run has none (`sandbox`). Its
record (platform kaggle/codalab, `platform_info.preflight: true`) lands in runs/ and is
compared with a local record of the same spec, which is run first if runs/ has none.
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Callable

from adapters.remote import images, sandbox
from core.console import LOGGING_ENV
from core.data import IDX_NAMES, cache_dir, load_mnist
from core.environment import HARNESS_ROOT, NUMERIC_ENV_PREFIXES
from core.errors import HarnessError, UsageError
from core.record import PARTIAL_PREFIX, RUN_JSON, read_run_json, update_run_json, utc_now
from core.spec import ExperimentSpec, load_spec

MAX_CODE_FILE = 64 << 20  # a kernel's one code file: the harness zip in base64 is ~1 MB
MAX_SPEC = 1 << 20
DOCKER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # Docker's default PATH
# Settings of this shell that change how training runs: the sandbox gets them too, so that the
# image is the one difference between the preflight and the local run.
PASSED_ENV = (*NUMERIC_ENV_PREFIXES, "HARNESS_")
NUMERIC_FACETS = ("packages.", "python", "backend", "device", "determinism.", "env.", "cpu.", "gpus", "data_digest",
                  "seed")


class PreflightFailed(HarnessError):
    """The bundle crashed in the platform's environment (its own last error line says why)."""

    exit_code = 4


@dataclasses.dataclass
class Preflight:
    """What one preflight ran and produced."""

    platform: str
    record: Path
    local: Path
    env: images.ImageEnv
    isolation: sandbox.Isolation
    ran_local: bool
    sandbox: Path | None = None  # the sandbox folder, when it was kept


# --- Bundles ---------------------------------------------------------------------------------

def _read_bounded(path: Path, limit: int, hint: str = "") -> bytes:
    if path.is_symlink() or not path.is_file():
        raise UsageError(f"{path.parent}: no {path.name} (or not a regular file){hint}")
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UsageError(f"{path}: larger than {limit >> 20} MiB; not a bundle this harness wrote")
    return data


def kaggle_code(bundle: Path) -> tuple[dict[str, Any], str]:
    """(kernel-metadata.json, the kernel's Python code) of a bundle folder; a notebook's one code cell."""
    from adapters.remote import kaggle

    try:
        meta = json.loads(_read_bounded(bundle / kaggle.METADATA_FILE, 1 << 20,
                                        ": not a Kaggle bundle; write one with `run.py bundle kaggle --out DIR`"))
        code_name = Path(str(meta["code_file"])).name
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{bundle}: no readable {kaggle.METADATA_FILE} ({e}); "
                         "write the bundle with `run.py bundle kaggle --out DIR`") from None
    text = _read_bounded(bundle / code_name, MAX_CODE_FILE).decode("utf-8", errors="replace")
    if code_name.endswith(".ipynb"):  # the notebook's code cell is the script, verbatim
        try:
            cells = [c for c in json.loads(text)["cells"] if c.get("cell_type") == "code"]
            source = cells[0]["source"]
            text = "".join(source) if isinstance(source, list) else str(source)
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise UsageError(f"{bundle / code_name}: no code cell ({e})") from None
    return meta, text


def kaggle_spec(code: str, where: Path) -> tuple[str, bytes]:
    """(spec hash, spec.yaml) from the harness zip embedded in a kernel script, checked against its SHA-256."""
    try:
        spec_hash = re.search(r'^SPEC_HASH = "([0-9a-f]{64})"$', code, re.M).group(1)
        sha = re.search(r'^HARNESS_SHA256 = "([0-9a-f]{64})"$', code, re.M).group(1)
        packed = base64.b64decode("".join(code.split('HARNESS_ZIP = """', 1)[1].split('"""', 1)[0].split()))
    except (AttributeError, IndexError, binascii.Error):
        raise UsageError(f"{where}: not a kernel written by `run.py bundle kaggle` (no embedded harness)") from None
    if hashlib.sha256(packed).hexdigest() != sha:
        raise UsageError(f"{where}: the embedded harness does not match its SHA-256; rebuild the bundle")
    try:
        with zipfile.ZipFile(io.BytesIO(packed)) as z:
            info = z.getinfo("spec.yaml")
            if info.file_size > MAX_SPEC:
                raise UsageError(f"{where}: the embedded spec.yaml is larger than 1 MiB")
            return spec_hash, z.read(info)
    except (zipfile.BadZipFile, KeyError) as e:
        raise UsageError(f"{where}: the embedded harness holds no spec.yaml ({e})") from None


def make_kaggle_bundle(spec: ExperimentSpec, out: Path) -> Path:
    from adapters.remote import kaggle

    kaggle.build_bundle(out, spec, kernel="preflight/mnist-preflight-bundle")
    return out


def make_codalab_bundle(spec: ExperimentSpec, out: Path, overrides: dict[str, Any] | None = None) -> Path:
    from adapters.remote import codalab

    codalab.bundle(out, spec, codalab.Resources.defaults(), overrides or {})
    return out


def codalab_manifest(bundle: Path) -> dict[str, Any]:
    """The manifest of a CodaLab bundle folder, its dependency paths confined to the folder."""
    from adapters.remote import codalab

    try:
        manifest = json.loads(_read_bounded(bundle / codalab.MANIFEST, 1 << 20,
                                            ": not a CodaLab bundle; write one with `run.py bundle codalab --out DIR`"))
        deps = {str(d["key"]): str(manifest["bundles"][d["key"]]["path"]) for d in manifest["dependencies"]}
        command = str(manifest["command"])
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{bundle}: no readable {codalab.MANIFEST} ({type(e).__name__}: {e}); "
                         "write the bundle with `run.py bundle codalab --out DIR`") from None
    for key, rel in deps.items():
        for name in (key, rel):
            if not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", name):
                raise UsageError(f"{bundle}: dependency {name!r} is not a plain folder name")
        if (bundle / rel).is_symlink() or not (bundle / rel).is_dir():
            raise UsageError(f"{bundle}: dependency folder {rel}/ is missing (or a link)")
    return {"deps": deps, "command": command, "manifest": manifest}


# --- The platforms' layouts --------------------------------------------------------------------

def _passed_env() -> dict[str, str]:
    # Not how much TensorFlow logs (core.console.LOGGING_ENV): the platform's run has its own log as run.py makes it.
    return {k: v for k, v in os.environ.items()
            if k.startswith(PASSED_ENV) and k != "HARNESS_IMAGES_DIR" and k not in LOGGING_ENV}


def kaggle_input(slug: str) -> Path:
    """MNIST as the dataset hojjatk/mnist-dataset serves it (the four IDX files, dotted names),
    written once from the verified cache into the user cache folder."""
    folder = cache_dir() / "preflight-input" / "hojjatk-mnist-dataset"
    if not (folder / ".complete").exists():
        mnist = load_mnist("cache")
        tmp = folder.with_name(f".{folder.name}{PARTIAL_PREFIX}{secrets.token_hex(3)}")
        tmp.mkdir(parents=True)
        for name, stems in IDX_NAMES.items():
            a = getattr(mnist, name)
            header = bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
            (tmp / stems[1]).write_bytes(header + a.tobytes())
        (tmp / ".complete").touch()
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    return folder


def kaggle_plan(bundle: Path, desc: images.ImageDescription, env: images.ImageEnv,
                root: Path) -> tuple[sandbox.SandboxPlan, dict[str, Any]]:
    """/kaggle as a script kernel sees it: input/<slug> read-only, working/ the cwd, the code in src/."""
    meta, code = kaggle_code(bundle)
    datasets = [str(d) for d in meta.get("dataset_sources") or []] or ["hojjatk/mnist-dataset"]
    slug = datasets[0].partition("/")[2]
    if not re.match(r"^[a-z0-9]+(-[a-z0-9]+)*$", slug):
        raise UsageError(f"{bundle}: dataset {datasets[0]!r} is not OWNER/SLUG")
    kroot = root / "kaggle"
    (kroot / "src").mkdir(parents=True)
    (kroot / "src" / "kernel.py").write_text(code)
    (kroot / "src" / "kernel.py").chmod(0o444)
    run_env = {"PATH": f"{env.folder / 'bin'}:{DOCKER_PATH}", "HOME": str(root / "home"), "LANG": "C.UTF-8",
               "TMPDIR": str(root / "tmp"), "KAGGLE_ROOT": str(kroot), **desc.run.get("env", {}),
               "MNIST_HARNESS_CACHE": str(root / "home" / ".cache" / "mnist-harness"), **_passed_env()}
    plan = sandbox.SandboxPlan(
        root=root, argv=[str(env.python), str(kroot / "src" / "kernel.py")], cwd=kroot / "working", env=run_env,
        readonly={kaggle_input(slug): kroot / "input" / slug}, expose=[env.folder, env.base_prefix],
        writable=[kroot / "working", root / "home", root / "tmp"], log_file=root / "kaggle-kernel.log")
    return plan, {"network": bool(meta.get("enable_internet")), "datasets": datasets, "code": code}


def codalab_plan(bundle: Path, desc: images.ImageDescription, env: images.ImageEnv,
                 root: Path) -> tuple[sandbox.SandboxPlan, dict[str, Any]]:
    """A CodaLab worker's layout (codalab/worker/worker_run_state.py, docker_utils.py): the run bundle
    at /<uuid>, each dependency read-only at /<uuid>_dependencies/<key> and reached by a symlink
    <key> in the bundle folder, HOME the bundle folder, CODALAB=true, the command as
    `/bin/bash -c '( CMD; ) >stdout 2>stderr'` in the bundle folder."""
    info = codalab_manifest(bundle)
    uuid = "0x" + secrets.token_hex(16)
    work, deps_dir = root / uuid, root / f"{uuid}_dependencies"
    work.mkdir()
    readonly = {}
    for key, rel in info["deps"].items():
        readonly[bundle / rel] = deps_dir / key
        (work / key).symlink_to(deps_dir / key)
    command = info["command"] if info["command"].endswith(";") else f"{info['command']};"
    run_env = {"PATH": f"{env.folder / 'bin'}:{DOCKER_PATH}", "HOME": str(work),
               **desc.run.get("env", {}), "CODALAB": "true", **_passed_env()}
    plan = sandbox.SandboxPlan(root=root, argv=["/bin/bash", "-c", f"( {command} ) >stdout 2>stderr"], cwd=work,
                               env=run_env, readonly=readonly, expose=[env.folder, env.base_prefix],
                               writable=[work], log_file=root / "sandbox.log")  # the command redirects its own
    # `cl run` asks for network unless told otherwise (--request-network defaults to True).
    return plan, {"network": bool(desc.run.get("network", True)), "uuid": uuid,
                  "spec_file": bundle / "code" / "spec.yaml"}


# --- Running and adopting ------------------------------------------------------------------------

def last_error_line(text: str) -> str:
    """The line that says why a run died: the last `error:` / `...Error: ...` line, else the last line."""
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    for line in reversed(lines):
        if re.match(r"^(error: |\[sandbox\] |[A-Za-z_.]*(Error|Exception|Exit)\b)", line):
            return line
    return lines[-1] if lines else "(no output)"


def adopt(record: Path, runs_dir: Path, platform: str, extra: dict[str, Path], info: dict[str, Any],
          log: Callable[[str], None] = print) -> Path:
    """Bring a record the sandbox wrote into runs_dir as every pull does (transfer.adopt_record: no links,
    no special files, bounded, validated, one rename), with `info` in its platform_info."""
    from adapters.remote import transfer

    where = f"preflight record {record.name}"
    transfer.check_tree(record, where)  # before copying: the sandbox's user wrote it
    with transfer.staging(runs_dir, f"{platform}-preflight") as stage:
        copy = stage / record.name
        shutil.copytree(record, copy, symlinks=True)
        environment = read_run_json(copy).get("environment")
        if not isinstance(environment, dict):
            raise transfer.Refused(f"{where}: run.json has no environment")
        platform_info = {**(environment.get("platform_info") or {}), "preflight": True, **info}
        update_run_json(copy, {"environment": {**environment, "platform_info": platform_info}})
        dest, _ = transfer.adopt_record(copy, runs_dir, platform=platform, extras=extra, log=log,
                                        links={"preflight": True, "preflighted_at": info["preflighted_at"]})
    return dest


def find_local(runs_dir: Path, spec_hash: str) -> Path | None:
    """The newest completed local record of the spec in runs_dir (a preflight record never counts)."""
    from results.loaders import discover

    if not runs_dir.is_dir():
        return None
    runs, _ = discover([runs_dir])
    found = [r for r in runs if r.run.get("platform") == "local" and r.run.get("spec_hash") == spec_hash
             and r.run.get("status") == "completed"
             and not (r.run.get("environment") or {}).get("platform_info", {}).get("preflight")]
    found.sort(key=lambda r: str(r.run.get("started_at") or ""))
    return found[-1].source if found else None


def start_local(spec_file: Path, runs_dir: Path, log_file: Path) -> subprocess.Popen:
    """A local run of the spec, with this harness's own environment, in the background."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_") and k != "CODALAB"}
    log = open(log_file, "w")
    return subprocess.Popen([sys.executable, str(HARNESS_ROOT / "run.py"), "run", "--platform", "local",
                             "--spec", str(spec_file.resolve()), "--runs-dir", str(runs_dir.resolve())],
                            cwd=HARNESS_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def run_preflight(platform: str, bundle: Path, *, overrides: dict[str, str], runs_dir: Path,
                  offline: bool = False, sandbox_parent: str | None = None, keep: bool = False,
                  log: Callable[[str], None] = print) -> Preflight:
    """Build (or reuse) the image environment, run the bundle in the sandbox, adopt its record and
    make sure a local record of the same spec exists. Raises PreflightFailed if the bundle crashed."""
    if platform not in ("kaggle", "codalab"):
        raise UsageError(f"preflight knows kaggle and codalab, not {platform!r}")
    if platform == "kaggle":  # a bad bundle fails before anything is built
        kaggle_code(bundle)
    else:
        codalab_manifest(bundle)
    desc = images.load_image(platform, overrides)
    env = images.build_env(desc, log=log)
    if env.record["python"]["note"]:
        log(f"[preflight] {env.record['python']['note']}")
    root = sandbox.make_root(sandbox_parent, prefix=f"harness-preflight-{platform}-")
    started, unadopted = [], None
    try:
        if platform == "kaggle":
            plan, facts = kaggle_plan(bundle, desc, env, root)
            spec_hash, spec_yaml = kaggle_spec(facts["code"], bundle)
            spec_file = root / "spec.yaml"
            spec_file.write_bytes(spec_yaml)
        elif platform == "codalab":
            plan, facts = codalab_plan(bundle, desc, env, root)
            spec_file = facts["spec_file"]
            spec_hash = load_spec(spec_file).hash
        else:
            raise UsageError(f"preflight knows kaggle and codalab, not {platform!r}")
        if load_spec(spec_file).hash != spec_hash:
            raise UsageError(f"{bundle}: the bundle's spec does not hash to {spec_hash[:8]}; rebuild the bundle")
        iso = sandbox.isolation(network_off=offline or not facts["network"], log=log)
        for note in iso.notes:
            log(f"[preflight] {note}")
        net = " (the platform's run has network; --offline cuts it)" if facts["network"] and not offline else ""
        log(f"[preflight] running the {platform} bundle {bundle} in {env.folder.name} "
            f"(Python {env.record['python']['version']}), {iso.describe()}{net}")

        local = find_local(runs_dir, spec_hash)
        local_proc = None
        if local is None:  # run it beside the bundle: both are needed, and neither waits for the other
            log(f"[preflight] no local record of spec {spec_hash[:8]} in {runs_dir}: running one "
                f"(log: {root / 'local.log'})")
            local_proc = start_local(spec_file, runs_dir, root / "local.log")
            started.append(local_proc)
        rc = sandbox.run(plan, iso, echo=lambda line: log(f"  | {line}"))
        if platform == "kaggle":
            output = plan.log_file.read_text(errors="replace")
            record_root, extra = plan.cwd / "runs", {"kaggle-kernel.log": plan.log_file}
        else:
            output = plan.log_file.read_text(errors="replace")  # the sandbox's own messages
            if (plan.cwd / "stderr").is_file():
                output += (plan.cwd / "stderr").read_text(errors="replace")
            record_root = plan.cwd / "runs"
            extra = {"codalab/stdout": plan.cwd / "stdout", "codalab/stderr": plan.cwd / "stderr"}
        records = sorted(p.parent for p in record_root.glob(f"*/{RUN_JSON}")
                         if not p.parent.name.startswith(".") and not p.parent.is_symlink()) \
            if record_root.is_dir() and not record_root.is_symlink() else []
        if rc == sandbox.SETUP_FAILED and "[sandbox] setup failed" in output:
            raise HarnessError(f"the sandbox could not be set up: {last_error_line(output)}")
        info = {"preflight_image": {"image": desc.image, "hash": desc.hash, "python": env.record["python"],
                                    "overrides": desc.overrides, "env": str(env.folder)},
                "preflight_isolation": iso.to_dict(), "preflighted_at": utc_now()}
        if records:  # until it is in runs_dir, a finished record keeps the sandbox from being removed
            unadopted = records[-1]
        if rc != 0 or not records:
            failed = ""
            if records:  # a run that failed still publishes its record (status failed): keep it with the rest
                with contextlib.suppress(HarnessError):
                    failed = f"; its record: {adopt(records[-1], runs_dir, platform, extra, info, log=log)}"
                    unadopted = None
            raise PreflightFailed(f"the {platform} bundle failed in the {desc.image} environment "
                                  f"(exit status {rc}): {last_error_line(output)}{failed}")
        record = adopt(records[-1], runs_dir, platform, extra, info, log=log)
        unadopted = None
        if local_proc is not None:
            local_rc = local_proc.wait()
            local = find_local(runs_dir, spec_hash)
            if local_rc != 0:
                tail = (root / "local.log").read_text(errors="replace")
                raise HarnessError(f"the local run of spec {spec_hash[:8]} failed (exit status {local_rc}): "
                                   f"{last_error_line(tail)}")
            if local is None:
                raise HarnessError(f"the local run of spec {spec_hash[:8]} left no completed record in {runs_dir}")
        return Preflight(platform, record, local, env, iso, local_proc is not None, root if keep else None)
    finally:
        for proc in started:  # never leave a training process behind
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if unadopted is not None:
            log(f"[preflight] the bundle's record did not reach {runs_dir}; it stays in {unadopted}")
        if keep or unadopted is not None:
            log(f"[preflight] sandbox kept: {root}")
        else:  # the command's user owns files in it; the namespaces and their mounts are gone
            subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=False)


# --- The verdict -------------------------------------------------------------------------------

LIBRARY_ORDER = ("packages.tensorflow", "packages.keras", "packages.numpy", "packages.h5py")


def _library_rank(d) -> tuple[int, str]:
    return (LIBRARY_ORDER.index(d.what) if d.what in LIBRARY_ORDER else len(LIBRARY_ORDER)
            + d.what.startswith("python"), d.what)


def _library_change(d) -> str:
    """`tensorflow 2.20.0 → 2.21.0`: the platform's version first, then the local one."""
    return f"{d.what.removeprefix('packages.')} {d.a} → {d.b}"


def verdict(result: Preflight, tolerance_pp: float | None = None):
    """(the one verdict line, the comparison of the two records)."""
    from results.compare import compare
    from results.loaders import discover

    runs, skipped = discover([result.record, result.local])
    cmp = compare(runs, skipped, tolerance_pp, [result.record, result.local])
    name = f"{result.platform} image"
    views = [(g, v) for g in cmp.groups for v in g.compared]
    pre = next(((g, i) for g in cmp.groups for i, v in enumerate(g.compared)
                if Path(v.loaded.source).resolve() == result.record.resolve()), None)
    loc = next(((g, i) for g in cmp.groups for i, v in enumerate(g.compared)
                if Path(v.loaded.source).resolve() == Path(result.local).resolve()), None)
    if pre is None or loc is None or pre[0] is not loc[0]:
        return f"{name}: not comparable with the local record ({len(views)} comparable runs)", cmp
    group = pre[0]
    pair = group.pair(pre[1], loc[1])
    a, b = pair.a.fields, pair.b.fields
    libs = [_library_change(d) for d in sorted(pair.differences, key=_library_rank)
            if d.what.startswith(("packages.", "python"))]
    wa, wb = str(a.get("weights_sha256") or "?")[:8], str(b.get("weights_sha256") or "?")[:8]
    if pair.verdict == "identical":
        line = f"{name}: identical to local (weights {wa} = {wb})"
        line += f" although {', '.join(libs)}" if libs else " with the same libraries"
        return line, cmp
    share = f"{pair.agreement.share:.2%} of test predictions agree" if pair.agreement.share is not None else ""
    numerics = [_library_change(d) if d.what.startswith(("packages.", "python")) else d.describe()
                for d in sorted(pair.differences, key=_library_rank) if d.what.startswith(NUMERIC_FACETS)]
    what = f"; the numerics that differ: {', '.join(numerics)}" if numerics else "; no recorded numerics differ"
    acc = f"accuracy {a['test_accuracy']:.4f} vs local {b['test_accuracy']:.4f} ({-pair.delta_pp:+.2f} pp)"
    if pair.verdict == "same predictions":
        line = f"{name}: same predictions as local, weights differ ({wa} ≠ {wb}){what}"
    elif pair.verdict == "within noise":
        line = (f"{name}: within noise of local ({acc}, band {group.band.describe()}"
                f"{', ' + share if share else ''}): expect a slightly different result on {result.platform}{what}")
    else:
        line = (f"{name}: divergent: expect a different result on {result.platform} ({acc}"
                f"{', ' + share if share else ''}){what}")
    return line, cmp
