"""The statistics behind the verdicts, against published values (no scipy: each value below is from a table or paper)."""
from __future__ import annotations

import math

import pytest

from results import stats
from results.verdicts import BAND_FACTOR, REPEAT_SEEDS, noise_band


def test_mcnemar_exact_p_values():
    # 2 · (C(12,0) + C(12,1) + C(12,2)) / 2^12 = 2 · 79 / 4096
    assert stats.mcnemar_exact_p(10, 2) == pytest.approx(0.0386, abs=5e-5)
    assert stats.mcnemar_exact_p(10, 2) == pytest.approx(2 * 79 / 4096, rel=1e-12)
    assert stats.mcnemar_exact_p(2, 10) == stats.mcnemar_exact_p(10, 2)  # two-sided
    assert stats.mcnemar_exact_p(7, 7) == stats.mcnemar_exact_p(0, 0) == 1.0
    assert stats.mcnemar_exact_p(0, 6) == pytest.approx(2 / 64)  # 0.03125
    assert stats.mcnemar_exact_p(0, 5) == pytest.approx(2 / 32)  # 0.0625: five against none is not enough
    assert stats.mcnemar_exact_p(6, 5) == 1.0  # capped at 1
    # large counts: the normal approximation, z = 100 / √5900, p ≈ 0.193 (continuity-corrected 0.197)
    assert stats.mcnemar_exact_p(3000, 2900) == pytest.approx(0.197, abs=0.002)
    assert 0 <= stats.mcnemar_exact_p(0, 2000) < 1e-300  # 2 · 2^-2000: no overflow, no error
    with pytest.raises(ValueError):
        stats.mcnemar_exact_p(-1, 3)


@pytest.mark.parametrize("q, df, table", [
    (0.975, 1, 5.0239), (0.025, 1, 0.000982), (0.975, 2, 7.3778), (0.025, 2, 0.0506), (0.975, 3, 9.3484),
    (0.025, 3, 0.2158), (0.95, 10, 18.307), (0.025, 9, 2.7004), (0.975, 29, 45.7223), (0.5, 100, 99.3341),
])
def test_chi_square_quantiles_match_the_table(q, df, table):
    assert stats.chi2_ppf(q, df) == pytest.approx(table, rel=1e-3)  # tables print 4-5 significant digits


def test_the_sd_interval_is_the_chi_square_one():
    low, high = stats.sd_interval(1.0, 3)  # df 2: √(2/7.3778), √(2/0.0506)
    assert (low, high) == pytest.approx((math.sqrt(2 / 7.3778), math.sqrt(2 / 0.05064)), rel=1e-3)
    assert stats.sd_ratio_interval(10) == pytest.approx((0.6878, 1.8256), abs=1e-4)  # what REPEAT_SEEDS buys
    assert REPEAT_SEEDS == 10


def test_newcombe_paired_interval_matches_fagerland_et_al():
    # Cavo et al. 2012 as in Fagerland, Lydersen & Laake (2017), ch. 8: table [[59, 6], [16, 80]],
    # Newcombe square-and-add: estimate -0.0621, 95 % CI -0.1186 to -0.0046.
    low, high = stats.paired_difference_ci(both_right=59, only_a=16, only_b=6, both_wrong=80)
    assert (low, high) == pytest.approx((-0.1186, -0.0046), abs=5e-5)
    # the same counts the other way round: the interval mirrors
    assert stats.paired_difference_ci(59, 6, 16, 80) == pytest.approx((0.0046, 0.1186), abs=5e-5)
    low, high = stats.paired_difference_ci(200, 0, 0, 0)  # all right, no disagreement: a small interval around 0
    assert low < 0 < high and high - low < 0.04


def test_wilson_interval():
    assert stats.wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)  # Newcombe 1998, example
    assert stats.wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12)


def test_the_measured_band_carries_its_interval_and_the_seeds_it_would_take():
    band = noise_band({42: [0.990], 43: [0.991], 44: [0.989], 45: [0.9905]}, 0.3, False)
    sd = 0.0854  # sample sd of 99.0, 99.1, 98.9, 99.05 in pp: √(0.021875 / 3)
    assert band.sd_pp == pytest.approx(sd, abs=1e-4) and band.pp == pytest.approx(BAND_FACTOR * band.sd_pp)
    low, high = band.pp_ci
    assert low < band.pp < high and high / band.pp == pytest.approx(stats.sd_ratio_interval(4)[1])
    k = band.seeds_for_target
    r_low, r_high = stats.sd_ratio_interval(k)
    assert BAND_FACTOR * band.sd_pp * (r_high - r_low) <= 0.1  # k seeds reach a 0.1 pp wide interval …
    r_low, r_high = stats.sd_ratio_interval(k - 1)
    assert BAND_FACTOR * band.sd_pp * (r_high - r_low) > 0.1  # … and k - 1 do not
    assert "measured over 4 seeds" in band.describe() and f"{k} seeds would narrow" in band.describe()


def test_fewer_than_three_seeds_assume_the_band_and_say_how_to_measure_it():
    band = noise_band({7: [0.9]}, 0.3, False, {"name": "no-such-preset", "epochs": 1})
    assert band.assumed and band.pp == 0.3 and band.pp_ci is None
    assert band.repeat_command == "python run.py repeat --seeds 9 --seed 8 --spec SPEC.yaml"


def test_repeat_defaults_to_the_seeds_the_band_needs():
    from cli.run import parse

    args, _ = parse(["--platform", "local"], "run.py repeat")
    assert args.seeds == REPEAT_SEEDS
    low, high = stats.sd_ratio_interval(args.seeds)
    assert "0.69-1.83" == f"{low:.2f}-{high:.2f}"  # what --help promises
