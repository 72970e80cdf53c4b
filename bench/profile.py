"""Where a training step's time goes: TensorFlow's own profiler, summed by op type and by layer.

    python -m bench.profile [--steps 40] [--spec canonical]

Trains the spec's model as the harness does (uint8 images, one-hot targets, the
harness's compile and thread settings), traces `--steps` steps after a warm-up,
and reads the trace (an XSpace protobuf) with the parser TensorFlow ships. Prints
markdown tables: milliseconds per step of each op type and of each layer
(forward and backward together), as the executor threads saw them. Ops on the
two inter-op threads may overlap, so the sums can exceed the step's wall time.
"""
from __future__ import annotations

import argparse
import collections
import re
import tempfile
import time
from pathlib import Path


def op_times(xplane_file: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds by op type and by layer kind (forward / backward), summed over the executor threads' op events."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(xplane_file.read_bytes())
    by_type: dict[str, float] = collections.defaultdict(float)
    by_layer: dict[str, float] = collections.defaultdict(float)
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if "::" in name or ":" not in name:
                    continue  # the executor's own spans (they enclose the ops), not ops
                path, _, op_type = name.rpartition(":")
                seconds = event.duration_ps / 1e12
                by_type[op_type] += seconds
                by_layer[_layer_kind(path)] += seconds
    return by_type, by_layer


LAYER_KINDS = ("conv2d", "max_pooling2d", "dropout", "dense", "rescaling", "flatten")


def _layer_kind(path: str) -> str:
    """`.../gradient_tape/<model>/conv2d_1/...` -> `conv2d backward`; the optimizer, loss and metrics by name."""
    parts = path.split("/")
    for kind in LAYER_KINDS:
        if any(re.fullmatch(rf"{kind}(_\d+)*", part) for part in parts):
            return f"{kind} {'backward' if 'gradient_tape' in parts else 'forward'}"
    for part, label in (("adam", "Adam update"), ("compile_loss", "loss"), ("compile_metrics", "metrics")):
        if any(p.startswith(part) for p in parts):
            return label + (" backward" if "gradient_tape" in parts else "")
    return "other (loop, data, variables)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--spec", default="canonical")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from core import backend, experiment
    from core.data import load_mnist
    from core.spec import load_spec

    spec = load_spec(args.spec)
    settings = backend.configure(spec.seed, True)
    mnist = load_mnist("cache", log=lambda m: None)
    n = spec.batch_size * args.steps
    x, y = mnist.x_train[:n, ..., None], np.eye(10, dtype=np.float32)[mnist.y_train[:n]]
    model = experiment.build_model(spec)
    model.fit(x[: spec.batch_size * 8], y[: spec.batch_size * 8], batch_size=spec.batch_size, verbose=0)  # trace
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        model.fit(x, y, batch_size=spec.batch_size, epochs=1, verbose=0, shuffle=True)
        wall = time.perf_counter() - start
        tf.profiler.experimental.stop()
        by_type, by_layer = op_times(next(Path(logdir).rglob("*.xplane.pb")))

    per_step = lambda s: 1000 * s / args.steps  # noqa: E731
    total = sum(by_type.values())
    print(f"{args.steps} steps of {spec.batch_size}, {1000 * wall / args.steps:.1f} ms per step (wall, profiler on); "
          f"op time on executor threads {per_step(total):.1f} ms per step. Settings: "
          f"steps_per_execution {settings['steps_per_execution']}, threads {settings['threads']}.\n")
    for title, table in (("op type", by_type), ("layer", by_layer)):
        print(f"| {title} | ms per step | share of op time |\n|---|---:|---:|")
        rows = sorted(table.items(), key=lambda kv: -kv[1])
        for name, seconds in rows[: args.top]:
            print(f"| {name} | {per_step(seconds):.2f} | {100 * seconds / total:.1f}% |")
        rest = sum(s for _, s in rows[args.top:])
        if rest:
            print(f"| (the rest) | {per_step(rest):.2f} | {100 * rest / total:.1f}% |")
        print()


if __name__ == "__main__":
    main()
