"""Interventions and k sweeps as jobs: submit (202 + id), then poll the state (queued, loading model, running, done,
error) and, for sweeps, the progress (generations done of the total)."""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, File, Form, Path, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from backend.api.state import AtlasState
from backend.api.deps import get_state, json_body, multipart_body, rate_limit
from backend.api.errors import ApiProblem
from backend.api.routers import errors
from backend.api.routers.interventions import check_run, read_upload, request_dict
from backend.api.schemas import InterventionRequest, JobCreated, JobStatus, SweepRequest
from backend.api.sweep import execute_sweep, prepare_sweep
from backend.queue import Job, QueueFull
from neuron_atlas.engine.versions import ENGINE_VERSION

router = APIRouter(tags=["jobs"])

ERRORS = errors(400, 404, 409, 413, 415, 422, 429, 503)


def _submit(state: AtlasState, req: dict[str, Any], charge: Callable[[], None]) -> Job:
    """Prepare now when the model is ready (so bad requests fail at once, before `charge` spends a rate-limit token);
    while it loads, prepare in the job."""
    try:
        if state.host.state == "loading":
            charge()
            key = f"deferred:{uuid.uuid4().hex}"
            job = state.queue.submit(key, lambda job: state.run_prepared(state.service.prepare(req), job))
        else:
            prepared = state.service.prepare(req)
            charge()
            hit = state.cached(prepared.key)
            job = state.queue.completed(prepared.key, hit) if hit is not None else state.submit(prepared)
    except QueueFull as exc:
        raise ApiProblem(503, str(exc), headers={"Retry-After": str(exc.retry_after)}) from None
    job.persistent = True
    return job


def _created(job: Job) -> JSONResponse:
    body = {"job_id": job.id, "state": job.state, "status_url": f"/jobs/{job.id}",
            "cached": bool(job.finished and job.result and job.result.get("cached"))}
    return JSONResponse(body, status_code=202, headers={"Location": f"/jobs/{job.id}"})


@router.post("/jobs", status_code=202, response_model=JobCreated, responses=ERRORS,
             dependencies=[Depends(json_body)], summary="Submit an intervention as a job")
async def submit_job(body: InterventionRequest, state: AtlasState = Depends(get_state),
                     charge: Callable[[], None] = Depends(rate_limit)):
    await run_in_threadpool(check_run, state, body.run_id)
    job = await run_in_threadpool(_submit, state, request_dict(body), charge)
    return _created(job)


@router.post("/jobs/upload", status_code=202, response_model=JobCreated, responses=ERRORS,
                    dependencies=[Depends(multipart_body)],
                    summary="Submit an intervention on an uploaded audio file as a job")
async def submit_upload_job(
    file: UploadFile = File(description="audio: WAV, FLAC, OGG or MP3"),
    options: str = Form(description="JSON generation options (tgt_lang, spec, return_speech, max_new_tokens, run_id)",
                        examples=['{"tgt_lang": "eng"}']),
    state: AtlasState = Depends(get_state),
    charge: Callable[[], None] = Depends(rate_limit),
):
    req = await read_upload(state, file, options)
    job = await run_in_threadpool(_submit, state, req, charge)
    return _created(job)


def _submit_sweep(state: AtlasState, req: dict[str, Any], charge: Callable[[], None]) -> Job:
    """Validate the whole sweep, spend one rate-limit token for all of it, and queue it as one job."""
    prepared = prepare_sweep(state.service, req)
    charge()
    hit = state.cached(prepared.key)
    try:
        if hit is not None:
            job = state.queue.completed(prepared.key, hit, kind="sweep")
        else:
            def work(job: Job) -> dict[str, Any]:
                result = execute_sweep(state.service, prepared, job)
                result["store_version"] = state.store_version()
                state.cache.put(prepared.key, result, len(json.dumps(result)))
                return result
            job = state.queue.submit(prepared.key, work, kind="sweep")
    except QueueFull as exc:
        raise ApiProblem(503, str(exc), headers={"Retry-After": str(exc.retry_after)}) from None
    job.persistent = True
    if job.progress is None and not job.finished:
        job.report(0, prepared.total, "queued")
    return job


@router.post("/jobs/sweep", status_code=202, response_model=JobCreated, responses=ERRORS,
             dependencies=[Depends(json_body)], summary="Submit a k sweep (several inputs, random controls over seeds) as one job")
async def submit_sweep(body: SweepRequest, state: AtlasState = Depends(get_state),
                       charge: Callable[[], None] = Depends(rate_limit)):
    await run_in_threadpool(check_run, state, body.run_id)
    req = body.model_dump(exclude={"spec", "inputs"})
    req["spec"] = body.spec
    req["inputs"] = [i.model_dump(exclude_none=True) for i in body.inputs]
    job = await run_in_threadpool(_submit_sweep, state, req, charge)
    return _created(job)


@router.get("/jobs/{job_id}", response_model=JobStatus, responses=errors(404, 422), summary="Poll a job")
def get_job(job_id: str = Path(max_length=64), state: AtlasState = Depends(get_state)) -> dict[str, Any]:
    job = state.queue.get(job_id)
    if job is None:
        raise ApiProblem(404, f"unknown job {job_id!r} (jobs are kept in memory by this server process, the newest 256)")
    out: dict[str, Any] = {"job_id": job.id, "kind": job.kind, "state": job.state, "created_at": job.created_at,
                           "started_at": job.started_at, "finished_at": job.finished_at,
                           "queue_position": state.queue.position(job), "progress": job.progress}
    if job.state == "done":
        out["result"] = job.result
    elif job.state == "error":
        out["error"] = {"error": str(job.error), "status": job.error.status, "field": None,
                        "engine_version": ENGINE_VERSION, "store_version": state.store_version()}
    return out
