"""Full-size benchmarks for a GPU box: the large architecture (random weights) in bf16.

Measures (1) recording throughput in utterances/s for 10 s utterances and the fraction of the GPU's dense bf16
peak that the forward passes reach (FLOPs counted by torch's FlopCounterMode), (2) AP over every unit for a
3,600-example concept, (3) live intervention latency (10 s audio -> text, text -> text) with and without 2,000 forced
units. Without a CUDA GPU it says so and runs a scaled-down version on CPU (tiny model; AP over all 1.5M units with
360 examples), every line labelled as such.

``--cpu-full`` (issue 18): the full-size architecture with random weights, fp32 on CPU, end to end on a few dozen
built-in items (record -> statistics -> store -> API queries on the store), printing bytes per item, seconds per item,
peak RSS and store size beside `neuron-atlas plan`'s prediction for the same config (measured / plan). Needs ~14 GB
of RAM and ~10 min on 2 cores: ``python -m benchmarks.fullsize --cpu-full``.
"""
from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import transformers
from torch.utils.flop_counter import FlopCounterMode

from neuron_atlas.engine.interventions import InMemoryStats, generate_with, prepare_inputs, resolve
from neuron_atlas.engine.model.loading import configure_cpu_threads, load_model
from neuron_atlas.engine.model.unit_sites import SiteRegistry
from neuron_atlas.engine.example import Example
from neuron_atlas.engine.record import record_batch
from precompute.selectivity import average_precision
from neuron_atlas.engine.tasks import TaskItem

