"""Intervention engine: one typed, versioned, JSON-serialisable spec that overwrites unit channels during `generate`.

The same `InterventionSpec` serves batch experiments, live requests and share links (in the spirit of pyvene's
serialisable intervention configs): `resolve` checks it against a model's unit registry and a source of per-unit
statistics, `intervene` applies the result with forward hooks, `generate_with` decodes greedily under it.

Where an overwrite acts (`scope`):

- Decoder-position sites (every text-decoder site except cross-attention k_proj / v_proj). Position p of the decoder
  input belongs to decoding step max(p - 1, 0): step 0 is the first decoder forward of `generate`, reading `</s>` and
  the target-language token; step s >= 1 reads the token that step s - 1 produced. `scope.decode_steps` picks steps and
  `scope.positions="last"` keeps only the newest position of each step (under KV caching that drops just the `</s>`
  position of step 0); `scope.positions={"start": a, "stop": b}` keeps absolute positions a <= p < b. Because this is defined on absolute positions, cached and uncached decoding, and the
  teacher-forced decoder pass that feeds the text-to-unit model when speech is generated, all see the same overwrite.
- Encoder-side sites (speech and text encoder, and decoder cross-attention k_proj / v_proj, whose positions are
  encoder positions): overwritten at every position whenever their module runs; `scope` does not restrict them. Under
  KV caching the cross-attention k / v are computed once, at step 0, and reused, so the overwrite made there is what
  every later step attends to.

`strength` dials every write: a chosen channel becomes out + strength * (value - out) (0 = the unmodified model, 1 =
the value, the default; for `scale` the multiplier becomes 1 + strength * (factor - 1)).

Hooks write into the module's output in place while autograd is off (always inside `generate`), into a new tensor
otherwise; values are cast to the model's dtype. Per-site channel masks and fill vectors are built once per device.
"""
from neuron_atlas.engine.constants import DECODER_PROMPT_LENGTH, SET_KINDS, STATISTICS
from neuron_atlas.engine.interventions.apply import decoder_step_of_positions, intervene
from neuron_atlas.engine.interventions.generate import GenerationResult, generate_with, prepare_inputs
from neuron_atlas.engine.interventions.resolve import ResolvedIntervention, SiteWrite, resolve
from neuron_atlas.engine.interventions.selection import InMemoryStats, UnitStatsSource, select_units
from neuron_atlas.engine.interventions.spec import (
    READABLE_VERSIONS,
    SPEC_VERSION,
    ConceptUnits,
    ConstantValue,
    ExplicitUnit,
    ExplicitUnits,
    InterventionSpec,
    PositionRange,
    ScaleValue,
    Scope,
    SpecError,
    StatisticValue,
    ZeroValue,
    upgrade_spec,
)

__all__ = [
    "DECODER_PROMPT_LENGTH", "SET_KINDS", "SPEC_VERSION", "STATISTICS", "READABLE_VERSIONS", "ConceptUnits", "ConstantValue", "ExplicitUnit",
    "ExplicitUnits", "GenerationResult", "InMemoryStats", "InterventionSpec", "PositionRange", "ResolvedIntervention", "ScaleValue", "Scope",
    "SiteWrite", "SpecError", "StatisticValue", "UnitStatsSource", "ZeroValue", "decoder_step_of_positions",
    "generate_with", "intervene", "prepare_inputs", "resolve", "select_units", "upgrade_spec",
]
