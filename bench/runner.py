"""The benchmark runner behind `run.py bench`: the harness against bare Keras, plain PyTorch and this
machine's limits, as the text of BENCHMARKS.md.

Every figure is a wall time of a separate process (or a rate derived from one),
measured in this one invocation. The harness run, the bare-Keras script and the
GEMM measurement take turns, round after round, so that a load that comes and
goes on a shared machine falls on all of them alike; each figure is reported as
its best and its median over the rounds. This process imports neither
TensorFlow nor numpy, so it does not compete with what it measures.
Method and profile: bench/README.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from core import environment
from core.backend import INSTALL_HINT
from core.backend import installed as backend_installed
from core.errors import HarnessError, UsageError

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
RECORD_COUNT = 1000
DEFAULT_VARIANTS = ["HARNESS_STEPS_PER_EXECUTION=1"]
PROCESS_TIMEOUT = 3600.0  # a stuck child must not hang `make bench` forever


class BenchError(HarnessError):
    """A measured command failed; the benchmark cannot stand on it."""


# --- One child process, timed ------------------------------------------------------

@dataclasses.dataclass
class Proc:
    """A finished child process: wall seconds, exit code, output, and its peak resident memory."""

    args: list[str]
    wall: float
    returncode: int
    stdout: str
    stderr: str
    peak_rss_mb: float

    def json(self) -> dict[str, Any]:
        """The last line of stdout that parses as a JSON object."""
        for line in reversed(self.stdout.splitlines()):
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except ValueError:
                    continue
        raise BenchError(f"{' '.join(self.args)}: no JSON result in its output\n{self.tail()}")

    def tail(self, n: int = 15) -> str:
        return "\n".join((self.stdout + self.stderr).strip().splitlines()[-n:])


def run_timed(args: list[str], env: dict[str, str] | None = None, check: bool = True) -> Proc:
    """Run `args` from the repository root; wall time from start to reaping, and the child's own peak RSS.

    `os.wait4` gives the rusage of exactly this child (and its reaped descendants),
    so the peak resident memory is this run's, not the maximum over every child.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})})
        killer = threading.Timer(PROCESS_TIMEOUT, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; Popen must not wait again
        out.seek(0), err.seek(0)
        result = Proc(args, wall, proc.returncode, out.read(), err.read(), usage.ru_maxrss / 1024)
    if check and result.returncode != 0:
        raise BenchError(f"`{' '.join(args)}` exited with {result.returncode}:\n{result.tail()}")
    return result


def imports_tensorflow(args: list[str]) -> bool:
    """Whether a command imports TensorFlow (or Keras), by Python's own import log."""
    proc = run_timed([PY, "-X", "importtime", *args], check=False)
    modules = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    return bool(modules & {"tensorflow", "keras"})


# --- Figures ---------------------------------------------------------------------------

@dataclasses.dataclass
class Figure:
    """One table row: samples, reduced to the best and the median; `higher` when bigger is better."""

    name: str
    unit: str
    samples: list[float] = dataclasses.field(default_factory=list)
    higher: bool = False
    target: tuple[str, float] | None = None  # ("<=", 1.02), (">=", 0.70), ...
    note: str = ""
    best_value: float | None = None    # set for derived figures, whose best is not a sample
    median_value: float | None = None

    @property
    def best(self) -> float | None:
        if self.best_value is not None or not self.samples:
            return self.best_value
        return max(self.samples) if self.higher else min(self.samples)

    @property
    def median(self) -> float | None:
        if self.median_value is not None or not self.samples:
            return self.median_value
        return statistics.median(self.samples)

    def verdict(self) -> str:
        """Judged on the median, the figure a reader can expect; the best is what the machine allows."""
        if self.target is None or self.median is None:
            return ""
        op, value = self.target
        ok = self.median <= value if op in ("<", "<=") else self.median >= value
        return "met" if ok else "missed"


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "%":
        return f"{100 * value:.0f}%"
    if unit == "ratio":
        return f"{value:.3f}"
    if unit in ("GFLOP/s", "MB"):
        return f"{value:,.0f}"
    if unit == "accuracy":
        return f"{value:.4f}"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def fmt_target(target: tuple[str, float] | None, unit: str) -> str:
    if target is None:
        return ""
    op, value = target
    shown = f"{100 * value:.0f}%" if unit == "%" else f"{value:g}"
    return f"{op} {shown}" + ("" if unit in ("%", "ratio") else f" {unit}")


# --- The benchmark ---------------------------------------------------------------------------

def steady_epoch(epoch_seconds: list[float]) -> float:
    """Seconds per epoch once running: the median epoch after the first (which traces the graph)."""
    return statistics.median(epoch_seconds[1:] or epoch_seconds)


class Bench:
    def __init__(self, args: argparse.Namespace, log: Callable[[str], None]):
        self.args = args
        self.log = log
        self.work = Path(tempfile.mkdtemp(prefix="harness-bench-"))
        self.figures: dict[str, Figure] = {}
        self.loads: list[tuple[str, float]] = []
        self.commands: dict[str, str] = {}
        self.facts: dict[str, Any] = {}

    def figure(self, key: str, name: str, unit: str, **kw) -> Figure:
        return self.figures.setdefault(key, Figure(name, unit, **kw))

    def note_load(self, when: str) -> None:
        self.loads.append((when, os.getloadavg()[0]))

    def limits(self) -> list[str]:
        a = self.args
        out = ["--epochs", str(a.epochs)]
        if a.train_limit:
            out += ["--train-limit", str(a.train_limit)]
        if a.test_limit:
            out += ["--test-limit", str(a.test_limit)]
        return out

    # Start-up, data, comparison: cheap, no TensorFlow.
    def startup(self) -> None:
        empty = self.work / "empty"
        empty.mkdir()
        commands = {
            "help": ("`run.py --help`", [PY, "run.py", "--help"], ("<", 1.0)),
            "compare_empty": ("`run.py compare` on an empty folder", [PY, "run.py", "compare", str(empty)], ("<", 1.5)),
            "data_verify": ("`run.py data verify` (warm cache, full SHA-256)", [PY, "run.py", "data", "verify"], None),
        }
        have_compare = (ROOT / "cli" / "compare.py").exists()
        for key, (name, cmd, target) in commands.items():
            self.commands[name] = " ".join(["python", *cmd[1:]]).replace(str(empty), "EMPTY")
            if key == "compare_empty" and not have_compare:
                self.figure(key, name, "s", target=target, note="not measured: cli/compare.py is not in this checkout")
                continue
            tf = imports_tensorflow(cmd[1:])
            self.figure(key, name, "s", target=target, note="imports TensorFlow" if tf else "no TensorFlow import")
        self.note_load("start-up")
        for _ in range(self.args.repeats):
            for key, (name, cmd, _) in commands.items():
                if key == "compare_empty" and not have_compare:
                    continue
                # compare on an empty folder may well exit non-zero ("no runs"); its time is what counts
                self.figures[key].samples.append(run_timed(cmd, check=key != "compare_empty").wall)
            result = run_timed([PY, "-m", "bench.data_load"]).json()
            self.figure("data_load", "warm data load: `load_mnist()` (verified stamp)", "s", target=("<", 0.3),
                        note=f"verified by {result['verified_by']}").samples.append(result["load_seconds"])
            self.figure("data_load_full", "warm data load with full SHA-256 check", "s").samples.append(
                result["full_check_seconds"])

    def comparison(self) -> None:
        folder = self.work / "records"
        start = time.perf_counter()
        generator = run_timed([PY, "-m", "bench.records", str(folder), str(self.args.records)]).json()
        self.facts["records"] = {**generator, "seconds": time.perf_counter() - start}
        name = f"{self.args.records:,} records: `run.py compare`"
        if not (ROOT / "cli" / "compare.py").exists():
            self.figure("compare_records", name, "s", target=("<", 2.0),
                        note="not measured: cli/compare.py is not in this checkout")
            return
        self.commands[name] = "python run.py compare RECORDS"
        fig = self.figure("compare_records", name, "s", target=("<", 2.0) if self.args.records >= 1000 else None,
                          note=f"records by {generator['generator']}")
        self.note_load("comparison")
        for _ in range(self.args.repeats):
            # compare exits non-zero when it finds runs that disagree; it still has compared them all
            fig.samples.append(run_timed([PY, "run.py", "compare", str(folder)], check=False).wall)

    # Training: harness, bare Keras and the GEMM rate, taking turns.
    def training(self) -> None:
        harness_cmd = [PY, "run.py", "--platform", "local", *self.limits()]
        bare_cmd = [PY, "bench/bare_keras.py", *self.limits()]
        machine_cmd = [PY, "-m", "bench.machine", "--n", str(self.args.gemm_n), "--repeats", str(self.args.gemm_repeats)]
        if self.args.train_limit:
            machine_cmd += ["--train-limit", str(self.args.train_limit)]
        self.commands["harness"] = "python " + " ".join(harness_cmd[1:]) + " --runs-dir TMP"
        self.commands["bare Keras"] = "python " + " ".join(bare_cmd[1:])
        self.commands["GEMM rate, FLOPs"] = "python " + " ".join(machine_cmd[1:])
        harness = self.figure("harness_epoch", "harness: seconds per epoch", "s")
        bare = self.figure("bare_epoch", "bare Keras (keras-io way): seconds per epoch", "s")
        first = self.figure("harness_first_epoch", "harness: first epoch (traces the graph)", "s")
        gemm = self.figure("gemm", f"float32 GEMM {self.args.gemm_n}² through TensorFlow", "GFLOP/s", higher=True)
        variants = {v: self.figure(f"variant {v}", f"harness with {v}: seconds per epoch", "s") for v in self.args.variant}
        ratios: list[float] = []
        variant_ratios: dict[str, list[float]] = {v: [] for v in variants}
        # The other Keras backends, and a plain PyTorch loop: each its own row, and its ratio to the
        # harness on TensorFlow measured in the same round.
        others: dict[str, Figure] = {}
        for name in self.args.backends:
            if name == "tensorflow":
                continue
            key = f"backend {name}"
            if not backend_installed(name):
                self.figure(key, f"harness on {name}: seconds per epoch", "s",
                            note=f"not measured: {name} is not installed ({INSTALL_HINT})")
                continue
            others[key] = self.figure(key, f"harness on {name}: seconds per epoch", "s", note=f"KERAS_BACKEND={name}")
            self.commands[f"harness on {name}"] = f"KERAS_BACKEND={name} " + self.commands["harness"]
        if "torch" in self.args.backends:
            if backend_installed("torch"):
                # As a module: run as a script, bench/ would come first on sys.path and bench/profile.py
                # would shadow the standard library's `profile`, which torch._dynamo imports (via cProfile).
                bare_torch_cmd = [PY, "-m", "bench.bare_torch", *self.limits()]
                self.commands["bare PyTorch"] = "python " + " ".join(bare_torch_cmd[1:])
                others["bare_torch"] = self.figure("bare_torch", "bare PyTorch loop: seconds per epoch", "s")
            else:
                self.figure("bare_torch", "bare PyTorch loop: seconds per epoch", "s",
                            note=f"not measured: torch is not installed ({INSTALL_HINT})")
        other_ratios: dict[str, list[float]] = {k: [] for k in others}

        def harness_run(fig: Figure, env: dict[str, str], tag: str) -> Callable[[], None]:
            def run() -> None:
                runs = self.work / f"runs-{tag}-{len(fig.samples)}"
                proc = run_timed([*harness_cmd, "--runs-dir", str(runs)], env=env)
                record = json.loads(next(runs.glob("*/run.json")).read_text())
                seconds = record["timings"]["epoch_seconds"]
                fig.samples.append(steady_epoch(seconds))
                settings = {k: record["determinism"].get(k) for k in
                            ("op_determinism", "jit_compile", "steps_per_execution", "threads")}
                if not env:
                    first.samples.append(seconds[0])
                    self.facts["harness_settings"] = settings
                    self.facts.setdefault("harness_rss_mb", []).append(proc.peak_rss_mb)
                elif "KERAS_BACKEND" in env:
                    self.facts.setdefault("backend_settings", {})[env["KERAS_BACKEND"]] = settings
            return run

        def run_bare() -> None:
            result = run_timed(bare_cmd).json()
            bare.samples.append(steady_epoch(result["epoch_seconds"]))
            self.facts["bare_model"] = {"params": result["params"], "layers": result["layers"]}

        def run_machine() -> None:
            result = run_timed(machine_cmd).json()
            gemm.samples.extend(result["gemm_gflops"])
            self.facts["machine"] = result

        def run_bare_torch() -> None:
            result = run_timed(bare_torch_cmd).json()
            others["bare_torch"].samples.append(steady_epoch(result["epoch_seconds"]))
            self.facts["bare_torch_model"] = {"params": result["params"], "layers": result["layers"]}

        runners = [harness_run(harness, {}, "harness"), run_bare,
                   *(harness_run(fig, dict([v.split("=", 1)]), f"variant{i}") for i, (v, fig) in enumerate(variants.items())),
                   *(harness_run(fig, {"KERAS_BACKEND": key.split()[1]}, key.replace(" ", "-"))
                     for key, fig in others.items() if key.startswith("backend ")),
                   *([run_bare_torch] if "bare_torch" in others else [])]
        for r in range(self.args.repeats):
            # Each round starts with the next runner, so none always runs first (or right after the GEMM).
            for step in runners[r % len(runners):] + runners[:r % len(runners)]:
                step()
            run_machine()
            self.check_same_model()
            ratios.append(harness.samples[-1] / bare.samples[-1])
            for v, fig in variants.items():
                variant_ratios[v].append(fig.samples[-1] / harness.samples[-1])
            for key, fig in others.items():
                other_ratios[key].append(fig.samples[-1] / harness.samples[-1])
            self.note_load(f"training round {r + 1}")
            self.log(f"[bench] round {r + 1}/{self.args.repeats}: harness {harness.samples[-1]:.2f} s/epoch, "
                     f"bare Keras {bare.samples[-1]:.2f} s/epoch, GEMM {max(gemm.samples[-self.args.gemm_repeats:]):.0f} GFLOP/s"
                     + "".join(f", {v} {fig.samples[-1]:.2f} s/epoch" for v, fig in variants.items())
                     + "".join(f", {fig.name.split(':')[0]} {fig.samples[-1]:.2f} s/epoch" for fig in others.values()))

        self.figures["overhead"] = Figure(
            "overhead: harness / bare Keras, per epoch", "ratio", samples=ratios, target=("<=", 1.02),
            note="median of the rounds' paired ratios; best: best harness / best bare")
        self.figures["overhead"].best_value = harness.best / bare.best
        for v, fig in variants.items():
            self.figures[f"variant {v} ratio"] = Figure(
                f"harness with {v} / harness as it is, per epoch", "ratio", samples=variant_ratios[v],
                best_value=fig.best / harness.best, note="paired A/B per round; above 1: slower with the variant")
        for key, fig in others.items():
            self.figures[f"{key} ratio"] = Figure(
                f"{fig.name.split(':')[0]} / harness on tensorflow, per epoch", "ratio", samples=other_ratios[key],
                best_value=fig.best / harness.best, note="paired per round; above 1: slower than TensorFlow")
        flops = self.facts["machine"]["epoch_flops"]
        for key, fig, label in (("harness_gflops", harness, "harness"), ("bare_gflops", bare, "bare Keras")):
            rate = Figure(f"{label}: training GFLOP/s", "GFLOP/s", higher=True,
                          samples=[flops / s / 1e9 for s in fig.samples])
            self.figures[key] = rate
            self.figures[f"{key}_fraction"] = Figure(
                f"{label}: fraction of the GEMM rate", "%", higher=True,
                target=(">=", 0.70) if label == "harness" else None,
                best_value=rate.best / gemm.best, median_value=rate.median / gemm.median,
                note="best / best and median / median")

    def check_same_model(self) -> None:
        """The bare script must train the canonical model, or the ratio compares two experiments."""
        machine = self.facts["machine"]
        harness_layers = [name for name in machine["layers"] if name != "Rescaling"]  # scaling: numpy's job there
        for script, key in (("bench/bare_keras.py", "bare_model"), ("bench/bare_torch.py", "bare_torch_model")):
            bare = self.facts.get(key)
            if bare and (bare["params"] != machine["params"] or bare["layers"] != harness_layers):
                raise BenchError(f"{script} builds another model ({bare['params']:,} parameters, "
                                 f"{bare['layers']}) than the spec ({machine['params']:,}, {harness_layers})")

    def end_to_end(self) -> None:
        cmd = [PY, "run.py", "--platform", "local"]
        a = self.args
        if a.quick:
            cmd += self.limits()
        elif a.e2e_epochs:
            cmd += ["--epochs", str(a.e2e_epochs)]
        self.commands["end to end"] = "python " + " ".join(cmd[1:]) + " --runs-dir TMP"
        runs = self.work / "runs-e2e"
        self.note_load("end to end (before)")
        proc = run_timed([*cmd, "--runs-dir", str(runs)])
        self.note_load("end to end (after)")
        record = json.loads(next(runs.glob("*/run.json")).read_text())
        self.figure("e2e_wall", "end to end: `run.py --platform local`, wall", "s").samples.append(proc.wall)
        self.figure("e2e_accuracy", "end to end: test accuracy", "accuracy", higher=True).samples.append(
            record["metrics"]["test_accuracy"])
        self.figure("e2e_rss", "end to end: peak resident memory", "MB", target=("<", 1536)).samples.append(
            proc.peak_rss_mb)
        self.facts["e2e"] = {"epochs": record["spec"]["epochs"], "n_train": record["data"]["n_train"],
                             "n_test": record["data"]["n_test"], "mean_epoch_seconds": record["timings"]["mean_epoch_seconds"],
                             "total_seconds": record["timings"]["total_seconds"]}

    def machine_facts(self) -> dict[str, Any]:
        cpu = environment.cpu_info()
        try:
            mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal:")) / 1024 ** 2
        except (OSError, StopIteration):
            mem = None
        versions = environment.package_versions()
        return {
            "cpu": cpu["model"], "cores": cpu["logical_cores"], "usable cores": cpu["affinity_cores"],
            "cpu flags (numeric)": " ".join(cpu["numeric_flags"]),
            "memory": f"{mem:.1f} GiB" if mem else "unknown",
            "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(),
            "tensorflow / keras / numpy": f"{versions['tensorflow']} / {versions['keras']} / {versions['numpy']}",
            "jax / torch": f"{versions['jax'] or 'not installed'} / {versions['torch'] or 'not installed'}",
            "harness commit": _commit(),
        }

    def run(self) -> str:
        started = dt.datetime.now(dt.timezone.utc)
        t0 = time.perf_counter()
        self.facts["loadavg_before"] = os.getloadavg()
        self.log(f"[bench] load average {self.facts['loadavg_before'][0]:.2f}; start-up and data ...")
        self.startup()
        self.log("[bench] comparison ...")
        self.comparison()
        self.log("[bench] training: harness, bare Keras and GEMM, alternating ...")
        self.training()
        self.log("[bench] end to end ...")
        self.end_to_end()
        self.facts["loadavg_after"] = os.getloadavg()
        return self.report(started, time.perf_counter() - t0)

    def cleanup(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)

    # --- BENCHMARKS.md -----------------------------------------------------------------------------
    def report(self, started: dt.datetime, seconds: float) -> str:
        a = self.args
        machine = self.machine_facts()
        m = self.facts.get("machine", {})
        lines = [
            "# Benchmarks",
            "",
            f"Written by `{self.invocation()}` on {started:%Y-%m-%d %H:%M} UTC, in {seconds / 60:.1f} minutes. "
            f"Best and median over {a.repeats} round(s); in each round the harness, the bare-Keras script and the "
            "GEMM measurement ran one after the other, in alternating order. Method and profile: "
            "[bench/README.md](bench/README.md).",
            "",
            "## Machine",
            "",
            "| | |",
            "|---|---|",
            *[f"| {k} | {v} |" for k, v in machine.items()],
            f"| load average (1 min) | before {self.facts['loadavg_before'][0]:.2f}; during "
            + ", ".join(f"{v:.2f}" for _, v in self.loads)
            + f"; after {self.facts['loadavg_after'][0]:.2f} |",
            f"| harness training settings | {json.dumps(self.facts.get('harness_settings'))} |",
            *[f"| harness on {name} settings | {json.dumps(v)} |" for name, v in self.facts.get("backend_settings", {}).items()],
            "",
            "## Results",
            "",
            "| figure | best | median | target | verdict | n | note |",
            "|---|---:|---:|---|---|---:|---|",
        ]
        order = ["overhead", "harness_epoch", "bare_epoch", "harness_first_epoch",
                 *(k for k in self.figures if k.startswith("variant ")),
                 *(k for k in self.figures if k.startswith("backend ")), "bare_torch", "bare_torch ratio",
                 "harness_gflops", "bare_gflops",
                 "gemm", "harness_gflops_fraction", "bare_gflops_fraction", "help", "compare_empty", "data_verify",
                 "data_load", "data_load_full", "compare_records", "e2e_wall", "e2e_accuracy", "e2e_rss"]
        for key in order:
            f = self.figures.get(key)
            if f is None:
                continue
            unit = "" if f.unit in ("%", "ratio", "accuracy") else f" {f.unit}"
            n = len(f.samples) if f.samples else ""
            lines.append(f"| {f.name} | {fmt(f.best, f.unit)}{unit if f.best is not None else ''} | "
                         f"{fmt(f.median, f.unit)}{unit if f.median is not None else ''} | "
                         f"{fmt_target(f.target, f.unit)} | {f.verdict()} | {n} | {f.note} |")
        lines += [
            "",
            "## What was measured",
            "",
            f"- Training: {self._sizes()}. Seconds per epoch are the harness's own `timings.epoch_seconds` "
            "(and the same callback in the bare script): the median epoch after the first, which traces the graph; "
            "validation is part of each epoch in both.",
            f"- FLOPs per epoch: {m.get('epoch_flops', 0) / 1e9:,.1f} GFLOP = 3 × 2 × {m.get('forward_macs', 0):,} "
            f"forward multiply-adds per image (Conv2D and Dense layers: "
            + ", ".join(f"{k} {v:,}" for k, v in m.get("layer_macs", {}).items())
            + f") × {m.get('n_train', 0):,} training images + 2 × the same × {m.get('n_validation', 0):,} validation images.",
            f"- GEMM: `tf.linalg.matmul` of two {a.gemm_n}² float32 matrices, {a.gemm_repeats} timed per round after a "
            f"warm-up, with the thread settings training uses ({json.dumps(m.get('threads'))}).",
            "- Start-up figures are wall times of fresh processes, interpreter start included; "
            "\"no TensorFlow import\" is read from `python -X importtime`.",
            "- Warm data load: `core.data.load_mnist()` in a fresh process, after its imports; the cache's verified "
            "stamp vouches for the digests (see `core/data.py: load_cache`). The full-check row hashes all 55 MB.",
            f"- Records for the comparison: {self.facts.get('records', {}).get('generator', 'n/a')}.",
            "- End to end: one `run.py --platform local` process from start to exit; peak resident memory from "
            "`wait4` of that process.",
            "",
            "## Commands",
            "",
            *[f"- {name}: `{cmd}`" for name, cmd in self.commands.items()],
            "",
            "## Raw samples",
            "",
            "```",
            *[f"{key}: {[round(s, 4) for s in f.samples]}" for key, f in self.figures.items() if f.samples],
            f"harness peak RSS MB: {[round(s) for s in self.facts.get('harness_rss_mb', [])]}",
            f"load average per step: {[(w, round(v, 2)) for w, v in self.loads]}",
            "```",
            "",
        ]
        return "\n".join(lines)

    def _sizes(self) -> str:
        a = self.args
        n = a.train_limit or 60000
        return (f"{a.epochs} epoch(s) per run on the first {n:,} training images (90% train, 10% validate)"
                + (f", {a.test_limit:,} test images" if a.test_limit else ", the full test set"))

    def invocation(self) -> str:
        return "python run.py bench " + " ".join(self.args.argv)


def _commit() -> str:
    state = environment.git_state()
    if not state["commit"]:
        return "unknown"
    return state["commit"][:12] + (" (uncommitted changes)" if state["dirty"] else "")
