"""Writing a run into atlas.duckdb atomically: build a copy beside the store, then rename it over the original."""
from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd

from neuron_atlas.engine.store_schema import RUN_TABLES, check_version, create_schema


@contextmanager
def store_transaction(path: Path, run_id: str) -> Iterator[duckdb.DuckDBPyConnection]:
    """Yield a connection to a temporary copy of the store with `run_id`'s old rows removed; publish on success.

    Readers keep the old file until the rename, and a crash leaves the previous store untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    if path.exists():
        shutil.copyfile(path, tmp)
    con = duckdb.connect(str(tmp))
    try:
        if path.exists():
            check_version(con)
        create_schema(con)
        for table in RUN_TABLES:
            con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
        yield con
        con.execute("CHECKPOINT")
        con.close()
        os.replace(tmp, path)
    except BaseException:
        con.close()
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + ".wal").unlink(missing_ok=True)
        raise


def insert_frame(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    """Append a DataFrame whose columns are named like the table's (order taken from the table)."""
    if frame.empty:
        return
    cols = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise ValueError(f"rows for {table} lack columns {missing}")
    con.register("_frame", frame[cols])
    try:
        con.execute(f"INSERT INTO {table} SELECT * FROM _frame")
    finally:
        con.unregister("_frame")


def ingest_unit_summaries(con: duckdb.DuckDBPyConnection, run_id: str, stats_dir: Path) -> None:
    """Insert every phase's `units/dist-*` and `units/examples-*` Parquet files (rows of `precompute.unit_summaries`,
    written by `precompute.analysis.analyse_phase`) into `unit_distributions` and
    `unit_examples`, sorted by unit: one unit's rows then lie in one row group, which DuckDB's zone maps find
    without scanning the others (the unit page reads them all at once)."""
    for table, pattern, order in (("unit_distributions", "dist-*.parquet", "unit_id, task, step, language"),
                                  ("unit_examples", "examples-*.parquet", "unit_id, task, step")):
        files = sorted(Path(stats_dir).glob(f"phase-*/units/{pattern}"))
        if not files:
            continue
        cols = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall() if r[0] != "run_id"]
        con.execute(f"INSERT INTO {table} SELECT ?, {', '.join(cols)} FROM read_parquet(?) ORDER BY {order}",
                    [run_id, [str(f) for f in files]])
