"""Live unit traces: one unit's activation at every frame or token of recorded items, from the loaded model."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool

from backend.api.deps import get_state, json_body, rate_limit
from backend.api.live import result_size
from backend.api.routers import errors
from backend.api.routers.data import UnitId, run_path
from backend.api.schemas import TraceBatchRequest
from backend.api.state import AtlasState
from backend.api.tracing import TraceRequest

router = APIRouter(tags=["units"], responses=errors(404, 409, 422, 429, 503))


@router.get("/runs/{run_id}/units/{unit_id}/trace",
            summary="A unit's activation per speech frame / text token of one item, and its pooled value")
async def unit_trace(
    run_id: str = Depends(run_path),
    unit_id: int = UnitId,
    example_id: str = Query(max_length=500, description="the item's input example (see GET /runs/{run}/examples)"),
    task: str = Query(max_length=64, description="the task the item belongs to (asr, s2tt, t2tt, en2x_s2tt, en2x_t2tt)"),
    modality: Literal["speech", "text"] | None = Query(None, description="checked against the task's input modality"),
    step: int | None = Query(None, ge=0, le=4096, description="decoder units: the prefix length (default: the run's first step)"),
    tgt_lang: str | None = Query(None, max_length=16, description="en->X tasks: which target of the English example"),
    state: AtlasState = Depends(get_state),
    charge: Callable[[], None] = Depends(rate_limit),
) -> dict[str, Any]:
    """Reruns the recording of that item with the unit's hook keeping every position: `values` (valid positions
    only), `times_s` (speech frames) or `tokens` (text / decoder positions), `pooled` (their mean, computed by the
    recording code) and `stored` (the value in the store, which `pooled` reproduces); `output_tokens` and
    `output_text` are the whole greedy output, `output_values` (decoder units) the unit at each of its tokens."""
    return await run_in_threadpool(state.traces.trace, run_id, unit_id, example_id, task, step, tgt_lang, modality, charge)


@router.post("/runs/{run_id}/units/{unit_id}/traces", dependencies=[Depends(json_body)],
             responses=errors(415, 504),
             summary="The same trace for several items at once: one queued job, the items batched through the model")
async def unit_traces(
    body: TraceBatchRequest,
    run_id: str = Depends(run_path),
    unit_id: int = UnitId,
    state: AtlasState = Depends(get_state),
    charge: Callable[[], None] = Depends(rate_limit),
) -> dict[str, Any]:
    """Every item is checked before anything runs (an error names `items[i].field`); the request then costs one
    rate-limit token and runs as one job on the model queue. `traces` holds one trace per item, in request order, each
    as GET .../trace answers it; an identical request is answered from the result cache (`cached: true`)."""
    requests = [TraceRequest(i.example_id, i.task, i.tgt_lang, i.modality) for i in body.items]
    prepared = await run_in_threadpool(state.traces.prepare, run_id, unit_id, requests, body.step, body.max_new_tokens)
    charge()
    hit = state.cached(prepared.key)
    if hit is not None:
        return hit

    def run(_job) -> dict[str, Any]:
        result = state.traces.execute(prepared)
        state.cache.put(prepared.key, result, result_size(result))
        return {**result, "cached": False}

    return await state.run_queued(prepared.key, run)
