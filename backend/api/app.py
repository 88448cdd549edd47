"""The FastAPI app factory and the state it serves: read-only store, findings database, hosted model, work queue.

`create_app(settings)` opens the store read-only (refusing an incompatible one with both versions named), opens the
findings database, and starts loading the model in the background. Every response carries the engine and store
versions in `X-Neuron-Atlas-Engine` / `X-Neuron-Atlas-Store`.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.api.errors import ApiProblem, install_error_handlers, problem_of
from backend.api.live import InterventionService, ModelHost, Prepared, result_size
from backend.api.settings import Settings
from backend.findings import FindingsStore
from backend.model.loading import ModelBundle
from backend.queue import Job, JobFailed, QueueFull, ResultCache, TokenBuckets, WorkQueue
from backend.store.reader import StoreReader, StoreUnavailable
from neuron_atlas.versions import ENGINE_VERSION

log = logging.getLogger("backend.api")

ENGINE_HEADER = "X-Neuron-Atlas-Engine"
#: Room for the multipart envelope and the options field on top of the audio upload limit (`/upload` routes).
UPLOAD_OVERHEAD_BYTES = 1_000_000
STORE_HEADER = "X-Neuron-Atlas-Store"

TAGS = [
    {"name": "health", "description": "liveness, readiness and what this server can do"},
    {"name": "data", "description": "runs, concepts, heatmaps, layers, units and examples of the analysis store"},
    {"name": "units", "description": "live unit traces and concentration rankings"},
    {"name": "audio", "description": "example audio from the store, by example id"},
    {"name": "interventions", "description": "live interventions on the loaded model"},
    {"name": "jobs", "description": "interventions submitted as pollable jobs"},
    {"name": "findings", "description": "saved findings (permalinks)"},
    {"name": "export", "description": "analysis tables as Parquet"},
    {"name": "compare", "description": "two runs side by side: common sites, per-layer counts, one concept's APs"},
]


class AtlasState:
    """Everything the routes share. The store may be missing at start (it is reopened when it appears)."""

    def __init__(self, settings: Settings, bundle: ModelBundle | None = None):
        self.settings = settings
        self._reader: StoreReader | None = None
        self._reader_lock = threading.Lock()
        self._last_try = 0.0
        self.store_error: str | None = None
        try:
            self._reader = StoreReader(settings.store, warm=settings.warm_store)
        except StoreUnavailable as exc:
            self.store_error = str(exc)
            log.warning("%s", exc)
        self.findings = FindingsStore(settings.findings_db)
        self.host = ModelHost(settings, bundle)
        self.service = InterventionService(settings, self.host, self.reader_or_none)
        self.queue = WorkQueue(settings.queue_size, ready=self.host.ready, error_of=self._job_error)
        self.cache = ResultCache(settings.cache_entries, settings.cache_bytes)
        self.buckets = TokenBuckets(settings.rate_burst, settings.rate_per_s)
        self.export_buckets = TokenBuckets(settings.export_burst, settings.export_per_s)
        self.started_at = time.time()

    # ------------------------------------------------------------------------------------------------ store

    def reader_or_none(self) -> StoreReader | None:
        """The open store, trying again (at most once a second) when none could be opened before."""
        if self._reader is not None:
            return self._reader
        with self._reader_lock:
            if self._reader is None and time.monotonic() - self._last_try > 1.0:
                self._last_try = time.monotonic()
                try:
                    self._reader = StoreReader(self.settings.store, warm=self.settings.warm_store)
                    self.store_error = None
                except StoreUnavailable as exc:
                    self.store_error = str(exc)
        return self._reader

    def reader(self) -> StoreReader:
        reader = self.reader_or_none()
        if reader is None:
            raise ApiProblem(503, self.store_error or f"no store at {self.settings.store}", headers={"Retry-After": "30"})
        return reader

    def store_version(self) -> str | None:
        return self._reader.version if self._reader is not None else None

    # ------------------------------------------------------------------------------------------------- jobs

    @staticmethod
    def _job_error(exc: BaseException) -> JobFailed:
        problem = problem_of(exc)
        if problem is not None:
            return JobFailed(problem.status, problem.message)
        log.error("intervention job failed", exc_info=exc)
        return JobFailed(500, f"internal error while generating ({type(exc).__name__}); the server log has the details")

    def run_prepared(self, prepared: Prepared, job: Job) -> dict[str, Any]:
        """Worker-side: generate, cache and return the result of a prepared request."""
        result = self.service.execute(prepared, job)
        result["store_version"] = self.store_version()
        self.cache.put(prepared.key, result, result_size(result))
        return result

    def cached(self, key: str) -> dict[str, Any] | None:
        hit = self.cache.get(key)
        if hit is None:
            return None
        return {**hit, "cached": True}

    def submit(self, prepared: Prepared) -> Job:
        return self.queue.submit(prepared.key, lambda job: self.run_prepared(prepared, job))

    async def run_sync(self, prepared: Prepared) -> dict[str, Any]:
        """Answer from the cache, or queue the request and wait for it (up to the request timeout)."""
        hit = self.cached(prepared.key)
        if hit is not None:
            return hit
        try:
            job = self.submit(prepared)
        except QueueFull as exc:
            raise ApiProblem(503, str(exc), headers={"Retry-After": str(exc.retry_after)}) from None
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def _notify(_job: Job) -> None:
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

        job.attach()
        job.add_done_callback(_notify)
        try:
            await asyncio.wait_for(asyncio.shield(done), timeout=self.settings.request_timeout_s)
        except asyncio.TimeoutError:
            job.detach()
            if self.queue.cancel(job):
                raise ApiProblem(504, f"the request waited {self.settings.request_timeout_s:g} s in the queue and was dropped; "
                                      "retry later or submit it to /jobs", headers={"Retry-After": str(self.queue.retry_after())}) from None
            job.persistent = True
            raise ApiProblem(504, f"the request is still running after {self.settings.request_timeout_s:g} s; poll "
                                  f"/jobs/{job.id} for its result") from None
        except BaseException:
            job.detach()
            self.queue.cancel(job)
            raise
        job.detach()
        if job.error is not None:
            raise ApiProblem(job.error.status, str(job.error))
        return job.result

    def close(self) -> None:
        self.queue.shutdown()
        self.findings.close()
        if self._reader is not None:
            self._reader.close()


class Envelope:
    """Pure ASGI middleware around every HTTP request: body-size limits (JSON bodies, and uploads on `/upload`
    routes), answered with the API's JSON 413 naming the limit; and the engine and store versions stamped on every
    response. An oversized body is cut off as a client disconnect, and whatever the app answers is replaced."""

    def __init__(self, app: ASGIApp, state_of):
        self.app = app
        self.state_of = state_of

    def limit_for(self, state: AtlasState, path: str) -> int:
        if path.endswith("/upload"):
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
    from backend.api.routers import audio, compare, concentration, data, export, findings, health, interventions, jobs, traces

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
    for module in (health, data, concentration, traces, audio, interventions, jobs, findings, export, compare):
        app.include_router(module.router)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "X-API-Token"],
                           expose_headers=[ENGINE_HEADER, STORE_HEADER, "Retry-After"])
    app.add_middleware(Envelope, state_of=lambda: getattr(app.state, "atlas", None))
    return app
