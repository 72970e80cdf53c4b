"""The canonical experiment written the plain keras-io way, as the baseline of `run.py bench`.

keras-io's examples/vision/mnist_convnet.py, top to bottom, with the model, data
and batch size of core/specs/canonical.yaml and nothing of the harness: the
arrays come straight from the verified cache with numpy, are scaled to float32
in numpy, and `model.fit` runs with Keras's defaults. It prints one JSON line
(epoch seconds, test accuracy) for the benchmark to read.

    python bench/bare_keras.py --epochs 3 [--train-limit N] [--test-limit N] [--cache PATH]
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

import keras  # noqa: E402 — after argparse, so --help stays quick
from keras import layers  # noqa: E402

keras.utils.set_random_seed(args.seed)

# Model / data parameters
num_classes = 10
input_shape = (28, 28, 1)
batch_size = 128

# Load the data and split it between train and test sets
with np.load(args.cache) as f:
    x_train, y_train = f["x_train"][:args.train_limit], f["y_train"][:args.train_limit]
    x_test, y_test = f["x_test"][:args.test_limit], f["y_test"][:args.test_limit]

# Scale images to the [0, 1] range and make sure they have shape (28, 28, 1)
x_train = np.expand_dims(x_train.astype("float32") / 255, -1)
x_test = np.expand_dims(x_test.astype("float32") / 255, -1)

# Convert class vectors to binary class matrices
y_train = keras.utils.to_categorical(y_train, num_classes)
y_test = keras.utils.to_categorical(y_test, num_classes)

# The canonical model (core/specs/canonical.yaml)
model = keras.Sequential([
    keras.Input(shape=input_shape),
    layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
    layers.MaxPooling2D(pool_size=(2, 2)),
    layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
    layers.MaxPooling2D(pool_size=(2, 2)),
    layers.Dropout(0.25),
    layers.Flatten(),
    layers.Dense(128, activation="relu"),
    layers.Dropout(0.5),
    layers.Dense(num_classes, activation="softmax"),
])


class EpochTimer(keras.callbacks.Callback):
    """Wall seconds of each epoch, measured as the harness measures them."""

    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


# Train the model
timer = EpochTimer()
model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
model.fit(x_train, y_train, batch_size=batch_size, epochs=args.epochs, validation_split=0.1, callbacks=[timer])

# Evaluate the trained model
score = model.evaluate(x_test, y_test, verbose=0)
print(json.dumps({"epoch_seconds": timer.seconds, "test_loss": score[0], "test_accuracy": score[1],
                  "params": model.count_params(), "layers": [type(layer).__name__ for layer in model.layers]}))
