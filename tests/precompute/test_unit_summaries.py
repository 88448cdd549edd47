"""The unit summaries the store keeps (distributions, top/bottom items) equal numpy's answers on the raw values."""
from __future__ import annotations

import numpy as np
import pytest

from precompute.unit_summaries import QUANTILES, distribution_summary, extreme_items, summarise_chunk


def _values(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((40, 23)).astype(np.float32)
    v[3] = 0.0                      # ties everywhere
    v[5, ::2] = 1.5                 # ties among the top
    v[7] = np.nan                   # a unit the run did not record
    return v


def test_distribution_summary_matches_numpy():
    v = _values()
    s = distribution_summary(v)
    for row in (0, 3, 5, 39):
        x = v[row].astype(np.float64)
        assert s["n"][row] == len(x)
        assert s["mean"][row] == pytest.approx(x.mean()) and s["std"][row] == pytest.approx(x.std())
        assert s["mean_abs"][row] == pytest.approx(np.abs(x).mean(), rel=1e-12)
        assert [s[name][row] for name, _ in QUANTILES] == pytest.approx(np.quantile(x, [q for _, q in QUANTILES]))
    assert s["n"][7] == 0 and np.isnan(s["p50"][7]) and np.isnan(s["mean"][7])


def test_extreme_items_are_a_stable_sort():
    v = _values()
    ext = extreme_items(v, 6)
    for row in (0, 3, 5):
        assert ext["top"][row].tolist() == np.argsort(-v[row], kind="stable")[:6].tolist()
        assert ext["bottom"][row].tolist() == np.argsort(v[row], kind="stable")[:6].tolist()
        assert ext["top_values"][row].tolist() == sorted(v[row].tolist(), reverse=True)[:6]
    assert extreme_items(v, 100)["top"].shape == (40, 23)


def test_summarise_chunk_rows_per_language_and_unit():
    v = _values()
    labels = np.array(["deu"] * 10 + ["fra"] * 13)
    items = np.arange(100, 123)
    dist, ex = summarise_chunk(v, np.arange(1000, 1040), items, labels, "t2tt", 7, k=4)
    assert dist.num_rows == 2 * 39 and ex.num_rows == 39       # the unrecorded unit has no rows
    assert 1007 not in dist.column("unit_id").to_pylist()
    fra = dist.filter(dist.column("language").to_numpy(zero_copy_only=False) == "fra").to_pandas()
    row = fra[fra.unit_id == 1000].iloc[0]
    assert row["n"] == 13 and row["p50"] == pytest.approx(np.median(v[0, 10:]))
    top = ex.column("top_items").to_pylist()[0]
    assert top == (items[np.argsort(-v[0], kind="stable")[:4]]).tolist()
    assert set(ex.column("step").to_pylist()) == {7}
