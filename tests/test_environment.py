"""The environment fingerprint: only variables that can touch numerics, secrets redacted, only what the user set."""
from __future__ import annotations

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
