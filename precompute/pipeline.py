"""Orchestration of a precompute run: corpus -> phases of (resumable recording shards -> statistics read from the
shards -> arrays deleted) -> store."""
from __future__ import annotations

import hashlib
import io
import json
import logging
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from tqdm.auto import tqdm

from neuron_atlas.engine.audio import load_audio_file
from neuron_atlas.engine.model.loading import ModelBundle, configure_cpu_threads, load_model
from neuron_atlas.engine.model.unit_sites import SiteRegistry
from precompute.store_writer import insert_frame, store_transaction
from neuron_atlas.engine.versions import ENGINE_VERSION
from precompute.activation_store import (ShardKey, WorkDir, dedupe_encoder, delete_activations, encoder_sources,
                                         mark_phase_done, phase_done, read_shard_meta, shard_done, write_shard)
from precompute.config import ConfigError, RunConfig
from precompute.corpus import CorpusError, Example, load_corpus
from precompute.executors import make_executor
from neuron_atlas.engine.record import LengthFilter, encoder_stack, reference_length_filter
from neuron_atlas.engine.tasks import TASKS, TaskItem, task_items
from neuron_atlas.engine.store_schema import StoreVersionError, check_version
from precompute.analysis import AnalysisResult, analyse_phase, collect_analysis, define_concepts, phase_name, plan_phases
from precompute.plan import check_resources, make_plan
from precompute.evaluate import run_experiments

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a finished run produced and where."""

    run_id: str
    store: Path
    work_dir: str
    n_items: dict[str, int]
    elapsed_s: float
    reused: bool = False
    stats_dir: Path | None = None


def stored_run(store: Path, run_id: str) -> bool:
    """Whether `store` exists, is readable by this engine, and holds `run_id`."""
    import duckdb


    if not store.is_file():
        return False
    try:
        con = duckdb.connect(str(store), read_only=True)
    except duckdb.Error:
        return False
    try:
        check_version(con)
        return con.execute("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]).fetchone()[0] > 0
    except (duckdb.Error, StoreVersionError):
        return False
    finally:
        con.close()


def corpus_hash(examples: Sequence[Example]) -> str:
    """Hash of the corpus content (ids, texts, references and audio bytes), part of the run id."""
    h = hashlib.sha256()
    for ex in sorted(examples, key=lambda e: e.id):
        h.update(f"{ex.id}\x00{ex.sentence_id}\x00{ex.lang}\x00{ex.text}\x00{ex.reference}\x00".encode())
        if ex.audio_path is not None:
            h.update(Path(ex.audio_path).read_bytes())
    return h.hexdigest()[:16]


def library_versions() -> dict:
    from importlib.metadata import version

    names = ["torch", "torchaudio", "transformers", "tokenizers", "numpy", "duckdb", "scikit-learn"]
    return {"python": platform.python_version(), **{n: version(n) for n in names}}


def plan_shards(items: Sequence[TaskItem], shard_size: int) -> list[tuple[ShardKey, list[TaskItem]]]:
    """Split a task's items into shards by label language and contiguous item ranges."""
    shards = []
    by_lang: dict[str, list[TaskItem]] = {}
    for it in items:
        by_lang.setdefault(it.label, []).append(it)
    for lang, rows in by_lang.items():
        for i in range(0, len(rows), shard_size):
            chunk = rows[i : i + shard_size]
            shards.append((ShardKey(rows[0].task, lang, chunk[0].index, chunk[-1].index + 1), chunk))
    return shards


def _examples_frame(run_id: str, examples: Sequence[Example]) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, audio = [], []
    for ex in examples:
        duration = None
        if ex.audio_path is not None:
            wave = load_audio_file(Path(ex.audio_path))
            duration = len(wave) / 16000
            buf = io.BytesIO()
            sf.write(buf, wave, 16000, format="FLAC", subtype="PCM_16")
            audio.append({"run_id": run_id, "example_id": ex.id, "flac": buf.getvalue()})
        rows.append({
            "run_id": run_id, "example_id": ex.id, "sentence_id": ex.sentence_id, "lang": ex.lang, "text": ex.text,
            "reference": ex.reference, "voice": ex.voice, "duration_s": duration, "has_audio": ex.audio_path is not None,
        })
    return pd.DataFrame(rows), pd.DataFrame(audio, columns=["run_id", "example_id", "flac"])


def _items_frame(run_id: str, bundle: ModelBundle, task: str, items: Sequence[TaskItem], metas: dict[int, tuple[list, list, list | None]]) -> pd.DataFrame:
    rows = []
    for it in items:
        ids, prefix, fed = metas[it.index]
        rows.append({
            "run_id": run_id, "task": task, "item": it.index, "example_id": it.example.id,
            "sentence_id": it.example.sentence_id, "label": it.label, "src_lang": it.src_lang, "tgt_lang": it.tgt_lang,
            "modality": it.modality, "reference": it.reference, "output_ids": ids,
            "output_text": bundle.tokenizer.decode(ids, skip_special_tokens=True), "prefix_lengths": prefix,
            "input_ids": fed,
        })
    return pd.DataFrame(rows)


