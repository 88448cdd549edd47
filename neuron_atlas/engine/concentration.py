"""Activation concentration: Gini coefficient and top-share of per-unit activation magnitudes.

The paper gives no statistic; we use the Gini coefficient of per-unit mean |pooled activation| per
(task, language, step, stack, layer) and the share of the total magnitude carried by the top 1 % of units.
Conventions: an all-zero input has Gini 0.0 (perfect equality) and top share m/n (the equal-share limit).
"""

from __future__ import annotations

import math

import numpy as np

TOP_FRACTION = 0.01
"""Fraction of units whose share of the total magnitude ``group_concentration`` reports (top 1 %)."""

_CEIL_SLACK = 1e-9


def _check_nonneg(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"{name} has a non-finite value at index {tuple(int(i) for i in bad)}")
    if (x < 0).any():
        bad = np.argwhere(x < 0)[0]
        raise ValueError(f"{name} has a negative value {float(x[tuple(bad)])!r} at index {tuple(int(i) for i in bad)}")
    return x


def top_count(n: int, frac: float = TOP_FRACTION) -> int:
    """Number of values in the top ``frac`` of n: ceil(frac * n), at least 1 (slack absorbs 0.01*300 rounding)."""
    if not 0.0 < frac <= 1.0:
        raise ValueError(f"frac must be in (0, 1]; got {frac}")
    return max(1, math.ceil(frac * n - _CEIL_SLACK))


def gini(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Gini coefficient of non-negative values along ``axis``: sum_i (2i - n - 1) x_(i) / (n sum x).

    x_(i) is x sorted ascending, i = 1..n. All-zero slices give 0.0. Negative or non-finite values raise.
    """
    x = _check_nonneg(x, "x")
    x = np.moveaxis(x, axis, -1)
    n = x.shape[-1]
    if n == 0:
        raise ValueError("gini needs at least one value along the axis")
    xs = np.sort(x, axis=-1)
    w = 2.0 * np.arange(1, n + 1) - n - 1
    num = xs @ w
    total = xs.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        g = num / (n * total)
    return np.where(total > 0, g, 0.0)


def top_share(x: np.ndarray, frac: float = TOP_FRACTION, axis: int = -1) -> np.ndarray:
    """Share of sum(x) carried by the largest ceil(frac * n) values (at least one) along ``axis``.

    All-zero slices give m / n (the share under equality, consistent with Gini 0).
    """
    x = _check_nonneg(x, "x")
    x = np.moveaxis(x, axis, -1)
    n = x.shape[-1]
    if n == 0:
        raise ValueError("top_share needs at least one value along the axis")
    m = top_count(n, frac)
    top = np.partition(x, n - m, axis=-1)[..., n - m:].sum(axis=-1)
    total = x.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = top / total
    return np.where(total > 0, share, m / n)


def group_concentration(values: np.ndarray, groups: np.ndarray) -> dict[str, np.ndarray]:
    """Per-group Gini, top-1 % share and total of non-negative per-unit values (e.g. groups = layers).

    Returns arrays keyed group (sorted unique ids), n_units, gini, top1_share, total. Computed with one
    sort by (group, value) and segment sums; no loop over units or groups.
    """
    v = _check_nonneg(values, "values")
    g = np.asarray(groups)
    if v.ndim != 1:
        raise ValueError(f"values must be 1-D (n_units,); got shape {v.shape}")
    if g.shape != v.shape:
        raise ValueError(f"groups must have shape {v.shape}; got {g.shape}")
    if g.dtype.kind not in "iu":
        raise ValueError(f"groups must be integers; got dtype {g.dtype}")
    if v.size == 0:
        raise ValueError("values is empty")
    order = np.lexsort((v, g))
    vs, gs = v[order], g[order]
    starts = np.flatnonzero(np.r_[True, gs[1:] != gs[:-1]])
    sizes = np.diff(np.r_[starts, vs.size])
    seg = np.repeat(np.arange(starts.size), sizes)
    rank = np.arange(vs.size) - starts[seg] + 1
    n_seg = sizes[seg]
    total = np.add.reduceat(vs, starts)
    num = np.add.reduceat((2.0 * rank - n_seg - 1) * vs, starts)
    m = np.maximum(1, np.ceil(TOP_FRACTION * sizes - _CEIL_SLACK).astype(np.int64))
    in_top = rank > (n_seg - m[seg])
    top = np.add.reduceat(np.where(in_top, vs, 0.0), starts)
    pos = total > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        g_coef = np.where(pos, num / (sizes * total), 0.0)
        share = np.where(pos, top / total, m / sizes)
    return {
        "group": gs[starts].astype(np.int64),
        "n_units": sizes.astype(np.int64),
        "gini": g_coef,
        "top1_share": share,
        "total": total,
    }


def mean_abs_activation(acts: np.ndarray, example_mask: np.ndarray, chunk_units: int = 4096) -> np.ndarray:
    """Per-unit mean |pooled activation| over the selected examples, in float64, chunked over units."""
    if acts.ndim != 2:
        raise ValueError(f"acts must be 2-D (n_units, n_examples); got shape {acts.shape}")
    mask = np.asarray(example_mask)
    if mask.dtype != np.bool_ or mask.shape != (acts.shape[1],):
        raise ValueError(f"example_mask must be bool of shape ({acts.shape[1]},); got {mask.dtype} {mask.shape}")
    cols = np.flatnonzero(mask)
    if cols.size == 0:
        raise ValueError("example_mask selects no examples")
    if chunk_units < 1:
        raise ValueError(f"chunk_units must be >= 1; got {chunk_units}")
    out = np.empty(acts.shape[0], np.float64)
    for s in range(0, acts.shape[0], chunk_units):
        block = np.abs(np.take(acts[s:s + chunk_units], cols, axis=1).astype(np.float64, copy=False))
        out[s:s + chunk_units] = block.mean(axis=1)
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        raise ValueError(f"acts row {int(bad[0])} has non-finite values among the selected examples")
    return out
