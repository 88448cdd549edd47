"""Statistics over a recorded run: concepts, per-unit AP and quantiles, selections, concentration, cross-modal.

Concepts follow the spec: language (task x step x language, one-vs-rest), multimodal language (s2tt+t2tt, or the
en2x pair, labelled by language regardless of modality; decoder units) and modality (speech vs text, pooled and per
language; decoder units). Per-unit statistics stream to Parquet files in the run folder, one per concept, so memory
stays bounded at full scale; the store ingests them with one `read_parquet`.
"""
from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from neuron_atlas.engine.model.unit_sites import SiteRegistry
from precompute.store_writer import ingest_unit_summaries, insert_frame
from precompute.unit_summaries import write_unit_summaries
from precompute.activation_store import decoder_name, load_acts
from neuron_atlas.engine.concentration import group_concentration, mean_abs_activation
from precompute.crossmodal import overlap_matrix, spearman_matrix
from neuron_atlas.engine.record import encoder_stack
from precompute.selectivity import UnitStats, build_selections, unit_stats
from neuron_atlas.engine.tasks import TASKS, TaskItem

DECODER = "text_decoder"
PAIRS = {"representation": ("t2tt", "s2tt"), "control": ("en2x_t2tt", "en2x_s2tt")}  # (text task, speech task)


@dataclass
class ConceptDef:
    """A binary labelling of items: which (task, item) columns are in, and which of them are positive."""

    concept_id: int
    kind: str
    role: str
    task: str
    step: int
    language: str | None
    modality: str | None
    stacks: list[str]
    columns: list[tuple[str, np.ndarray]]
    labels: np.ndarray
    description: str

    def row(self, run_id: str) -> dict:
        return {
            "run_id": run_id, "concept_id": self.concept_id, "kind": self.kind, "role": self.role, "task": self.task,
            "step": self.step, "language": self.language, "modality": self.modality,
            "positives": int(self.labels.sum()), "negatives": int((~self.labels).sum()), "stacks": self.stacks,
            "description": self.description,
        }


def define_concepts(items: dict[str, Sequence[TaskItem]], steps: Sequence[int]) -> list[ConceptDef]:
    """Every concept the spec lists that the recorded tasks allow, with a stable id order."""
    out: list[ConceptDef] = []

    def add(**kw):
        labels = kw["labels"]
        if labels.all() or not labels.any():
            return
        out.append(ConceptDef(concept_id=len(out), **kw))

    for step in steps:
        for task, rows in items.items():
            labels = np.array([it.label for it in rows])
            idx = np.array([it.index for it in rows], dtype=np.int64)
            tdef = TASKS[task]
            for lang in dict.fromkeys(labels):
                add(kind="language", role=tdef.role, task=task, step=step, language=lang, modality=tdef.modality,
                    stacks=[encoder_stack(task), DECODER], columns=[(task, idx)], labels=labels == lang,
                    description=f"{lang} vs other languages, {task}, step {step}")
        for role, (text_task, speech_task) in PAIRS.items():
            if text_task not in items or speech_task not in items:
                continue
            t_rows, s_rows = items[text_task], items[speech_task]
            langs = np.array([it.label for it in t_rows] + [it.label for it in s_rows])
            cols = [(text_task, np.array([it.index for it in t_rows], dtype=np.int64)),
                    (speech_task, np.array([it.index for it in s_rows], dtype=np.int64))]
            pair = f"{speech_task}+{text_task}"
            for lang in dict.fromkeys(langs):
                add(kind="multimodal_language", role=role, task=pair, step=step, language=lang, modality=None,
                    stacks=[DECODER], columns=cols, labels=langs == lang,
                    description=f"{lang} vs other languages from speech and text alike ({pair}), step {step}")
            is_speech = np.r_[np.zeros(len(t_rows), bool), np.ones(len(s_rows), bool)]
            add(kind="modality", role=role, task=pair, step=step, language=None, modality="speech", stacks=[DECODER],
                columns=cols, labels=is_speech, description=f"speech vs text input, all languages ({pair}), step {step}")
            for lang in dict.fromkeys(langs):
                t_idx = np.array([it.index for it in t_rows if it.label == lang], dtype=np.int64)
                s_idx = np.array([it.index for it in s_rows if it.label == lang], dtype=np.int64)
                add(kind="modality", role=role, task=pair, step=step, language=lang, modality="speech", stacks=[DECODER],
                    columns=[(text_task, t_idx), (speech_task, s_idx)],
                    labels=np.r_[np.zeros(len(t_idx), bool), np.ones(len(s_idx), bool)],
                    description=f"speech vs text input, {lang} ({pair}), step {step}")
    return out


