"""Token attribution: which units move one output token's log-probability, estimated in one pass and checked by forcing.

Attribution patching (Nanda 2023; Syed et al. 2023): with the decoder teacher-forced on the run's own output up to
the chosen token, one forward and one backward pass give every unit's gradient `g` of log p(token) at each position
it outputs. Forcing the unit to a reference value `r` (the value an intervention would write: a concept statistic,
zero, a constant, or `factor × a` for a scale) changes the log-probability by about `Σ_positions g · (r − a)`, the
first-order Taylor term (gradient × (reference − activation)). The sum runs over every position the unit's module
outputs, as an intervention with scope `all` writes there. `verify_forcing` measures the real change: it runs the
same teacher-forced pass with each chosen unit forced alone, and all of them together, as rows of one batch.

Both passes run under the run's own intervention (`intervene`, the hooks live generation uses), so the attribution of
an intervened output describes the model as it produced that output. Units are scored in the stacks the input runs
(its encoder and the text decoder); the others are NaN, as are units without a reference value (a statistic the
concept did not record).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy import stats as sps

from neuron_atlas.engine.constants import DECODER_PROMPT_LENGTH, STACKS
from neuron_atlas.engine.interventions import (
    ConstantValue,
    ResolvedIntervention,
    ScaleValue,
    SpecError,
    StatisticValue,
    UnitStatsSource,
    ZeroValue,
    intervene,
)
from neuron_atlas.engine.model.hooks import AdapterPaddingGuard, HookPoints, channels_last
from neuron_atlas.engine.model.loading import ModelBundle
from neuron_atlas.engine.model.unit_sites import SiteRegistry, UnitSite

ReferenceValue = StatisticValue | ZeroValue | ConstantValue | ScaleValue
#: Rows of one verification forward pass (the baseline row plus forced units), bounding its memory.
VERIFY_BATCH_ROWS = 32


@dataclass(frozen=True)
class Reference:
    """What forcing a unit writes: per-unit values (NaN = none, so the unit is not scored) or a scale factor."""

    kind: str
    values: np.ndarray | None
    factor: float | None = None

    def describe(self) -> dict:
        scored = None if self.values is None else int(np.isfinite(self.values).sum())
        return {"kind": self.kind, "factor": self.factor, "units_with_value": scored}


def reference_values(value: ReferenceValue, registry: SiteRegistry, stats: UnitStatsSource | None,
                     concept_id: int | None) -> Reference:
    """The reference of a value spec (the `value` of an InterventionSpec) for every unit of the model.

    A statistic reads `concept_id`'s per-unit values (units the concept did not record get NaN); errors are
    `SpecError`s naming `reference_concept_id`.
    """
    n = registry.n_units
    if isinstance(value, StatisticValue):
        if concept_id is None:
            raise SpecError("reference_concept_id", f"reference {value.kind!r} reads a concept's per-unit statistics; name the concept")
        if stats is None or not stats.concept_exists(concept_id):
            raise SpecError("reference_concept_id", f"unknown concept {concept_id}")
        values = np.asarray(stats.unit_values(concept_id, np.arange(n, dtype=np.int64), value.kind), dtype=np.float32)
        if not np.isfinite(values).any():
            raise SpecError("reference_concept_id", f"concept {concept_id} has no {value.kind} statistics")
        return Reference(value.kind, values)
    if concept_id is not None:
        raise SpecError("reference_concept_id", f"only used with a statistic reference, not {value.kind!r}")
    if isinstance(value, ZeroValue):
        return Reference("zero", np.zeros(n, dtype=np.float32))
    if isinstance(value, ConstantValue):
        return Reference("constant", np.full(n, value.value, dtype=np.float32))
    return Reference("scale", None, float(value.factor))


@dataclass
class TokenAttribution:
    """One token's attribution: the objective (its log-probability, or log-odds against a versus token) and, per unit,
    the estimated change of it when forced to the reference (NaN where not scored) and the unit's mean activation
    over the positions it outputs."""

    token_id: int
    objective: float
    logprob: float
    estimates: np.ndarray
    activations: np.ndarray
    positions: dict[str, int]


def target_sequence(sequence: Sequence[int], token_index: int) -> list[int]:
    """The decoder ids `</s> __tgt__ t0 … t_index` of content token `token_index` of a generated sequence."""
    end = DECODER_PROMPT_LENGTH + int(token_index) + 1
    if token_index < 0 or end > len(sequence):
        have = len(sequence) - DECODER_PROMPT_LENGTH
        raise IndexError(f"token_index {token_index} is out of range: the output has {have} tokens (0..{have - 1})")
    return [int(t) for t in sequence[:end]]


@contextmanager
def _frozen_parameters(model: torch.nn.Module) -> Iterator[None]:
    """Parameters need no gradient: only activations are differentiated (less memory); restored afterwards."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _stacks_run(inputs: Mapping[str, torch.Tensor]) -> tuple[str, str]:
    return ("speech_encoder" if "input_features" in inputs else "text_encoder", "text_decoder")


