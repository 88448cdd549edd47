"""A `UnitStatsSource` that loads one concept's per-unit arrays on demand, for full-size models.

Batch experiments read them from the run's Parquet statistics, the backend from the store; both hand the arrays to
`InMemoryStats`, so a spec selects the same units (same rule, same seed) in the batch path and the live path.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from cachetools import LRUCache

from neuron_atlas.engine.interventions import STATISTICS, InMemoryStats
from neuron_atlas.engine.model.unit_sites import SiteRegistry

ConceptArrays = tuple[np.ndarray, dict[str, np.ndarray]]


class LazyConceptStats:
    """Per-concept AP and statistic arrays fetched by `loader(concept_id)` (None = no such concept), a few kept."""

    def __init__(self, registry: SiteRegistry, loader: Callable[[int], ConceptArrays | None], keep: int = 8):
        self.registry = registry
        self.loader = loader
        self.keep = keep
        self._cache: LRUCache[int, InMemoryStats | None] = LRUCache(maxsize=max(keep, 1))

    def _get(self, concept_id: int) -> InMemoryStats | None:
        cid = int(concept_id)
        if cid in self._cache:
            return self._cache[cid]
        arrays = self.loader(cid)
        source = None if arrays is None else InMemoryStats(self.registry, {cid: arrays[0]}, {cid: arrays[1]})
        self._cache[cid] = source
        return source

    def concept_exists(self, concept_id: int) -> bool:
        return self._get(concept_id) is not None

    def selection(self, concept_id: int, set_kind: str, k: int, seed: int, stack: str | None, component: str | None) -> np.ndarray:
        return self._get(concept_id).selection(concept_id, set_kind, k, seed, stack, component)

    def unit_values(self, concept_id: int, unit_ids: np.ndarray, stat: str) -> np.ndarray:
        return self._get(concept_id).unit_values(concept_id, unit_ids, stat)


def full_arrays(n_units: int, unit_ids: np.ndarray, ap: np.ndarray, stats: dict[str, np.ndarray]) -> ConceptArrays:
    """Spread a concept's rows over all units: NaN AP (= out of scope) for units the concept has no statistics for."""
    full_ap = np.full(n_units, np.nan)
    full_ap[unit_ids] = ap
    values = {}
    for name in STATISTICS:
        arr = np.full(n_units, np.nan, np.float32)
        arr[unit_ids] = stats[name]
        values[name] = arr
    return full_ap, values


def parquet_loader(stats_dir: Path, n_units: int) -> Callable[[int], ConceptArrays | None]:
    """Loader over a run's `stats/concept-*.parquet` files (written by precompute.analysis)."""

    def load(concept_id: int) -> ConceptArrays | None:
        files = sorted(Path(stats_dir).glob(f"concept-{concept_id:05d}-*.parquet"))
        if not files:
            return None
        tables = [pq.read_table(f) for f in files]
        ids = np.concatenate([t["unit_id"].to_numpy() for t in tables]).astype(np.int64)
        ap = np.concatenate([t["ap"].to_numpy() for t in tables])
        stats = {name: np.concatenate([t[name].to_numpy() for t in tables]) for name in STATISTICS}
        return full_arrays(n_units, ids, ap, stats)

    return load
