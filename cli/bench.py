"""`run.py bench`: parse the options and run the benchmark (bench/runner.py), written to BENCHMARKS.md."""
from __future__ import annotations

import argparse
from pathlib import Path

from bench.runner import DEFAULT_VARIANTS, RECORD_COUNT, ROOT, Bench
from core.backend import BACKENDS
from core.errors import UsageError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run.py bench", description="Benchmark the harness against bare Keras and this machine's limits; writes BENCHMARKS.md.",
                                epilog="A full run takes about 10 minutes on a quiet 2-core machine. "
                                       "Run it when nothing else runs: every figure is a wall time.")
    p.add_argument("--repeats", type=int, default=3, help="rounds of every measurement (default 3)")
    p.add_argument("--epochs", type=int, default=2,
                   help="epochs per training run in the overhead rounds; the first (graph tracing) is excluded, so 2 gives one steady epoch per run (default 2)")
    p.add_argument("--train-limit", type=int, help="train on the first N training images (default: all 60,000)")
    p.add_argument("--test-limit", type=int, help="evaluate on the first N test images (default: all 10,000)")
    p.add_argument("--e2e-epochs", type=int, help="epochs of the end-to-end run (default: the canonical spec's)")
    p.add_argument("--records", type=int, default=RECORD_COUNT, help=f"records to compare (default {RECORD_COUNT})")
    p.add_argument("--variant", action="append", metavar="ENV=VALUE",
                   help="also run the harness with this environment variable in every round, as an A/B row "
                        f"(repeatable; default: {' '.join(DEFAULT_VARIANTS)}, what several steps per call buys; "
                        "'none' for no variant)")
    p.add_argument("--backends", default=",".join(BACKENDS), metavar="A,B,...",
                   help=f"Keras backends to run the harness on, each a row with its ratio to TensorFlow; with torch "
                        f"also a plain PyTorch loop (bench/bare_torch.py). Default: {','.join(BACKENDS)} (those not "
                        "installed are listed as not measured)")
    p.add_argument("--gemm-n", type=int, default=4096, help="GEMM matrix size (default 4096)")
    p.add_argument("--gemm-repeats", type=int, default=3, help="timed GEMMs per round (default 3)")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes, to check the benchmark itself: 1 round, 2 epochs on 512 images, 20 records; "
                        "the figures mean nothing")
    p.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md", help="where to write (default BENCHMARKS.md)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder of records and runs")
    return p


def main(command: str, argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(argv)
    if args.quick:
        args.repeats = 1
        args.epochs = min(args.epochs, 2)
        args.train_limit = args.train_limit or 512
        args.test_limit = args.test_limit or 256
        args.records = min(args.records, 20)
        args.gemm_n = min(args.gemm_n, 512)
        args.gemm_repeats = 1
    for name in ("repeats", "epochs", "records", "gemm_n", "gemm_repeats"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in args.backends:
        if b not in BACKENDS:
            raise UsageError(f"--backends: {b!r} is not a backend; valid backends are {', '.join(BACKENDS)}")
    args.variant = [] if args.variant == ["none"] else (args.variant or list(DEFAULT_VARIANTS))
    for v in args.variant:
        if "=" not in v or not v.split("=", 1)[0].isidentifier():
            raise UsageError(f"--variant {v!r}: expected ENV=VALUE, e.g. HARNESS_INTER_OP_THREADS=1")
    bench = Bench(args, log=print)
    try:
        text = bench.run()
    finally:
        if args.keep:
            print(f"[bench] kept {bench.work}")
        else:
            bench.cleanup()
    args.out.write_text(text)
    print(f"[bench] wrote {args.out}")
    return 0
