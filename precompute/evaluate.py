"""Batch intervention experiments, part of the precompute run; one `InterventionSpec` per condition, as live.

Experiments (units from a language concept of the same run, forced to a per-unit statistic, default `on_p50`):
- `ablation`: each task, step and language L; inputs = the task's first N items of L; top / bottom / both vs
  size-matched random units of L's concept, against the unintervened baseline (language probability, quality).
- `steering`: en->X tasks; inputs generate toward another target M; L's control units forced. Units come from the
  same modality (en2x_t2tt on text input) or the other one (en2x_s2tt units on text input and the reverse), from
  every step, plus random units: the paper's cross-modal steering comparison.
- `dose`: the steering condition (same modality, first step) with k swept over `dose_ks`, both vs random.
Every condition stores its spec (canonical JSON and digest), per-item outputs and metrics.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from neuron_atlas.engine.audio import load_audio_file
from neuron_atlas.engine.concept_stats import LazyConceptStats, parquet_loader
from neuron_atlas.engine.interventions import InterventionSpec, SpecError, generate_with, prepare_inputs, resolve
from neuron_atlas.engine.model.loading import ModelBundle
from neuron_atlas.engine.model.unit_sites import SiteRegistry
from neuron_atlas.engine.metrics import asr_scores, code_mixing_many, corpus_scores, make_identifier, sentence_scores
from precompute.selectivity import selection_seed
from neuron_atlas.engine.tasks import TASKS, TaskItem

SETS = ("top", "bottom", "both", "random")


@dataclass
class Condition:
    """One experimental condition: which inputs, which units (as a spec), and its labels for the store."""

    experiment: str
    input_task: str
    items: list[TaskItem]
    step: int | None
    concept_id: int | None
    concept_task: str | None
    language: str | None
    unit_source: str
    set_kind: str
    k: int
    spec: InterventionSpec | None
    extra: dict = field(default_factory=dict)


def _spec(concept_id: int, set_kind: str, k: int, value: str, stack: str, seed: int = 0) -> InterventionSpec:
    units = {"kind": "concept", "concept_id": int(concept_id), "set": set_kind, "k": int(k), "seed": seed, "stack": stack}
    value_obj = {"kind": "zero"} if value == "zero" else {"kind": value}
    return InterventionSpec.parse({"units": units, "value": value_obj})


def _random_matched(concept_id: int, set_kind: str, k: int, value: str, stack: str, cfg, run_id: str) -> InterventionSpec:
    """Random units of the same size as `set_kind` (both = 2k), with the same concept's statistics as values: a fresh
    draw per concept, seeded as `selection_seed` seeds the run's stored random sets, so for a k of `analysis.ks` it is
    exactly the stored set (dose ks outside them have no stored set, but the same rule)."""
    size = 2 * k if set_kind == "both" else k
    seed = selection_seed(cfg.analysis.seed, f"{run_id}:{concept_id}", stack, k, set_kind)
    return _spec(concept_id, "random", size, value, stack, seed)


def plan_conditions(items: dict[str, Sequence[TaskItem]], concepts: pd.DataFrame, cfg, run_id: str) -> list[Condition]:
    """Every condition of the configured experiments (without running anything)."""
    ev = cfg.evaluate
    k = ev.k or min(cfg.analysis.ks)
    steps = [s for s in cfg.steps if ev.steps is None or s in ev.steps]
    lang_concepts = concepts[concepts["kind"] == "language"]
    cid = {(r.task, int(r.step), r.language): int(r.concept_id) for r in lang_concepts.itertuples()}
    out: list[Condition] = []
    for task, rows in items.items():
        if "ablation" not in ev.experiments:
            break
        for lang in dict.fromkeys(it.label for it in rows):
            inputs = [it for it in rows if it.label == lang][: ev.n_examples]
            out.append(Condition("ablation", task, inputs, None, None, None, lang, "none", "baseline", 0, None))
            for step in steps:
                c = cid.get((task, step, lang))
                if c is None:
                    continue
                for s in ("top", "bottom", "both"):
                    out.append(Condition("ablation", task, inputs, step, c, task, lang, "same", s, k, _spec(c, s, k, ev.value, ev.stack)))
                for s in ("top", "both"):  # random k units control top and bottom alike; random 2k controls both
                    out.append(Condition("ablation", task, inputs, step, c, task, lang, "random", f"random_{s}", k,
                                         _random_matched(c, s, k, ev.value, ev.stack, cfg, run_id)))
    pairs = {"en2x_t2tt": "en2x_s2tt", "en2x_s2tt": "en2x_t2tt"}
    for task, other in pairs.items():
        if task not in items or not ({"steering", "dose"} & set(ev.experiments)):
            continue
        rows = items[task]
        targets = list(dict.fromkeys(it.label for it in rows))
        for lang in targets:
            others = [m for m in targets if m != lang]
            per = max(1, ev.n_examples // max(1, len(others)))
            inputs = [it for m in others for it in [r for r in rows if r.label == m][:per]]
            if not inputs:
                continue
            out.append(Condition("steering", task, inputs, None, None, None, lang, "none", "baseline", 0, None))
            for step in steps:
                for source, ctask in (("same-modality", task), ("cross-modal", other)):
                    c = cid.get((ctask, step, lang))
                    if c is None or "steering" not in ev.experiments:
                        continue
                    out.append(Condition("steering", task, inputs, step, c, ctask, lang, source, "both", k, _spec(c, "both", k, ev.value, ev.stack)))
                c = cid.get((task, step, lang))
                if c is not None and "steering" in ev.experiments:
                    out.append(Condition("steering", task, inputs, step, c, task, lang, "random", "random_both", k,
                                         _random_matched(c, "both", k, ev.value, ev.stack, cfg, run_id)))
            c = cid.get((task, steps[0], lang)) if steps else None
            if c is not None and "dose" in ev.experiments:
                for dk in ev.dose_ks:
                    out.append(Condition("dose", task, inputs, steps[0], c, task, lang, "same-modality", "both", dk, _spec(c, "both", dk, ev.value, ev.stack)))
                    out.append(Condition("dose", task, inputs, steps[0], c, task, lang, "random", "random_both", dk,
                                         _random_matched(c, "both", dk, ev.value, ev.stack, cfg, run_id)))
    return out


def _batches(items: Sequence[TaskItem], size: int) -> list[list[TaskItem]]:
    """Groups that can share one `generate` call: same target, same source language for text, bounded size."""
    groups: dict[tuple, list[TaskItem]] = {}
    for it in items:
        key = (it.tgt_lang, it.src_lang if it.modality == "text" else "")
        groups.setdefault(key, []).append(it)
    return [rows[i : i + size] for rows in groups.values() for i in range(0, len(rows), size)]


def run_condition(bundle: ModelBundle, registry: SiteRegistry, stats, cond: Condition, cfg, audio_cache: dict) -> tuple[list[dict], int]:
    """Generate every input of a condition under its spec: one row per item with the decoded output, and the number
    of units forced (a spec that cannot apply, e.g. k larger than the stack, is recorded as skipped with the reason)."""
    resolved = None
    if cond.spec is not None:
        try:
            resolved = resolve(cond.spec, registry, stats)
        except SpecError as exc:
            cond.extra["skipped"] = str(exc)
            return [], 0
    rows = []
    for batch in _batches(cond.items, cfg.batch_size):
        if TASKS[cond.input_task].modality == "speech":
            waves = []
            for it in batch:
                if it.example.id not in audio_cache:
                    audio_cache[it.example.id] = load_audio_file(it.example.audio_path)
                waves.append(audio_cache[it.example.id])
            inputs = prepare_inputs(bundle, audio=waves)
        else:
            inputs = prepare_inputs(bundle, text=[it.example.text for it in batch], src_lang=batch[0].src_lang)
        result = generate_with(bundle, registry, resolved, inputs, batch[0].tgt_lang, max_new_tokens=cfg.evaluate.max_new_tokens)
        for it, text in zip(batch, result.texts):
            rows.append({"item": it.index, "tgt_lang": it.tgt_lang, "reference": it.reference, "output_text": text})
    return rows, 0 if resolved is None else int(resolved.unit_ids.size)


def score_rows(rows: list[dict], cond: Condition, identifier) -> pd.DataFrame:
    """Per-item metrics: language probabilities, BLEU/chrF++/combined (or WER/CER for ASR), code-mixing."""
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    texts = frame["output_text"].tolist()
    probs = identifier.probabilities(texts)
    frame["p_concept_lang"] = [p.get(cond.language, 0.0) for p in probs]
    frame["p_tgt_lang"] = [p.get(t, 0.0) for p, t in zip(probs, frame["tgt_lang"])]
    frame["lang_probs"] = [json.dumps(p, sort_keys=True) for p in probs]
    if TASKS[cond.input_task].asr:
        scores = [asr_scores([h], [r], lang) for h, r, lang in zip(texts, frame["reference"], frame["tgt_lang"])]
        frame["wer"] = [s["wer"] for s in scores]
        frame["cer"] = [s["cer"] for s in scores]
        frame["bleu"] = frame["chrfpp"] = frame["combined"] = np.nan
    else:
        by_lang = {}
        for lang in frame["tgt_lang"].unique():
            sel = frame["tgt_lang"] == lang
            by_lang[lang] = sentence_scores(frame.loc[sel, "output_text"].tolist(), frame.loc[sel, "reference"].tolist(), lang=lang)
        counters = {lang: iter(v) for lang, v in by_lang.items()}
        scores = [next(counters[lang]) for lang in frame["tgt_lang"]]
        frame["bleu"] = [s["bleu"] for s in scores]
        frame["chrfpp"] = [s["chrfpp"] for s in scores]
        frame["combined"] = [s["combined"] for s in scores]
        frame["wer"] = frame["cer"] = np.nan
    mix = code_mixing_many(texts)
    frame["m_index"] = mix["m_index"]
    frame["i_index"] = mix["i_index"]
    return frame


def corpus_level(frame: pd.DataFrame, cond: Condition) -> dict[str, float | None]:
    """Corpus BLEU / chrF++ / combined of a translation condition, as the reference scores a system (sacrebleu
    `corpus_score`); a condition spanning several target languages averages their corpus scores, weighted by items."""
    empty = {"corpus_bleu": None, "corpus_chrfpp": None, "corpus_combined": None}
    if frame.empty or TASKS[cond.input_task].asr:
        return empty
    parts = [(int(sel.sum()), corpus_scores(frame.loc[sel, "output_text"].tolist(), frame.loc[sel, "reference"].tolist(), lang=lang))
             for lang in frame["tgt_lang"].unique() for sel in [frame["tgt_lang"] == lang]]
    total = sum(n for n, _ in parts)
    return {f"corpus_{name}": sum(n * scores[name] for n, scores in parts) / total for name in ("bleu", "chrfpp", "combined")}


@dataclass
class EvaluationResult:
    """The two intervention tables of a run."""

    conditions: pd.DataFrame
    outputs: pd.DataFrame


def run_experiments(bundle: ModelBundle, registry: SiteRegistry, items: dict[str, Sequence[TaskItem]], analysis, cfg,
                    run_id: str, progress: bool = True) -> EvaluationResult:
    """Plan and run every condition; returns the `interventions` and `intervention_outputs` rows."""
    stats = LazyConceptStats(registry, parquet_loader(analysis.stats_dir, registry.n_units))
    identifier = make_identifier(cfg.evaluate.identifier, candidates=cfg.corpus.languages, scope=cfg.evaluate.language_scope)
    conditions = plan_conditions(items, analysis.concepts, cfg, run_id)
    cond_rows, out_frames, audio_cache = [], [], {}
    for i, cond in enumerate(tqdm(conditions, desc="interventions (batch experiments)", unit="cond", disable=not progress)):
        rows, n_units = run_condition(bundle, registry, stats, cond, cfg, audio_cache)
        scored = score_rows(rows, cond, identifier)
        cond_rows.append({
            "run_id": run_id, "experiment_id": i, "experiment": cond.experiment, "input_task": cond.input_task,
            "step": cond.step, "concept_id": cond.concept_id, "concept_task": cond.concept_task, "language": cond.language,
            "unit_source": cond.unit_source, "set_kind": cond.set_kind, "k": cond.k, "n_units": n_units,
            "spec": cond.spec.canonical_json() if cond.spec else None, "spec_digest": cond.spec.digest() if cond.spec else None,
            "n_items": len(scored), "skipped": cond.extra.get("skipped"),
            "mean_p_concept_lang": float(scored["p_concept_lang"].mean()) if len(scored) else None,
            "mean_p_tgt_lang": float(scored["p_tgt_lang"].mean()) if len(scored) else None,
            "mean_combined": float(scored["combined"].mean()) if len(scored) and scored["combined"].notna().any() else None,
            "mean_cer": float(scored["cer"].mean()) if len(scored) and scored["cer"].notna().any() else None,
            "mean_m_index": float(scored["m_index"].mean()) if len(scored) else None,
            **corpus_level(scored, cond),
        })
        if len(scored):
            scored.insert(0, "experiment_id", i)
            scored.insert(0, "run_id", run_id)
            out_frames.append(scored)
    outputs = pd.concat(out_frames, ignore_index=True) if out_frames else pd.DataFrame()
    return EvaluationResult(pd.DataFrame(cond_rows), outputs)
