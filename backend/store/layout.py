"""A run's unit layout (unit -> stack, layer, component, site), expanded once from the `sites` table."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from backend.store.common import NotFoundError, QueryError, known
from neuron_atlas.engine.model.unit_sites import COMPONENTS, STACKS


#: The layer part of a site key (`layers.3.`, `adapter.layers.0.`), removed to name a site's role.
_SITE_ROLE = re.compile(r"(adapter\.)?layers\.\d+\.")


@dataclass
class RunLayout:
    """A run's unit layout: its sites and per-unit stack / layer / component / site codes (vectorised lookups)."""

    run_id: str
    sites: pd.DataFrame
    n_units: int
    stack_ranges: dict[str, tuple[int, int]]
    offsets: np.ndarray
    unit_site: np.ndarray
    unit_layer: np.ndarray
    unit_component: np.ndarray
    bucket: int

    @classmethod
    def from_sites(cls, run_id: str, sites: pd.DataFrame) -> RunLayout:
        sites = sites.sort_values("unit_offset").reset_index(drop=True)
        widths = sites["width"].to_numpy(np.int64)
        offsets = sites["unit_offset"].to_numpy(np.int64)
        n_units = int(offsets[-1] + widths[-1]) if len(sites) else 0
        site_idx = np.repeat(np.arange(len(sites), dtype=np.int32), widths)
        comp_codes = np.array([COMPONENTS.index(c) for c in sites["component"]], dtype=np.int8)
        stack_ranges = {}
        for stack in STACKS:
            rows = sites[sites["stack"] == stack]
            if len(rows):
                stack_ranges[stack] = (int(rows["unit_offset"].min()), int((rows["unit_offset"] + rows["width"]).max()))
        return cls(
            run_id=run_id,
            sites=sites,
            n_units=n_units,
            stack_ranges=stack_ranges,
            offsets=offsets,
            unit_site=site_idx,
            unit_layer=np.repeat(sites["layer"].to_numpy(np.int16), widths),
            unit_component=np.repeat(comp_codes, widths),
            bucket=int(np.gcd.reduce(np.append(offsets, n_units))) if len(sites) else 1,
        )

    def site_roles(self) -> tuple[list[str], np.ndarray]:
        """Site roles (the site key without stack and layer, e.g. `cross_attention.k_proj`) and each site's role index:
        the same role in every layer is one role, so counts can be broken down by it."""
        keys = [_SITE_ROLE.sub("", key).split(".", 1)[-1] for key in self.sites["site"]]
        roles = list(dict.fromkeys(keys))
        return roles, np.array([roles.index(k) for k in keys], dtype=np.int64)

    def check_stack(self, stack: str) -> tuple[int, int]:
        if stack not in self.stack_ranges:
            raise QueryError(f"stack: unknown stack {stack!r}; run {self.run_id} has {known(self.stack_ranges)}")
        return self.stack_ranges[stack]

    def check_unit(self, unit_id: int) -> None:
        if not 0 <= unit_id < self.n_units:
            raise NotFoundError(f"unit {unit_id} is out of range: run {self.run_id} has units 0..{self.n_units - 1}")

    def layers(self, stack: str) -> list[int]:
        return sorted(int(v) for v in self.sites.loc[self.sites["stack"] == stack, "layer"].unique())

    def unit_info(self, unit_ids: np.ndarray) -> pd.DataFrame:
        """Site, channel, stack, layer, component and kind of each unit id (vectorised)."""
        ids = np.asarray(unit_ids, dtype=np.int64)
        idx = self.unit_site[ids]
        s = self.sites
        return pd.DataFrame({
            "unit_id": ids,
            "site": s["site"].to_numpy()[idx],
            "channel": ids - self.offsets[idx],
            "stack": s["stack"].to_numpy()[idx],
            "layer": s["layer"].to_numpy()[idx].astype(np.int64),
            "component": s["component"].to_numpy()[idx],
            "kind": s["kind"].to_numpy()[idx],
        })

    def ranges(self, stack: str, layer: int | None = None, component: str | None = None, site: str | None = None) -> list[tuple[int, int]]:
        """Merged [start, stop) unit-id ranges of the sites matching stack / layer / component / site."""
        s = self.sites[self.sites["stack"] == stack]
        if layer is not None:
            s = s[s["layer"] == layer]
        if component is not None:
            s = s[s["component"] == component]
        if site is not None:
            s = s[s["site"] == site]
        out: list[tuple[int, int]] = []
        for start, width in zip(s["unit_offset"].to_numpy(np.int64), s["width"].to_numpy(np.int64)):
            if out and out[-1][1] == start:
                out[-1] = (out[-1][0], int(start + width))
            else:
                out.append((int(start), int(start + width)))
        return out


def range_sql(ranges: list[tuple[int, int]], column: str = "unit_id") -> str:
    """SQL condition for unit ids in any of the (integer, server-built) ranges."""
    if not ranges:
        return "FALSE"
    return "(" + " OR ".join(f"({column} >= {int(a)} AND {column} < {int(b)})" for a, b in ranges) + ")"
