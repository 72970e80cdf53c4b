"""core/claims.py: reading claims and judging measured runs against them (no TensorFlow)."""
import dataclasses

import pytest

from core import claims
from core.claims import Claim, Measurement, changed_conditions, judge, parse_claims
from core.spec import SpecError, list_presets, load_spec


def claim(op=">=", value=0.99, tolerance=0.003, metric="test_accuracy"):
    return Claim(metric, op, value, tolerance, "https://example.org/paper")


def test_every_preset_claim_parses_and_names_its_source():
    for preset in list_presets():
        for c in parse_claims(load_spec(preset)):
            assert c.source.strip(), preset
            assert c.metric in ("test_accuracy", "test_loss"), preset


def test_parse_claims_rejects_a_claim_without_source_or_with_an_unknown_operator():
    spec = load_spec("canonical")
    no_source = dataclasses.replace(spec, claims=({"metric": "test_accuracy", "op": ">", "value": 0.9},))
    with pytest.raises(SpecError, match=r"claims\[0\]\.source: required key is missing"):
        parse_claims(no_source)
    bad_op = dataclasses.replace(spec, claims=({"metric": "m", "op": "~", "value": 1, "source": "x"},))
    with pytest.raises(SpecError, match=r"claims\[0\]\.op: unknown operator"):
        parse_claims(bad_op)
    bad_value = dataclasses.replace(spec, claims=({"metric": "m", "op": ">", "value": "high", "source": "x"},))
    with pytest.raises(SpecError, match=r"claims\[0\]\.value: expected a number"):
        parse_claims(bad_value)


def test_default_tolerance_is_three_tenths_of_a_point():
    spec = dataclasses.replace(load_spec("canonical"),
                               claims=({"metric": "test_accuracy", "op": ">", "value": 0.98, "source": "x"},))
    assert parse_claims(spec)[0].tolerance == claims.DEFAULT_TOLERANCE == 0.003


def test_measurement_mean_and_sample_spread():
    m = Measurement((0.990, 0.992, 0.994))
    assert m.mean == pytest.approx(0.992)
    assert m.spread == pytest.approx(0.002)  # sample standard deviation (n - 1)
    assert Measurement((0.5,)).spread == 0.0
    assert m.text() == "0.9920 ± 0.0020 (n=3)"


def test_verdicts_against_the_noise_band():
    assert judge(claim(">=", 0.9925), Measurement((0.9930,))).status == claims.REPRODUCED
    assert judge(claim(">=", 0.9925), Measurement((0.9900,))).status == claims.WITHIN_NOISE  # 0.25 pp short
    assert judge(claim(">=", 0.9925), Measurement((0.9890,))).status == claims.NOT_REPRODUCED  # 0.35 pp short
    assert judge(claim("==", 0.0397, 0.01, "test_loss"), Measurement((0.045,))).status == claims.REPRODUCED
    assert judge(claim("==", 0.0397, 0.01, "test_loss"), Measurement((0.052,))).status == claims.NOT_REPRODUCED
    assert judge(claim("<", 0.05, 0.0, "test_loss"), Measurement((0.04,))).status == claims.REPRODUCED


def test_a_wide_seed_spread_widens_the_band():
    values = (0.980, 0.990, 1.000)  # spread 0.01 -> band 0.02
    verdict = judge(claim("==", 0.975), Measurement(values))
    assert verdict.band == pytest.approx(0.02)
    assert verdict.status == claims.REPRODUCED
    assert judge(claim("==", 0.975), Measurement((0.99,))).status == claims.NOT_REPRODUCED


def test_changed_conditions_mean_untested_but_a_new_seed_does_not():
    published = load_spec("keras-mnist-cnn")
    quick = load_spec("keras-mnist-cnn", {"epochs": 1, "data.train_limit": 300, "seed": 7})
    assert changed_conditions(published, quick) == ["data.train_limit", "epochs"]
    assert changed_conditions(published, load_spec("keras-mnist-cnn", {"seed": 7})) == []
    wider = load_spec("keras-mnist-cnn", {"layers.5.units": 256})
    assert changed_conditions(published, wider) == ["layers.5.units"]
    verdict = judge(claim(), Measurement((0.999,)), changed_conditions(published, quick))
    assert verdict.status == claims.UNTESTED
    assert "data.train_limit, epochs changed" in verdict.text


def test_a_missing_metric_is_not_measured():
    assert judge(claim(metric="final_val_accuracy"), None).status == claims.NOT_MEASURED


def test_a_preset_without_claims_records_test_accuracy_and_loss():
    report = claims.ClaimsReport([], seeds=2, overrides={})
    spec = load_spec("bn-cnn")
    report.start("bn-cnn", spec, spec, ())
    report.presets["bn-cnn"]["runs"] = [{"record": "runs/a", "metrics": {"test_accuracy": 0.99, "test_loss": 0.03}},
                                        {"record": "runs/b", "metrics": {"test_accuracy": 0.98, "test_loss": 0.05}}]
    rows = report.rows(report.presets["bn-cnn"])
    assert [(r["metric"], r["verdict"], r["claim_text"]) for r in rows] == [
        ("test_accuracy", "recorded", "test_accuracy: none published"),
        ("test_loss", "recorded", "test_loss: none published")]
    assert rows[0]["measured"]["mean"] == pytest.approx(0.985)
    assert "| bn-cnn | test_loss: none published | 0.0400 ± 0.0141 (n=2) | recorded |" in report.markdown()
