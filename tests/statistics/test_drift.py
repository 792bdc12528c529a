"""Drift metrics against hand computations, and drift between summaries of shifted and equal data (no Spark)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from feature_assets.statistics import (
    DriftThresholds,
    drift,
    hellinger,
    jensen_shannon,
    ks_statistic,
    merge,
    psi,
    severity,
    summarize,
)

P = [0.5, 0.5]
Q = [0.9, 0.1]


def test_psi_by_hand():
    # (0.5 - 0.9) ln(0.5 / 0.9) + (0.5 - 0.1) ln(0.5 / 0.1) = 0.4 ln 1.8 + 0.4 ln 5
    assert psi(P, Q, epsilon=0.0) == pytest.approx(0.4 * 0.5877867 + 0.4 * 1.6094379, abs=1e-6)
    assert psi(P, Q, epsilon=0.0) == pytest.approx(0.8788898, abs=1e-6)
    # Smoothing moves it only slightly, and the index is symmetric.
    assert psi(P, Q) == pytest.approx(0.8788898, abs=2e-3)
    assert psi(Q, P) == pytest.approx(psi(P, Q))
    # Counts are normalized first.
    assert psi([50, 50], [90, 10], epsilon=0.0) == pytest.approx(0.8788898, abs=1e-6)


def test_psi_with_an_empty_bin_is_finite():
    # epsilon 0.01, bins p=[1, 0], q=[0.5, 0.5]: p' = [1.01, 0.01] / 1.02, q' = [0.51, 0.51] / 1.02
    p_smoothed = [1.01 / 1.02, 0.01 / 1.02]
    q_smoothed = [0.5, 0.5]
    expected = (p_smoothed[0] - 0.5) * math.log(p_smoothed[0] / 0.5) + (p_smoothed[1] - 0.5) * math.log(
        p_smoothed[1] / 0.5
    )
    # 0.490196 ln(1.980392) + (-0.490196) ln(0.019608) = 0.334949 + 1.927365
    assert expected == pytest.approx(2.262314, abs=1e-5)
    assert psi([1, 0], q_smoothed, epsilon=0.01) == pytest.approx(expected, abs=1e-12)


def test_jensen_shannon_by_hand():
    # m = [0.7, 0.3]
    # KL(p||m) = 0.5 log2(0.5/0.7) + 0.5 log2(0.5/0.3) = 0.5 (-0.4854268) + 0.5 (0.7369656) = 0.1257694
    # KL(q||m) = 0.9 log2(0.9/0.7) + 0.1 log2(0.1/0.3) = 0.9 (0.3625701) + 0.1 (-1.5849625) = 0.1678168
    assert jensen_shannon(P, Q) == pytest.approx((0.1257694 + 0.1678168) / 2, abs=1e-6)
    assert jensen_shannon(P, P) == 0.0
    assert jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)


def test_hellinger_by_hand():
    # sqrt(1 - (sqrt(0.45) + sqrt(0.05))) = sqrt(1 - (0.6708204 + 0.2236068)) = sqrt(0.1055728)
    assert hellinger(P, Q) == pytest.approx(0.3249197, abs=1e-6)
    assert hellinger(P, P) == 0.0
    assert hellinger([1, 0], [0, 1]) == pytest.approx(1.0)


def test_ks_by_hand():
    assert ks_statistic([0.5, 1.0], [0.9, 1.0]) == pytest.approx(0.4)
    assert ks_statistic([0.1, 0.4, 0.8, 1.0], [0.2, 0.2, 0.7, 1.0]) == pytest.approx(0.2)
    assert ks_statistic([], []) == 0.0


def test_bad_bins_are_rejected():
    with pytest.raises(ValueError, match="p has 2 bins but q has 3"):
        psi([1, 1], [1, 1, 1])
    with pytest.raises(ValueError, match="q: bins sum to 0"):
        jensen_shannon([1, 1], [0, 0])
    with pytest.raises(ValueError, match="p: bins must be finite and non-negative"):
        hellinger([-1, 2], [1, 1])
    with pytest.raises(ValueError, match="same length"):
        ks_statistic([0.5, 1.0], [1.0])


def test_shifted_numeric_distribution_drifts_and_an_equal_one_does_not():
    rng = np.random.default_rng(1)
    reference = merge(summarize("numeric", rng.normal(10, 2, 30_000), column="x") for _ in range(7))
    same = summarize("numeric", rng.normal(10, 2, 50_000), column="x")
    shifted = summarize("numeric", rng.normal(11, 2, 50_000), column="x")
    assert reference is not None
    calm = drift(same, reference)
    moved = drift(shifted, reference)
    assert calm["psi"] < 0.01 and calm["jensen_shannon"] < 0.01 and calm["hellinger"] < 0.05 and calm["ks"] < 0.04
    assert severity(calm) == "PASS"
    # N(11, 2) against N(10, 2): the exact KS distance is 2 * Phi(0.25) - 1 = 0.1974.
    assert moved["ks"] == pytest.approx(0.1974, abs=0.03)
    assert moved["psi"] > 0.2 and moved["hellinger"] > 0.1
    assert severity(moved) == "ERROR"


def test_numeric_drift_with_a_repeated_value_and_an_empty_side():
    rng = np.random.default_rng(2)
    zeros_then_noise = np.where(rng.random(20_000) < 0.6, 0.0, rng.exponential(1, 20_000))
    reference = summarize("numeric", zeros_then_noise, column="x")
    current = summarize("numeric", np.where(rng.random(20_000) < 0.6, 0.0, rng.exponential(1, 20_000)), column="x")
    metrics = drift(current, reference)
    assert severity(metrics) == "PASS"
    more_zeros = summarize("numeric", np.where(rng.random(20_000) < 0.9, 0.0, rng.exponential(1, 20_000)), column="x")
    # 90% zeros against 60%: at the point 0 the CDFs differ by 0.3.
    assert drift(more_zeros, reference)["ks"] == pytest.approx(0.3, abs=0.03)
    empty = summarize("numeric", [None, None], column="x")
    assert drift(empty, reference) == {"psi": None, "jensen_shannon": None, "hellinger": None, "ks": None}
    assert severity(drift(empty, reference)) == "PASS"


def test_categorical_drift():
    rng = np.random.default_rng(3)
    categories = [f"c{i}" for i in range(30)]
    weights = np.geomspace(1, 0.05, 30)
    weights /= weights.sum()
    reference = summarize("categorical", list(rng.choice(categories, 40_000, p=weights)), column="city")
    same = summarize("categorical", list(rng.choice(categories, 40_000, p=weights)), column="city")
    reversed_weights = summarize("categorical", list(rng.choice(categories, 40_000, p=weights[::-1])), column="city")
    calm = drift(same, reference)
    assert calm["ks"] is None and calm["jensen_shannon"] < 0.01 and severity(calm) == "PASS"
    assert severity(drift(reversed_weights, reference)) == "ERROR"


def test_categorical_drift_by_hand_with_an_other_bin():
    # Top items of both sides: a, b (each side has fewer than 20 values, so every value is an item).
    reference = summarize("categorical", ["a"] * 50 + ["b"] * 50, column="c")
    current = summarize("categorical", ["a"] * 90 + ["b"] * 10 + [None] * 40, column="c")
    metrics = drift(current, reference)
    assert metrics["jensen_shannon"] == pytest.approx(jensen_shannon([0.9, 0.1, 0.0], [0.5, 0.5, 0.0]))
    assert metrics["psi"] == pytest.approx(psi([0.9, 0.1, 0.0], [0.5, 0.5, 0.0]))
    # 21 values on one side: the ones beyond both top-20 lists land in "other".
    wide = summarize("categorical", [f"v{i:02d}" for i in range(21) for _ in range(21 - i)], column="c")
    narrow = summarize("categorical", [f"v{i:02d}" for i in range(20) for _ in range(21 - i)], column="c")
    hand = drift(wide, narrow)
    wide_total = sum(range(1, 22))
    narrow_total = sum(range(2, 22))
    p = [(21 - i) / wide_total for i in range(20)] + [1 / wide_total]
    q = [(21 - i) / narrow_total for i in range(20)] + [0.0]
    assert hand["hellinger"] == pytest.approx(hellinger(p, q))


def test_boolean_drift_by_hand():
    reference = summarize("boolean", [False] * 10 + [True] * 90 + [None] * 5, column="flag")
    current = summarize("boolean", [False] * 50 + [True] * 50, column="flag")
    metrics = drift(current, reference)
    assert metrics["psi"] == pytest.approx(psi([0.5, 0.5], [0.1, 0.9]))
    assert metrics["hellinger"] == pytest.approx(0.3249197, abs=1e-6)
    assert metrics["ks"] == pytest.approx(0.4)


def test_list_and_map_drift_use_lengths():
    rng = np.random.default_rng(4)
    short = [[1] * int(n) for n in rng.poisson(2, 10_000)]
    long = [[1] * int(n) for n in rng.poisson(6, 10_000)]
    also_short = [[1] * int(n) for n in rng.poisson(2, 10_000)]
    reference = summarize("list", short, column="l")
    assert severity(drift(summarize("list", also_short, column="l"), reference)) == "PASS"
    assert severity(drift(summarize("list", long, column="l"), reference)) == "ERROR"
    maps = [{str(k): 1 for k in range(int(n))} for n in rng.poisson(2, 5_000)]
    bigger_maps = [{str(k): 1 for k in range(int(n))} for n in rng.poisson(5, 5_000)]
    assert severity(drift(summarize("map", bigger_maps, column="m"), summarize("map", maps, column="m"))) == "ERROR"


def test_drift_needs_the_same_kind():
    with pytest.raises(ValueError, match="'x' \\(numeric\\) with reference 'x' \\(categorical\\)"):
        drift(summarize("numeric", [1.0], column="x"), summarize("categorical", ["1"], column="x"))


def test_severity_levels():
    thresholds = DriftThresholds()
    assert (thresholds.jensen_shannon_warn, thresholds.jensen_shannon_fail) == (0.05, 0.15)
    assert (thresholds.psi_warn, thresholds.psi_fail) == (0.1, 0.2)
    assert (thresholds.hellinger_warn, thresholds.hellinger_fail) == (0.1, 0.2)
    assert (thresholds.ks_warn, thresholds.ks_fail) == (0.1, 0.2)
    assert severity({"psi": 0.05, "jensen_shannon": 0.01, "hellinger": 0.02, "ks": None}) == "PASS"
    assert severity({"psi": 0.1}) == "WARN"
    assert severity({"psi": 0.05, "jensen_shannon": 0.2}) == "ERROR"
    assert severity({"ks": 0.15}, DriftThresholds(ks_warn=0.2, ks_fail=0.3)) == "PASS"
    with pytest.raises(ValueError, match="psi: need 0 <= warn \\(0.3\\) <= fail \\(0.2\\)"):
        DriftThresholds(psi_warn=0.3)
