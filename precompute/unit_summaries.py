"""What the unit page and the concentration drill-down show, summarised from unit-major activation chunks.

Pure, vectorised functions over a chunk `values[units, items]` of one task and stack/step: per (unit, label
language) the value distribution (count, mean, std, mean |value|, quantiles), and per unit the items with the
highest and lowest values. `write_unit_summaries` runs them chunk by chunk over a recorded run and streams the
rows to Parquet files that the store ingests (tables `unit_distributions` and `unit_examples`, docs/store.md), so
the store alone serves those pages and no server needs the run's activation arrays.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from neuron_atlas.engine.model.unit_sites import SiteRegistry
from neuron_atlas.engine.record import encoder_stack
from neuron_atlas.engine.store_schema import TOP_EXAMPLES, UNIT_QUANTILES
from neuron_atlas.engine.tasks import TaskItem
from precompute.activation_store import decoder_name, load_acts

#: Quantile levels stored per (unit, task, step, language), with their column names.
QUANTILES = UNIT_QUANTILES
#: Float32 values per chunk (units x items): bounds the memory of one summary step (64 MB of values, about six
#: times that at peak with the two sorts' int64 orders).
CHUNK_VALUES = 16 * 1024 * 1024
DECODER = "text_decoder"


def read_unit_chunk(root: Path, task: str, name: str, start: int, stop: int) -> np.ndarray:
    """Activations [units start:stop, items] of one task and stack/step: the one place the summaries read them."""
    return np.asarray(load_acts(root, task, name)[start:stop], dtype=np.float32)


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


def unit_chunks(n_units: int, n_items: int, chunk_values: int = CHUNK_VALUES) -> Iterator[tuple[int, int]]:
    """(start, stop) unit ranges whose [units, items] float32 block holds about `chunk_values` values."""
    step = max(1, chunk_values // max(n_items, 1))
    for start in range(0, n_units, step):
        yield start, min(start + step, n_units)


def write_unit_summaries(root: Path, registry: SiteRegistry, items: dict[str, Sequence[TaskItem]],
                         steps: Sequence[int], out_dir: Path, chunk_values: int = CHUNK_VALUES) -> None:
    """Summaries of every (task, stack/step) array of a run, one Parquet pair per unit chunk in `out_dir`
    (`dist-*.parquet`, `examples-*.parquet`, named so that sorting them keeps task, array and unit order)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for t, (task, rows) in enumerate(items.items()):
        if not rows:
            continue
        index = np.array([it.index for it in rows], dtype=np.int64)
        labels = np.array([it.label for it in rows])
        enc = encoder_stack(task)
        arrays = [(enc, enc, None)] + [(DECODER, decoder_name(s), s) for s in steps]
        for a, (stack, name, step) in enumerate(arrays):
            rng = registry.stack_ranges[stack]
            for start, stop in unit_chunks(len(rng), len(index), chunk_values):
                values = read_unit_chunk(root, task, name, start, stop)[:, index]
                unit_ids = np.arange(rng.start + start, rng.start + stop, dtype=np.int64)
                dist, examples = summarise_chunk(values, unit_ids, index, labels, task, step)
                stem = f"{t:03d}-{a:03d}-{start:09d}"
                pq.write_table(dist, out_dir / f"dist-{stem}.parquet")
                pq.write_table(examples, out_dir / f"examples-{stem}.parquet")
