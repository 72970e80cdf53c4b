"""A saved OpenML run of the harness (description.xml, predictions.arff, flow.xml) as a run record.

`run.py --platform openml` saves one inside each record (`<record>/openml/`);
the same files can be copied anywhere, or fetched from the server by run id
(`load_openml_run`). The flow's parameters are the spec's keys (see
adapters/openml.py), so the spec and its hash are rebuilt exactly. An OpenML
run follows its task's protocol (task 3573: 10-fold cross-validation over all
70,000 rows), never the official 60,000/10,000 split, so it gets per-split
accuracies (`openml_split_accuracy`, `openml_predictive_accuracy`), never a
`test_accuracy` or test-set predictions. XML and ARFF are read with xmltodict
and liac-arff; `openml` is imported only to fetch by id.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from core.record import SCHEMA_VERSION
from core.spec import canonical_json
from results.loaders import LoadedRun, Loader, LoaderError

FLOW_PREFIX = "mnist_harness.keras.Sequential"  # as adapters/openml.py names the harness's flows
FILES = ("description.xml", "predictions.arff")


@dataclasses.dataclass
class SavedRun:
    """What a harness OpenML run holds, wherever it was read from."""

    task_id: int
    flow_name: str
    flow_external_version: str | None
    parameters: dict[str, str]  # name -> JSON value: the run's settings, else the flow's defaults
    predictions: dict[str, Any]  # liac-arff's decoded predictions.arff
    run_id: int | None = None
    flow_id: int | None = None
    uploader: str | None = None


class OpenMLRunLoader(Loader):
    name = "openml"

    def recognizes(self, path: Path) -> bool:
        return path.is_dir() and all((path / f).is_file() for f in FILES)

    def load(self, path: Path) -> list[LoadedRun]:
        import arff
        import xmltodict
        from xml.parsers.expat import ExpatError

        try:
            description = xmltodict.parse((path / "description.xml").read_text(),
                                          force_list=("oml:parameter_setting",))["oml:run"]
            flow = None
            if (path / "flow.xml").is_file():
                flow = xmltodict.parse((path / "flow.xml").read_text(), force_list=("oml:parameter",))["oml:flow"]
            with open(path / "predictions.arff") as f:
                predictions = arff.load(f)
        except (OSError, UnicodeDecodeError, ExpatError, KeyError, TypeError, arff.ArffException) as e:
            raise LoaderError(f"not a readable saved OpenML run ({type(e).__name__}: {e})") from None
        if flow is None:
            raise LoaderError("saved OpenML run without flow.xml (its flow was published; "
                              "load it by run id with results.loaders.openml.load_openml_run)")
        parameters = {p["oml:name"]: p.get("oml:default_value") for p in flow.get("oml:parameter") or []}
        settings = {s["oml:name"]: s["oml:value"] for s in description.get("oml:parameter_setting") or []}
        saved = SavedRun(task_id=int(description["oml:task_id"]), flow_name=flow.get("oml:name", ""),
                         flow_external_version=flow.get("oml:external_version"),
                         parameters={**parameters, **settings}, predictions=predictions,
                         run_id=_int(description.get("oml:run_id")), flow_id=_int(flow.get("oml:id")))
        return [to_loaded_run(saved, path, self.name)]


def load_openml_run(run_id: int, cache: str | Path | None = None) -> LoadedRun:
    """A published harness run, fetched by id from the configured OpenML server (or the openml cache)."""
    try:
        import arff
        import openml
        import requests
    except ImportError:
        raise LoaderError("loading an OpenML run by id needs the openml client: pip install openml==0.15.1") from None
    if cache:
        openml.config.set_root_cache_directory(Path(cache).expanduser().resolve())
    try:
        run = openml.runs.get_run(int(run_id))
        flow = openml.flows.get_flow(run.flow_id)
        if run.predictions_url is None:
            raise LoaderError(f"OpenML run {run_id} has no predictions file")
        predictions = arff.loads(openml._api_calls._download_text_file(run.predictions_url))
    except (requests.exceptions.RequestException, openml.exceptions.PyOpenMLError, ValueError, OSError) as e:
        raise LoaderError(f"OpenML run {run_id} from {openml.config.server}: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}") from None
    settings = {s["oml:name"]: s["oml:value"] for s in run.parameter_settings or []}
    saved = SavedRun(task_id=run.task_id, flow_name=flow.name, flow_external_version=flow.external_version,
                     parameters={**flow.parameters, **settings}, predictions=predictions, run_id=run.run_id,
                     flow_id=flow.flow_id, uploader=run.uploader_name)
    return to_loaded_run(saved, Path(f"openml-run-{run_id}"), "openml")


def to_loaded_run(saved: SavedRun, source: Path, loader: str) -> LoadedRun:
    """The run.json-shaped record of a harness OpenML run."""
    experiment = spec_from_flow(saved.flow_name, saved.parameters)
    name = re.search(r"spec_name: ([^;\s]+)", saved.predictions.get("description") or "")
    spec = {"name": name.group(1) if name else "openml", "description": "", **experiment, "claims": []}
    columns = [name for name, _ in saved.predictions["attributes"]]
    try:
        col = {name: columns.index(name) for name in ("repeat", "fold", "row_id", "prediction", "correct")}
        for d in range(10):
            columns.index(f"confidence.{d}")
    except ValueError as e:
        raise LoaderError(f"predictions.arff is not a classification run's predictions ({e})") from None
    lines = saved.predictions["data"]
    splits: dict[tuple[int, int], list] = {}
    for line in lines:
        splits.setdefault((int(line[col["repeat"]]), int(line[col["fold"]])), []).append(line)
    accuracy = {f"repeat {r} fold {f}": float(np.mean([l[col["prediction"]] == l[col["correct"]] for l in ls]))
                for (r, f), ls in sorted(splits.items())}
    metrics: dict[str, Any] = {"openml_predictive_accuracy": float(np.mean(list(accuracy.values()))) if accuracy else None,
                               "openml_splits": len(splits)}
    data = {"source": f"OpenML task {saved.task_id}", "n_train": None, "n_test": len(lines)}
    digest = hashlib.sha256(canonical_json([saved.task_id, saved.flow_name, lines]).encode()).hexdigest()
    run_id = f"openml-run-{saved.run_id}" if saved.run_id else f"openml-task{saved.task_id}-{digest[:12]}"
    links = {k: v for k, v in {"task_id": saved.task_id, "flow_id": saved.flow_id, "run_id": saved.run_id,
                               "uploader": saved.uploader}.items() if v is not None}
    record = {
        "schema_version": SCHEMA_VERSION, "run_id": run_id, "platform": "openml", "status": "completed",
        "error": None, "started_at": None, "finished_at": None,
        "spec": spec, "spec_hash": _spec_hash(experiment),
        "data_digest": None, "data": data, "seed": spec.get("seed"), "determinism": {},
        "environment": {"openml": {"flow": saved.flow_name, "external_version": saved.flow_external_version}},
        "timings": {}, "metrics": metrics, "openml_split_accuracy": accuracy,
        "weights_sha256": None, "predictions_sha256": None,
        "links": {"openml": links},
    }
    return LoadedRun(run=record, source=source, loader=loader)


def spec_from_flow(flow_name: str, parameters: dict[str, str]) -> dict[str, Any]:
    """The spec's `experiment_dict()` (all but name, description, claims) from a harness flow and its settings."""
    match = re.fullmatch(re.escape(FLOW_PREFIX) + r"\(([A-Za-z0-9_,]+)\)", flow_name or "")
    if not match:
        raise LoaderError(f"flow {flow_name!r} was not made by the mnist harness "
                          f"(or names its layers by digest, so they cannot be read back)")
    try:
        values = {name: json.loads(value) for name, value in parameters.items()}
    except (TypeError, json.JSONDecodeError) as e:
        raise LoaderError(f"flow parameters are not the harness's JSON values ({e})") from None
    spec: dict[str, Any] = {"layers": [{"type": t} for t in match.group(1).split(",")]}
    for name, value in values.items():
        node, parts = spec, name.split(".")
        for i, part in enumerate(parts[:-1]):
            if part.isdigit():
                if int(part) >= len(node):
                    raise LoaderError(f"flow parameter {name} names a layer the flow does not have")
                node = node[int(part)]
            else:
                node = node.setdefault(part, [] if parts[i + 1].isdigit() else {})
        node[parts[-1]] = value
    return spec


def _spec_hash(spec: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of the spec, as `ExperimentSpec.hash` computes it."""
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()


def _int(value: Any) -> int | None:
    return int(value) if value not in (None, "") else None
