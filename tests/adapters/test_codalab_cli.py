"""CodaLab with the real client: the `cl` 1.7.5 CLI's own parser, formats and download.

The CLI lives in its own Python 3.9 venv (`make codalab-cli`, .venv-codalab), built once per
session. What it says of our lines comes from tests/adapters/codalab_cli_probe.py run in
that venv; what it does against a server is shown against a loopback stand-in of the REST
API (tests/adapters/codalab_server.py), which executes nothing: where a worker would run
the bundle, the test says what the run bundle holds.
"""
from __future__ import annotations

import io
import json
import math
import subprocess
import sys
import tarfile
import types
from pathlib import Path

import pytest

from adapters import codalab
from adapters.remote import codalab as remote_codalab
from adapters.remote import transfer
from cli import remote
from core.data import file_sha256
from core.errors import UsageError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from codalab_server import NO_PYTHON39, CodaLabStandIn, build_cl_venv, cl_home, quiet_env  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).resolve().parent / "codalab_cli_probe.py"
TINY = ["--epochs", "1", "--train-limit", "300", "--test-limit", "200"]
SAMPLE_UUID = "0x" + "5d" * 16  # stands for the uuid `cl run` prints, where a line uses it
STEPS = ["do_work_command", "do_upload_command", "do_upload_command", "do_run_command", "do_wait_command",
         "do_download_command"]


@pytest.fixture(scope="session")
def cl_venv() -> Path:
    """The real CodaLab CLI, codalab==1.7.5 and its pinned packages, in .venv-codalab (built once)."""
    venv = build_cl_venv()
    if venv is None:
        pytest.skip(NO_PYTHON39)
    return venv


