"""The MNIST test labels, for the right/wrong counts of a prediction agreement.

Read lazily from the harness's verified data cache with numpy alone (no
TensorFlow, no download): compare must work, minus those counts, on a machine
that has the records but not the data.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from core import data


class TestLabels:
    """Labels of the first n test images, for records whose data digest proves they used them.

    What it reads is kept per cache file for the life of the process: official
    MNIST does not change, and tests compare many times.
    """

    __test__ = False  # not a pytest class, despite the name
    _known: dict[tuple[str, str], Any] = {}  # (cache file, what) -> labels, digest, or the problem

    def __init__(self) -> None:
        self.path = data.cache_dir() / data.CACHE_FILE
        self.problem: str | None = None  # why labels are unavailable, once we know

    def _remember(self, what: str, make):
        key = (str(self.path), what)
        if key not in self._known:
            self._known[key] = make()
        return self._known[key]

    def y_test(self) -> np.ndarray | None:
        """All 10,000 verified test labels, or None (and `problem` says why)."""
        y = self._remember("y_test", self._read_y_test)
        if isinstance(y, str):
            self.problem = y
            return None
        return y

    def _read_y_test(self) -> np.ndarray | str:
        try:
            with np.load(self.path, allow_pickle=False) as z:
                y = z["y_test"]  # one member of the archive: a few kB, no need for the images
        except (OSError, KeyError, ValueError) as e:
            return (f"the MNIST test labels are not in the data cache {self.path} ({type(e).__name__}); "
                    "`python run.py data fetch` puts them there")
        if y.shape != data.SHAPES["y_test"] or data.array_sha256(y) != data.DIGESTS["y_test"]:
            return f"the test labels in {self.path} fail their SHA-256 check; `python run.py data fetch` repairs it"
        return y

    def expected_digest(self, n_train: int, n_test: int) -> str | None:
        """The data digest of official MNIST cut to the first n_train / n_test images."""
        if (n_train, n_test) == (60000, 10000):
            return data.FULL_DIGEST
        mnist = self._remember("mnist", self._read_mnist)
        if isinstance(mnist, str):
            self.problem = mnist
            return None
        return self._remember(f"digest {n_train} {n_test}", lambda: mnist.limited(n_train, n_test).digest())

    def _read_mnist(self) -> data.Mnist | str:
        try:
            return data.load_cache(self.path.parent)  # verifies all four arrays; needed only for cut data
        except data.DataError as e:
            return f"MNIST is not in the data cache ({e})"

    def for_run(self, run: dict[str, Any], n_predictions: int) -> tuple[np.ndarray | None, str | None]:
        """(labels of the run's test images, None) or (None, why the labels are unknown)."""
        y = self.y_test()
        if y is None:
            return None, self.problem
        info = run.get("data") if isinstance(run.get("data"), dict) else {}
        n_train, n_test = info.get("n_train"), info.get("n_test")
        if not isinstance(n_train, int) or not isinstance(n_test, int):
            return None, "the record does not say how many images it used"
        if n_test != n_predictions:
            return None, f"the record used {n_test} test images but holds {n_predictions} predictions"
        expected = self.expected_digest(n_train, n_test)
        if expected is None:
            return None, self.problem
        if run.get("data_digest") != expected:
            return None, "its data digest is not official MNIST's first images, so its test labels are unknown"
        return y[:n_test], None
