"""`StoreStats`: the store's statistics of one run as the intervention engine's `UnitStatsSource` (live path)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from backend.store.base import StoreBase
from backend.store.common import known
from backend.store.layout import range_sql
from neuron_atlas.engine.interventions import STATISTICS, SpecError, select_units
from neuron_atlas.engine.model.unit_sites import component_members


class StoreStats:
    """The store's statistics of one run as the intervention engine's `UnitStatsSource`.

    Selections run the engine's `select_units` on the scope's `unit_stats` rows, as the batch experiments do on the
    same statistics from the run's Parquet files, so both paths force the same units. With no stack the scope is
    every stack the concept has statistics for; `component` may be a component or the group `attention`.
    """

    def __init__(self, reader: StoreBase, run_id: str):
        self.reader = reader
        self.run_id = run_id

    def concept_exists(self, concept_id: int) -> bool:
        return self.reader.concept_exists(self.run_id, int(concept_id))

    def selection(self, concept_id: int, set_kind: str, k: int, seed: int, stack: str | None, component: str | None) -> np.ndarray:
        concept = self.reader.concept(self.run_id, concept_id)
        layout = self.reader.layout(self.run_id)
        stacks = list(concept["stacks"]) if stack is None else [stack]
        if stack is not None and stack not in concept["stacks"]:
            raise SpecError("units.stack", f"concept {concept_id} has statistics for {known(concept['stacks'])}, not {stack}")
        ranges: list[tuple[int, int]] = []
        for s in stacks:
            if component is None:
                ranges.append(layout.stack_ranges[s])
            else:
                for member in component_members(component):
                    ranges += layout.ranges(s, component=member)
        scope_label = (stack or "all stacks") + (f" ({component})" if component else "")
        rows = self.reader._numpy(f"SELECT unit_id, ap FROM unit_stats WHERE run_id = ? AND concept_id = ? AND "
                                  f"{range_sql(ranges)} AND NOT isnan(ap) ORDER BY unit_id", [self.run_id, concept_id])
        return select_units(rows["unit_id"], rows["ap"], set_kind, k, seed, f"{scope_label} with an AP for concept {concept_id}")

    def unit_values(self, concept_id: int, unit_ids: np.ndarray, stat: str) -> np.ndarray:
        if stat not in STATISTICS:
            raise SpecError("value.kind", f"unknown statistic {stat!r}; expected one of {STATISTICS}")
        ids = np.asarray(unit_ids, dtype=np.int64)
        out = np.full(len(ids), np.nan, dtype=np.float32)
        if not len(ids):
            return out
        cur = self.reader.cursor()
        try:
            cur.register("_wanted", pd.DataFrame({"unit_id": ids.astype(np.int32)}))
            rows = cur.execute(
                f"SELECT s.unit_id, s.{stat} AS v FROM unit_stats s SEMI JOIN _wanted w ON s.unit_id = w.unit_id "
                f"WHERE s.run_id = ? AND s.concept_id = ? AND s.unit_id >= ? AND s.unit_id <= ?",
                [self.run_id, int(concept_id), int(ids.min()), int(ids.max())]).fetchnumpy()
        finally:
            cur.close()
        order = np.argsort(ids)
        pos = np.searchsorted(ids[order], rows["unit_id"].astype(np.int64))
        out[order[pos]] = rows["v"].astype(np.float32)
        return out
