"""This machine's float32 matrix-multiply rate through TensorFlow, and the spec's training FLOPs.

    python -m bench.machine [--spec canonical] [--n 4096] [--repeats 3]

Prints one JSON line. The GEMM runs with the thread settings training uses
(`core.backend.configure_threads`), so the two rates are comparable.
"""
from __future__ import annotations

import argparse
import json
import time


def layer_macs(model) -> dict[str, int]:
    """Multiply-accumulates per image of each Conv2D/Dense layer, from the built model's shapes.

    Pooling, activations, dropout and scaling are left out: they are memory-bound
    and not what a GEMM rate bounds.
    """
    macs = {}
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            _, h, w, filters = layer.output.shape
            kh, kw = layer.kernel_size
            c_in = layer.input.shape[-1] // layer.groups
            macs[layer.name] = h * w * filters * kh * kw * c_in
        elif kind == "Dense":
            macs[layer.name] = layer.input.shape[-1] * layer.units
    return macs


def training_flops(forward_macs: int, n_train: int, n_validation: int) -> int:
    """FLOPs of one epoch: forward + backward (about 3x forward) on the training images,
    forward only on the validation images; one MAC = 2 FLOPs."""
    return 3 * 2 * forward_macs * n_train + 2 * forward_macs * n_validation


def gemm_rates(n: int, repeats: int) -> list[float]:
    """GFLOP/s of `repeats` timed n x n float32 matmuls (after one warm-up)."""
    import tensorflow as tf

    a = tf.random.stateless_uniform((n, n), seed=(1, 2))
    b = tf.random.stateless_uniform((n, n), seed=(3, 4))
    tf.linalg.matmul(a, b).numpy()  # warm-up: kernel selection, page faults
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        tf.linalg.matmul(a, b).numpy()
        rates.append(2 * n ** 3 / (time.perf_counter() - start) / 1e9)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="canonical")
    parser.add_argument("--n", type=int, default=4096, help="matrix size (default 4096)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-limit", type=int)
    args = parser.parse_args()

    from core import backend
    from core.experiment import build_model, split_sizes
    from core.spec import load_spec

    threads = backend.configure_threads()
    spec = load_spec(args.spec, {"data.train_limit": args.train_limit} if args.train_limit else {})
    n_train, n_validation = split_sizes(spec.data.train_limit or 60000, spec.split)
    model = build_model(spec)
    macs = layer_macs(model)
    forward = sum(macs.values())
    print(json.dumps({
        "params": model.count_params(), "layers": [type(layer).__name__ for layer in model.layers],
        "gemm_n": args.n, "gemm_gflops": gemm_rates(args.n, args.repeats), "threads": threads,
        "layer_macs": macs, "forward_macs": forward, "n_train": n_train, "n_validation": n_validation,
        "epoch_flops": training_flops(forward, n_train, n_validation),
    }))


if __name__ == "__main__":
    main()
