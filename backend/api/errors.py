"""Every error leaves the API as JSON `{error, status, field, engine_version, store_version}`: a message naming the
problem, never a stack trace. Domain exceptions map to status codes here, in one place."""
from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from neuron_atlas.engine.audio import AudioError
from backend.findings import FindingNotFound
from neuron_atlas.engine.interventions import SpecError
from neuron_atlas.engine.model.loading import ModelLoadError
from backend.queue import JobFailed, QueueFull
from backend.store.reader import NotFoundError, QueryError, StoreUnavailable
from neuron_atlas.engine.store_schema import StoreVersionError
from neuron_atlas.engine.versions import ENGINE_VERSION

log = logging.getLogger("backend.api")


class ApiProblem(Exception):
    """An error with its HTTP status, message, optional offending field and extra headers (Retry-After)."""

    def __init__(self, status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None):
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers or {}
        super().__init__(message)


def store_version_of(request: Request) -> str | None:
    state = getattr(request.app.state, "atlas", None)
    return state.store_version() if state is not None else None


def error_response(request: Request, status: int, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": message, "status": status, "field": field, "engine_version": ENGINE_VERSION,
            "store_version": store_version_of(request)}
    return JSONResponse(body, status_code=status, headers=headers)


def problem_of(exc: BaseException) -> ApiProblem | None:
    """The API problem a domain exception stands for, or None for an unexpected error."""
    if isinstance(exc, ApiProblem):
        return exc
    if isinstance(exc, SpecError):
        field = f"spec.{exc.field}" if exc.field else "spec"
        return ApiProblem(422, f"{field}: {exc.reason}", field)
    if isinstance(exc, (NotFoundError, FindingNotFound)):
        return ApiProblem(404, str(exc.args[0]) if exc.args else str(exc))
    if isinstance(exc, QueryError):
        msg = str(exc)
        field = msg.split(":", 1)[0] if ":" in msg and " " not in msg.split(":", 1)[0] else None
        return ApiProblem(422, msg, field)
    if isinstance(exc, AudioError):
        return ApiProblem(422, str(exc), "file")
    if isinstance(exc, QueueFull):
        return ApiProblem(503, str(exc), headers={"Retry-After": str(exc.retry_after)})
    if isinstance(exc, StoreVersionError):
        return ApiProblem(503, f"the analysis store is refused: {exc}")
    if isinstance(exc, StoreUnavailable):
        return ApiProblem(503, str(exc), headers={"Retry-After": "30"})
    if isinstance(exc, ModelLoadError):
        return ApiProblem(503, f"model unavailable: {exc}")
    if isinstance(exc, JobFailed):
        return ApiProblem(exc.status, str(exc))
    return None


#: Where FastAPI says a request value came from (the first element of a validation error's `loc`).
_SOURCES = ("body", "query", "path", "header", "cookie")


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None, list]:
    """One line naming each offending field (`query parameter limit: Input should be greater than or equal to 1`),
    the first field's bare name (`limit`, `spec.units.kind`, `body` for the body as a whole) and per-field details."""
    parts, first_field = [], None
    details = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        source = loc[0] if loc and loc[0] in _SOURCES else None
        field = ".".join(loc[1:] if source else loc) or "body"
        where = f"{source} parameter {loc[1]}" if source not in (None, "body") and len(loc) > 1 else field
        ctx = err.get("ctx") or {}
        if err.get("type") == "spec":
            msg = err["msg"]
            field = where = ctx.get("field") or where
        elif err.get("type") == "json_invalid":
            field = where = "body"
            at = f" at character {loc[1]}" if source == "body" and len(loc) > 1 else ""
            msg = f"body: invalid JSON{at}: {ctx.get('error', err.get('msg'))}"
        elif err.get("type") == "missing":
            msg = f"{where}: required field is missing"
        else:
            msg = f"{where}: {err.get('msg')}"
        first_field = first_field or field
        parts.append(msg)
        details.append({"field": field, "message": msg})
    return "; ".join(dict.fromkeys(parts)) or "invalid request", first_field, details


def install_error_handlers(app: FastAPI) -> None:
    """JSON errors for validation failures, HTTP errors, domain errors and anything unexpected."""

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        message, field, _ = _validation_message(exc)
        return error_response(request, 422, message, field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}; see /docs for the API"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        elif exc.status_code == 413:
            message = f"request body too large: {message}"
        return error_response(request, exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(ApiProblem)
    async def _problem(request: Request, exc: ApiProblem):
        return error_response(request, exc.status, exc.message, exc.field, exc.headers)

    for cls in (SpecError, NotFoundError, FindingNotFound, QueryError, AudioError, QueueFull, StoreVersionError,
                StoreUnavailable, ModelLoadError, JobFailed):
        @app.exception_handler(cls)
        async def _domain(request: Request, exc: Exception):
            p = problem_of(exc)
            return error_response(request, p.status, p.message, p.field, p.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        incident = uuid.uuid4().hex[:12]
        log.error("unhandled error %s on %s %s", incident, request.method, request.url.path, exc_info=exc)
        return error_response(request, 500, f"internal error (incident {incident}); the server log has the details")
