"""Live interventions: baseline vs intervened generation on the loaded model (JSON input or an uploaded audio file)."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from backend.api.state import AtlasState
from backend.api.deps import get_state, json_body, multipart_body, rate_limit
from backend.api.errors import ApiProblem
from backend.api.routers import errors
from backend.api.routers.data import resolve_run_field
from backend.api.fires import execute_fires, prepare_fires
from backend.api.schemas import Activations, ActivationsRequest, InterventionRequest, InterventionResult, UploadOptions
from backend.api.uploads import store_upload

router = APIRouter(tags=["interventions"])

ERRORS = errors(400, 404, 409, 413, 415, 422, 429, 503, 504)


def request_dict(body: InterventionRequest) -> dict[str, Any]:
    """The validated request as the service's plain dict (the spec stays a parsed InterventionSpec)."""
    data = body.model_dump(exclude={"spec"})
    data["spec"] = body.spec
    return data


def _validation_problem(exc: ValidationError, prefix: str) -> ApiProblem:
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in err.get("loc", ()))
    ctx = err.get("ctx") or {}
    if err.get("type") == "spec":
        return ApiProblem(422, f"{prefix}.{err['msg']}", f"{prefix}.{ctx.get('field', 'spec')}")
    if err.get("type") == "json_invalid":
        return ApiProblem(422, f"{prefix}: invalid JSON: {ctx.get('error', err.get('msg'))}", prefix)
    where = f"{prefix}.{loc}" if loc else prefix
    if err.get("type") == "missing":
        return ApiProblem(422, f"{where}: required field is missing", where)
    return ApiProblem(422, f"{where}: {err.get('msg')}", where)


def check_run(state: AtlasState, run_id: str | None) -> None:
    """404 naming `run_id` when the request names a run the store does not hold (checked before any model work)."""
    reader = state.reader_or_none()
    if run_id is not None and reader is not None:
        resolve_run_field(reader, run_id)


async def read_upload(state: AtlasState, file: UploadFile, options: str) -> dict[str, Any]:
    """Check the form (options JSON, then the file as `POST /audio` does) and keep the audio in the store; returns
    the request with the upload's `audio_id` as its input."""
    try:
        opts = UploadOptions.model_validate_json(options)
    except ValidationError as exc:
        raise _validation_problem(exc, "options") from None
    req = opts.model_dump(exclude={"spec"})
    req["spec"] = opts.spec
    stored = await store_upload(state.settings, state.service.audio, file)
    await run_in_threadpool(check_run, state, req.get("run_id"))
    req["audio_id"] = stored.audio_id
    return req


@router.post("/interventions", response_model=InterventionResult, responses=ERRORS,
             dependencies=[Depends(json_body)],
             summary="Run baseline and intervened generation on a corpus example, a text or an uploaded audio_id")
async def intervene(body: InterventionRequest, state: AtlasState = Depends(get_state),
                    charge: Callable[[], None] = Depends(rate_limit)) -> dict:
    await run_in_threadpool(check_run, state, body.run_id)
    prepared = await run_in_threadpool(state.service.prepare, request_dict(body))
    charge()
    return await state.run_sync(prepared)


@router.post("/interventions/upload", response_model=InterventionResult, responses=ERRORS,
                    dependencies=[Depends(multipart_body)],
                    summary="Run baseline and intervened generation on an uploaded audio file (WAV, FLAC, OGG, MP3)")
async def intervene_upload(
    file: UploadFile = File(description="audio: WAV, FLAC, OGG or MP3; any rate; mono or stereo"),
    options: str = Form(description="JSON generation options (tgt_lang, spec, return_speech, max_new_tokens, run_id)",
                        examples=[json.dumps({"tgt_lang": "eng", "spec": {"units": {"kind": "explicit", "units": [
                            {"module": "text_decoder.layers.0.ffn.fc1", "channel": 3}]}, "value": {"kind": "zero"}}})]),
    state: AtlasState = Depends(get_state),
    charge: Callable[[], None] = Depends(rate_limit),
) -> dict:
    req = await read_upload(state, file, options)
    prepared = await run_in_threadpool(state.service.prepare, req)
    charge()
    return await state.run_sync(prepared)


@router.post("/activations", response_model=Activations, responses=ERRORS, dependencies=[Depends(json_body)],
             summary="What fires on an input: the top units per stack and layer, scored against the run's corpus")
async def activations(body: ActivationsRequest, state: AtlasState = Depends(get_state),
                      charge: Callable[[], None] = Depends(rate_limit)) -> dict:
    await run_in_threadpool(check_run, state, body.run_id)
    prepared = await run_in_threadpool(prepare_fires, state.service, body.model_dump())
    charge()
    hit = state.cache.get(prepared.key)
    if hit is not None:
        return hit

    def work(job) -> dict:
        result = execute_fires(state.service, prepared, job)
        state.cache.put(prepared.key, result, len(json.dumps(result)))
        return result

    return await state.run_queued(prepared.key, work, kind="activations")
