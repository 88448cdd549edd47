"""Token attribution: rank units by their estimated effect on one output token, verified by forcing the top ones.

The request names a run output as POST /interventions does (input, target language, spec) plus the side, the token
and the reference. It is validated and keyed like an intervention (`InterventionService.prepare`, then the reference
against the run's statistics), charged against the same rate limit, and computed on the same queue and model lock:
greedy generation of the side's output, one forward + backward pass for the estimates, one batched pass to verify.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool

from backend.api.deps import get_state, json_body, rate_limit
from backend.api.errors import ApiProblem
from backend.api.live import DECODING, Prepared, require_same_model
from backend.api.routers import errors
from backend.api.routers.interventions import check_run
from backend.api.schemas import AttributionRequest, AttributionResult
from backend.api.state import AtlasState
from backend.queue import Job
from backend.store.reader import StoreStats
from neuron_atlas.engine import attribution as attr
from neuron_atlas.engine.interventions import SpecError, StatisticValue, generate_with
from neuron_atlas.engine.versions import ENGINE_VERSION

router = APIRouter(tags=["interventions"])

ERRORS = errors(400, 404, 409, 413, 415, 422, 429, 503, 504)


@dataclass
class PreparedAttribution:
    """A validated attribution request: the prepared run (inputs, resolved spec), the token and the reference."""

    key: str
    run: Prepared
    side: str
    token_index: int
    reference: attr.Reference
    reference_concept_id: int | None
    verify: int
    top_k: int
    per_layer: int
    versus_token_id: int | None


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _fail(field: str, message: str, status: int = 422) -> ApiProblem:
    return ApiProblem(status, f"{field}: {message}", field)


def prepare(state: AtlasState, body: AttributionRequest) -> PreparedAttribution:
    """Check everything before the request takes a queue slot: the run request, the side, the token's range and the
    reference (its concept and statistics in the run)."""
    bundle, registry = state.host.require()
    limit = state.settings.max_new_tokens
    max_new = body.max_new_tokens or limit
    if body.side == "intervened" and body.spec is None:
        raise _fail("side", "the intervened output needs a spec; give one, or ask for the baseline")
    if body.token_index >= min(max_new, limit):
        raise _fail("token_index", f"{body.token_index} is past the last token the output is generated to "
                                   f"(max_new_tokens {min(max_new, limit)}: tokens 0..{min(max_new, limit) - 1})")
    request = {"tgt_lang": body.tgt_lang, "spec": body.spec, "run_id": body.run_id, "return_speech": False,
               "max_new_tokens": body.max_new_tokens, "example_id": body.example_id, "modality": body.modality,
               "text": body.text, "src_lang": body.src_lang, "audio_id": body.audio_id}
    run = state.service.prepare(request)
    concept = body.reference_concept_id
    statistic = isinstance(body.reference, StatisticValue)
    if statistic and concept is None:
        concept = body.spec.statistics_concept() if body.spec is not None else None
        if concept is None:
            raise _fail("reference_concept_id", f"reference {body.reference.kind!r} reads a concept's per-unit "
                                                "statistics: name the concept (or use the reference zero)")
    stats = None
    run_id = run.run_id
    if statistic:
        reader = state.reader()
        if run_id is None:
            run_id = reader.resolve_run(body.run_id) if body.run_id else reader.latest_run(bundle.checksum)
            if run_id is None:
                raise ApiProblem(404, "the store holds no runs yet: a statistic reference needs one", "run_id")
        require_same_model(reader.run(run_id), bundle, "its statistics do not describe this model's units")
        stats = StoreStats(reader, run_id)
    vocab = int(bundle.config.vocab_size)
    if body.versus_token_id is not None and body.versus_token_id >= vocab:
        raise _fail("versus_token_id", f"{body.versus_token_id} is not a token id of this model (0..{vocab - 1})")
    try:
        reference = attr.reference_values(body.reference, registry, stats, concept)
    except SpecError as exc:
        raise _fail(exc.field, exc.reason) from None
    key = _digest({"run": run.key, "side": body.side, "token_index": body.token_index,
                   "reference": body.reference.model_dump(mode="json"), "reference_concept_id": concept,
                   "reference_run": run_id if statistic else None, "verify": body.verify, "top_k": body.top_k,
                   "per_layer": body.per_layer, "versus_token_id": body.versus_token_id, "what": "attribution"})
    run.run_id = run_id
    return PreparedAttribution(key, run, body.side, body.token_index, reference, concept if statistic else None,
                               body.verify, body.top_k, body.per_layer, body.versus_token_id)


def execute(state: AtlasState, prepared: PreparedAttribution, job: Job | None = None) -> dict[str, Any]:
    """Worker-side: generate the side's output, attribute the token, force the top units (under the model lock)."""
    bundle, registry = state.host.require()
    run = prepared.run
    resolved = run.resolved if prepared.side == "intervened" else None
    timing: dict[str, float] = {"prepare": round(run.prepare_s, 4)}
    with state.service.model_lock:
        t0 = time.perf_counter()
        out = generate_with(bundle, registry, resolved, run.inputs, run.tgt_lang, max_new_tokens=run.max_new_tokens)
        timing["generate"] = round(time.perf_counter() - t0, 4)
        ids = out.token_ids[0]
        if prepared.token_index >= len(ids):
            raise _fail("token_index", f"{prepared.token_index} is out of range: the {prepared.side} output has "
                                       f"{len(ids)} tokens (0..{len(ids) - 1})")
        sequence = attr.target_sequence(out.sequences[0].tolist(), prepared.token_index)
        t0 = time.perf_counter()
        versus = prepared.versus_token_id
        if versus == sequence[-1]:
            raise _fail("versus_token_id", f"{versus} is the attributed token itself ({prepared.side} output, index "
                                           f"{prepared.token_index}); pick another token to compare with")
        found = attr.attribute_token(bundle, registry, run.inputs, sequence, prepared.reference, resolved, versus)
        if not np.isfinite(found.objective):
            raise _fail("spec" if resolved is not None else "reference",
                        f"the {prepared.side} run gives token {prepared.token_index} a non-finite log-probability "
                        "(its forced values overflow the model's activations): choose smaller values")
        timing["attribution"] = round(time.perf_counter() - t0, 4)
        top = attr.rank_units(found.estimates, max(prepared.top_k, prepared.verify))
        checked = top[: prepared.verify]
        t0 = time.perf_counter()
        sets = [checked[i : i + 1] for i in range(len(checked))] + ([checked] if len(checked) else [])
        base, deltas = attr.verify_forcing(bundle, registry, run.inputs, sequence, prepared.reference, sets, resolved, versus)
        timing["verification"] = round(time.perf_counter() - t0, 4)
    tokens = bundle.tokenizer.convert_ids_to_tokens(ids)
    n = len(checked)
    verification = {
        "n": n, "objective": _finite(base),
        "units": [{"unit_id": int(u), "estimate": float(found.estimates[u]), "actual": _finite(d)}
                  for u, d in zip(checked, deltas[:n])],
        "all": {"n_units": n, "estimate": _finite(found.estimates[checked].sum()) if n else 0.0,
                "actual": _finite(deltas[n]) if n else 0.0},
        **attr.correlation(found.estimates[checked], deltas[:n]),
    }
    ref_values = prepared.reference.values
    return {
        "key": prepared.key, "cached": False, "engine_version": ENGINE_VERSION, "store_version": None,
        "model": {"spec": bundle.spec, "checksum": bundle.checksum, "device": str(bundle.device)},
        "run_id": run.run_id, "input": run.input_desc, "tgt_lang": run.tgt_lang,
        "decoding": {**DECODING, "max_new_tokens": run.max_new_tokens},
        "spec": None if run.spec is None else json.loads(run.spec.canonical_json()),
        "side": prepared.side,
        "output": {"text": out.text, "token_ids": [int(i) for i in ids], "tokens": tokens},
        "token": {"index": prepared.token_index, "id": found.token_id, "text": tokens[prepared.token_index],
                  "logprob": found.logprob, "prob": float(np.exp(found.logprob)), "objective": found.objective,
                  "versus": None if versus is None else {"id": versus, "text": bundle.tokenizer.convert_ids_to_tokens(versus)}},
        "reference": {**prepared.reference.describe(), "concept_id": prepared.reference_concept_id},
        "n_units_scored": int(np.isfinite(found.estimates).sum()),
        "top": [_unit_row(registry, int(u), found, ref_values) for u in top[: prepared.top_k]],
        "layers": attr.layer_summary(registry, found.estimates, prepared.per_layer),
        "verification": verification,
        "timing_s": timing,
    }


def _unit_row(registry, unit_id: int, found: attr.TokenAttribution, ref_values: np.ndarray | None) -> dict[str, Any]:
    site, channel = registry.site_of_unit(unit_id)
    return {"unit_id": unit_id, "site": site.key, "channel": int(channel), "stack": site.stack, "layer": site.layer,
            "component": site.component, "estimate": float(found.estimates[unit_id]),
            "activation": _finite(found.activations[unit_id]),
            "reference": None if ref_values is None else _finite(ref_values[unit_id])}


def _finite(x: float) -> float | None:
    """A number for JSON: None where forcing overflowed (inf or NaN), which JSON cannot carry."""
    x = float(x)
    return x if np.isfinite(x) else None


@router.post("/attribution", response_model=AttributionResult, responses=ERRORS, dependencies=[Depends(json_body)],
             summary="Rank units by their effect on one output token (attribution patching), verified by forcing")
async def attribute(body: AttributionRequest, state: AtlasState = Depends(get_state),
                    charge: Callable[[], None] = Depends(rate_limit)) -> dict:
    await run_in_threadpool(check_run, state, body.run_id)
    prepared = await run_in_threadpool(prepare, state, body)
    charge()
    return await state.run_sync(prepared, lambda p, job: execute(state, p, job))
