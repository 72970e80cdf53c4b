"""Each output format of `run.py compare`, the CLI around it, and that it never imports TensorFlow."""
from __future__ import annotations

import base64
import csv
import io
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from core.spec import load_spec
from results.compare import VERDICTS, compare_paths
from results.render import CSV_COLUMNS, render_csv, render_json, render_markdown, render_text
from results.synthetic import START, write_partial, write_record

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mix(tmp_path_factory):
    """Two seeds, a rerun, a GPU run, a changed setting, a failed run, a corrupt folder, a killed run."""
    import datetime as dt

    from results.testset import TestLabels

    y = TestLabels().y_test()
    if y is None:
        pytest.skip("MNIST is not in the data cache (make test runs `python run.py data fetch` first)")
    folder = tmp_path_factory.mktemp("mix")
    spec = load_spec("canonical", {"epochs": 3})
    when = iter(START + dt.timedelta(minutes=10 * i) for i in range(20))
    write_record(folder, spec=spec, seed=42, labels=y, when=next(when))
    write_record(folder, spec=spec, seed=42, labels=y, when=next(when), platform="comet")
    write_record(folder, spec=spec, seed=43, labels=y, when=next(when))
    write_record(folder, spec=spec, seed=42, labels=y, when=next(when), platform="kaggle")
    write_record(folder, spec=spec, seed=44, labels=y, when=next(when), status="failed")
    write_record(folder, spec=load_spec("canonical", {"epochs": 3, "batch_size": 64}), labels=y, when=next(when))
    corrupt = write_record(folder, spec=spec, seed=45, labels=y, when=next(when))
    (corrupt / "run.json").write_text("{not json")
    write_partial(folder)
    return folder


def test_text_shows_the_table_the_band_the_pairs_and_the_skipped(mix):
    text = render_text(compare_paths([mix]))
    assert "6 runs of 2 experiments" in text and "skipped (2)" in text
    assert "corrupt run.json" in text and "incomplete" in text
    assert "  * seed " in text and "  * platform " in text  # rows that differ are marked
    assert "    data digest " in text  # and equal rows are not
    words = " ".join(text.split())
    assert "A–B same seed; same numerics (1 inert difference: --all) identical: the same weights" in words  # cause first
    assert "noise band ±0.30 pp, assumed (the default)" in text
    assert "`python run.py repeat --seeds 8 --seed 44 --spec canonical --epochs 3` measures it" in text
    assert "McNemar p = " in text and "95 % CI" in text
    assert "verdict matrix" in text
    assert "no verdict: status failed" in text
    assert "in batch_size (128 here, 64 there)" in text
    assert "\x1b[" not in text  # colour only on a terminal


def test_markdown_has_a_table_per_experiment(mix):
    md = render_markdown(compare_paths([mix]))
    assert md.startswith("# Run comparison")
    assert "| | **A** | **B** | **C** | **D** | **E** |" in md
    assert "| **seed** ≠ | 42 | 42 | 43 | 42 | 44 |" in md
    assert "| A–B | same seed; same numerics (1 inert difference: --all) | **identical**: the same weights" in md
    assert "## Skipped (2)" in md


def test_csv_has_one_row_per_run_with_its_verdicts(mix):
    rows = list(csv.DictReader(io.StringIO(render_csv(compare_paths([mix])))))
    assert len(rows) == 6 and tuple(rows[0]) == CSV_COLUMNS
    first = rows[0]
    assert first["label"] == "A" and first["verdicts"].startswith("B=identical")
    assert len(first["weights_sha256"]) == 64  # full hashes for scripts
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["verdicts"] == "" and failed[0]["no_verdict_because"]


