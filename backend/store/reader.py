"""Read-only queries over atlas.duckdb for the backend: runs, concepts, heatmaps, layers, units, examples, exports.

The store is opened read-only and reopened when the writer renames a new file over it (precompute publishes a run
atomically that way), so a long-running server always serves the latest complete store. Per-run unit layouts
(unit -> stack, layer, component, site) are expanded once from the small `sites` table into numpy arrays, so the
heavy queries only pull unit ids, or counts per block of units that never straddles a site (the gcd of the site
offsets: 1024 units in the large model), out of DuckDB and aggregate them vectorised.

`StoreStats` is the store-backed `UnitStatsSource` of the intervention engine (see its docstring for how
selections map onto the `selections` table).
"""
from __future__ import annotations

import io
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import soundfile as sf
from cachetools import LRUCache

from neuron_atlas.engine.model.unit_sites import COMPONENTS, STACKS, component_members
from neuron_atlas.engine.store_schema import RUN_TABLES, StoreVersionError, check_version
from neuron_atlas.engine.concentration import gini, mean_abs_activation
from neuron_atlas.engine.interventions import STATISTICS, SpecError, select_units

#: Per-unit statistics a layer listing can sort and filter by (columns of unit_stats).
STAT_COLUMNS: tuple[str, ...] = ("ap", "on_p50", "on_p90", "off_mean", "off_p50")
#: Columns a layer listing can sort by.
SORT_COLUMNS: tuple[str, ...] = ("unit_id", *STAT_COLUMNS)
#: Tables that can be exported as Parquet (the analysis tables and the version table).
EXPORT_TABLES: tuple[str, ...] = ("meta", *RUN_TABLES)
#: Heatmap modes: count units with AP >= threshold, or units in a stored top/bottom/both selection.
HEATMAP_MODES: tuple[str, ...] = ("ap", "top", "bottom", "both")
#: Most concepts one heatmap may show.
MAX_HEATMAP_CONCEPTS = 1000
#: Stored selection sets kept in memory, per (run, kind, scope, k).
MAX_SELECTION_SETS = 64
#: Concentration metrics (columns of the concentration table).
CONCENTRATION_METRICS: tuple[str, ...] = ("gini", "top1_share", "total")
#: Overlap metrics (columns of the overlap table).
OVERLAP_METRICS: tuple[str, ...] = ("count", "c_over_k", "jaccard")


#: Catalog name the store is attached under. Each open attaches the file into a fresh in-memory database, so a
#: store renamed over the old file is really reopened (a plain `duckdb.connect(path)` would reuse the cached
#: instance of the old file while any cursor on it is alive).
CATALOG = "atlas"


#: A replaced store's connection is closed this long after the switch (queries in flight on it finish first).
RETIRE_AFTER_S = 60.0
#: Columns read by `StoreReader.warm` (every column the unit, layer and heatmap queries touch).
WARM_TABLES = {
    "unit_stats": ("concept_id", "unit_id", "ap", "on_p50", "on_p90", "off_mean", "off_p50"),
    "selections": ("concept_id", "unit_id", "rank", "k_requested"),
}


class StoreUnavailable(RuntimeError):
    """No store can be opened at the configured path (missing, unreadable or not a DuckDB file)."""


class NotFoundError(LookupError):
    """A run, concept, unit, example or table named in a request does not exist; the message says which."""


class QueryError(ValueError):
    """A query parameter is invalid for this run (unknown stack, sort column, language...); the message names it."""


def _known(values: Sequence, limit: int = 12) -> str:
    vals = [str(v) for v in values]
    more = f", ... ({len(vals)} in all)" if len(vals) > limit else ""
    return ", ".join(vals[:limit]) + more if vals else "none"


#: The layer part of a site key (`layers.3.`, `adapter.layers.0.`), removed to name a site's role.
_SITE_ROLE = re.compile(r"(adapter\.)?layers\.\d+\.")


