"""Full-size benchmarks for a GPU box: the large architecture (random weights) in bf16.

Measures (1) recording throughput in utterances/s for 10 s utterances and the fraction of the GPU's dense bf16
peak that the forward passes reach (FLOPs counted by torch's FlopCounterMode), (2) AP over every unit for a
3,600-example concept, (3) live intervention latency (10 s audio -> text, text -> text) with and without 2,000 forced
units. Without a CUDA GPU it says so and runs a scaled-down version on CPU (tiny model; AP over all 1.5M units with
360 examples), every line labelled as such.
"""
from __future__ import annotations

import argparse
import time

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
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
