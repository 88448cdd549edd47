"""What fires on my input: one input recorded as the run records its items, every unit scored against the run's
corpus distribution (z-score against the per-unit mean and standard deviation of the matching task), and the top
units of each (stack, layer) returned with where they sit."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.api.errors import ApiProblem
from backend.api.live import InterventionService, require_same_model
from backend.queue import Job
from neuron_atlas.engine.interventions.fires import deviation, input_activations, statistics_task, top_per_group
from neuron_atlas.engine.versions import ENGINE_VERSION

RANKINGS = ("z", "activation", "magnitude")


@dataclass
class PreparedFires:
    key: str
    run_id: str
    mode: str
    tgt_lang: str
    step: int
    n: int
    rank_by: str
    text: str | None
    src_lang: str | None
    audio: np.ndarray | None
    input_desc: dict[str, Any]


def prepare_fires(service: InterventionService, request: dict[str, Any]) -> PreparedFires:
    """Validate a what-fires request (input, languages, run, step) before it takes a queue slot."""
    bundle, _ = service.host.require()
    reader = service._reader()
    run_id = service._run_for(request.get("run_id"), bundle)
    run = reader.run(run_id)
    require_same_model(run, bundle, "its corpus statistics do not describe this model's units")
    tgt = request["tgt_lang"]
    if tgt not in bundle.languages:
        raise ApiProblem(422, f"tgt_lang: {tgt!r} is not a target language of the loaded model; it has {', '.join(bundle.languages)}", "tgt_lang")
    steps = list(run["steps"])
    step = request.get("step") or min(steps)
    if step not in steps:
        raise ApiProblem(422, f"step: run {run_id} recorded the decoder at steps {', '.join(map(str, steps))}, not {step}", "step")
    source = service.resolve_input(request, bundle, run_id)
    desc = source.desc
    n, rank_by = int(request.get("n") or 5), request.get("rank_by") or "z"
    key = hashlib.sha256(json.dumps({"fires": source.key_part(), "run": run_id, "tgt": tgt, "step": step, "n": n, "rank_by": rank_by,
                                     "model": bundle.checksum, "engine": ENGINE_VERSION}, sort_keys=True).encode()).hexdigest()
    return PreparedFires(f"fires:{key}", run_id, run["mode"], tgt, step, n, rank_by, source.text,
                         source.src_lang if source.wave is None else None, source.wave, desc)


def execute_fires(service: InterventionService, prepared: PreparedFires, job: Job | None = None) -> dict[str, Any]:
    """Record the input, score every unit and keep the top `n` of each (stack, layer)."""
    bundle, registry = service.host.require()
    reader = service._reader()
    t0 = time.perf_counter()
    with service._model_lock:
        acts = input_activations(bundle, registry, tgt_lang=prepared.tgt_lang, step=prepared.step, mode=prepared.mode,
                                 text=prepared.text, src_lang=prepared.src_lang, audio=prepared.audio)
    record_s = time.perf_counter() - t0
    modality = "speech" if prepared.audio is not None else "text"
    task = statistics_task(modality, prepared.input_desc.get("lang") or prepared.src_lang, prepared.tgt_lang)
    run = reader.run(prepared.run_id)
    if task not in run["tasks"]:
        task = next((t for t in run["tasks"] if t.endswith("s2tt" if modality == "speech" else "t2tt")), task)
    layout = reader.layout(prepared.run_id)
    stacks, missing = [], []
    for stack, values in ((acts.encoder_stack, acts.encoder), ("text_decoder", acts.decoder)):
        start, stop = layout.stack_ranges[stack]
        moments = reader.activation_moments(prepared.run_id, task, stack, prepared.step) if task in run["tasks"] else None
        if moments is None:
            missing.append(stack)
            mean = std = np.full(len(values), np.nan)
        else:
            mean, std = moments
        z = deviation(values, mean, std)
        score = {"z": np.abs(z), "activation": values, "magnitude": np.abs(values)}[prepared.rank_by]
        if prepared.rank_by == "z" and moments is None:
            score = np.abs(values)
        layers = layout.unit_layer[start:stop].astype(np.int64)
        picked = top_per_group(score, layers, prepared.n)
        info = layout.unit_info(picked + start)
        units = [{"unit_id": int(r["unit_id"]), "site": r["site"], "channel": int(r["channel"]), "layer": int(r["layer"]),
                  "component": r["component"], "activation": round(float(values[j]), 6),
                  "corpus_mean": None if not np.isfinite(mean[j]) else round(float(mean[j]), 6),
                  "corpus_std": None if not np.isfinite(std[j]) else round(float(std[j]), 6),
                  "z": None if not np.isfinite(z[j]) else round(float(z[j]), 4)}
                 for j, r in zip(picked, info.to_dict("records"))]
        by_layer: dict[int, list[dict[str, Any]]] = {}
        for u in units:
            by_layer.setdefault(u["layer"], []).append(u)
        stacks.append({"stack": stack, "n_units": int(stop - start), "statistics": moments is not None,
                       "layers": [{"layer": layer, "units": us} for layer, us in by_layer.items()]})
    note = None
    if missing:
        note = (f"the store has no corpus moments of {', '.join(missing)} for {task} (a store written before schema 1.3, "
                f"or a run without its analysis): those units are ranked by |activation| without corpus z-scores")
    return {"kind": "activations", "run_id": prepared.run_id, "input": prepared.input_desc, "tgt_lang": prepared.tgt_lang,
            "step": prepared.step, "n": prepared.n, "rank_by": prepared.rank_by, "statistics_task": task, "note": note,
            "output_tokens": bundle.tokenizer.convert_ids_to_tokens(acts.generated), "stacks": stacks,
            "model": {"spec": bundle.spec, "checksum": bundle.checksum}, "engine_version": ENGINE_VERSION,
            "timing_s": {"record": round(record_s, 4), "total": round(time.perf_counter() - t0, 4)}}
