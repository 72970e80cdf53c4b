"""The Kaggle adapter: the bundle against the official client's checks, the bundle's code
file run in a simulated Kaggle file system, and push / status / pull through the real
`kaggle` 2.2.4 client against a stub of the Kaggle API on 127.0.0.1.

Why a proxy: kaggle 2.2.4's `KaggleApi` passes kagglesdk only PROD or, for
KAGGLE_API_ENVIRONMENT=LOCALHOST, `http://localhost` on port 80 (the SDK's TEST variant,
localhost:7777, is read only by a bare `KaggleClient`, which the CLI never builds). So
the client runs with LOCALHOST and HTTP_PROXY pointing at the stub's free port: every
byte still goes through the real client and requests, and only to 127.0.0.1.
"""
from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from adapters import kaggle as adapter
from adapters.remote import kaggle as remote_kaggle
from cli import remote
from core import environment
from core.data import DataError, IDX_NAMES, load_mnist
from core.errors import UsageError
from core.spec import load_spec
from results.loaders import discover

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
TINY = ["--epochs", "1", "--train-limit", "300", "--test-limit", "200"]
KERNEL = "tester/mnist-harness-test"
KEY = "kaggle-key-0123456789abcdef"  # a test credential: it must never show up in a bundle, record or log
TOKEN = "kaggle-token-fedcba9876543210"
PROXY_TOKEN = "data-proxy-token-5555aaaa"
HANG = 1800  # seconds before a child process counts as hung (a guard on a busy shared machine, not a timing check)


# --- Fixtures: MNIST as Kaggle's dataset serves it --------------------------------------

def idx_bytes(a: np.ndarray) -> bytes:
    """IDX: two zero bytes, type 0x08 (ubyte), ndim, big-endian dims, data."""
    header = bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    return header + np.ascontiguousarray(a, dtype=np.uint8).tobytes()


@pytest.fixture(scope="module")
def idx_store(tmp_path_factory) -> Path:
    """The real MNIST as IDX files, written once: dotted names (as hojjatk/mnist-dataset), LeCun's, one .gz."""
    mnist = load_mnist("cache")
    store = tmp_path_factory.mktemp("idx")
    (store / IDX_NAMES["x_train"][1]).write_bytes(idx_bytes(mnist.x_train))  # train-images.idx3-ubyte
    (store / IDX_NAMES["y_train"][1]).write_bytes(idx_bytes(mnist.y_train))  # train-labels.idx1-ubyte
    (store / IDX_NAMES["x_test"][0]).write_bytes(idx_bytes(mnist.x_test))  # t10k-images-idx3-ubyte
    (store / f"{IDX_NAMES['y_test'][0]}.gz").write_bytes(gzip.compress(idx_bytes(mnist.y_test)))
    return store


def attach(idx_store: Path, folder: Path, nested: str = "") -> Path:
    """Mount the IDX files at `folder` (hard links: no copies of 55 MB), optionally in sub-folders."""
    target = folder / nested
    target.mkdir(parents=True, exist_ok=True)
    for f in idx_store.iterdir():
        os.link(f, target / f.name)
    return folder


def build(tmp_path: Path, *extra: str, name: str = "bundle") -> remote_kaggle.KaggleBundle:
    out = tmp_path / name
    assert remote.bundle_kaggle(["--out", str(out), "--id", KERNEL, *TINY, *extra]) == 0
    return remote_kaggle.KaggleBundle(out, json.loads((out / adapter.METADATA_FILE).read_text()),
                                load_spec("canonical", {"epochs": 1, "data.train_limit": 300,
                                                        "data.test_limit": 200}).hash)


def embedded_zip(script: str) -> zipfile.ZipFile:
    encoded = script.split('HARNESS_ZIP = """', 1)[1].split('"""', 1)[0]
    return zipfile.ZipFile(io.BytesIO(base64.b64decode("".join(encoded.split()))))


@pytest.fixture()
def clean_env(monkeypatch, tmp_path):
    """No Kaggle credentials or settings of this machine leak into a test."""
    for var in list(os.environ):
        if var.startswith("KAGGLE_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle-config"))


# --- The bundle --------------------------------------------------------------------------