def test_json_follows_its_documented_layout(mix):
    doc = json.loads(render_json(compare_paths([mix])))
    assert (doc["format"], doc["format_version"]) == ("harness-compare", 2)
    assert set(doc) == {"format", "format_version", "paths", "tolerance_pp", "n_runs", "verdict_counts",
                        "nondeterminism", "experiments", "skipped"}
    assert doc["nondeterminism"] == [] and set(doc["verdict_counts"]) == set(VERDICTS)
    big = doc["experiments"][0]
    assert set(big) == {"experiment_hash", "name", "summary", "spec", "nearest_experiment", "runs", "differing_rows",
                        "noise_band", "verdict_counts", "pairs"}
    assert len(big["runs"]) == 5 and len(big["pairs"]) == 6  # 4 runs with verdicts
    pair = big["pairs"][0]
    assert set(pair) == {"a", "b", "run_a", "run_b", "verdict", "reason", "causes", "delta_accuracy_pp",
                         "delta_ci_pp", "mcnemar", "differences", "agreement"}
    assert pair["verdict"] in VERDICTS and pair["agreement"]["n"] == 10000
    assert set(pair["agreement"]) == {"n", "same_class", "share", "a_right_b_wrong", "b_right_a_wrong", "note"}
    assert (pair["verdict"], pair["causes"]) == ("identical", {"experiment": [], "numerics": [], "inert": ["platform"]})
    assert pair["mcnemar"] == {"b": 0, "c": 0, "p": 1.0} and pair["delta_ci_pp"][0] < 0 < pair["delta_ci_pp"][1]
    other_seed = next(p for p in big["pairs"] if p["causes"]["experiment"] == ["seed"])
    low, high = other_seed["delta_ci_pp"]
    assert low <= other_seed["delta_accuracy_pp"] <= high and 0 <= other_seed["mcnemar"]["p"] <= 1
    band = big["noise_band"]
    assert band["origin"] == "default" and band["assumed"] is True and band["repeat_command"].startswith("python run.py repeat")
    assert {"sd_ci_pp", "pp_ci", "target_width_pp", "seeds_for_target"} <= set(band)
    assert big["nearest_experiment"]["differences"] == [{"what": "batch_size", "this": "128", "nearest": "64"}]
    documented = (ROOT / "results" / "COMPARE_JSON.md").read_text()
    for key in list(doc) + list(big) + list(pair) + list(big["runs"][0]["fields"]) + list(band):
        assert f"`{key}`" in documented, key


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])


