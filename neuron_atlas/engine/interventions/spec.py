"""Intervention engine: one typed, versioned, JSON-serialisable spec that overwrites unit channels during `generate`.

The same `InterventionSpec` serves batch experiments, live requests and share links (in the spirit of pyvene's
serialisable intervention configs): `resolve` checks it against a model's unit registry and a source of per-unit
statistics, `intervene` applies the result with forward hooks, `generate_with` decodes greedily under it.

Where an overwrite acts (`scope`):

- Decoder-position sites (every text-decoder site except cross-attention k_proj / v_proj). Position p of the decoder
  input belongs to decoding step max(p - 1, 0): step 0 is the first decoder forward of `generate`, reading `</s>` and
  the target-language token; step s >= 1 reads the token that step s - 1 produced. `scope.steps` picks steps and
  `scope.positions="last"` keeps only the newest position of each step (under KV caching that drops just the `</s>`
  position of step 0). Because this is defined on absolute positions, cached and uncached decoding, and the
  teacher-forced decoder pass that feeds the text-to-unit model when speech is generated, all see the same overwrite.
- Encoder-side sites (speech and text encoder, and decoder cross-attention k_proj / v_proj, whose positions are
  encoder positions): overwritten at every position whenever their module runs; `scope` does not restrict them. Under
  KV caching the cross-attention k / v are computed once, at step 0, and reused, so the overwrite made there is what
  every later step attends to.

Hooks write into the module's output in place while autograd is off (always inside `generate`), into a new tensor
otherwise; values are cast to the model's dtype. Per-site channel masks and fill vectors are built once per device.
"""
from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from backend.model.hooks import AdapterPaddingGuard, HookPoints
from backend.model.loading import ModelBundle
from backend.model.tokenizer import lang_token
from backend.model.unit_sites import COMPONENTS, STACKS, SiteRegistry, UnitSite, component_members

SPEC_VERSION = 1
STATISTICS: tuple[str, ...] = ("on_p50", "on_p90", "off_mean", "off_p50")
SELECTION_SETS: tuple[str, ...] = ("top", "bottom", "both", "random")
#: Decoder positions read by step 0 of `generate`: `</s>` and the forced target-language token.
DECODER_PROMPT_LENGTH = 2
#: Sample rate of speech inputs (SeamlessM4T v2's feature extractor expects 16 kHz).
INPUT_SAMPLE_RATE = 16000


class SpecError(ValueError):
    """An intervention spec is invalid; `field` is the dotted path of the offending entry (e.g. `units.units[3].module`)."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}" if field else message)


# ----------------------------------------------------------------------------------------------------------- spec


class _SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ExplicitUnit(_SpecModel):
    """One unit named by its site key and channel index."""

    module: str
    channel: int


class ExplicitUnits(_SpecModel):
    """An explicit list of units."""

    kind: Literal["explicit"] = "explicit"
    units: list[ExplicitUnit]


class ConceptUnits(_SpecModel):
    """Units selected from a concept's AP ranking: top-k, bottom-k, both (2k) or a seeded random k (control)."""

    kind: Literal["concept"] = "concept"
    concept_id: int
    set: Literal["top", "bottom", "both", "random"]
    k: int = Field(ge=1)
    seed: int = 0
    stack: str | None = None
    component: str | None = None


class StatisticValue(_SpecModel):
    """Write the concept's per-unit statistic (the paper's median replacement is `on_p50`)."""

    kind: Literal["on_p50", "on_p90", "off_mean", "off_p50"] = "on_p50"


class ZeroValue(_SpecModel):
    kind: Literal["zero"] = "zero"


class ConstantValue(_SpecModel):
    kind: Literal["constant"] = "constant"
    value: float = Field(allow_inf_nan=False)


class ScaleValue(_SpecModel):
    """Multiply each chosen unit's own value by `factor` (1.0 is the identity)."""

    kind: Literal["scale"] = "scale"
    factor: float = Field(allow_inf_nan=False)


