"""Liveness, readiness and capabilities."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from backend.api.state import AtlasState
from backend.api.deps import get_state
from backend.api.routers import errors
from backend.api.schemas import Health, Readiness
from backend.store.reader import EXPORT_TABLES
from neuron_atlas.engine.constants import COMPONENTS, SAMPLE_RATE, SET_KINDS, STACKS, STATISTICS
from neuron_atlas.engine.interventions import SPEC_VERSION
from neuron_atlas.engine.tasks import TASKS
from neuron_atlas.engine.versions import ENGINE_VERSION, STORE_VERSION

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is up")
def healthz(state: AtlasState = Depends(get_state)) -> dict:
    return {"status": "ok", "engine_version": ENGINE_VERSION, "store_version": state.store_version()}


def _store_status(state: AtlasState) -> dict[str, Any]:
    reader = state.reader_or_none()
    if reader is None:
        return {"open": False, "path": str(state.settings.store), "error": state.store_error}
    try:
        reader.refresh()
    except Exception as exc:  # a replaced, incompatible or deleted store: not ready, and say why
        return {"open": False, "path": str(state.settings.store), "error": str(exc)}
    return {"open": True, "path": str(state.settings.store), "store_version": reader.version,
            "written_by_engine": reader.engine_version, "runs": len(reader.runs()),
            "warm": {"state": reader.warm_state, "seconds": reader.warm_s}}


@router.get("/readyz", response_model=Readiness, responses=errors(503),
            summary="Ready when the model is loaded (or disabled) and the store is open")
def readyz(state: AtlasState = Depends(get_state)):
    store = _store_status(state)
    model = state.host.describe()
    ready = store["open"] and model["state"] in ("ready", "disabled")
    body = {"ready": ready, "model": model, "store": store, "engine_version": ENGINE_VERSION,
            "store_version": state.store_version()}
    if not ready:
        reasons = []
        if not store["open"]:
            reasons.append(f"store: {store['error']}")
        if model["state"] not in ("ready", "disabled"):
            reasons.append(f"model: {model['state']}" + (f" ({model['error']})" if model.get("error") else ""))
        body.update({"error": "not ready: " + "; ".join(reasons), "status": 503, "field": None})
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})
    return body


@router.get("/capabilities", summary="Model, device, unit sites, languages, limits, engine and store versions")
def capabilities(state: AtlasState = Depends(get_state)) -> dict[str, Any]:
    host = state.host
    sites: dict[str, Any] | None = None
    if host.registry is not None:
        counts = host.registry.counts()
        sites = {"source": "model", "n_sites": len(host.registry.sites), "n_units": host.registry.n_units,
                 "units": {stack: {c: int(v) for c, v in row.items() if v} for stack, row in counts.iterrows()}}
    store = _store_status(state)
    runs = []
    reader = state.reader_or_none()
    if store["open"] and reader is not None:
        runs = reader.runs()
        if sites is None and runs:
            layout = reader.layout(runs[0]["run_id"])
            by = layout.sites.groupby(["stack", "component"])["width"].sum()
            sites = {"source": f"store run {runs[0]['run_id']}", "n_sites": len(layout.sites), "n_units": layout.n_units,
                     "units": {s: {c: int(v) for (s2, c), v in by.items() if s2 == s} for s in layout.stack_ranges}}
    model = host.describe()
    return {
        "engine_version": ENGINE_VERSION,
        "store_version": state.store_version(),
        "store_schema_supported": STORE_VERSION,
        "model": model,
        "device": model.get("device"),
        "unit_sites": sites,
        "languages": {"model": model.get("languages", []),
                      "runs": sorted({lang for r in runs for lang in r["languages"]})},
        "speech_output": model.get("speech_output"),
        "store": store,
        "limits": state.settings.limits(),
        "auth": {"writes_need_token": state.settings.api_token is not None},
        "queue": {"size": state.settings.queue_size, "pending": state.queue.pending,
                  "cache_entries": len(state.cache)},
        "upload_formats": ["wav", "flac", "ogg", "mp3"],
        "export_tables": list(EXPORT_TABLES),
        "vocabulary": {"stacks": list(STACKS), "components": list(COMPONENTS), "tasks": list(TASKS),
                       "set_kinds": list(SET_KINDS), "statistics": list(STATISTICS), "sample_rate": SAMPLE_RATE,
                       "spec_version": SPEC_VERSION},
    }