@dataclass
class RunLayout:
    """A run's unit layout: its sites and per-unit stack / layer / component / site codes (vectorised lookups)."""

    run_id: str
    sites: pd.DataFrame
    n_units: int
    stack_ranges: dict[str, tuple[int, int]]
    offsets: np.ndarray
    unit_site: np.ndarray
    unit_layer: np.ndarray
    unit_component: np.ndarray
    bucket: int

    @classmethod
    def from_sites(cls, run_id: str, sites: pd.DataFrame) -> RunLayout:
        sites = sites.sort_values("unit_offset").reset_index(drop=True)
        widths = sites["width"].to_numpy(np.int64)
        offsets = sites["unit_offset"].to_numpy(np.int64)
        n_units = int(offsets[-1] + widths[-1]) if len(sites) else 0
        site_idx = np.repeat(np.arange(len(sites), dtype=np.int32), widths)
        comp_codes = np.array([COMPONENTS.index(c) for c in sites["component"]], dtype=np.int8)
        stack_ranges = {}
        for stack in STACKS:
            rows = sites[sites["stack"] == stack]
            if len(rows):
                stack_ranges[stack] = (int(rows["unit_offset"].min()), int((rows["unit_offset"] + rows["width"]).max()))
        return cls(
            run_id=run_id,
            sites=sites,
            n_units=n_units,
            stack_ranges=stack_ranges,
            offsets=offsets,
            unit_site=site_idx,
            unit_layer=np.repeat(sites["layer"].to_numpy(np.int16), widths),
            unit_component=np.repeat(comp_codes, widths),
            bucket=int(np.gcd.reduce(np.append(offsets, n_units))) if len(sites) else 1,
        )

    def site_roles(self) -> tuple[list[str], np.ndarray]:
        """Site roles (the site key without stack and layer, e.g. `cross_attention.k_proj`) and each site's role index:
        the same role in every layer is one role, so counts can be broken down by it."""
        keys = [_SITE_ROLE.sub("", key).split(".", 1)[-1] for key in self.sites["site"]]
        roles = list(dict.fromkeys(keys))
        return roles, np.array([roles.index(k) for k in keys], dtype=np.int64)

    def check_stack(self, stack: str) -> tuple[int, int]:
        if stack not in self.stack_ranges:
            raise QueryError(f"stack: unknown stack {stack!r}; run {self.run_id} has {_known(self.stack_ranges)}")
        return self.stack_ranges[stack]

    def check_unit(self, unit_id: int) -> None:
        if not 0 <= unit_id < self.n_units:
            raise NotFoundError(f"unit {unit_id} is out of range: run {self.run_id} has units 0..{self.n_units - 1}")

    def layers(self, stack: str) -> list[int]:
        return sorted(int(v) for v in self.sites.loc[self.sites["stack"] == stack, "layer"].unique())

    def unit_info(self, unit_ids: np.ndarray) -> pd.DataFrame:
        """Site, channel, stack, layer, component and kind of each unit id (vectorised)."""
        ids = np.asarray(unit_ids, dtype=np.int64)
        idx = self.unit_site[ids]
        s = self.sites
        return pd.DataFrame({
            "unit_id": ids,
            "site": s["site"].to_numpy()[idx],
            "channel": ids - self.offsets[idx],
            "stack": s["stack"].to_numpy()[idx],
            "layer": s["layer"].to_numpy()[idx].astype(np.int64),
            "component": s["component"].to_numpy()[idx],
            "kind": s["kind"].to_numpy()[idx],
        })

    def ranges(self, stack: str, layer: int | None = None, component: str | None = None, site: str | None = None) -> list[tuple[int, int]]:
        """Merged [start, stop) unit-id ranges of the sites matching stack / layer / component / site."""
        s = self.sites[self.sites["stack"] == stack]
        if layer is not None:
            s = s[s["layer"] == layer]
        if component is not None:
            s = s[s["component"] == component]
        if site is not None:
            s = s[s["site"] == site]
        out: list[tuple[int, int]] = []
        for start, width in zip(s["unit_offset"].to_numpy(np.int64), s["width"].to_numpy(np.int64)):
            if out and out[-1][1] == start:
                out[-1] = (out[-1][0], int(start + width))
            else:
                out.append((int(start), int(start + width)))
        return out


def _range_sql(ranges: list[tuple[int, int]], column: str = "unit_id") -> str:
    """SQL condition for unit ids in any of the (integer, server-built) ranges."""
    if not ranges:
        return "FALSE"
    return "(" + " OR ".join(f"({column} >= {int(a)} AND {column} < {int(b)})" for a, b in ranges) + ")"


@dataclass
class _RunCache:
    run: dict
    layout: RunLayout
    concepts: pd.DataFrame
    items: dict[str, pd.DataFrame] = field(default_factory=dict)


