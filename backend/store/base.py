"""The store's connection, runs and concepts: what every query family of `StoreReader` builds on.

The store is opened read-only and reopened when the writer renames a new file over it (precompute publishes a run
atomically that way), so a long-running server always serves the latest complete store. Per-run unit layouts are
expanded once from the small `sites` table into numpy arrays (`backend.store.layout`)."""
from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from cachetools import LRUCache

from backend.store.common import (
    CATALOG,
    MAX_SELECTION_SETS,
    RETIRE_AFTER_S,
    WARM_TABLES,
    NotFoundError,
    QueryError,
    StoreUnavailable,
    clean_record,
    known,
    sql_string,
)
from backend.store.layout import RunLayout
from neuron_atlas.engine.store_schema import StoreVersionError, check_version


@dataclass
class _RunCache:
    run: dict
    layout: RunLayout
    concepts: pd.DataFrame
    items: dict[str, pd.DataFrame] = field(default_factory=dict)
    item_records: dict[str, list[dict]] = field(default_factory=dict)
    has_summaries: bool | None = None
    #: (task, stack, step) -> per-unit corpus mean and std of the stack (what `activation_moments` pools)
    moments: dict[tuple, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


class StoreBase:
    """A read-only view of atlas.duckdb, safe to share between request threads (one DuckDB cursor per call): the
    connection (reopened when the file is replaced), runs and concepts; the query families extend it."""

    def __init__(self, path: Path, warm: bool = False):
        self.path = Path(path)
        self.warm_on_open = warm
        self.warm_state = "off"
        self.warm_s: float | None = None
        self._lock = threading.RLock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._retired: list[tuple[float, duckdb.DuckDBPyConnection]] = []
        self._stamp: tuple | None = None
        self._runs: dict[str, _RunCache] = {}
        self._selection_sets: LRUCache[tuple, dict[int, np.ndarray]] = LRUCache(maxsize=MAX_SELECTION_SETS)
        self.version: str | None = None
        self.engine_version: str | None = None
        self._open()

    # ---------------------------------------------------------------------------------------------- connection

    def _file_stamp(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _open(self) -> None:
        stamp = self._file_stamp()
        if stamp is None:
            raise StoreUnavailable(f"no store at {self.path}: run `neuron-atlas precompute` first")
        con = duckdb.connect(":memory:")
        try:
            con.execute(f"ATTACH '{sql_string(str(self.path))}' AS {CATALOG} (READ_ONLY)")
            con.execute(f"USE {CATALOG}")
        except duckdb.Error as exc:
            con.close()
            raise StoreUnavailable(f"cannot open the store {self.path}: {exc}") from exc
        try:
            version = check_version(con)
            row = con.execute("SELECT value FROM meta WHERE key = 'engine_version'").fetchone()
        except StoreVersionError:
            con.close()
            raise
        old, self._con = self._con, con
        self._stamp, self.version, self.engine_version = stamp, version, row[0] if row else None
        self._runs.clear()
        self._selection_sets.clear()
        now = time.monotonic()
        for _, retired in [r for r in self._retired if now - r[0] > RETIRE_AFTER_S]:
            retired.close()
        self._retired = [r for r in self._retired if now - r[0] <= RETIRE_AFTER_S]
        if old is not None:
            self._retired.append((now, old))
        if self.warm_on_open:
            self.warm_state = "warming"
            threading.Thread(target=self.warm, args=(con,), name="store-warm", daemon=True).start()

    def warm(self, con: duckdb.DuckDBPyConnection | None = None) -> float:
        """Read every block of the per-unit tables once, so DuckDB's buffer pool holds them (the unit page reads one
        row per concept, scattered over every concept's row groups: cold, that is hundreds of block reads)."""
        t0 = time.perf_counter()
        con = con or self._con
        state = "done"
        try:
            cur = con.cursor()
            try:
                cur.execute(f"USE {CATALOG}")
                for table, cols in WARM_TABLES.items():
                    cur.execute(f"SELECT {', '.join(f'sum({c})' for c in cols)} FROM {table}").fetchall()
            finally:
                cur.close()
        except duckdb.Error as exc:
            state = f"failed: {exc}"
        seconds = time.perf_counter() - t0
        if con is self._con:
            self.warm_state, self.warm_s = state, seconds
        return seconds

    def refresh(self) -> None:
        """Reopen the store when its file was replaced (a new run was published); raises when it is gone or incompatible."""
        with self._lock:
            stamp = self._file_stamp()
            if self._con is None or stamp != self._stamp:
                self._open()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for this thread on the current store (reopened first when the file changed)."""
        self.refresh()
        with self._lock:
            cur = self._con.cursor()
        cur.execute(f"USE {CATALOG}")
        return cur

    def close(self) -> None:
        with self._lock:
            for _, retired in self._retired:
                retired.close()
            self._retired = []
            if self._con is not None:
                self._con.close()
                self._con = None
            self._runs.clear()
    
    def _query(self, sql: str, params: Sequence = ()) -> pd.DataFrame:
        cur = self.cursor()
        try:
            return cur.execute(sql, list(params)).df()
        finally:
            cur.close()

    def _numpy(self, sql: str, params: Sequence = ()) -> dict[str, np.ndarray]:
        cur = self.cursor()
        try:
            return cur.execute(sql, list(params)).fetchnumpy()
        finally:
            cur.close()

    # ---------------------------------------------------------------------------------------------------- runs

    def runs(self) -> list[dict]:
        """Every run, newest first."""
        df = self._query(
            "SELECT run_id, name, created_at, engine_version, model_spec, model_checksum, mode, tasks, steps, languages, "
            "corpus_source, n_examples, elapsed_s FROM runs ORDER BY created_at DESC, run_id"
        )
        return [clean_record(r) for r in df.to_dict("records")]

    def run_ids(self) -> list[str]:
        return [r["run_id"] for r in self.runs()]

    def _run_cache(self, run_id: str) -> _RunCache:
        self.refresh()
        with self._lock:
            cached = self._runs.get(run_id)
        if cached is not None:
            return cached
        df = self._query("SELECT * FROM runs WHERE run_id = ?", [run_id])
        if df.empty:
            raise NotFoundError(f"unknown run {run_id!r}; known runs: {known(self.run_ids())}")
        run = clean_record(df.iloc[0].to_dict())
        for key in ("model", "config", "library_versions"):
            if isinstance(run.get(key), str):
                run[key] = json.loads(run[key])
        sites = self._query("SELECT * EXCLUDE (run_id) FROM sites WHERE run_id = ? ORDER BY unit_offset", [run_id])
        layout = RunLayout.from_sites(run_id, sites)
        concepts = self._query("SELECT * EXCLUDE (run_id) FROM concepts WHERE run_id = ? ORDER BY concept_id", [run_id])
        entry = _RunCache(run=run, layout=layout, concepts=concepts)
        with self._lock:
            self._runs[run_id] = entry
        return entry

    def run(self, run_id: str) -> dict:
        """One run's full record (model, config and library versions parsed from JSON)."""
        return dict(self._run_cache(run_id).run)

    def layout(self, run_id: str) -> RunLayout:
        return self._run_cache(run_id).layout

    def latest_run(self, model_checksum: str | None = None) -> str | None:
        """The newest run (of the given model checksum when one matches), or None in an empty store."""
        runs = self.runs()
        if model_checksum is not None:
            same = [r for r in runs if r["model_checksum"] == model_checksum]
            if same:
                return same[0]["run_id"]
        return runs[0]["run_id"] if runs else None

    def resolve_run(self, run_id: str) -> str:
        """A run id as given, checked to exist; `latest` names the newest run."""
        if run_id == "latest":
            latest = self.latest_run()
            if latest is None:
                raise NotFoundError("the store holds no runs yet: run `neuron-atlas precompute`")
            return latest
        self._run_cache(run_id)
        return run_id

    def tasks(self, run_id: str) -> list[dict]:
        """Recorded tasks with item counts, modality and label languages."""
        self._run_cache(run_id)
        df = self._query(
            "SELECT task, count(*) AS n_items, any_value(modality) AS modality, list(DISTINCT label ORDER BY label) AS languages "
            "FROM items WHERE run_id = ? GROUP BY task ORDER BY task", [run_id])
        order = {t: i for i, t in enumerate(self.run(run_id)["tasks"])}
        rows = [clean_record(r) for r in df.to_dict("records")]
        return sorted(rows, key=lambda r: order.get(r["task"], len(order)))

    def languages(self, run_id: str) -> list[dict]:
        """The run's corpus languages with example counts."""
        run = self.run(run_id)
        df = self._query(
            "SELECT lang, count(*) AS n_examples, count(*) FILTER (WHERE has_audio) AS n_audio FROM examples "
            "WHERE run_id = ? GROUP BY lang", [run_id])
        counts = {r["lang"]: r for r in df.to_dict("records")}
        return [{"language": lang, "n_examples": int(counts.get(lang, {}).get("n_examples", 0)),
                 "n_audio": int(counts.get(lang, {}).get("n_audio", 0))} for lang in run["languages"]]

    def check_language(self, run_id: str, language: str, field_name: str = "language") -> None:
        langs = self.run(run_id)["languages"]
        if language not in langs:
            raise QueryError(f"{field_name}: unknown language {language!r}; run {run_id} has {known(langs)}")

    def check_step(self, run_id: str, step: int) -> None:
        steps = self.run(run_id)["steps"]
        if step not in steps:
            raise QueryError(f"step: run {run_id} has no step {step}; its steps are {known(steps)}")

    def check_task(self, run_id: str, task: str, field_name: str = "task", extra: Sequence[str] = ()) -> None:
        """QueryError naming the field and the run's tasks (plus `extra` accepted values) unless `task` is one."""
        tasks = list(dict.fromkeys([*self.run(run_id)["tasks"], *extra]))
        if task not in tasks:
            raise QueryError(f"{field_name}: run {run_id} has no task {task!r}; its tasks are {known(tasks, limit=20)}")

    def check_concept_filters(self, run_id: str, task: str | None = None, step: int | None = None,
                              language: str | None = None) -> None:
        """QueryError naming the first concept filter whose value the run does not have (pooled tasks such as
        `s2tt+t2tt` count as tasks)."""
        if task is not None:
            self.check_task(run_id, task, extra=self._run_cache(run_id).concepts["task"].dropna().unique().tolist())
        if step is not None:
            self.check_step(run_id, step)
        if language is not None:
            self.check_language(run_id, language)

    def _has_column(self, table: str, column: str) -> bool:
        cols = self._query("SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table])
        return column in set(cols["column_name"])

    def text_inputs(self, run_id: str) -> list[dict]:
        """The token ids each text example was fed as (one row per distinct example and ids; trailing pads counted,
        not listed). Empty for stores older than schema 1.2, which did not keep them."""
        self._run_cache(run_id)
        if not self._has_column("items", "input_ids"):
            return []
        df = self._query(
            "SELECT example_id, input_ids, list(DISTINCT task ORDER BY task) AS tasks FROM items "
            "WHERE run_id = ? AND input_ids IS NOT NULL GROUP BY example_id, input_ids ORDER BY example_id", [run_id])
        pad = self._pad_id(run_id)
        rows = []
        for r in df.to_dict("records"):
            ids = [int(i) for i in r["input_ids"]]
            n = len(ids)
            while pad is not None and ids and ids[-1] == pad:
                ids.pop()
            rows.append({"example_id": r["example_id"], "tasks": list(r["tasks"]), "input_ids": ids, "fed_length": n})
        return rows

    def _pad_id(self, run_id: str) -> int | None:
        """The pad id a faithful run padded text with (`runs.model.pad_token_id`), None for clean runs."""
        run = self.run(run_id)
        if run.get("mode") != "faithful":
            return None
        pad = (run.get("model") or {}).get("pad_token_id")
        return None if pad is None else int(pad)

    def dropped(self, run_id: str) -> list[dict]:
        """Examples and sites a faithful run leaves out as the reference's reader does, with the reason."""
        self._run_cache(run_id)
        tables = set(self._query("SELECT table_name FROM information_schema.tables")["table_name"])
        if "dropped" not in tables:
            return []
        df = self._query("SELECT task, item, example_id, site, reason FROM dropped WHERE run_id = ? "
                         "ORDER BY task, item NULLS LAST, site", [run_id])
        return [clean_record(r) for r in df.to_dict("records")]

    def _check_summaries(self, run_id: str) -> None:
        """NotFoundError saying why a run has no unit summaries at all (an older store, or no analysis)."""
        cache = self._run_cache(run_id)
        if cache.has_summaries is None:
            tables = set(self._query("SELECT table_name FROM information_schema.tables")["table_name"])
            cache.has_summaries = {"unit_distributions", "unit_examples"} <= tables and bool(self._numpy(
                "SELECT count(*) AS n FROM (SELECT 1 FROM unit_examples WHERE run_id = ? LIMIT 1)", [run_id])["n"][0])
        if cache.has_summaries:
            return
        analysis = ((cache.run.get("config") or {}).get("analysis") or {}).get("enabled", True)
        if not analysis:
            raise NotFoundError(f"run {run_id} was computed without its analysis (analysis.enabled: false), so the "
                                "store has no activation summaries of its units")
        raise NotFoundError(f"run {run_id} has no activation summaries in this store: it was written before store "
                            "schema 1.3 kept them; re-run `neuron-atlas precompute` for it")

    # ------------------------------------------------------------------------------------------------ concepts

    def concepts(self, run_id: str, kind: str | None = None, role: str | None = None, task: str | None = None,
                 step: int | None = None, language: str | None = None, modality: str | None = None) -> pd.DataFrame:
        """The run's concepts, filtered (every filter optional; a task, step or language the run lacks is a QueryError)."""
        self.check_concept_filters(run_id, task, step, language)
        df = self._run_cache(run_id).concepts
        for col, value in (("kind", kind), ("role", role), ("task", task), ("step", step), ("language", language),
                           ("modality", modality)):
            if value is not None:
                df = df[df[col] == value]
        return df

    def concept(self, run_id: str, concept_id: int) -> dict:
        df = self._run_cache(run_id).concepts
        row = df[df["concept_id"] == concept_id]
        if row.empty:
            raise NotFoundError(f"unknown concept {concept_id} in run {run_id}; it has concepts 0..{len(df) - 1}"
                                if len(df) else f"run {run_id} has no concepts (analysis was not run)")
        return clean_record(row.iloc[0].to_dict())

    def concept_exists(self, run_id: str, concept_id: int) -> bool:
        df = self._run_cache(run_id).concepts
        return bool((df["concept_id"] == concept_id).any())
