"""`run.py bench` at tiny sizes: it runs every measurement and writes a well-formed table.

No timing is asserted (the figures of a quick run mean nothing); the table's shape is.
"""
from __future__ import annotations

import re

import pytest

from bench.runner import Figure, Proc, fmt, fmt_target
from tests.conftest import run_cli

ROWS = [
    "overhead: harness / bare Keras, per epoch", "harness: seconds per epoch",
    "bare Keras (keras-io way): seconds per epoch", "harness: first epoch", "harness: training GFLOP/s",
    "bare Keras: training GFLOP/s", "float32 GEMM", "harness: fraction of the GEMM rate",
    "bare Keras: fraction of the GEMM rate", "`run.py --help`", "`run.py compare` on an empty folder",
    "`run.py data verify`", "warm data load: `load_mnist()`", "warm data load with full SHA-256 check",
    "20 records: `run.py compare`", "end to end: `run.py --platform local`, wall", "end to end: test accuracy",
    "end to end: peak resident memory",
    "harness on jax: seconds per epoch", "harness on torch: seconds per epoch", "bare PyTorch loop: seconds per epoch",
    "harness on jax / harness on tensorflow", "harness on torch / harness on tensorflow",
    "bare PyTorch loop / harness on tensorflow",
]


@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory, mnist, backends_installed):
    out = tmp_path_factory.mktemp("bench") / "BENCHMARKS.md"
    proc = run_cli("bench", "--quick", "--out", str(out), timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out.read_text()


def table_rows(text: str) -> dict[str, list[str]]:
    results = text.split("## Results", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in results.splitlines() if line.startswith("|")]
    assert rows[0] == "| figure | best | median | target | verdict | n | note |"
    assert set(rows[1]) <= set("|-:")  # the separator line; figures start after it
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in row.strip("|").split("|")] for row in rows[2:])}


def test_quick_bench_writes_every_figure(quick_bench):
    for heading in ("# Benchmarks", "## Machine", "## Results", "## What was measured", "## Commands", "## Raw samples"):
        assert heading in quick_bench
    assert "python run.py bench --quick" in quick_bench
    rows = table_rows(quick_bench)
    for name in ROWS:
        assert any(row.startswith(name) for row in rows), f"no row for {name!r}"
    assert any(row.startswith("harness with HARNESS_STEPS_PER_EXECUTION=1") for row in rows)  # the default A/B row
    for name, cells in rows.items():
        assert len(cells) == 6, name
        best, median, target, verdict, n, note = cells
        if best == "n/a":
            assert "not measured" in note, f"{name}: no figure and no reason"
            continue
        for value in (best, median):
            assert re.fullmatch(r"[\d,.]+%?( (s|GFLOP/s|MB))?", value), f"{name}: {value!r}"
        assert verdict in ("", "met", "missed"), name
        assert (verdict == "") == (target == ""), name


def test_quick_bench_figures_are_plausible(quick_bench):
    rows = table_rows(quick_bench)
    row = lambda prefix: next(cells for name, cells in rows.items() if name.startswith(prefix))  # noqa: E731
    accuracy = float(row("end to end: test accuracy")[0])
    assert 0.0 <= accuracy <= 1.0
    assert float(row("end to end: peak resident memory")[0].split()[0].replace(",", "")) > 50  # TensorFlow was loaded
    assert row("`run.py --help`")[5] == "no TensorFlow import"
    assert "verified by" in row("warm data load: `load_mnist()`")[5]
    assert '"steps_per_execution"' in quick_bench  # the harness's settings are shown with the machine
    for name in ("jax", "torch"):
        assert f'| harness on {name} settings |' in quick_bench


def test_figures_reduce_their_samples_and_judge_the_median():
    slow = Figure("s/epoch", "s", samples=[3.0, 1.0, 2.0], target=("<=", 1.5))
    assert (slow.best, slow.median, slow.verdict()) == (1.0, 2.0, "missed")
    rate = Figure("GFLOP/s", "GFLOP/s", samples=[10.0, 30.0], higher=True, target=(">=", 15))
    assert (rate.best, rate.median, rate.verdict()) == (30.0, 20.0, "met")
    assert Figure("derived", "ratio", best_value=1.25).best == 1.25 and Figure("none", "s").verdict() == ""
    assert fmt(0.7, "%") == "70%" and fmt(1234.5, "MB") == "1,234" and fmt(None, "s") == "n/a"
    assert fmt_target(("<", 1.0), "s") == "< 1 s" and fmt_target((">=", 0.7), "%") == ">= 70%"


def test_a_process_result_is_its_last_json_line():
    proc = Proc(["x"], 1.0, 0, 'noise\n{"a": 1}\n{not json\n', "", 10.0)
    assert proc.json() == {"a": 1}
    from bench.runner import BenchError

    with pytest.raises(BenchError, match="no JSON result"):
        Proc(["x"], 1.0, 0, "nothing", "", 10.0).json()
