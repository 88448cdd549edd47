"""Analysis queries: selectivity heatmaps, stored selection sets, concentration, cross-modal overlap and Spearman.

Heavy queries only pull unit ids, or counts per block of units that never straddles a site (the gcd of the site
offsets: 1024 units in the large model), out of DuckDB and aggregate them vectorised with the run's layout."""
from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from backend.store.base import StoreBase
from backend.store.common import (
    CONCENTRATION_METRICS,
    HEATMAP_MODES,
    MAX_HEATMAP_CONCEPTS,
    OVERLAP_METRICS,
    NotFoundError,
    QueryError,
    clean_record,
    finite,
    known,
)
from backend.store.layout import range_sql
from neuron_atlas.engine.concentration import gini
from neuron_atlas.engine.model.unit_sites import COMPONENTS


class AnalysisQueries(StoreBase):
    """Heatmaps, selections, concentration, overlap and Spearman of a run."""

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

    def selections(self, run_id: str, set_kind: str, scope: str, k_requested: int, concept_ids: Sequence[int]) -> dict[int, np.ndarray]:
        """Stored selection sets (unit ids) of the given concepts, cached per (run, set kind, scope, k): heatmaps of stored
        sets then cost one small query the first time a concept is shown, and nothing after."""
        key = (run_id, set_kind, scope, int(k_requested))
        with self._lock:
            cached = self._selection_sets.get(key)
            if cached is None:
                cached = self._selection_sets[key] = {}
            missing = [int(c) for c in concept_ids if int(c) not in cached]
        if missing:
            rows = self._numpy(
                f"SELECT concept_id, unit_id FROM selections WHERE run_id = ? AND concept_id IN ({','.join(map(str, missing))}) "
                "AND kind = ? AND scope = ? AND k_requested = ? ORDER BY concept_id, rank", [run_id, set_kind, scope, int(k_requested)])
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
            raise QueryError(f"k: run {run_id} stored selections of k in {known(ks)} for {scope!r}, not {k}")
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
                           "values": [finite(by_layer.get(layer)) for layer in layers]})
        return {"run_id": run_id, "stack": stack, "step": step, "metric": metric, "layers": layers, "series": series}

    def concentration_units(self, run_id: str, stack: str, layer: int, task: str, language: str,
                            step: int | None = None, limit: int = 50, offset: int = 0) -> dict:
        """The units of one concentration cell ranked by mean |pooled activation| over the (task, language) items,
        each with its share of the layer's total: the measure the Gini coefficient of that cell is computed on."""
        layout = self.layout(run_id)
        layout.check_stack(stack)
        if layer not in layout.layers(stack):
            raise QueryError(f"layer: stack {stack} of run {run_id} has layers {known(layout.layers(stack))}, not {layer}")
        run = self.run(run_id)
        self.check_task(run_id, task)
        step = run["steps"][0] if step is None else step
        self.check_step(run_id, step)
        items = self._items(run_id, task)
        labels = items["label"].to_numpy()
        if language not in set(labels):
            raise QueryError(f"language: task {task} of run {run_id} has no items labelled {language!r}; "
                             f"its languages are {known(list(dict.fromkeys(labels)))}")
        modality = str(items["modality"].iloc[0])
        encoder = "speech_encoder" if modality == "speech" else "text_encoder"
        if stack not in (encoder, "text_decoder"):
            raise QueryError(f"stack: task {task} runs the {encoder} and the text_decoder, not the {stack}")
        self._check_summaries(run_id)
        df = self._numpy(
            "SELECT unit_id, mean_abs FROM unit_distributions WHERE run_id = ? AND task = ? AND language = ? AND "
            f"{'step = ?' if stack == 'text_decoder' else 'step IS NULL'} AND {range_sql(layout.ranges(stack, layer))} "
            "ORDER BY unit_id", [run_id, task, language] + ([step] if stack == "text_decoder" else []))
        if not len(df["unit_id"]):
            raise NotFoundError(f"run {run_id} recorded no {stack} layer {layer} activations for task {task}")
        ids, magnitude = df["unit_id"].astype(np.int64), df["mean_abs"].astype(np.float64)
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
            raise QueryError(f"k: overlap was computed for k in {known(ks)}, not {k}")
        df = df[df["k"] == k]
        text_langs = list(dict.fromkeys(df.sort_values("text_concept")["text_lang"]))
        speech_langs = list(dict.fromkeys(df.sort_values("speech_concept")["speech_lang"]))
        chance_col = {"count": "chance_count", "c_over_k": "chance_c_over_k", "jaccard": "chance_jaccard"}[metric]
        cell = {(r["text_lang"], r["speech_lang"]): r for r in df.to_dict("records")}
        matrix = [[finite(cell[(t, s)][metric]) if (t, s) in cell else None for s in speech_langs] for t in text_langs]
        chance = [[finite(cell[(t, s)][chance_col]) if (t, s) in cell else None for s in speech_langs] for t in text_langs]
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
                                f"{scope!r}; scopes: {known(sorted(scopes))}")
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
                "matrix": [[finite(cell[(t, s)]["rho"]) if (t, s) in cell else None for s in speech_langs] for t in text_langs],
            })
        return {"run_id": run_id, "role": role, "step": step, "scope": scope, "text_langs": text_langs,
                "speech_langs": speech_langs, "matrices": matrices}
