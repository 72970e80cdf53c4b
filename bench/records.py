"""Write N synthetic run records for the comparison benchmark.

    python -m bench.records FOLDER N

Uses `results.synthetic.write_synthetic_records` when this checkout has it;
otherwise a minimal generator of its own (records in the schema of
results/SCHEMA.md: run.json and predictions.npy, three specs, varied seeds).
Prints one JSON line naming the generator used.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np


def write_minimal_records(folder: Path, n: int) -> None:
    from core.record import SCHEMA_VERSION, write_json
    from core.spec import load_spec

    specs = [load_spec("canonical", overrides) for overrides in ({}, {"epochs": 6}, {"batch_size": 64})]
    rng = np.random.default_rng(0)
    y_test = rng.integers(0, 10, 10000, dtype=np.uint8)
    for i in range(n):
        spec = specs[i % len(specs)]
        seed = spec.seed + i // len(specs) % 5  # five seeds per spec: some agree, some do not
        run_id = f"20260101T{i // 3600:02d}{i // 60 % 60:02d}{i % 60:02d}Z-local-{spec.hash[:8]}-{i:04x}"
        record = folder / run_id
        record.mkdir(parents=True)
        predictions = np.where(rng.random(10000) < 0.99, y_test, (y_test + 1) % 10).astype(np.uint8)
        np.save(record / "predictions.npy", predictions)
        accuracy = float((predictions == y_test).mean())
        weights = hashlib.sha256(f"{spec.hash}{seed}".encode()).hexdigest()
        write_json(record / "run.json", {
            "schema_version": SCHEMA_VERSION, "run_id": run_id, "platform": "local", "status": "completed",
            "started_at": "2026-01-01T00:00:00+00:00", "finished_at": "2026-01-01T00:02:00+00:00",
            "spec": spec.to_dict(), "spec_hash": spec.hash, "data_digest": "b832ebd06b9ebf4a" + "0" * 48,
            "data": {"source": "synthetic", "n_train": 60000, "n_test": 10000}, "seed": seed,
            "determinism": {"seed": seed, "op_determinism": True}, "environment": {},
            "timings": {"epoch_seconds": [10.0] * spec.epochs, "mean_epoch_seconds": 10.0, "total_seconds": 125.0},
            "metrics": {"test_accuracy": accuracy, "test_loss": 0.03},
            "weights_sha256": weights, "predictions_sha256": hashlib.sha256(predictions.data).hexdigest(),
            "error": None,
        })


def main() -> None:
    folder, n = Path(sys.argv[1]), int(sys.argv[2])
    folder.mkdir(parents=True, exist_ok=True)
    try:
        from results.synthetic import write_synthetic_records
    except ImportError:
        write_minimal_records(folder, n)
        generator = "bench/records.py's minimal generator (results.synthetic is not in this checkout)"
    else:
        write_synthetic_records(folder, n)
        generator = "results.synthetic.write_synthetic_records"
    print(json.dumps({"generator": generator, "n": n}))


if __name__ == "__main__":
    main()