def run_compare(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """`run.py compare ARGS` in a fresh interpreter that then prints which heavy modules it imported."""
    code = ("import sys, run; rc = run.main(['compare', *sys.argv[1:]]); "
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'matplotlib', 'adapters'}); "
            "print('IMPORTED', ','.join(heavy)); sys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_html_is_one_file_with_inlined_plots_and_no_tensorflow(mix, tmp_path):
    out = tmp_path / "report.html"
    p = run_compare(str(mix), "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert "IMPORTED matplotlib\n" in p.stdout  # matplotlib for the plots; never TensorFlow, Keras or an adapter
    assert f"html report: {out}" in p.stdout
    page = out.read_text()
    assert "<th>cause</th>" in page and "<th>McNemar p</th>" in page and "<th>95 % CI</th>" in page
    assert "<summary>1 inert difference</summary>platform local → comet" in page  # --all's list, folded
    assert "class=alarm" not in page  # no nondeterminism in this folder
    parser = _Images()
    parser.feed(page)
    assert parser.tags[0] == "html" and "table" in parser.tags
    pngs = [src for src in parser.images if src.startswith("data:image/png;base64,")]
    assert len(pngs) == len(parser.images) >= 4  # verdict matrix, curves, confusion matrices, timings
    for src in pngs:
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert not list(tmp_path.glob(".*.tmp"))


def test_text_compare_imports_neither_tensorflow_nor_matplotlib(mix):
    p = run_compare(str(mix), "--format", "json")
    assert p.returncode == 0, p.stderr
    assert p.stdout.rstrip().endswith("IMPORTED")
    assert json.loads(p.stdout[: p.stdout.rindex("IMPORTED")])["n_runs"] == 6


def test_bad_options_are_one_line_and_exit_2(mix, tmp_path):
    for args, words in (([str(mix), "--out", str(tmp_path / "nope" / "r.html")], "does not exist"),
                        ([str(mix), "--tolerance", "-1"], "--tolerance must be"),
                        ([str(mix), "--format", "pdf"], "invalid choice")):
        p = subprocess.run([sys.executable, "run.py", "compare", *args], cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 2 and words in p.stderr and "Traceback" not in p.stderr


def test_out_suffix_picks_the_format(mix, tmp_path):
    for suffix, check in ((".md", lambda t: t.startswith("# Run comparison")),
                          (".csv", lambda t: t.startswith("experiment,label,run_id")),
                          (".json", lambda t: json.loads(t)["format"] == "harness-compare")):
        out = tmp_path / f"r{suffix}"
        p = subprocess.run([sys.executable, "run.py", "compare", str(mix), "--out", str(out)], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0 and check(out.read_text()), p.stderr


def test_a_record_with_odd_values_still_compares_in_every_format(tmp_path, y_test):
    from results.render import FORMATS

    record = write_record(tmp_path, labels=y_test)
    write_record(tmp_path, labels=y_test, weights="other", platform="kaggle")
    run = json.loads((record / "run.json").read_text())
    run.update(seed=[1, 2], metrics={"test_accuracy": "high", "test_loss": None}, timings=None, environment=[],
               determinism={"threads": "many"}, history={"accuracy": "rising"})
    run["spec"]["epochs"] = float("nan")
    (record / "run.json").write_text(json.dumps(run))  # NaN is what json.dumps writes, and json.loads reads
    cmp = compare_paths([tmp_path])
    for name, render in FORMATS.items():
        if name != "html":  # matplotlib is slow here; the html test above covers the format
            assert render(cmp)
    assert "NaN" not in render_json(cmp)
    odd = next(v for g in cmp.groups for v in g.runs if v.loaded.source == record)
    assert odd.excluded.startswith("the record has no test accuracy")


def test_nan_infinite_and_huge_numbers_in_records_never_crash_a_renderer(tmp_path, small_spec, y_test):
    """#17: a record is untrusted; every format (html too) renders NaN, ±inf, 1e308 and a 400-digit int."""
    from results.html import render_html
    from results.render import FORMATS

    write_record(tmp_path, spec=small_spec, labels=y_test)
    odd_values = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf"), "huge": 1e308,
                  "bigint": 10 ** 400}
    for i, (name, x) in enumerate(odd_values.items()):
        record = write_record(tmp_path, spec=small_spec, labels=y_test, weights=name, seed=50 + i)
        run = json.loads((record / "run.json").read_text())
        run["metrics"].update(test_accuracy=x, test_loss=x)
        run["timings"] = {"epoch_seconds": [x, 1.0], "total_seconds": x, "mean_epoch_seconds": x}
        run["history"] = {"accuracy": [x], "loss": [x], "val_accuracy": [0.5], "val_loss": [x]}
        run["determinism"]["threads"] = {"intra_op": x, "inter_op": 2}
        run["environment"]["cpu"]["logical_cores"] = x
        (record / "run.json").write_text(json.dumps(run))  # json writes NaN/Infinity; json.loads reads them back
        (record / "history.csv").write_text(f"epoch,accuracy,loss,seconds\n1,{x},{x},{x}\n")
        (record / "confusion_matrix.csv").write_text("true\\predicted,0,1\n0," + str(10 ** 400) + ",1\n1,0,5\n")
    cmp = compare_paths([tmp_path])
    (group,) = cmp.groups
    assert len(group.runs) == 6 and len(group.compared) == 1  # no accuracy in [0, 1]: no verdict, still a column
    odd = [v for v in group.runs if v.excluded]
    assert all(v.excluded.startswith("the record has no test accuracy") for v in odd) and len(odd) == 5
    for name, render in FORMATS.items():
        text = render(cmp) if name != "html" else render_html(cmp)
        assert text and "Traceback" not in text, name
    doc = json.loads(render_json(cmp))  # strict JSON: NaN and infinities became null
    assert "NaN" not in render_json(cmp) and "Infinity" not in render_json(cmp)
    assert all(r["fields"]["test_accuracy"] is None for r in doc["experiments"][0]["runs"] if not r["verdicts"])
    text = render_text(cmp).replace(str(tmp_path), "FOLDER")
    assert not re.search(r"\b(nan|inf)\b", text, re.IGNORECASE), text  # shown as "—", never as a number


def test_huge_but_finite_accuracy_pairs_still_get_a_verdict_and_json(tmp_path, small_spec, y_test):
    """An accuracy of exactly 0 and 1 (the ends of the allowed range) and a test_loss of 1e308 are judged normally."""
    a = write_record(tmp_path, spec=small_spec, labels=y_test, weights="a")
    b = write_record(tmp_path, spec=small_spec, labels=y_test, weights="b", seed=43)
    for record, acc in ((a, 0.0), (b, 1.0)):
        run = json.loads((record / "run.json").read_text())
        run["metrics"].update(test_accuracy=acc, test_loss=1e308)
        (record / "run.json").write_text(json.dumps(run))
    cmp = compare_paths([tmp_path])
    (pair,) = cmp.groups[0].pairs()
    assert pair.delta_pp == 100.0 and pair.verdict in ("divergent", "within noise")
    doc = json.loads(render_json(cmp))
    assert doc["experiments"][0]["pairs"][0]["delta_accuracy_pp"] == 100.0
    assert "1e+308" in render_text(cmp) or "1e+308" in render_markdown(cmp)


def test_all_lists_the_inert_differences_and_the_default_counts_them(mix, tmp_path):
    plain = subprocess.run([sys.executable, "run.py", "compare", str(mix)], cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
    full = subprocess.run([sys.executable, "run.py", "compare", str(mix), "--all"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert plain.returncode == full.returncode == 0, plain.stderr + full.stderr
    assert "(1 inert difference: --all)" in plain.stdout and "inert: platform local → comet" not in plain.stdout
    assert "inert: platform local → comet" in full.stdout and "--all)" not in full.stdout
    bad = subprocess.run([sys.executable, "run.py", "compare", str(mix), "--band-width", "0"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--band-width must be" in bad.stderr and "Traceback" not in bad.stderr