def recorded_units(acts: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Units with values for the given (kept) items: a faithful run blanks the sites the reference drops with NaN for
    every item, and a kept item has values everywhere else, so one column tells (a strided read, not the matrix)."""
    if columns.size == 0:
        return np.ones(acts.shape[0], bool)
    return np.isfinite(np.asarray(acts[:, int(columns[0])]))


def concept_matrix(root: Path, concept: ConceptDef, stack: str) -> np.ndarray:
    """[units of stack, concept items] activations, concatenating the concept's task columns."""
    name = decoder_name(concept.step) if stack == DECODER else stack
    parts = [np.asarray(load_acts(root, task, name)[:, cols]) for task, cols in concept.columns]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def group_concepts(concepts: Sequence[ConceptDef]) -> dict[tuple[str, tuple], list[ConceptDef]]:
    """Concepts that read the same activation matrix, per stack: one sort then serves all of them.

    Decoder matrices depend on the step; encoder matrices do not, so an encoder group spans every step.
    """
    groups: dict[tuple[str, tuple], list[ConceptDef]] = {}
    for c in concepts:
        cols = tuple((task, idx.tobytes()) for task, idx in c.columns)
        for stack in c.stacks:
            key = (stack, (c.step if stack == DECODER else None, cols))
            groups.setdefault(key, []).append(c)
    return groups


def decoder_scopes(registry: SiteRegistry, stack: str) -> dict[str, np.ndarray]:
    """Selection scopes within a stack (as boolean masks over its units): the stack, and for the decoder its
    attention-only and FFN-only parts."""
    units = registry.units_frame()
    units = units[units["stack"] == stack]
    scopes = {stack: np.ones(len(units), bool)}
    if stack == DECODER:
        comp = units["component"].to_numpy()
        scopes[f"{DECODER}/attention"] = np.isin(comp, ["self-attn", "cross-attn"])
        scopes[f"{DECODER}/ffn"] = comp == "ffn"
    return scopes


@dataclass
class AnalysisResult:
    """Frames and Parquet files of one run's statistics, ready for the store."""

    stats_dir: Path
    concepts: pd.DataFrame
    selections: pd.DataFrame
    concentration: pd.DataFrame
    overlap: pd.DataFrame
    spearman: pd.DataFrame
    timings: dict = field(default_factory=dict)

    def write(self, con: duckdb.DuckDBPyConnection, run_id: str) -> None:
        insert_frame(con, "concepts", self.concepts)
        files = sorted(self.stats_dir.glob("concept-*.parquet"))
        if files:
            con.execute(
                "INSERT INTO unit_stats SELECT ?, concept_id, unit_id, ap, on_p50, on_p90, off_mean, off_p50 "
                "FROM read_parquet(?) ORDER BY concept_id, unit_id",
                [run_id, [str(f) for f in files]],
            )
        insert_frame(con, "selections", self.selections)
        insert_frame(con, "concentration", self.concentration)
        insert_frame(con, "overlap", self.overlap)
        insert_frame(con, "spearman", self.spearman)
        ingest_unit_summaries(con, run_id, self.stats_dir / "units")


def _write_stats(path: Path, concept_id: int, unit_ids: np.ndarray, stats) -> None:
    table = pa.table({
        "concept_id": pa.array(np.full(len(unit_ids), concept_id, np.int32)),
        "unit_id": pa.array(unit_ids.astype(np.int32)),
        "ap": pa.array(stats.ap.astype(np.float64)),
        "on_p50": pa.array(stats.on_p50.astype(np.float32)),
        "on_p90": pa.array(stats.on_p90.astype(np.float32)),
        "off_mean": pa.array(stats.off_mean.astype(np.float32)),
        "off_p50": pa.array(stats.off_p50.astype(np.float32)),
    })
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def compute_concentration(root: Path, registry: SiteRegistry, items: dict[str, Sequence[TaskItem]], steps: Sequence[int], run_id: str) -> pd.DataFrame:
    """Gini and top-1 % share of per-unit mean |activation| per (task, language, step, stack, layer)."""
    frames = []
    units = registry.units_frame()
    for task, rows in items.items():
        labels = np.array([it.label for it in rows])
        index = np.array([it.index for it in rows], dtype=np.int64)
        for stack in (encoder_stack(task), DECODER):
            layers = units.loc[units["stack"] == stack, "layer"].to_numpy()
            for step in steps:
                acts = load_acts(root, task, decoder_name(step) if stack == DECODER else stack)
                recorded = recorded_units(acts, index) if stack != DECODER else np.ones(acts.shape[0], bool)
                for lang in dict.fromkeys(labels):
                    chosen = np.zeros(acts.shape[1], bool)
                    chosen[index[labels == lang]] = True
                    values = mean_abs_activation(acts[recorded] if not recorded.all() else acts, chosen)
                    g = group_concentration(values, layers[recorded])
                    frames.append(pd.DataFrame({
                        "run_id": run_id, "task": task, "language": lang, "modality": TASKS[task].modality,
                        "step": step, "stack": stack, "layer": g["group"], "n_units": g["n_units"],
                        "gini": g["gini"], "top1_share": g["top1_share"], "total": g["total"],
                    }))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def compute_crossmodal(concepts: list[ConceptDef], ap_dec: dict[int, np.ndarray], sel: pd.DataFrame, registry: SiteRegistry,
                       run_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Text-language x speech-language overlap of decoder sets and Spearman rho of decoder AP vectors."""
    units = registry.units_frame()
    dec = units[units["stack"] == DECODER]
    dec_ids = dec["unit_id"].to_numpy()
    n_dec = len(dec_ids)
    dec_start = registry.stack_ranges[DECODER].start
    comp, layer = dec["component"].to_numpy(), dec["layer"].to_numpy()
    ov_rows, sp_frames = [], []
    lang_concepts = [c for c in concepts if c.kind == "language"]
    for role, (text_task, speech_task) in PAIRS.items():
        for step in sorted({c.step for c in lang_concepts}):
            tc = [c for c in lang_concepts if c.task == text_task and c.step == step]
            sc = [c for c in lang_concepts if c.task == speech_task and c.step == step]
            if not tc or not sc:
                continue
            scoped = sel[sel["scope"] == DECODER]
            for (kind, k), group in scoped[scoped["kind"].isin(["top", "bottom", "both"])].groupby(["kind", "k_requested"]):
                sets = {cid: g["unit_id"].to_numpy() - dec_start for cid, g in group.groupby("concept_id")}
                a = [sets.get(c.concept_id, np.empty(0, np.int64)) for c in tc]
                b = [sets.get(c.concept_id, np.empty(0, np.int64)) for c in sc]
                m = overlap_matrix(a, b, n_dec)
                for i, ct in enumerate(tc):
                    for j, cs in enumerate(sc):
                        ov_rows.append({
                            "run_id": run_id, "role": role, "step": step, "set_kind": kind, "k": int(k), "scope": DECODER,
                            "text_lang": ct.language, "speech_lang": cs.language, "text_concept": ct.concept_id,
                            "speech_concept": cs.concept_id, "count": int(m["count"][i, j]),
                            "c_over_k": float(m["c_over_k"][i, j]), "jaccard": float(m["jaccard"][i, j]),
                            "chance_count": float(m["chance"][i, j]), "chance_c_over_k": float(m["chance_c_over_k"][i, j]),
                            "chance_jaccard": float(m["chance_jaccard"][i, j]), "n_total": n_dec,
                        })
            x = np.stack([ap_dec[c.concept_id] for c in tc])
            y = np.stack([ap_dec[c.concept_id] for c in sc])
            groups = [("text_decoder", -1, np.ones(n_dec, bool))]
            groups += [(f"text_decoder/{c}", -1, comp == c) for c in ("self-attn", "cross-attn", "ffn")]
            groups += [("text_decoder/layer", int(l), layer == l) for l in np.unique(layer)]
            for scope, lyr, mask in groups:
                rho = spearman_matrix(x[:, mask], y[:, mask])
                ii, jj = np.meshgrid(np.arange(len(tc)), np.arange(len(sc)), indexing="ij")
                sp_frames.append(pd.DataFrame({
                    "run_id": run_id, "role": role, "step": step, "scope": scope, "layer": lyr,
                    "text_lang": [tc[i].language for i in ii.ravel()], "speech_lang": [sc[j].language for j in jj.ravel()],
                    "text_concept": [tc[i].concept_id for i in ii.ravel()], "speech_concept": [sc[j].concept_id for j in jj.ravel()],
                    "rho": rho.ravel(), "n_units": int(mask.sum()),
                }))
    overlap = pd.DataFrame(ov_rows)
    spearman = pd.concat(sp_frames, ignore_index=True) if sp_frames else pd.DataFrame()
    return overlap, spearman


def analyse_run(root: Path, registry: SiteRegistry, items: dict[str, Sequence[TaskItem]], cfg, run_id: str, progress: bool = True) -> AnalysisResult:
    """All statistics of a recorded run, in the same process right after recording."""
    stats_dir = root / "stats"
    if stats_dir.exists():
        shutil.rmtree(stats_dir)
    stats_dir.mkdir(parents=True)
    concepts = define_concepts(items, cfg.steps)
    scopes_by_stack = {s: decoder_scopes(registry, s) for s in registry.stack_ranges}
    sel_frames = []
    ap_dec: dict[int, np.ndarray] = {}
    groups = group_concepts(concepts)
    for (stack, _), members in tqdm(groups.items(), desc="selectivity (AP per unit, concepts sharing a sort)",
                                    unit="group", disable=not progress):
        rng = registry.stack_ranges[stack]
        unit_ids = np.arange(rng.start, rng.stop, dtype=np.int64)
        acts = concept_matrix(root, members[0], stack)
        recorded = np.isfinite(acts).all(axis=1)
        scopes = scopes_by_stack[stack]
        if not recorded.all():
            acts, unit_ids = acts[recorded], unit_ids[recorded]
            scopes = {name: mask[recorded] for name, mask in scopes.items()}
        labels, row_of = np.unique(np.stack([c.labels for c in members]), axis=0, return_inverse=True)
        stats = unit_stats(acts, labels)
        for i, concept in enumerate(members):
            one = UnitStats(*(getattr(stats, f)[row_of[i]] for f in ("ap", "on_p50", "on_p90", "off_mean", "off_p50")))
            _write_stats(stats_dir / f"concept-{concept.concept_id:05d}-{stack}.parquet", concept.concept_id, unit_ids, one)
            if stack == DECODER:
                ap_dec[concept.concept_id] = one.ap
            seed_key = f"{run_id}:{concept.concept_id}"
            for sel in build_selections(one.ap, unit_ids, scopes, cfg.analysis.ks, cfg.analysis.seed, seed_key):
                sel_frames.append(pd.DataFrame({
                    "run_id": run_id, "concept_id": concept.concept_id, "kind": sel.kind, "scope": sel.scope,
                    "k_requested": sel.k_requested, "k": len(sel.units) if sel.kind != "both" else len(sel.units) // 2,
                    "matches": sel.matches or None, "unit_id": sel.units.astype(np.int64), "rank": sel.ranks,
                }))
    selections = pd.concat(sel_frames, ignore_index=True) if sel_frames else pd.DataFrame()
    concentration = compute_concentration(root, registry, items, cfg.steps, run_id)
    write_unit_summaries(root, registry, items, cfg.steps, stats_dir / "units")
    overlap, spearman = compute_crossmodal(concepts, ap_dec, selections, registry, run_id)
    concept_frame = pd.DataFrame([c.row(run_id) for c in concepts])
    return AnalysisResult(stats_dir, concept_frame, selections, concentration, overlap, spearman)