def _normalise_steps(value: Any) -> Any:
    """`"all"` or a non-empty list of non-negative step indices, returned sorted and without repeats."""
    if value == "all":
        return value
    if not isinstance(value, (list, tuple)):
        raise PydanticCustomError("steps", "expected 'all' or a list of decoding steps, got {got}", {"got": repr(value)})
    bad = [v for v in value if isinstance(v, bool) or not isinstance(v, int) or v < 0]
    if bad:
        raise PydanticCustomError("steps", "decoding steps are integers >= 0, got {got}", {"got": repr(bad[0])})
    if not value:
        raise PydanticCustomError("steps", "give at least one decoding step, or 'all'", {})
    return sorted(set(value))


class Scope(_SpecModel):
    """Which decoder positions and decoding steps an overwrite of a decoder-position site acts on."""

    positions: Literal["all", "last"] = "all"
    steps: Annotated[Literal["all"] | list[int], BeforeValidator(_normalise_steps)] = "all"


Units = Annotated[ExplicitUnits | ConceptUnits, Field(discriminator="kind")]
Value = Annotated[StatisticValue | ZeroValue | ConstantValue | ScaleValue, Field(discriminator="kind")]


class InterventionSpec(_SpecModel):
    """What to overwrite (units), with what (value), where (scope); `stats_concept_id` names the statistics' concept.

    For concept units the statistics default to the selecting concept; explicit units with a statistic value must
    name `stats_concept_id`. Construction, `parse` and `from_json` raise `SpecError` naming the offending field.
    """

    version: Literal[1] = SPEC_VERSION
    units: Units
    value: Value = StatisticValue()
    scope: Scope = Scope()
    stats_concept_id: int | None = None

    def __init__(self, **data: Any):
        # pydantic routes model_validate / model_validate_json through a custom __init__ too; errors stay SpecErrors.
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _spec_error(exc) from None

    @model_validator(mode="after")
    def _statistics_have_a_concept(self) -> InterventionSpec:
        statistic = isinstance(self.value, StatisticValue)
        if statistic and isinstance(self.units, ExplicitUnits) and self.stats_concept_id is None:
            raise PydanticCustomError(
                "spec_field",
                "{message}",
                {"field": "stats_concept_id", "message": f"value.kind {self.value.kind!r} reads per-unit statistics of a concept; explicit units must name it in stats_concept_id"},
            )
        if not statistic and self.stats_concept_id is not None:
            raise PydanticCustomError(
                "spec_field",
                "{message}",
                {"field": "stats_concept_id", "message": f"only used with a statistic value ({', '.join(STATISTICS)}), not value.kind {self.value.kind!r}"},
            )
        return self

    @classmethod
    def parse(cls, data: InterventionSpec | Mapping[str, Any] | str | bytes) -> InterventionSpec:
        """A spec from a spec, a JSON-like mapping or JSON text; errors are `SpecError`s naming the field."""
        if isinstance(data, InterventionSpec):
            return data
        if isinstance(data, (str, bytes)):
            return cls.from_json(data)
        if not isinstance(data, Mapping):
            raise SpecError("", f"an intervention spec is a JSON object, got {type(data).__name__}")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise _spec_error(exc) from None

    @classmethod
    def from_json(cls, text: str | bytes) -> InterventionSpec:
        """Parse JSON text (e.g. a share link's payload)."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise _spec_error(exc) from None

    def canonical_json(self) -> str:
        """Sorted keys, no whitespace, defaults included: equal specs give equal strings."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)

    def digest(self) -> str:
        """sha256 of the canonical JSON, for caches and share links."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()

    def statistics_concept(self) -> int | None:
        """The concept whose statistics supply the values (None for zero / constant / scale)."""
        if not isinstance(self.value, StatisticValue):
            return None
        if self.stats_concept_id is not None:
            return self.stats_concept_id
        return self.units.concept_id if isinstance(self.units, ConceptUnits) else None


_TAGS = {"explicit", "concept", "zero", "constant", "scale", *STATISTICS}


def _field_path(loc: Sequence[Any]) -> str:
    """Dotted path of a pydantic error location, without discriminated-union tags: `units.units[3].channel`."""
    parts: list[str] = []
    for i, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif i == 1 and loc[0] in ("units", "value") and item in _TAGS:
            continue
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _spec_error(exc: ValidationError) -> SpecError:
    """The first pydantic error as a SpecError with a readable field path and message."""
    err = exc.errors(include_url=False)[0]
    loc, kind, msg = tuple(err["loc"]), err["type"], err["msg"]
    ctx = err.get("ctx") or {}
    if isinstance(ctx.get("error"), SpecError):
        return ctx["error"]
    if kind == "spec_field":
        return SpecError(ctx["field"], ctx["message"])
    if kind == "json_invalid":
        return SpecError("", f"the spec is not valid JSON: {ctx.get('error', msg)}")
    path = _field_path(loc)
    if kind == "union_tag_invalid":
        return SpecError(f"{path}.kind", f"unknown kind {ctx.get('tag')!r}; expected one of {ctx.get('expected_tags')}")
    if kind == "union_tag_not_found":
        return SpecError(f"{path}.kind", "missing 'kind'")
    if kind == "extra_forbidden":
        return SpecError(path, "unknown field")
    if kind == "missing":
        return SpecError(path, "required field is missing")
    if loc == ("version",):
        return SpecError("version", f"unsupported spec version {err.get('input')!r}; this engine reads version {SPEC_VERSION}")
    if kind in ("model_type", "model_attributes_type", "dict_type") and not loc:
        return SpecError("", f"an intervention spec is a JSON object, got {type(err.get('input')).__name__}")
    if kind == "steps":
        return SpecError(path, msg)
    got = repr(err.get("input"))
    return SpecError(path, f"{msg} (got {got if len(got) <= 80 else got[:77] + '...'})")


# ------------------------------------------------------------------------------------------------ statistics source


@runtime_checkable
class UnitStatsSource(Protocol):
    """Where `resolve` gets concept selections and per-unit statistics (the store implements it; `InMemoryStats` too)."""

    def concept_exists(self, concept_id: int) -> bool: ...

    def selection(self, concept_id: int, set: str, k: int, seed: int, stack: str | None, component: str | None) -> np.ndarray:
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


class InMemoryStats:
    """A `UnitStatsSource` over in-memory per-unit arrays (AP and statistics per concept): for tests and batch code.

    Selections follow the paper: top-k = highest AP (ties by lower unit id), bottom-k = lowest AP (the reverse order:
    ties by higher unit id), both = their union (2k),
    random = a seeded random k from the same scope. Units whose AP is NaN (not recorded for the concept) are out of scope.
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

    def selection(self, concept_id: int, set: str, k: int, seed: int, stack: str | None, component: str | None) -> np.ndarray:
        if set not in SELECTION_SETS:
            raise SpecError("units.set", f"unknown set {set!r}; expected one of {SELECTION_SETS}")
        ids, label = self._scope(concept_id, stack, component)
        need = 2 * k if set == "both" else k
        if need > len(ids):
            what = f"k={k}" if set != "both" else f"k={k} (both = {need} units)"
            raise SpecError("units.k", f"{what} is larger than the {len(ids)} units of {label} with an AP for concept {concept_id}")
        if set == "random":
            pick = np.random.default_rng(seed).choice(len(ids), size=k, replace=False)
            return np.sort(ids[pick]).astype(np.int64)
        ap = self._ap[int(concept_id)][ids]
        parts = []
        if set in ("top", "both"):
            parts.append(_highest(ids, ap, k))
        if set in ("bottom", "both"):
            parts.append(_highest(ids, -ap, k, larger_ids_first=True))
        return np.unique(np.concatenate(parts)).astype(np.int64)

    def unit_values(self, concept_id: int, unit_ids: np.ndarray, stat: str) -> np.ndarray:
        table = self._values.get(int(concept_id), {}).get(stat)
        if table is None:
            raise SpecError("value.kind", f"concept {concept_id} has no {stat} statistics")
        return table[np.asarray(unit_ids, dtype=np.int64)]


