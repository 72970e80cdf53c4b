"""The environment fingerprint: only variables that can touch numerics, secrets redacted, only what the user set,
versions under any distribution name, and a digest of the code that computes."""
from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from core import environment


def test_only_numerics_variables_are_recorded_and_secret_looking_names_are_redacted():
    env = environment.numeric_env({"TF_DETERMINISTIC_OPS": "1", "KERAS_API_KEY": "abc", "HOME": "/root",
                                   "OMP_NUM_THREADS": "2", "OMP_AUTH_TOKEN": "xyz",
                                   "TF_CLI_CONFIG_FILE": "/root/.terraformrc", "TF_VAR_region": "eu",
                                   "TF_CPP_MIN_LOG_LEVEL": "2", "XLA_FLAGS": "--xla_cpu_enable_fast_math=false"})
    # Terraform's TF_* variables and TensorFlow's log level move no number; a key is never a numerics switch.
    assert env == {"OMP_AUTH_TOKEN": environment.REDACTED, "OMP_NUM_THREADS": "2", "TF_DETERMINISTIC_OPS": "1",
                   "XLA_FLAGS": "--xla_cpu_enable_fast_math=false"}
    assert not environment.touches_numerics("TF_CLI_CONFIG_FILE")
    assert environment.touches_numerics("TF_ENABLE_ONEDNN_OPTS") and environment.touches_numerics("MKL_NUM_THREADS")


def test_variables_that_imports_set_are_left_out_unless_the_user_set_them(monkeypatch):
    # What TensorFlow's import puts into its own process must not make the second run in
    # a process look different from the first.
    monkeypatch.setenv("KMP_BLOCKTIME", "0")
    monkeypatch.setenv("KMP_AFFINITY", "granularity=fine")
    monkeypatch.setenv("TF_NUM_INTEROP_THREADS", "1")
    monkeypatch.setattr(environment, "_ENV_AT_START", frozenset({"KMP_AFFINITY"}))
    env = environment.numeric_env()
    assert "KMP_BLOCKTIME" not in env
    assert env["KMP_AFFINITY"] == "granularity=fine" and env["TF_NUM_INTEROP_THREADS"] == "1"


def test_the_code_digest_follows_the_computing_code_only(tmp_path):
    for name in environment.COMPUTING_CODE:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"# {name}\n")
    (tmp_path / "README.md").write_text("one")
    before = environment.code_digest(tmp_path)
    (tmp_path / "README.md").write_text("two")  # documentation is not the experiment
    assert environment.code_digest(tmp_path) == before and len(before) == 64
    (tmp_path / "core" / "experiment.py").write_text("# changed\n")
    assert environment.code_digest(tmp_path) != before
    (tmp_path / "core" / "backend.py").unlink()
    assert environment.code_digest(tmp_path) is None
    assert environment.fingerprint()["harness"]["code_sha256"] == environment.code_digest()


# --- Package versions under any distribution name ----------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def site_with(site: Path, module: str, dist: str, version: str, top_level: bool = True) -> Path:
    """A site dir as pip leaves it: the package and its dist-info (METADATA, RECORD, top_level.txt)."""
    (site / module).mkdir(parents=True)
    (site / module / "__init__.py").write_text("")  # no __version__: only the metadata can say
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "RECORD").write_text(f"{module}/__init__.py,,\n{info.name}/METADATA,,\n")
    if top_level:
        (info / "top_level.txt").write_text(f"{module}\n")
    return site


def test_tensorflow_installed_as_tensorflow_cpu_reads_its_version(tmp_path):
    # The CPU image's Dockerfile installs ${TENSORFLOW_PACKAGE}: `tensorflow-cpu`, no `tensorflow` dist.
    site = site_with(tmp_path / "site", "tensorflow", "tensorflow-cpu", "2.21.0")
    assert environment.installed_version("tensorflow", path=[str(site)]) == "2.21.0"
    # What the record used to ask for, and got None from:
    assert list(metadata.distributions(name="tensorflow", path=[str(site)])) == []
    assert environment.installed_version("tensorflow", path=[str(tmp_path / "empty")]) is None


def test_an_unknown_distribution_name_is_found_by_the_module_it_ships(tmp_path):
    site = site_with(tmp_path / "a", "tensorflow", "tensorflow-custom-build", "2.21.0")
    assert environment.installed_version("tensorflow", path=[str(site)]) == "2.21.0"
    site = site_with(tmp_path / "b", "keras", "keras-fork", "3.15.1", top_level=False)  # RECORD only
    assert environment.installed_version("keras", path=[str(site)]) == "3.15.1"


def test_the_record_reads_tensorflow_cpu_in_a_fresh_interpreter(tmp_path):
    # A Python that sees only the stdlib, the harness and a site with tensorflow-cpu (as the image).
    site = site_with(tmp_path / "site", "tensorflow", "tensorflow-cpu", "2.21.0")
    code = "import json; from core.environment import package_versions; print(json.dumps(package_versions()))"
    proc = subprocess.run([sys.executable, "-S", "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": f"{ROOT}:{site}", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    versions = json.loads(proc.stdout)
    assert versions["tensorflow"] == "2.21.0" and versions["numpy"] is None


def test_this_venv_reports_the_tensorflow_it_has():
    assert environment.package_versions()["tensorflow"] == metadata.version("tensorflow")
