"""AP engine, forcing quantiles and unit selections against sklearn / numpy references."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from precompute.selectivity import (
    ConceptError,
    Selection,
    average_precision,
    build_selections,
    concept_quantiles,
    default_chunk_units,
    selection_seed,
    unit_stats,
)


def sk_ap(acts: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.array([average_precision_score(labels, row) for row in acts])


def random_labels(rng: np.random.Generator, n: int, rate: float = 0.2) -> np.ndarray:
    lab = rng.random(n) < rate
    lab[0], lab[1] = True, False
    return lab


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("chunk_units,n_threads", [(None, None), (7, 2), (300, 1)])
def test_ap_matches_sklearn_random(dtype: type, chunk_units: int | None, n_threads: int | None) -> None:
    rng = np.random.default_rng(0)
    acts = rng.standard_normal((300, 200)).astype(dtype)
    labels = random_labels(rng, 200)
    got = average_precision(acts, labels, chunk_units=chunk_units, n_threads=n_threads)
    assert got.dtype == np.float64 and got.shape == (300,)
    np.testing.assert_allclose(got, sk_ap(acts, labels), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ap_matches_sklearn_tie_heavy(dtype: type) -> None:
    rng = np.random.default_rng(1)
    ints = rng.integers(0, 4, size=(300, 200))
    labels = random_labels(rng, 200, 0.3)
    for acts in (ints.astype(dtype), (ints * 0.1).astype(dtype)):
        got = average_precision(acts, labels, chunk_units=64, n_threads=2)
        np.testing.assert_allclose(got, sk_ap(acts, labels), rtol=0, atol=1e-12)


def test_float64_fast_path_agrees_with_float64_sort() -> None:
    rng = np.random.default_rng(12)
    exact = rng.standard_normal((50, 70)).astype(np.float32).astype(np.float64)
    inexact = exact.copy()
    inexact[:, 0] += 1e-12
    labels = random_labels(rng, 70)
    a, b = average_precision(exact, labels), average_precision(inexact, labels)
    np.testing.assert_allclose(a, sk_ap(exact, labels), rtol=0, atol=1e-12)
    np.testing.assert_allclose(b, sk_ap(inexact, labels), rtol=0, atol=1e-12)


def test_ap_mixed_tied_and_untied_rows_in_one_chunk() -> None:
    rng = np.random.default_rng(2)
    acts = rng.standard_normal((60, 90))
    acts[::4, :30] = 0.25
    acts[1::4] = np.round(acts[1::4], 1)
    labels = random_labels(rng, 90)
    np.testing.assert_allclose(average_precision(acts, labels), sk_ap(acts, labels), rtol=0, atol=1e-12)


def test_constant_units_get_positive_rate() -> None:
    rng = np.random.default_rng(3)
    labels = random_labels(rng, 50)
    acts = np.vstack([np.full(50, 2.5), np.zeros(50), np.full(50, -7.0), rng.standard_normal(50)])
    got = average_precision(acts, labels)
    rate = labels.mean()
    np.testing.assert_allclose(got[:3], rate, rtol=0, atol=1e-15)
    np.testing.assert_allclose(got, sk_ap(acts, labels), rtol=0, atol=1e-12)


def test_two_examples_all_orders() -> None:
    acts = np.array([[0.0, 1.0], [1.0, 0.0], [3.0, 3.0]])
    for labels in (np.array([True, False]), np.array([False, True])):
        np.testing.assert_allclose(average_precision(acts, labels), sk_ap(acts, labels), rtol=0, atol=1e-15)
    np.testing.assert_allclose(average_precision(acts, np.array([True, False])), [0.5, 1.0, 0.5])


def test_extreme_values() -> None:
    rng = np.random.default_rng(4)
    n = 40
    labels = random_labels(rng, n, 0.4)
    pool = np.array([1e300, -1e300, 5e-324, -5e-324, 0.0, -0.0, 1e-310, 1.7976931348623157e308, -1.0])
    acts = rng.choice(pool, size=(50, n))
    pool32 = np.array([3e38, -3e38, 1e-45, -1e-45, 0.0, -0.0, 1.0], dtype=np.float32)
    acts32 = rng.choice(pool32, size=(50, n))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got, got32 = average_precision(acts, labels), average_precision(acts32, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref, ref32 = sk_ap(acts, labels), sk_ap(acts32, labels)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got32, ref32, rtol=0, atol=1e-12)


def test_signed_zero_is_a_tie() -> None:
    labels = np.array([True, False, True, False])
    for dtype in (np.float64, np.float32):
        acts = np.array([[0.0, -0.0, 1.0, 0.0]], dtype=dtype)
        np.testing.assert_allclose(average_precision(acts, labels), sk_ap(acts, labels), atol=1e-15)


def test_float16_and_integer_inputs() -> None:
    rng = np.random.default_rng(5)
    labels = random_labels(rng, 80)
    acts16 = rng.standard_normal((20, 80)).astype(np.float16)
    np.testing.assert_allclose(average_precision(acts16, labels), sk_ap(acts16, labels), atol=1e-12)
    acts_int = rng.integers(-3, 3, size=(20, 80))
    np.testing.assert_allclose(average_precision(acts_int, labels), sk_ap(acts_int, labels), atol=1e-12)


def test_multiple_concepts_match_single_calls() -> None:
    rng = np.random.default_rng(6)
    acts = rng.integers(0, 6, size=(40, 120)).astype(np.float32)
    cls = rng.integers(0, 3, 120)
    cls[:3] = [0, 1, 2]
    labels = np.stack([cls == c for c in range(3)])
    got = average_precision(acts, labels, chunk_units=9)
    assert got.shape == (3, 40)
    for c in range(3):
        np.testing.assert_allclose(got[c], sk_ap(acts, labels[c]), rtol=0, atol=1e-12)


def test_integer_labels_accepted() -> None:
    rng = np.random.default_rng(7)
    acts = rng.standard_normal((5, 30))
    labels = random_labels(rng, 30)
    np.testing.assert_array_equal(average_precision(acts, labels.astype(int)), average_precision(acts, labels))


def test_degenerate_labels_raise_with_counts() -> None:
    acts = np.zeros((3, 4))
    with pytest.raises(ConceptError, match="0 positives and 4 negatives"):
        average_precision(acts, np.zeros(4, bool))
    with pytest.raises(ConceptError, match="4 positives and 0 negatives"):
        unit_stats(acts, np.ones(4, bool))
    two = np.array([[True, False, False, False], [False, False, False, False]])
    with pytest.raises(ConceptError, match="concept 1: labels have 0 positives"):
        average_precision(acts, two)


def test_bad_label_values_and_shapes() -> None:
    acts = np.zeros((3, 4))
    with pytest.raises(ConceptError, match="boolean"):
        average_precision(acts, np.array([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="labels have 5 examples but acts have 4"):
        average_precision(acts, np.array([True, False, True, False, True]))
    with pytest.raises(ValueError, match="2-D"):
        average_precision(np.zeros(4), np.array([True, False, True, False]))
    with pytest.raises(TypeError, match="complex"):
        average_precision(np.zeros((2, 4), complex), np.array([True, False, True, False]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_names_first_bad_unit(dtype: type, bad: float) -> None:
    rng = np.random.default_rng(8)
    acts = rng.standard_normal((50, 20)).astype(dtype)
    acts[37, 5] = bad
    acts[23, 0] = bad
    labels = random_labels(rng, 20)
    with pytest.raises(ConceptError, match=r"row 23 \(unit index 23\)"):
        average_precision(acts, labels, chunk_units=4, n_threads=2)
    with pytest.raises(ConceptError, match="row 23 "):
        unit_stats(acts, labels, chunk_units=100)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_quantiles_match_numpy(dtype: type) -> None:
    rng = np.random.default_rng(9)
    for n in (2, 3, 17, 200):
        acts = rng.standard_normal((40, n)).astype(dtype)
        acts[::3] = np.round(acts[::3])
        labels = random_labels(rng, n, 0.35)
        q = concept_quantiles(acts, labels, chunk_units=11)
        x = acts.astype(np.float64)
        np.testing.assert_allclose(q["on_p50"], np.percentile(x[:, labels], 50, axis=1), rtol=1e-14, atol=0)
        np.testing.assert_allclose(q["on_p90"], np.percentile(x[:, labels], 90, axis=1), rtol=1e-14, atol=0)
        np.testing.assert_allclose(q["off_p50"], np.percentile(x[:, ~labels], 50, axis=1), rtol=1e-14, atol=0)
        np.testing.assert_allclose(q["off_mean"], x[:, ~labels].mean(axis=1), rtol=1e-12, atol=1e-15)


def test_unit_stats_combines_ap_and_quantiles() -> None:
    rng = np.random.default_rng(10)
    acts = rng.standard_normal((30, 60)).astype(np.float32)
    labels = np.stack([random_labels(rng, 60), random_labels(rng, 60, 0.5)])
    st = unit_stats(acts, labels, chunk_units=8, n_threads=2)
    q = concept_quantiles(acts, labels)
    np.testing.assert_array_equal(st.ap, average_precision(acts, labels))
    for key in ("on_p50", "on_p90", "off_mean", "off_p50"):
        assert getattr(st, key).shape == (2, 30)
        np.testing.assert_allclose(getattr(st, key), q[key], rtol=1e-15)
    np.testing.assert_allclose(st.on_p90[1], np.percentile(acts[:, labels[1]].astype(float), 90, axis=1))


def test_zero_units_and_chunk_validation() -> None:
    labels = np.array([True, False])
    assert average_precision(np.zeros((0, 2)), labels).shape == (0,)
    with pytest.raises(ValueError, match="chunk_units"):
        average_precision(np.zeros((2, 2)), labels, chunk_units=0)
    assert default_chunk_units(3600, 2) >= 1
    assert default_chunk_units(600) * 600 * 8 <= 8 * 2**20


def _by_kind(sels: list[Selection], scope: str, k: int) -> dict[str, Selection]:
    out = {}
    for s in sels:
        if s.scope == scope and s.k_requested == k:
            out[s.kind if s.kind != "random" else "random_" + s.matches] = s
    return out


def test_selections_top_bottom_both() -> None:
    rng = np.random.default_rng(11)
    n = 100
    ap = np.round(rng.random(n), 1)
    ids = rng.permutation(np.arange(1000, 1000 + n)).astype(np.int64)
    scopes = {"all": np.ones(n, bool), "half": np.arange(n) % 2 == 0}
    sels = build_selections(ap, ids, scopes, ks=(5, 30), seed=3, seed_key="t")
    assert len(sels) == 2 * 2 * 5
    for scope, mask in scopes.items():
        a, u = ap[mask], ids[mask]
        ref_top = [uid for _, uid in sorted(zip(-a, u))]
        ref_bottom = [uid for _, _, uid in sorted(zip(a, -u, u))]
        for k in (5, 30):
            d = _by_kind(sels, scope, k)
            ke = min(k, mask.sum() // 2)
            assert d["top"].units.tolist() == ref_top[:ke]
            assert d["bottom"].units.tolist() == ref_bottom[:ke]
            assert d["top"].ranks.tolist() == list(range(1, ke + 1))
            assert d["bottom"].ranks.tolist() == list(range(1, ke + 1))
            assert not set(d["top"].units) & set(d["bottom"].units)
            both = d["both"]
            assert both.units.tolist() == ref_top[:ke] + ref_bottom[:ke]
            assert both.ranks.tolist() == list(range(1, ke + 1)) * 2
            assert both.side.tolist() == [1] * ke + [-1] * ke
            assert d["random_top"].size == ke and d["random_both"].size == 2 * ke
            for s in d.values():
                assert s.units.dtype == np.int64 and s.ranks.dtype == np.int32
                assert set(s.units) <= set(u)
                assert len(set(s.units)) == s.size
                assert s.k_requested == k


def test_effective_k_and_skipped_scopes() -> None:
    ap = np.linspace(0, 1, 9)
    ids = np.arange(9, dtype=np.int64)
    scopes = {"small": np.arange(9) < 5, "empty": np.zeros(9, bool), "one": np.arange(9) == 8}
    sels = build_selections(ap, ids, scopes, ks=(1000,))
    assert {s.scope for s in sels} == {"small"}
    d = _by_kind(sels, "small", 1000)
    assert d["top"].units.tolist() == [4, 3] and d["bottom"].units.tolist() == [0, 1]
    assert d["random_both"].size == 4 and d["top"].k_requested == 1000


def test_random_sets_deterministic_and_seeded() -> None:
    n = 500
    ap = np.random.default_rng(12).random(n)
    ids = np.arange(n, dtype=np.int64) * 3
    scopes = {"s": np.ones(n, bool)}
    a = _by_kind(build_selections(ap, ids, scopes, ks=(50,), seed=1, seed_key="asr/eng"), "s", 50)
    b = _by_kind(build_selections(ap, ids, scopes, ks=(50,), seed=1, seed_key="asr/eng"), "s", 50)
    c = _by_kind(build_selections(ap, ids, scopes, ks=(50,), seed=1, seed_key="asr/deu"), "s", 50)
    d = _by_kind(build_selections(ap, ids, scopes, ks=(50,), seed=2, seed_key="asr/eng"), "s", 50)
    np.testing.assert_array_equal(a["random_top"].units, b["random_top"].units)
    np.testing.assert_array_equal(a["random_both"].units, b["random_both"].units)
    assert a["random_top"].units.tolist() != c["random_top"].units.tolist()
    assert a["random_top"].units.tolist() != d["random_top"].units.tolist()
    assert a["random_top"].units.tolist() != a["random_both"].units[:50].tolist()
    assert selection_seed(1, "asr/eng", "s", 50, "top") == selection_seed(1, "asr/eng", "s", 50, "top")
    assert a["random_top"].matches == "top" and a["random_both"].matches == "both"
    assert a["random_top"].ranks.tolist() == list(range(1, 51))


def test_selection_input_errors() -> None:
    ap = np.array([0.1, 0.2, np.nan, 0.4])
    ids = np.array([10, 11, 12, 13])
    with pytest.raises(ValueError, match="unit id 12"):
        build_selections(ap, ids, {"s": np.ones(4, bool)}, ks=(1,))
    with pytest.raises(ValueError, match="duplicates"):
        build_selections(np.zeros(4), np.array([1, 1, 2, 3]), {"s": np.ones(4, bool)})
    with pytest.raises(ValueError, match="scope 'x'"):
        build_selections(np.zeros(4), ids, {"x": np.ones(3, bool)})
    with pytest.raises(ValueError, match="positive integer"):
        build_selections(np.zeros(4), ids, {"s": np.ones(4, bool)}, ks=(0,))
