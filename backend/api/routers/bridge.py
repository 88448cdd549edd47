"""The encoder-frame ↔ decoder-token bridge: each output token's cross-attention over a speech input's frames.

A request is validated in full (speech input, target language, layers, heads, unit) before it costs a rate-limit
token or a queue slot. The trace itself (greedy decoding on the fast path, then one teacher-forced pass with eager
cross-attention) runs on the work queue and is cached per (model, input (an example, or an upload by its sha256), target, length, unit), so choosing
other layers, heads or a time span re-averages the cached weights without touching the model.
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
from backend.api.routers import errors
from backend.api.routers.interventions import check_run
from backend.api.schemas import BridgeRequest, BridgeResult
from backend.api.state import AtlasState
from backend.queue import Job
from backend.store.reader import NotFoundError
from neuron_atlas.engine.bridge import BridgeError, BridgeTrace, average, check_unit, peaks, span_readers, trace_bridge
from neuron_atlas.engine.constants import SAMPLE_RATE
from neuron_atlas.engine.model.loading import ModelBundle
from neuron_atlas.engine.model.unit_sites import SiteRegistry
from neuron_atlas.engine.versions import ENGINE_VERSION

router = APIRouter(tags=["bridge"])

ERRORS = errors(404, 409, 422, 429, 503, 504)
#: Decimals kept of each attention weight and unit value in the answer (weights are probabilities).
DECIMALS = 6


@dataclass
class BridgeJob:
    """A validated bridge request: the trace's cache key, its model inputs, and the averaging asked for."""

    key: str
    run_id: str | None
    example_id: str | None
    audio_id: str | None
    input_desc: dict
    tgt_lang: str
    max_new_tokens: int
    inputs: dict
    duration_s: float
    unit_id: int | None
    layers: list[int] | None
    heads: list[int] | None
    span_s: list[float] | None


def _problem(exc: BridgeError) -> ApiProblem:
    return ApiProblem(422, str(exc), exc.field)


def prepare(state: AtlasState, body: BridgeRequest) -> BridgeJob:
    """Check everything a bridge request names against the loaded model and the store (no model work); the speech
    input is resolved as every live route resolves it (`InterventionService.resolve_input`)."""
    if body.text is not None or body.modality == "text":
        raise ApiProblem(422, f"{'text' if body.text is not None else 'modality'}: the bridge maps output tokens onto "
                              "the frames of a speech input; give example_id of an example with audio (modality speech) "
                              "or audio_id of an upload (POST /audio), not text", "text" if body.text is not None else "modality")
    if body.example_id is None and body.audio_id is None:
        raise ApiProblem(422, "example_id: required (a speech example of the run; see GET /runs/{run}/examples?has_audio=true), "
                              "or audio_id of an upload (POST /audio)", "example_id")
    bundle, registry = state.host.require()
    settings = state.settings
    if body.tgt_lang not in bundle.languages:
        raise ApiProblem(422, f"tgt_lang: {body.tgt_lang!r} is not a target language of the loaded model; it has "
                              f"{', '.join(bundle.languages)}", "tgt_lang")
    max_new = body.max_new_tokens or settings.max_new_tokens
    if max_new > settings.max_new_tokens:
        raise ApiProblem(422, f"max_new_tokens: {max_new} is above this server's limit of {settings.max_new_tokens}",
                         "max_new_tokens")
    n_layers, n_heads = int(bundle.config.decoder_layers), int(bundle.config.decoder_attention_heads)
    for name, values, n in (("layers", body.layers, n_layers), ("heads", body.heads, n_heads)):
        bad = [v for v in values or () if not 0 <= v < n]
        if bad:
            raise ApiProblem(422, f"{name}: {bad[0]} is out of range; the loaded model's decoder has {name} 0..{n - 1}", name)
    if body.span_s is not None and not 0 <= body.span_s[0] < body.span_s[1]:
        raise ApiProblem(422, f"span_s: expected [start, end] seconds with 0 <= start < end, got {body.span_s}", "span_s")
    if body.unit_id is not None:
        try:
            check_unit(registry, body.unit_id)
        except BridgeError as exc:
            raise _problem(exc) from None
    run_id = None
    if body.example_id is not None or body.run_id is not None:
        reader = state.reader()
        run_id = reader.resolve_run(body.run_id) if body.run_id is not None else reader.latest_run(bundle.checksum)
        if run_id is None:
            raise ApiProblem(404, "the store holds no runs yet")
    request = {"example_id": body.example_id, "audio_id": body.audio_id, "modality": "speech"}
    try:
        source = state.service.resolve_input(request, bundle, run_id)
    except NotFoundError as exc:
        status = 422 if "has no audio" in str(exc) else 404
        raise ApiProblem(status, f"example_id: {exc}" + ("; the bridge needs a speech example" if status == 422 else ""),
                         "example_id") from None
    key = hashlib.sha256(json.dumps({
        "bridge": 1, "model": bundle.checksum, "input": source.key_part(), "tgt_lang": body.tgt_lang,
        "max_new_tokens": max_new, "unit_id": body.unit_id, "engine": ENGINE_VERSION}, sort_keys=True).encode()).hexdigest()
    return BridgeJob(key, run_id, body.example_id, body.audio_id and source.desc["audio_id"], source.desc, body.tgt_lang,
                     max_new, source.model_inputs(bundle), len(source.wave) / SAMPLE_RATE, body.unit_id, body.layers,
                     body.heads, body.span_s)


