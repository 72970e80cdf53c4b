"""Hand-built records (results.synthetic) and the real MNIST test labels for the results tests."""
from __future__ import annotations

import numpy as np
import pytest

from core.spec import load_spec
from results.testset import TestLabels


@pytest.fixture(scope="session")
def y_test() -> np.ndarray:
    y = TestLabels().y_test()
    if y is None:
        pytest.skip("MNIST is not in the data cache (make test runs `python run.py data fetch` first)")
    return y


@pytest.fixture
def small_spec():
    """The canonical spec cut to 1 epoch on 300/200 images, as the local-platform tests run it."""
    return load_spec("canonical", {"epochs": 1, "data.train_limit": 300, "data.test_limit": 200})
