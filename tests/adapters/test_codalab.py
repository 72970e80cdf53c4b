"""CodaLab: the bundle, the run inside a worker that behaves like CodaLab's, and the `cl` commands.

The worker is `run.py preflight codalab` (adapters/remote/preflight.py), laid out as CodaLab's
worker runs a bundle (codalab/worker/worker_run_state.py, docker_utils.py): the run bundle in a
folder named after its uuid, each dependency read-only in `<uuid>_dependencies/<key>` and reached
by a symlink `<key>`, HOME the bundle folder, CODALAB=true, the command as
`/bin/bash -c '( COMMAND; ) >stdout 2>stderr'`, run as a non-root user without network, by the
image-like interpreter (`make images`: Python 3.11, tensorflow-cpu 2.21.0, no PyYAML). `pull`
drives the real `cl` 1.7.5 (.venv-codalab) against a loopback stand-in of the server's REST API
(tests/adapters/codalab_server.py); the real parser and codalab-run.sh end to end are in
tests/adapters/test_codalab_cli.py.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

import run as harness
from adapters import codalab
from adapters.remote import codalab as remote_codalab
from adapters.remote import transfer
from cli import remote
from core.data import FULL_DIGEST, SHAPES, Mnist, read_npz, verify
from core.environment import HARNESS_STAMP, git_state
from core.errors import UsageError
from core.spec import load_spec
from results.loaders import discover

sys.path.insert(0, str(Path(__file__).resolve().parent))
from codalab_server import NO_PYTHON39, CodaLabStandIn, build_cl_venv, cl_home  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--epochs", "1", "--train-limit", "300", "--test-limit", "200"]
CL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.\-]*$")  # CodaLab's NAME_REGEX (`cl help upload`)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> types.SimpleNamespace:
    out = tmp_path_factory.mktemp("bundle") / "codalab"
    assert remote.main("bundle", ["codalab", "--out", str(out), *TINY]) == 0
    return types.SimpleNamespace(dir=out, manifest=json.loads((out / remote_codalab.MANIFEST).read_text()))


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every path under `folder` with its type, mode, size, mtime and content digest."""
    out = {}
    for p in [folder, *sorted(folder.rglob("*"))]:
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
        out[p.relative_to(folder).as_posix()] = (stat.S_IFMT(st.st_mode), st.st_mode, st.st_size, st.st_mtime_ns,
                                                 digest)
    return out


def python_bin(folder: Path) -> Path:
    """A folder with a `python` that runs this interpreter (the image's `python`), for the worker's PATH."""
    folder.mkdir(parents=True, exist_ok=True)
    # exec by path, not a symlink: a venv's python finds its site-packages from the path it was started as
    (folder / "python").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    (folder / "python").chmod(0o755)
    return folder


def worker_env(work: Path, tmp: Path) -> dict[str, str]:
    # What CodaLab's worker sets (HOME, CODALAB) and nothing from this machine: no host MNIST cache.
    return {"PATH": f"{python_bin(tmp / 'image-bin')}:/usr/bin:/bin", "HOME": str(work), "CODALAB": "true",
            "MNIST_HARNESS_CACHE": str(tmp / "no-cache"), "XDG_CACHE_HOME": str(tmp / "no-xdg")}


