"""Unit search: by unit id, site key (`site:channel`), part of a site key, or filters (stack, layer, component, AP)."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from backend.api.deps import INT_MAX, check_page_limit, get_reader, get_state, limit_query
from backend.api.routers import errors
from backend.api.routers.data import Component, Stack, run_path
from backend.api.state import AtlasState
from backend.store.reader import StoreReader

router = APIRouter(tags=["search"], responses=errors(404, 422, 503))


@router.get("/runs/{run_id}/search", summary="Find units by id, site key, part of a site key or filters")
def search_units(
    run_id: str = Depends(run_path),
    q: str | None = Query(None, max_length=300, description="a unit id (`81920`), `site:channel` "
                          "(`text_decoder.layers.3.ffn.fc1:17`), a site key, or words every matching site key contains"),
    stack: Stack | None = None,
    layer: int | None = Query(None, ge=0, le=4096),
    component: Component | None = None,
    concept_id: int | None = Query(None, ge=0, le=INT_MAX, description="adds each unit's AP for this concept and "
                                   "sorts by it (highest first); needed for min_ap / max_ap"),
    min_ap: float | None = Query(None, allow_inf_nan=False, description="lowest AP for concept_id (0..1)"),
    max_ap: float | None = Query(None, allow_inf_nan=False, description="highest AP for concept_id (0..1)"),
    limit: int = limit_query(20),
    offset: int = Query(0, ge=0, le=INT_MAX),
    reader: StoreReader = Depends(get_reader),
    state: AtlasState = Depends(get_state),
) -> dict[str, Any]:
    """`interpreted_as` says how `q` was read (`unit`, `site_channel`, `site`, `site_text`, or `filters` without q);
    `total` counts every match, `units` holds one page (site, channel, stack, layer, component, kind, and `ap` when a
    concept is given); `message` says in words when nothing matched."""
    check_page_limit(state, limit)
    return reader.search_units(run_id, q, stack=stack, layer=layer, component=component, concept_id=concept_id,
                               min_ap=min_ap, max_ap=max_ap, limit=limit, offset=offset)
