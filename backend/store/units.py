"""Layer and unit queries: unit listings, one unit's statistics, its stored activation distribution and examples."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from backend.store.base import StoreBase
from backend.store.common import SORT_COLUMNS, STAT_COLUMNS, NotFoundError, QueryError, clean_record, finite, known
from backend.store.layout import range_sql
from neuron_atlas.engine.model.unit_sites import COMPONENTS, STACKS
from neuron_atlas.engine.tasks import TASKS
from neuron_atlas.engine.store_schema import TOP_EXAMPLES
from neuron_atlas.engine.store_schema import UNIT_QUANTILES as QUANTILES


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

    def _unit_summary(self, table: str, run_id: str, unit_id: int, task: str | None, step: int | None,
                      columns: str) -> list[dict]:
        """A unit's rows of a summary table (`unit_distributions` or `unit_examples`) as records, filtered by task and
        step (an encoder's rows have no step and match every step), in the run's task order, then step; raises when
        there are none."""
        layout = self.layout(run_id)
        layout.check_unit(unit_id)
        run = self.run(run_id)
        if task is not None:
            self.check_task(run_id, task)
        if step is not None:
            self.check_step(run_id, step)
        self._check_summaries(run_id)
        conds, params = ["run_id = ?", "unit_id = ?"], [run_id, unit_id]
        if task is not None:
            conds.append("task = ?")
            params.append(task)
        if step is not None:
            conds.append("(step IS NULL OR step = ?)")
            params.append(step)
        cur = self.cursor()
        try:
            cur.execute(f"SELECT {columns} FROM {table} WHERE {' AND '.join(conds)}", params)
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, r)) for r in cur.fetchall()]
        finally:
            cur.close()
        if not rows:
            stack = str(layout.unit_info(np.array([unit_id]))["stack"].iloc[0])
            raise NotFoundError(f"run {run_id} recorded no {stack} activations of unit {unit_id} for "
                                + (f"task {task}" if task else "any task") + (f" at step {step}" if step else ""))
        order = {t: i for i, t in enumerate(run["tasks"])}
        return sorted(rows, key=lambda r: (order.get(r["task"], len(order)), -1 if r["step"] is None else r["step"]))

    def unit_activations(self, run_id: str, unit_id: int, step: int | None = None) -> dict:
        """Distribution of a unit's pooled activation per (task, step, language, modality): count, mean, std and
        quantiles, as stored by precompute (`unit_distributions`)."""
        names = [name for name, _ in QUANTILES]
        rows = self._unit_summary("unit_distributions", run_id, unit_id, None, step,
                                  f"task, step, language, n, mean, std, {', '.join(names)}")
        rank = {t: {lang: i for i, lang in enumerate(self._languages_of(run_id, t))} for t in {r["task"] for r in rows}}
        order = {t: i for i, t in enumerate(self.run(run_id)["tasks"])}
        rows.sort(key=lambda r: (order.get(r["task"], len(order)), -1 if r["step"] is None else r["step"],
                                 rank[r["task"]].get(r["language"], len(rank[r["task"]]))))
        groups = [{"task": r["task"], "step": r["step"], "language": r["language"], "modality": TASKS[r["task"]].modality,
                   "n": int(r["n"]), "mean": finite(r["mean"]), "std": finite(r["std"]),
                   "quantiles": {name: finite(r[name]) for name in names}} for r in rows]
        return {"run_id": run_id, "unit_id": unit_id, "groups": groups}

    def activation_moments(self, run_id: str, task: str, stack: str, step: int | None) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-unit mean and standard deviation of one stack's pooled activations over a task's items (the decoder at
        prefix length `step`), pooled from the stored per-language moments (`unit_distributions`), one entry per unit
        of the stack (NaN where a unit has no values); None for a store without them."""
        cache = self._run_cache(run_id)
        key = (task, stack, step)
        with self._lock:
            hit = cache.moments.get(key)
        if hit is not None:
            return hit
        try:
            self._check_summaries(run_id)
        except NotFoundError:
            return None
        start, stop = cache.layout.check_stack(stack)
        step_cond = "step = ?" if stack == "text_decoder" else "step IS NULL"
        params = [run_id, task, start, stop] + ([step] if stack == "text_decoder" else [])
        df = self._query(  # the pooled variance as within-language variance plus the spread of the language means
            "WITH g AS (SELECT unit_id, n::DOUBLE AS n, mean::DOUBLE AS mean, std::DOUBLE AS std FROM unit_distributions "
            f"WHERE run_id = ? AND task = ? AND unit_id >= ? AND unit_id < ? AND {step_cond}), "
            "m AS (SELECT unit_id, sum(n * mean) / sum(n) AS pooled FROM g GROUP BY unit_id) "
            "SELECT g.unit_id, any_value(m.pooled) AS mean, "
            "sqrt(sum(g.n * (g.std * g.std + (g.mean - m.pooled) * (g.mean - m.pooled))) / sum(g.n)) AS std "
            "FROM g JOIN m USING (unit_id) GROUP BY g.unit_id", params)
        mean, std = np.full(stop - start, np.nan), np.full(stop - start, np.nan)
        idx = df["unit_id"].to_numpy(np.int64) - start
        mean[idx], std[idx] = df["mean"].to_numpy(np.float64), df["std"].to_numpy(np.float64)
        with self._lock:
            cache.moments[key] = (mean, std)
        return mean, std

    def _languages_of(self, run_id: str, task: str) -> list[str]:
        """A task's label languages in item order (the order the distribution groups are listed in)."""
        return list(dict.fromkeys(self._items(run_id, task)["label"]))

    def _item_records(self, run_id: str, task: str) -> list[dict]:
        """A task's items as JSON-ready records, position = item number (cached with the run)."""
        cache = self._run_cache(run_id)
        with self._lock:
            records = cache.item_records.get(task)
        if records is None:
            items = self._items(run_id, task)
            records = [None] * (int(items["item"].max()) + 1 if len(items) else 0)
            for rec in items.to_dict("records"):
                records[int(rec["item"])] = clean_record(rec)
            with self._lock:
                cache.item_records[task] = records
        return records

    def unit_examples(self, run_id: str, unit_id: int, task: str | None = None, step: int | None = None, n: int = 5,
                      offset: int = 0) -> dict:
        """Items with the highest and lowest pooled activation of the unit, per (task, step): ranks offset+1 to
        offset+n of the `TOP_EXAMPLES` the store keeps per end (`unit_examples`); `total` = how many it keeps
        for that (task, step), what a pager can reach."""
        if n < 1 or offset < 0:
            raise QueryError(f"n must be at least 1 and offset at least 0, not n={n}, offset={offset}")
        if n + offset > TOP_EXAMPLES:
            raise QueryError(f"n + offset: the store keeps the {TOP_EXAMPLES} highest and lowest items of each unit, "
                             f"so n + offset must be at most {TOP_EXAMPLES}, not {n + offset}")
        rows = self._unit_summary("unit_examples", run_id, unit_id, task, step,
                                  "task, step, top_items, top_values, bottom_items, bottom_values")
        out = []
        for r in rows:
            records = self._item_records(run_id, r["task"])

            def pick(ids: list, values: list) -> list[dict]:
                return [{**records[int(i)], "activation": finite(v)}
                        for i, v in zip(ids[offset:offset + n], values[offset:offset + n])]

            out.append({"task": r["task"], "step": r["step"], "total": len(r["top_items"]), "stored": len(r["top_items"]),
                        "top": pick(r["top_items"], r["top_values"]), "bottom": pick(r["bottom_items"], r["bottom_values"])})
        return {"run_id": run_id, "unit_id": unit_id, "n": n, "offset": offset, "sets": out}

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
        """The stored pooled activation of a unit on one item (decoder units at `step`), from the unit's stored highest
        and lowest items (`unit_examples`); None when the item is not among them or was not recorded."""
        layout = self.layout(run_id)
        layout.check_unit(unit_id)
        decoder = layout.unit_info(np.array([unit_id]))["stack"].iloc[0] == "text_decoder"
        if not decoder:
            step = None
        try:
            rows = self._unit_summary("unit_examples", run_id, unit_id, task, step,
                                      "task, step, top_items, top_values, bottom_items, bottom_values")
        except NotFoundError:
            return None
        for r in rows:
            for ids, values in ((r["top_items"], r["top_values"]), (r["bottom_items"], r["bottom_values"])):
                hit = np.flatnonzero(np.asarray(ids) == item)
                if hit.size and np.isfinite(values[hit[0]]):
                    return float(values[hit[0]])
        return None
