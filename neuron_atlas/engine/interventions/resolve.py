"""`resolve`: a spec checked against a model's unit registry and a statistics source, grouped into per-site writes."""
from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from neuron_atlas.engine.interventions.selection import UnitStatsSource
from neuron_atlas.engine.interventions.spec import (
    ConceptUnits,
    ConstantValue,
    ExplicitUnits,
    InterventionSpec,
    SpecError,
    StatisticValue,
    ZeroValue,
)
from neuron_atlas.engine.model.unit_sites import SiteRegistry, UnitSite, component_members


@dataclass(frozen=True)
class SiteWrite:
    """The channels of one site an intervention writes, with their per-channel values (None for zero / scale)."""

    site: UnitSite
    channels: np.ndarray
    values: np.ndarray | None

    @property
    def decoder_positions(self) -> bool:
        """Whether the site's positions are decoder positions (so `scope` applies to it)."""
        return self.site.stack == "text_decoder" and self.site.domain == "decoder"


@dataclass
class _SiteTensors:
    """One site's channel mask and fill vector (values, zeros, or the scale multiplier), shaped for its output layout."""

    mask: torch.Tensor
    fill: torch.Tensor
    scale: bool
    decoder_positions: bool


@dataclass
class ResolvedIntervention:
    """A spec checked against a model: unit ids, per-unit values (None for zero / scale), writes grouped by site."""

    spec: InterventionSpec
    unit_ids: np.ndarray
    values: np.ndarray | None
    mode: Literal["set", "zero", "scale"]
    factor: float | None
    sites: dict[str, SiteWrite]
    model_units: int
    _tensors: dict[tuple[str, torch.dtype], dict[str, _SiteTensors]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_empty(self) -> bool:
        """Whether applying it changes nothing: no units, or strength 0."""
        return len(self.unit_ids) == 0 or self.spec.strength == 0.0

    @property
    def strength(self) -> float:
        return float(self.spec.strength)

    @property
    def scoped(self) -> bool:
        """Whether the scope restricts decoder positions at all (otherwise every position of every step)."""
        scope = self.spec.scope
        return scope.positions != "all" or scope.decode_steps != "all"

    def describe(self) -> dict:
        """JSON-able summary: digest, unit count, units per stack and per component, mode, and the strength where it is
        not 1 (so summaries of undialled interventions stay what they were)."""
        frame = pd.DataFrame({"stack": [w.site.stack for w in self.sites.values()], "component": [w.site.component for w in self.sites.values()], "n": [len(w.channels) for w in self.sites.values()]})
        return {
            "digest": self.spec.digest(),
            "n_units": int(len(self.unit_ids)),
            "n_sites": len(self.sites),
            "mode": self.mode,
            **({"strength": self.strength} if self.strength != 1.0 else {}),
            "by_stack": {k: int(v) for k, v in frame.groupby("stack")["n"].sum().items()} if len(frame) else {},
            "by_component": {k: int(v) for k, v in frame.groupby("component")["n"].sum().items()} if len(frame) else {},
        }

    def site_tensors(self, device: torch.device, dtype: torch.dtype) -> dict[str, _SiteTensors]:
        """Per-site channel masks and fill vectors (values, zeros, or the scale multiplier) on a device, built once.

        For `scale` the strength is folded into the multiplier (1 + strength * (factor - 1)), so a scaled write
        stays one multiply."""
        key = (str(device), dtype)
        cached = self._tensors.get(key)
        if cached is not None:
            return cached
        out: dict[str, _SiteTensors] = {}
        for site_key, w in self.sites.items():
            width = w.site.width
            mask = np.zeros(width, dtype=bool)
            mask[w.channels] = True
            fill = np.full(width, 1.0 if self.mode == "scale" else 0.0, dtype=np.float32)
            if self.mode == "scale":
                fill[w.channels] = 1.0 + self.strength * (self.factor - 1.0)
            elif self.mode == "set":
                fill[w.channels] = w.values
            shape = (-1,) + (1,) * _trailing_axes(w.site)
            out[site_key] = _SiteTensors(
                mask=torch.from_numpy(mask).to(device).view(shape),
                fill=torch.from_numpy(fill).to(device, dtype).view(shape),
                scale=self.mode == "scale",
                decoder_positions=w.decoder_positions,
            )
        self._tensors[key] = out
        return out


#: Unit-site outputs are batched 3-D tensors: [batch, positions, channels] or, for convolutions, [batch, channels, positions].
SITE_OUTPUT_DIMS = 3


def check_output(site: UnitSite, out: torch.Tensor) -> None:
    """Unit sites are written on 3-D outputs; anything else means the hook sits on an unexpected module."""
    if out.dim() != SITE_OUTPUT_DIMS:
        raise RuntimeError(f"{site.key}: expected a {SITE_OUTPUT_DIMS}-D output, got shape {tuple(out.shape)}")


def _trailing_axes(site: UnitSite) -> int:
    """How many axes follow the channel axis in the site's 3-D output (0 for Linear / LayerNorm, 1 for Conv1d / GLU)."""
    axis = site.channel_axis % SITE_OUTPUT_DIMS
    return SITE_OUTPUT_DIMS - 1 - axis


def _site_arrays(registry: SiteRegistry) -> tuple[pd.Index, np.ndarray, np.ndarray]:
    keys = pd.Index([s.key for s in registry.sites])
    offsets = np.fromiter((s.offset for s in registry.sites), dtype=np.int64, count=len(registry.sites))
    widths = np.fromiter((s.width for s in registry.sites), dtype=np.int64, count=len(registry.sites))
    return keys, offsets, widths


def _explicit_ids(units: ExplicitUnits, registry: SiteRegistry) -> np.ndarray:
    """Global ids of explicit (module, channel) entries, checked as arrays; errors name the entry's index."""
    keys, offsets, widths = _site_arrays(registry)
    n = len(units.units)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    modules = np.array([u.module for u in units.units], dtype=object)
    channels = np.array([u.channel for u in units.units], dtype=np.int64)
    site_idx = keys.get_indexer(modules)
    unknown = np.flatnonzero(site_idx < 0)
    if len(unknown):
        i = int(unknown[0])
        close = difflib.get_close_matches(modules[i], list(keys), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise SpecError(f"units.units[{i}].module", f"unknown module {modules[i]!r}: not a unit site of this model{hint}")
    width = widths[site_idx]
    out_of_range = np.flatnonzero((channels < 0) | (channels >= width))
    if len(out_of_range):
        i = int(out_of_range[0])
        raise SpecError(f"units.units[{i}].channel", f"channel {channels[i]} is out of range for {modules[i]!r} (0..{width[i] - 1})")
    ids = offsets[site_idx] + channels
    uniq, first = np.unique(ids, return_index=True)
    if len(uniq) < n:
        repeat = np.ones(n, dtype=bool)
        repeat[first] = False
        j = int(np.flatnonzero(repeat)[0])
        i = int(first[np.searchsorted(uniq, ids[j])])
        raise SpecError(f"units.units[{j}]", f"duplicate of units.units[{i}] ({modules[j]!r}, channel {channels[j]})")
    return ids


def _concept_ids(units: ConceptUnits, registry: SiteRegistry, stats: UnitStatsSource) -> np.ndarray:
    if units.stack is not None and units.stack not in registry.stack_ranges:
        raise SpecError("units.stack", f"unknown stack {units.stack!r}; this model has {sorted(registry.stack_ranges)}")
    if units.component is not None:
        try:
            component_members(units.component)
        except ValueError as exc:
            raise SpecError("units.component", str(exc)) from None
    if not stats.concept_exists(units.concept_id):
        raise SpecError("units.concept_id", f"unknown concept {units.concept_id}")
    ids = np.asarray(stats.selection(units.concept_id, units.set, units.k, units.seed, units.stack, units.component))
    if ids.ndim != 1 or (len(ids) and not np.issubdtype(ids.dtype, np.integer)):
        raise SpecError("units.concept_id", f"the statistics source returned a {ids.dtype} array of shape {ids.shape}, not unit ids")
    ids = ids.astype(np.int64)
    if len(ids) and (ids.min() < 0 or ids.max() >= registry.n_units):
        raise SpecError("units.concept_id", f"concept {units.concept_id} selects units outside this model's 0..{registry.n_units - 1}: were its statistics computed on another model?")
    if len(np.unique(ids)) != len(ids):
        raise SpecError("units.concept_id", f"the statistics source returned repeated units for concept {units.concept_id}")
    return ids


def resolve(spec: InterventionSpec | Mapping[str, Any] | str, registry: SiteRegistry, stats: UnitStatsSource | None) -> ResolvedIntervention:
    """Check a spec against a model's registry and a statistics source; returns what the hooks write where."""
    spec = InterventionSpec.parse(spec)
    needs_stats = isinstance(spec.units, ConceptUnits) or isinstance(spec.value, StatisticValue)
    if needs_stats and stats is None:
        raise SpecError("units" if isinstance(spec.units, ConceptUnits) else "value.kind", "needs concept statistics, but no statistics source was given")
    if isinstance(spec.units, ExplicitUnits):
        ids = _explicit_ids(spec.units, registry)
    else:
        ids = _concept_ids(spec.units, registry, stats)
    value = spec.value
    values: np.ndarray | None = None
    factor: float | None = None
    if isinstance(value, StatisticValue):
        concept = spec.statistics_concept()
        if spec.stats_concept_id is not None and not stats.concept_exists(concept):
            raise SpecError("stats_concept_id", f"unknown concept {concept}")
        values = np.asarray(stats.unit_values(concept, ids, value.kind), dtype=np.float32) if len(ids) else np.zeros(0, np.float32)
        if values.shape != ids.shape:
            raise SpecError("value.kind", f"the statistics source returned {values.shape} values for {len(ids)} units")
        missing = np.flatnonzero(~np.isfinite(values))
        if len(missing):
            site, channel = registry.site_of_unit(int(ids[missing[0]]))
            raise SpecError("value.kind", f"concept {concept} has no {value.kind} for {len(missing)} of the units (first: {site.key!r} channel {channel})")
        mode = "set"
    elif isinstance(value, ConstantValue):
        values = np.full(len(ids), value.value, dtype=np.float32)
        mode = "set"
    elif isinstance(value, ZeroValue):
        mode = "zero"
    else:
        mode, factor = "scale", float(value.factor)
    return ResolvedIntervention(spec, ids, values, mode, factor, _group_by_site(registry, ids, values), registry.n_units)


def _group_by_site(registry: SiteRegistry, ids: np.ndarray, values: np.ndarray | None) -> dict[str, SiteWrite]:
    """Split unit ids (and values) into per-site channel arrays, in registry order."""
    if not len(ids):
        return {}
    _, offsets, _ = _site_arrays(registry)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    sorted_values = values[order] if values is not None else None
    site_idx = np.searchsorted(offsets, sorted_ids, side="right") - 1
    present, starts = np.unique(site_idx, return_index=True)
    ends = np.append(starts[1:], len(sorted_ids))
    out: dict[str, SiteWrite] = {}
    for s, a, b in zip(present.tolist(), starts.tolist(), ends.tolist()):
        site = registry.sites[s]
        vals = sorted_values[a:b] if sorted_values is not None else None
        out[site.key] = SiteWrite(site, sorted_ids[a:b] - site.offset, vals)
    return out