def apply_length_filter(work: WorkDir, task: str, shards: Sequence[ShardKey], registry: SiteRegistry, n_items: int) -> tuple[LengthFilter, np.ndarray | None]:
    """Faithful mode: replay the reference reader's length filter on a recorded task (from the shards' meta).

    Returns the filter and the encoder units of the sites it drops (the statistics read them as NaN and leave them
    out); dropped examples are left out of the statistics by the caller.
    """
    mismatched: dict[int, dict[str, int]] = {}
    for key in shards:
        meta = read_shard_meta(work, key)
        for idx, row in zip(meta["items"], meta.get("mismatched") or []):
            if row:
                mismatched[idx] = row
    stack = encoder_stack(task)
    result = reference_length_filter(n_items, mismatched, registry.stack_sites(stack))
    if not result.sites:
        return result, None
    blanked = np.zeros(registry.stack_width(stack), bool)
    start = registry.stack_ranges[stack].start
    for key in result.sites:
        site = registry.by_key[key]
        blanked[site.offset - start : site.offset - start + site.width] = True
    return result, blanked


def stats_folder(cfg: RunConfig, work: WorkDir, run_id: str) -> Path:
    """Where the per-concept statistics files go: the run's work folder when local, else beside the store."""
    if work.local is not None:
        return work.local / "stats"
    return Path(cfg.store).parent / f".{run_id}-stats"


def _dropped_frame(run_id: str, task: str, items: Sequence[TaskItem], result: LengthFilter) -> pd.DataFrame:
    by_index = {it.index: it for it in items}
    rows = [{"run_id": run_id, "task": task, "item": idx, "example_id": by_index[idx].example.id, "site": None,
             "reason": reason} for idx, reason in sorted(result.items.items())]
    rows += [{"run_id": run_id, "task": task, "item": None, "example_id": None, "site": key, "reason": reason}
             for key, reason in result.sites.items()]
    return pd.DataFrame(rows, columns=["run_id", "task", "item", "example_id", "site", "reason"])


