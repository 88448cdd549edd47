"""Bounded work queue with one worker thread, pollable jobs, a result cache and per-client token buckets.

Live interventions share one model, so they run one at a time on a single worker thread (hooks live on the shared
model). The queue is bounded: when `maxsize` jobs are waiting or running, `submit` raises `QueueFull` with a
suggested Retry-After. Identical requests (same cache key) in flight share one job, and finished results are kept
in an LRU cache bounded by entries and bytes, so a repeat is answered without touching the model.
"""
from __future__ import annotations

import logging
import math
import queue as _queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cachetools import LRUCache

log = logging.getLogger(__name__)

#: Job states, in the order a job passes through them.
STATES = ("queued", "loading model", "running", "done", "error")


class QueueFull(RuntimeError):
    """The queue holds its maximum number of jobs; retry after `retry_after` seconds."""

    def __init__(self, size: int, retry_after: int):
        self.retry_after = retry_after
        super().__init__(f"the intervention queue is full ({size} requests waiting or running); retry in {retry_after} s")


class JobFailed(RuntimeError):
    """A job ended in the error state: `status` is the HTTP status to report, the message says why."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


@dataclass
class Job:
    """One unit of work and its lifecycle; `wait` blocks until it is done or failed."""

    id: str
    key: str
    fn: Callable[["Job"], Any] | None
    state: str = "queued"
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    result: Any = None
    error: JobFailed | None = None
    cancelled: bool = False
    waiters: int = 0
    persistent: bool = False
    #: What the job is (`intervention`, `sweep`, `activations`): pollers read `result` by it.
    kind: str = "intervention"
    #: Work done so far, for jobs of many steps (`{"done": n, "total": m, "stage": ...}`); None for one-step jobs.
    progress: dict[str, Any] | None = None
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    _callbacks: list[Callable[["Job"], None]] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def attach(self) -> None:
        """A request starts waiting for this job (a job with waiters is never cancelled)."""
        with self._lock:
            self.waiters += 1

    def detach(self) -> None:
        """A waiting request stopped waiting (answered or timed out)."""
        with self._lock:
            self.waiters -= 1

    def report(self, done: int, total: int, stage: str | None = None) -> None:
        """Record progress (called by the job's function on the worker thread; read by pollers)."""
        self.progress = {"done": int(done), "total": int(total), "stage": stage}

    def add_done_callback(self, fn: Callable[["Job"], None]) -> None:
        """Call `fn(job)` when the job finishes (at once if it already has)."""
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(fn)
                return
        fn(self)

    def _finish(self, result: Any = None, error: JobFailed | None = None) -> None:
        with self._lock:
            self.result, self.error = result, error
            self.state = "error" if error is not None else "done"
            self.finished_at = time.time()
            self._done.set()
            callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            try:
                cb(self)
            except Exception:  # a waiter that went away (closed event loop) must not stop the worker
                log.warning("a job completion callback failed", exc_info=True)


class WorkQueue:
    """`maxsize` jobs at most (waiting + running), run in order by one worker thread.

    `ready` (optional) is waited on before each job runs; while it is unset the job's state is `loading model`.
    `error_of(exc)` turns an exception raised by a job into a `JobFailed` (status and message).
    """

    def __init__(self, maxsize: int, ready: threading.Event | None = None,
                 error_of: Callable[[BaseException], JobFailed] | None = None, keep_jobs: int = 256,
                 typical_seconds: float = 2.0):
        if maxsize < 1:
            raise ValueError(f"queue size must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self.ready = ready
        self.error_of = error_of or (lambda exc: JobFailed(500, f"{type(exc).__name__}: {exc}"))
        self.keep_jobs = keep_jobs
        self._q: _queue.Queue[Job | None] = _queue.Queue()
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._in_flight: dict[str, Job] = {}
        self._pending = 0
        self._durations: list[float] = [typical_seconds]
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._run, name="intervention-worker", daemon=True)
        self._worker.start()

    @property
    def pending(self) -> int:
        """Jobs waiting or running."""
        with self._lock:
            return self._pending

    def retry_after(self) -> int:
        """Seconds a rejected client should wait: the queue's expected drain time, at least 1."""
        with self._lock:
            typical = sorted(self._durations)[len(self._durations) // 2]
            return max(1, math.ceil(typical * max(self._pending, 1)))

    def submit(self, key: str, fn: Callable[[Job], Any], kind: str = "intervention") -> Job:
        """Queue `fn` (or join the identical job already in flight); raises QueueFull when the queue is full."""
        with self._lock:
            same = self._in_flight.get(key)
            if same is not None and not same.finished and not same.cancelled:
                return same
            if self._pending >= self.maxsize:
                full = True
            else:
                full = False
                job = Job(id=uuid.uuid4().hex[:16], key=key, fn=fn, kind=kind)
                self._pending += 1
                self._in_flight[key] = job
                self._jobs[job.id] = job
                while len(self._jobs) > self.keep_jobs:
                    old_id, old = next(iter(self._jobs.items()))
                    if not old.finished:
                        break
                    self._jobs.pop(old_id)
        if full:
            raise QueueFull(self.maxsize, self.retry_after())
        if self.ready is not None and not self.ready.is_set():
            job.state = "loading model"
        self._q.put(job)
        return job

    def completed(self, key: str, result: Any, kind: str = "intervention") -> Job:
        """Register an already finished job (a request answered from the cache), pollable like any other."""
        job = Job(id=uuid.uuid4().hex[:16], key=key, fn=None, kind=kind)
        job.started_at = job.created_at
        job._finish(result=result)
        with self._lock:
            self._jobs[job.id] = job
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def position(self, job: Job) -> int | None:
        """How many jobs run before this one (0 = next or running); None once finished."""
        if job.finished:
            return None
        with self._lock:
            waiting = [j for j in self._jobs.values() if not j.finished and not j.cancelled]
        ordered = sorted(waiting, key=lambda j: j.created_at)
        return next((i for i, j in enumerate(ordered) if j.id == job.id), None)

    def cancel(self, job: Job) -> bool:
        """Drop a job nobody waits for any more that has not started yet; True when it was dropped.

        A job submitted for polling (`persistent`) or still awaited by another request is kept.
        """
        with job._lock:
            if job.state not in ("queued", "loading model") or job.persistent or job.waiters > 0:
                return False
            job.cancelled = True
        job._finish(error=JobFailed(504, "cancelled: the request timed out while waiting in the queue"))
        job.fn = None
        self._release(job)
        return True

    def _release(self, job: Job) -> None:
        with self._lock:
            self._pending = max(self._pending - 1, 0)
            if self._in_flight.get(job.key) is job:
                del self._in_flight[job.key]

    def _run(self) -> None:
        while not self._stop.is_set():
            job = self._q.get()
            if job is None:
                break
            if job.cancelled:
                continue
            if self.ready is not None and not self.ready.is_set():
                with job._lock:
                    if not job.cancelled:
                        job.state = "loading model"
                while not self.ready.wait(0.2):
                    if self._stop.is_set() or job.cancelled:
                        break
            with job._lock:
                if job.cancelled:
                    continue
                job.state = "running"
                job.started_at = time.time()
            try:
                result = job.fn(job)
            except BaseException as exc:  # a failing job must never kill the worker
                job._finish(error=exc if isinstance(exc, JobFailed) else self.error_of(exc))
            else:
                job._finish(result=result)
            job.fn = None
            with self._lock:
                self._durations.append(job.finished_at - job.started_at)
                self._durations = self._durations[-50:]
            self._release(job)

    def shutdown(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._q.put(None)
        self._worker.join(timeout)


class ResultCache:
    """Thread-safe LRU mapping cache key -> result, bounded by entries and by the byte size each entry reports."""

    def __init__(self, max_entries: int = 256, max_bytes: int = 256 * 1024 * 1024):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._data: LRUCache[str, tuple[Any, int]] = LRUCache(maxsize=max(max_bytes, 1), getsizeof=lambda item: item[1])
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Any | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                self.misses += 1
                return None
            self.hits += 1
            return item[0]

    def put(self, key: str, value: Any, size: int) -> None:
        if size > self.max_bytes or self.max_entries < 1:
            return
        with self._lock:
            self._data[key] = (value, size)
            while len(self._data) > self.max_entries:
                self._data.popitem()

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return int(self._data.currsize)


class TokenBuckets:
    """Per-client token buckets: `capacity` requests in a burst, refilled at `rate` per second."""

    def __init__(self, capacity: float, rate: float, max_clients: int = 10_000):
        if capacity < 1 or rate <= 0:
            raise ValueError(f"a token bucket needs capacity >= 1 and rate > 0, got {capacity}, {rate}")
        self.capacity = float(capacity)
        self.rate = float(rate)
        self.max_clients = max_clients
        self._buckets: LRUCache[str, tuple[float, float]] = LRUCache(maxsize=max_clients)
        self._lock = threading.Lock()

    def take(self, client: str, now: float | None = None, spend: bool = True) -> tuple[bool, int]:
        """Spend one token of `client`'s bucket (or, with `spend=False`, only look whether one is there); returns
        (allowed, seconds until a token is available)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            allowed = tokens >= 1.0
            if allowed and spend:
                tokens -= 1.0
            self._buckets[client] = (tokens, now)
        wait = 0 if allowed else max(1, math.ceil((1.0 - tokens) / self.rate))
        return allowed, wait
