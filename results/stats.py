"""The statistics behind a verdict: standard library only (no scipy), each checked against published values.

- `mcnemar_exact_p`: McNemar's exact test on the discordant counts of two
  classifiers scored on one test set (Dietterich 1998, "Approximate statistical
  tests for comparing supervised classification learning algorithms",
  recommends it for a single test set): under "equally accurate" the b images
  only A gets right and the c only B gets right split as Binomial(b + c, 1/2).
- `paired_difference_ci`: a confidence interval for the difference of two
  accuracies measured on the same images, Newcombe's square-and-add interval
  for paired proportions (Newcombe 1998, "Improved confidence intervals for the
  difference between binomial proportions based on paired data", Stat Med
  17:2635-2650, method 10: Wilson intervals combined with the phi correlation,
  continuity-corrected as Fagerland, Lydersen & Laake, "Statistical Analysis of
  Contingency Tables", ch. 8, compute it).
- `chi2_ppf` and `sd_interval`: the chi-square interval for a standard
  deviation from k seeds, (k-1)s²/σ² ~ χ²(k-1); the quantile is found by
  bisection on the regularized incomplete gamma function (series and continued
  fraction, as Numerical Recipes' gammp/gammq), exact to ~1e-10, not the
  Wilson–Hilferty approximation, which is off by 10 % at one degree of freedom.
"""
from __future__ import annotations

import functools
import math
from statistics import NormalDist

CONFIDENCE = 0.95
Z = NormalDist().inv_cdf(1 - (1 - CONFIDENCE) / 2)  # 1.959964…


@functools.lru_cache(maxsize=65536)
def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact p-value: 2 · P(X <= min(b, c)) for X ~ Binomial(b + c, 1/2), at most 1; 1 when b = c = 0.

    Summed in log space (lgamma), so b + c in the tens of thousands neither
    overflows nor loses the small tail.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got {b}, {c}")
    n, k = b + c, min(b, c)
    if n == 0 or b == c:
        return 1.0
    log_half_n = -n * math.log(2.0)
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + log_half_n for i in range(k + 1)]
    top = max(logs)
    tail = math.exp(top) * math.fsum(math.exp(x - top) for x in logs)
    return min(1.0, 2.0 * tail)


def wilson_interval(successes: int, n: int, z: float = Z) -> tuple[float, float]:
    """Wilson's score interval for a proportion (Wilson 1927)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_difference_ci(both_right: int, only_a: int, only_b: int, both_wrong: int,
                         z: float = Z) -> tuple[float, float]:
    """95 % interval for accuracy(B) − accuracy(A) on the same images (Newcombe 1998, method 10).

    `only_a`: images A gets right and B wrong; `only_b`: the reverse.
    """
    n = both_right + only_a + only_b + both_wrong
    if n <= 0:
        return -1.0, 1.0
    # Newcombe's table: proportion 1 = B's accuracy, proportion 2 = A's, so the interval is for B − A.
    r1, r2 = both_right + only_b, both_right + only_a
    p1, p2 = r1 / n, r2 / n
    l1, u1 = wilson_interval(r1, n, z)
    l2, u2 = wilson_interval(r2, n, z)
    margins = r1 * (n - r1) * r2 * (n - r2)
    phi = 0.0
    if margins > 0:
        a = both_right * both_wrong - only_b * only_a
        if a > n / 2:
            phi = (a - n / 2) / math.sqrt(margins)
        elif a < 0:
            phi = a / math.sqrt(margins)
    d = p1 - p2
    low = d - math.sqrt(max(0.0, (p1 - l1) ** 2 + (u2 - p2) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2)))
    high = d + math.sqrt(max(0.0, (p2 - l2) ** 2 + (u1 - p1) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1)))
    return max(-1.0, low), min(1.0, high)


def _gamma_p(a: float, x: float) -> float:
    """The regularized lower incomplete gamma function P(a, x)."""
    if x <= 0:
        return 0.0
    log_front = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:  # the series converges fast here
        term = total = 1.0 / a
        ap = a
        for _ in range(10000):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return total * math.exp(log_front)
    # Lentz's continued fraction for Q(a, x) = 1 - P(a, x)
    tiny = 1e-300
    b = x + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 10000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return 1.0 - math.exp(log_front) * h


def chi2_cdf(x: float, df: float) -> float:
    return _gamma_p(df / 2, x / 2)


def chi2_ppf(q: float, df: float) -> float:
    """The q-quantile of the chi-square distribution with df degrees of freedom (bisection on the CDF)."""
    if not 0 < q < 1 or df <= 0:
        raise ValueError(f"chi2_ppf needs 0 < q < 1 and df > 0, got q={q}, df={df}")
    low, high = 0.0, max(1.0, df)
    while chi2_cdf(high, df) < q:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        if chi2_cdf(mid, df) < q:
            low = mid
        else:
            high = mid
        if high - low <= 1e-12 * max(1.0, high):
            break
    return (low + high) / 2


@functools.lru_cache(maxsize=4096)
def sd_ratio_interval(k: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """(low, high) such that [low · s, high · s] is the confidence interval for σ from k samples' sd s."""
    if k < 2:
        return math.nan, math.nan
    df = k - 1
    alpha = 1 - confidence
    return math.sqrt(df / chi2_ppf(1 - alpha / 2, df)), math.sqrt(df / chi2_ppf(alpha / 2, df))


def sd_interval(sd: float, k: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The chi-square confidence interval for the standard deviation σ, given the sample sd of k values."""
    low, high = sd_ratio_interval(k, confidence)
    return sd * low, sd * high


def seeds_for_width(sd: float, width: float, factor: float = 1.0, limit: int = 1000) -> int | None:
    """The fewest seeds k whose interval for `factor` · σ (at this sd) is at most `width` wide; None past `limit`."""
    if not (sd >= 0 and width > 0) or not math.isfinite(sd):
        return None
    if sd == 0:
        return 3
    def fits(k: int) -> bool:
        low, high = sd_ratio_interval(k)
        return factor * sd * (high - low) <= width

    if not fits(limit):
        return None
    low, high = 2, limit  # the interval narrows as k grows: fits(high) holds, fits(low) is not known to
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if fits(mid) else (mid, high)
    return max(3, high)
