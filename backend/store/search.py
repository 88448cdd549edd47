"""Find units: by unit id, by site key with a channel (`text_decoder.layers.3.ffn.fc1:17`), by (part of) a site key,
or by filters (stack, layer, component, and a concept's AP range).

Sites are matched in the run's in-memory layout (a few hundred rows); units without a concept are enumerated from
the matching sites' unit-id ranges with numpy; an AP range is one DuckDB query on unit_stats restricted to those
ranges (sorted by AP, highest first).
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from backend.store.base import StoreBase
from backend.store.common import NotFoundError, QueryError, clean_record, known
from backend.store.layout import RunLayout, range_sql
from neuron_atlas.engine.model.unit_sites import COMPONENTS

#: `site:channel`, the form the layer grid, the lab and exported specs write a unit in.
SITE_CHANNEL = re.compile(r"^(?P<site>[A-Za-z_][\w.]*):(?P<channel>\d+)$")
#: How a query text was read (returned as `interpreted_as`).
INTERPRETATIONS = ("unit", "site_channel", "site", "site_text", "filters")


def _site_mask(layout: RunLayout, stack: str | None, layer: int | None, component: str | None) -> np.ndarray:
    s = layout.sites
    mask = np.ones(len(s), dtype=bool)
    if stack is not None:
        layout.check_stack(stack)
        mask &= (s["stack"] == stack).to_numpy()
    if layer is not None:
        mask &= (s["layer"] == layer).to_numpy()
    if component is not None:
        if component not in COMPONENTS:
            raise QueryError(f"component: unknown component {component!r}; expected one of {', '.join(COMPONENTS)}")
        mask &= (s["component"] == component).to_numpy()
    return mask


def _ranges(sites: pd.DataFrame) -> list[tuple[int, int]]:
    """Merged [start, stop) unit-id ranges of the given sites (sorted by offset)."""
    out: list[tuple[int, int]] = []
    for start, width in zip(sites["unit_offset"].to_numpy(np.int64), sites["width"].to_numpy(np.int64)):
        if out and out[-1][1] == start:
            out[-1] = (out[-1][0], int(start + width))
        else:
            out.append((int(start), int(start + width)))
    return out


def _enumerate(sites: pd.DataFrame, offset: int, limit: int) -> np.ndarray:
    """Unit ids number offset .. offset+limit of the given sites' units, in unit-id order (vectorised)."""
    widths = sites["width"].to_numpy(np.int64)
    ends = np.cumsum(widths)
    positions = np.arange(offset, min(offset + limit, int(ends[-1]) if len(ends) else 0), dtype=np.int64)
    if not len(positions):
        return positions
    idx = np.searchsorted(ends, positions, side="right")
    starts = ends - widths
    return sites["unit_offset"].to_numpy(np.int64)[idx] + positions - starts[idx]