@pytest.fixture(scope="module")
def worker(bundle, image_envs, tmp_path_factory) -> types.SimpleNamespace:
    """The bundle run by `run.py preflight codalab` (which also runs the same spec locally, in parallel)."""
    tmp = tmp_path_factory.mktemp("worker")
    deps = {d["key"]: bundle.dir / bundle.manifest["bundles"][d["key"]]["path"]
            for d in bundle.manifest["dependencies"]}
    before = {key: snapshot(dest) for key, dest in deps.items()}
    runs = tmp / "runs"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_") and k != "CODALAB"}
    proc = subprocess.run([sys.executable, "run.py", "preflight", "codalab", str(bundle.dir), "--offline",
                           "--keep-sandbox", "--runs-dir", str(runs)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1800)
    after = {key: snapshot(dest) for key, dest in deps.items()}
    kept = re.search(r"^\[preflight\] sandbox kept: (.+)$", proc.stderr, re.M)
    sandbox_root = Path(kept.group(1)) if kept else tmp / "no-sandbox"
    work = next(sandbox_root.glob("0x*[0-9a-f]"), sandbox_root / "0x-missing")
    records = {json.loads((p / "run.json").read_text())["platform"]: p for p in runs.iterdir()} if runs.is_dir() else {}
    yield types.SimpleNamespace(work=work, tmp=tmp, rc=proc.returncode, out=proc.stdout, err=proc.stderr, deps=deps,
                                before=before, after=after, records=records, env=image_envs["codalab"])
    subprocess.run(["rm", "-rf", str(sandbox_root)], check=False)


def stderr_tail(work: Path) -> str:
    stderr = work / "stderr"
    return "\n".join(stderr.read_text(errors="replace").splitlines()[-15:]) if stderr.is_file() else f"no {stderr}"


# --- The bundle ------------------------------------------------------------------------

def test_code_bundle_holds_the_harness_the_spec_and_vendored_pyyaml_only(bundle):
    code = bundle.dir / "code"
    top = sorted(p.name for p in code.iterdir())
    assert top == sorted([*transfer.HARNESS_PARTS, remote_codalab.SPEC_FILE, codalab.BUNDLE_INFO, HARNESS_STAMP, "vendor"])
    files = [p.relative_to(code).as_posix() for p in code.rglob("*") if p.is_file()]
    assert "core/specs/canonical.yaml" in files and "adapters/codalab.py" in files
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc") or "/." in f or f.startswith(".")]
    assert sorted(p.name for p in (code / "vendor" / "yaml").iterdir())[:2] == ["__init__.py", "composer.py"]
    assert not list((code / "vendor").rglob("*.so")), "a compiled extension would tie the bundle to one Python"
    count, digest = transfer.tree_sha256(code)
    assert bundle.manifest["bundles"]["code"]["files"] == count
    assert bundle.manifest["bundles"]["code"]["sha256"] == digest


def test_data_bundle_is_verified_mnist_in_one_npz_with_its_digest(bundle):
    files = list((bundle.dir / "data").iterdir())
    assert [f.name for f in files] == ["mnist.npz"]
    data = bundle.manifest["bundles"]["data"]
    assert hashlib.sha256(files[0].read_bytes()).hexdigest() == data["sha256"]
    assert data["data_digest"] == FULL_DIGEST
    mnist = verify(read_npz(files[0]), "test")  # raises unless all four arrays are the official ones
    assert mnist.x_train.shape == (60000, 28, 28)
    assert bundle.manifest["bundles"]["data"]["name"] == f"mnist-data-{data['sha256'][:12]}"


def test_data_bundle_bytes_do_not_depend_on_when_it_was_written(bundle, tmp_path):
    with zipfile.ZipFile(bundle.dir / "data" / "mnist.npz") as z:
        assert {m.date_time for m in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert sorted(m.filename for m in z.infolist()) == ["x_test.npy", "x_train.npy", "y_test.npy", "y_train.npy"]
    small = Mnist(**{k: np.arange(12, dtype=np.uint8).reshape(-1, 2) for k in SHAPES}, source="test")
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    remote_codalab.write_mnist_npz(small, first)
    remote_codalab.write_mnist_npz(small, second)
    assert first.read_bytes() == second.read_bytes()
    assert np.array_equal(read_npz(first)["x_train"], small.x_train)


def test_bundled_spec_is_the_spec_asked_for_with_its_hash(bundle):
    local = load_spec("canonical", {"epochs": 1, "data.train_limit": 300, "data.test_limit": 200})
    bundled = load_spec(bundle.dir / "code" / "spec.yaml")
    assert bundled.hash == local.hash == bundle.manifest["spec"]["hash"]
    assert bundle.manifest["spec"]["overrides"] == {"epochs": 1, "data.train_limit": 300, "data.test_limit": 200}


def test_manifest_names_image_resources_and_that_the_run_has_network(bundle):
    m = bundle.manifest
    assert m["resources"] == {"docker_image": "tensorflow/tensorflow:2.21.0", "memory": "4g", "cpus": 2,
                              "time": "2h", "gpus": 0, "network": True, "network_note": codalab.NETWORK_NOTE}
    assert "no flag to turn it off" in m["resources"]["network_note"]
    assert m["image"]["tensorflow_pin"] == remote_codalab.pinned_versions()["tensorflow"]
    assert m["dependencies"] == [{"key": "code", "bundle": m["bundles"]["code"]["name"]},
                                 {"key": "data", "bundle": m["bundles"]["data"]["name"]}]
    assert " -B " in m["command"] and "PYTHONPATH=code/vendor" in m["command"]
    assert "--platform codalab" in m["command"] and "--runs-dir runs" in m["command"]


def test_script_cl_lines_are_the_manifest_commands_in_cli_syntax(bundle):
    script = (bundle.dir / remote_codalab.SCRIPT).read_text()
    subprocess.run(["bash", "-n", str(bundle.dir / remote_codalab.SCRIPT)], check=True)  # valid bash
    # `RUN_UUID=$(cl run ...)`: the uuid the run's wait and download use
    captured = [line for line in script.splitlines() if line.startswith("RUN_UUID=$(cl ")]
    assert len(captured) == 1 and captured[0].endswith(")")
    lines = [shlex.split(line.replace('"$RUN_UUID"', remote_codalab.RUN_UUID.replace("$", "\\$")))
             for line in script.splitlines() if line.startswith("cl ")]
    lines.insert(3, shlex.split(captured[0][len("RUN_UUID=$("):-1]))
    m = bundle.manifest
    assert lines == m["cl"]
    assert [argv[1] for argv in lines] == ["work", "upload", "upload", "run", "wait", "download"]
    work, up_code, up_data, run, wait, download = lines
    assert work == ["cl", "work", "https://worksheets.codalab.org::"]  # <alias>::  = home worksheet
    assert up_code[2:5] == ["code", "-n", m["bundles"]["code"]["name"]]
    assert up_data[2:5] == ["data", "-n", m["bundles"]["data"]["name"]]
    # cl run [<key>]:<bundle> ... '<command>' [options]: targets first, then one command argument.
    targets = run[2:4]
    assert targets == [f"{d['key']}:{d['bundle']}" for d in m["dependencies"]]
    for target in targets:
        key, bundle_name = target.split(":")
        assert CL_NAME.match(key) and CL_NAME.match(bundle_name)
    assert run[4] == m["command"] and "%" not in run[4]  # `cl run` expands %...% in commands
    flags = run[5:]
    assert flags.pop(flags.index("--request-network")) == "--request-network"  # what cl run does anyway, said
    options = dict(zip(flags[::2], flags[1::2]))
    assert options == {"--request-docker-image": "tensorflow/tensorflow:2.21.0", "--request-memory": "4g",
                       "--request-cpus": "2", "--request-time": "2h", "-n": m["bundles"]["run"]["name"],
                       "-d": options["-d"]}
    assert all(CL_NAME.match(b["name"]) for b in m["bundles"].values())
    assert wait == ["cl", "wait", remote_codalab.RUN_UUID]
    assert download == ["cl", "download", remote_codalab.RUN_UUID, "-o", m["bundles"]["run"]["download"]]
    assert m["bundles"]["run"]["download"] == f"downloads/{m['bundles']['run']['name']}"
    assert 'mkdir -p "$(dirname "$download")"' in script and "already exists" in script


def test_gpus_ask_for_the_gpu_image_and_request_gpus():
    template = remote_codalab.manifest_template()
    assert remote_codalab.docker_image(None, 1, "2.21.0", template) == "tensorflow/tensorflow:2.21.0-gpu"
    assert remote_codalab.docker_image("me/img:1", 1, "2.21.0", template) == "me/img:1"
    plan = remote_codalab.CodaLabRun("c", "d", "r", "true", "img", "8g", 4, "1d", 2, "main", "ws", "x")
    run = plan.cl_commands()["run"]
    assert run[run.index("--request-gpus") + 1] == "2"
    assert plan.cl_commands()["work"] == ["cl", "work", "main::ws"]


def _checkout(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    for part in transfer.HARNESS_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, root / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            root.mkdir(exist_ok=True)
            shutil.copy2(src, root / part)
    return root


def test_code_bundle_leaves_out_caches_runs_venv_and_hidden_files(tmp_path, monkeypatch):
    root = _checkout(tmp_path)
    secret = "sk-test-5ecret-never-in-a-bundle"
    planted = {
        "core/__pycache__/spec.cpython-311.pyc": b"\0",
        "cli/.env": f"COMET_API_KEY={secret}\n".encode(),
        "core/specs/.scratch.yaml": b"a: 1\n",
        "core/mnist.npz": b"PK",
        "adapters/id_rsa": secret.encode(),
        "runs/20260101T000000Z-local-0-0/run.json": b"{}",
        ".venv/bin/python": b"",
        ".git/config": b"",
    }
    for rel, content in planted.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
    monkeypatch.setenv("CODALAB_TEST_API_KEY", secret)
    dest = tmp_path / "code"
    dest.mkdir()
    remote_codalab.write_code_bundle(dest, load_spec("canonical"), root=root)
    files = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    assert not files & set(planted)
    assert {"core/spec.py", "core/specs/canonical.yaml", "run.py", "spec.yaml", "vendor/yaml/__init__.py"} <= files
    assert not [f for f in dest.rglob("*") if f.is_file() and secret.encode() in f.read_bytes()]


@pytest.mark.parametrize("planted, named", [
    ("adapters/kaggle.json", "named like a credential"),          # by name
    ("results/api_token.txt", "named like a credential"),         # by name: a data file named like a secret
    ("core/settings_note.py", r"contains the value of \$CODALAB_TEST_API_KEY"),  # by value, in a module
])
def test_code_bundle_with_a_secret_is_refused_as_every_bundle_is(tmp_path, monkeypatch, planted, named):
    root = _checkout(tmp_path)
    secret = "sk-test-5ecret-never-in-a-bundle"
    (root / planted).write_text(f"KEY = {secret!r}\n")
    monkeypatch.setenv("CODALAB_TEST_API_KEY", secret)
    dest = tmp_path / "code"
    dest.mkdir()
    with pytest.raises(UsageError, match=named) as refused:
        remote_codalab.write_code_bundle(dest, load_spec("canonical"), root=root)
    assert planted in str(refused.value)
    assert not any(dest.iterdir()), "nothing is written before the scan passes"


def test_bundle_refuses_bad_resources_and_a_used_out_folder(tmp_path, capsys):
    cases = [(["--memory", "4 gigs"], "--memory"), (["--time", "soon"], "--time"), (["--cpus", "0"], "--cpus"),
             (["--memory", "1.5"], "--memory"), (["--memory", "0g"], "--memory"), (["--time", "infs"], "--time"),
             (["--instance", "https://x.org/$(id)"], "--instance"),
             (["--worksheet", "my worksheet"], "--worksheet"), (["--instance", "ftp://x::y"], "--instance")]
    for extra, flag in cases:
        out = tmp_path / "b"
        assert harness.main(["bundle", "codalab", "--out", str(out), *extra]) == 2
        assert flag in capsys.readouterr().err
        assert not out.exists()
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    assert harness.main(["bundle", "codalab", "--out", str(used)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in used.iterdir()] == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


# --- Inside the worker --------------------------------------------------------------------

def worker_failed(worker) -> str:
    return f"{stderr_tail(worker.work)}\n{worker.err[-2000:]}"


def test_worker_run_completes_a_record_in_the_working_directory(worker):
    assert worker.rc == 0, worker_failed(worker)
    records = list((worker.work / "runs").iterdir())
    assert len(records) == 1 and not records[0].name.startswith(".")
    run = json.loads((records[0] / "run.json").read_text())
    assert (run["status"], run["platform"]) == ("completed", "codalab")
    assert run["data"] == {"source": "CodaLab data bundle data/mnist.npz", "n_train": 300, "n_test": 200,
                           "verified_by": "sha256"}
    info = run["environment"]["platform_info"]
    assert info["in_worker"] is True and info["run_bundle_uuid"] == worker.work.name
    assert re.match(r"^0x[0-9a-f]{32}$", worker.work.name)
    assert info["bundle"]["bundles"]["code"].startswith("mnist-harness-code-")
    # No git in the worker: the commit comes from the stamp the bundle was built with.
    assert run["environment"]["harness"] == {**git_state(), "from": HARNESS_STAMP}
    assert (records[0] / "model.h5").is_file() and (records[0] / "predictions.npy").is_file()
    # The image's interpreter: TensorFlow as the tensorflow-cpu distribution, read as 2.21.0.
    installed = worker.env.packages()
    assert installed["tensorflow-cpu"] == "2.21.0" and "tensorflow" not in installed and "pyyaml" not in installed
    assert run["environment"]["packages"]["tensorflow"] == "2.21.0"
    assert run["environment"]["packages"]["keras"] == installed["keras"]
    assert run["environment"]["python"].startswith("3.11.")


def test_worker_runs_as_a_non_root_user_with_symlinked_read_only_dependencies(worker):
    assert worker.rc == 0, worker_failed(worker)
    for key in worker.deps:  # ./<key> -> /<uuid>_dependencies/<key>, as the worker links them
        link = worker.work / key
        mount = worker.work.parent / f"{worker.work.name}_dependencies" / key
        assert link.is_symlink() and Path(os.readlink(link)) == mount
    adopted = json.loads((worker.records["codalab"] / "run.json").read_text())["environment"]["platform_info"]
    iso = adopted["preflight_isolation"]
    if os.geteuid() == 0:  # as root a test proves nothing: root writes through read-only files
        assert iso["uid"] != 0 and iso["network_off"] is True and iso["inputs"] == "read-only bind mounts"
        assert (worker.work / "runs").stat().st_uid == iso["uid"] != 0
    else:
        assert iso["uid"] == os.geteuid()
    assert adopted["preflight"] is True and (worker.records["codalab"] / "codalab" / "stderr").is_file()


def test_worker_log_is_the_runs_not_tensorflows_native_log(worker):
    """The worker's stderr is what a CodaLab user reads: run.py quiets it there as on a laptop (issue #20)."""
    assert worker.rc == 0, stderr_tail(worker.work)
    stderr, stdout = (worker.work / "stderr").read_text(), (worker.work / "stdout").read_text()
    for noise in ("absl::InitializeLog()", "oneDNN custom operations", "use_unbounded_threadpool",
                  "saving your model as an HDF5 file"):
        assert noise not in stderr, noise
    assert "[run] completed: test accuracy " in stdout and "run record: runs/" in stdout
    [record] = (worker.work / "runs").iterdir()
    assert json.loads((record / "run.json").read_text())["environment"]["logging"]["level_set_by"] == "harness"


def test_worker_writes_nothing_into_the_dependencies(worker):
    assert worker.rc == 0, worker_failed(worker)
    for key in worker.deps:
        assert worker.after[key] == worker.before[key], f"{key}/ changed during the run"
    assert not list(worker.deps["code"].rglob("__pycache__"))


def test_worker_imports_the_vendored_pyyaml_without_network_or_install(bundle, worker):
    env = {"PATH": f"{worker.env.folder / 'bin'}:/usr/bin:/bin", "HOME": str(bundle.dir), "CODALAB": "true"}
    bare = subprocess.run(["/bin/bash", "-c", "python -B -c 'import yaml'"], cwd=bundle.dir, env=env,
                          capture_output=True, text=True)
    assert "No module named 'yaml'" in bare.stderr  # the image has none
    probe = subprocess.run(["/bin/bash", "-c", "PYTHONPATH=code/vendor python -B -c "
                            "'import yaml; print(yaml.__file__, yaml.__with_libyaml__)'"],
                           cwd=bundle.dir, env=env, capture_output=True, text=True, check=True)
    path, with_libyaml = probe.stdout.split()
    assert Path(path).resolve() == (bundle.dir / "code" / "vendor" / "yaml" / "__init__.py").resolve()
    assert with_libyaml == "False"


def test_worker_record_loads_beside_a_local_run_of_the_same_spec(worker):
    assert worker.rc == 0, worker_failed(worker)
    assert "local" in worker.records, worker.err[-2000:]
    runs, skipped = discover([worker.work, worker.records["local"]])
    assert not skipped
    by_platform = {r.run["platform"]: r for r in runs}
    assert set(by_platform) == {"codalab", "local"}
    cl, local = by_platform["codalab"], by_platform["local"]
    assert cl.loader == "codalab"
    assert cl.run["spec_hash"] == local.run["spec_hash"]
    assert cl.run["data_digest"] == local.run["data_digest"]
    # Same machine, same TensorFlow, op determinism on: the worker must not change a single prediction.
    assert cl.run["predictions_sha256"] == local.run["predictions_sha256"]
    assert np.array_equal(cl.predictions(), local.predictions())
    assert worker.out.splitlines()[0].startswith("codalab image: identical to local")


def test_worker_without_the_data_dependency_fails_with_one_readable_line(bundle, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(bundle.dir / "code", work / "code")
    proc = subprocess.run(["/bin/bash", "-c", bundle.manifest["command"]], cwd=work,
                          env=worker_env(work, tmp_path), capture_output=True, text=True)
    assert proc.returncode == 3
    assert "data/mnist.npz: not found" in proc.stderr and "Traceback" not in proc.stderr
    assert not (work / "runs").exists() or not any((work / "runs").iterdir())


# --- Push and pull with the real `cl` against a loopback stand-in ---------------------------------

@pytest.fixture(scope="module")
def real_cl(tmp_path_factory) -> types.SimpleNamespace:
    venv = build_cl_venv()
    if venv is None:
        pytest.skip(NO_PYTHON39)
    with CodaLabStandIn() as server:
        yield types.SimpleNamespace(server=server, env=cl_home(venv, server, tmp_path_factory.mktemp("cl") / "home"))


def use_real_cl(monkeypatch, real_cl) -> None:
    """This process finds the real `cl` and its CodaLab home, as a user's shell would."""
    for name in [k for k in os.environ if "proxy" in k.lower()]:
        monkeypatch.delenv(name)
    for name in ("PATH", "CODALAB_HOME", "CODALAB_SESSION", "PYTHONWARNINGS", "NO_PROXY"):
        monkeypatch.setenv(name, real_cl.env[name])


def test_push_without_cl_says_how_to_install_it(bundle, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(python_bin(tmp_path / "bin")))  # no `cl` anywhere
    assert harness.main(["push", "codalab", str(bundle.dir)]) == 1
    err = capsys.readouterr().err
    assert "`cl` is not on PATH" in err and "pipx install --python python3.9 codalab" in err
    assert harness.main(["push", "codalab", str(tmp_path)]) == 2  # not a bundle folder
    assert "not a CodaLab bundle" in capsys.readouterr().err


def test_pull_puts_the_run_record_into_runs(worker, real_cl, tmp_path, monkeypatch, capsys):
    assert worker.rc == 0, worker_failed(worker)
    # The run bundle as the worker uploads it: its working directory without the mounted dependencies.
    contents = tmp_path / "run-bundle"
    shutil.copytree(worker.work, contents, ignore=lambda d, names: [n for n in names if Path(d) == worker.work
                                                                    and n in ("code", "data")])
    server = real_cl.server
    uuid = server.add_run("mnist-run-x", contents)
    use_real_cl(monkeypatch, real_cl)
    spec = remote_codalab.pull_spec(server.address, uuid)  # the form push prints
    runs_dir = tmp_path / "runs"
    assert remote.main("pull", ["codalab", spec, "--runs-dir", str(runs_dir)]) == 0
    records = [p for p in runs_dir.iterdir()]
    assert len(records) == 1, "the download folder must not be left behind"
    run = json.loads((records[0] / "run.json").read_text())
    assert run["links"]["codalab"]["bundle"] == spec
    assert run["links"]["codalab"]["run_bundle_uuid"] == worker.work.name
    assert (records[0] / "codalab" / "stderr").read_text() == (worker.work / "stderr").read_text()
    runs, skipped = discover([runs_dir])
    assert [(r.run["platform"], r.run["status"], r.loader) for r in runs] == [("codalab", "completed", "record")]
    assert not skipped
    assert remote.main("pull", ["codalab", spec, "--runs-dir", str(runs_dir)]) == 0  # again: no copy
    assert "already in runs" in capsys.readouterr().out
    assert len(list(runs_dir.iterdir())) == 1


def test_worker_record_says_the_run_had_network(worker):
    assert worker.rc == 0, stderr_tail(worker.work)
    [record] = (worker.work / "runs").iterdir()
    info = json.loads((record / "run.json").read_text())["environment"]["platform_info"]
    assert info["request_network"] is True and info["network"] == codalab.NETWORK_NOTE
    assert info["bundle"]["request_network"] is True


def test_compare_skips_a_run_bundle_without_a_record_with_its_stderr(tmp_path):
    failed = tmp_path / "run-bundle"
    (failed / "runs" / ".partial-20260101T000000Z-codalab-0-0").mkdir(parents=True)
    (failed / "stdout").write_text("")
    (failed / "stderr").write_text("Epoch 1/12\n")
    runs, skipped = discover([failed])
    assert runs == [] and len(skipped) == 1
    assert "unfinished .partial- record" in skipped[0].reason
