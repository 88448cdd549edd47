"""`InterventionSpec`: the typed, versioned, JSON-serialisable description of an intervention, and its errors.

Version 2 names the decoding-step scope `scope.decode_steps` (0 = the first decoder forward of `generate`), so that
`step` means one thing everywhere users see it: the decoder prefix length of the store, the URL and the API. Version-1
specs (`scope.steps`, saved findings and share links) are read and upgraded on parse.

Fields added within version 2 (`strength`, a `scope.positions` range) have defaults that mean what every earlier spec
meant (strength 1 = the full overwrite, positions `all`); `canonical_json` leaves them out at those defaults, so the
digest, cache key and share link of every earlier spec stay exactly what they were.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from neuron_atlas.engine.constants import STATISTICS

SPEC_VERSION = 2
#: Largest |strength| a spec may ask for (a dial, not an overflow).
MAX_STRENGTH = 100.0
#: Fields added within version 2 with the default every earlier spec meant; left out of the canonical JSON there.
_LATER_DEFAULTS: dict[str, Any] = {"strength": 1.0}
#: Spec versions this engine reads: version 1 named the decoding-step scope `scope.steps`.
READABLE_VERSIONS: tuple[int, ...] = (1, 2)


class SpecError(ValueError):
    """An intervention spec is invalid; `field` is the dotted path of the offending entry (e.g. `units.units[3].module`)."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}" if field else message)


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


class PositionRange(_SpecModel):
    """Absolute decoder positions `start <= p < stop` (0 = `</s>`, 1 = the target-language token, p >= 2 = the output
    token p - 2 read back); `stop` None = to the end."""

    start: int = Field(ge=0)
    stop: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> PositionRange:
        if self.stop is not None and self.stop <= self.start:
            raise PydanticCustomError("spec_field", "{message}", {"field": "scope.positions.stop",
                                      "message": f"stop ({self.stop}) must be greater than start ({self.start})"})
        return self


def _check_positions(value: Any) -> Any:
    """`"all"`, `"last"` or a `{"start": a, "stop": b}` range, with an error that says which of them was meant."""
    if isinstance(value, PositionRange) or (isinstance(value, str) and value in ("all", "last")):
        return value
    if isinstance(value, Mapping):
        try:
            return PositionRange.model_validate(dict(value))
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            ctx = err.get("ctx") or {}
            if err["type"] == "spec_field":
                raise PydanticCustomError("positions", "{message}", {"message": ctx["message"]}) from None
            where = ".".join(str(p) for p in err["loc"]) or "range"
            reason = {"extra_forbidden": "unknown field", "missing": "required field is missing"}.get(err["type"], err["msg"])
            raise PydanticCustomError("positions", "{where}: {reason} (got {got})",
                                      {"where": where, "reason": reason, "got": repr(err.get("input"))}) from None
    raise PydanticCustomError("positions", "expected 'all', 'last' or a range {example}, got {got}",
                              {"example": '{"start": a, "stop": b}', "got": repr(value)})


class Scope(_SpecModel):
    """Which decoder positions (`all`, the newest of each forward `last`, or a `PositionRange`) and decoding steps
    (0 = the first decoder forward of `generate`) an overwrite of a decoder-position site acts on; not the recorded
    `step`, which is a decoder prefix length."""

    positions: Annotated[Literal["all", "last"] | PositionRange, BeforeValidator(_check_positions)] = "all"
    decode_steps: Annotated[Literal["all"] | list[int], BeforeValidator(_normalise_steps)] = "all"


def upgrade_spec(data: Mapping[str, Any]) -> dict[str, Any]:
    """A version-1 spec mapping in version-2 form (`scope.steps` renamed `scope.decode_steps`), so saved findings and
    share links keep working; a mapping without a version counts as version 1 when its scope uses `steps`."""
    out = dict(data)
    version = out.get("version")
    scope = out.get("scope")
    old_scope = isinstance(scope, Mapping) and "steps" in scope and "decode_steps" not in scope
    if not ((type(version) is int and version == 1) or (version is None and old_scope)):
        return out
    if old_scope:
        out["scope"] = {("decode_steps" if k == "steps" else k): v for k, v in scope.items()}
    out["version"] = SPEC_VERSION
    return out


Units = Annotated[ExplicitUnits | ConceptUnits, Field(discriminator="kind")]
Value = Annotated[StatisticValue | ZeroValue | ConstantValue | ScaleValue, Field(discriminator="kind")]


class InterventionSpec(_SpecModel):
    """What to overwrite (units), with what (value), where (scope); `stats_concept_id` names the statistics' concept.

    For concept units the statistics default to the selecting concept; explicit units with a statistic value must
    name `stats_concept_id`. Construction, `parse` and `from_json` raise `SpecError` naming the offending field.
    """

    version: Literal[2] = SPEC_VERSION
    units: Units
    value: Value = StatisticValue()
    scope: Scope = Scope()
    stats_concept_id: int | None = None
    #: How far toward the value the overwrite moves each chosen unit: out + strength * (value - out). 1 writes the
    #: value (the paper's forcing), 0 leaves the model exactly as it is, 2 pushes twice as far, -1 the other way; for
    #: `scale` the written value is the unit's own times the factor.
    strength: float = Field(1.0, ge=-MAX_STRENGTH, le=MAX_STRENGTH, allow_inf_nan=False)

    def __init__(self, **data: Any):
        # pydantic routes model_validate / model_validate_json through a custom __init__ too; errors stay SpecErrors.
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _spec_error(exc) from None

    @model_validator(mode="before")
    @classmethod
    def _read_version_1(cls, data: Any) -> Any:
        return upgrade_spec(data) if isinstance(data, Mapping) else data

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
        """Sorted keys, no whitespace, defaults included (except fields added within version 2, at their defaults, so
        earlier specs keep their strings): equal specs give equal strings."""
        data = self.model_dump(mode="json")
        for name, default in _LATER_DEFAULTS.items():
            if data.get(name) == default:
                del data[name]
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)

    def digest(self) -> str:
        """sha256 of the canonical JSON, for caches and share links."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()

    @property
    def is_identity(self) -> bool:
        """Whether the spec leaves the model exactly as it is (strength 0)."""
        return self.strength == 0.0

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
        return SpecError("version", f"unsupported spec version {err.get('input')!r}; this engine reads versions {', '.join(map(str, READABLE_VERSIONS))}")
    if kind in ("model_type", "model_attributes_type", "dict_type") and not loc:
        return SpecError("", f"an intervention spec is a JSON object, got {type(err.get('input')).__name__}")
    if kind in ("steps", "positions"):
        return SpecError(path, msg)
    got = repr(err.get("input"))
    return SpecError(path, f"{msg} (got {got if len(got) <= 80 else got[:77] + '...'})")