class StoreReader:
    """A read-only view of atlas.duckdb, safe to share between request threads (one DuckDB cursor per call)."""

    def __init__(self, path: Path, max_open_arrays: int = 64, warm: bool = False):
        self.path = Path(path)
        self.warm_on_open = warm
        self.warm_state = "off"
        self.warm_s: float | None = None
        self._lock = threading.RLock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._retired: list[tuple[float, duckdb.DuckDBPyConnection]] = []
        self._stamp: tuple | None = None
        self._runs: dict[str, _RunCache] = {}
        self._arrays: LRUCache[tuple, np.ndarray] = LRUCache(maxsize=max(max_open_arrays, 1))
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
            con.execute(f"ATTACH '{_sql_string(str(self.path))}' AS {CATALOG} (READ_ONLY)")
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
        self._arrays.clear()
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
            self._arrays.clear()

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
            raise NotFoundError(f"unknown run {run_id!r}; known runs: {_known(self.run_ids())}")
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
            raise QueryError(f"{field_name}: unknown language {language!r}; run {run_id} has {_known(langs)}")

    def check_step(self, run_id: str, step: int) -> None:
        steps = self.run(run_id)["steps"]
        if step not in steps:
            raise QueryError(f"step: run {run_id} has no step {step}; its steps are {_known(steps)}")

    def check_task(self, run_id: str, task: str, field_name: str = "task", extra: Sequence[str] = ()) -> None:
        """QueryError naming the field and the run's tasks (plus `extra` accepted values) unless `task` is one."""
        tasks = list(dict.fromkeys([*self.run(run_id)["tasks"], *extra]))
        if task not in tasks:
            raise QueryError(f"{field_name}: run {run_id} has no task {task!r}; its tasks are {_known(tasks, limit=20)}")

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

    # ------------------------------------------------------------------------------------------------ heatmaps

    def heatmap(self, run_id: str, stack: str, concept_ids: Sequence[int], mode: str = "ap", threshold: float = 0.9,
                k: int | None = None, component: str | None = None, group: str = "component") -> dict:
        """Units per layer x concept: AP >= threshold (mode `ap`) or members of a stored top/bottom/both set of size k.

        Also broken down by component (`by_component[c][i][j]`: concept i, layer j), and with `group="site"` by site
        role too (`by_site`, e.g. `cross_attention.k_proj` over all layers). Concepts without statistics for the
        stack count zero.
        """
        if group not in ("component", "site"):
            raise QueryError(f"group: unknown grouping {group!r}; expected component or site")
        if mode not in HEATMAP_MODES:
            raise QueryError(f"mode: unknown mode {mode!r}; expected one of {', '.join(HEATMAP_MODES)}")
        layout = self.layout(run_id)
        start, stop = layout.check_stack(stack)
        if component is not None and component not in COMPONENTS:
            raise QueryError(f"component: unknown component {component!r}; expected one of {', '.join(COMPONENTS)}")
        ids = [int(c) for c in dict.fromkeys(concept_ids)]
        known = set(self._run_cache(run_id).concepts["concept_id"].tolist())
        unknown = [c for c in ids if c not in known]
        if unknown:
            self.concept(run_id, unknown[0])
        if len(ids) > MAX_HEATMAP_CONCEPTS:
            raise QueryError(f"concept_ids: {len(ids)} concepts; a heatmap shows at most {MAX_HEATMAP_CONCEPTS}")
        if not ids:
            raise QueryError("concept_ids: no concepts selected (give concept_ids or a filter that matches some)")
        id_list = ",".join(str(c) for c in ids)
        if mode == "ap":
            g = layout.bucket
            agg = self._numpy(
                f"SELECT concept_id, unit_id // {g} AS bucket, count(*) AS n FROM unit_stats WHERE run_id = ? "
                f"AND concept_id IN ({id_list}) AND unit_id >= ? AND unit_id < ? AND ap >= ? GROUP BY ALL",
                [run_id, start, stop, float(threshold)])
            rows = {"concept_id": agg["concept_id"].astype(np.int64), "unit_id": agg["bucket"].astype(np.int64) * g,
                    "n": agg["n"].astype(np.int64)}
            k_used = None
        else:
            k_used = self._selection_k(run_id, stack, k)
            sets = self.selections(run_id, mode, stack, k_used, ids)
            rows = {"concept_id": np.repeat(np.asarray(ids, dtype=np.int64), [len(sets[c]) for c in ids]),
                    "unit_id": np.concatenate([sets[c] for c in ids]) if ids else np.zeros(0, np.int64)}
        layers = layout.layers(stack)
        layer_pos = np.full(int(max(layers)) + 1, -1, dtype=np.int64)
        layer_pos[layers] = np.arange(len(layers))
        concept_pos = np.full(max(ids) + 1, -1, dtype=np.int64)
        concept_pos[ids] = np.arange(len(ids))
        unit = rows["unit_id"].astype(np.int64)
        weight = rows.get("n", np.ones(len(unit), dtype=np.int64))
        cidx = concept_pos[rows["concept_id"].astype(np.int64)]
        comp = layout.unit_component[unit].astype(np.int64)
        if component is not None:
            keep = comp == COMPONENTS.index(component)
            unit, comp, cidx, weight = unit[keep], comp[keep], cidx[keep], weight[keep]
        lpos = layer_pos[layout.unit_layer[unit]]
        n_l, n_c = len(layers), len(COMPONENTS)
        flat = np.bincount((cidx * n_c + comp) * n_l + lpos, weights=weight,
                           minlength=len(ids) * n_c * n_l).astype(np.int64).reshape(len(ids), n_c, n_l)
        sel = layout.unit_layer[start:stop]
        comp_all = layout.unit_component[start:stop].astype(np.int64)
        if component is not None:
            keep = comp_all == COMPONENTS.index(component)
            sel, comp_all = sel[keep], comp_all[keep]
        per_layer = np.bincount(comp_all * n_l + layer_pos[sel], minlength=n_c * n_l).reshape(n_c, n_l)
        present = [i for i in range(n_c) if per_layer[i].sum() > 0]
        concepts = self._run_cache(run_id).concepts.set_index("concept_id").loc[ids].reset_index()
        by_site = site_totals = None
        if group == "site":
            roles, role_of_site = layout.site_roles()
            n_r = len(roles)
            per_role = np.bincount((cidx * n_r + role_of_site[layout.unit_site[unit]]) * n_l + lpos, weights=weight,
                                   minlength=len(ids) * n_r * n_l).astype(np.int64).reshape(len(ids), n_r, n_l)
            units_all = np.arange(start, stop)
            if component is not None:
                units_all = units_all[layout.unit_component[start:stop] == COMPONENTS.index(component)]
            role_all = role_of_site[layout.unit_site[units_all]]
            totals = np.bincount(role_all * n_l + layer_pos[layout.unit_layer[units_all]],
                                 minlength=n_r * n_l).reshape(n_r, n_l)
            kept = [r for r in range(n_r) if totals[r].sum() > 0]
            by_site = {roles[r]: per_role[:, r, :].tolist() for r in kept}
            site_totals = {roles[r]: totals[r].tolist() for r in kept}
        return {
            "run_id": run_id, "stack": stack, "component": component, "mode": mode,
            "threshold": float(threshold) if mode == "ap" else None, "k": k_used,
            "layers": [int(v) for v in layers],
            "concepts": [clean_record(r) for r in concepts.to_dict("records")],
            "counts": flat.sum(axis=1).tolist(),
            "by_component": {COMPONENTS[i]: flat[:, i, :].tolist() for i in present},
            "units_per_layer": per_layer.sum(axis=0).tolist(),
            "units_per_layer_by_component": {COMPONENTS[i]: per_layer[i].tolist() for i in present},
            "by_site": by_site,
            "units_per_layer_by_site": site_totals,
        }

    def selections(self, run_id: str, kind: str, scope: str, k_requested: int, concept_ids: Sequence[int]) -> dict[int, np.ndarray]:
        """Stored selection sets (unit ids) of the given concepts, cached per (run, kind, scope, k): heatmaps of stored
        sets then cost one small query the first time a concept is shown, and nothing after."""
        key = (run_id, kind, scope, int(k_requested))
        with self._lock:
            cached = self._selection_sets.get(key)
            if cached is None:
                cached = self._selection_sets[key] = {}
            missing = [int(c) for c in concept_ids if int(c) not in cached]
        if missing:
            rows = self._numpy(
                f"SELECT concept_id, unit_id FROM selections WHERE run_id = ? AND concept_id IN ({','.join(map(str, missing))}) "
                "AND kind = ? AND scope = ? AND k_requested = ? ORDER BY concept_id, rank", [run_id, kind, scope, int(k_requested)])
            cids, units = rows["concept_id"].astype(np.int64), rows["unit_id"].astype(np.int64)
            bounds = np.searchsorted(cids, np.asarray(missing, dtype=np.int64), side="left")
            ends = np.searchsorted(cids, np.asarray(missing, dtype=np.int64), side="right")
            with self._lock:
                for c, a, b in zip(missing, bounds, ends):
                    cached[c] = units[a:b]
        return {int(c): cached[int(c)] for c in concept_ids}

    def _selection_k(self, run_id: str, scope: str, k: int | None) -> int:
        """The stored set size to use: `k` checked against the run's `analysis.ks`, or the smallest of them."""
        ks = sorted(int(v) for v in ((self.run(run_id).get("config") or {}).get("analysis") or {}).get("ks", []))
        if not ks:
            ks = sorted(int(v) for v in self._numpy(
                "SELECT DISTINCT k_requested FROM selections WHERE run_id = ? AND scope = ?", [run_id, scope])["k_requested"])
        if not ks:
            raise QueryError(f"run {run_id} has no stored selections for scope {scope!r}")
        if k is None:
            return ks[0]
        if k not in ks:
            raise QueryError(f"k: run {run_id} stored selections of k in {_known(ks)} for {scope!r}, not {k}")
        return int(k)

    def concentration(self, run_id: str, stack: str, step: int | None = None, task: str | None = None,
                      metric: str = "gini") -> dict:
        """Concentration per layer x (task, language, modality): one series per cell row, values aligned with `layers`."""
        if metric not in CONCENTRATION_METRICS:
            raise QueryError(f"metric: unknown metric {metric!r}; expected one of {', '.join(CONCENTRATION_METRICS)}")
        self.layout(run_id).check_stack(stack)
        run = self.run(run_id)
        step = run["steps"][0] if step is None else step
        self.check_step(run_id, step)
        if task is not None:
            self.check_task(run_id, task)
        df = self._query(
            f"SELECT task, language, modality, layer, {metric} AS value, n_units FROM concentration "
            "WHERE run_id = ? AND stack = ? AND step = ?" + (" AND task = ?" if task else "") + " ORDER BY task, language, layer",
            [run_id, stack, step] + ([task] if task else []))
        layers = sorted(int(v) for v in df["layer"].unique())
        series = []
        for (t, lang, modality), g in df.groupby(["task", "language", "modality"], sort=False):
            by_layer = dict(zip(g["layer"].astype(int), g["value"].astype(float)))
            series.append({"task": t, "language": lang, "modality": modality,
                           "values": [_finite(by_layer.get(layer)) for layer in layers]})
        return {"run_id": run_id, "stack": stack, "step": step, "metric": metric, "layers": layers, "series": series}

    def concentration_units(self, run_id: str, stack: str, layer: int, task: str, language: str,
                            step: int | None = None, limit: int = 50, offset: int = 0) -> dict:
        """The units of one concentration cell ranked by mean |pooled activation| over the (task, language) items,
        each with its share of the layer's total: the measure the Gini coefficient of that cell is computed on."""
        layout = self.layout(run_id)
        stack_start, _ = layout.check_stack(stack)
        if layer not in layout.layers(stack):
            raise QueryError(f"layer: stack {stack} of run {run_id} has layers {_known(layout.layers(stack))}, not {layer}")
        run = self.run(run_id)
        self.check_task(run_id, task)
        step = run["steps"][0] if step is None else step
        self.check_step(run_id, step)
        items = self._items(run_id, task)
        labels = items["label"].to_numpy()
        if language not in set(labels):
            raise QueryError(f"language: task {task} of run {run_id} has no items labelled {language!r}; "
                             f"its languages are {_known(list(dict.fromkeys(labels)))}")
        modality = str(items["modality"].iloc[0])
        encoder = "speech_encoder" if modality == "speech" else "text_encoder"
        if stack not in (encoder, "text_decoder"):
            raise QueryError(f"stack: task {task} runs the {encoder} and the text_decoder, not the {stack}")
        name = f"text_decoder.step{step}" if stack == "text_decoder" else stack
        arr = self._array(Path(run["work_dir"]) / "acts" / task / f"{name}.npy", run_id)
        if arr is None:
            raise NotFoundError(f"the activation arrays of run {run_id} ({task}/{name}) are not available on this server")
        ids = np.concatenate([np.arange(a, b) for a, b in layout.ranges(stack, layer)])
        magnitude = mean_abs_activation(np.asarray(arr[ids - stack_start]), labels == language)
        total = float(magnitude.sum())
        order = np.argsort(-magnitude, kind="stable")
        share = magnitude[order] / total if total > 0 else np.full(len(order), 1.0 / len(order))
        cumulative = np.cumsum(share)
        page = order[offset: offset + limit]
        info = layout.unit_info(ids[page])
        units = [{"rank": offset + i + 1, "unit_id": int(r["unit_id"]), "site": r["site"], "channel": int(r["channel"]),
                  "component": r["component"], "mean_abs": float(magnitude[j]), "share": float(share[offset + i]),
                  "cumulative_share": float(cumulative[offset + i])}
                 for i, (j, r) in enumerate(zip(page, info.to_dict("records")))]
        return {"run_id": run_id, "stack": stack, "layer": layer, "task": task, "language": language,
                "modality": modality, "step": step, "n_items": int((labels == language).sum()), "n_units": int(len(ids)),
                "total": total, "gini": float(gini(magnitude)), "limit": limit, "offset": offset, "units": units}

    def overlap(self, run_id: str, role: str, step: int, set_kind: str = "top", k: int | None = None,
                metric: str = "c_over_k") -> dict:
        """Text-language x speech-language overlap matrix of decoder sets, with the chance level of each cell."""
        if metric not in OVERLAP_METRICS:
            raise QueryError(f"metric: unknown metric {metric!r}; expected one of {', '.join(OVERLAP_METRICS)}")
        self.check_step(run_id, step)
        df = self._query("SELECT * FROM overlap WHERE run_id = ? AND role = ? AND step = ? AND set_kind = ?",
                         [run_id, role, step, set_kind])
        if df.empty:
            raise NotFoundError(f"run {run_id} has no {set_kind!r} overlap for role {role!r} at step {step}")
        ks = sorted(int(v) for v in df["k"].unique())
        k = ks[0] if k is None else k
        if k not in ks:
            raise QueryError(f"k: overlap was computed for k in {_known(ks)}, not {k}")
        df = df[df["k"] == k]
        text_langs = list(dict.fromkeys(df.sort_values("text_concept")["text_lang"]))
        speech_langs = list(dict.fromkeys(df.sort_values("speech_concept")["speech_lang"]))
        chance_col = {"count": "chance_count", "c_over_k": "chance_c_over_k", "jaccard": "chance_jaccard"}[metric]
        cell = {(r["text_lang"], r["speech_lang"]): r for r in df.to_dict("records")}
        matrix = [[_finite(cell[(t, s)][metric]) if (t, s) in cell else None for s in speech_langs] for t in text_langs]
        chance = [[_finite(cell[(t, s)][chance_col]) if (t, s) in cell else None for s in speech_langs] for t in text_langs]
        counts = [[int(cell[(t, s)]["count"]) if (t, s) in cell else None for s in speech_langs] for t in text_langs]
        return {"run_id": run_id, "role": role, "step": step, "set_kind": set_kind, "k": k, "metric": metric,
                "scope": str(df["scope"].iloc[0]), "n_total": int(df["n_total"].iloc[0]), "text_langs": text_langs,
                "speech_langs": speech_langs, "matrix": matrix, "chance": chance, "counts": counts, "available_k": ks}

    def overlap_units(self, run_id: str, role: str, step: int, set_kind: str, k: int | None, text_lang: str,
                      speech_lang: str, limit: int = 200, offset: int = 0) -> dict:
        """The units shared by a cell's text and speech sets (click-through from the overlap matrix)."""
        self.check_step(run_id, step)
        df = self._query(
            "SELECT * FROM overlap WHERE run_id = ? AND role = ? AND step = ? AND set_kind = ? AND text_lang = ? "
            "AND speech_lang = ?" + (" AND k = ?" if k is not None else "") + " ORDER BY k",
            [run_id, role, step, set_kind, text_lang, speech_lang] + ([k] if k is not None else []))
        if df.empty:
            raise NotFoundError(f"run {run_id} has no {set_kind!r} overlap cell for role {role!r}, step {step}, "
                                f"text {text_lang!r} x speech {speech_lang!r}" + (f", k {k}" if k is not None else ""))
        row = df.iloc[0]
        shared = self._query(
            "SELECT t.unit_id, t.rank AS text_rank, s.rank AS speech_rank FROM selections t JOIN selections s "
            "ON t.unit_id = s.unit_id AND t.run_id = s.run_id WHERE t.run_id = ? AND t.concept_id = ? AND s.concept_id = ? "
            "AND t.kind = ? AND s.kind = ? AND t.scope = ? AND s.scope = ? AND t.k_requested = ? AND s.k_requested = ? "
            "ORDER BY t.rank, t.unit_id",
            [run_id, int(row["text_concept"]), int(row["speech_concept"]), set_kind, set_kind, row["scope"], row["scope"],
             int(row["k"]), int(row["k"])])
        shared = shared.drop_duplicates("unit_id")
        page = shared.iloc[offset: offset + limit]
        info = self.layout(run_id).unit_info(page["unit_id"].to_numpy())
        info["text_rank"] = page["text_rank"].to_numpy()
        info["speech_rank"] = page["speech_rank"].to_numpy()
        return {"run_id": run_id, "role": role, "step": step, "set_kind": set_kind, "k": int(row["k"]),
                "text_lang": text_lang, "speech_lang": speech_lang, "text_concept": int(row["text_concept"]),
                "speech_concept": int(row["speech_concept"]), "total": int(len(shared)), "limit": limit, "offset": offset,
                "units": [clean_record(r) for r in info.to_dict("records")]}

    def spearman(self, run_id: str, role: str, step: int, scope: str = "text_decoder", layer: int | None = None) -> dict:
        """Spearman rho matrices (text language x speech language); per layer for scope `text_decoder/layer`."""
        self.check_step(run_id, step)
        df = self._query("SELECT * FROM spearman WHERE run_id = ? AND role = ? AND step = ? AND scope = ?",
                         [run_id, role, step, scope])
        if df.empty:
            scopes = self._numpy("SELECT DISTINCT scope FROM spearman WHERE run_id = ?", [run_id])["scope"].tolist()
            raise NotFoundError(f"run {run_id} has no Spearman correlations for role {role!r}, step {step}, scope "
                                f"{scope!r}; scopes: {_known(sorted(scopes))}")
        if layer is not None:
            df = df[df["layer"] == layer]
            if df.empty:
                raise NotFoundError(f"run {run_id} has no Spearman correlations for layer {layer} in scope {scope!r}")
        text_langs = list(dict.fromkeys(df.sort_values("text_concept")["text_lang"]))
        speech_langs = list(dict.fromkeys(df.sort_values("speech_concept")["speech_lang"]))
        matrices = []
        for lyr, g in df.groupby("layer", sort=True):
            cell = {(r["text_lang"], r["speech_lang"]): r for r in g.to_dict("records")}
            matrices.append({
                "layer": int(lyr),
                "n_units": int(g["n_units"].iloc[0]),
                "matrix": [[_finite(cell[(t, s)]["rho"]) if (t, s) in cell else None for s in speech_langs] for t in text_langs],
            })
        return {"run_id": run_id, "role": role, "step": step, "scope": scope, "text_langs": text_langs,
                "speech_langs": speech_langs, "matrices": matrices}

    # -------------------------------------------------------------------------------------------- layers, units

    def layers(self, run_id: str) -> list[dict]:
        """Every (stack, layer) with its unit count per component and its sites."""
        s = self.layout(run_id).sites
        out = []
        for (stack, layer), g in s.groupby(["stack", "layer"], sort=False):
            out.append({"stack": stack, "layer": int(layer), "n_units": int(g["width"].sum()),
                        "components": {c: int(v) for c, v in g.groupby("component")["width"].sum().items()},
                        "sites": g["site"].tolist()})
        order = {s: i for i, s in enumerate(STACKS)}
        return sorted(out, key=lambda r: (order[r["stack"]], r["layer"]))

    def sites(self, run_id: str) -> list[dict]:
        return [clean_record(r) for r in self.layout(run_id).sites.to_dict("records")]

    def layer_units(self, run_id: str, stack: str, layer: int, concept_id: int, sort: str = "ap", descending: bool = True,
                    component: str | None = None, site: str | None = None, filters: dict[str, tuple[float | None, float | None]] | None = None,
                    limit: int = 50, offset: int = 0) -> dict:
        """One layer's units with their statistics for a concept: filtered by component, site and stat ranges, sorted, paged."""
        layout = self.layout(run_id)
        layout.check_stack(stack)
        if layer not in layout.layers(stack):
            raise NotFoundError(f"stack {stack} of run {run_id} has no layer {layer}; layers: {_known(layout.layers(stack))}")
        if sort not in SORT_COLUMNS:
            raise QueryError(f"sort: unknown column {sort!r}; sortable: {', '.join(SORT_COLUMNS)}")
        if component is not None and component not in COMPONENTS:
            raise QueryError(f"component: unknown component {component!r}; expected one of {', '.join(COMPONENTS)}")
        concept = self.concept(run_id, concept_id)
        if stack not in concept["stacks"]:
            raise QueryError(f"concept {concept_id} has statistics for {_known(concept['stacks'])}, not {stack}")
        if site is not None and site not in set(layout.sites.loc[(layout.sites["stack"] == stack) & (layout.sites["layer"] == layer), "site"]):
            raise QueryError(f"site: {site!r} is not a site of {stack} layer {layer}")
        ranges = layout.ranges(stack, layer, component, site)
        conds, params = [_range_sql(ranges)], [run_id, concept_id]
        for col, (lo, hi) in (filters or {}).items():
            if col not in STAT_COLUMNS:
                raise QueryError(f"filter: unknown statistic {col!r}; filterable: {', '.join(STAT_COLUMNS)}")
            if lo is not None:
                conds.append(f"{col} >= ?")
                params.append(float(lo))
            if hi is not None:
                conds.append(f"{col} <= ?")
                params.append(float(hi))
        order = "DESC" if descending else "ASC"
        tie = "" if sort == "unit_id" else ", unit_id ASC"
        df = self._query(
            "SELECT unit_id, ap, on_p50, on_p90, off_mean, off_p50, count(*) OVER () AS total FROM unit_stats "
            f"WHERE run_id = ? AND concept_id = ? AND {' AND '.join(conds)} ORDER BY {sort} {order} NULLS LAST{tie} "
            f"LIMIT {int(limit)} OFFSET {int(offset)}", params)
        total = int(df["total"].iloc[0]) if len(df) else self._count_layer(run_id, concept_id, conds, params) if offset else 0
        info = layout.unit_info(df["unit_id"].to_numpy())
        for col in STAT_COLUMNS:
            info[col] = df[col].to_numpy(np.float64)
        chance = concept["positives"] / max(concept["positives"] + concept["negatives"], 1)
        return {"run_id": run_id, "stack": stack, "layer": layer, "concept_id": concept_id, "chance_ap": chance,
                "sort": sort, "order": order.lower(), "total": total, "limit": limit, "offset": offset,
                "units": [clean_record(r) for r in info.to_dict("records")]}

    def _count_layer(self, run_id: str, concept_id: int, conds: list[str], params: list) -> int:
        return int(self._numpy(f"SELECT count(*) AS n FROM unit_stats WHERE run_id = ? AND concept_id = ? AND {' AND '.join(conds)}",
                               params)["n"][0])

    def unit(self, run_id: str, unit_id: int) -> dict:
        """One unit: where it sits and its statistics for every concept that has them."""
        layout = self.layout(run_id)
        layout.check_unit(unit_id)
        info = clean_record(layout.unit_info(np.array([unit_id])).iloc[0].to_dict())
        stats = self._query(
            "SELECT concept_id, ap, on_p50, on_p90, off_mean, off_p50 FROM unit_stats WHERE run_id = ? AND unit_id = ? "
            "ORDER BY concept_id", [run_id, unit_id])
        concepts = self._run_cache(run_id).concepts
        merged = stats.merge(concepts[["concept_id", "kind", "role", "task", "step", "language", "modality", "positives",
                                       "negatives"]], on="concept_id", how="left")
        merged["chance_ap"] = merged["positives"] / (merged["positives"] + merged["negatives"]).clip(lower=1)
        return {"run_id": run_id, **info, "stats": [clean_record(r) for r in merged.to_dict("records")]}

    def _items(self, run_id: str, task: str) -> pd.DataFrame:
        cache = self._run_cache(run_id)
        with self._lock:
            df = cache.items.get(task)
        if df is None:
            df = self._query(
                "SELECT i.item, i.example_id, i.label, i.src_lang, i.tgt_lang, i.modality, i.output_text, e.text "
                "FROM items i LEFT JOIN examples e ON e.run_id = i.run_id AND e.example_id = i.example_id "
                "WHERE i.run_id = ? AND i.task = ? ORDER BY i.item", [run_id, task])
            with self._lock:
                cache.items[task] = df
        return df

    def _unit_rows(self, run_id: str, unit_id: int, step: int | None, task: str | None) -> list[tuple[str, int | None, np.ndarray]]:
        """(task, step, values over the task's items) for each recorded array holding this unit."""
        layout = self.layout(run_id)
        layout.check_unit(unit_id)
        run = self.run(run_id)
        stack = layout.unit_info(np.array([unit_id]))["stack"].iloc[0]
        start = layout.stack_ranges[stack][0]
        tasks = run["tasks"] if task is None else [task]
        if task is not None:
            self.check_task(run_id, task)
        if step is not None:
            self.check_step(run_id, step)
        work = Path(run["work_dir"]) / "acts"
        out = []
        for t in tasks:
            if stack == "text_decoder":
                names = [(f"text_decoder.step{s}", s) for s in (run["steps"] if step is None else [step])]
            else:
                names = [(stack, None)]
            for name, s in names:
                arr = self._array(work / t / f"{name}.npy", run_id)
                if arr is None:
                    continue
                out.append((t, s, np.asarray(arr[unit_id - start], dtype=np.float64)))
        if not out:
            if not work.is_dir():
                raise NotFoundError(f"the activation arrays of run {run_id} are not available on this server")
            raise NotFoundError(f"run {run_id} recorded no {stack} activations for "
                                + (f"task {task}" if task else "any task") + (f" at step {step}" if step else ""))
        return out

    def _array(self, path: Path, run_id: str) -> np.ndarray | None:
        key = (run_id, str(path))
        with self._lock:
            arr = self._arrays.get(key)
            if arr is not None:
                return arr
        if not path.is_file():
            return None
        arr = np.load(path, mmap_mode="r")
        with self._lock:
            self._arrays[key] = arr
        return arr

    def unit_activations(self, run_id: str, unit_id: int, step: int | None = None, bins: int = 30) -> dict:
        """Distribution of a unit's pooled activation per (task, step, language, modality): quantiles and a histogram."""
        rows = self._unit_rows(run_id, unit_id, step, None)
        values = np.concatenate([v for _, _, v in rows])
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
        if hi <= lo:
            hi = lo + 1.0
        edges = np.linspace(lo, hi, bins + 1)
        groups = []
        for task, s, vals in rows:
            items = self._items(run_id, task)
            labels = items["label"].to_numpy()
            modality = str(items["modality"].iloc[0]) if len(items) else None
            for lang in dict.fromkeys(labels):
                v = vals[labels == lang]
                v = v[np.isfinite(v)]
                if not len(v):
                    continue
                q = np.quantile(v, [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0])
                groups.append({
                    "task": task, "step": s, "language": lang, "modality": modality, "n": int(len(v)),
                    "mean": float(v.mean()), "std": float(v.std()),
                    "quantiles": {"min": q[0], "p05": q[1], "p25": q[2], "p50": q[3], "p75": q[4], "p95": q[5], "max": q[6]},
                    "histogram": np.histogram(v, bins=edges)[0].tolist(),
                })
        return {"run_id": run_id, "unit_id": unit_id, "bin_edges": edges.tolist(), "groups": groups}

    def unit_examples(self, run_id: str, unit_id: int, task: str | None = None, step: int | None = None, n: int = 5) -> dict:
        """Items with the highest and lowest pooled activation of the unit, per (task, step)."""
        rows = self._unit_rows(run_id, unit_id, step, task)
        out = []
        for t, s, vals in rows:
            items = self._items(run_id, t)
            order = np.argsort(-np.nan_to_num(vals, nan=-np.inf), kind="stable")
            bottom = np.argsort(np.nan_to_num(vals, nan=np.inf), kind="stable")

            def pick(idx: np.ndarray) -> list[dict]:
                sub = items.iloc[idx[:n]].copy()
                sub["activation"] = vals[idx[:n]]
                return [clean_record(r) for r in sub.to_dict("records")]

            out.append({"task": t, "step": s, "top": pick(order), "bottom": pick(bottom)})
        return {"run_id": run_id, "unit_id": unit_id, "n": n, "sets": out}

    def interventions(self, run_id: str, experiment: str | None = None, input_task: str | None = None,
                      language: str | None = None, step: int | None = None) -> dict:
        """The batch intervention conditions of a run (one row per condition: its labels, spec and mean metrics),
        with the unintervened baseline of each (input task, language) alongside."""
        self._run_cache(run_id)
        if input_task is not None:
            self.check_task(run_id, input_task, "input_task")
        if language is not None:
            self.check_language(run_id, language)
        if step is not None:
            self.check_step(run_id, step)
        conds, params = ["run_id = ?"], [run_id]
        for column, value in (("experiment", experiment), ("input_task", input_task), ("language", language),
                              ("step", step)):
            if value is not None:
                conds.append(f"{column} = ?")
                params.append(value)
        df = self._query(f"SELECT * EXCLUDE (run_id) FROM interventions WHERE {' AND '.join(conds)} "
                         "ORDER BY experiment_id", params)
        known = self._query("SELECT DISTINCT experiment FROM interventions WHERE run_id = ?", [run_id])["experiment"]
        if experiment is not None and experiment not in set(known):
            raise QueryError(f"experiment: run {run_id} has no {experiment!r} experiments; it has {_known(sorted(known))}")
        rows = []
        for r in df.to_dict("records"):
            rec = clean_record(r)
            if isinstance(rec.get("spec"), str):
                rec["spec"] = json.loads(rec["spec"])
            rows.append(rec)
        return {"run_id": run_id, "experiments": sorted(known), "conditions": rows}

    def intervention_outputs(self, run_id: str, experiment_id: int, limit: int = 100, offset: int = 0) -> dict:
        """The per-item outputs and metrics of one batch condition."""
        self._run_cache(run_id)
        head = self._query("SELECT * EXCLUDE (run_id) FROM interventions WHERE run_id = ? AND experiment_id = ?",
                           [run_id, experiment_id])
        if head.empty:
            raise NotFoundError(f"run {run_id} has no intervention condition {experiment_id}")
        df = self._query("SELECT * EXCLUDE (run_id), count(*) OVER () AS total FROM intervention_outputs "
                         f"WHERE run_id = ? AND experiment_id = ? ORDER BY item LIMIT {int(limit)} OFFSET {int(offset)}",
                         [run_id, experiment_id])
        total = int(df["total"].iloc[0]) if len(df) else 0
        rows = []
        for r in df.drop(columns="total").to_dict("records"):
            rec = clean_record(r)
            if isinstance(rec.get("lang_probs"), str):
                rec["lang_probs"] = json.loads(rec["lang_probs"])
            rows.append(rec)
        cond = clean_record(head.iloc[0].to_dict())
        if isinstance(cond.get("spec"), str):
            cond["spec"] = json.loads(cond["spec"])
        return {"run_id": run_id, "condition": cond, "total": total, "limit": limit, "offset": offset, "outputs": rows}

    def item_of(self, run_id: str, task: str, example_id: str, tgt_lang: str | None = None) -> dict:
        """The recorded item of `task` fed by `example_id` (en->X tasks feed one English example to several target
        languages: `tgt_lang` picks one, else the first in item order)."""
        self.check_task(run_id, task)
        rows = self._query("SELECT task, item, example_id, label, src_lang, tgt_lang, modality, reference FROM items "
                           "WHERE run_id = ? AND task = ? AND example_id = ? ORDER BY item", [run_id, task, example_id])
        if rows.empty:
            self.example(run_id, example_id)
            raise NotFoundError(f"example {example_id!r} is not an input of task {task} in run {run_id} "
                                "(X->en tasks take non-English inputs; en->X tasks take the English example)")
        if tgt_lang is not None:
            rows = rows[rows["tgt_lang"] == tgt_lang]
            if rows.empty:
                raise NotFoundError(f"tgt_lang: task {task} has no item from {example_id!r} into {tgt_lang!r}")
        return clean_record(rows.iloc[0].to_dict())

    def unit_value(self, run_id: str, unit_id: int, task: str, step: int | None, item: int) -> float | None:
        """The stored pooled activation of a unit on one item (decoder units at `step`); None when not recorded."""
        layout = self.layout(run_id)
        layout.check_unit(unit_id)
        decoder = layout.unit_info(np.array([unit_id]))["stack"].iloc[0] == "text_decoder"
        rows = self._unit_rows(run_id, unit_id, step if decoder else None, task)
        for _, s, values in rows:
            if (not decoder or s == step) and 0 <= item < len(values) and np.isfinite(values[item]):
                return float(values[item])
        return None

    # ------------------------------------------------------------------------------------------------ examples

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
            where = f" WHERE run_id = '{_sql_string(run_id)}'"
        fd, name = tempfile.mkstemp(prefix=f"export-{table}-", suffix=".parquet", dir=directory)
        os.close(fd)
        path = Path(name)
        cur = self.cursor()
        try:
            cur.execute(f"COPY (SELECT * FROM {table}{where}) TO '{_sql_string(path.as_posix())}' (FORMAT parquet, COMPRESSION zstd)")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        finally:
            cur.close()
        return path


