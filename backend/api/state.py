"""The state every route shares: read-only store, findings database, hosted model, work queue, result cache.

Routes reach it through `backend.api.deps.get_state`; the app factory (`backend.api.app`) builds it, so routers never
import the factory.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from backend.api.errors import ApiProblem, problem_of
from backend.api.live import InterventionService, ModelHost, Prepared, result_size
from backend.api.settings import Settings
from backend.api.tracing import TraceService
from backend.findings import FindingsStore
from backend.queue import Job, JobFailed, QueueFull, ResultCache, TokenBuckets, WorkQueue
from backend.store.reader import StoreReader, StoreUnavailable
from neuron_atlas.engine.model.loading import ModelBundle

log = logging.getLogger("backend.api")

#: Worker-side computation of a prepared request (default: `InterventionService.execute`).
Executor = Callable[[Any, Job], dict[str, Any]]


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
        self.traces = TraceService(settings, self.host, self.reader_or_none, self.service.model_lock)
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

    def run_prepared(self, prepared: Prepared, job: Job, execute: Executor | None = None) -> dict[str, Any]:
        """Worker-side: generate (or run `execute`, another live computation), cache and return the result."""
        result = (execute or self.service.execute)(prepared, job)
        result["store_version"] = self.store_version()
        self.cache.put(prepared.key, result, result_size(result))
        return result

    def cached(self, key: str) -> dict[str, Any] | None:
        hit = self.cache.get(key)
        if hit is None:
            return None
        return {**hit, "cached": True}

    def submit(self, prepared: Prepared, execute: Executor | None = None) -> Job:
        return self.queue.submit(prepared.key, lambda job: self.run_prepared(prepared, job, execute))

    async def run_sync(self, prepared: Prepared, execute: Executor | None = None) -> dict[str, Any]:
        """Answer from the cache, or queue the request and wait for it (up to the request timeout). `execute` runs
        another live computation on a prepared request (anything with a `key`) instead of generation."""
        hit = self.cached(prepared.key)
        if hit is not None:
            return hit
        return await self.run_queued(prepared.key, lambda job: self.run_prepared(prepared, job, execute),
                                     "retry later or submit it to /jobs")

    async def run_queued(self, key: str, work: Callable[[Job], Any], retry_hint: str = "retry later",
                         kind: str = "intervention") -> Any:
        """Queue `work(job)` under `key` (identical work in flight shares one job) and wait for it, up to the request
        timeout: a job still waiting then is dropped (504 with `retry_hint`), one already running keeps running and
        the 504 names it."""
        try:
            job = self.queue.submit(key, work, kind)
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
                                      f"{retry_hint}", headers={"Retry-After": str(self.queue.retry_after())}) from None
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
