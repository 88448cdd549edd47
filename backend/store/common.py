"""What every store query shares: table and column vocabularies, errors, JSON-safe records."""
from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np
import pandas as pd

from neuron_atlas.engine.concentration import gini
from neuron_atlas.engine.store_schema import RUN_TABLES


#: Per-unit statistics a layer listing can sort and filter by (columns of unit_stats).
STAT_COLUMNS: tuple[str, ...] = ("ap", "on_p50", "on_p90", "off_mean", "off_p50")
#: Columns a layer listing can sort by.
SORT_COLUMNS: tuple[str, ...] = ("unit_id", *STAT_COLUMNS)
#: Tables that can be exported as Parquet (the analysis tables and the version table).
EXPORT_TABLES: tuple[str, ...] = ("meta", *RUN_TABLES)
#: Heatmap modes: count units with AP >= threshold, or units in a stored top/bottom/both selection.
HEATMAP_MODES: tuple[str, ...] = ("ap", "top", "bottom", "both")
#: Most concepts one heatmap may show.
MAX_HEATMAP_CONCEPTS = 1000
#: Stored selection sets kept in memory, per (run, kind, scope, k).
MAX_SELECTION_SETS = 64
#: Concentration metrics (columns of the concentration table).
CONCENTRATION_METRICS: tuple[str, ...] = ("gini", "top1_share", "total")
#: Overlap metrics (columns of the overlap table).
OVERLAP_METRICS: tuple[str, ...] = ("count", "c_over_k", "jaccard")


#: Catalog name the store is attached under. Each open attaches the file into a fresh in-memory database, so a
#: store renamed over the old file is really reopened (a plain `duckdb.connect(path)` would reuse the cached
#: instance of the old file while any cursor on it is alive).
CATALOG = "atlas"


#: A replaced store's connection is closed this long after the switch (queries in flight on it finish first).
RETIRE_AFTER_S = 60.0
#: Columns read by `StoreReader.warm` (every column the unit, layer and heatmap queries touch).
WARM_TABLES = {
    "unit_stats": ("concept_id", "unit_id", "ap", "on_p50", "on_p90", "off_mean", "off_p50"),
    "selections": ("concept_id", "unit_id", "rank", "k_requested"),
}


class StoreUnavailable(RuntimeError):
    """No store can be opened at the configured path (missing, unreadable or not a DuckDB file)."""


class NotFoundError(LookupError):
    """A run, concept, unit, example or table named in a request does not exist; the message says which."""


class QueryError(ValueError):
    """A query parameter is invalid for this run (unknown stack, sort column, language...); the message names it."""


def known(values: Sequence, limit: int = 12) -> str:
    vals = [str(v) for v in values]
    more = f", ... ({len(vals)} in all)" if len(vals) > limit else ""
    return ", ".join(vals[:limit]) + more if vals else "none"


def sql_string(text: str) -> str:
    return text.replace("'", "''")


def finite(v) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if np.isfinite(v) else None


def _clean_value(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return finite(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.ndarray):
        return [_clean_value(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_clean_value(x) for x in v]
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    if v is pd.NaT or (v is not None and not isinstance(v, (str, bytes, dict)) and pd.isna(v) is True):
        return None
    return v


def clean_record(r: dict) -> dict:
    """JSON-safe values: numpy scalars to Python, NaN/inf to None, timestamps to ISO strings."""
    return {k: _clean_value(v) for k, v in r.items()}
