"""Bulk export of analysis tables as Parquet, written by DuckDB (COPY ... TO) and streamed from a temporary file."""
from __future__ import annotations

import re
from enum import Enum
from pathlib import Path as FsPath

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from backend.api.deps import get_reader
from backend.api.routers import errors
from backend.api.routers.data import resolve_run_field
from backend.store.reader import EXPORT_TABLES, StoreReader

router = APIRouter(tags=["export"], responses=errors(404, 422, 503))

Table = Enum("Table", {name: name for name in EXPORT_TABLES}, type=str)


@router.get("/export/{table}", response_class=FileResponse,
            responses={200: {"content": {"application/vnd.apache.parquet": {}}, "description": "the table as Parquet"}},
            summary="Export an analysis table (optionally one run's rows) as Parquet")
def export_table(table: Table = Path(description="table name (whitelisted)"),
                 run_id: str | None = Query(None, max_length=200, description="only this run's rows (`latest` = the newest run)"),
                 reader: StoreReader = Depends(get_reader)) -> FileResponse:
    if run_id is not None:
        run_id = resolve_run_field(reader, run_id)
    path: FsPath = reader.export_parquet(table.value, run_id)
    suffix = f"-{re.sub(r'[^A-Za-z0-9._-]+', '_', run_id)}" if run_id else ""
    return FileResponse(path, media_type="application/vnd.apache.parquet", filename=f"{table.value}{suffix}.parquet",
                        background=BackgroundTask(path.unlink, missing_ok=True))