def client_accepts(folder: Path) -> None:
    """Run the client's own `kernels_push` checks, stopping where it would open a connection."""
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        from kaggle.api.kaggle_api_extended import KaggleApi

        api = KaggleApi()

        class Validated(Exception):
            pass

        def stop():
            raise Validated

        api.build_kaggle_client = stop
        with pytest.raises(Validated):
            api.kernels_push(str(folder))
    assert "does not resolve to the specified id" not in printed.getvalue()


def test_bundle_passes_the_kaggle_clients_checks(tmp_path, clean_env):
    from slugify import slugify  # the client's own slug function

    bundle = build(tmp_path)
    meta = bundle.metadata
    assert sorted(p.name for p in bundle.folder.iterdir()) == ["kernel-metadata.json", "kernel.py"]
    assert meta["id"] == KERNEL and slugify(meta["title"]) == KERNEL.split("/")[1] and len(meta["title"]) >= 5
    assert (meta["language"], meta["kernel_type"], meta["code_file"]) == ("python", "script", "kernel.py")
    assert meta["dataset_sources"] == ["hojjatk/mnist-dataset"]
    assert meta["enable_internet"] is False and meta["is_private"] is True and meta["enable_gpu"] is False
    client_accepts(bundle.folder)

    # The check can fail: a title the client rejects.
    (bundle.folder / "kernel-metadata.json").write_text(json.dumps({**meta, "title": "abc"}))
    with pytest.raises(ValueError, match="Title must be at least five characters"):
        client_accepts(bundle.folder)


def test_notebook_bundle_holds_the_same_code(tmp_path, clean_env):
    import nbformat

    script = build(tmp_path, "--gpu", name="script")
    notebook = build(tmp_path, "--gpu", "--notebook", name="notebook")
    meta = notebook.metadata
    assert (meta["kernel_type"], meta["code_file"], meta["enable_gpu"]) == ("notebook", "kernel.ipynb", True)
    nb = nbformat.reads(notebook.code_file.read_text(), as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) == 1 and code[0].source == script.code_file.read_text()
    client_accepts(notebook.folder)


def test_bundle_carries_the_harness_and_the_spec(tmp_path, clean_env):
    first, second = build(tmp_path, name="one"), build(tmp_path, name="two")
    assert first.code_file.read_bytes() == second.code_file.read_bytes()  # same tree, same bundle
    with embedded_zip(first.code_file.read_text()) as z:
        names = set(z.namelist())
        assert {"run.py", "core/spec.py", "core/data.py", "core/specs/canonical.yaml", "adapters/kaggle.py",
                "cli/run.py", "results/loaders/record.py", "spec.yaml", "BUNDLE.json"} <= names
        assert not any("__pycache__" in n or n.startswith("tests/") for n in names)
        spec_file = tmp_path / "spec.yaml"
        spec_file.write_bytes(z.read("spec.yaml"))
        manifest = json.loads(z.read("BUNDLE.json"))
    assert load_spec(spec_file).hash == first.spec_hash == manifest["spec_hash"]
    assert f'SPEC_HASH = "{first.spec_hash}"' in first.code_file.read_text()
    assert manifest["kernel"] == KERNEL and manifest["run_args"] == ["--kaggle-dataset", "hojjatk/mnist-dataset"]


def test_bundle_holds_no_secret(tmp_path, clean_env, monkeypatch):
    config = tmp_path / "kaggle-config"
    config.mkdir()
    (config / "kaggle.json").write_text(json.dumps({"username": "tester", "key": KEY + "-file"}))
    monkeypatch.setenv("KAGGLE_USERNAME", "tester")
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    bundle = build(tmp_path)
    blobs = {p.name: p.read_bytes() for p in bundle.files()}
    with embedded_zip(bundle.code_file.read_text()) as z:
        blobs.update({n: z.read(n) for n in z.namelist()})
    for secret in (KEY, KEY + "-file", TOKEN):
        assert not [name for name, blob in blobs.items() if secret.encode() in blob]

    # A spec that smuggles a credential in is refused, naming the variable, not the value.
    with pytest.raises(UsageError, match=r"contains the value of \$KAGGLE_KEY") as e:
        remote.bundle_kaggle(["--out", str(tmp_path / "leak"), "--id", KERNEL, "--set", f"description={KEY}"])
    assert KEY not in str(e.value) and not (tmp_path / "leak").exists()


