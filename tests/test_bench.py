"""`run.py bench` at tiny sizes: it runs every measurement and writes a well-formed table.

No timing is asserted (the figures of a quick run mean nothing); the table's shape is.
"""
from __future__ import annotations

import re

import pytest

from tests.conftest import run_cli

ROWS = [
    "overhead: harness / bare Keras, per epoch", "harness: seconds per epoch",
    "bare Keras (keras-io way): seconds per epoch", "harness: first epoch", "harness: training GFLOP/s",
    "bare Keras: training GFLOP/s", "float32 GEMM", "harness: fraction of the GEMM rate",
    "bare Keras: fraction of the GEMM rate", "`run.py --help`", "`run.py compare` on an empty folder",
    "`run.py data verify`", "warm data load: `load_mnist()`", "warm data load with full SHA-256 check",
    "20 records: `run.py compare`", "end to end: `run.py --platform local`, wall", "end to end: test accuracy",
    "end to end: peak resident memory",
]


@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory, mnist):
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
