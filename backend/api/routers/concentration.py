"""Concentration drill-down: which units of a layer carry its activation magnitude, ranked, with their shares."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from backend.api.state import AtlasState
from backend.api.deps import INT_MAX, check_page_limit, get_reader, get_state, limit_query
from backend.api.routers import errors
from backend.api.routers.data import StepQ, Stack, run_path
from backend.store.reader import StoreReader

router = APIRouter(tags=["units"], responses=errors(404, 422, 503))


@router.get("/runs/{run_id}/concentration/units",
            summary="Units of one layer ranked by mean |activation| for one task and language, with their shares")
def concentration_units(
    run_id: str = Depends(run_path),
    stack: Stack = Query(),
    layer: int = Query(ge=0, le=4096),
    task: str = Query(max_length=64),
    language: str = Query(max_length=16),
    step: int | None = StepQ,
    limit: int = limit_query(50),
    offset: int = Query(0, ge=0, le=INT_MAX),
    reader: StoreReader = Depends(get_reader),
    state: AtlasState = Depends(get_state),
) -> dict:
    """The measure behind the Gini heatmap cell: per-unit mean |pooled activation| over the items of (task,
    language) at `step`, ranked, each unit's share of the layer total and the cumulative share; `gini` recomputed
    from the same values equals the stored cell."""
    check_page_limit(state, limit)
    return reader.concentration_units(run_id, stack, layer, task, language, step, limit, offset)
