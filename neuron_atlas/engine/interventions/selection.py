"""Where `resolve` gets concept selections and statistics: the `UnitStatsSource` protocol and its in-memory form."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import numpy as np

from neuron_atlas.engine.constants import COMPONENTS, SET_KINDS, STACKS, STATISTICS
from neuron_atlas.engine.interventions.spec import SpecError
from neuron_atlas.engine.model.unit_sites import SiteRegistry, component_members


@runtime_checkable
class UnitStatsSource(Protocol):
    """Where `resolve` gets concept selections and per-unit statistics (the store implements it; `InMemoryStats` too)."""

    def concept_exists(self, concept_id: int) -> bool: ...

    def selection(self, concept_id: int, set_kind: str, k: int, seed: int, stack: str | None, component: str | None) -> np.ndarray:
        """Global unit ids (int64) of the concept's selection; raises SpecError (field `units.k`) when k is too large."""
        ...

    def unit_values(self, concept_id: int, unit_ids: np.ndarray, stat: str) -> np.ndarray:
        """float32 statistic `stat` of the concept for each unit id (NaN where it has none)."""
        ...


def _unit_codes(registry: SiteRegistry) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit stack and component codes (indices into STACKS / COMPONENTS), expanded from the sites."""
    widths = np.fromiter((s.width for s in registry.sites), dtype=np.int64, count=len(registry.sites))
    stack = np.fromiter((STACKS.index(s.stack) for s in registry.sites), dtype=np.int8, count=len(registry.sites))
    comp = np.fromiter((COMPONENTS.index(s.component) for s in registry.sites), dtype=np.int8, count=len(registry.sites))
    return np.repeat(stack, widths), np.repeat(comp, widths)


def _highest(ids: np.ndarray, score: np.ndarray, k: int, larger_ids_first: bool = False) -> np.ndarray:
    """The k ids (ascending array) with the highest score, ties going to the smaller id (or the larger, for bottom
    sets, which are the reverse of the top order as in the atlas's stored selections); O(n) via a partition."""
    threshold = np.partition(score, len(score) - k)[len(score) - k]
    above = score > threshold
    tied = ids[score == threshold]
    need = k - int(above.sum())
    return np.concatenate([ids[above], tied[len(tied) - need :] if larger_ids_first else tied[:need]])


def select_units(ids: np.ndarray, ap: np.ndarray, set_kind: str, k: int, seed: int, scope: str) -> np.ndarray:
    """The concept's `set_kind` set among the in-scope units `ids` (ascending) with AP `ap`: the one selection rule of
    the batch and the live path. top = highest AP, ties to the lower unit id; bottom = the reverse of that order
    (ties to the higher id, as the atlas's stored sets); both = their union (2k); random = `default_rng(seed)`'s
    choice of k units, sorted. Raises SpecError (`units.set`, `units.k`) naming `scope` when k is too large."""
    if set_kind not in SET_KINDS:
        raise SpecError("units.set", f"unknown set {set_kind!r}; expected one of {SET_KINDS}")
    ids = np.asarray(ids, dtype=np.int64)
    need = 2 * k if set_kind == "both" else k
    if need > len(ids):
        what = f"k={k}" if set_kind != "both" else f"k={k} (both = {need} units)"
        raise SpecError("units.k", f"{what} is larger than the {len(ids)} units of {scope}")
    if set_kind == "random":
        return np.sort(ids[np.random.default_rng(seed).choice(len(ids), size=k, replace=False)])
    ap = np.asarray(ap, dtype=np.float64)
    parts = []
    if set_kind in ("top", "both"):
        parts.append(_highest(ids, ap, k))
    if set_kind in ("bottom", "both"):
        parts.append(_highest(ids, -ap, k, larger_ids_first=True))
    return np.unique(np.concatenate(parts))


class InMemoryStats:
    """A `UnitStatsSource` over in-memory per-unit arrays (AP and statistics per concept): for tests and batch code.

    Selections follow `select_units`; units whose AP is NaN (not recorded for the concept) are out of scope.
    """

    def __init__(self, registry: SiteRegistry, ap: Mapping[int, np.ndarray], values: Mapping[int, Mapping[str, np.ndarray]] | None = None):
        n = registry.n_units
        self._ap: dict[int, np.ndarray] = {}
        for cid, arr in ap.items():
            arr = np.asarray(arr, dtype=np.float64)
            if arr.shape != (n,):
                raise ValueError(f"ap[{cid}] has shape {arr.shape}; expected ({n},), one value per unit")
            self._ap[int(cid)] = arr
        self._values: dict[int, dict[str, np.ndarray]] = {}
        for cid, tables in (values or {}).items():
            if int(cid) not in self._ap:
                raise ValueError(f"values[{cid}]: concept {cid} has no AP array")
            for stat, arr in tables.items():
                if stat not in STATISTICS:
                    raise ValueError(f"values[{cid}][{stat!r}]: unknown statistic; expected one of {STATISTICS}")
                arr = np.asarray(arr, dtype=np.float32)
                if arr.shape != (n,):
                    raise ValueError(f"values[{cid}][{stat!r}] has shape {arr.shape}; expected ({n},)")
                self._values.setdefault(int(cid), {})[stat] = arr
        self._stack, self._component = _unit_codes(registry)

    def concept_exists(self, concept_id: int) -> bool:
        return int(concept_id) in self._ap

    def _scope(self, concept_id: int, stack: str | None, component: str | None) -> tuple[np.ndarray, str]:
        ap = self._ap[int(concept_id)]
        keep = np.isfinite(ap)
        label = stack or "all stacks"
        if stack is not None:
            keep &= self._stack == STACKS.index(stack)
        if component is not None:
            keep &= np.isin(self._component, [COMPONENTS.index(c) for c in component_members(component)])
            label += f" ({component})"
        return np.flatnonzero(keep), label

    def selection(self, concept_id: int, set_kind: str, k: int, seed: int, stack: str | None, component: str | None) -> np.ndarray:
        ids, label = self._scope(concept_id, stack, component)
        return select_units(ids, self._ap[int(concept_id)][ids], set_kind, k, seed, f"{label} with an AP for concept {concept_id}")

    def unit_values(self, concept_id: int, unit_ids: np.ndarray, stat: str) -> np.ndarray:
        table = self._values.get(int(concept_id), {}).get(stat)
        if table is None:
            raise SpecError("value.kind", f"concept {concept_id} has no {stat} statistics")
        return table[np.asarray(unit_ids, dtype=np.int64)]
