"""The FastAPI app factory and the state it serves: read-only store, findings database, hosted model, work queue.

`create_app(settings)` opens the store read-only (refusing an incompatible one with both versions named), opens the
findings database, and starts loading the model in the background. Every response carries the engine and store
versions in `X-Neuron-Atlas-Engine` / `X-Neuron-Atlas-Store`.
"""
from __future__ import annotations

import json
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.api.errors import install_error_handlers
from backend.api.routers import (attribution, audio, bridge, compare, concentration, data, export, findings, health,
                                 interventions, jobs, search, text_fit, traces, uploaded_audio)
from backend.api.settings import Settings
from backend.api.state import AtlasState
from neuron_atlas.engine.model.loading import ModelBundle
from neuron_atlas.engine.versions import ENGINE_VERSION


ENGINE_HEADER = "X-Neuron-Atlas-Engine"
#: Room for the multipart envelope and the options field on top of the audio upload limit (`/upload` routes, POST /audio).
UPLOAD_OVERHEAD_BYTES = 1_000_000
STORE_HEADER = "X-Neuron-Atlas-Store"

TAGS = [
    {"name": "health", "description": "liveness, readiness and what this server can do"},
    {"name": "data", "description": "runs, concepts, heatmaps, layers, units and examples of the analysis store"},
    {"name": "units", "description": "live unit traces and concentration rankings"},
    {"name": "audio", "description": "example audio from the store, by example id; uploaded recordings by audio id"},
    {"name": "interventions", "description": "live interventions on the loaded model"},
    {"name": "jobs", "description": "interventions submitted as pollable jobs"},
    {"name": "findings", "description": "saved findings (permalinks)"},
    {"name": "export", "description": "analysis tables as Parquet"},
    {"name": "search", "description": "find units by id, site key or filters"},
    {"name": "compare", "description": "two runs side by side: common sites, per-layer counts, one concept's APs"},
    {"name": "bridge", "description": "which frames of a speech input each output token read (cross-attention)"},
]


class Envelope:
    """Pure ASGI middleware around every HTTP request: body-size limits (JSON bodies, and uploads on `/upload`
    routes), answered with the API's JSON 413 naming the limit; and the engine and store versions stamped on every
    response. An oversized body is cut off as a client disconnect, and whatever the app answers is replaced."""

    def __init__(self, app: ASGIApp, state_of):
        self.app = app
        self.state_of = state_of

    def limit_for(self, state: AtlasState, path: str) -> int:
        if path.endswith("/upload") or path == "/audio":
            return state.settings.max_upload_bytes + UPLOAD_OVERHEAD_BYTES
        return state.settings.max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = self.state_of()
        store = (state.store_version() if state is not None else None) or "none"
        versions = [(ENGINE_HEADER.lower().encode(), ENGINE_VERSION.encode()), (STORE_HEADER.lower().encode(), store.encode())]
        limit = self.limit_for(state, scope.get("path", "")) if state is not None else None
        declared = dict(scope.get("headers", [])).get(b"content-length")
        too_large = False
        received = 0
        replaced = False

        async def send_too_large() -> None:
            body = json.dumps({
                "error": f"request body too large: the limit for {scope.get('path', '')} is {limit:,} bytes", "status": 413,
                "field": None, "engine_version": ENGINE_VERSION, "store_version": None if store == "none" else store,
            }).encode()
            await send({"type": "http.response.start", "status": 413, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close"),
                *versions]})
            await send({"type": "http.response.body", "body": body})

        if limit is not None and declared is not None and declared.isdigit() and int(declared) > limit:
            await send_too_large()
            return

        async def limited_receive() -> Message:
            nonlocal too_large, received
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request" and limit is not None:
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def stamped(message: Message) -> None:
            nonlocal replaced
            if too_large:
                if not replaced:
                    replaced = True
                    await send_too_large()
                return
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *versions]}
            await send(message)

        await self.app(scope, limited_receive, stamped)


def create_app(settings: Settings | None = None, bundle: ModelBundle | None = None) -> FastAPI:
    """Build the app. `bundle` adopts an already loaded model (tests, notebooks) instead of loading `settings.model`.

    Raises StoreVersionError when the store was written by an incompatible schema version.
    """
    settings = settings or Settings()
    state = AtlasState(settings, bundle)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.host.start()
        try:
            yield
        finally:
            state.close()

    app = FastAPI(
        title="Neuron Atlas API",
        version=ENGINE_VERSION,
        summary="Neuron-level language and modality analyses of SeamlessM4T v2, and live interventions.",
        description="Every response carries `X-Neuron-Atlas-Engine` and `X-Neuron-Atlas-Store` headers. Errors are JSON "
                    "`{error, status, field, engine_version, store_version}`. See docs/api.md for a guide.",
        openapi_tags=TAGS,
        lifespan=lifespan,
    )
    app.state.atlas = state
    install_error_handlers(app)
    for module in (health, data, concentration, traces, audio, uploaded_audio, interventions, jobs, findings, export,
                   compare, search, text_fit, bridge, attribution):
        app.include_router(module.router)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "X-API-Token"],
                           expose_headers=[ENGINE_HEADER, STORE_HEADER, "Retry-After"])
    app.add_middleware(Envelope, state_of=lambda: getattr(app.state, "atlas", None))
    return app
