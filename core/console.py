"""What a run prints: the experiment, Keras's progress and a summary — not TensorFlow's C++ log.

`quiet()` runs once, first thing in `run.py`, before anything imports TensorFlow:

- `TF_CPP_MIN_LOG_LEVEL=1` (TensorFlow's INFO lines off; its warnings and errors still print),
  unless the user set the variable themselves or gave `--verbose`.
- A filter on the process's stderr file descriptor drops the known harmless native lines
  listed in `KNOWN_LINES`, whole lines matched exactly; every other byte passes through.
  It is needed because absl prints some lines before any log level can take effect, and
  prints version-skew and no-GPU notices at level E(rror). Only the process that `run.py`
  starts gets it (`filter_stderr=True`), never a caller's process that imports `run.main`.
- Keras's "saving as HDF5 is legacy" warning is dropped by a `logging` filter on that one
  message, around the harness's own save (`saving_hdf5_on_purpose`): it saves `model.h5` on purpose.

What was quieted goes into every run record as `environment.logging` (`logging_state()`);
none of it changes a number (`TF_ENABLE_ONEDNN_OPTS`, `CUDA_VISIBLE_DEVICES` and the VLOG
levels are left alone). Imports only the standard library: this file is also the filter
process's program (`python -I -S core/console.py --relay`).
"""
from __future__ import annotations

import atexit
import contextlib
import dataclasses
import glob
import json
import logging
import os
import re
import select
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
QUIET_LEVEL = "1"  # 1 drops INFO; 2 would drop warnings and 3 errors, which may matter
# Variables that set only how much TensorFlow logs: not numerics, so `environment.env` leaves
# them out and `environment.logging` records them.
LOGGING_ENV = (LOG_LEVEL_ENV, "TF_CPP_MAX_VLOG_LEVEL", "TF_CPP_MIN_VLOG_LEVEL", "TF_CPP_VMODULE")

# absl's prefix: severity, MMDD, time, thread id, file:line]  (absl/log/internal/log_format.cc).
# Before absl::InitializeLog the date is 0000 and the "seconds" are the Unix time. TensorFlow 2.20
# (Kaggle's image) still logs some lines through TSL's own format: date, time, severity, then the
# source path (tsl/platform/default/logging.cc): `2026-12-01 19:11:55.602676: I external/.../x.cc:31] ...`.
_ABSL = (r"(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ "
         r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] (?:[\w.-]+/)*)")


@dataclasses.dataclass(frozen=True)
class KnownLine:
    """One native stderr line known to be harmless (as TensorFlow 2.21 prints it on a CPU machine)."""

    name: str
    pattern: str  # matched against the whole line, without its newline
    why: str
    only_without_gpu: bool = False  # on a machine with an NVIDIA device the line may mean a broken driver


KNOWN_LINES = (
    KnownLine("absl-preinit-notice",
              r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
              "absl says where early lines go; printed by each native library that logs before start-up"),
    KnownLine("onednn-notice",
              _ABSL + r"port\.cc:\d+\] oneDNN custom operations are on\. You may see slightly different "
              r"numerical results due to floating-point round-off errors from different computation orders\. "
              r"To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`\.",
              "an INFO notice printed before TF_CPP_MIN_LOG_LEVEL is read; oneDNN's setting is in "
              "environment.runtime.onednn and is not changed"),
    KnownLine("no-cuda-driver",
              _ABSL + r"cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine, GPU will not be used\.",
              "the CUDA build of TensorFlow on a machine without a GPU", only_without_gpu=True),
    KnownLine("cuinit-without-gpu",
              _ABSL + r"cuda_platform\.cc:\d+\] failed call to cuInit: .*",
              "the CUDA build of TensorFlow finds no GPU; the run uses the CPU, as environment.gpus says",
              only_without_gpu=True),
    KnownLine("nodedef-use_unbounded_threadpool",
              _ABSL + r"node_def_util\.cc:\d+\] NodeDef mentions attribute use_unbounded_threadpool which is not "
              r"in the op definition: Op<name=MapDataset; .*> This may be expected if your graph generating "
              r"binary is newer +than this binary\. Unknown attributes will be ignored\. NodeDef: \{\{node [^{}]*\}\}",
              "Keras's tf.data map sets an attribute this TensorFlow's op lacks; TensorFlow ignores it"),
)
HDF5_WARNING = "You are saving your model as an HDF5 file via `model.save()`"
HDF5_QUIETED = "keras-hdf5-legacy-warning"