def test_bundle_refuses_bad_input(tmp_path, clean_env, capsys):
    import signal

    import run

    sigterm = signal.getsignal(signal.SIGTERM)  # run.main installs its own; give pytest its handler back
    try:
        _bad_input(tmp_path, capsys, run)
    finally:
        signal.signal(signal.SIGTERM, sigterm)


def _bad_input(tmp_path, capsys, run):

    cases = {
        "short slug": ["--id", "tester/abc"],
        "no owner": ["--id", "mnist-harness"],
        "upper case": ["--id", "tester/MNIST_Harness"],
        "no id, no KAGGLE_USERNAME": [],
        "bad dataset": ["--id", KERNEL, "--dataset", "mnist"],
        "bad accelerator": ["--id", KERNEL, "--accelerator", "T4 x2"],
    }
    for case, args in cases.items():
        assert run.main(["bundle", "kaggle", "--out", str(tmp_path / "b"), *args]) == 2, case
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, case
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert run.main(["bundle", "kaggle", "--out", str(tmp_path / "busy"), "--id", KERNEL]) == 2
    assert "not empty" in capsys.readouterr().err


def test_bundling_imports_neither_the_client_nor_tensorflow(tmp_path):
    code = ("import sys, run; "
            "assert run.main(['bundle', 'kaggle', '--out', sys.argv[1], '--id', 'me/mnist-test']) == 0; "
            "print(sorted(m for m in ('kaggle', 'kagglesdk', 'tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([PY, "-c", code, str(tmp_path / "b")], cwd=REPO, capture_output=True, text=True, timeout=HANG)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


# --- Inside a kernel: finding MNIST ---------------------------------------------------------

def test_a_kernel_is_detected_and_writes_to_its_working_folder(tmp_path, clean_env, monkeypatch):
    from cli.run import parse

    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    monkeypatch.setenv("KAGGLE_ROOT", str(tmp_path))
    args, platform_cls = parse([], "run.py [run]")
    assert platform_cls is adapter.KagglePlatform and args.kaggle_root == str(tmp_path)
    assert platform_cls(args).runs_dir() == tmp_path / "working" / "runs"
    args, _ = parse(["--runs-dir", str(tmp_path / "elsewhere"), "--kaggle-root", "/k"], "run.py [run]")
    assert platform_cls(args).runs_dir() == tmp_path / "elsewhere" and platform_cls(args).root == Path("/k")


def test_find_mnist_in_both_kaggle_layouts(tmp_path, idx_store):
    old = attach(idx_store, tmp_path / "old" / "input" / "mnist-dataset")
    assert adapter.find_mnist(tmp_path / "old" / "input").source.startswith(f"kaggle input {old}")

    new_input = tmp_path / "new" / "input"
    decoy = new_input / "datasets" / "aaa" / "fashion-mnist"  # same file names, other images; sorts first
    decoy.mkdir(parents=True)
    for names in IDX_NAMES.values():
        (decoy / names[0]).write_bytes(idx_bytes(np.zeros((3, 28, 28) if "images" in names[0] else (3,), np.uint8)))
    real = attach(idx_store, new_input / "datasets" / "hojjatk" / "mnist-dataset", nested="mnist/raw")
    folders = adapter.dataset_folders(new_input, ["hojjatk/mnist-dataset"])
    assert folders == [real, decoy]
    assert adapter.find_mnist(new_input).source.startswith(f"kaggle input {real}")  # the decoy fails its digests


def test_find_mnist_reads_a_keras_npz_and_explains_a_miss(tmp_path):
    mnist = load_mnist("cache")
    folder = tmp_path / "input" / "datasets" / "someone" / "mnist-npz"
    folder.mkdir(parents=True)
    np.savez(folder / "mnist.npz", **mnist.arrays())
    assert adapter.find_mnist(tmp_path / "input").digest() == mnist.digest()

    (tmp_path / "empty" / "input" / "other").mkdir(parents=True)
    with pytest.raises(DataError, match="Attach the dataset hojjatk/mnist-dataset"):
        adapter.find_mnist(tmp_path / "empty" / "input")


# --- The bundle run in a simulated kernel, beside a local run ------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory, idx_store):
    """One kernel run of the bundle in a fake /kaggle and one local run of the same spec, concurrently."""
    tmp = tmp_path_factory.mktemp("kernel")
    out = tmp / "bundle"
    env_bundle = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    built = subprocess.run([PY, "run.py", "bundle", "kaggle", "--out", str(out), "--id", KERNEL, *TINY],
                           cwd=REPO, env=env_bundle, capture_output=True, text=True, timeout=HANG)
    assert built.returncode == 0, built.stderr

    root = tmp / "kaggle"
    attach(idx_store, root / "input" / "datasets" / "hojjatk" / "mnist-dataset", nested="train-images-idx3-ubyte")
    (root / "working").mkdir()
    (tmp / "tmp").mkdir()
    # A kernel's environment has no PYTHONPATH, nor the TF_CPP_MIN_LOG_LEVEL the tests set: its log reads as a user's.
    kernel_env = {k: v for k, v in env_bundle.items() if k not in ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL")}
    kernel_env.update(KAGGLE_KERNEL_RUN_TYPE="Batch", KAGGLE_ROOT=str(root), KAGGLE_URL_BASE="https://www.kaggle.com",
                      KAGGLE_DATA_PROXY_TOKEN=PROXY_TOKEN, GIT_COMMIT="image-commit-1234", BUILD_DATE="20261101-000000",
                      TMPDIR=str(tmp / "tmp"), MNIST_HARNESS_CACHE=str(tmp / "no-cache"))
    started = []
    try:
        kernel = subprocess.Popen([PY, str(out / "kernel.py")], cwd=root / "working", env=kernel_env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        started.append(kernel)
        local = subprocess.Popen([PY, "run.py", "--platform", "local", *TINY, "--runs-dir", str(tmp / "local")],
                                 cwd=REPO, env=env_bundle, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        started.append(local)
        kernel_log, local_log = kernel.communicate(timeout=HANG)[0], local.communicate(timeout=HANG)[0]
    finally:
        for proc in started:  # never leave a training process behind a failed test
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return {"bundle": out, "root": root, "tmp": tmp, "kernel": (kernel.returncode, kernel_log),
            "local": (local.returncode, local_log), "local_runs": tmp / "local"}


def test_kernel_log_is_the_runs_not_tensorflows_native_log(runs):
    """The kernel's log is what a Kaggle user reads: run.py quiets it there as on a laptop (issue #20)."""
    rc, log = runs["kernel"]
    assert rc == 0, log[-3000:]
    for noise in ("absl::InitializeLog()", "oneDNN custom operations", "use_unbounded_threadpool",
                  "saving your model as an HDF5 file"):
        assert noise not in log, noise
    assert "[run] completed: test accuracy " in log and "run record: /" in log


def test_kernel_run_writes_a_record_that_loads_beside_a_local_run(runs):
    rc, log = runs["kernel"]
    assert rc == 0, log[-3000:]
    assert runs["local"][0] == 0, runs["local"][1][-3000:]
    working = runs["root"] / "working" / "runs"
    (record,) = list(working.iterdir())
    text = (record / "run.json").read_text()
    run = json.loads(text)
    meta = json.loads((runs["bundle"] / "kernel-metadata.json").read_text())
    assert run["status"] == "completed" and run["platform"] == "kaggle"
    assert run["data"]["source"].startswith(f"kaggle input {runs['root'] / 'input/datasets/hojjatk/mnist-dataset'}")
    info = run["environment"]["platform_info"]
    assert info["run_type"] == "Batch" and info["root"] == str(runs["root"])
    assert info["kaggle_env"]["KAGGLE_DATA_PROXY_TOKEN"] == "<redacted>" and PROXY_TOKEN not in text
    assert info["image"]["git_commit"] == "image-commit-1234" and info["accelerator"]["kind"] in ("cpu", "gpu")
    assert info["bundle"]["kernel"] == meta["id"] and info["bundle"]["spec_hash"] == run["spec_hash"]
    # No git in the kernel: the commit comes from the stamp the bundle was built with.
    assert run["environment"]["harness"] == {**environment.git_state(), "from": environment.HARNESS_STAMP}
    assert not list((runs["tmp"] / "tmp").glob("mnist-harness-*"))  # the unpacked harness is cleaned up

    loaded, skipped = discover([working, runs["local_runs"]])
    assert not skipped and sorted(r.run["platform"] for r in loaded) == ["kaggle", "local"]
    kaggle_run, local_run = sorted(loaded, key=lambda r: r.run["platform"])
    for key in ("spec_hash", "data_digest", "seed"):
        assert kaggle_run.run[key] == local_run.run[key], key
    # Same spec, data, seed and machine with op determinism: the same model, bit for bit.
    assert kaggle_run.run["weights_sha256"] == local_run.run["weights_sha256"]
    assert np.array_equal(kaggle_run.predictions(), local_run.predictions())


# --- Push, status, pull against a stub of the Kaggle API --------------------------------------

class KaggleStub(ThreadingHTTPServer):
    """The Kaggle API's RPC endpoints (`POST /api/v1/<service>/<method>`) and output file downloads."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _StubHandler)
        self.calls: list[dict] = []
        self.statuses = ["COMPLETE"]
        self.failure_message = None
        self.outputs: list[tuple[str, bytes]] = []
        self.log = ""
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def answer(self, method: str, body: dict) -> dict | None:
        if method == "IntrospectToken":
            return {"active": body.get("token") == TOKEN, "username": "tester"}
        if method == "SaveKernel":
            return {"ref": f"/code/{body['slug']}", "url": f"https://www.kaggle.com/code/{body['slug']}",
                    "versionNumber": 3, "kernelId": 42}
        if method == "GetKernelSessionStatus":
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            return {"status": status, **({"failureMessage": self.failure_message} if self.failure_message else {})}
        if method == "ListKernelSessionOutput":
            return {"files": [{"fileName": name, "url": f"http://localhost/output/{i}"}
                              for i, (name, _) in enumerate(self.outputs)], "log": self.log}
        return None

    def rpcs(self, method: str) -> list[dict]:
        return [c for c in self.calls if c["method"] == method]


class _StubHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet: the test reads `calls`
        pass

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        url = urlsplit(self.path)  # absolute when it arrives through the proxy setting
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        _, _, _, service, method = (url.path.split("/") + [""] * 5)[:5]
        self.server.calls.append({"method": method, "service": service, "host": url.netloc or self.headers["Host"],
                                  "auth": self.headers.get("Authorization", ""), "body": body})
        answer = self.server.answer(method, body)
        if answer is None:
            self._send(404, json.dumps({"code": 404, "message": f"no {url.path}"}).encode(), "application/json")
        else:
            self._send(200, json.dumps(answer).encode(), "application/json")

    def do_GET(self):
        url = urlsplit(self.path)
        self.server.calls.append({"method": "GET", "path": url.path, "auth": self.headers.get("Authorization", "")})
        index = int(url.path.rsplit("/", 1)[1])
        self._send(200, self.server.outputs[index][1], "application/octet-stream")


@pytest.fixture()
def stub():
    server = KaggleStub()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def client(stub: KaggleStub, tmp_path: Path, *argv: str, **creds: str) -> subprocess.CompletedProcess:
    """`python run.py ARGV` with the real client pointed at the stub, and only the given credentials."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KAGGLE_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    env.update(KAGGLE_API_ENVIRONMENT="LOCALHOST", HTTP_PROXY=stub.url, http_proxy=stub.url, NO_PROXY="", no_proxy="",
               KAGGLE_CONFIG_DIR=str(tmp_path / "kaggle-config"), HOME=str(tmp_path / "home"), **creds)
    (tmp_path / "home").mkdir(exist_ok=True)
    return subprocess.run([PY, "run.py", *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=HANG)


def sha(text: str) -> str:  # compare credentials by digest: a failing assert never prints them
    return hashlib.sha256(text.encode()).hexdigest()


def test_push_sends_the_bundle_through_the_client(tmp_path, stub, clean_env):
    bundle = build(tmp_path, "--accelerator", "NvidiaTeslaT4")
    result = client(stub, tmp_path, "push", "kaggle", str(bundle.folder), KAGGLE_USERNAME="tester", KAGGLE_KEY=KEY)
    assert result.returncode == 0, result.stderr
    assert "pushed /code/tester/mnist-harness-test, version 3" in result.stdout
    assert KEY not in result.stdout + result.stderr
    (call,) = stub.rpcs("SaveKernel")
    assert (call["service"], call["host"]) == ("kernels.KernelsApiService", "localhost")
    assert sha(call["auth"]) == sha("Basic " + base64.b64encode(f"tester:{KEY}".encode()).decode())
    sent = call["body"]
    assert sent["text"] == bundle.code_file.read_text()
    assert (sent["slug"], sent["newTitle"], sent["language"], sent["kernelType"]) == (
        KERNEL, "mnist harness test", "python", "script")
    assert (sent["isPrivate"], sent["enableGpu"], sent["enableInternet"]) == (True, True, False)
    assert sent["datasetDataSources"] == ["hojjatk/mnist-dataset"] and sent["machineShape"] == "NvidiaTeslaT4"


def test_missing_credentials_give_one_clear_message(tmp_path, stub):
    bundle = build(tmp_path)
    result = client(stub, tmp_path, "push", "kaggle", str(bundle.folder))
    assert result.returncode == 1
    assert result.stderr.startswith("error: no usable Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY")
    assert len(result.stderr.strip().splitlines()) == 1 and "Authentication required" not in result.stdout
    assert not stub.calls


def test_status_with_an_api_token(tmp_path, stub):
    stub.statuses = ["RUNNING", "COMPLETE"]
    result = client(stub, tmp_path, "status", "kaggle", KERNEL, "--wait", "--interval", "0", KAGGLE_API_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    printed = [line for line in result.stdout.splitlines() if line.startswith(KERNEL)]
    assert printed == [f"{KERNEL}: running", f"{KERNEL}: complete"]
    assert all(sha(c["body"]["token"]) == sha(TOKEN) for c in stub.rpcs("IntrospectToken"))  # the client's check
    calls = stub.rpcs("GetKernelSessionStatus")
    assert len(calls) == 2 and calls[-1]["body"] == {"userName": "tester", "kernelSlug": "mnist-harness-test"}
    assert all(sha(c["auth"]) == sha(f"Bearer {TOKEN}") for c in calls)

    stub.statuses, stub.failure_message = ["ERROR"], "DataError: no verified MNIST"
    result = client(stub, tmp_path, "status", "kaggle", KERNEL, "--wait", KAGGLE_API_TOKEN=TOKEN)
    assert result.returncode == 1 and f"{KERNEL}: error (DataError: no verified MNIST)" in result.stdout


def test_pull_turns_the_kernel_output_into_a_record(tmp_path, stub, runs):
    working = runs["root"] / "working"
    stub.outputs = [(p.relative_to(working).as_posix(), p.read_bytes())
                    for p in sorted(working.rglob("*")) if p.is_file()]
    stub.outputs += [("__results__.html", b"<html></html>"), ("../escaped.txt", b"x"), ("/tmp/absolute.txt", b"x")]
    stub.log = '[{"stream_name":"stdout","time":1.0,"data":"[run] record completed\\n"}]'
    config = tmp_path / "kaggle-config"
    config.mkdir()
    (config / "kaggle.json").write_text(json.dumps({"username": "tester", "key": KEY}))
    (config / "kaggle.json").chmod(0o600)
    runs_dir = tmp_path / "work" / "runs"

    result = client(stub, tmp_path, "pull", "kaggle", KERNEL, "--runs-dir", str(runs_dir))
    assert result.returncode == 0, result.stderr
    (record,) = [p for p in runs_dir.iterdir()]  # the staging folder is gone
    assert f"run record: {record}" in result.stdout and KEY not in result.stdout + result.stderr
    assert (record / "kaggle-kernel.log").read_text() == stub.log
    link = json.loads((record / "run.json").read_text())["links"]["kaggle"]
    assert link["kernel"] == KERNEL and link["kernel_status"] == "complete" and link["log"] == "kaggle-kernel.log"
    assert not (tmp_path / "work" / "escaped.txt").exists() and not Path("/tmp/absolute.txt").exists()
    downloads = [c for c in stub.calls if c["method"] == "GET"]
    assert len(downloads) == len(stub.outputs) - 2  # the client skipped the two unsafe names

    loaded, skipped = discover([runs_dir])
    assert not skipped and [(r.run["platform"], r.loader, r.source) for r in loaded] == [("kaggle", "record", record)]
    original = json.loads(next((working / "runs").iterdir()).joinpath("run.json").read_text())
    assert loaded[0].run["weights_sha256"] == original["weights_sha256"]

    again = client(stub, tmp_path, "pull", "kaggle", KERNEL, "--runs-dir", str(runs_dir))
    assert again.returncode == 0 and "already here" in again.stdout and "no new run records" in again.stdout
