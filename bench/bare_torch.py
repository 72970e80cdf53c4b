"""The canonical experiment as a plain PyTorch training loop: what a PyTorch user would write instead.

The reference for the harness's torch backend in `run.py bench`: the network,
optimizer, batch size and split of core/specs/canonical.yaml, written the way
PyTorch's own MNIST example is (an nn.Module, a DataLoader-free index loop, Adam,
cross-entropy on logits), and nothing of Keras or the harness. The data comes
straight from the verified cache with numpy and is scaled to float32 once. Each
epoch trains on the first 90% and validates on the rest, as the harness does; it
prints one JSON line (epoch seconds, test accuracy) for the benchmark to read.

    python -m bench.bare_torch --epochs 3 [--train-limit N] [--test-limit N] [--cache PATH]

(as a module, from the repository root: as a script, bench/profile.py would shadow the standard
library's `profile`, which torch imports.)
"""
import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=12)
parser.add_argument("--train-limit", type=int)
parser.add_argument("--test-limit", type=int)
parser.add_argument("--seed", type=int, default=42)
parser.add_argument("--cache", type=Path, default=Path(
    os.environ.get("MNIST_HARNESS_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "mnist-harness") / "mnist-uint8.npz")
args = parser.parse_args()

import torch  # noqa: E402 — after argparse, so --help stays quick
from torch import nn  # noqa: E402

torch.manual_seed(args.seed)
# The harness sizes torch's pool to the usable cores (core/backend.py); the same here, so the
# comparison is of the training loops, not of thread counts.
torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
batch_size = 128

with np.load(args.cache) as f:
    x_all, y_all = f["x_train"][:args.train_limit], f["y_train"][:args.train_limit]
    x_test, y_test = f["x_test"][:args.test_limit], f["y_test"][:args.test_limit]
n_train = int(round(len(x_all) * 0.9))


def tensors(x, y):
    # (N, 28, 28) uint8 -> (N, 1, 28, 28) float32 in [0, 1]: PyTorch's channels-first layout.
    return torch.from_numpy(x.astype(np.float32) / 255).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


x_train, y_train = tensors(x_all[:n_train], y_all[:n_train])
x_val, y_val = tensors(x_all[n_train:], y_all[n_train:])
x_test, y_test = tensors(x_test, y_test)


class Net(nn.Module):
    """The canonical model (core/specs/canonical.yaml), layer for layer."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Dropout(0.25), nn.Flatten(),
            nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(128, 10),  # logits: the softmax is inside the loss, as PyTorch users write it
        )

    def forward(self, x):
        return self.features(x)


model = Net()
# Keras's Adam defaults (epsilon 1e-7), so only the framework differs.
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
loss_fn = nn.CrossEntropyLoss()


def evaluate(x, y):
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(x[i:i + 256]) for i in range(0, len(x), 256)])
    return float(loss_fn(logits, y)), float((logits.argmax(1) == y).float().mean())


epoch_seconds = []
for epoch in range(args.epochs):
    start = time.perf_counter()
    model.train()
    order = torch.randperm(len(x_train))
    for i in range(0, len(x_train), batch_size):
        idx = order[i:i + batch_size]
        optimizer.zero_grad()
        loss = loss_fn(model(x_train[idx]), y_train[idx])
        loss.backward()
        optimizer.step()
    if len(x_val):
        evaluate(x_val, y_val)  # validation is part of the harness's epoch too
    epoch_seconds.append(time.perf_counter() - start)

test_loss, test_accuracy = evaluate(x_test, y_test)
# Layer names in Keras's terms, for the benchmark's same-model check (activations are inside Keras layers).
KERAS_NAMES = {"Conv2d": "Conv2D", "MaxPool2d": "MaxPooling2D", "Dropout": "Dropout", "Flatten": "Flatten",
               "Linear": "Dense"}
print(json.dumps({"epoch_seconds": epoch_seconds, "test_loss": test_loss, "test_accuracy": test_accuracy,
                  "params": sum(p.numel() for p in model.parameters()),
                  "layers": [KERAS_NAMES[type(m).__name__] for m in model.features if type(m).__name__ in KERAS_NAMES],
                  "threads": torch.get_num_threads()}))
