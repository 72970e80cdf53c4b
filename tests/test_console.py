"""A clean console: TensorFlow's native log quiet, real warnings through, a summary at the end."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from core import console, environment
from tests.conftest import ROOT

TINY = ["--epochs", "1", "--train-limit", "300", "--test-limit", "200"]
# What TensorFlow 2.21 printed on a CPU machine before (issue #20), as plain substrings, so
# the test does not lean on console.KNOWN_LINES' own patterns.
NATIVE_NOISE = ("All log messages before absl::InitializeLog()", "oneDNN custom operations are on",
                "cudart_stub.cc", "cpu_feature_guard.cc", "failed call to cuInit",
                "use_unbounded_threadpool", "saving your model as an HDF5 file")
USER_ENV = {k: v for k, v in os.environ.items() if k != console.LOG_LEVEL_ENV}  # conftest sets one


def relay(data: bytes, patterns) -> bytes:
    """The relay process as quiet() starts it, fed `data`."""
    return subprocess.run([sys.executable, "-I", "-S", "-B", str(ROOT / "core" / "console.py"), "--relay",
                           json.dumps(list(patterns))], input=data, capture_output=True, timeout=60, check=True).stdout


def test_the_relay_drops_only_whole_known_lines():
    patterns = [k.pattern for k in console.KNOWN_LINES]
    cuinit = (b"E0000 00:00:1796145807.259594    6472 cuda_platform.cc:52] failed call to cuInit: "
              b"INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n")
    kept = [b"W0000 00:00:1796145807.259594    6472 bfc_allocator.cc:291] Allocator ran out of memory\n",
            b"E1201 17:23:15.123456    6472 node_def_util.cc:682] NodeDef mentions attribute other_attr which is "
            b"not in the op definition\n",
            b"Traceback (most recent call last):\n", b"  File \"run.py\", line 1\n", b"error: disk full\n",
            b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR, and more\n",
            b"\xff\xfe binary \x00 line\n", b"50/100 [=====>" + b"\r" * 3 + b"done\n"]
    noise = [b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n", cuinit]
    data = noise[0] + kept[0] + cuinit + b"".join(kept[1:]) + cuinit + b"partial W line, no newline"
    assert relay(data, patterns) == b"".join(kept) + b"partial W line, no newline"


def test_the_relay_knows_the_same_lines_in_tensorflow_2_20s_format():
    """Kaggle's image (TensorFlow 2.20) prints some of them through TSL's own log format."""
    patterns = [k.pattern for k in console.known_lines(gpu=False)]
    tf220 = [b"2026-12-01 19:11:55.602676: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:31] Could not find cuda "
             b"drivers on your machine, GPU will not be used.\n",
             b"2026-12-01 19:12:00.612127: E external/local_xla/xla/stream_executor/cuda/cuda_platform.cc:51] failed call "
             b"to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n"]
    real = b"2026-12-01 19:12:00.700000: E tensorflow/core/kernels/some_op.cc:12] a real error\n"
    assert relay(b"".join(tf220) + real, patterns) == real


def quiet_in_a_fresh_process(env: dict[str, str], verbose: bool = False):
    """quiet() in a new process (it acts once per process), then a known native line, a real one,
    and absl warnings as Keras gives them."""
    code = "\n".join([
        "import json, os, sys",
        "from core import console",
        f"state = console.quiet(verbose={verbose}, filter_stderr=True)",
        "os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n')",
        "os.write(2, b'E0000 00:00:1796145807.259594    6472 some_op.cc:52] a real error\\n')",
        "from absl import logging",
        "with console.saving_hdf5_on_purpose():",
        "    logging.warning(console.HDF5_WARNING + ' or `keras.saving.save_model(model)`. This file format is legacy.')",
        "    logging.warning('a real warning')",
        "logging.warning(console.HDF5_WARNING + ' (not the harness saving: shown)')",
        "print(json.dumps([state, os.environ.get('TF_CPP_MIN_LOG_LEVEL'), console.logging_state()]))"])
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return (*json.loads(p.stdout), p.stderr)


def test_quiet_sets_info_off_and_drops_only_known_lines_and_the_hdf5_warning():
    state, level, recorded, err = quiet_in_a_fresh_process(USER_ENV)
    assert level == "1" and state == recorded
    relayed = [k.name for k in console.known_lines(console.has_nvidia_device())]
    assert state == {"verbose": False, "TF_CPP_MIN_LOG_LEVEL": "1", "level_set_by": "harness",
                     "quieted": ["tensorflow-info (TF_CPP_MIN_LOG_LEVEL=1)", *relayed, "keras-hdf5-legacy-warning"]}
    assert "absl::InitializeLog" not in err and "a real error" in err
    assert "a real warning" in err and err.count("HDF5") == 1 and "(not the harness saving: shown)" in err


def test_the_users_own_level_and_verbose_are_honoured():
    state, level, _, err = quiet_in_a_fresh_process({**USER_ENV, "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert level == "0" and state["level_set_by"] == "user" and state["quieted"] == ["keras-hdf5-legacy-warning"]
    assert "absl::InitializeLog" in err and "a real error" in err  # the user's level: no line filtered
    state, level, _, err = quiet_in_a_fresh_process(USER_ENV, verbose=True)
    assert level is None and state == {"verbose": True, "TF_CPP_MIN_LOG_LEVEL": None, "level_set_by": None,
                                       "quieted": []}
    assert "absl::InitializeLog" in err and "a real error" in err
    assert err.count("HDF5 file via") == 2 and "a real warning" in err


def test_log_levels_are_recorded_as_logging_not_as_numerics():
    env = environment.numeric_env({"TF_CPP_MIN_LOG_LEVEL": "1", "TF_CPP_MAX_VLOG_LEVEL": "0",
                                   "TF_ENABLE_ONEDNN_OPTS": "0"})
    assert env == {"TF_ENABLE_ONEDNN_OPTS": "0"}


def test_known_lines_about_gpus_stay_visible_on_a_machine_with_one():
    names = {k.name for k in console.known_lines(gpu=True)}
    assert "cuinit-without-gpu" not in names and "no-cuda-driver" not in names
    assert {"absl-preinit-notice", "nodedef-use_unbounded_threadpool"} <= names


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mnist):
    """The same tiny run twice, as a user types it: quiet (the default) and --verbose."""
    out = {}
    for name, extra in (("quiet", []), ("verbose", ["--verbose"])):
        runs_dir = tmp_path_factory.mktemp(name)
        p = subprocess.run([sys.executable, str(ROOT / "run.py"), *extra, "--platform", "local", *TINY,
                            "--runs-dir", str(runs_dir)], cwd=ROOT, env=USER_ENV, capture_output=True,
                           text=True, timeout=600)
        [record] = list(runs_dir.iterdir()) if p.returncode == 0 else [None]
        out[name] = (p, record, json.loads((record / "run.json").read_text()) if record else None)
    return out


def test_a_quiet_run_shows_no_native_log_and_ends_with_a_summary(runs):
    p, record, run = runs["quiet"]
    assert p.returncode == 0, p.stderr[-3000:]
    for noise in NATIVE_NOISE:
        assert noise not in p.stderr, noise
    summary = p.stdout[p.stdout.index("[run] completed: "):].splitlines()
    m = run["metrics"]
    assert summary[0].startswith(f"[run] completed: test accuracy {m['test_accuracy']:.4f}, "
                                 f"test loss {m['test_loss']:.4f}; 1 epoch, ")
    assert " s per epoch" in summary[0]
    assert summary[1] == f"weights sha256: {run['weights_sha256']}"
    assert summary[2] == f"run record: {record}"
    assert summary[3].startswith("next: python run.py repeat --seeds 3 --platform local --epochs 1")
    logging_ = run["environment"]["logging"]
    assert logging_["verbose"] is False and logging_["TF_CPP_MIN_LOG_LEVEL"] == "1"
    assert logging_["level_set_by"] == "harness"
    expected = {k.name for k in console.known_lines(console.has_nvidia_device())} | {"keras-hdf5-legacy-warning"}
    assert expected <= set(logging_["quieted"])
    assert "TF_CPP_MIN_LOG_LEVEL" not in run["environment"]["env"]


def test_verbose_shows_the_native_log_and_quiet_changes_no_number(runs):
    p, _, run = runs["verbose"]
    assert p.returncode == 0, p.stderr[-3000:]
    assert "saving your model as an HDF5 file" in p.stderr  # Keras says it whenever model.h5 is saved
    if platform.machine() in ("x86_64", "AMD64") and "TF_ENABLE_ONEDNN_OPTS" not in USER_ENV:
        assert "oneDNN custom operations are on" in p.stderr  # x86 builds say it at start-up
    assert run["environment"]["logging"] == {"verbose": True, "TF_CPP_MIN_LOG_LEVEL": None,
                                             "level_set_by": None, "quieted": []}
    assert run["weights_sha256"] == runs["quiet"][2]["weights_sha256"]


def test_the_summary_names_the_last_run_of_the_same_spec(tmp_path):
    spec_hash = "60151ff0" + "0" * 56
    names = ["20261201T100000Z-local-60151ff0-aaaa", "20261201T110000Z-kaggle-60151ff0-bbbb",
             "20261201T120000Z-local-12345678-cccc", ".partial-20261201T130000Z-local-60151ff0-dddd",
             "20261201T140000Z-local-60151ff0-eeee"]
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_text("{}")
    mine = tmp_path / names[-1]
    assert console.earlier_run(mine, spec_hash) == tmp_path / names[1]
    assert console.earlier_run(tmp_path / names[2], "12345678" + "0" * 56) is None
    run = {"status": "completed", "metrics": {"test_accuracy": 0.99234, "test_loss": 0.0251},
           "timings": {"epoch_seconds": [40.0, 50.0], "mean_epoch_seconds": 45.0, "total_seconds": 101.2},
           "weights_sha256": "ab" * 32}
    assert console.run_summary(run, mine, [("python run.py repeat --seeds 3", "the noise band")]).splitlines() == [
        "[run] completed: test accuracy 0.9923, test loss 0.0251; 2 epochs, 45.0 s per epoch, 101 s in all",
        f"weights sha256: {'ab' * 32}", f"run record: {mine}", "next: python run.py repeat --seeds 3   (the noise band)"]
