"""The HTTP client against a scripted transport: requests it sends, errors it raises, what it caches."""
from __future__ import annotations

import json
import time

import httpx
import pytest

from app.client import AtlasClient, BackendError, BackendUnavailable


class Recorder:
    """An httpx MockTransport handler that records requests and answers from a routing function."""

    def __init__(self, route):
        self.route = route
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.route(request)


def client_with(route, **kw) -> tuple[AtlasClient, Recorder]:
    rec = Recorder(route)
    return AtlasClient("http://backend.test:8000/", transport=httpx.MockTransport(rec), **kw), rec


def test_rejects_a_non_http_backend_url():
    with pytest.raises(ValueError, match="backend_url: 'localhost:8000' is not an http"):
        AtlasClient("localhost:8000")


def test_query_parameters_drop_none_repeat_lists_and_lowercase_booleans():
    c, rec = client_with(lambda r: httpx.Response(200, json={"ok": True}))
    c.heatmap("run-1", "text_decoder", mode="top", k=5, concept_ids=[3, 4], task="s2tt", threshold=0.9)
    c.examples("run-1", has_audio=True, lang=None)
    first, second = rec.requests
    assert first.url.path == "/runs/run-1/heatmap"
    assert first.url.params.multi_items() == [("stack", "text_decoder"), ("mode", "top"), ("k", "5"),
                                              ("concept_ids", "3"), ("concept_ids", "4"), ("task", "s2tt")]
    assert second.url.params.multi_items() == [("has_audio", "true"), ("limit", "50"), ("offset", "0")]


def test_paths_escape_run_and_example_ids():
    c, rec = client_with(lambda r: httpx.Response(200, json={}))
    c.example("run/with slash", "builtin:s000:fra:fra-m1")
    assert rec.requests[0].url.raw_path == b"/runs/run%2Fwith%20slash/examples/builtin:s000:fra:fra-m1"


def test_backend_errors_keep_the_message_and_field():
    body = {"error": "k: run r stored selections of k in 5, 10, not 7", "status": 422, "field": "k",
            "engine_version": "0.1.0", "store_version": "1.0"}
    c, _ = client_with(lambda r: httpx.Response(422, json=body))
    with pytest.raises(BackendError) as info:
        c.heatmap("r", "text_decoder", mode="top", k=7)
    err = info.value
    assert (err.status, err.field, err.message) == (422, "k", body["error"])
    assert str(err) == body["error"] and err.path == "/runs/r/heatmap" and not err.missing_route


def test_unknown_routes_are_recognisable():
    body = {"error": "no route GET /runs/r/units/1/trace; see /docs for the API", "status": 404, "field": None}
    c, rec = client_with(lambda r: httpx.Response(404, json=body))
    for _ in range(3):
        with pytest.raises(BackendError) as info:
            c.unit_trace("r", 1, example_id="e", modality="speech")
        assert info.value.missing_route
    assert len(rec.requests) == 1
    c.clear_cache()
    with pytest.raises(BackendError):
        c.unit_trace("r", 1, example_id="e", modality="speech")
    assert len(rec.requests) == 2


def test_unavailable_and_internal_errors_read_as_plain_words():
    c, _ = client_with(lambda r: httpx.Response(503, json={"error": "the model 'demo' is still loading; retry shortly",
                                                           "status": 503, "field": None}))
    with pytest.raises(BackendUnavailable, match="still loading"):
        c.runs()
    c, _ = client_with(lambda r: httpx.Response(500, text="<html>boom</html>"))
    with pytest.raises(BackendError) as info:
        c.runs()
    assert info.value.message == "the backend failed on /runs: the backend answered 500 Internal Server Error for /runs"
    assert not isinstance(info.value, BackendUnavailable)


def test_connection_failures_and_timeouts_become_backend_unavailable():
    def refuse(request):
        raise httpx.ConnectError("connection refused", request=request)

    c, _ = client_with(refuse)
    with pytest.raises(BackendUnavailable) as info:
        c.runs()
    assert info.value.status == 0
    assert "http://backend.test:8000 is not reachable (ConnectError)" in info.value.message
    assert "neuron-atlas serve" in info.value.message

    def slow(request):
        raise httpx.ReadTimeout("too slow", request=request)

    c, _ = client_with(slow, timeout_s=1.5)
    with pytest.raises(BackendUnavailable, match="did not answer /runs within 1.5 s"):
        c.runs()


def test_run_scoped_answers_are_cached_but_latest_and_listings_are_not():
    c, rec = client_with(lambda r: httpx.Response(200, json={"run_id": "r", "runs": []}))
    c.run("r")
    c.run("r")
    c.run("latest")
    c.run("latest")
    c.runs()
    c.runs()
    paths = [r.url.path for r in rec.requests]
    assert paths == ["/runs/r", "/runs/latest", "/runs/latest", "/runs", "/runs"]
    c.clear_cache()
    c.run("r")
    assert len(rec.requests) == 6