def _forward(bundle: ModelBundle, inputs: Mapping[str, torch.Tensor], decoder_ids: torch.Tensor) -> torch.Tensor:
    """Teacher-forced logits of the last decoder position, float32 [rows, vocab]."""
    out = bundle.model(**inputs, decoder_input_ids=decoder_ids, use_cache=False)
    return out.logits[:, -1].float()


def attribute_token(bundle: ModelBundle, registry: SiteRegistry, inputs: Mapping[str, torch.Tensor],
                    sequence: Sequence[int], reference: Reference,
                    resolved: ResolvedIntervention | None = None, versus_id: int | None = None) -> TokenAttribution:
    """Attribution of the last id of `sequence` (`</s> __tgt__ …`, teacher-forced) to every unit, in one forward and one
    backward pass under the run's intervention `resolved`. The objective is the token's log-probability, or with
    `versus_id` its log-odds against that token (log p(token) − log p(versus)), which does not saturate when the
    token is nearly certain. Hooks live on the shared model: serialise calls per model."""
    if len(sequence) <= DECODER_PROMPT_LENGTH:
        raise ValueError(f"sequence: needs the prompt and at least one content token, got {len(sequence)} ids")
    model = bundle.model
    sites = registry.select(_stacks_run(inputs))
    captured: dict[str, torch.Tensor] = {}

    def bind(site: UnitSite):
        def hook(module, args, out):
            if not out.requires_grad:  # nothing upstream needs a gradient: start the graph here, losing no path
                out = out.detach().requires_grad_(True)
                captured[site.key] = out
                return out
            captured[site.key] = out
            return None

        return hook

    ids = torch.tensor([list(sequence[:-1])], device=bundle.device)
    target = int(sequence[-1])
    with ExitStack() as stack:
        stack.enter_context(torch.enable_grad())
        stack.enter_context(_frozen_parameters(model))
        if "input_features" in inputs:
            stack.enter_context(AdapterPaddingGuard(model))
        stack.enter_context(intervene(bundle, registry, resolved))
        stack.enter_context(HookPoints(model, sites, bind=bind))
        logprobs = torch.log_softmax(_forward(bundle, inputs, ids)[0], -1)
        logprob = logprobs[target]
        objective = logprob if versus_id is None else logprob - logprobs[int(versus_id)]
        ran = [s for s in sites if s.key in captured]
        grads = torch.autograd.grad(objective, [captured[s.key] for s in ran], allow_unused=True)
    estimates = np.full(registry.n_units, np.nan, dtype=np.float64)
    activations = np.full(registry.n_units, np.nan, dtype=np.float64)
    positions: dict[str, int] = {}
    ref = None if reference.values is None else torch.from_numpy(reference.values).to(bundle.device)
    with torch.no_grad():
        for site, grad in zip(ran, grads):
            a = channels_last(site, captured[site.key]).float()
            g = torch.zeros_like(a) if grad is None else channels_last(site, grad).float()
            span = slice(site.offset, site.offset + site.width)
            if ref is None:
                est = (g * a).sum((0, 1)) * (reference.factor - 1.0)
            else:
                est = (g * (ref[span][None, None, :] - a)).sum((0, 1))
            estimates[span] = est.double().cpu().numpy()
            activations[span] = a.mean((0, 1)).double().cpu().numpy()
            positions[site.domain] = int(a.shape[1])
    if reference.values is not None:
        estimates[~np.isfinite(reference.values)] = np.nan
    return TokenAttribution(target, float(objective.detach()), float(logprob.detach()), estimates, activations, positions)