def _rounded(values: np.ndarray) -> list:
    return np.round(values.astype(np.float64), DECIMALS).tolist()


def shape(job: BridgeJob, trace: BridgeTrace, bundle: ModelBundle, registry: SiteRegistry,
          seconds: float | None) -> dict[str, Any]:
    """The answer: the trace averaged over the chosen layers and heads, its peaks, span readers and unit strip."""
    try:
        mean, layers, heads = average(trace, job.layers, job.heads)
        span = span_readers(mean, trace.geometry, *job.span_s) if job.span_s is not None else None
    except BridgeError as exc:
        raise _problem(exc) from None
    g = trace.geometry
    unit = None
    if job.unit_id is not None:
        site, channel = registry.site_of_unit(job.unit_id)
        unit = {"unit_id": job.unit_id, "site": site.key, "channel": channel, "values": _rounded(trace.unit_values)}
    return {
        "run_id": job.run_id, "example_id": job.example_id, "audio_id": job.audio_id, "input": job.input_desc,
        "tgt_lang": job.tgt_lang,
        "model": {"spec": bundle.spec, "checksum": bundle.checksum}, "engine_version": ENGINE_VERSION,
        "max_new_tokens": job.max_new_tokens, "text": trace.text, "tokens": trace.tokens, "token_ids": trace.token_ids,
        "n_layers": trace.n_layers, "n_heads": trace.n_heads, "layers": layers, "heads": heads,
        "columns": {"n": int(len(g.centres_s)), "centres_s": _rounded(g.centres_s), "starts_s": _rounded(g.starts_s),
                    "ends_s": _rounded(g.ends_s), "step_s": round(g.step_s, 6), "span_s": round(g.span_s, 6),
                    "kernel": g.kernel, "stride": g.stride,
                    "note": (f"one column is one length-adaptor frame: it pools {g.kernel} encoder frames of 20 ms "
                             f"(about {g.span_s * 1000:.0f} ms of audio) and the next column starts {g.step_s * 1000:.0f} ms "
                             "later; the encoder's self-attention has mixed the whole utterance into every frame, so a "
                             "column is centred on its span, not confined to it")},
        "duration_s": round(trace.duration_s, 6), "weights": _rounded(mean),
        "row": "each token's row is the decoder query that predicted it (the position of the token before it)",
        "attention": "cross-attention weights from the eager attention path, for this request only",
        "peaks": [{**p, "weight": round(p["weight"], DECIMALS)} for p in peaks(mean, g)],
        "span": span if span is None else {**span, "mass": [round(m, DECIMALS) for m in span["mass"]]},
        "unit": unit, "argmax_matches": trace.argmax_matches,
        "timing_s": None if seconds is None else {"trace": round(seconds, 4)},
    }


@router.post("/bridge", response_model=BridgeResult, responses=ERRORS, dependencies=[Depends(json_body)],
             summary="Each output token's cross-attention over the frames of a speech input, and a k/v unit's strip")
async def bridge(body: BridgeRequest, state: AtlasState = Depends(get_state),
                 charge: Callable[[], None] = Depends(rate_limit)) -> dict[str, Any]:
    """Greedy decoding of the speech input (a stored example's audio, or an upload by `audio_id`) into `tgt_lang`; per output token, the cross-attention weights of the
    decoder query that predicted it over the length-adaptor frames, averaged over `layers` × `heads` (all by
    default), with each token's peak column and the audio span it pools; `span_s` lists how much each token reads of
    that time span; `unit_id` (a cross-attention k_proj/v_proj unit) adds its value per frame."""
    await run_in_threadpool(check_run, state, body.run_id)
    job = await run_in_threadpool(prepare, state, body)
    bundle, registry = state.host.require()
    trace = state.cache.get(f"bridge:{job.key}")
    if trace is not None:
        return {**await run_in_threadpool(shape, job, trace, bundle, registry, None), "cached": True}
    charge()

    def work(_job: Job) -> dict[str, Any]:
        t0 = time.perf_counter()
        with state.service.model_lock:
            traced = trace_bridge(bundle, registry, job.inputs, job.tgt_lang, job.max_new_tokens, job.unit_id,
                                  duration_s=job.duration_s)
        seconds = time.perf_counter() - t0
        state.cache.put(f"bridge:{job.key}", traced, traced.nbytes)
        return {**shape(job, traced, bundle, registry, seconds), "cached": False}

    selection = json.dumps([job.layers, job.heads, job.span_s])
    return await state.run_queued(f"bridge:{job.key}:{selection}", work)
