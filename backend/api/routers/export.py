"""Bulk export of analysis tables as Parquet, streamed a row group at a time (bounded memory at any table size).

Behind the API token when one is set, and rate limited per client: an export can be hundreds of millions of rows.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from enum import Enum

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import StreamingResponse

from backend.api.deps import export_rate_limit, get_reader, require_write_token
from backend.api.routers import errors
from backend.api.routers.data import resolve_run_field
from backend.store.reader import EXPORT_TABLES, StoreReader

router = APIRouter(tags=["export"], responses=errors(401, 403, 404, 422, 429, 503))

Table = Enum("Table", {name: name for name in EXPORT_TABLES}, type=str)


@router.get("/export/{table}", response_class=StreamingResponse, dependencies=[Depends(require_write_token)],
            responses={200: {"content": {"application/vnd.apache.parquet": {}}, "description": "the table as Parquet"}},
            summary="Export an analysis table (optionally one run's rows) as Parquet")
def export_table(table: Table = Path(description="table name (whitelisted)"),
                 run_id: str | None = Query(None, max_length=200, description="only this run's rows (`latest` = the newest run)"),
                 reader: StoreReader = Depends(get_reader),
                 charge: Callable[[], None] = Depends(export_rate_limit)) -> StreamingResponse:
    if run_id is not None:
        run_id = resolve_run_field(reader, run_id)
    query = reader.export_query(table.value, run_id)
    charge()
    suffix = f"-{re.sub(r'[^A-Za-z0-9._-]+', '_', run_id)}" if run_id else ""
    return StreamingResponse(reader.export_parquet_chunks(query), media_type="application/vnd.apache.parquet",
                             headers={"Content-Disposition": f'attachment; filename="{table.value}{suffix}.parquet"'})