_state: dict[str, Any] | None = None


def has_nvidia_device() -> bool:
    """Whether this machine has an NVIDIA (or WSL GPU) device node, driver working or not."""
    return bool(glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/dxg"))


def quiet(verbose: bool = False, filter_stderr: bool = False) -> dict[str, Any]:
    """Quiet TensorFlow's native log for this process (see the module docstring); returns what was done.

    Call before TensorFlow is imported. With `verbose` nothing is changed. A second call
    adds nothing the first did not (a process has one stderr).
    """
    global _state
    if _state is not None:
        return _state
    user_level = os.environ.get(LOG_LEVEL_ENV)
    quieted: list[str] = []
    if not verbose:
        if user_level is None:
            os.environ[LOG_LEVEL_ENV] = QUIET_LEVEL
            quieted.append(f"tensorflow-info ({LOG_LEVEL_ENV}={QUIET_LEVEL})")
            # The user who chose a level sees what TensorFlow prints at it; otherwise the known lines go.
            if filter_stderr:
                quieted += _start_stderr_filter(known_lines(has_nvidia_device()))
        quieted.append(HDF5_QUIETED)  # by saving_hdf5_on_purpose(), at the one save
    level = os.environ.get(LOG_LEVEL_ENV)
    _state = {"verbose": verbose, LOG_LEVEL_ENV: level,
              "level_set_by": "user" if user_level is not None else ("harness" if level is not None else None),
              "quieted": quieted}
    return _state


def logging_state() -> dict[str, Any]:
    """`environment.logging` of a run record: what `quiet()` did, or what the environment says without it."""
    if _state is not None:
        return dict(_state)
    level = os.environ.get(LOG_LEVEL_ENV)
    return {"verbose": None, LOG_LEVEL_ENV: level, "level_set_by": None if level is None else "user", "quieted": []}


def known_lines(gpu: bool) -> list[KnownLine]:
    return [k for k in KNOWN_LINES if not (k.only_without_gpu and gpu)]


# --- Keras's HDF5 warning ------------------------------------------------------------------

class _DropHdf5Warning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.WARNING and str(record.msg).startswith(HDF5_WARNING))


@contextlib.contextmanager
def saving_hdf5_on_purpose() -> Iterator[None]:
    """Around the harness's own `model.save("model.h5")`: Keras's legacy-format warning is dropped,
    when `quiet()` said so (not with --verbose). Other warnings pass.
    """
    # Keras warns through absl's Python logger (keras/src/saving/saving_api.py). Only a logger
    # absl made itself is touched: creating "absl" here would give absl a plain Logger.
    logger = logging.Logger.manager.loggerDict.get("absl")
    if HDF5_QUIETED not in logging_state()["quieted"] or not isinstance(logger, logging.Logger):
        yield
        return
    drop = _DropHdf5Warning()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


# --- The stderr filter ---------------------------------------------------------------------

def _start_stderr_filter(lines: Sequence[KnownLine]) -> list[str]:
    """Route fd 2 through a small relay process that drops `lines`; returns their names, [] if not possible.

    A separate process, not a thread, so that whatever a crash writes last (a fatal check,
    a segfault's traceback) still reaches the terminal after this process is gone. It runs
    in its own session: Ctrl-C does not stop it; it ends when the last writer closes the pipe.
    """
    if os.name != "posix" or not lines:
        return []
    try:
        sys.stderr.flush()
        original = os.dup(2)
    except (OSError, ValueError, AttributeError):
        return []
    try:
        relay = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", str(Path(__file__).resolve()), "--relay",
             json.dumps([k.pattern for k in lines])],
            stdin=subprocess.PIPE, stdout=original, stderr=original, start_new_session=True)
    except OSError:
        os.close(original)
        return []
    os.dup2(relay.stdin.fileno(), 2)
    relay.stdin.close()  # fd 2 is now the only write end this process holds
    atexit.register(_stop_stderr_filter, original, relay)
    return [k.name for k in lines]


