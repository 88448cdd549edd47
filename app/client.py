"""Typed HTTP client of the Neuron Atlas backend: the only way the dashboard reaches data, the model and findings.

Every failure becomes a `BackendError` whose `message` is plain words fit to show next to the control that caused it
(the backend's own message for 4xx/5xx answers, a sentence about reachability for network failures), never a stack
trace. Responses of run-scoped read endpoints are immutable for a run id, so they are cached (bounded LRU with a TTL).
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict
from urllib.parse import quote

import httpx
from cachetools import TTLCache

Stack = Literal["speech_encoder", "text_encoder", "text_decoder"]
Role = Literal["representation", "control"]

#: Stacks in the order the model runs them.
STACKS: tuple[str, ...] = ("speech_encoder", "text_encoder", "text_decoder")
#: Components of a unit site (see docs/store.md, table `sites`).
COMPONENTS: tuple[str, ...] = ("self-attn", "cross-attn", "ffn", "conv", "norm", "adapter")
#: Tasks a run can record.
TASKS: tuple[str, ...] = ("asr", "s2tt", "t2tt", "en2x_s2tt", "en2x_t2tt")
#: Unit-set kinds of a concept (the store keeps top, bottom and both; specs may also ask for a seeded random set).
SET_KINDS: tuple[str, ...] = ("top", "bottom", "both", "random")
#: Per-unit statistics an intervention can write.
STATISTICS: tuple[str, ...] = ("on_p50", "on_p90", "off_mean", "off_p50")
#: These copies of the engine's vocabulary must equal what the backend reports in `/capabilities` (`vocabulary`);
#: tests/app/test_constants.py checks them.
VOCABULARY: dict[str, tuple] = {"stacks": STACKS, "components": COMPONENTS, "tasks": TASKS, "set_kinds": SET_KINDS,
                                "statistics": STATISTICS}


class RunSummary(TypedDict, total=False):
    run_id: str
    name: str
    created_at: str
    model_spec: str
    model_checksum: str
    mode: str
    tasks: list[str]
    steps: list[int]
    languages: list[str]
    corpus_source: str
    n_examples: int


class Concept(TypedDict, total=False):
    concept_id: int
    kind: str
    role: str
    task: str
    step: int
    language: str | None
    modality: str | None
    positives: int
    negatives: int
    stacks: list[str]
    description: str


class Heatmap(TypedDict, total=False):
    run_id: str
    stack: str
    component: str | None
    mode: str
    threshold: float | None
    k: int | None
    layers: list[int]
    concepts: list[Concept]
    counts: list[list[int]]
    by_component: dict[str, list[list[int]]]
    units_per_layer: list[int]
    units_per_layer_by_component: dict[str, list[int]]


class UnitPage(TypedDict, total=False):
    total: int
    limit: int
    offset: int
    units: list[dict[str, Any]]
    chance_ap: float


class InterventionResult(TypedDict, total=False):
    key: str
    cached: bool
    model: dict[str, Any]
    run_id: str | None
    input: dict[str, Any]
    tgt_lang: str
    decoding: dict[str, Any]
    spec: dict[str, Any] | None
    intervention: dict[str, Any] | None
    baseline: dict[str, Any]
    intervened: dict[str, Any]
    changed: bool
    first_difference: int | None
    diff: list[dict[str, Any]]
    timing_s: dict[str, float]


class Finding(TypedDict, total=False):
    id: str
    created_at: str
    title: str
    note: str
    state: dict[str, Any]
    spec: dict[str, Any] | None
    run_id: str | None
    model: dict[str, Any] | None
    engine_version: str


@dataclass
class BackendError(Exception):
    """A failed backend call: HTTP status (0 = no answer), a plain-words message and the offending field, if any."""

    status: int
    message: str
    field: str | None = None
    path: str = ""

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    @property
    def missing_route(self) -> bool:
        """True when the backend has no such route (an older or newer backend than this dashboard)."""
        return self.status == 404 and self.message.startswith("no route")


class BackendUnavailable(BackendError):
    """The backend could not be reached or did not answer in time."""


class _Cache:
    """Thread-safe LRU of JSON answers with a time to live (cachetools' TTLCache behind a lock)."""

    def __init__(self, entries: int, ttl_s: float):
        self.entries = entries
        self.ttl_s = ttl_s
        self._data: TTLCache | None = TTLCache(maxsize=entries, ttl=ttl_s) if entries > 0 else None
        self._lock = threading.Lock()

    def get(self, key: str) -> Any | None:
        if self._data is None:
            return None
        with self._lock:
            return self._data.get(key)

    def put(self, key: str, value: Any) -> None:
        if self._data is None:
            return
        with self._lock:
            self._data[key] = value

    def clear(self) -> None:
        if self._data is None:
            return
        with self._lock:
            self._data.clear()


def _clean_params(params: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """Query parameters without None values; lists become repeated parameters; booleans lower-case."""
    out: list[tuple[str, str]] = []
    for key, value in (params or {}).items():
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            out.append((key, str(v).lower() if isinstance(v, bool) else str(v)))
    return out


def _seg(value: str | int) -> str:
    """One URL path segment, escaped."""
    return quote(str(value), safe="")


class AtlasClient:
    """Calls the backend's HTTP API. Methods mirror the routes (see docs/api.md); all raise `BackendError`."""

    def __init__(self, base_url: str, *, timeout_s: float = 30.0, intervention_timeout_s: float = 180.0,
                 token: str | None = None, transport: httpx.BaseTransport | None = None,
                 cache_entries: int = 512, cache_ttl_s: float = 300.0,
                 forwarded_for: Callable[[], str | None] | None = None):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"backend_url: {base_url!r} is not an http(s) URL")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.intervention_timeout_s = intervention_timeout_s
        headers = {"Accept": "application/json", "User-Agent": "neuron-atlas-app"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s, headers=headers, transport=transport)
        self._cache = _Cache(cache_entries, cache_ttl_s)
        self._missing: dict[str, BackendError] = {}
        self._limits: dict[str, int] = {}
        #: Returns the X-Forwarded-For chain of the browser request being served (the backend's rate limits then count
        #: each dashboard user, not the app server), or None outside a request.
        self.forwarded_for = forwarded_for

    def close(self) -> None:
        self._http.close()

    def clear_cache(self) -> None:
        self._cache.clear()
        self._missing.clear()
        self._limits.clear()

    # ------------------------------------------------------------------------------------------------ transport

    def _error(self, response: httpx.Response, path: str) -> BackendError:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            message, field = body["error"], body.get("field")
        else:
            message, field = f"the backend answered {response.status_code} {response.reason_phrase} for {path}", None
        if response.status_code >= 500 and response.status_code not in (503, 504):
            message = f"the backend failed on {path}: {message}"
        cls = BackendUnavailable if response.status_code in (502, 503, 504) else BackendError
        return cls(response.status_code, message, field, path)

    def _send(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json_body: Any = None,
              files: Any = None, data: Any = None, timeout: float | None = None) -> httpx.Response:
        chain = self.forwarded_for() if self.forwarded_for is not None else None
        try:
            response = self._http.request(method, path, params=_clean_params(params), json=json_body, files=files,
                                          data=data, timeout=timeout or self.timeout_s,
                                          headers={"X-Forwarded-For": chain} if chain else None)
        except httpx.TimeoutException:
            raise BackendUnavailable(0, f"the backend at {self.base_url} did not answer {path} within "
                                        f"{timeout or self.timeout_s:g} s", None, path) from None
        except httpx.TransportError as exc:
            raise BackendUnavailable(0, f"the backend at {self.base_url} is not reachable ({type(exc).__name__}); "
                                        "start it with `neuron-atlas serve` or check --backend-url", None, path) from None
        if response.status_code >= 400:
            raise self._error(response, path)
        return response

    def _json(self, response: httpx.Response, path: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise BackendError(response.status_code, f"the backend sent a non-JSON answer for {path}", None, path) from None

    def get(self, path: str, params: Mapping[str, Any] | None = None, *, cache: bool = False) -> Any:
        """GET a JSON document; `cache` keeps it (for run-scoped, immutable answers)."""
        key = path + "?" + json.dumps(_clean_params(params))
        if cache:
            hit = self._cache.get(key)
            if hit is not None:
                return hit
        body = self._json(self._send("GET", path, params=params), path)
        if cache:
            self._cache.put(key, body)
        return body

    def post(self, path: str, body: Any, *, timeout: float | None = None) -> Any:
        return self._json(self._send("POST", path, json_body=body, timeout=timeout), path)

    def _run_get(self, run_id: str, tail: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.get(f"/runs/{_seg(run_id)}{tail}", params, cache=run_id != "latest")

    # ---------------------------------------------------------------------------------------------------- health

    def health(self) -> dict[str, Any]:
        return self.get("/healthz")

    def ready(self) -> dict[str, Any]:
        """The readiness document, also when not ready (503 carries the same body)."""
        try:
            response = self._http.get("/readyz", timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(0, f"the backend at {self.base_url} is not reachable ({type(exc).__name__})",
                                     None, "/readyz") from None
        if response.status_code not in (200, 503):
            raise self._error(response, "/readyz")
        return self._json(response, "/readyz")

    def capabilities(self) -> dict[str, Any]:
        return self.get("/capabilities")

    def page_limit(self) -> int:
        """The largest page size the backend accepts (asked once, then kept)."""
        if "page_limit" not in self._limits:
            try:
                self._limits["page_limit"] = int(self.capabilities()["limits"]["page_limit"])
            except (KeyError, TypeError, ValueError):
                self._limits["page_limit"] = 500
        return self._limits["page_limit"]

    # ------------------------------------------------------------------------------------------------------ runs

    def runs(self) -> list[RunSummary]:
        return self.get("/runs")["runs"]

    def resolve_run(self, run_id: str | None) -> str:
        """A concrete run id: the given one, or the newest when None, empty or `latest`."""
        if run_id and run_id != "latest":
            return run_id
        runs = self.runs()
        if not runs:
            raise BackendError(404, "the store holds no runs yet: run `neuron-atlas precompute` first", "run", "/runs")
        return runs[0]["run_id"]

    def run(self, run_id: str) -> dict[str, Any]:
        return self._run_get(run_id, "")

    def tasks(self, run_id: str) -> list[dict[str, Any]]:
        return self._run_get(run_id, "/tasks")["tasks"]

    def languages(self, run_id: str) -> list[dict[str, Any]]:
        return self._run_get(run_id, "/languages")["languages"]

    def concepts(self, run_id: str, *, kind: str | None = None, role: str | None = None, task: str | None = None,
                 step: int | None = None, language: str | None = None, modality: str | None = None,
                 page_size: int = 500) -> list[Concept]:
        """Every concept matching the filters (pages through the listing)."""
        out: list[Concept] = []
        offset = 0
        while True:
            page = self._run_get(run_id, "/concepts", {"kind": kind, "role": role, "task": task, "step": step,
                                                      "language": language, "modality": modality,
                                                      "limit": page_size, "offset": offset})
            out.extend(page["concepts"])
            offset += len(page["concepts"])
            if not page["concepts"] or offset >= page["total"]:
                return out

    def concept(self, run_id: str, concept_id: int) -> Concept:
        return self._run_get(run_id, f"/concepts/{int(concept_id)}")

    # --------------------------------------------------------------------------------------------------- figures

    def heatmap(self, run_id: str, stack: str, *, mode: str = "ap", threshold: float = 0.9, k: int | None = None,
                component: str | None = None, concept_ids: Sequence[int] | None = None, kind: str | None = None,
                role: str | None = None, task: str | None = None, step: int | None = None,
                language: str | None = None, group: str = "component") -> Heatmap:
        return self._run_get(run_id, "/heatmap", {
            "stack": stack, "mode": mode, "threshold": threshold if mode == "ap" else None, "k": k if mode != "ap" else None,
            "component": component, "concept_ids": list(concept_ids) if concept_ids else None, "kind": kind,
            "role": role, "task": task, "step": step, "language": language,
            "group": None if group == "component" else group})

    def concentration(self, run_id: str, stack: str, *, step: int | None = None, task: str | None = None,
                      metric: str = "gini") -> dict[str, Any]:
        return self._run_get(run_id, "/concentration", {"stack": stack, "step": step, "task": task, "metric": metric})

    def interventions(self, run_id: str, *, experiment: str | None = None, input_task: str | None = None,
                      language: str | None = None, step: int | None = None) -> dict[str, Any]:
        """The run's stored batch intervention conditions with their mean metrics."""
        return self._run_get(run_id, "/interventions", {"experiment": experiment, "input_task": input_task,
                                                        "language": language, "step": step})

    def concentration_units(self, run_id: str, *, stack: str, layer: int, task: str, language: str,
                            step: int | None = None, limit: int = 20, offset: int = 0) -> dict[str, Any]:
        """Units of one concentration cell ranked by mean |activation|, with each unit's share of the layer total."""
        return self._run_get(run_id, "/concentration/units", {"stack": stack, "layer": int(layer), "task": task,
                                                               "language": language, "step": step, "limit": limit,
                                                               "offset": offset})

    def overlap(self, run_id: str, *, role: str = "representation", step: int = 2, set_kind: str = "top",
                k: int | None = None, metric: str = "c_over_k") -> dict[str, Any]:
        return self._run_get(run_id, "/overlap", {"role": role, "step": step, "set_kind": set_kind, "k": k,
                                                   "metric": metric})

    def overlap_units(self, run_id: str, *, text_lang: str, speech_lang: str, role: str = "representation",
                      step: int = 2, set_kind: str = "top", k: int | None = None, limit: int = 200,
                      offset: int = 0) -> dict[str, Any]:
        return self._run_get(run_id, "/overlap/units", {
            "text_lang": text_lang, "speech_lang": speech_lang, "role": role, "step": step, "set_kind": set_kind,
            "k": k, "limit": limit, "offset": offset})

    def spearman(self, run_id: str, *, role: str = "representation", step: int = 2, scope: str = "text_decoder",
                 layer: int | None = None) -> dict[str, Any]:
        return self._run_get(run_id, "/spearman", {"role": role, "step": step, "scope": scope, "layer": layer})

    # ------------------------------------------------------------------------------------------- layers, units

    def layers(self, run_id: str) -> list[dict[str, Any]]:
        return self._run_get(run_id, "/layers")["layers"]

    def sites(self, run_id: str) -> list[dict[str, Any]]:
        return self._run_get(run_id, "/sites")["sites"]

    def layer_units(self, run_id: str, stack: str, layer: int, concept_id: int, *, sort: str = "ap",
                    order: str = "desc", component: str | None = None, site: str | None = None,
                    bounds: Mapping[str, tuple[float | None, float | None]] | None = None, limit: int = 50,
                    offset: int = 0) -> UnitPage:
        """One page of a layer's units with a concept's statistics; `bounds` maps a statistic to (min, max)."""
        params: dict[str, Any] = {"concept_id": concept_id, "sort": sort, "order": order, "component": component,
                                  "site": site, "limit": limit, "offset": offset}
        for stat, (lo, hi) in (bounds or {}).items():
            params[f"min_{stat}"] = lo
            params[f"max_{stat}"] = hi
        return self._run_get(run_id, f"/layers/{_seg(stack)}/{int(layer)}/units", params)

    def search_units(self, run_id: str, *, q: str | None = None, stack: str | None = None, layer: int | None = None,
                     component: str | None = None, concept_id: int | None = None, min_ap: float | None = None,
                     max_ap: float | None = None, limit: int = 20, offset: int = 0) -> dict[str, Any]:
        """Units by id, `site:channel`, words of a site key or filters (GET /runs/{run}/search)."""
        return self._run_get(run_id, "/search", {"q": q, "stack": stack, "layer": layer, "component": component,
                                                 "concept_id": concept_id, "min_ap": min_ap, "max_ap": max_ap,
                                                 "limit": limit, "offset": offset})

    def text_fit(self, text: str, src_lang: str) -> dict[str, Any]:
        """How far a text lies from what the loaded model handles (GET /text-fit)."""
        return self.get("/text-fit", {"text": text, "src_lang": src_lang})

    def unit(self, run_id: str, unit_id: int) -> dict[str, Any]:
        return self._run_get(run_id, f"/units/{int(unit_id)}")

    def unit_activations(self, run_id: str, unit_id: int, *, step: int | None = None, bins: int = 30) -> dict[str, Any]:
        return self._run_get(run_id, f"/units/{int(unit_id)}/activations", {"step": step, "bins": bins})

    def unit_examples(self, run_id: str, unit_id: int, *, task: str | None = None, step: int | None = None,
                      n: int = 5, offset: int = 0) -> dict[str, Any]:
        """Ranks offset..offset+n-1 from each end of the unit's pooled activation, per (task, step)."""
        return self._run_get(run_id, f"/units/{int(unit_id)}/examples", {"task": task, "step": step, "n": n,
                                                                         "offset": offset})

    def unit_trace(self, run_id: str, unit_id: int, *, example_id: str, modality: str, task: str | None = None,
                   step: int | None = None) -> dict[str, Any]:
        """A unit's activation at every position of one input (audio frames or text tokens) before pooling.

        A backend without this route is remembered (until `clear_cache`), so pages do not ask it again and again.
        """
        if "trace" in self._missing:
            raise self._missing["trace"]
        try:
            return self._run_get(run_id, f"/units/{int(unit_id)}/trace", {
                "example_id": example_id, "modality": modality, "task": task, "step": step})
        except BackendError as exc:
            if exc.missing_route:
                self._missing["trace"] = exc
            raise

    def unit_traces(self, run_id: str, unit_id: int, items: Sequence[Mapping[str, Any]], *,
                    step: int | None = None) -> dict[str, Any]:
        """The trace of several items (`example_id`, `task`, optional `tgt_lang`) in one request and one model job.

        A backend without this route is remembered (until `clear_cache`), as for `unit_trace`.
        """
        if "traces" in self._missing:
            raise self._missing["traces"]
        path = f"/runs/{_seg(run_id)}/units/{int(unit_id)}/traces"
        try:
            return self.post(path, {"items": [dict(i) for i in items], "step": step},
                             timeout=self.intervention_timeout_s)
        except BackendError as exc:
            if exc.missing_route or exc.status == 405:
                self._missing["traces"] = exc
            raise

    # --------------------------------------------------------------------------------------------------- compare

    def compare(self, run_a: str, run_b: str, *, step_a: int | None = None, step_b: int | None = None,
                kind: str | None = None, task: str | None = None, stack: str | None = None,
                threshold: float = 0.9) -> dict[str, Any]:
        """Two runs side by side: common sites, matched concepts, selective-unit counts per layer (see GET /compare)."""
        return self.get("/compare", {"run_a": run_a, "run_b": run_b, "step_a": step_a, "step_b": step_b, "kind": kind,
                                     "task": task, "stack": stack, "threshold": threshold},
                        cache="latest" not in (run_a, run_b))

    def compare_concept(self, run_a: str, run_b: str, concept_id: int, *, step_b: int | None = None,
                        stack: str | None = None, k: int | None = None, n_moved: int = 20) -> dict[str, Any]:
        """One concept of run A against its counterpart in run B: AP scatter, rho, top-k overlap, movers."""
        return self.get("/compare/concept", {"run_a": run_a, "run_b": run_b, "concept_id": int(concept_id),
                                             "step_b": step_b, "stack": stack, "k": k, "n_moved": n_moved},
                        cache="latest" not in (run_a, run_b))

    # -------------------------------------------------------------------------------------------------- examples

    def examples(self, run_id: str, *, lang: str | None = None, has_audio: bool | None = None,
                 sentence_id: str | None = None, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        return self._run_get(run_id, "/examples", {"lang": lang, "has_audio": has_audio, "sentence_id": sentence_id,
                                                    "limit": limit, "offset": offset})

    def example(self, run_id: str, example_id: str) -> dict[str, Any]:
        return self._run_get(run_id, f"/examples/{quote(example_id, safe=':')}")

    def example_audio(self, run_id: str, example_id: str) -> bytes:
        """An example's audio as WAV bytes."""
        path = f"/runs/{_seg(run_id)}/audio/{quote(example_id, safe=':')}"
        return self._send("GET", path).content

    # --------------------------------------------------------------------------------------------- interventions

    def intervene(self, request: Mapping[str, Any]) -> InterventionResult:
        """Baseline and intervened generation for a corpus example or a text (see InterventionRequest)."""
        return self.post("/interventions", dict(request), timeout=self.intervention_timeout_s)

    def bridge(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Each output token's cross-attention over a speech example's frames (see BridgeRequest)."""
        return self.post("/bridge", dict(request), timeout=self.intervention_timeout_s)

    def intervene_upload(self, audio: bytes, filename: str, content_type: str, options: Mapping[str, Any]) -> InterventionResult:
        """The same for an uploaded audio file (WAV, FLAC, OGG, MP3) sent as multipart form data."""
        path = "/interventions/upload"
        response = self._send("POST", path, files={"file": (filename, audio, content_type)},
                              data={"options": json.dumps(dict(options))}, timeout=self.intervention_timeout_s)
        return self._json(response, path)

    def upload_audio(self, audio: bytes, filename: str, content_type: str) -> dict[str, Any]:
        """Send a recording once (POST /audio): {audio_id, duration_s, sample_rate, sha256, filename}; the id is the
        input of every live request (`audio_id`)."""
        response = self._send("POST", "/audio", files={"file": (filename, audio, content_type)},
                              timeout=self.intervention_timeout_s)
        return self._json(response, "/audio")

    def audio_info(self, audio_id: str) -> dict[str, Any]:
        """What the backend still holds of an uploaded recording (404 once it expired or was evicted)."""
        return self.get(f"/audio/{_seg(audio_id)}")

    def uploaded_audio(self, audio_id: str) -> bytes:
        """An uploaded recording as the model hears it: 16 kHz mono WAV bytes."""
        return self._send("GET", f"/audio/{_seg(audio_id)}/wav").content

    def attribute(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """One output token's units ranked by estimated effect, the top ones verified by forcing (see POST /attribution)."""
        return self.post("/attribution", dict(request), timeout=self.intervention_timeout_s)

    def submit_sweep(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Queue a k sweep (several inputs, seeded random controls) as one job: {job_id, state, status_url}."""
        return self.post("/jobs/sweep", dict(request))

    def job(self, job_id: str) -> dict[str, Any]:
        """A job's state, progress and, once done, its result."""
        return self.get(f"/jobs/{_seg(job_id)}")

    def activations(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """What fires on an input: the top units per stack and layer, scored against the run's corpus."""
        return self.post("/activations", dict(request), timeout=self.intervention_timeout_s)

    # -------------------------------------------------------------------------------------------------- findings

    def findings(self, *, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        return self.get("/findings", {"limit": limit, "offset": offset})

    def finding(self, finding_id: str) -> Finding:
        return self.get(f"/findings/{_seg(finding_id)}")

    def create_finding(self, title: str, note: str, state: Mapping[str, Any], *, spec: Mapping[str, Any] | None = None,
                       run_id: str | None = None) -> Finding:
        body = {"title": title, "note": note, "state": dict(state), "spec": dict(spec) if spec else None, "run_id": run_id}
        return self.post("/findings", body)

    def update_finding(self, finding_id: str, *, title: str | None = None, note: str | None = None) -> Finding:
        """A finding with a new title and/or note (needs the write token when the backend has one)."""
        path = f"/findings/{_seg(finding_id)}"
        body = {k: v for k, v in (("title", title), ("note", note)) if v is not None}
        return self._json(self._send("PATCH", path, json_body=body), path)

    def delete_finding(self, finding_id: str) -> None:
        """Delete a finding for good (needs the write token when the backend has one)."""
        self._send("DELETE", f"/findings/{_seg(finding_id)}")
