"""Statistics over a recorded run: concepts, per-unit AP and quantiles, selections, concentration, cross-modal.

Concepts follow the spec: language (task x step x language, one-vs-rest), multimodal language (s2tt+t2tt, or the
en2x pair, labelled by language regardless of modality; decoder units) and modality (speech vs text, pooled and per
language; decoder units). Statistics run per phase (tasks whose concepts read each other's activations) over unit
chunks read straight from the recording shards (`read_unit_chunk`), one job per chunk (`analyse_chunk`: here or as a
Ray task); the driver merges the per-chunk results in order. Per-unit statistics stream to Parquet files, one per
concept, so memory stays bounded at full scale; the store ingests them with one `read_parquet`.
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
from precompute.unit_summaries import summarise_chunk
from precompute.activation_store import TaskActivations, WorkDir, decoder_name
from neuron_atlas.engine.concentration import group_concentration, mean_abs_activation
from precompute.crossmodal import overlap_matrix, spearman_matrix
from neuron_atlas.engine.record import encoder_stack
from precompute.selectivity import UnitStats, build_selections, unit_stats
from neuron_atlas.engine.tasks import TASKS, TaskItem

DECODER = "text_decoder"
STAT_FIELDS = ("ap", "on_p50", "on_p90", "off_mean", "off_p50")
CHUNK_BYTES = 512 * 2**20
"""Default size of one float32 unit chunk [units, items] a statistics job reads (`analysis.chunk_units` overrides)."""
PHASE_TABLES = ("selections", "concentration", "overlap", "spearman")
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


def array_name(stack: str, step: int | None) -> str:
    """The recorded array a stack reads: the decoder's of one step, an encoder's for every step."""
    return decoder_name(step) if stack == DECODER else stack


def read_unit_chunk(acts: TaskActivations, name: str, start: int, stop: int, blanked: np.ndarray | None = None) -> np.ndarray:
    """One task's units [start, stop) of array `name` over all its items [units, items], read from the shards.

    `blanked` (bool over the array's units) marks the sites a faithful run's length filter drops: they read as NaN,
    so every statistic leaves them out. This is the one place statistics read activations.
    """
    values = acts.chunk(name, start, stop)
    if blanked is not None and blanked[start:stop].any():
        values[blanked[start:stop]] = np.nan
    return values


def concept_matrix(chunks: dict[str, np.ndarray], columns: Sequence[tuple[str, np.ndarray]]) -> np.ndarray:
    """[chunk units, concept items]: a concept's task columns of each task's unit chunk, concatenated."""
    parts = [chunks[task][:, cols] for task, cols in columns]
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
        ingest_unit_summaries(con, run_id, self.stats_dir)


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


@dataclass
class ChunkJob:
    """The statistics of one unit chunk of one recorded array name over a phase's tasks: a pure, picklable job that a
    Ray task or this process runs, reading the shards itself."""

    name: str
    start: int
    stop: int
    acts: dict[str, TaskActivations]
    blanked: dict[str, np.ndarray]
    groups: list[tuple[list[tuple[str, np.ndarray]], np.ndarray]]
    magnitudes: list[tuple[str, np.ndarray, np.ndarray]]
    #: (task, step or None, item indices, their labels) per task: what the store's unit tables summarise
    summaries: list[tuple[str, int | None, np.ndarray, np.ndarray]] = field(default_factory=list)
    #: unit id of the array's first unit (the chunk's units are unit_offset + start ... unit_offset + stop - 1)
    unit_offset: int = 0


@dataclass
class ChunkResult:
    """Per group: recorded-unit mask and UnitStats of the recorded units; per task: mask and mean |a| per language;
    per summarised task: its `unit_distributions` and `unit_examples` rows (precompute/unit_summaries.py)."""

    groups: list[tuple[np.ndarray, UnitStats]]
    magnitudes: list[tuple[np.ndarray, np.ndarray]]
    summaries: list[tuple[str, pa.Table, pa.Table]] = field(default_factory=list)


def analyse_chunk(job: ChunkJob) -> ChunkResult:
    """Read each task's unit chunk once; AP and quantiles for every concept group, mean |a| for concentration."""
    chunks = {task: read_unit_chunk(acts, job.name, job.start, job.stop, job.blanked.get(task))
              for task, acts in job.acts.items()}
    groups = []
    for columns, labels in job.groups:
        acts = concept_matrix(chunks, columns)
        recorded = np.isfinite(acts).all(axis=1)
        if recorded.any():
            stats = unit_stats(acts if recorded.all() else acts[recorded], labels)
        else:
            stats = UnitStats(*(np.empty((len(labels), 0)) for _ in STAT_FIELDS))
        groups.append((recorded, stats))
    magnitudes = []
    for task, index, chosen in job.magnitudes:
        values = chunks[task]
        recorded = np.ones(values.shape[0], bool) if job.name.startswith(DECODER) else recorded_units(values, index)
        kept = values[recorded] if not recorded.all() else values
        mags = np.stack([mean_abs_activation(kept, c) for c in chosen]) if kept.shape[0] else np.empty((len(chosen), 0))
        magnitudes.append((recorded, mags))
    unit_ids = np.arange(job.unit_offset + job.start, job.unit_offset + job.stop, dtype=np.int64)
    summaries = [(task, *summarise_chunk(chunks[task][:, index], unit_ids, index, labels, task, step))
                 for task, step, index, labels in job.summaries]
    return ChunkResult(groups, magnitudes, summaries)


def chunk_units(cfg, n_items: int, width: int) -> int:
    """Units per chunk: `analysis.chunk_units`, or as many as keep one float32 chunk near CHUNK_BYTES."""
    n = cfg.analysis.chunk_units or max(1, CHUNK_BYTES // (4 * max(1, n_items)))
    return max(1, min(n, width))


def _concat_stats(parts: list[UnitStats]) -> UnitStats:
    return UnitStats(*(np.concatenate([getattr(p, f) for p in parts], axis=-1) for f in STAT_FIELDS))


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


def plan_phases(tasks: Sequence[str], mode: str) -> list[list[str]]:
    """Tasks recorded and analysed together: a text task and the speech task it pairs with (their multimodal concepts
    read both), every other task alone; a faithful run is one phase (its length filter decides which concepts exist)."""
    if mode == "faithful":
        return [list(tasks)]
    phases: list[list[str]] = []
    for task in tasks:
        if any(task in p for p in phases):
            continue
        partners = {t for pair in PAIRS.values() if task in pair for t in pair}
        phases.append([t for t in tasks if t == task or t in partners])
    return phases


def phase_name(tasks: Sequence[str]) -> str:
    return "+".join(tasks)


def task_arrays(task: str, steps: Sequence[int]) -> list[str]:
    """The arrays a task records: its encoder's, and the decoder's at every step."""
    return [encoder_stack(task)] + [decoder_name(s) for s in steps]


def phase_concepts(concepts: Sequence[ConceptDef], tasks: Sequence[str]) -> list[ConceptDef]:
    """The concepts whose columns all come from `tasks` (a phase's statistics)."""
    return [c for c in concepts if all(task in tasks for task, _ in c.columns)]


def analyse_phase(work: WorkDir, stats_dir: Path, registry: SiteRegistry, concepts: Sequence[ConceptDef],
                  items: dict[str, Sequence[TaskItem]], tasks: Sequence[str], cfg, run_id: str, executor,
                  blanked: dict[str, np.ndarray] | None = None, progress: bool = True) -> None:
    """Statistics of one phase's tasks, read in unit chunks from their shards (by `executor`, locally or on Ray).

    Per-concept unit stats go to `stats_dir/concept-*.parquet`; the phase's selections, concentration and cross-modal
    frames to `stats_dir/phase-{phase}/`, so a resumed run needs no activations of a finished phase.
    """
    phase = phase_name(tasks)
    mine = phase_concepts(concepts, tasks)
    for old in [*stats_dir.glob(f"phase-{phase}"), *(f for c in mine for f in stats_dir.glob(f"concept-{c.concept_id:05d}-*"))]:
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    blanked = blanked or {}
    acts = {task: TaskActivations(work, task) for task in tasks}
    groups = group_concepts(mine)
    units = registry.units_frame()
    jobs: list[ChunkJob] = []
    plans: list[tuple] = []
    for name in dict.fromkeys(n for task in tasks for n in task_arrays(task, cfg.steps)):
        stack = DECODER if name.startswith(DECODER) else name
        readers = {t: acts[t] for t in tasks if name in task_arrays(t, cfg.steps)}
        name_groups = [(key, members) for key, members in groups.items() if array_name(key[0], key[1][0]) == name]
        group_specs = [(members[0].columns, np.unique(np.stack([c.labels for c in members]), axis=0, return_inverse=True))
                       for _, members in name_groups]
        mag_specs = []
        for task in readers:
            labels = np.array([it.label for it in items[task]])
            index = np.array([it.index for it in items[task]], dtype=np.int64)
            langs = list(dict.fromkeys(labels))
            chosen = np.zeros((len(langs), acts[task].n_items), bool)
            for i, lang in enumerate(langs):
                chosen[i, index[labels == lang]] = True
            mag_specs.append((task, index, chosen, langs))
        step = int(name.removeprefix(f"{DECODER}.step")) if stack == DECODER else None
        summary_specs = [(task, step, index, np.array([it.label for it in items[task]]))
                         for task, index, _, _ in mag_specs]
        width = registry.stack_width(stack)
        n_cols = max([acts[t].n_items for t in readers] + [sum(len(c) for _, c in cols) for cols, _ in group_specs])
        size = chunk_units(cfg, n_cols, width)
        first = len(jobs)
        for start in range(0, width, size):
            jobs.append(ChunkJob(name, start, min(start + size, width), readers,
                                 {t: blanked[t] for t in readers if t in blanked and stack != DECODER},
                                 [(cols, uniq) for cols, (uniq, _) in group_specs],
                                 [(t, index, chosen) for t, index, chosen, _ in mag_specs],
                                 summary_specs, registry.stack_ranges[stack].start))
        plans.append((name, name_groups, group_specs, mag_specs, first, len(jobs)))
    results = iter(tqdm(executor.map_chunks(analyse_chunk, jobs), total=len(jobs), disable=not progress, unit="chunk",
                        desc=f"statistics {phase} (AP per unit, concentration; unit chunks from the shards)"))
    scopes_by_stack = {s: decoder_scopes(registry, s) for s in registry.stack_ranges}
    out = stats_dir / f"phase-{phase}"
    tmp = stats_dir / f".phase-{phase}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "units").mkdir(parents=True)
    sel_frames = []
    conc_frames: dict[tuple[str, str, int], list[pd.DataFrame]] = {}
    ap_dec: dict[int, np.ndarray] = {}
    for name, name_groups, group_specs, mag_specs, first, last in plans:  # one array's chunks merged, then dropped
        stack = DECODER if name.startswith(DECODER) else name
        rng = registry.stack_ranges[stack]
        all_ids = np.arange(rng.start, rng.stop, dtype=np.int64)
        part = [next(results) for _ in range(first, last)]
        for job, result in zip(jobs[first:last], part):
            for task, dist, examples in result.summaries:
                stem = f"{task}-{name}-{job.start:09d}"
                pq.write_table(dist, tmp / "units" / f"dist-{stem}.parquet")
                pq.write_table(examples, tmp / "units" / f"examples-{stem}.parquet")
        for g, ((_, members), (_, (_, row_of))) in enumerate(zip(name_groups, group_specs)):
            recorded = np.concatenate([r.groups[g][0] for r in part])
            stats = _concat_stats([r.groups[g][1] for r in part])
            unit_ids = all_ids[recorded]
            scopes = {key: mask[recorded] for key, mask in scopes_by_stack[stack].items()}
            for i, concept in enumerate(members):
                one = UnitStats(*(getattr(stats, f)[row_of[i]] for f in STAT_FIELDS))
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
        layers = units.loc[units["stack"] == stack, "layer"].to_numpy()
        for m, (task, _, _, langs) in enumerate(mag_specs):
            recorded = np.concatenate([r.magnitudes[m][0] for r in part])
            mags = np.concatenate([r.magnitudes[m][1] for r in part], axis=1)
            for step in (cfg.steps if stack != DECODER else [int(name.removeprefix(f"{DECODER}.step"))]):
                for i, lang in enumerate(langs):
                    g = group_concentration(mags[i], layers[recorded])
                    conc_frames.setdefault((task, stack, step), []).append(pd.DataFrame({
                        "run_id": run_id, "task": task, "language": lang, "modality": TASKS[task].modality,
                        "step": step, "stack": stack, "layer": g["group"], "n_units": g["n_units"],
                        "gini": g["gini"], "top1_share": g["top1_share"], "total": g["total"],
                    }))
    selections = pd.concat(sel_frames, ignore_index=True) if sel_frames else pd.DataFrame()
    ordered = [f for task in tasks for stack in (encoder_stack(task), DECODER) for step in cfg.steps
               for f in conc_frames.get((task, stack, step), [])]
    concentration = pd.concat(ordered, ignore_index=True) if ordered else pd.DataFrame()
    overlap, spearman = compute_crossmodal(mine, ap_dec, selections, registry, run_id)
    for table, frame in zip(PHASE_TABLES, (selections, concentration, overlap, spearman)):
        if not frame.empty:
            frame.to_parquet(tmp / f"{table}.parquet", index=False)
    tmp.replace(out)


def collect_analysis(stats_dir: Path, concepts: Sequence[ConceptDef], phases: Sequence[Sequence[str]], run_id: str) -> AnalysisResult:
    """The run's statistics from every phase's files, in phase order."""
    frames: dict[str, list[pd.DataFrame]] = {t: [] for t in PHASE_TABLES}
    for tasks in phases:
        for table in frames:
            path = stats_dir / f"phase-{phase_name(tasks)}" / f"{table}.parquet"
            if path.is_file():
                frames[table].append(pd.read_parquet(path))
    merged = {t: pd.concat(f, ignore_index=True) if f else pd.DataFrame() for t, f in frames.items()}
    concept_frame = pd.DataFrame([c.row(run_id) for c in concepts])
    return AnalysisResult(stats_dir, concept_frame, merged["selections"], merged["concentration"], merged["overlap"],
                          merged["spearman"])
