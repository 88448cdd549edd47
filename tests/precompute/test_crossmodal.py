"""Overlap statistics against Python sets and Spearman rho against scipy.stats.spearmanr."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.stats import rankdata, spearmanr

from precompute.crossmodal import average_ranks, overlap_matrix, shared_units, spearman_by_group, spearman_matrix


def test_overlap_matches_python_sets() -> None:
    rng = np.random.default_rng(0)
    n = 500
    sets_a = [rng.choice(n, size=s, replace=False) for s in (40, 40, 60)]
    sets_b = [rng.choice(n, size=s, replace=False) for s in (40, 25)] + [sets_a[0][::-1].copy()]
    res = overlap_matrix(sets_a, sets_b, n)
    assert res["count"].shape == (3, 3) and res["count"].dtype == np.int64
    for i, a in enumerate(sets_a):
        for j, b in enumerate(sets_b):
            sa, sb = set(a.tolist()), set(b.tolist())
            c = len(sa & sb)
            k = (len(sa) + len(sb)) / 2
            assert res["count"][i, j] == c
            assert res["c_over_k"][i, j] == pytest.approx(c / k)
            assert res["jaccard"][i, j] == pytest.approx(c / len(sa | sb))
            assert res["chance"][i, j] == pytest.approx(len(sa) * len(sb) / n)
            assert res["chance_c_over_k"][i, j] == pytest.approx(len(sa) * len(sb) / n / k)
            e = len(sa) * len(sb) / n
            assert res["chance_jaccard"][i, j] == pytest.approx(e / (len(sa) + len(sb) - e))
            np.testing.assert_array_equal(shared_units(a, b), sorted(sa & sb))
    assert res["jaccard"][0, 2] == 1.0 and res["c_over_k"][0, 2] == 1.0
    assert res["size_a"].tolist() == [40, 40, 60]


def test_overlap_equal_k_chance_is_k_squared_over_n() -> None:
    res = overlap_matrix([np.arange(1000)], [np.arange(500, 1500)], 100_000)
    assert res["chance"][0, 0] == pytest.approx(1000**2 / 100_000)
    assert res["count"][0, 0] == 500 and res["c_over_k"][0, 0] == 0.5


def test_overlap_errors() -> None:
    with pytest.raises(ValueError, match=r"sets_b\[1\] contains duplicate"):
        overlap_matrix([np.array([1, 2])], [np.array([1]), np.array([3, 3])], 10)
    with pytest.raises(ValueError, match=r"sets_a\[0\] has unit indices outside \[0, 10\)"):
        overlap_matrix([np.array([1, 10])], [np.array([1])], 10)
    with pytest.raises(ValueError, match=r"sets_a\[0\] is empty"):
        overlap_matrix([np.array([], dtype=np.int64)], [np.array([1])], 10)
    with pytest.raises(ValueError, match="integer"):
        overlap_matrix([np.array([1.5])], [np.array([1])], 10)


def test_average_ranks_match_scipy() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 7, size=(6, 90)).astype(float)
    x[0] = 3.0
    np.testing.assert_array_equal(average_ranks(x), rankdata(x, method="average", axis=1))


def test_spearman_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 300))
    x[1] = np.round(x[1])
    x[2] = rng.integers(0, 3, 300)
    y = rng.standard_normal((4, 300)) + x[:4] * 0.5
    y[3] = np.round(y[3] * 2)
    got = spearman_matrix(x, y)
    ref = np.array([[spearmanr(a, b).statistic for b in y] for a in x])
    assert got.shape == (5, 4)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(spearman_matrix(x[:1], x[:1]), [[1.0]], atol=1e-12)
    np.testing.assert_allclose(spearman_matrix(x[:1], -x[:1]), [[-1.0]], atol=1e-12)


def test_spearman_constant_rows_are_nan() -> None:
    rng = np.random.default_rng(3)
    x = np.vstack([np.full(20, 2.0), rng.standard_normal(20)])
    y = rng.standard_normal((2, 20))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = spearmanr(x[0], y[0]).statistic
    got = spearman_matrix(x, y)
    assert np.isnan(ref) and np.isnan(got[0]).all() and np.isfinite(got[1]).all()
    assert np.isnan(spearman_matrix(x[:, :1], y[:, :1])).all()


def test_spearman_errors() -> None:
    with pytest.raises(ValueError, match="x has 3 units per row but y has 4"):
        spearman_matrix(np.zeros((1, 3)), np.zeros((1, 4)))
    bad = np.ones((3, 5))
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="y row 2"):
        spearman_matrix(np.ones((1, 5)), bad)


def test_spearman_by_group() -> None:
    rng = np.random.default_rng(4)
    groups = np.repeat(np.array(["cross_attn", "ffn", "self_attn"]), [30, 50, 20])
    x, y = rng.standard_normal((3, 100)), rng.standard_normal((2, 100))
    res = spearman_by_group(x, y, groups)
    assert sorted(res) == ["cross_attn", "ffn", "self_attn"]
    for g, mat in res.items():
        m = groups == g
        ref = np.array([[spearmanr(a[m], b[m]).statistic for b in y] for a in x])
        np.testing.assert_allclose(mat, ref, atol=1e-10)
    layers = rng.integers(0, 4, 100)
    assert sorted(spearman_by_group(x, y, layers)) == [0, 1, 2, 3]
