"""Example, batch-intervention and export queries: corpus examples and their audio, stored experiments, Parquet exports."""
from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pyarrow.parquet as pq
import soundfile as sf

from backend.store.base import StoreBase
from backend.store.common import EXPORT_TABLES, NotFoundError, QueryError, clean_record, sql_string

#: Rows per Parquet row group (and per streamed chunk) of an export.
EXPORT_BATCH_ROWS = 65_536


class ExampleQueries(StoreBase):
    """Examples, audio, batch interventions and exports of a run."""

    def examples(self, run_id: str, lang: str | None = None, has_audio: bool | None = None, sentence_id: str | None = None,
                 limit: int = 50, offset: int = 0) -> dict:
        self._run_cache(run_id)
        conds, params = ["run_id = ?"], [run_id]
        if lang is not None:
            self.check_language(run_id, lang, "lang")
            conds.append("lang = ?")
            params.append(lang)
        if has_audio is not None:
            conds.append("has_audio = ?")
            params.append(bool(has_audio))
        if sentence_id is not None:
            conds.append("sentence_id = ?")
            params.append(sentence_id)
        df = self._query(
            f"SELECT * EXCLUDE (run_id), count(*) OVER () AS total FROM examples WHERE {' AND '.join(conds)} "
            f"ORDER BY sentence_id, lang, example_id LIMIT {int(limit)} OFFSET {int(offset)}", params)
        total = int(df["total"].iloc[0]) if len(df) else 0
        return {"run_id": run_id, "total": total, "limit": limit, "offset": offset,
                "examples": [clean_record(r) for r in df.drop(columns="total").to_dict("records")]}

    def example(self, run_id: str, example_id: str) -> dict:
        """One example and what each task produced from it."""
        self._run_cache(run_id)
        df = self._query("SELECT * EXCLUDE (run_id) FROM examples WHERE run_id = ? AND example_id = ?", [run_id, example_id])
        if df.empty:
            raise NotFoundError(f"unknown example {example_id!r} in run {run_id}")
        items = self._query(
            "SELECT task, item, label, src_lang, tgt_lang, modality, reference, output_text FROM items "
            "WHERE run_id = ? AND example_id = ? ORDER BY task, item", [run_id, example_id])
        return {"run_id": run_id, **clean_record(df.iloc[0].to_dict()),
                "items": [clean_record(r) for r in items.to_dict("records")]}

    def example_audio(self, run_id: str, example_id: str) -> tuple[np.ndarray, int]:
        """The example's stored audio (16 kHz mono float32), looked up by id only."""
        self._run_cache(run_id)
        cur = self.cursor()
        try:
            row = cur.execute("SELECT flac FROM example_audio WHERE run_id = ? AND example_id = ?", [run_id, example_id]).fetchone()
            if row is None:
                exists = cur.execute("SELECT count(*) FROM examples WHERE run_id = ? AND example_id = ?", [run_id, example_id]).fetchone()[0]
        finally:
            cur.close()
        if row is None:
            if exists:
                raise NotFoundError(f"example {example_id!r} of run {run_id} has no audio")
            raise NotFoundError(f"unknown example {example_id!r} in run {run_id}")
        data, rate = sf.read(io.BytesIO(bytes(row[0])), dtype="float32", always_2d=False)
        return data, int(rate)

    # -------------------------------------------------------------------------------------------------- export

    def export_query(self, table: str, run_id: str | None = None) -> str:
        """The SELECT that exports a whitelisted table (optionally one run's rows); raises before any row is read
        when the table or run is unknown."""
        if table not in EXPORT_TABLES:
            raise NotFoundError(f"unknown table {table!r}; exportable tables: {', '.join(EXPORT_TABLES)}")
        where = ""
        if run_id is not None:
            if table == "meta":
                raise QueryError("run_id: the meta table holds no runs; export it without run_id")
            self._run_cache(run_id)
            where = f" WHERE run_id = '{sql_string(run_id)}'"
        if table not in set(self._query("SELECT table_name FROM information_schema.tables")["table_name"]):
            raise NotFoundError(f"table {table!r} is not in this store (written with store schema {self.version}, "
                                f"before the table was added)")
        return f"SELECT * FROM {table}{where}"

    def export_parquet_chunks(self, query: str, batch_rows: int = EXPORT_BATCH_ROWS) -> Iterator[bytes]:
        """Stream the rows of an `export_query` as one Parquet file, a row group per `batch_rows` rows, so memory
        stays bounded by one batch whatever the table's size (unit_stats is ~10^8 rows at full scale)."""
        cur = self.cursor()
        try:
            cur.complete()
            sink = _ChunkSink()
            with cur.sql(query).to_arrow_reader(batch_size=batch_rows) as batches, \
                    pq.ParquetWriter(sink, batches.schema, compression="zstd") as writer:
                for batch in batches:
                    writer.write_batch(batch)
                    if chunk := sink.take():
                        yield chunk
            if chunk := sink.take():
                yield chunk
        finally:
            cur.close()


class _ChunkSink(io.RawIOBase):
    """A write-only file for pyarrow's ParquetWriter that hands out what was written since the last `take`."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._pos += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._pos

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data