class SearchQueries(StoreBase):
    """Unit search over a run's layout and its per-concept statistics."""

    def search_units(self, run_id: str, q: str | None = None, *, stack: str | None = None, layer: int | None = None,
                     component: str | None = None, concept_id: int | None = None, min_ap: float | None = None,
                     max_ap: float | None = None, limit: int = 20, offset: int = 0) -> dict[str, Any]:
        """Units matching a query text and filters. The text is a unit id, `site:channel`, a site key or words that
        every matching site key contains; filters narrow the sites; an AP range (which needs `concept_id`) keeps the
        units whose AP for that concept lies in it, highest AP first."""
        layout = self.layout(run_id)
        text = (q or "").strip()
        if (min_ap is not None or max_ap is not None) and concept_id is None:
            raise QueryError("concept_id: an AP range (min_ap, max_ap) needs the concept whose AP it bounds")
        for name, value in (("min_ap", min_ap), ("max_ap", max_ap)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise QueryError(f"{name}: AP lies between 0 and 1, got {value:g}")
        if min_ap is not None and max_ap is not None and min_ap > max_ap:
            raise QueryError(f"max_ap: {max_ap:g} is below min_ap {min_ap:g}")
        concept = self.concept(run_id, concept_id) if concept_id is not None else None
        result: dict[str, Any] = {"run_id": run_id, "q": text or None, "concept": concept, "limit": limit, "offset": offset,
                                  "message": None}
        if text.isdigit():
            unit_id = int(text)
            layout.check_unit(unit_id)
            return self._single(result, layout, unit_id, "unit", concept_id)
        match = SITE_CHANNEL.match(text)
        if match:
            site, channel = match["site"], int(match["channel"])
            row = layout.sites[layout.sites["site"] == site]
            if row.empty:
                raise NotFoundError(f"q: run {run_id} has no site {site!r} (site keys look like "
                                    f"{layout.sites['site'].iloc[len(layout.sites) // 2]!r})")
            width = int(row["width"].iloc[0])
            if channel >= width:
                raise NotFoundError(f"q: site {site} has channels 0..{width - 1}, not {channel}")
            return self._single(result, layout, int(row["unit_offset"].iloc[0]) + channel, "site_channel", concept_id)
        mask = _site_mask(layout, stack, layer, component)
        keys = layout.sites["site"]
        if text and (keys == text).any():
            mask &= (keys == text).to_numpy()
            result["interpreted_as"] = "site"
        elif text:
            lowered = keys.str.lower()
            for term in text.lower().split():
                mask &= lowered.str.contains(term, regex=False).to_numpy()
            result["interpreted_as"] = "site_text"
        else:
            result["interpreted_as"] = "filters"
        sites = layout.sites[mask]
        if concept is not None:
            sites = sites[sites["stack"].isin(concept["stacks"])]
        if sites.empty:
            result.update(total=0, units=[], message=self._nothing(text, stack, layer, component, concept))
            return result
        if concept is None:
            ids = _enumerate(sites, offset, limit)
            info = layout.unit_info(ids)
            result.update(total=int(sites["width"].sum()), units=[clean_record(r) for r in info.to_dict("records")])
            return result
        total, ids, aps = self._rank_by_ap(run_id, concept_id, sites, min_ap, max_ap, limit, offset)
        info = layout.unit_info(ids)
        info["ap"] = aps
        result.update(total=total, units=[clean_record(r) for r in info.to_dict("records")])
        if not total:
            result["message"] = self._nothing(text, stack, layer, component, concept, min_ap, max_ap)
        return result

    def _rank_by_ap(self, run_id: str, concept_id: int, sites: pd.DataFrame, min_ap: float | None,
                    max_ap: float | None, limit: int, offset: int) -> tuple[int, np.ndarray, np.ndarray]:
        """(matches, unit ids, APs) of one page of the sites' units with AP in range, highest AP first: one query
        whose plain predicates (concept, the sites' bounding id range, AP bounds) let DuckDB skip row groups, with
        the exact site ranges added only when the sites are not one block, and the count as a window."""
        ranges = _ranges(sites)
        conds = ["run_id = ?", "concept_id = ?", "unit_id >= ?", "unit_id < ?"]
        params: list[Any] = [run_id, concept_id, ranges[0][0], ranges[-1][1]]
        if len(ranges) > 1:
            conds.append(range_sql(ranges))
        for op, value in ((">=", min_ap), ("<=", max_ap)):
            if value is not None:
                conds.append(f"ap {op} ?")
                params.append(float(value))
        where = " AND ".join(conds)
        df = self._query(f"SELECT unit_id, ap, count(*) OVER () AS total FROM unit_stats WHERE {where} "
                         f"ORDER BY ap DESC NULLS LAST, unit_id LIMIT {int(limit)} OFFSET {int(offset)}", params)
        if len(df):
            total = int(df["total"].iloc[0])
        else:
            total = int(self._numpy(f"SELECT count(*) AS n FROM unit_stats WHERE {where}", params)["n"][0]) if offset else 0
        return total, df["unit_id"].to_numpy(np.int64), df["ap"].to_numpy(np.float64)

    def _single(self, result: dict[str, Any], layout: RunLayout, unit_id: int, how: str,
                concept_id: int | None) -> dict[str, Any]:
        info = clean_record(layout.unit_info(np.array([unit_id])).iloc[0].to_dict())
        if concept_id is not None:
            ap = self._numpy("SELECT ap FROM unit_stats WHERE run_id = ? AND concept_id = ? AND unit_id = ?",
                             [result["run_id"], concept_id, unit_id])["ap"]
            info["ap"] = float(ap[0]) if len(ap) and np.isfinite(ap[0]) else None
        result.update(interpreted_as=how, total=1, units=[info] if result["offset"] == 0 else [])
        return result

    @staticmethod
    def _nothing(text: str, stack: str | None, layer: int | None, component: str | None, concept: dict | None,
                 min_ap: float | None = None, max_ap: float | None = None) -> str:
        """A sentence saying which conditions matched no unit."""
        parts = [f"site keys containing {' and '.join(repr(t) for t in text.split())}" if text else None,
                 f"stack {stack}" if stack else None, f"layer {layer}" if layer is not None else None,
                 f"component {component}" if component else None,
                 f"concept {concept['concept_id']} (statistics for {known(concept['stacks'])})" if concept else None,
                 f"AP in [{min_ap if min_ap is not None else 0:g}, {max_ap if max_ap is not None else 1:g}]"
                 if min_ap is not None or max_ap is not None else None]
        return "no unit matches " + ", ".join(p for p in parts if p)