def probe(cl_venv: Path, request: dict, cwd: Path, home: Path) -> dict:
    home.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([str(cl_venv / "bin" / "python"), str(PROBE)], input=json.dumps(request), cwd=cwd,
                          env=quiet_env(CODALAB_HOME=str(home), HOME=str(home)), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    answer = json.loads(proc.stdout)
    assert answer["version"] == "1.7.5"
    return answer


def cl_argv(manifest: dict) -> list[list[str]]:
    """The manifest's `cl` lines as the CLI gets them: without `cl`, the run's uuid filled in."""
    return [[SAMPLE_UUID if a == remote_codalab.RUN_UUID else a for a in argv[1:]] for argv in manifest["cl"]]


# --- The real parser --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def default_bundle(tmp_path_factory) -> types.SimpleNamespace:
    """The bundle `run.py bundle codalab` writes with every option left at its default."""
    out = tmp_path_factory.mktemp("default") / "codalab"
    assert remote.main("bundle", ["codalab", "--out", str(out)]) == 0
    return types.SimpleNamespace(dir=out, manifest=json.loads((out / remote_codalab.MANIFEST).read_text()))


GPU_RUN = remote_codalab.CodaLabRun("mnist-harness-code-x", "mnist-data-y", "mnist-run-z", "python -B code/run.py",
                             "tensorflow/tensorflow:2.21.0-gpu", "8g", 4, "1d", 1, "main", "my-ws",
                             remote_codalab.cl_text("réseau-ü (spec 1234abcd)"))  # a spec named in any script
REFUSED = {  # lines the real CLI must refuse: the probe can tell a refusal from a pass
    "memory 1.5": ["run", "code:b", "true", "--request-memory", "1.5"],
    "no such flag": ["run", "code:b", "true", "--request-no-network"],
    "cpus 1.5": ["run", "code:b", "true", "--request-cpus", "1.5"],
    "unicode": ["upload", "code", "-n", "b", "-d", "réseau"],
}


@pytest.fixture(scope="module")
def parsed(cl_venv, default_bundle, tmp_path_factory) -> dict:
    lines = cl_argv(default_bundle.manifest)
    gpu = GPU_RUN.cl_commands()
    request = {"argv": [*lines, gpu["work"][1:], gpu["run"][1:], *REFUSED.values()], "formats": FORMAT_VALUES}
    # In the bundle folder, as codalab-run.sh runs: `cl upload code` checks that ./code exists.
    answer = probe(cl_venv, request, default_bundle.dir, tmp_path_factory.mktemp("cl-home"))
    n = len(lines)
    return {"lines": answer["results"][:n], "gpu": answer["results"][n:n + 2],
            "refused": dict(zip(REFUSED, answer["results"][n + 2:])), "answer": answer}


def test_real_parser_takes_every_generated_cl_line(parsed, default_bundle):
    results = parsed["lines"]
    assert [r.get("ok") for r in results] == [True] * 6, [r.get("error") for r in results]
    assert [r["function"] for r in results] == STEPS
    m = default_bundle.manifest
    work, up_code, up_data, run, wait, download = results
    assert work["client_is_explicit"] and work["tokens"] == [m["instance"], ""]  # <instance>:: = home worksheet
    assert up_code["args"]["path"] == ["code"] and up_code["metadata"]["name"] == m["bundles"]["code"]["name"]
    assert up_data["args"]["path"] == ["data"] and up_data["metadata"]["name"] == m["bundles"]["data"]["name"]
    assert wait["target"] == [None, None, SAMPLE_UUID, None]
    assert download["target"] == [None, None, SAMPLE_UUID, None]
    assert download["args"]["output_path"] == m["bundles"]["run"]["download"] and download["args"]["force"] is False


def test_real_parser_fills_the_run_metadata_we_ask_for_with_network_on(parsed, default_bundle):
    m = default_bundle.manifest
    run = parsed["lines"][3]
    assert run["command_after_desugar"] == m["command"]  # no %...% expansion changed it
    assert run["targets"] == [[d["key"], d["bundle"]] for d in m["dependencies"]]
    md = run["metadata"]
    r = m["resources"]
    assert (md["name"], md["request_docker_image"], md["request_memory"], md["request_time"]) == \
           (m["bundles"]["run"]["name"], r["docker_image"], r["memory"], r["time"])
    assert (md["request_cpus"], md["request_gpus"]) == (r["cpus"], r["gpus"])
    assert run["parsed_memory"] == remote_codalab.parse_size(r["memory"]) == 4 * 1024 ** 3
    assert run["parsed_time"] == remote_codalab.parse_duration(r["time"]) == 7200
    assert md["request_network"] is True and r["network"] is True


def test_cl_run_has_no_way_to_ask_for_no_network(parsed):
    # The one option is store_true; left out, the spec's default (True) is filled in.
    assert parsed["answer"]["network_options"] == [
        {"option_strings": ["--request-network"], "const": True, "default": None, "type": "_StoreTrueAction"}]
    assert parsed["answer"]["request_network_default"] is True
    assert codalab.REQUEST_NETWORK is True


def test_real_parser_takes_the_gpu_variant(parsed):
    work, run = parsed["gpu"]
    assert work["ok"] and work["tokens"] == ["main", "my-ws"]
    assert run["ok"], run.get("error")
    assert (run["metadata"]["request_gpus"], run["metadata"]["request_cpus"]) == (1, 4)
    assert run["parsed_memory"] == 8 * 1024 ** 3 and run["parsed_time"] == 86400
    assert run["metadata"]["description"] == "r\\xe9seau-\\xfc (spec 1234abcd)"  # the CLI takes ASCII only


def test_real_parser_refuses_what_the_server_would(parsed):
    refused = parsed["refused"]
    assert not refused["memory 1.5"]["ok"] and "Invalid size: 1.5" in refused["memory 1.5"]["error"]
    assert not refused["no such flag"]["ok"] and refused["no such flag"]["exit"] == 2
    assert "unrecognized arguments: --request-no-network" in refused["no such flag"]["error"]
    assert not refused["cpus 1.5"]["ok"] and "invalid int value" in refused["cpus 1.5"]["error"]
    assert not refused["unicode"]["ok"] and "Metadata cannot contain unicode" in refused["unicode"]["error"]


# --- Sizes and durations: ours against CodaLab's formatting.parse_size / parse_duration ----------

NUMBERS = ["0", "1", "4", "10", "1.5", ".5", "5.", "-1", "+2", "1e3", "1E3", "1_000", " 4", "4 ", "0x10",
           "inf", "nan", "-inf", "1e400", "", "1.5.2", "٣", "²", "3\u00a0", "0.1", "2.675", "1e-7", "99999999999"]
UNITS = ["", "k", "K", "m", "M", "g", "G", "t", "T", "s", "S", "h", "H", "d", "D", "y", "Y", "x", "b", "kb", "gi", " "]
FORMAT_VALUES = sorted({n + u for n in NUMBERS for u in UNITS} | {"g", "k", "", "4 g", "1/2h", "½h", "4g\n"})


def ours(fn, value):
    try:
        v = fn(value)
    except ValueError:
        return {"error": True}
    return {"value": repr(v) if isinstance(v, float) and not math.isfinite(v) else v}


def theirs(result):
    return {"error": True} if "error" in result else result


def test_our_size_and_duration_rules_are_codalabs(parsed):
    formats = parsed["answer"]["formats"]
    assert len(formats) == len(FORMAT_VALUES) > 600
    disagree = [(v, kind, ours(fn, v), r[kind]) for v, r in zip(FORMAT_VALUES, formats)
                for kind, fn in (("size", remote_codalab.parse_size), ("duration", remote_codalab.parse_duration))
                if ours(fn, v) != theirs(r[kind])]
    assert not disagree, disagree[:10]
    # The cases the issue names, and the float rounding of chained factors:
    by_value = dict(zip(FORMAT_VALUES, formats))
    assert "error" in by_value["1.5"]["size"] and by_value["1.5g"]["size"]["value"] == 1610612736
    assert by_value["2.675h"]["duration"]["value"] == remote_codalab.parse_duration("2.675h")


def test_bundle_accepts_exactly_the_positive_finite_values_codalab_accepts(parsed):
    for value, r in zip(FORMAT_VALUES, parsed["answer"]["formats"]):
        for kind, check in (("size", remote_codalab.check_size), ("duration", remote_codalab.check_duration)):
            real = r[kind].get("value")
            accepted_by_codalab = (isinstance(real, (int, float)) and 0 < real < math.inf and value.isascii())
            try:
                check("--x", value)
                ok = True
            except UsageError:
                ok = False
            assert ok == accepted_by_codalab, (kind, value, real)


# --- Against a loopback stand-in for the server ------------------------------------------------

@pytest.fixture(scope="module")
def server():
    with CodaLabStandIn() as s:
        yield s


def run_bundle_contents(folder: Path, stderr: str) -> Path:
    """What a finished run bundle holds when the run wrote no record (the worker drops code/ and data/)."""
    folder.mkdir(parents=True)
    (folder / "stdout").write_text("Epoch 1/1\n")
    (folder / "stderr").write_text(stderr)
    (folder / "runs").mkdir()
    return folder


@pytest.fixture(scope="module")
def pushed(cl_venv, server, tmp_path_factory) -> types.SimpleNamespace:
    """codalab-run.sh, unchanged, run by bash with the real `cl` against the stand-in."""
    tmp = tmp_path_factory.mktemp("push")
    out = tmp / "codalab"
    assert remote.main("bundle", ["codalab", "--out", str(out), *TINY, "--instance", server.address]) == 0
    env = cl_home(cl_venv, server, tmp / "home")
    server.run_contents = run_bundle_contents(tmp / "run-contents", "No module named 'yaml'\n")
    proc = subprocess.run(["bash", str(out / remote_codalab.SCRIPT)], env=env, capture_output=True, text=True,
                          timeout=900)
    return types.SimpleNamespace(dir=out, env=env, tmp=tmp, proc=proc,
                                 manifest=json.loads((out / remote_codalab.MANIFEST).read_text()))


def untar(blob: bytes, dest: Path) -> Path:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        tar.extractall(dest, filter="data")
    return dest


def test_codalab_run_sh_runs_end_to_end_with_the_real_client(pushed, server):
    p = pushed.proc
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    m = pushed.manifest
    uploads = server.created("dataset")
    assert [u["metadata"]["name"] for u in uploads] == [m["bundles"]["code"]["name"], m["bundles"]["data"]["name"]]
    code, data = uploads
    # What the real client uploaded is the bundle's code/ and data/, byte for byte.
    assert transfer.tree_sha256(untar(server.blobs[code["uuid"]], pushed.tmp / "up-code")) == \
           (m["bundles"]["code"]["files"], m["bundles"]["code"]["sha256"])
    assert file_sha256(untar(server.blobs[data["uuid"]], pushed.tmp / "up-data") / "mnist.npz") == \
           m["bundles"]["data"]["sha256"]
    [run] = server.created("run")
    assert run["command"] == m["command"]
    assert run["dependencies"] == [{"child_path": "code", "parent_uuid": code["uuid"], "parent_path": ""},
                                   {"child_path": "data", "parent_uuid": data["uuid"], "parent_path": ""}]
    md = run["metadata"]
    assert (md["request_network"], md["request_memory"], md["request_time"], md["request_cpus"]) == \
           (True, "4g", "2h", 2)
    assert md["name"] == m["bundles"]["run"]["name"] and md["request_docker_image"] == "tensorflow/tensorflow:2.21.0"
    # wait and download went by the uuid `cl run` printed, which the script kept.
    assert (pushed.dir / remote_codalab.RUN_UUID_FILE).read_text().strip() == run["uuid"]
    assert remote_codalab.run_uuid(pushed.dir) == run["uuid"]
    downloaded = pushed.dir / m["bundles"]["run"]["download"]
    assert sorted(p.name for p in downloaded.iterdir()) == ["runs", "stderr", "stdout"]
    assert (downloaded / "stderr").read_text() == "No module named 'yaml'\n"
    assert f"python run.py pull codalab {server.address}::{run['uuid']}" in p.stdout


def test_codalab_run_sh_refuses_a_stale_download_before_uploading(pushed, server):
    assert pushed.proc.returncode == 0
    before = dict(server.bundles)
    proc = subprocess.run(["bash", str(pushed.dir / remote_codalab.SCRIPT)], env=pushed.env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2
    assert "already exists" in proc.stderr and "Traceback" not in proc.stderr
    assert server.bundles == before, "nothing may be uploaded or run when the download could not land"


def test_real_cl_download_makes_only_the_last_folder_and_keeps_an_existing_one(pushed, server):
    # What codalab-run.sh works around: un_tar_directory does os.mkdir (no parents), and an
    # existing target is kept with a message and exit status 0.
    assert pushed.proc.returncode == 0
    uuid = remote_codalab.run_uuid(pushed.dir)
    work = pushed.tmp / "cl-download"
    work.mkdir()
    missing_parent = subprocess.run(["cl", "download", uuid, "-o", "downloads/run"], cwd=work, env=pushed.env,
                                    capture_output=True, text=True, timeout=300)
    assert missing_parent.returncode != 0 and "FileNotFoundError" in missing_parent.stderr
    assert not (work / "downloads").exists()
    first = subprocess.run(["cl", "download", uuid, "-o", "run"], cwd=work, env=pushed.env, capture_output=True,
                           text=True, timeout=300)
    assert first.returncode == 0 and (work / "run" / "stdout").is_file()
    (work / "run" / "stdout").write_text("stale\n")
    again = subprocess.run(["cl", "download", uuid, "-o", "run"], cwd=work, env=pushed.env, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0 and "already exists" in again.stdout
    assert (work / "run" / "stdout").read_text() == "stale\n", "the real CLI downloaded nothing"


def run_py(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def test_pull_by_the_printed_form_reaches_the_run_bundle(pushed, server, tmp_path):
    assert pushed.proc.returncode == 0
    spec = remote_codalab.pull_spec(server.address, remote_codalab.run_uuid(pushed.dir))
    env = {**pushed.env, "CODALAB_SESSION": "another-terminal"}  # another shell: its own session
    proc = run_py("pull", "codalab", spec, "--runs-dir", str(tmp_path / "runs"), env=env)
    # The bundle is found and downloaded; it holds no record (nothing ran), and pull says why.
    assert proc.returncode == 1, proc.stderr
    assert "holds no run record" in proc.stderr and "No module named 'yaml'" in proc.stderr
    assert list((tmp_path / "runs").iterdir()) == []


def test_pull_by_a_name_the_worksheet_lacks_says_to_use_the_uuid(pushed, server, tmp_path):
    assert pushed.proc.returncode == 0
    proc = run_py("pull", "codalab", "no-such-run", "--runs-dir", str(tmp_path / "runs"), env=pushed.env)
    assert proc.returncode == 1
    assert "bundle spec no-such-run doesn't match any bundles" in proc.stderr and "pass the uuid" in proc.stderr
    assert "Traceback" not in proc.stderr
