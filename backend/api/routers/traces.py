"""Live unit traces: one unit's activation at every frame or token of a recorded item, from the loaded model."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool

from backend.api.state import AtlasState
from backend.api.deps import get_state, rate_limit
from backend.api.routers import errors
from backend.api.routers.data import UnitId, run_path

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
    recording code) and `stored` (the value in the store, which `pooled` reproduces)."""
    return await run_in_threadpool(state.service.trace, run_id, unit_id, example_id, task, step, tgt_lang, modality, charge)
