"""Cross-modal comparison of unit sets and AP vectors: overlap counts, c/k, Jaccard and Spearman rho.

Sets hold integer unit indices in [0, n_total). For sets of sizes a and b, k is (a + b) / 2 (equal to the
common size in the usual top-k vs top-k case); chance is the expected overlap of independent uniform random
sets, a * b / N (k^2 / N for equal sizes), and chance Jaccard is the plug-in value E[c] / (a + b - E[c]).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _membership(sets: Sequence[np.ndarray], n_total: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Boolean-valued float32 membership matrix (n_sets, n_total) and set sizes; validates every set."""
    m = np.zeros((len(sets), n_total), np.float32)
    sizes = np.empty(len(sets), np.int64)
    for i, s in enumerate(sets):
        a = np.asarray(s)
        if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
            raise ValueError(f"{name}[{i}] must be a 1-D integer array; got {a.dtype} {a.shape}")
        if a.size == 0:
            raise ValueError(f"{name}[{i}] is empty")
        if a.min() < 0 or a.max() >= n_total:
            raise ValueError(f"{name}[{i}] has unit indices outside [0, {n_total})")
        m[i, a] = 1.0
        sizes[i] = a.size
        if int(m[i].sum()) != a.size:
            raise ValueError(f"{name}[{i}] contains duplicate unit indices")
    return m, sizes


def overlap_matrix(sets_a: Sequence[np.ndarray], sets_b: Sequence[np.ndarray], n_total: int) -> dict[str, np.ndarray]:
    """Pairwise overlap of every set in ``sets_a`` with every set in ``sets_b`` (arrays (n_a, n_b)).

    Keys: count, c_over_k, jaccard, chance (expected count), chance_c_over_k, chance_jaccard, k, size_a, size_b.
    """
    if n_total < 1:
        raise ValueError(f"n_total must be positive; got {n_total}")
    ma, sa = _membership(sets_a, n_total, "sets_a")
    mb, sb = _membership(sets_b, n_total, "sets_b")
    count = np.rint(ma @ mb.T).astype(np.int64)
    a, b = sa[:, None].astype(np.float64), sb[None, :].astype(np.float64)
    k = (a + b) / 2.0
    chance = a * b / n_total
    return {
        "count": count,
        "c_over_k": count / k,
        "jaccard": count / (a + b - count),
        "chance": chance,
        "chance_c_over_k": chance / k,
        "chance_jaccard": chance / (a + b - chance),
        "k": k,
        "size_a": sa,
        "size_b": sb,
    }


def shared_units(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sorted unit indices present in both sets (for click-through from an overlap cell)."""
    return np.intersect1d(np.asarray(a), np.asarray(b)).astype(np.int64)


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Row-wise ranks 1..n with ties given their average rank (scipy.stats.rankdata 'average'), vectorised."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array (rows, n); got shape {x.shape}")
    rows, n = x.shape
    order = np.argsort(x, axis=1, kind="stable")
    s = np.take_along_axis(x, order, axis=1)
    new = np.ones((rows, n), bool)
    new[:, 1:] = s[:, 1:] != s[:, :-1]
    idx = np.arange(n)
    first = np.maximum.accumulate(np.where(new, idx, 0), axis=1)
    last_mark = np.ones((rows, n), bool)
    last_mark[:, :-1] = new[:, 1:]
    last = np.flip(np.minimum.accumulate(np.flip(np.where(last_mark, idx, n), axis=1), axis=1), axis=1)
    avg = (first + last) / 2.0 + 1.0
    ranks = np.empty((rows, n), np.float64)
    np.put_along_axis(ranks, order, avg, axis=1)
    return ranks


def _check_rows(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, n_units); got shape {x.shape}")
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        raise ValueError(f"{name} row {int(bad[0])} contains NaN or infinite values")
    return x


def spearman_matrix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman rho between every row of x (n_a, n_units) and every row of y (n_b, n_units).

    Ties get average ranks (as scipy.stats.spearmanr). A constant row has no defined rho: its entries are
    NaN (store as NULL), like scipy; so is every entry when there are fewer than 2 units.
    """
    x, y = _check_rows(x, "x"), _check_rows(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has {x.shape[1]} units per row but y has {y.shape[1]}")
    if x.shape[1] < 2:
        return np.full((x.shape[0], y.shape[0]), np.nan)

    def unit_rows(r: np.ndarray) -> np.ndarray:
        c = average_ranks(r)
        c -= c.mean(axis=1, keepdims=True)
        norm = np.sqrt((c * c).sum(axis=1, keepdims=True))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(norm > 0, c / norm, np.nan)

    rho = unit_rows(x) @ unit_rows(y).T
    return np.clip(rho, -1.0, 1.0)


def spearman_by_group(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> dict[object, np.ndarray]:
    """spearman_matrix restricted to the units of each group (component or layer); few groups, one loop."""
    x, y = _check_rows(x, "x"), _check_rows(y, "y")
    g = np.asarray(groups)
    if g.shape != (x.shape[1],):
        raise ValueError(f"groups must have shape ({x.shape[1]},); got {g.shape}")
    return {key.item() if hasattr(key, "item") else key: spearman_matrix(x[:, g == key], y[:, g == key])
            for key in np.unique(g)}
