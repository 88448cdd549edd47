"""The k sweep as one job: a concept set at several k and seeded random sets of the same size, over several inputs.

`prepare_sweep` validates everything first (every input through the live service's own `prepare`, every variant spec
resolved against the model and the run), so a bad request costs nothing and takes no queue slot. `execute_sweep`
then runs on the queue's worker: one baseline per input, then for each k the chosen set and one random set per seed,
reporting progress after every generation. Random controls are summarised per seed (mean over inputs), then as the
mean and standard deviation across seeds; the chosen set as the mean and standard deviation across inputs.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.api.errors import ApiProblem
from backend.api.live import InterventionService, Prepared
from backend.queue import Job
from neuron_atlas.engine.interventions import ConceptUnits, InterventionSpec, ResolvedIntervention, generate_with, resolve
from backend.store.reader import StoreStats
from neuron_atlas.engine.versions import ENGINE_VERSION

#: Most generations one sweep may ask for (inputs x (1 + ks x (1 + seeds))).
MAX_SWEEP_GENERATIONS = 240


def control_size(set_kind: str, k: int) -> int:
    """Units of a set at k (both = top k + bottom k): the size its random control must have."""
    return 2 * k if set_kind == "both" else k


@dataclass
class Variant:
    """One intervention of the sweep: its k, set kind, seed (random sets) and resolved spec."""

    k: int
    set_kind: str
    seed: int | None
    resolved: ResolvedIntervention


@dataclass
class PreparedSweep:
    key: str
    inputs: list[Prepared]
    variants: list[Variant]
    tgt_lang: str
    concept_lang: str | None
    run_id: str
    chosen_set: str
    ks: list[int]
    seeds: list[int]

    @property
    def total(self) -> int:
        return len(self.inputs) * (1 + len(self.variants))


def _variant_spec(spec: InterventionSpec, set_kind: str, k: int, seed: int) -> InterventionSpec:
    data = json.loads(spec.canonical_json())
    data["units"] = {**data["units"], "set": set_kind, "k": k, "seed": seed}
    return InterventionSpec.parse(data)


def prepare_sweep(service: InterventionService, request: dict[str, Any]) -> PreparedSweep:
    """Validate a sweep request completely and resolve every variant; 422 naming the field otherwise."""
    spec: InterventionSpec = request["spec"]
    if not isinstance(spec.units, ConceptUnits):
        raise ApiProblem(422, "spec.units.kind: a sweep varies a concept's set; give concept units", "spec.units.kind")
    ks = sorted(set(request["ks"]))
    seeds = list(dict.fromkeys(request["seeds"]))
    chosen = spec.units.set if spec.units.set != "random" else "top"
    n_inputs = len(request["inputs"])
    total = n_inputs * (1 + len(ks) * (1 + len(seeds)))
    if total > MAX_SWEEP_GENERATIONS:
        raise ApiProblem(422, f"inputs, ks, seeds: the sweep would run {total} generations ({n_inputs} inputs x (1 + "
                              f"{len(ks)} ks x (1 + {len(seeds)} seeds))); the limit is {MAX_SWEEP_GENERATIONS}", "ks")
    common = {"tgt_lang": request["tgt_lang"], "run_id": request.get("run_id"), "max_new_tokens": request.get("max_new_tokens"),
              "spec": spec, "return_speech": False}
    inputs = []
    for i, inp in enumerate(request["inputs"]):
        try:
            inputs.append(service.prepare({**common, **inp}))
        except ApiProblem as exc:
            raise ApiProblem(exc.status, f"inputs[{i}].{exc.message}", f"inputs[{i}].{exc.field or 'input'}") from None
    run_id = inputs[0].run_id
    bundle, registry = service.host.require()
    stats = StoreStats(service._reader(), run_id)
    variants = []
    for k in ks:
        for set_kind, seed, size in [(chosen, spec.units.seed, k), *[("random", s, control_size(chosen, k)) for s in seeds]]:
            try:
                resolved = resolve(_variant_spec(spec, set_kind, size, seed), registry, stats)
            except ValueError as exc:  # SpecError: e.g. k larger than the concept's scope
                field = getattr(exc, "field", "") or "spec"
                raise ApiProblem(422, f"ks: at k = {k} ({set_kind}): {exc}", "ks" if "k" in field else f"spec.{field}") from None
            variants.append(Variant(k, set_kind, seed if set_kind == "random" else None, resolved))
    concept = service._reader().concept(run_id, spec.units.concept_id)
    concept_lang = request.get("concept_lang") or concept.get("language")
    key = hashlib.sha256(json.dumps({"sweep": [p.key for p in inputs], "ks": ks, "seeds": seeds, "chosen": chosen,
                                     "concept_lang": concept_lang, "engine": ENGINE_VERSION}, sort_keys=True).encode()).hexdigest()
    return PreparedSweep(f"sweep:{key}", inputs, variants, request["tgt_lang"], concept_lang, run_id, chosen, ks, seeds)


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    arr = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if not len(arr):
        return None, None
    return round(float(arr.mean()), 6), round(float(arr.std()), 6)


def execute_sweep(service: InterventionService, prepared: PreparedSweep, job: Job | None = None) -> dict[str, Any]:
    """Run every generation of a prepared sweep (one at a time on the model), reporting progress to `job`."""
    bundle, registry = service.host.require()
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    done, total = 0, prepared.total
    identifier = service.host.identifier

    def probs_of(text: str) -> dict[str, float]:
        return identifier.probabilities([text])[0] if identifier is not None else {}

    def record(inp: int, variant: Variant | None, out) -> None:
        nonlocal done
        p = probs_of(out.text)
        rows.append({"input": inp, "k": None if variant is None else variant.k,
                     "set": "baseline" if variant is None else variant.set_kind,
                     "seed": None if variant is None else variant.seed,
                     "n_units": 0 if variant is None else int(len(variant.resolved.unit_ids)), "text": out.text,
                     "p_concept": None if prepared.concept_lang is None else round(float(p.get(prepared.concept_lang, 0.0)), 6),
                     "p_tgt": round(float(p.get(prepared.tgt_lang, 0.0)), 6)})
        done += 1
        if job is not None:
            job.report(done, total, "baseline" if variant is None else f"k={variant.k} {variant.set_kind}")

    with service._model_lock:
        for i, inp in enumerate(prepared.inputs):
            record(i, None, generate_with(bundle, registry, None, inp.inputs, inp.tgt_lang, max_new_tokens=inp.max_new_tokens))
        for variant in prepared.variants:
            for i, inp in enumerate(prepared.inputs):
                out = generate_with(bundle, registry, variant.resolved, inp.inputs, inp.tgt_lang, max_new_tokens=inp.max_new_tokens)
                record(i, variant, out)
    return {"kind": "sweep", "run_id": prepared.run_id, "tgt_lang": prepared.tgt_lang, "concept_lang": prepared.concept_lang,
            "set": prepared.chosen_set, "ks": prepared.ks, "seeds": prepared.seeds, "n_inputs": len(prepared.inputs),
            "inputs": [p.input_desc for p in prepared.inputs], "baseline": _summary(rows, "baseline", None),
            "points": [_summary(rows, kind, k) for k in prepared.ks for kind in (prepared.chosen_set, "random")],
            "outputs": rows, "engine_version": ENGINE_VERSION, "seconds": round(time.perf_counter() - t0, 3)}


def _summary(rows: list[dict[str, Any]], set_kind: str, k: int | None) -> dict[str, Any]:
    """Mean (and spread) of p_concept and p_tgt: across inputs for a set, across seeds (of input means) for random."""
    mine = [r for r in rows if r["set"] == set_kind and r["k"] == k]
    out: dict[str, Any] = {"k": k, "set": set_kind, "n_units": mine[0]["n_units"] if mine else 0, "n": len(mine)}
    if set_kind == "random":
        seeds = sorted({r["seed"] for r in mine})
        out["n_seeds"] = len(seeds)
        for metric in ("p_concept", "p_tgt"):
            per_seed = [_mean_std([r[metric] for r in mine if r["seed"] == s])[0] for s in seeds]
            out[metric], out[f"{metric}_std"] = _mean_std(per_seed)
    else:
        for metric in ("p_concept", "p_tgt"):
            out[metric], out[f"{metric}_std"] = _mean_std([r[metric] for r in mine])
    return out