def _stop_stderr_filter(original: int, relay: subprocess.Popen) -> None:
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.dup2(original, 2)  # closes the pipe: the relay sees the end once children holding it have exited
    os.close(original)
    try:
        relay.wait(timeout=5)  # its last lines reach the terminal before the shell's prompt
    except subprocess.TimeoutExpired:
        pass  # a child process still holds the pipe; the relay ends with it


def relay(source: int, sink: int, patterns: Sequence[str], hold_seconds: float = 0.2) -> None:
    """Copy `source` to `sink` until end of file, dropping whole lines that match one of `patterns`.

    A partial line is held (at most `hold_seconds`) only while it could still become a
    dropped line; anything else is written at once, so progress bars and prompts flow.
    """
    known = [re.compile(p.encode()) for p in patterns]
    could_be_known = re.compile(rb"W|[IEF](\d|$)")  # a prefix of how every known line starts
    pending, passing = b"", False  # passing: inside a line already let through

    def out(data: bytes) -> None:
        while data:
            try:
                data = data[os.write(sink, data):]
            except OSError:
                return  # the terminal is gone; keep draining so the writer never blocks

    while True:
        ready, _, _ = select.select([source], [], [], hold_seconds if pending else None)
        if not ready:  # a held partial line stayed partial: let it through
            out(pending)
            pending, passing = b"", True
            continue
        chunk = os.read(source, 65536)
        if not chunk:
            out(pending)
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if passing or not any(k.fullmatch(line) for k in known):
                out(line + b"\n")
            passing = False
        if pending and (passing or len(pending) > 65536 or not could_be_known.match(pending)):
            out(pending)
            pending, passing = b"", True


def _relay_main(argv: list[str]) -> int:
    relay(0, 1, json.loads(argv[1]))
    return 0


# --- The summary at the end of a run -------------------------------------------------------

def run_summary(run: dict[str, Any], record: Path, next_commands: Sequence[tuple[str, str]] = ()) -> str:
    """A few lines: status, test accuracy and loss, seconds per epoch, weights hash, record, next commands."""
    metrics, timings = run.get("metrics") or {}, run.get("timings") or {}
    epochs = len(timings.get("epoch_seconds") or [])
    per_epoch = timings.get("mean_epoch_seconds")
    total = timings.get("total_seconds")

    def num(key: str) -> str:
        value = metrics.get(key)
        return f"{value:.4f}" if isinstance(value, (int, float)) else "—"

    lines = [f"[run] {run.get('status')}: test accuracy {num('test_accuracy')}, test loss {num('test_loss')}; "
             f"{epochs} epoch{'s' if epochs != 1 else ''}"
             + (f", {per_epoch:.1f} s per epoch" if isinstance(per_epoch, (int, float)) else "")
             + (f", {total:.0f} s in all" if isinstance(total, (int, float)) else ""),
             f"weights sha256: {run.get('weights_sha256') or '—'}",
             f"run record: {record}"]
    for i, (command, why) in enumerate(next_commands):
        lines.append(f"{'next:' if i == 0 else '     '} {command}   ({why})")
    return "\n".join(lines)


def earlier_run(record: Path, spec_hash: str) -> Path | None:
    """The latest other record of the same spec beside `record` (run ids name the spec), or None."""
    mine = record.name
    others = sorted(p for p in record.parent.glob(f"*-{spec_hash[:8]}-*")
                    if p.name != mine and not p.name.startswith(".") and (p / "run.json").is_file())
    return others[-1] if others else None


if __name__ == "__main__" and sys.argv[1:2] == ["--relay"]:
    sys.exit(_relay_main(sys.argv[1:]))
