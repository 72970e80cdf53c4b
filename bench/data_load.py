"""The warm-cache data load, in a fresh process: `load_mnist()` as a run does it, then with the full hash.

    python -m bench.data_load

Prints one JSON line: seconds to import core.data, to load through the verified
stamp (what a training run pays), and to load with every array SHA-256-checked.
"""
import json
import time

start = time.perf_counter()
from core import data  # noqa: E402

imported = time.perf_counter()
mnist = data.load_mnist("cache")
loaded = time.perf_counter()
data.load_mnist("cache", full_check=True)
checked = time.perf_counter()
print(json.dumps({"import_seconds": imported - start, "load_seconds": loaded - imported,
                  "verified_by": mnist.verified_by, "full_check_seconds": checked - loaded}))
