"""BEAT analyzer: the test result as BEAT reports it, from BEAT's own data units.

Independent of the harness code on purpose: the harness checks these results against
the run record the test block wrote (same accuracy, confusion matrix and predictions).
The arithmetic is core.experiment.evaluate's: argmax, clipped cross-entropy in float64.
"""
import hashlib
import json

import numpy


class Algorithm:
    def process(self, data_loaders, output):
        loader = data_loaders.loaderOf("probabilities")
        probabilities, labels = [], []
        for i in range(loader.count()):
            data, _, _ = loader[i]
            probabilities.append(data["probabilities"].value)
            labels.append(data["label"].value)
        probabilities = numpy.concatenate(probabilities)  # units of consecutive test images, in order
        labels = numpy.concatenate(labels).astype(numpy.int64)
        predictions = probabilities.argmax(axis=1).astype(numpy.uint8)
        p_true = numpy.clip(probabilities[numpy.arange(len(labels)), labels].astype(numpy.float64), 1e-7, 1 - 1e-7)
        loss = float(-numpy.log(p_true).mean())
        correct = int((predictions == labels).sum())
        accuracy = correct / len(labels)
        confusion = numpy.zeros((10, 10), dtype=numpy.int64)
        numpy.add.at(confusion, (labels, predictions), 1)
        output.write({
            "accuracy": numpy.float32(accuracy),
            "loss": numpy.float32(loss),
            "correct": numpy.int32(correct),
            "n_test": numpy.int32(len(labels)),
            "confusion_matrix": json.dumps(confusion.tolist()),
            "predictions_sha256": hashlib.sha256(numpy.ascontiguousarray(predictions).data).hexdigest(),
            "metrics_json": json.dumps({"test_accuracy": accuracy, "test_loss": loss}),
        }, loader.data_index_end)  # one result spanning every test unit, or BEAT's sink discards it
        return True
