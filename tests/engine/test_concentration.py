"""Gini / top-share closed forms and agreement with naive pairwise and per-group references."""

from __future__ import annotations

import numpy as np
import pytest

from neuron_atlas.engine.concentration import gini, group_concentration, mean_abs_activation, top_count, top_share


def naive_gini(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=float)
    if x.sum() == 0:
        return 0.0
    return float(np.abs(x[:, None] - x[None, :]).sum() / (2 * x.size * x.sum()))


def test_gini_closed_forms() -> None:
    assert gini(np.full(7, 3.0)) == pytest.approx(0.0, abs=1e-15)
    for n in (1, 2, 5, 100):
        x = np.zeros(n)
        x[n // 2] = 4.2
        assert gini(x) == pytest.approx((n - 1) / n, abs=1e-15)
    assert gini(np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(0.25, abs=1e-15)
    assert gini(np.array([4.0, 1.0, 3.0, 2.0])) == pytest.approx(0.25, abs=1e-15)
    assert gini(np.array([0.0, 1.0])) == pytest.approx(0.5, abs=1e-15)
    assert gini(np.zeros(5)) == 0.0


def test_gini_matches_pairwise_definition_along_axes() -> None:
    rng = np.random.default_rng(0)
    x = rng.exponential(size=(4, 30, 3))
    ref = np.array([[naive_gini(x[i, :, j]) for j in range(3)] for i in range(4)])
    np.testing.assert_allclose(gini(x, axis=1), ref, rtol=1e-12)
    ref_last = np.array([[naive_gini(x[i, k]) for k in range(30)] for i in range(4)])
    np.testing.assert_allclose(gini(x), ref_last, rtol=1e-12)


def test_gini_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match=r"negative value -1\.0 at index \(2,\)"):
        gini(np.array([1.0, 2.0, -1.0]))
    with pytest.raises(ValueError, match="non-finite"):
        gini(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="at least one"):
        gini(np.zeros((3, 0)))


def test_top_share_closed_forms() -> None:
    assert top_share(np.ones(100)) == pytest.approx(0.01)
    assert top_share(np.ones(300)) == pytest.approx(3 / 300)
    assert top_share(np.ones(50)) == pytest.approx(1 / 50)
    x = np.zeros(200)
    x[17] = 5.0
    assert top_share(x) == pytest.approx(1.0)
    assert top_share(np.array([1.0, 2.0, 3.0, 4.0]), frac=0.5) == pytest.approx(0.7)
    assert top_share(np.zeros(40), frac=0.1) == pytest.approx(0.1)
    assert top_count(300, 0.01) == 3 and top_count(301, 0.01) == 4 and top_count(5, 0.01) == 1
    with pytest.raises(ValueError, match="frac"):
        top_share(np.ones(3), frac=0.0)


def test_top_share_along_axis() -> None:
    rng = np.random.default_rng(1)
    x = rng.exponential(size=(5, 250))
    ref = [sum(sorted(row, reverse=True)[:3]) / row.sum() for row in x]
    np.testing.assert_allclose(top_share(x, 0.01, axis=1), ref, rtol=1e-12)
    np.testing.assert_allclose(top_share(x.T, 0.01, axis=0), ref, rtol=1e-12)


def test_group_concentration_matches_per_group() -> None:
    rng = np.random.default_rng(2)
    groups = rng.integers(0, 24, 3000)
    values = rng.exponential(size=3000) * (groups + 1)
    values[rng.random(3000) < 0.1] = 1.5
    values[groups == 5] = 0.0
    res = group_concentration(values, groups)
    assert res["group"].tolist() == sorted(set(groups.tolist()))
    for i, g in enumerate(res["group"]):
        v = values[groups == g]
        assert res["n_units"][i] == v.size
        assert res["total"][i] == pytest.approx(v.sum(), rel=1e-12)
        assert res["gini"][i] == pytest.approx(naive_gini(v), rel=1e-10, abs=1e-15)
        assert res["top1_share"][i] == pytest.approx(float(top_share(v)), rel=1e-12)
    zero = int(np.flatnonzero(res["group"] == 5)[0])
    assert res["gini"][zero] == 0.0


def test_group_concentration_errors() -> None:
    with pytest.raises(ValueError, match="negative"):
        group_concentration(np.array([1.0, -2.0]), np.array([0, 0]))
    with pytest.raises(ValueError, match="groups must have shape"):
        group_concentration(np.ones(3), np.zeros(2, int))
    with pytest.raises(ValueError, match="integers"):
        group_concentration(np.ones(2), np.array([0.5, 1.0]))


def test_mean_abs_activation() -> None:
    rng = np.random.default_rng(3)
    acts = rng.standard_normal((37, 20)).astype(np.float32)
    mask = rng.random(20) < 0.5
    mask[0] = True
    got = mean_abs_activation(acts, mask, chunk_units=8)
    np.testing.assert_allclose(got, np.abs(acts[:, mask].astype(float)).mean(axis=1), rtol=1e-12)
    assert got.dtype == np.float64
    with pytest.raises(ValueError, match="selects no examples"):
        mean_abs_activation(acts, np.zeros(20, bool))
    with pytest.raises(ValueError, match="example_mask"):
        mean_abs_activation(acts, np.ones(19, bool))
    acts[30, 0] = np.inf
    with pytest.raises(ValueError, match="row 30"):
        mean_abs_activation(acts, mask)