def _sql_string(text: str) -> str:
    return text.replace("'", "''")


def _finite(v) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if np.isfinite(v) else None


def _clean_value(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return _finite(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.ndarray):
        return [_clean_value(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_clean_value(x) for x in v]
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    if v is pd.NaT or (v is not None and not isinstance(v, (str, bytes, dict)) and pd.isna(v) is True):
        return None
    return v


def clean_record(r: dict) -> dict:
    """JSON-safe values: numpy scalars to Python, NaN/inf to None, timestamps to ISO strings."""
    return {k: _clean_value(v) for k, v in r.items()}


# ------------------------------------------------------------------------------------------- statistics source


class StoreStats:
    """The store's statistics of one run as the intervention engine's `UnitStatsSource`.

    Selections run the engine's `select_units` on the scope's `unit_stats` rows, as the batch experiments do on the
    same statistics from the run's Parquet files, so both paths force the same units. With no stack the scope is
    every stack the concept has statistics for; `component` may be a component or the group `attention`.
    """

    def __init__(self, reader: StoreReader, run_id: str):
        self.reader = reader
        self.run_id = run_id

    def concept_exists(self, concept_id: int) -> bool:
        return self.reader.concept_exists(self.run_id, int(concept_id))

    def selection(self, concept_id: int, set: str, k: int, seed: int, stack: str | None, component: str | None) -> np.ndarray:
        concept = self.reader.concept(self.run_id, concept_id)
        layout = self.reader.layout(self.run_id)
        stacks = list(concept["stacks"]) if stack is None else [stack]
        if stack is not None and stack not in concept["stacks"]:
            raise SpecError("units.stack", f"concept {concept_id} has statistics for {_known(concept['stacks'])}, not {stack}")
        ranges: list[tuple[int, int]] = []
        for s in stacks:
            if component is None:
                ranges.append(layout.stack_ranges[s])
            else:
                for member in component_members(component):
                    ranges += layout.ranges(s, component=member)
        scope_label = (stack or "all stacks") + (f" ({component})" if component else "")
        rows = self.reader._numpy(f"SELECT unit_id, ap FROM unit_stats WHERE run_id = ? AND concept_id = ? AND "
                                  f"{_range_sql(ranges)} AND NOT isnan(ap) ORDER BY unit_id", [self.run_id, concept_id])
        return select_units(rows["unit_id"], rows["ap"], set, k, seed, f"{scope_label} with an AP for concept {concept_id}")

    def unit_values(self, concept_id: int, unit_ids: np.ndarray, stat: str) -> np.ndarray:
        if stat not in STATISTICS:
            raise SpecError("value.kind", f"unknown statistic {stat!r}; expected one of {STATISTICS}")
        ids = np.asarray(unit_ids, dtype=np.int64)
        out = np.full(len(ids), np.nan, dtype=np.float32)
        if not len(ids):
            return out
        cur = self.reader.cursor()
        try:
            cur.register("_wanted", pd.DataFrame({"unit_id": ids.astype(np.int32)}))
            rows = cur.execute(
                f"SELECT s.unit_id, s.{stat} AS v FROM unit_stats s SEMI JOIN _wanted w ON s.unit_id = w.unit_id "
                f"WHERE s.run_id = ? AND s.concept_id = ? AND s.unit_id >= ? AND s.unit_id <= ?",
                [self.run_id, int(concept_id), int(ids.min()), int(ids.max())]).fetchnumpy()
        finally:
            cur.close()
        order = np.argsort(ids)
        pos = np.searchsorted(ids[order], rows["unit_id"].astype(np.int64))
        out[order[pos]] = rows["v"].astype(np.float32)
        return out
