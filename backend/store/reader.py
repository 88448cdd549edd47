"""Read-only queries over atlas.duckdb for the backend: `StoreReader` joins the query families, each in its module.

- `base`: connection (read-only, reopened when the file is replaced), runs, concepts;
- `analysis`: heatmaps, stored selections, concentration, overlap, Spearman;
- `units`: layers, units, activations from the work folder's arrays;
- `examples`: examples and audio, batch interventions, Parquet exports;
- `search`: units by id, site key or filters;
- `stats`: `StoreStats`, the store-backed `UnitStatsSource` of live interventions;
- `common` / `layout`: vocabularies, errors, JSON-safe records; a run's unit layout.
"""
from __future__ import annotations

from backend.store.analysis import AnalysisQueries
from backend.store.common import (
    EXPORT_TABLES,
    SORT_COLUMNS,
    STAT_COLUMNS,
    NotFoundError,
    QueryError,
    StoreUnavailable,
    clean_record,
)
from backend.store.examples import ExampleQueries
from backend.store.layout import RunLayout
from backend.store.search import SearchQueries
from backend.store.stats import StoreStats
from backend.store.units import UnitQueries

__all__ = ["EXPORT_TABLES", "SORT_COLUMNS", "STAT_COLUMNS", "NotFoundError", "QueryError", "RunLayout", "StoreReader",
           "StoreStats", "StoreUnavailable", "clean_record"]


class StoreReader(AnalysisQueries, UnitQueries, ExampleQueries, SearchQueries):
    """A read-only view of atlas.duckdb, safe to share between request threads (one DuckDB cursor per call)."""
