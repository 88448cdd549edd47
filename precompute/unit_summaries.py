"""What the unit page and the concentration drill-down show, summarised from unit-major activation chunks.

Pure, vectorised functions over a chunk `values[units, items]` of one task and stack/step: per (unit, label
language) the value distribution (count, mean, std, mean |value|, quantiles), and per unit the items with the
highest and lowest values. `precompute.analysis.analyse_chunk` runs them on each unit chunk it reads from the
shards (locally or as a Ray task) and the phase writes the rows to Parquet files that the store ingests (tables
`unit_distributions` and `unit_examples`, docs/store.md), so the store alone serves those pages and no server needs
the run's activation arrays.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from neuron_atlas.engine.store_schema import TOP_EXAMPLES, UNIT_QUANTILES

#: Quantile levels stored per (unit, task, step, language), with their column names.
QUANTILES = UNIT_QUANTILES


def distribution_summary(values: np.ndarray) -> dict[str, np.ndarray]:
    """Per row of `values` [units, items] over its finite entries: n, mean, std (population), mean |value| and the
    `QUANTILES` (linear interpolation, numpy's default). Rows without finite values get n = 0 and NaN elsewhere."""
    values = np.asarray(values, dtype=np.float32)
    finite = np.isfinite(values)
    n = finite.sum(axis=1)
    wide = np.where(finite, values, 0.0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = wide.sum(axis=1) / n
        std = np.sqrt(np.where(finite, (wide - mean[:, None]) ** 2, 0.0).sum(axis=1) / n)
        mean_abs = np.abs(wide).sum(axis=1) / n
    ordered = np.sort(values, axis=1)  # NaN sorts last, so the first n entries of a row are its finite values
    out = {"n": n.astype(np.int32), "mean": mean, "std": std, "mean_abs": mean_abs}
    last = np.maximum(n - 1, 0)
    rows = np.arange(values.shape[0])
    for name, q in QUANTILES:
        pos = q * last
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, last)
        frac = pos - lo
        a, b = ordered[rows, lo].astype(np.float64), ordered[rows, hi].astype(np.float64)
        out[name] = np.where(n > 0, a + frac * (b - a), np.nan)
    return out


def extreme_items(values: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Column positions and values of each row's k highest and k lowest finite entries, ties in column order
    (a stable sort); NaN entries come after every finite one. Shapes [units, min(k, items)]."""
    values = np.asarray(values, dtype=np.float32)
    k = min(k, values.shape[1])
    top = np.argsort(-np.nan_to_num(values, nan=-np.inf), axis=1, kind="stable")[:, :k]
    bottom = np.argsort(np.nan_to_num(values, nan=np.inf), axis=1, kind="stable")[:, :k]
    return {"top": top, "top_values": np.take_along_axis(values, top, axis=1),
            "bottom": bottom, "bottom_values": np.take_along_axis(values, bottom, axis=1)}


def _lists(matrix: np.ndarray, arrow_type: pa.DataType) -> pa.ListArray:
    """A [rows, k] matrix as a list column of k entries per row (no copy per row)."""
    rows, k = matrix.shape
    offsets = pa.array(np.arange(0, rows * k + 1, k, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(matrix.ravel(), type=arrow_type))


def summarise_chunk(values: np.ndarray, unit_ids: np.ndarray, items: np.ndarray, labels: np.ndarray, task: str,
                    step: int | None, k: int = TOP_EXAMPLES) -> tuple[pa.Table, pa.Table]:
    """Rows of `unit_distributions` (one per unit with values x label language) and `unit_examples` (one per unit
    with values) for a chunk `values[units, items]` whose columns are the task's items `items` labelled `labels`."""
    dist_parts = []
    for lang in dict.fromkeys(labels.tolist()):
        s = distribution_summary(values[:, labels == lang])
        keep = s["n"] > 0
        m = int(keep.sum())
        cols = {"task": pa.array([task] * m, pa.string()), "step": pa.array([step] * m, pa.int32()),
                "language": pa.array([lang] * m, pa.string()), "unit_id": pa.array(unit_ids[keep].astype(np.int32)),
                "n": pa.array(s["n"][keep]), "mean": pa.array(s["mean"][keep].astype(np.float32)),
                "std": pa.array(s["std"][keep].astype(np.float32)), "mean_abs": pa.array(s["mean_abs"][keep])}
        cols.update({name: pa.array(s[name][keep].astype(np.float32)) for name, _ in QUANTILES})
        dist_parts.append(pa.table(cols))
    recorded = np.isfinite(values).any(axis=1)
    ext = extreme_items(values[recorded], k)
    m = int(recorded.sum())
    examples = pa.table({
        "task": pa.array([task] * m, pa.string()), "step": pa.array([step] * m, pa.int32()),
        "unit_id": pa.array(unit_ids[recorded].astype(np.int32)),
        "top_items": _lists(items[ext["top"]].astype(np.int32), pa.int32()),
        "top_values": _lists(ext["top_values"], pa.float32()),
        "bottom_items": _lists(items[ext["bottom"]].astype(np.int32), pa.int32()),
        "bottom_values": _lists(ext["bottom_values"], pa.float32()),
    })
    return pa.concat_tables(dist_parts), examples