#: Dense bf16 tensor-core peak (no sparsity), FLOP/s, by device-name substring.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "L4": 121e12}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _items(n: int, seconds: float, rng: np.random.Generator) -> tuple[list[TaskItem], dict[str, np.ndarray]]:
    audio, items = {}, []
    for i in range(n):
        ex = Example(f"bench{i}", f"s{i}", "fra", "Le train part à sept heures.", None, "The train leaves at seven.")
        audio[ex.id] = (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
        items.append(TaskItem("s2tt", i, ex, "fra", "eng", "fra", ex.reference))
    return items, audio


def bench_recording(bundle, registry, batch: int, seconds: float, repeats: int) -> None:
    rng = np.random.default_rng(0)
    items, audio = _items(batch, seconds, rng)
    record_batch(bundle, registry, items[:1], audio=audio)
    _sync(bundle.device)
    with FlopCounterMode(display=False) as counter:
        record_batch(bundle, registry, items, audio=audio)
    flops = counter.get_total_flops()
    times = []
    for _ in range(repeats):
        _sync(bundle.device)
        t0 = time.perf_counter()
        record_batch(bundle, registry, items, audio=audio)
        _sync(bundle.device)
        times.append(time.perf_counter() - t0)
    t = float(np.median(times))
    line = f"recording: {batch / t:.2f} utterances/s ({seconds:.0f} s each, batch {batch}, generate + 3 teacher-forced passes)"
    name = torch.cuda.get_device_name() if bundle.device.type == "cuda" else "cpu"
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    achieved = flops / t
    print(line)
    if peak:
        print(f"  forward FLOPs {flops / 1e12:.2f} TFLOP per batch, {achieved / 1e12:.1f} TFLOP/s = {achieved / peak:.1%} of {name} dense bf16 peak")
    else:
        print(f"  forward FLOPs {flops / 1e12:.3f} TFLOP per batch, {achieved / 1e9:.1f} GFLOP/s (no peak figure for {name})")


def bench_ap(n_units: int, n_examples: int) -> None:
    rng = np.random.default_rng(0)
    labels = np.zeros(n_examples, bool)
    labels[: n_examples // 6] = True
    chunk = 100_000
    t0 = time.perf_counter()
    for start in range(0, n_units, chunk):
        size = min(chunk, n_units - start)
        acts = rng.standard_normal((size, n_examples), dtype=np.float32)
        average_precision(acts, labels)
    t = time.perf_counter() - t0
    print(f"AP: {n_units:,} units x {n_examples:,} examples, one concept: {t:.1f} s (includes generating the data)")


def bench_intervention(bundle, registry, n_units: int, seconds: float, repeats: int, max_new_tokens: int) -> None:
    rng = np.random.default_rng(0)
    ap = rng.random(registry.n_units)
    values = {"on_p50": rng.standard_normal(registry.n_units).astype(np.float32)}
    stats = InMemoryStats(registry, {0: ap}, {0: values})
    dec = registry.stack_width("text_decoder")
    k = min(n_units, dec) // 2
    resolved = resolve({"units": {"kind": "concept", "concept_id": 0, "set": "both", "k": k, "stack": "text_decoder"}}, registry, stats)
    cases = {
        f"{seconds:.0f} s audio -> text": prepare_inputs(bundle, audio=(0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)),
        "text -> text": prepare_inputs(bundle, text="Le train part à sept heures et le bus est en retard.", src_lang="fra"),
    }
    for name, inputs in cases.items():
        for label, spec in (("plain", None), (f"{resolved.unit_ids.size} forced units", resolved)):
            out = generate_with(bundle, registry, spec, inputs, "eng", max_new_tokens=max_new_tokens)
            steps = out.sequences.shape[1] - 1
            times = []
            for _ in range(repeats):
                _sync(bundle.device)
                t0 = time.perf_counter()
                generate_with(bundle, registry, spec, inputs, "eng", max_new_tokens=max_new_tokens)
                _sync(bundle.device)
                times.append(time.perf_counter() - t0)
            t = float(np.median(times))
            print(f"intervention latency, {name}, {label}: p50 {t * 1e3:.0f} ms for {steps} decoding steps "
                  f"({t / steps * 1e3:.1f} ms/step)")


def _shard_bytes(work: Path) -> dict[tuple[str, str], int]:
    """Bytes on disk per (task, array) of a run's recording shards (`{task}/{array}` files under shards/)."""
    out: dict[tuple[str, str], int] = defaultdict(int)
    for f in (work / "shards").rglob("*.npy"):
        out[(f.relative_to(work / "shards").parts[0], f.stem)] += f.stat().st_size
    return out


def _api_queries(store: Path, run_id: str) -> dict[str, float]:
    """Milliseconds of a few store queries through the FastAPI app (no model loaded), the second call of each."""
    from fastapi.testclient import TestClient

    from backend.api.app import create_app
    from backend.api.settings import Settings

    settings = Settings(store=store, findings_db=store.parent / "findings.sqlite", model="none", device="cpu",
                        _env_file=None)
    out = {}
    with TestClient(create_app(settings)) as client:
        concept = client.get(f"/runs/{run_id}/concepts", params={"limit": 1}).json()["concepts"][0]["concept_id"]
        decoder = [s for s in client.get(f"/runs/{run_id}/sites").json()["sites"] if s["stack"] == "text_decoder"]
        unit = decoder[len(decoder) // 2]["unit_offset"]
        for name, path, params in (("unit page statistics", f"/runs/{run_id}/units/{unit}", {}),
                                   ("unit top/bottom examples", f"/runs/{run_id}/units/{unit}/examples", {}),
                                   ("decoder heatmap", f"/runs/{run_id}/heatmap", {"stack": "text_decoder", "concept_ids": concept})):
            for _ in range(2):
                t0 = time.perf_counter()
                r = client.get(path, params=params)
                ms = (time.perf_counter() - t0) * 1e3
            r.raise_for_status()
            out[name] = ms
    return out


def cpu_full(languages: list[str], sentences: int, tasks: list[str], steps: list[int], keep: Path | None,
             model: str = "full-random") -> None:
    """The full-random model (or `model`, for a smoke run) end to end on CPU over a small built-in corpus, against
    the plan's prediction."""
    from precompute.config import load_run_config
    from precompute.pipeline import run_precompute
    from precompute.plan import make_plan

    root = keep or Path(tempfile.mkdtemp(prefix="fullsize-cpu-"))
    root.mkdir(parents=True, exist_ok=True)
    cfg_path = root / "run.yaml"
    cfg_path.write_text(json.dumps({
        "name": "fullsize-cpu", "model": model, "device": "cpu", "tasks": tasks, "steps": steps,
        "corpus": {"source": "builtin", "languages": languages, "max_sentences": sentences},
        "shard_size": 8, "batch_size": 4, "keep_activations": True, "store": str(root / "atlas.duckdb"),
        "work_dir": str(root / "work"), "analysis": {"ks": [100, 1000], "seed": 0}, "evaluate": {"enabled": False}}))
    cfg = load_run_config(cfg_path)
    plan = make_plan(cfg, flops=False)
    print("\n".join(plan.lines()))
    t0 = time.perf_counter()
    result = run_precompute(cfg, progress=True)
    elapsed = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    work = Path(result.work_dir)
    shards = _shard_bytes(work)
    stats = sum(f.stat().st_size for f in (work / "stats").rglob("*") if f.is_file())
    store_bytes = result.store.stat().st_size
    n_items = sum(result.n_items.values())
    queries = _api_queries(result.store, result.run_id)
    print(f"\n{model} fp32 on CPU, {n_items} items ({', '.join(f'{t} {n}' for t, n in result.n_items.items())}), "
          f"steps {steps}: {elapsed:.0f} s end to end, {elapsed / n_items:.1f} s per item (model load, recording, "
          f"statistics and store included)")
    print(f"\n| figure | plan | measured | measured / plan |\n|---|---:|---:|---:|")
    for task in tasks:
        planned = sum(a.bytes for a in plan.arrays if a.task == task) / plan.items[task]
        measured = sum(b for (t, _), b in shards.items() if t == task) / result.n_items[task]
        print(f"| {task}: activation bytes per item | {planned / 1e6:,.2f} MB | {measured / 1e6:,.2f} MB | {measured / planned:.3f} |")
    recorded = sum(shards.values())
    for label, planned, measured in (("activations written", plan.activation_bytes, recorded),
                                     ("statistics files", plan.stats_bytes, stats),
                                     ("peak working disk (keep_activations)", plan.peak_work_bytes, recorded + stats),
                                     ("store", plan.store_bytes, store_bytes),
                                     ("peak host RAM (RSS)", plan.ram_bytes, rss)):
        print(f"| {label} | {planned / 1e6:,.1f} MB | {measured / 1e6:,.1f} MB | {measured / planned:.3f} |")
    for name, ms in queries.items():
        print(f"API on the store: {name}: {ms:.1f} ms")
    print(f"work folder and store kept in {root}" if keep else f"work folder and store in {root} (temporary)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cpu-full", action="store_true", help="full-random end to end on CPU against the plan")
    parser.add_argument("--languages", default="eng,deu,fra,spa", help="--cpu-full: corpus languages")
    parser.add_argument("--sentences", type=int, default=3, help="--cpu-full: sentences per language")
    parser.add_argument("--tasks", default="asr,s2tt,t2tt", help="--cpu-full: tasks")
    parser.add_argument("--steps", default="2,7", help="--cpu-full: decoder steps")
    parser.add_argument("--keep", type=Path, help="--cpu-full: keep the run's folder and store here")
    parser.add_argument("--model", default="full-random", help="--cpu-full: model (tiny-random for a smoke run)")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    if args.cpu_full:
        cpu_full(args.languages.split(","), args.sentences, args.tasks.split(","),
                 [int(s) for s in args.steps.split(",")], args.keep, args.model)
        return
    repeats = 2 if args.quick else 5
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name()} — full-random (large architecture) in bf16")
        bundle = load_model("full-random", device="cuda")
        registry = SiteRegistry.from_model(bundle.model)
        bench_recording(bundle, registry, batch=16, seconds=10.0, repeats=repeats)
        bench_ap(registry.n_units, 3600)
        bench_intervention(bundle, registry, 2000, 10.0, repeats, max_new_tokens=64)
        return
    print("no CUDA GPU: running the SCALED-DOWN CPU version (tiny-random model; AP over all 1.5M units with 360 examples)")
    bundle = load_model("tiny-random", device="cpu")
    configure_cpu_threads(bundle)
    registry = SiteRegistry.from_model(bundle.model)
    bench_recording(bundle, registry, batch=16, seconds=10.0, repeats=repeats)
    full = SiteRegistry.from_model(load_model("full-random", device="meta").model)
    bench_ap(full.n_units if not args.quick else 200_000, 360)
    bench_intervention(bundle, registry, 2000, 10.0, repeats, max_new_tokens=64)


if __name__ == "__main__":
    main()
