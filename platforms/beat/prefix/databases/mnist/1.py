"""MNIST rows for BEAT: each protocol set is a range of rows of one npz the harness wrote and verified.

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
# Both hold the row number: BEAT merges neighbouring entries whose attribute values are
# equal into one data unit (beat/backend/python/data.py, DatabaseOutputDataSource.setup),
# so two neighbouring images of the same digit would otherwise share one label unit.
Entry = namedtuple("Entry", ["image", "label"])


class Rows(View):
    def index(self, root_folder, parameters):
        return [Entry(row, row) for row in range(int(parameters["start"]), int(parameters["stop"]))]

    def get(self, output, index):
        x, y = self._arrays()
        row = self.objs[index].image
        if output == "image":
            return {"value": x[row]}
        if output == "label":
            return {"value": numpy.uint8(y[row])}
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
