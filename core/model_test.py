"""`run.py test`: the saved models (model.h5) of several runs on one test set, in one table.

Each model's loss, accuracy and errors, whether it still predicts what its record says,
and where the models disagree with each other. A run without a usable model — not
completed, no model.h5, a model.h5 that does not load or evaluate — is skipped with
its reason, and the others are tested.

Runs come in as loaded records (`results.loaders.LoadedRun`: `.run`, `.source`,
`.predictions()`); this module does not read record folders itself.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Sequence

from core.reports import markdown_table
from core.spec import parse_spec

MODEL_FILE = "model.h5"


def usable_runs(runs: Sequence, skipped: Sequence[tuple[str, str]] = ()) -> tuple[list, list[tuple[str, str]]]:
    """(completed runs that have a model.h5, `skipped` + [(path, reason)] for the others)."""
    usable, out = [], list(skipped)
    for run in runs:
        if run.run.get("status") != "completed":
            out.append((str(run.source), f"status {run.run.get('status')}"))
        elif not (run.source / MODEL_FILE).is_file():
            out.append((str(run.source), f"no {MODEL_FILE}"))
        else:
            usable.append(run)
    return usable, out


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{MODEL_FILE} could not be tested: {type(error).__name__}: {text[0][:300] if text else ''}".rstrip(": ")


@dataclasses.dataclass
class ModelTest:
    """Each model's results on one test set, where the models disagree, and which runs were skipped."""

    runs: list  # LoadedRun
    results: list[dict[str, Any]]
    y: Any  # test labels
    source: str
    digest: str
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    @classmethod
    def evaluate(cls, runs: Sequence, data, skipped: Sequence[tuple[str, str]] = ()) -> "ModelTest":
        """Load and evaluate each run's model on `data`; one that fails is added to `skipped`."""
        import numpy as np

        from core.backend import release_model_memory
        from core.experiment import evaluate

        tested, results, skipped = [], [], list(skipped)
        for run in runs:
            try:
                results.append(cls._test_one(run, data, evaluate))
                tested.append(run)
            except Exception as e:  # noqa: BLE001 — one bad model must not stop the others (issue #17)
                skipped.append((str(run.source), _reason(e)))
            finally:
                release_model_memory()
        return cls(tested, results, np.asarray(data.y_test), data.source, data.digest(), skipped)

    @staticmethod
    def _test_one(run, data, evaluate) -> dict[str, Any]:
        import keras

        spec = parse_spec(run.run["spec"], source=str(run.source))
        model = keras.models.load_model(run.source / MODEL_FILE, compile=False)
        result = evaluate(model, spec, data)
        recorded = run.predictions()
        n = len(result["predictions"])
        if recorded is None or len(recorded) < n:
            same = None  # the record evaluated fewer test images than we did
        else:
            same = int((recorded[:n] != result["predictions"]).sum())
        return {"predictions": result["predictions"], "test_loss": result["test_loss"],
                "test_accuracy": result["test_accuracy"],
                "errors": int((result["predictions"] != data.y_test).sum()),
                "differs_from_record": same}

    def disagreements(self):
        import numpy as np

        preds = np.stack([r["predictions"] for r in self.results])
        pairwise = (preds[:, None, :] != preds[None, :, :]).sum(axis=2)
        any_differ = np.flatnonzero((preds != preds[0]).any(axis=0))
        all_wrong = np.flatnonzero((preds != self.y).all(axis=0))
        return pairwise, any_differ, all_wrong

    def markdown(self, name: str) -> str:
        pairwise, any_differ, all_wrong = self.disagreements()
        n = len(self.y)
        rows = []
        for i, (run, r) in enumerate(zip(self.runs, self.results), 1):
            rec = run.run.get("metrics", {}).get("test_accuracy")
            same = r["differs_from_record"]
            rows.append([f"#{i}", run.run["run_id"], run.run["spec"].get("name", "?"), run.run.get("platform", "?"),
                         f"{r['test_loss']:.4f}", f"{r['test_accuracy']:.4f}", r["errors"],
                         f"{rec:.4f}" if isinstance(rec, (int, float)) else "—",
                         "n/a" if same is None else ("identical" if same == 0 else f"{same} differ")])
        labels = [f"#{i}" for i in range(1, len(self.runs) + 1)]
        matrix = [[labels[i]] + ["—" if i == j else int(pairwise[i, j]) for j in range(len(labels))]
                  for i in range(len(labels))]
        lines = [f"# Test: {name}", "",
                 f"{n} images of the verified MNIST test set ({self.source}; data digest {self.digest[:16]}…).", "",
                 markdown_table(["#", "run", "spec", "platform", "loss", "accuracy", "errors",
                                 "recorded accuracy", "predictions vs record"], rows), "",
                 "Pairwise disagreements (test images where two models predict different digits):", "",
                 markdown_table([""] + labels, matrix), "",
                 f"The models disagree on {len(any_differ)} of {n} images; all of them are wrong on {len(all_wrong)}. "
                 f"Image indices: {name}.json."]
        if self.skipped:
            lines += ["", "Skipped:"] + [f"- {path}: {why}" for path, why in self.skipped]
        return "\n".join(lines)

    def to_dict(self, name: str) -> dict[str, Any]:
        pairwise, any_differ, all_wrong = self.disagreements()
        return {
            "title": f"test {name}", "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "test_set": {"source": self.source, "n_test": len(self.y), "data_digest": self.digest},
            "runs": [{"index": i, "run_id": run.run["run_id"], "record": str(run.source),
                      "spec_name": run.run["spec"].get("name"), "spec_hash": run.run.get("spec_hash"),
                      "test_loss": r["test_loss"], "test_accuracy": r["test_accuracy"], "errors": r["errors"],
                      "recorded_test_accuracy": run.run.get("metrics", {}).get("test_accuracy"),
                      "predictions_differing_from_record": r["differs_from_record"]}
                     for i, (run, r) in enumerate(zip(self.runs, self.results), 1)],
            "pairwise_disagreements": pairwise.tolist(),
            "disagreement_indices": any_differ.tolist(),
            "all_wrong_indices": all_wrong.tolist(),
            "skipped": [{"path": p, "reason": why} for p, why in self.skipped],
        }
