"""HTTP routers, one module per area: health, data, audio, interventions, jobs, findings, export."""
from __future__ import annotations

from backend.api.schemas import ErrorBody

_DESCRIPTIONS = {
    400: "malformed request",
    401: "an API token is required",
    403: "the API token is not valid",
    404: "the run, concept, unit, example, job or finding does not exist",
    409: "the request conflicts with the server's state (e.g. a run of another model)",
    413: "request body too large",
    415: "wrong content type",
    422: "a parameter or body field is invalid (the message names it)",
    429: "too many requests from this client (see Retry-After)",
    503: "not ready: no store, model loading, or queue full (see Retry-After)",
    504: "the request timed out",
}


def errors(*codes: int) -> dict:
    """OpenAPI `responses` entries for the given error statuses (all share the ErrorBody shape)."""
    return {code: {"model": ErrorBody, "description": _DESCRIPTIONS[code]} for code in codes}