def rank_units(estimates: np.ndarray, n: int) -> np.ndarray:
    """Unit ids of the `n` largest |estimate| (NaN excluded), largest first, ties to the lower id."""
    ids = np.flatnonzero(np.isfinite(estimates))
    if not len(ids) or n <= 0:
        return np.zeros(0, dtype=np.int64)
    mag = np.abs(estimates[ids])
    if n < len(ids):
        keep = np.argpartition(-mag, n - 1)[:n]
        cut = mag[keep].min()
        keep = np.flatnonzero(mag >= cut)
        ids, mag = ids[keep], mag[keep]
    order = np.lexsort((ids, -mag))
    return ids[order][:n].astype(np.int64)


def unit_table(registry: SiteRegistry) -> pd.DataFrame:
    """Per unit: stack, layer, site key and channel (vectorised expansion of the registry's sites)."""
    widths = np.fromiter((s.width for s in registry.sites), dtype=np.int64, count=len(registry.sites))
    site_idx = np.repeat(np.arange(len(registry.sites)), widths)
    offsets = np.fromiter((s.offset for s in registry.sites), dtype=np.int64, count=len(registry.sites))
    frame = pd.DataFrame({
        "stack": pd.Categorical.from_codes(np.repeat([STACKS.index(s.stack) for s in registry.sites], widths), STACKS),
        "layer": np.repeat([s.layer for s in registry.sites], widths),
        "site_index": site_idx,
    })
    frame["channel"] = np.arange(registry.n_units) - offsets[site_idx]
    return frame


def layer_summary(registry: SiteRegistry, estimates: np.ndarray, per_layer: int) -> list[dict]:
    """Per stack and layer (model order): scored units (finite estimates), the sum and the sum of |estimate|, and the
    `per_layer` units of largest |estimate| with their estimates."""
    table = unit_table(registry)
    table["estimate"] = estimates
    table["unit_id"] = np.arange(registry.n_units)
    scored = table[np.isfinite(estimates)].copy()
    if scored.empty:
        return []
    scored["magnitude"] = scored["estimate"].abs()
    groups = scored.groupby(["stack", "layer"], observed=True, sort=True)
    totals = groups.agg(n_units=("estimate", "size"), sum_estimate=("estimate", "sum"), sum_abs_estimate=("magnitude", "sum"))
    top = scored.sort_values(["magnitude", "unit_id"], ascending=[False, True]).groupby(["stack", "layer"], observed=True).head(per_layer)
    keys = [registry.sites[i].key for i in top["site_index"]]
    top = top.assign(site=keys)
    tops = {k: g for k, g in top.groupby(["stack", "layer"], observed=True)}
    out = []
    for (stack, layer), row in totals.iterrows():
        g = tops.get((stack, layer))
        out.append({"stack": str(stack), "layer": int(layer), "n_units": int(row["n_units"]),
                    "sum_estimate": float(row["sum_estimate"]), "sum_abs_estimate": float(row["sum_abs_estimate"]),
                    "top": [] if g is None else [{"unit_id": int(u), "site": s, "channel": int(c), "estimate": float(e)}
                                                 for u, s, c, e in zip(g["unit_id"], g["site"], g["channel"], g["estimate"])]})
    return out


