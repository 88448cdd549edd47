"""Request dependencies: the shared state, the read-only store, write authorisation, rate limits, content types."""
from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from fastapi import Depends, Query, Request

from backend.api.state import AtlasState
from backend.api.errors import ApiProblem
from backend.queue import TokenBuckets
from backend.store.reader import StoreReader

#: Largest value accepted for integer query and path parameters (DuckDB INTEGER range).
INT_MAX = 2**31 - 1


def get_state(request: Request) -> AtlasState:
    return request.app.state.atlas


def get_reader(state: AtlasState = Depends(get_state)) -> StoreReader:
    return state.reader()


def require_write_token(request: Request, state: AtlasState = Depends(get_state)) -> None:
    """When an API token is configured, writes and bulk exports need `Authorization: Bearer <token>` (or
    `X-API-Token: <token>`)."""
    token = state.settings.api_token
    if token is None:
        return
    given = request.headers.get("x-api-token")
    auth = request.headers.get("authorization", "")
    if given is None and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    if given is None:
        raise ApiProblem(401, "this server requires an API token for writes: send `Authorization: Bearer <token>`",
                         headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise ApiProblem(403, "the API token is not valid for this server")


def client_key(request: Request, state: AtlasState) -> str:
    """The client a request is counted against: the direct peer, or, when that peer is a trusted proxy (the
    dashboard's server), the nearest untrusted address in its X-Forwarded-For chain."""
    peer = request.client.host if request.client is not None else None
    if not state.settings.is_trusted_proxy(peer):
        return peer or "unknown"
    chain = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for host in reversed(chain):
        if not state.settings.is_trusted_proxy(host):
            return host
    return chain[0] if chain else (peer or "unknown")


def _charge_for(request: Request, state: AtlasState, buckets: TokenBuckets, what: str, burst: float,
                per_s: float) -> Callable[[], None]:
    """A client's rate-limit charge against `buckets`. A client with an empty bucket is refused (429, Retry-After)
    here, before any work; otherwise the route calls the charge once the request has passed validation, so a refused
    request costs no token."""
    client = client_key(request, state)

    def refuse_without_token(spend: bool) -> None:
        allowed, wait = buckets.take(client, spend=spend)
        if not allowed:
            raise ApiProblem(429, f"too many {what} requests from this client; retry in {wait} s "
                                  f"(limit: {burst:g} at once, {per_s:g} per second)",
                             headers={"Retry-After": str(wait)})

    refuse_without_token(spend=False)

    def charge() -> None:
        """Spend one token of the client's bucket (429 when another request took the last one meanwhile)."""
        refuse_without_token(spend=True)

    return charge


def rate_limit(request: Request, state: AtlasState = Depends(get_state)) -> Callable[[], None]:
    """The client's charge for a live model request (interventions, jobs, traces)."""
    s = state.settings
    return _charge_for(request, state, state.buckets, "intervention", s.rate_burst, s.rate_per_s)


def export_rate_limit(request: Request, state: AtlasState = Depends(get_state)) -> Callable[[], None]:
    """The client's charge for a bulk export (a table can be hundreds of millions of rows)."""
    s = state.settings
    return _charge_for(request, state, state.export_buckets, "export", s.export_burst, s.export_per_s)


def limit_query(default: int) -> Any:
    """A page-size query parameter with no fixed maximum: sizes above the server's page limit are refused, with one
    message, by `check_page_limit` (the limit is a setting, so it cannot be a bound of the OpenAPI schema)."""
    return Query(default, ge=1, description="page size: at most this server's page_limit (500 by default; see GET /capabilities)")


def check_page_limit(state: AtlasState, limit: int) -> int:
    """The requested page size, refused (422 naming `limit` and the server's page limit) when above `page_limit`."""
    if limit > state.settings.page_limit:
        raise ApiProblem(422, f"query parameter limit: {limit} is above the page limit of {state.settings.page_limit}", "limit")
    return limit


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def json_body(request: Request) -> None:
    """415 unless the request body is declared as JSON."""
    media = _media_type(request)
    if media != "application/json" and not media.endswith("+json"):
        raise ApiProblem(415, f"content type {media or '(none)'!r} is not accepted here; send the body as application/json")


def multipart_body(request: Request) -> None:
    """415 unless the request is a multipart form (file upload)."""
    media = _media_type(request)
    if media != "multipart/form-data":
        raise ApiProblem(415, f"content type {media or '(none)'!r} is not accepted here; upload the audio as multipart/form-data")
