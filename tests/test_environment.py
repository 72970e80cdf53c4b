"""The environment fingerprint: secrets redacted, and only what the user set is recorded."""
from __future__ import annotations

from core import environment


def test_secret_looking_names_are_redacted_and_others_kept():
    env = environment.numeric_env({"TF_DETERMINISTIC_OPS": "1", "KERAS_API_KEY": "abc", "HOME": "/root",
                                   "OMP_NUM_THREADS": "2"})
    assert env == {"KERAS_API_KEY": environment.REDACTED, "OMP_NUM_THREADS": "2", "TF_DETERMINISTIC_OPS": "1"}


def test_variables_that_imports_set_are_left_out_unless_the_user_set_them(monkeypatch):
    # What TensorFlow's import puts into its own process must not make the second run in
    # a process look different from the first.
    monkeypatch.setenv("KMP_BLOCKTIME", "0")
    monkeypatch.setenv("TPU_ML_PLATFORM", "Tensorflow")
    monkeypatch.setenv("TF_NUM_INTEROP_THREADS", "1")
    monkeypatch.setattr(environment, "_ENV_AT_START", frozenset({"TPU_ML_PLATFORM"}))
    env = environment.numeric_env()
    assert "KMP_BLOCKTIME" not in env
    assert env["TPU_ML_PLATFORM"] == "Tensorflow" and env["TF_NUM_INTEROP_THREADS"] == "1"