def test_cache_entries_expire():
    c, rec = client_with(lambda r: httpx.Response(200, json={"run_id": "r"}), cache_ttl_s=0.05)
    c.run("r")
    time.sleep(0.1)
    c.run("r")
    assert len(rec.requests) == 2


def test_resolve_run_uses_the_newest_or_says_there_is_none():
    c, rec = client_with(lambda r: httpx.Response(200, json={"runs": [{"run_id": "new"}, {"run_id": "old"}]}))
    assert c.resolve_run(None) == c.resolve_run("latest") == "new"
    assert c.resolve_run("old") == "old"
    c, _ = client_with(lambda r: httpx.Response(200, json={"runs": []}))
    with pytest.raises(BackendError, match="holds no runs yet"):
        c.resolve_run(None)


def test_concepts_pages_through_the_listing():
    concepts = [{"concept_id": i} for i in range(5)]

    def route(request):
        offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
        return httpx.Response(200, json={"total": 5, "concepts": concepts[offset: offset + limit]})

    c, rec = client_with(route)
    assert [x["concept_id"] for x in c.concepts("r", page_size=2)] == [0, 1, 2, 3, 4]
    assert [r.url.params["offset"] for r in rec.requests] == ["0", "2", "4"]


def test_ready_returns_the_body_also_when_not_ready():
    c, _ = client_with(lambda r: httpx.Response(503, json={"ready": False, "error": "not ready: model: loading"}))
    assert c.ready() == {"ready": False, "error": "not ready: model: loading"}


def test_intervene_posts_json_and_upload_posts_multipart():
    def route(request):
        return httpx.Response(200, json={"key": "k", "ct": request.headers["content-type"], "body": request.content.decode("latin-1")})

    c, rec = client_with(route)
    out = c.intervene({"text": "Hallo", "src_lang": "deu", "tgt_lang": "eng"})
    assert out["ct"] == "application/json" and json.loads(out["body"]) == {"text": "Hallo", "src_lang": "deu", "tgt_lang": "eng"}
    out = c.intervene_upload(b"RIFFxxxx", "a.wav", "audio/wav", {"tgt_lang": "eng", "spec": None})
    assert out["ct"].startswith("multipart/form-data; boundary=")
    assert 'name="file"; filename="a.wav"' in out["body"] and "Content-Type: audio/wav" in out["body"]
    assert '{"tgt_lang": "eng", "spec": null}' in out["body"]
    assert [r.url.path for r in rec.requests] == ["/interventions", "/interventions/upload"]


def test_token_is_sent_as_bearer():
    c, rec = client_with(lambda r: httpx.Response(201, json={"id": "abcd2345"}), token="s3cret")
    c.create_finding("t", "n", {"page": "lab"})
    assert rec.requests[0].headers["authorization"] == "Bearer s3cret"
    assert json.loads(rec.requests[0].content) == {"title": "t", "note": "n", "state": {"page": "lab"}, "spec": None,
                                                   "run_id": None}


def test_example_audio_returns_bytes():
    c, rec = client_with(lambda r: httpx.Response(200, content=b"RIFF....WAVE", headers={"content-type": "audio/wav"}))
    assert c.example_audio("r", "builtin:s000:deu:deu-m1") == b"RIFF....WAVE"
    assert rec.requests[0].url.path == "/runs/r/audio/builtin:s000:deu:deu-m1"


def test_page_limit_is_asked_once():
    c, rec = client_with(lambda r: httpx.Response(200, json={"limits": {"page_limit": 250}}))
    assert c.page_limit() == 250 and c.page_limit() == 250
    assert [r.url.path for r in rec.requests] == ["/capabilities"]


def test_forwards_the_browser_chain_so_the_backend_counts_each_user():
    from app.main import browser_chain, create_app

    c, rec = client_with(lambda r: httpx.Response(200, json={"ok": True}))
    dash_app = create_app("http://backend.test:8000", client=c)
    assert c.forwarded_for is browser_chain
    c.health()
    with dash_app.server.test_request_context("/", environ_base={"REMOTE_ADDR": "10.1.2.3"},
                                              headers={"X-Forwarded-For": "6.6.6.6"}):
        assert browser_chain() == "6.6.6.6, 10.1.2.3"
        c.capabilities()
    assert "x-forwarded-for" not in rec.requests[0].headers, "no browser request, no header"
    assert rec.requests[1].headers["x-forwarded-for"] == "6.6.6.6, 10.1.2.3"