def verify_forcing(bundle: ModelBundle, registry: SiteRegistry, inputs: Mapping[str, torch.Tensor],
                   sequence: Sequence[int], reference: Reference, unit_sets: Sequence[np.ndarray],
                   resolved: ResolvedIntervention | None = None, versus_id: int | None = None,
                   batch_rows: int = VERIFY_BATCH_ROWS) -> tuple[float, np.ndarray]:
    """The objective of `attribute_token` (log-probability of the last id of `sequence`, or log-odds against
    `versus_id`) without forcing, and its real change with each set of `unit_sets` forced to the reference (at every
    position, on top of `resolved`). Sets are rows of batched teacher-forced passes, each with an unforced row, so a
    change compares rows of one batch."""
    if batch_rows < 2:
        raise ValueError(f"batch_rows: needs room for the unforced row and one set, got {batch_rows}")
    sets = [np.asarray(s, dtype=np.int64) for s in unit_sets]
    if reference.values is not None:
        for s in sets:
            if len(s) and not np.isfinite(reference.values[s]).all():
                raise ValueError("unit_sets: a unit without a reference value cannot be forced to it")
    ids = torch.tensor([list(sequence[:-1])], device=bundle.device)
    target = int(sequence[-1])
    deltas = np.zeros(len(sets), dtype=np.float64)
    base = float("nan")
    per = batch_rows - 1
    for start in range(0, max(len(sets), 1), per):
        chunk = sets[start : start + per]
        rows = len(chunk) + 1
        masks = _row_masks(registry, chunk)
        fills = _fills(registry, reference, masks, bundle)

        def bind(site: UnitSite, masks=masks, fills=fills):
            mask = masks[site.key].to(bundle.device).view(_mask_shape(site, rows))
            fill = fills.get(site.key)

            def hook(module, args, out):
                forced = out * reference.factor if fill is None else fill.to(out.dtype)
                return torch.where(mask, forced, out)

            return hook

        batch = {k: v.expand(rows, *v.shape[1:]) for k, v in inputs.items()}
        with ExitStack() as stack:
            stack.enter_context(torch.no_grad())
            if "input_features" in inputs:
                stack.enter_context(AdapterPaddingGuard(bundle.model))
            stack.enter_context(intervene(bundle, registry, resolved))
            stack.enter_context(HookPoints(bundle.model, [registry.by_key[k] for k in masks], bind=bind))
            logps = torch.log_softmax(_forward(bundle, batch, ids.expand(rows, -1)), -1)
            value = logps[:, target] - (0 if versus_id is None else logps[:, int(versus_id)])
            logp = value.double().cpu().numpy()
        if start == 0:
            base = float(logp[0])
        deltas[start : start + len(chunk)] = logp[1:] - logp[0]
    return base, deltas


def _row_masks(registry: SiteRegistry, sets: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
    """Per site that any set touches: a bool [rows, width] mask, row 0 (unforced) all False, row i+1 = set i."""
    if not sets:
        return {}
    rows = np.concatenate([np.full(len(s), i + 1) for i, s in enumerate(sets)]).astype(np.int64)
    units = np.concatenate(sets).astype(np.int64)
    if not len(units):
        return {}
    offsets = np.fromiter((s.offset for s in registry.sites), dtype=np.int64, count=len(registry.sites))
    site_idx = np.searchsorted(offsets, units, side="right") - 1
    out: dict[str, torch.Tensor] = {}
    for i in np.unique(site_idx):
        site = registry.sites[int(i)]
        here = site_idx == i
        mask = torch.zeros(len(sets) + 1, site.width, dtype=torch.bool)
        mask[torch.from_numpy(rows[here]), torch.from_numpy(units[here] - site.offset)] = True
        out[site.key] = mask
    return out


def _fills(registry: SiteRegistry, reference: Reference, masks: Mapping[str, torch.Tensor], bundle: ModelBundle) -> dict[str, torch.Tensor]:
    if reference.values is None:
        return {}
    out = {}
    for key in masks:
        site = registry.by_key[key]
        vals = np.nan_to_num(reference.values[site.offset : site.offset + site.width])
        out[key] = torch.from_numpy(vals).to(bundle.device).view((-1,) + (1,) * _trailing(site))
    return out


def _trailing(site: UnitSite) -> int:
    return 2 - site.channel_axis % 3


def _mask_shape(site: UnitSite, rows: int) -> tuple[int, ...]:
    """[rows, 1, C] for [batch, positions, channels] outputs, [rows, C, 1] for convolution layouts."""
    return (rows, 1, -1) if _trailing(site) == 0 else (rows, -1, 1)


def correlation(estimates: np.ndarray, actual: np.ndarray) -> dict:
    """Pearson r and Spearman rho of estimated vs actual changes (None below three points or without variance)."""
    est, act = np.asarray(estimates, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    ok = np.isfinite(est) & np.isfinite(act)
    est, act = est[ok], act[ok]
    if len(est) < 3 or np.ptp(est) == 0 or np.ptp(act) == 0:
        return {"n": int(len(est)), "pearson": None, "spearman": None}
    return {"n": int(len(est)), "pearson": float(np.corrcoef(est, act)[0, 1]),
            "spearman": float(sps.spearmanr(est, act).statistic)}
