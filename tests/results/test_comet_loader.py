"""Reading Comet offline archives back into run records (no TensorFlow; archives written by the real comet_ml)."""
from __future__ import annotations

import shutil
import socket
import zipfile
from pathlib import Path

import pytest

from core.spec import load_spec
from results.loaders import LoaderError, discover
from core.record import flatten
from results.loaders.comet import (CometArchiveLoader, fetch_experiment, is_archive, read_archive,
                                   unflatten, value_from_text)

SPEC = load_spec("canonical", {"epochs": 2})
HISTORY = {"accuracy": [0.5, 0.75], "loss": [1.25, 0.5], "val_accuracy": [0.6, 0.8], "val_loss": [1.0, 0.625]}


@pytest.fixture(scope="module")
def comet_ml(tmp_path_factory):
    """comet_ml without a key, a config file or a reachable server."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("COMET_API_KEY", "COMET_CONFIG", "COMET_INI", "COMET_WORKSPACE", "COMET_PROJECT_NAME"):
            mp.delenv(name, raising=False)
        home = tmp_path_factory.mktemp("home")
        mp.setenv("HOME", str(home))
        mp.chdir(home)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            mp.setenv("COMET_URL_OVERRIDE", f"http://127.0.0.1:{s.getsockname()[1]}/clientlib/")
        for name, value in {"COMET_DISABLE_AUTO_LOGGING": "1", "COMET_ERROR_TRACKING_ENABLE": "false",
                            "COMET_HTTP_SESSION_RETRY_TOTAL": "0"}.items():
            mp.setenv(name, value)
        import comet_ml

        yield comet_ml


@pytest.fixture(scope="module")
def archive(comet_ml, tmp_path_factory) -> Path:
    """An archive logged the way adapters/comet.py logs a run, without training one."""
    folder = tmp_path_factory.mktemp("archive")
    exp = comet_ml.OfflineExperiment(project_name="loader-test", offline_directory=str(folder),
                                     auto_metric_logging=False, auto_param_logging=False, auto_output_logging=False,
                                     parse_args=False, log_code=False, log_git_metadata=False, log_git_patch=False,
                                     log_env_details=False, display_summary_level=0)
    exp.log_parameters(flatten(SPEC.to_dict()))
    for epoch in (1, 2):
        exp.log_metrics({k: v[epoch - 1] for k, v in HISTORY.items()}, epoch=epoch, step=3 * epoch)
        exp.log_metric("epoch_seconds", 1.5 * epoch, epoch=epoch, step=3 * epoch)
    exp.log_metrics({"test_accuracy": 0.875, "test_loss": 0.375}, epoch=2, step=6)
    exp.log_others({"run_id": "20260101T000000Z-comet-x", "status": "completed", "spec_hash": SPEC.hash,
                    "data_digest": "d" * 64, "seed": 42, "weights_sha256": "w" * 64, "schema_version": 1,
                    "data.n_train": 300, "timings.total_seconds": 9.5})
    exp.log_asset_data({"python": "3.11"}, name="environment.json")
    exp.end()
    (path,) = [p for p in folder.glob("*.zip") if is_archive(p)]
    return path


def test_flatten_and_unflatten_are_inverse():
    spec = SPEC.to_dict()
    flat = flatten(spec)
    assert flat["layers.0.filters"] == 32 and flat["optimizer.learning_rate"] == 0.001 and flat["data.path"] is None
    assert all(not isinstance(v, (dict, list)) for v in flat.values())
    assert unflatten(flat) == spec
    assert unflatten(flatten({"claims": [], "args": {}, "k": [3, 3]})) == {"claims": [], "args": {}, "k": [3, 3]}


def test_archive_becomes_a_run_record(archive):
    (loaded,) = CometArchiveLoader().load(archive)
    run = loaded.run
    assert run["platform"] == "comet" and run["status"] == "completed" and run["run_id"] == "20260101T000000Z-comet-x"
    assert run["spec"] == SPEC.to_dict() and run["spec_hash"] == SPEC.hash
    assert run["history"] == HISTORY
    assert run["metrics"] == {"test_accuracy": 0.875, "test_loss": 0.375, **{f"final_{k}": v[-1] for k, v in HISTORY.items()}}
    assert run["timings"] == {"total_seconds": 9.5, "epoch_seconds": [1.5, 3.0]}
    assert run["data"] == {"n_train": 300} and run["seed"] == 42 and run["environment"] == {"python": "3.11"}
    assert run["links"]["comet"]["experiment_key"] == archive.stem
    assert loaded.predictions() is None  # this archive logged none


def test_discover_finds_archives_in_folders_and_skips_tampered_ones(archive, tmp_path):
    shutil.copy(archive, tmp_path / archive.name)
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "messages.json":
                data = data.replace(b'"paramName":"seed","paramValue":42', b'"paramName":"seed","paramValue":43')
                assert b'"paramValue":43' in data
            dst.writestr(item, data)
    runs, skipped = discover([tmp_path])
    assert [r.source.name for r in runs] == [archive.name]
    assert [(s.path.name, "spec hash" in s.reason) for s in skipped] == [("tampered.zip", True)]


def test_only_comet_archives_are_recognised(tmp_path):
    other = tmp_path / "kernel-output.zip"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("run.json", "{}")
    (tmp_path / "notes.zip").write_text("not a zip")
    assert not is_archive(other) and not is_archive(tmp_path / "notes.zip") and not is_archive(tmp_path)


def test_an_archive_not_logged_by_the_harness_is_skipped_with_a_reason(comet_ml, tmp_path):
    exp = comet_ml.OfflineExperiment(offline_directory=str(tmp_path), auto_output_logging=False, parse_args=False,
                                     log_code=False, log_git_metadata=False, log_env_details=False,
                                     display_summary_level=0)
    exp.log_metric("loss", 1.0)
    exp.end()
    runs, skipped = discover([tmp_path])
    assert runs == [] and "not one logged by this harness" in skipped[0].reason
    with pytest.raises(LoaderError):
        read_archive(tmp_path / "missing.zip")


def test_values_from_the_rest_api_get_their_types_back():
    assert [value_from_text(t) for t in ("0.001", "32", "true", "True", "None", "null", "relu", "[]", 7)] == \
           [0.001, 32, True, True, None, None, "relu", [], 7]


def test_fetching_by_key_needs_a_key(comet_ml):
    with pytest.raises(LoaderError, match="COMET_API_KEY"):
        fetch_experiment("0123456789abcdef0123456789abcdef")


def test_fetching_from_an_unreachable_server_is_one_readable_error(comet_ml, monkeypatch):
    fake = "FAKEKEY_loader_SHOULD_NOT_LEAK"
    monkeypatch.setenv("COMET_API_KEY", fake)
    with pytest.raises(LoaderError, match="could not fetch Comet experiment") as e:
        fetch_experiment("0123456789abcdef0123456789abcdef")
    assert fake not in str(e.value)
