"""Layer and unit queries: unit listings, one unit's statistics, activations from the work folder's arrays, examples."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from backend.store.base import StoreBase
from backend.store.common import SORT_COLUMNS, STAT_COLUMNS, NotFoundError, QueryError, clean_record, finite, known
from backend.store.layout import range_sql
from neuron_atlas.engine.model.unit_sites import COMPONENTS, STACKS


class UnitQueries(StoreBase):
    """Layers, sites, units and their recorded activations."""

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
            raise NotFoundError(f"stack {stack} of run {run_id} has no layer {layer}; layers: {known(layout.layers(stack))}")
        if sort not in SORT_COLUMNS:
            raise QueryError(f"sort: unknown column {sort!r}; sortable: {', '.join(SORT_COLUMNS)}")
        if component is not None and component not in COMPONENTS:
            raise QueryError(f"component: unknown component {component!r}; expected one of {', '.join(COMPONENTS)}")
        concept = self.concept(run_id, concept_id)
        if stack not in concept["stacks"]:
            raise QueryError(f"concept {concept_id} has statistics for {known(concept['stacks'])}, not {stack}")
        if site is not None and site not in set(layout.sites.loc[(layout.sites["stack"] == stack) & (layout.sites["layer"] == layer), "site"]):
            raise QueryError(f"site: {site!r} is not a site of {stack} layer {layer}")
        ranges = layout.ranges(stack, layer, component, site)
        conds, params = [range_sql(ranges)], [run_id, concept_id]
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

    def activation_moments(self, run_id: str, task: str, stack: str, step: int | None) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-unit mean and standard deviation of one stack's pooled activations over a task's items (the decoder at
        prefix length `step`), from the run's unit-major arrays; None when the arrays are not on this server. Kept in
        the open-array cache, as an array is."""
        run = self.run(run_id)
        name = f"text_decoder.step{step}" if stack == "text_decoder" else stack
        key = (run_id, "moments", task, name)
        with self._lock:
            hit = self._arrays.get(key)
        if hit is not None:
            return hit
        arr = self._array(Path(run["work_dir"]) / "acts" / task / f"{name}.npy", run_id)
        if arr is None:
            return None
        values = np.asarray(arr, dtype=np.float64)
        with warnings.catch_warnings():  # units a faithful run left NaN on every item get NaN moments, silently
            warnings.simplefilter("ignore", RuntimeWarning)
            moments = (np.nanmean(values, axis=1), np.nanstd(values, axis=1))
        with self._lock:
            self._arrays[key] = moments
        return moments

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
            raise QueryError(f"experiment: run {run_id} has no {experiment!r} experiments; it has {known(sorted(known))}")
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
