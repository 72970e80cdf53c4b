"""OpenML from this machine: publish a run saved in a record (`run.py push openml RUN_DIR`).

A saved run is the `<record>/openml/` folder that `adapters/openml.py` writes.
Publishing posts its files' bytes (see `publish_saved_run`) after the same
conformance check (`adapters/openml_schema.py`); the record's run.json then
links the flow and the run.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

from adapters import openml_schema as schema
from adapters.openml import (APIKEY_ENV, SAVED_RUN_DIR, OpenMLError, client_errors, get_task, has_api_key,
                             openml_client, run_files, task_splits)
from core.errors import UsageError
from core.record import RUN_JSON, read_run_json, update_run_json


def push_run(run_dir: Path, *, server: str | None = None, cache: str | None = None,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Publish the saved OpenML run of a completed record and link it in run.json; returns the links."""
    record = Path(run_dir).resolve()
    if record.name == SAVED_RUN_DIR and (record.parent / RUN_JSON).is_file():
        record = record.parent
    if not (record / SAVED_RUN_DIR / "description.xml").is_file():
        raise UsageError(f"{run_dir}: no saved OpenML run ({SAVED_RUN_DIR}/description.xml); "
                         "it is written by `run.py --platform openml`")
    run = read_run_json(record)
    if run.get("status") != "completed":
        raise UsageError(f"{record}: the run is {run.get('status')}, not completed; not publishing it")
    openml_client(cache, server)
    links = publish_saved_run(record / SAVED_RUN_DIR, log)
    update_run_json(record, {"links": {"openml": links}})
    log(f"linked in {record / RUN_JSON}: flow {links['flow_id']}, run {links['run_id']}")
    return links


def read_saved_run(folder: Path):
    """A run saved by `save_run`, read back with the client (`OpenMLRun.from_filesystem`)."""
    import xmltodict
    from openml.runs import OpenMLRun

    if (folder / SAVED_RUN_DIR / "description.xml").is_file():
        folder = folder / SAVED_RUN_DIR  # a run record folder
    with client_errors(f"reading the saved OpenML run in {folder}"):
        run = OpenMLRun.from_filesystem(folder, expect_model=False)
        # from_filesystem drops parameter settings of runs whose flow is unpublished; they are in the file.
        description = xmltodict.parse((folder / "description.xml").read_text(),
                                      force_list=("oml:parameter_setting",))["oml:run"]
        if run.flow is None:
            from openml.flows import OpenMLFlow

            run.flow = OpenMLFlow.from_filesystem(folder)
    run.parameter_settings = [{"oml:name": s["oml:name"], "oml:value": s["oml:value"]}
                              for s in description.get("oml:parameter_setting") or []]
    run.description_text = _arff_comment(folder / "predictions.arff")  # else a publish replaces it by the time
    return run


def _arff_comment(path: Path) -> str | None:
    """The leading `%` lines of an ARFF file: liac-arff's `description`."""
    lines = []
    with open(path) as f:
        for line in f:
            if not line.startswith("%"):
                break
            lines.append(line[1:].strip())
    return "\n".join(lines) or None


def missing_predictions(run, task) -> list[str]:
    """Splits of the task the saved run does not cover completely (OpenML evaluates complete runs only)."""
    predicted: dict[tuple[int, int], set[int]] = defaultdict(set)
    for line in run.data_content:
        predicted[(int(line[0]), int(line[1]))].add(int(line[3]))
    missing = []
    for repeat, fold, _, test in task_splits(task):
        got = predicted.get((repeat, fold), set())
        if got != set(test.tolist()):
            missing.append(f"repeat {repeat} fold {fold}: {len(got)} of {len(test)} test rows")
    return missing


def publish_saved_run(folder: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Post a saved run (its flow first, if OpenML does not know it yet); returns the links for run.json.

    What is posted is the saved files' bytes: flow.xml as saved; description.xml is
    rewritten first with the flow id (and the flow id as each parameter's component),
    checked again, saved, and posted as saved; predictions.arff as saved.
    """
    import openml

    if not has_api_key():
        raise OpenMLError(f"no OpenML API key: set {APIKEY_ENV} or `apikey = ...` in "
                          f"{openml.config.determine_config_file_path()}")
    if (folder / SAVED_RUN_DIR / "description.xml").is_file():
        folder = folder / SAVED_RUN_DIR
    run = read_saved_run(folder)
    task = get_task(run.task_id)
    missing = missing_predictions(run, task)
    if missing:
        raise OpenMLError(f"the saved run does not cover task {task.task_id} completely ({'; '.join(missing[:3])}"
                          f"{'; ...' if len(missing) > 3 else ''}); OpenML evaluates complete runs only — "
                          "run again without --openml-folds, --train-limit or --test-limit")
    predictions = (folder / "predictions.arff").read_text()
    server = openml.config.server
    with client_errors(f"publishing to {server}"):
        flow = run.flow
        flow_id = run.flow_id or openml.flows.functions.flow_exists(flow.name, flow.external_version)
        if not flow_id:
            flow_xml = (folder / "flow.xml").read_text()
            schema.check_flow_xml(flow_xml)
            answer = _post("flow/", {"description": ("flow.xml", flow_xml)})
            flow_id = int(answer["oml:upload_flow"]["oml:id"])
        description = run_files(run, task, flow_id)["description.xml"]
        (folder / "description.xml").write_text(description, encoding="ascii")  # the saved file is the posted one
        for warning in schema.upload_size_warnings({"description.xml": len(description.encode()),
                                                    "predictions.arff": len(predictions.encode())}):
            log(f"[openml] warning: {warning}")
        answer = _post("run/", {"description": ("description.xml", description),
                                "predictions": ("predictions.arff", predictions)})
        run_id = int(answer["oml:upload_run"]["oml:run_id"])
    base = server.split("/api/")[0]
    links = {"server": server, "task_id": task.task_id, "flow_id": flow_id, "run_id": run_id,
             "flow_url": f"{base}/f/{flow_id}", "run_url": f"{base}/r/{run_id}"}
    log(f"[openml] published run {run_id} (flow {flow_id}, task {task.task_id}): {links['run_url']}")
    return links


def _post(call: str, files: dict[str, tuple[str, str]]) -> dict:
    """POST files as the client's `OpenMLBase.publish` does (its own request code: key, retries, server errors)."""
    import openml
    import xmltodict

    return xmltodict.parse(openml._api_calls._perform_api_call(call, "post", file_elements=files))