# ------------------------------------------------------------------------------------------------------ resolving


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
        return len(self.unit_ids) == 0

    @property
    def scoped(self) -> bool:
        """Whether the scope restricts decoder positions at all (otherwise every position of every step)."""
        scope = self.spec.scope
        return scope.positions != "all" or scope.steps != "all"

    def describe(self) -> dict:
        """JSON-able summary: digest, unit count, units per stack and per component, mode."""
        frame = pd.DataFrame({"stack": [w.site.stack for w in self.sites.values()], "component": [w.site.component for w in self.sites.values()], "n": [len(w.channels) for w in self.sites.values()]})
        return {
            "digest": self.spec.digest(),
            "n_units": int(len(self.unit_ids)),
            "n_sites": len(self.sites),
            "mode": self.mode,
            "by_stack": {k: int(v) for k, v in frame.groupby("stack")["n"].sum().items()} if len(frame) else {},
            "by_component": {k: int(v) for k, v in frame.groupby("component")["n"].sum().items()} if len(frame) else {},
        }

    def site_tensors(self, device: torch.device, dtype: torch.dtype) -> dict[str, _SiteTensors]:
        """Per-site channel masks and fill vectors (values, zeros, or the scale multiplier) on a device, built once."""
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
                fill[w.channels] = self.factor
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


