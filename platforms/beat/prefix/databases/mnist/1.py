"""MNIST rows for BEAT: each protocol set is a range of rows of one npz the harness wrote and verified.

A data unit is `rows_per_unit` consecutive rows (the last one shorter): BEAT fetches every
unit of a database input with one request to its databases_provider process, and one image
per unit made reading the 60,000 training images take longer than training on them on a
loaded machine (60,000 round trips); the order of the rows is the npz's.

The npz (Keras's mnist.npz layout: x_train, y_train, x_test, y_test) is checked against the
SHA-256 the harness wrote into the view's parameters before any row is served, so a BEAT
run reads exactly the arrays whose digests its run record names.
"""
import hashlib
import os
from collections import namedtuple

import numpy

from beat.backend.python.database import View

# One attribute per output (beat.backend.python.database: the index's named tuples).
# Both hold the unit's number: BEAT merges neighbouring entries whose attribute values are
# equal into one data unit (beat/backend/python/data.py, DatabaseOutputDataSource.setup).
Entry = namedtuple("Entry", ["image", "label"])


def unit_rows(parameters, unit):
    """The rows of data unit `unit`: [start + unit * rows_per_unit, ...), never past `stop`."""
    start, stop, size = int(parameters["start"]), int(parameters["stop"]), int(parameters["rows_per_unit"])
    first = start + unit * size
    return first, min(stop, first + size)


class Rows(View):
    def index(self, root_folder, parameters):
        start, stop, size = int(parameters["start"]), int(parameters["stop"]), int(parameters["rows_per_unit"])
        return [Entry(unit, unit) for unit in range(-(-(stop - start) // size))]

    def get(self, output, index):
        x, y = self._arrays()
        first, last = unit_rows(self.parameters, self.objs[index].image)
        if output == "image":
            return {"value": x[first:last]}
        if output == "label":
            return {"value": y[first:last]}
        raise KeyError(output)

    def _arrays(self):
        if getattr(self, "_x", None) is None:
            path = os.path.join(self.root_folder, self.parameters["file"])
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            if h.hexdigest() != self.parameters["sha256"]:
                raise RuntimeError("%s: SHA-256 %s is not the verified file's %s"
                                   % (path, h.hexdigest(), self.parameters["sha256"]))
            member = self.parameters["member"]
            with numpy.load(path, allow_pickle=False) as z:
                self._x, self._y = z["x_" + member], z["y_" + member]
        return self._x, self._y
