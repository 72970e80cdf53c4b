"""Preflight: a Kaggle bundle run in the Kaggle image's environment (its Python and library versions,
built by `make images`), in Kaggle's layout, as a non-root user without network, then compared with a
local run of the same spec. The CodaLab preflight is the worker test in test_codalab.py.

One training in the Kaggle image environment (and one local) for the module; the rest is fast.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from adapters.remote import images, preflight, sandbox
from core.errors import UsageError
from results.compare import VERDICTS, compare
from results.loaders import discover

REPO = Path(__file__).resolve().parents[2]
TINY = ["--epochs", "1", "--train-limit", "300", "--test-limit", "200"]
HANG = 1800  # seconds before a child counts as hung (a guard on a busy shared machine, not a timing check)
AS_ROOT = os.geteuid() == 0


def harness(*args: str, timeout: int = HANG, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """`python run.py ARGS` as a user types it, with no Kaggle or CodaLab settings of this machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_") and k != "CODALAB"}
    return subprocess.run([sys.executable, str(REPO / "run.py"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def kaggle(image_envs, tmp_path_factory) -> types.SimpleNamespace:
    tmp = tmp_path_factory.mktemp("preflight-kaggle")
    bundle, runs = tmp / "bundle", tmp / "runs"
    built = harness("bundle", "kaggle", "--out", str(bundle), "--id", "tester/mnist-preflight", *TINY)
    assert built.returncode == 0, built.stderr
    # From another folder, with relative paths, as a user runs it: records land in ./runs there.
    proc = harness("preflight", "kaggle", "bundle", cwd=tmp)
    records = {json.loads((p / "run.json").read_text())["platform"]: p for p in runs.iterdir()} \
        if runs.is_dir() else {}
    return types.SimpleNamespace(proc=proc, runs=runs, records=records, env=image_envs["kaggle"],
                                 desc=images.load_image("kaggle"))


def test_kaggle_preflight_runs_the_kernel_under_the_kaggle_images_versions(kaggle):
    assert kaggle.proc.returncode == 0, kaggle.proc.stderr[-3000:]
    assert sorted(kaggle.records) == ["kaggle", "local"]
    run = json.loads((kaggle.records["kaggle"] / "run.json").read_text())
    assert (run["status"], run["platform"]) == ("completed", "kaggle")
    env, desc = run["environment"], kaggle.desc
    for name in ("tensorflow", "keras", "numpy", "h5py"):
        assert env["packages"][name] == desc.version_of(name), name
    assert env["python"].rsplit(".", 1)[0] == desc.python.rsplit(".", 1)[0] == "3.12"
    info = env["platform_info"]
    assert info["preflight"] is True and info["preflight_image"]["hash"] == desc.hash
    assert info["preflight_image"]["python"]["requested"] == desc.python
    assert info["run_type"] == "Batch"
    assert run["data"]["source"].endswith("/kaggle/input/mnist-dataset (IDX)")
    iso = info["preflight_isolation"]
    if AS_ROOT:  # root can have a separate user and network namespace; anything less is a defect here
        assert iso["user"] == sandbox.SANDBOX_USER and iso["uid"] != 0 and iso["network_off"] is True
    else:
        assert iso["uid"] == os.geteuid() and (iso["network_off"] or iso["notes"])
    log = (kaggle.records["kaggle"] / "kaggle-kernel.log").read_text()
    assert "[run] record completed" in log


def test_kaggle_preflight_compares_with_a_local_run_of_the_same_spec(kaggle):
    assert kaggle.proc.returncode == 0, kaggle.proc.stderr[-3000:]
    local = json.loads((kaggle.records["local"] / "run.json").read_text())
    pre = json.loads((kaggle.records["kaggle"] / "run.json").read_text())
    assert local["spec_hash"] == pre["spec_hash"] and local["data_digest"] == pre["data_digest"]
    assert "preflight" not in local["environment"]["platform_info"]
    # A second preflight of the spec reuses this local record; a preflight record never stands in for one.
    assert preflight.find_local(kaggle.runs, pre["spec_hash"]) == kaggle.records["local"]
    assert preflight.find_local(kaggle.runs, "0" * 64) is None

    out = kaggle.proc.stdout.splitlines()
    line = out[0]
    assert line.startswith("kaggle image: ")
    runs, _ = discover([kaggle.records["kaggle"], kaggle.records["local"]])
    (group,) = compare(runs, []).groups
    got = group.pair(0, 1).verdict
    assert got in VERDICTS
    expected = {"identical": "identical to local", "same predictions": "same predictions as local",
                "within noise": "within noise of local", "divergent": "divergent"}[got]
    assert line.startswith(f"kaggle image: {expected}")
    # Every library version that differs is named, the platform's first (Kaggle's 2.20.0 → our pin).
    for name in ("tensorflow", "keras", "numpy"):
        a, b = pre["environment"]["packages"][name], local["environment"]["packages"][name]
        if a != b:
            assert f"{name} {a} → {b}" in line
    assert any("kaggle" in l and "local" in l for l in out[1:]), "the usual comparison follows the verdict"


def test_a_bundle_that_crashes_in_the_image_is_exit_4_with_the_kernels_own_error(image_envs, tmp_path):
    bundle = tmp_path / "bundle"
    built = harness("bundle", "kaggle", "--out", str(bundle), "--id", "tester/mnist-preflight-bad", *TINY,
                    "--set", "data.source=npz", "--set", f"data.path={tmp_path / 'missing.npz'}")
    assert built.returncode == 0, built.stderr
    proc = harness("preflight", "kaggle", str(bundle), "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 4, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the kaggle bundle failed") and "missing.npz" in last
    assert "Traceback" not in last
    assert not [p for p in (tmp_path / "runs").glob("*") if not p.name.startswith(".")] \
        if (tmp_path / "runs").exists() else True


def test_preflight_refuses_bad_input_with_one_line(tmp_path):
    (tmp_path / "not-a-bundle").mkdir()
    for args, words in ((["kaggle", str(tmp_path / "not-a-bundle")], "kernel-metadata.json"),
                        (["codalab", str(tmp_path / "not-a-bundle")], "codalab-manifest.json"),
                        (["kaggle", "--with", "tensorflow"], "PACKAGE==VERSION"),
                        (["kaggle", str(tmp_path / "nothing-here")], "not a folder")):
        proc = harness("preflight", *args, "--runs-dir", str(tmp_path / "runs"), timeout=300)
        assert proc.returncode == 2, (args, proc.stderr)
        assert words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    proc = harness("preflight", "openml", timeout=300)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


# --- The image descriptions and their environments ----------------------------------------------

def test_image_descriptions_name_python_libraries_and_sources():
    kaggle, codalab = images.load_image("kaggle"), images.load_image("codalab")
    assert (kaggle.python, kaggle.version_of("tensorflow"), kaggle.version_of("keras")) == ("3.12.13", "2.20.0",
                                                                                             "3.13.2")
    assert (codalab.python, codalab.image) == ("3.11", "tensorflow/tensorflow:2.21.0")
    assert codalab.packages["tensorflow-cpu"] == "2.21.0" and "tensorflow" not in codalab.packages
    assert "PyYAML" in codalab.absent and codalab.version_of("pyyaml") is None
    for desc in (kaggle, codalab):
        assert desc.sources and all(desc.sources.values()) and desc.date
        assert {"keras", "numpy", "h5py"} <= {images.normalize(k) for k in desc.packages}


def test_with_overrides_replace_the_images_distribution_and_change_the_hash():
    base = images.load_image("codalab")
    newer = images.load_image("codalab", images.parse_with(["tensorflow==2.22.0"]))
    assert newer.packages["tensorflow-cpu"] == "2.22.0" and "tensorflow" not in newer.packages
    assert newer.hash != base.hash and newer.overrides == {"tensorflow": "2.22.0"}
    with_yaml = images.load_image("codalab", {"PyYAML": "6.0.3"})
    assert "PyYAML" not in with_yaml.absent and with_yaml.packages["PyYAML"] == "6.0.3"
    assert images.load_image("codalab").hash == base.hash  # the hash is a property of the description
    for bad in ("tensorflow", "tensorflow>=2", "==1", "tensor flow==1"):
        with pytest.raises(UsageError, match="PACKAGE==VERSION"):
            images.parse_with([bad])
    with pytest.raises(UsageError, match="platforms with one: codalab, kaggle"):
        images.load_image("openml")


def test_find_python_takes_the_version_else_the_minor_else_the_nearest():
    have = {(3, 11, 7): Path("/py/3.11.7"), (3, 12, 1): Path("/py/3.12.1"), (3, 9, 18): Path("/py/3.9.18")}
    exact = images.find_python("3.11", have)
    assert (exact["version"], exact["match"], exact["note"]) == ("3.11.7", "exact", None)
    minor = images.find_python("3.12.13", have)
    assert (minor["version"], minor["match"]) == ("3.12.1", "minor") and "3.12.13" in minor["note"]
    nearest = images.find_python("3.10", have)  # 3.9 and 3.11 are as near: the newer one
    assert (nearest["version"], nearest["match"]) == ("3.11.7", "nearest") and "no Python 3.10" in nearest["note"]
    with pytest.raises(images.ImageError, match="no Python 3 interpreter"):
        images.find_python("3.12", {})


def test_image_environments_hold_the_images_versions_and_nothing_it_lacks(image_envs):
    for platform, env in image_envs.items():
        desc = images.load_image(platform)
        installed = env.packages()
        for name, version in desc.packages.items():
            assert installed[images.normalize(name)] == version, (platform, name)
        for name in ("pandas", "comet-ml", "openml", "optuna", *map(images.normalize, desc.absent)):
            assert name not in installed, (platform, name)
        assert env.record["python"]["version"].startswith(desc.python.rsplit(".", 1)[0] if desc.python.count(".") > 1
                                                          else desc.python)
        probe = subprocess.run([str(env.python), "-c", "import pandas"], capture_output=True, text=True)
        assert probe.returncode == 1 and "No module named 'pandas'" in probe.stderr, platform
    probe = subprocess.run([str(image_envs["codalab"].python), "-c", "import yaml"], capture_output=True, text=True)
    assert "No module named 'yaml'" in probe.stderr  # the CodaLab image has no PyYAML: the bundle brings its own


# --- The sandbox ------------------------------------------------------------------------------------

def test_sandbox_runs_as_another_user_without_network_and_inputs_read_only(tmp_path):
    if not AS_ROOT:
        pytest.skip("not root: no separate user or mount namespace to test (the sandbox runs as this user)")
    src = tmp_path / "input"
    src.mkdir()
    (src / "data.txt").write_text("mnist\n")
    iso = sandbox.isolation(network_off=True, log=lambda line: None)
    root = sandbox.make_root()
    try:
        work = root / "work"
        script = ("id -u; cat in/data.txt; (echo x > in/data.txt) 2>&1 | tail -1; "
                  "awk 'NR > 2 {print $1}' /proc/net/dev; ls /root 2>&1 | head -1; echo ok > out.txt && echo wrote")
        plan = sandbox.SandboxPlan(root=root, argv=["/bin/bash", "-c", script], cwd=work,
                                   env={"PATH": "/usr/bin:/bin"}, readonly={src: work / "in"}, writable=[work],
                                   log_file=root / "log")
        assert sandbox.run(plan, iso) == 0, (root / "log").read_text()
        lines = (root / "log").read_text().splitlines()
        assert int(lines[0]) == iso.uid != 0
        assert lines[1] == "mnist" and "Read-only file system" in lines[2]
        assert lines[3] == "lo:"  # a network namespace: loopback only
        assert "Permission denied" in lines[4]  # root's home stays closed
        assert lines[5:] == ["wrote"]
        assert (work / "out.txt").stat().st_uid == iso.uid
        assert (src / "data.txt").read_text() == "mnist\n"
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)


def test_versions_are_read_under_every_distribution_name(image_envs):
    # The CodaLab image installs TensorFlow as `tensorflow-cpu`: the record must still say 2.21.0.
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from core.environment import package_versions; "
            "import json; print(json.dumps(package_versions()))")
    for platform, env in image_envs.items():
        out = subprocess.run([str(env.python), "-I", "-c", code], capture_output=True, text=True, check=True)
        versions = json.loads(out.stdout)
        desc = images.load_image(platform)
        assert versions["tensorflow"] == desc.version_of(*images.ALIASES[0]) is not None, platform
        assert versions["keras"] == desc.version_of("keras") and versions["comet_ml"] is None


def test_the_verdict_line_for_each_verdict(tmp_path):
    from results.synthetic import write_record

    local = write_record(tmp_path / "local", accuracy=0.9912, weights="w-local", run_id="20260105T090000Z-local-1")
    cases = {"identical": dict(weights="w-local", accuracy=0.9912),
             "within noise": dict(weights="w-kaggle", accuracy=0.9910),
             "divergent": dict(weights="w-kaggle-2", accuracy=0.9700)}
    for i, (expected, kw) in enumerate(cases.items()):
        record = write_record(tmp_path / f"kaggle-{i}", platform="kaggle", machine="kaggle-gpu",
                              run_id=f"20260105T09000{i}Z-kaggle-{i}", **kw)
        result = preflight.Preflight("kaggle", record, local, env=None, isolation=None, ran_local=False)
        line, cmp = preflight.verdict(result)
        assert cmp.n_runs == 2
        if expected == "identical":
            assert line.startswith("kaggle image: identical to local (weights ")
            assert "although tensorflow 2.18.0 → 2.21.0, keras 3.8.0 → 3.15.1, numpy 1.26.4 → 2.4.6" in line
        elif expected == "within noise":
            assert line.startswith("kaggle image: within noise of local (accuracy ")
            assert "expect a slightly different result on kaggle; the numerics that differ: tensorflow 2.18.0" in line
        else:
            assert line.startswith("kaggle image: divergent: expect a different result on kaggle (accuracy ")
            acc = [json.loads((r / "run.json").read_text())["metrics"]["test_accuracy"] for r in (record, local)]
            assert f"({(acc[0] - acc[1]) * 100:+.2f} pp)" in line and acc[0] < acc[1]
            assert "the numerics that differ: tensorflow 2.18.0 → 2.21.0" in line
