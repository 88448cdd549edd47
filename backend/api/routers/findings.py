"""Saved findings: create, edit (title and note) and delete (each token-guarded when a token is configured), read,
list."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import JSONResponse

from backend.api.state import AtlasState
from backend.api.deps import INT_MAX, check_page_limit, get_state, json_body, limit_query, require_write_token
from backend.api.errors import ApiProblem
from backend.api.routers import errors
from backend.api.schemas import Finding, FindingCreate, FindingList, FindingUpdate
from backend.findings import valid_id

router = APIRouter(tags=["findings"])


@router.post("/findings", status_code=201, response_model=Finding, responses=errors(400, 401, 403, 413, 415, 422),
             dependencies=[Depends(json_body), Depends(require_write_token)],
             summary="Save a finding (title, note, dashboard state, spec) under a short id")
def create_finding(body: FindingCreate, state: AtlasState = Depends(get_state)):
    model = None
    if state.host.bundle is not None:
        model = {"spec": state.host.bundle.spec, "checksum": state.host.bundle.checksum}
    spec = None if body.spec is None else body.spec.model_dump(mode="json")
    finding = state.findings.create(body.title, body.note, body.state, spec, body.run_id, model)
    return JSONResponse(finding, status_code=201, headers={"Location": f"/findings/{finding['id']}"})


@router.get("/findings", response_model=FindingList, responses=errors(422), summary="List findings, newest first")
def list_findings(limit: int = limit_query(50), offset: int = Query(0, ge=0, le=INT_MAX),
                  state: AtlasState = Depends(get_state)) -> dict[str, Any]:
    check_page_limit(state, limit)
    page, total = state.findings.list(limit, offset)
    return {"total": total, "limit": limit, "offset": offset, "findings": page}


def _known_id(finding_id: str) -> str:
    if not valid_id(finding_id):
        raise ApiProblem(404, f"unknown finding {finding_id!r}: finding ids are 8 characters of a-z and 2-7")
    return finding_id


@router.get("/findings/{finding_id}", response_model=Finding, responses=errors(404, 422), summary="One finding")
def get_finding(finding_id: str = Path(max_length=64), state: AtlasState = Depends(get_state)) -> dict[str, Any]:
    return state.findings.get(_known_id(finding_id))


@router.patch("/findings/{finding_id}", response_model=Finding, responses=errors(400, 401, 403, 404, 415, 422),
              dependencies=[Depends(json_body), Depends(require_write_token)],
              summary="Edit a finding's title and/or note (what it froze stays as saved)")
def update_finding(body: FindingUpdate, finding_id: str = Path(max_length=64),
                   state: AtlasState = Depends(get_state)) -> dict[str, Any]:
    return state.findings.update(_known_id(finding_id), title=body.title, note=body.note)


@router.delete("/findings/{finding_id}", status_code=204, responses=errors(401, 403, 404, 422),
               dependencies=[Depends(require_write_token)], summary="Delete a finding (its permalink then answers 404)")
def delete_finding(finding_id: str = Path(max_length=64), state: AtlasState = Depends(get_state)) -> Response:
    state.findings.delete(_known_id(finding_id))
    return Response(status_code=204)
