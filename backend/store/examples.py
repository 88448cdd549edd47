"""Example, batch-intervention and export queries: corpus examples and their audio, stored experiments, Parquet exports."""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from backend.store.base import StoreBase
from backend.store.common import EXPORT_TABLES, NotFoundError, QueryError, clean_record, sql_string


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

    def export_parquet(self, table: str, run_id: str | None = None, directory: Path | None = None) -> Path:
        """COPY a whitelisted table (optionally one run's rows) to a temporary Parquet file; the caller deletes it."""
        if table not in EXPORT_TABLES:
            raise NotFoundError(f"unknown table {table!r}; exportable tables: {', '.join(EXPORT_TABLES)}")
        where = ""
        if run_id is not None:
            if table == "meta":
                raise QueryError("run_id: the meta table holds no runs; export it without run_id")
            self._run_cache(run_id)
            where = f" WHERE run_id = '{sql_string(run_id)}'"
        fd, name = tempfile.mkstemp(prefix=f"export-{table}-", suffix=".parquet", dir=directory)
        os.close(fd)
        path = Path(name)
        cur = self.cursor()
        try:
            cur.execute(f"COPY (SELECT * FROM {table}{where}) TO '{sql_string(path.as_posix())}' (FORMAT parquet, COMPRESSION zstd)")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        finally:
            cur.close()
        return path