def _check_output(site: UnitSite, out: torch.Tensor) -> None:
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


# ----------------------------------------------------------------------------------------------------- application


def decoder_step_of_positions(positions: np.ndarray) -> np.ndarray:
    """Decoding step each absolute decoder position belongs to: 0 for the prompt (`</s>`, target language), then p - 1."""
    return np.maximum(positions - (DECODER_PROMPT_LENGTH - 1), 0)


class _Applier:
    """Forward hooks that write one resolved intervention; a text-decoder pre-hook tracks absolute positions."""

    def __init__(self, bundle: ModelBundle, resolved: ResolvedIntervention):
        model = bundle.model
        self.tensors = resolved.site_tensors(bundle.device, bundle.dtype)
        scope = resolved.spec.scope
        self.steps = None if scope.steps == "all" else np.asarray(scope.steps, dtype=np.int64)
        self.last_only = scope.positions == "last"
        self.scoped = resolved.scoped and any(t.decoder_positions for t in self.tensors.values())
        self.device = bundle.device
        self.positions: torch.Tensor | None = None
        self.skip = False
        self._handles = []
        if self.scoped:
            self._handles.append(model.text_decoder.register_forward_pre_hook(self._on_decoder, with_kwargs=True))
        self.hooks = HookPoints(model, [w.site for w in resolved.sites.values()], bind=self._hook_for)

    def _hook_for(self, site: UnitSite):
        """The site's forward hook: a closure that only overwrites when every position is written with values
        (the common case, and the one whose per-call cost the intervention benchmark measures), else `_write`."""
        t = self.tensors[site.key]
        if t.scale or (self.scoped and t.decoder_positions):
            return lambda module, args, out: self._write(site, out)
        mask, fill = t.mask, t.fill

        def overwrite(module, args, out):
            _check_output(site, out)
            return torch.where(mask, fill, out, out=None if out.requires_grad else out)

        return overwrite

    def _on_decoder(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        length = ids.shape[-1] if ids is not None else kwargs["inputs_embeds"].shape[1]
        past = kwargs.get("past_key_values")
        start = past.get_seq_length() if past is not None else 0
        pos = np.arange(start, start + length)
        active = np.ones(length, dtype=bool)
        if self.steps is not None:
            active &= np.isin(decoder_step_of_positions(pos), self.steps)
        if self.last_only:
            active &= pos >= DECODER_PROMPT_LENGTH - 1
        self.skip = not active.any()
        self.positions = None if active.all() else torch.from_numpy(active).to(self.device)[:, None]

    def _write(self, site: UnitSite, out: torch.Tensor) -> torch.Tensor | None:
        """Overwrite the chosen channels: in place when autograd is not tracking the output, else into a new tensor."""
        t = self.tensors[site.key]
        _check_output(site, out)
        mask = t.mask
        if self.scoped and t.decoder_positions:
            if self.skip:
                return None
            if self.positions is not None:
                mask = mask & self.positions
        target = None if out.requires_grad else out
        if t.scale:
            if mask is t.mask:
                return out * t.fill if target is None else out.mul_(t.fill)
            return torch.where(mask, out * t.fill, out, out=target)
        return torch.where(mask, t.fill, out, out=target)

    def remove(self) -> None:
        self.hooks.remove()
        for h in self._handles:
            h.remove()
        self._handles.clear()


@contextmanager
def intervene(bundle: ModelBundle, registry: SiteRegistry, resolved: ResolvedIntervention | None) -> Iterator[None]:
    """Apply a resolved intervention to `bundle.model` inside the block (hooks only on the sites it writes).

    Hooks live on the shared model: callers serving concurrent requests must serialise generation per model.
    """
    if resolved is None or resolved.is_empty:
        yield
        return
    if resolved.model_units != registry.n_units:
        raise ValueError(f"the intervention was resolved for a model with {resolved.model_units} units, this one has {registry.n_units}")
    applier = _Applier(bundle, resolved)
    try:
        yield
    finally:
        applier.remove()


# ------------------------------------------------------------------------------------------------------ generation


def prepare_inputs(
    bundle: ModelBundle,
    *,
    text: str | Sequence[str] | None = None,
    src_lang: str | None = None,
    audio: np.ndarray | Sequence[np.ndarray] | None = None,
) -> dict[str, torch.Tensor]:
    """Model inputs from text (tokenised with its source language) or 16 kHz float32 audio (a batch when given lists)."""
    if (text is None) == (audio is None):
        raise ValueError("give exactly one of text or audio")
    if text is not None:
        texts = [text] if isinstance(text, str) else list(text)
        if not texts:
            raise ValueError("text: no texts given")
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise ValueError(f"text[{i}]: expected a non-empty string, got {t!r}")
        if src_lang is None:
            raise ValueError("src_lang: required with text (the source-language token starts the encoder input)")
        tok = bundle.tokenizer
        if tok.convert_tokens_to_ids(lang_token(src_lang)) in (None, tok.unk_token_id):
            raise ValueError(f"src_lang: {src_lang!r} is not a language of this model's tokenizer")
        enc = tok(texts, src_lang=src_lang, padding=True, return_tensors="pt")
        return {"input_ids": enc["input_ids"].to(bundle.device), "attention_mask": enc["attention_mask"].to(bundle.device)}
    if src_lang is not None:
        raise ValueError("src_lang: only used with text (speech input carries no language token)")
    waves = [audio] if isinstance(audio, np.ndarray) else list(audio)
    if not waves:
        raise ValueError("audio: no audio given")
    for i, w in enumerate(waves):
        w = np.asarray(w)
        if w.ndim != 1 or w.size == 0:
            raise ValueError(f"audio[{i}]: expected a non-empty 1-D array of 16 kHz samples, got shape {w.shape}")
        if not np.isfinite(w).all():
            raise ValueError(f"audio[{i}]: contains NaN or infinite samples")
    waves = [np.asarray(w, dtype=np.float32) for w in waves]
    feats = bundle.feature_extractor(waves, sampling_rate=INPUT_SAMPLE_RATE, return_tensors="pt", padding=True)
    return {
        "input_features": feats["input_features"].to(bundle.device, bundle.dtype),
        "attention_mask": feats["attention_mask"].to(bundle.device),
    }


@dataclass
class GenerationResult:
    """Greedy generation output: raw sequences (`</s> __tgt__ ...`), content token ids and texts, scores, speech."""

    sequences: torch.Tensor
    token_ids: list[list[int]]
    texts: list[str]
    scores: torch.Tensor | None
    waveforms: list[np.ndarray] | None
    sample_rate: int

    @property
    def text(self) -> str:
        return self._single(self.texts, "text")

    @property
    def waveform(self) -> np.ndarray | None:
        return None if self.waveforms is None else self._single(self.waveforms, "waveform")

    @staticmethod
    def _single(items: list, name: str):
        if len(items) != 1:
            raise ValueError(f"{name}: this result holds a batch of {len(items)}; index {name}s instead")
        return items[0]


def _content_ids(sequences: torch.Tensor, eos_id: int) -> list[list[int]]:
    """Generated tokens after `</s> __tgt__`, up to (not including) the first EOS."""
    body = sequences[:, DECODER_PROMPT_LENGTH:].cpu()
    is_end = body == eos_id
    lengths = torch.where(is_end.any(1), is_end.int().argmax(1), torch.full((body.shape[0],), body.shape[1]))
    return [row[: int(n)].tolist() for row, n in zip(body, lengths)]


@torch.no_grad()
def generate_with(
    bundle: ModelBundle,
    registry: SiteRegistry,
    resolved: ResolvedIntervention | None,
    inputs: Mapping[str, torch.Tensor],
    tgt_lang: str,
    max_new_tokens: int = 128,
    speech: bool = False,
    use_cache: bool = True,
    speaker_id: int = 0,
) -> GenerationResult:
    """Greedy decoding (no sampling, one beam) under an intervention; with `speech`, the model's text-to-unit + vocoder path.

    Speech inputs run with `AdapterPaddingGuard`, so a padded batch decodes as each utterance would alone.
    """
    if tgt_lang not in bundle.languages:
        raise ValueError(f"tgt_lang: {tgt_lang!r} is not a target language of this model ({', '.join(bundle.languages)})")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens: must be >= 1, got {max_new_tokens}")
    model = bundle.model
    with ExitStack() as stack:
        if "input_features" in inputs:
            stack.enter_context(AdapterPaddingGuard(model))
        stack.enter_context(intervene(bundle, registry, resolved))
        if speech:
            out = model.generate(
                **inputs,
                tgt_lang=tgt_lang,
                generate_speech=True,
                return_intermediate_token_ids=True,
                speaker_id=speaker_id,
                text_do_sample=False,
                text_num_beams=1,
                text_max_new_tokens=max_new_tokens,
                text_use_cache=use_cache,
            )
        else:
            out = model.generate(
                **inputs,
                tgt_lang=tgt_lang,
                generate_speech=False,
                do_sample=False,
                num_beams=1,
                max_new_tokens=max_new_tokens,
                use_cache=use_cache,
            )
    sequences = out.sequences
    token_ids = _content_ids(sequences, bundle.tokenizer.eos_token_id)
    texts = bundle.tokenizer.batch_decode(token_ids, skip_special_tokens=True)
    scores = None
    waveforms = None
    if speech:
        full = torch.full((len(token_ids),), out.waveform.shape[-1])
        lengths = (full if out.waveform_lengths is None else torch.as_tensor(out.waveform_lengths).reshape(-1)).tolist()
        wave = out.waveform.float().cpu().numpy()
        waveforms = [wave[i, : int(n)] for i, n in enumerate(lengths)]
    else:
        scores = torch.stack(out.scores, dim=1).float().cpu()
    return GenerationResult(sequences.cpu(), token_ids, texts, scores, waveforms, int(model.config.sampling_rate))