def run_precompute(
    cfg: RunConfig,
    progress: bool = True,
    after_shard: Callable[[ShardKey], None] | None = None,
    bundle: ModelBundle | None = None,
    reuse: bool = False,
) -> RunResult:
    """Run (or resume) a precompute: finished shards are skipped, so a killed run restarts where it stopped.

    With `reuse`, a store that already holds this exact run (same config, model checksum and corpus) is kept as is.
    """
    t0 = time.perf_counter()
    examples = load_corpus(cfg.corpus, progress=progress)
    bundle = bundle or load_model(cfg.model, device=cfg.device)
    configure_cpu_threads(bundle)
    unsupported = [lang for lang in cfg.corpus.languages if lang not in bundle.languages]
    if unsupported:
        raise ConfigError(
            f"corpus.languages: model {cfg.model!r} cannot generate {unsupported}; it knows {list(bundle.languages)}"
        )
    registry = SiteRegistry.from_model(bundle.model)
    chash = corpus_hash(examples)
    run_id = f"{cfg.name}-{cfg.digest(bundle.checksum, chash)}"
    work = WorkDir(cfg.work_dir).child(run_id)
    if reuse and stored_run(Path(cfg.store), run_id):
        return RunResult(run_id, Path(cfg.store), work.url, {}, time.perf_counter() - t0, reused=True)
    check_resources(make_plan(cfg, bundle, registry, examples, flops=False), cfg, work.local)
    work.fs.makedirs(work.path, exist_ok=True)
    work.fs.pipe_file(work.join("config.json"), json.dumps(cfg.model_dump(mode="json"), indent=2).encode())
    all_items: dict[str, list[TaskItem]] = {}
    for task in cfg.tasks:
        all_items[task] = task_items(task, examples, cfg.corpus.languages)
        if not all_items[task]:
            raise CorpusError(f"task {task} has no examples in languages {cfg.corpus.languages}")
    phases = plan_phases(cfg.tasks, cfg.mode)
    stats_dir = stats_folder(cfg, work, run_id)
    stats_dir.mkdir(parents=True, exist_ok=True)
    filters: dict[str, LengthFilter] = {}
    blanked: dict[str, np.ndarray] = {}
    concepts = None
    executor = make_executor(cfg.executor, cfg.workers)
    for tasks in phases:
        done_before = cfg.analysis.enabled and phase_done(work, phase_name(tasks)) and \
            (stats_dir / f"phase-{phase_name(tasks)}").is_dir()
        for task in tasks:
            items = all_items[task]
            shards = plan_shards(items, cfg.shard_size)
            if not done_before:
                _record_task(work, bundle, registry, cfg, executor, task, items, shards, after_shard, progress)
            if cfg.mode == "faithful":
                filters[task], mask = apply_length_filter(work, task, [k for k, _ in shards], registry, len(items))
                if mask is not None:
                    blanked[task] = mask
        if not cfg.analysis.enabled or done_before:
            continue
        if concepts is None:
            concepts = define_concepts(_kept(all_items, filters), cfg.steps)
        analyse_phase(work, stats_dir, registry, concepts, _kept(all_items, filters), tasks, cfg, run_id, executor,
                      blanked, progress=progress)
        mark_phase_done(work, phase_name(tasks), {"tasks": tasks})
        if not cfg.keep_activations:
            delete_activations(work, tasks)
    kept_items = _kept(all_items, filters)
    stats: AnalysisResult | None = None
    if cfg.analysis.enabled:
        stats = collect_analysis(stats_dir, concepts or define_concepts(kept_items, cfg.steps), phases, run_id)
    evaluation = None
    if cfg.evaluate.enabled and stats is not None:
        evaluation = run_experiments(bundle, registry, all_items, stats, cfg, run_id, progress=progress)
    elapsed = time.perf_counter() - t0
    with store_transaction(Path(cfg.store), run_id) as con:
        insert_frame(con, "runs", pd.DataFrame([{
            "run_id": run_id, "name": cfg.name, "created_at": datetime.now(timezone.utc).replace(tzinfo=None),
            "engine_version": ENGINE_VERSION, "model_spec": cfg.model, "model_checksum": bundle.checksum,
            "model": json.dumps({**bundle.describe(), "pad_token_id": bundle.tokenizer.pad_token_id}), "mode": cfg.mode, "tasks": cfg.tasks, "steps": cfg.steps,
            "languages": cfg.corpus.languages, "corpus_source": cfg.corpus.source, "corpus_hash": chash,
            "n_examples": len(examples), "config": json.dumps(cfg.model_dump(mode="json")),
            "library_versions": json.dumps(library_versions()), "work_dir": work.url if work.local is None else str(work.local),
            "elapsed_s": elapsed,
        }]))
        sites = registry.sites_frame().rename(columns={"key": "site", "offset": "unit_offset"})
        sites.insert(0, "run_id", run_id)
        sites["in_reference"] = registry.in_reference()
        insert_frame(con, "sites", sites)
        units = registry.units_frame().rename(columns={"key": "site"})
        units.insert(0, "run_id", run_id)
        insert_frame(con, "units", units)
        ex_frame, audio_frame = _examples_frame(run_id, examples)
        insert_frame(con, "examples", ex_frame)
        insert_frame(con, "example_audio", audio_frame)
        for task, items in all_items.items():
            metas = {}
            for key, rows in plan_shards(items, cfg.shard_size):
                meta = read_shard_meta(work, key)
                fed = meta.get("input_ids") or [None] * len(meta["items"])
                for j, idx in enumerate(meta["items"]):
                    metas[idx] = (meta["generated"][j], [meta["prefix_lengths"][str(s)][j] for s in cfg.steps], fed[j])
            insert_frame(con, "items", _items_frame(run_id, bundle, task, items, metas))
            if task in filters:
                insert_frame(con, "dropped", _dropped_frame(run_id, task, items, filters[task]))
        if stats is not None:
            stats.write(con, run_id)
        if evaluation is not None:
            insert_frame(con, "interventions", evaluation.conditions)
            insert_frame(con, "intervention_outputs", evaluation.outputs)
    if work.local is None:
        shutil.rmtree(stats_dir, ignore_errors=True)
    return RunResult(run_id, Path(cfg.store), work.url, {t: len(v) for t, v in all_items.items()}, elapsed,
                     stats_dir=stats_dir if work.local is not None else None)


def _kept(all_items: dict[str, list[TaskItem]], filters: dict[str, LengthFilter]) -> dict[str, list[TaskItem]]:
    return {task: [it for it in items if task not in filters or it.index not in filters[task].items]
            for task, items in all_items.items()}


def _record_task(work: WorkDir, bundle: ModelBundle, registry: SiteRegistry, cfg: RunConfig, executor, task: str,
                 items: list[TaskItem], shards: list[tuple[ShardKey, list[TaskItem]]],
                 after_shard: Callable[[ShardKey], None] | None, progress: bool) -> None:
    """Record a task's unfinished shards, each English input's encoder values once."""
    todo = [(k, rows) for k, rows in shards if not shard_done(work, k)]
    done = len(items) - sum(len(r) for _, r in todo)
    sources = encoder_sources(items)
    with tqdm(total=len(items), initial=done, desc=f"record {task} (steps {','.join(map(str, cfg.steps))})",
              unit="ex", disable=not progress, leave=True) as bar:
        for key, arrays, meta in executor.map(bundle, registry, cfg, todo):
            arrays, meta = dedupe_encoder(arrays, meta, encoder_stack(task), sources)
            write_shard(work, key, arrays, meta, cfg.activation_dtype)
            bar.update(len(meta["items"]))
            if after_shard is not None:
                after_shard(key)
