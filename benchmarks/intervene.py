"""Intervention overhead: greedy `generate` with intervention hooks vs plain `generate`, same inputs, same model.

Tiny random model (or `--model demo`, the trained demo model) on CPU: 20 text + 10 speech utterances (batch 1, as a live request), every run forced to exactly
`--tokens` new tokens (so an intervention that changes the output cannot change the amount of work), for (a) a spec
writing 500 random decoder units (spread over every decoder site: the worst case for hook count) and (b) an empty
spec. Plain and hooked runs alternate per utterance; each repeat sums the utterances, and the ratio reported is the
median over repeats of hooked/plain within a repeat (CPU time on CPU, wall time on CUDA). Target <= 1.10x. With a
CUDA GPU it also runs the full-size random model in bf16 with 2,000 forced units (`--full-cpu`: in fp32 on one CPU
thread, 3 text + 2 speech inputs, 16 tokens; ~13 GB of memory). A last row times no-op hooks on
the same sites as the first spec: the cost of PyTorch's hook dispatch alone, which no hook body can go below.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch
import transformers

from neuron_atlas.engine.interventions import InMemoryStats, InterventionSpec, ResolvedIntervention, intervene, prepare_inputs, resolve
from neuron_atlas.engine.model.hooks import HookPoints
from neuron_atlas.engine.model.loading import ModelBundle, configure_cpu_threads, load_model
from neuron_atlas.engine.model.unit_sites import STACKS, SiteRegistry
from neuron_atlas.engine.sentences import SENTENCES

LANGS = ("eng", "deu", "spa", "fra", "jpn", "cmn")
CONCEPT = 1


def make_inputs(bundle: ModelBundle, n_text: int, n_speech: int) -> list[tuple[str, dict]]:
    """(kind, model inputs) for built-in sentences round-robin over languages, and synthetic 1-3 s speech."""
    out = []
    for i in range(n_text):
        lang = LANGS[i % len(LANGS)]
        out.append(("text", prepare_inputs(bundle, text=SENTENCES[i % len(SENTENCES)].text(lang), src_lang=lang)))
    rng = np.random.default_rng(0)
    for i in range(n_speech):
        n = int(16000 * (1.0 + 2.0 * i / max(n_speech - 1, 1)))
        t = np.arange(n) / 16000
        wave = 0.1 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.02 * rng.standard_normal(n)
        out.append(("speech", prepare_inputs(bundle, audio=wave.astype(np.float32))))
    return out


def random_stats(registry: SiteRegistry) -> InMemoryStats:
    """Random AP and on_p50 values for every unit: a stand-in concept, so specs go through the statistics path."""
    rng = np.random.default_rng(1)
    n = registry.n_units
    return InMemoryStats(registry, {CONCEPT: rng.random(n)}, {CONCEPT: {"on_p50": rng.normal(size=n).astype(np.float32)}})


def decoder_spec(k: int) -> InterventionSpec:
    return InterventionSpec(units={"kind": "concept", "concept_id": CONCEPT, "set": "random", "k": k, "seed": 0, "stack": "text_decoder"}, value={"kind": "on_p50"})


@torch.no_grad()
def generate(bundle: ModelBundle, inputs: dict, tokens: int) -> None:
    bundle.model.generate(
        **inputs, tgt_lang="eng", generate_speech=False, do_sample=False, num_beams=1, max_new_tokens=tokens, min_new_tokens=tokens
    )


Hooks = Callable[[], AbstractContextManager]


def timed(bundle: ModelBundle, hooks: Hooks, inputs: dict, tokens: int) -> float:
    """Seconds for one generation, hooks attached and detached inside the timing.

    On CPU this is the process's CPU time (the model runs on one thread), which other load on a shared machine does
    not inflate; on CUDA it is wall time between synchronisations.
    """
    cuda = bundle.device.type == "cuda"
    clock = time.perf_counter if cuda else time.process_time
    if cuda:
        torch.cuda.synchronize()
    t0 = clock()
    with hooks():
        generate(bundle, inputs, tokens)
    if cuda:
        torch.cuda.synchronize()
    return clock() - t0


def configurations(bundle: ModelBundle, registry: SiteRegistry, specs: dict[str, ResolvedIntervention], floor_of: str) -> dict[str, Hooks]:
    """'plain' (no hooks), each spec under `intervene`, and no-op HookPoints on the sites of spec `floor_of`."""
    configs: dict[str, Hooks] = {"plain": nullcontext}
    for name, res in specs.items():
        configs[name] = lambda res=res: intervene(bundle, registry, res)
    sites = [w.site for w in specs[floor_of].sites.values()]
    configs["no-op hooks, same sites"] = lambda: HookPoints(bundle.model, sites, lambda site, out: None)
    return configs


def compare(bundle: ModelBundle, configs: dict[str, Hooks], inputs: list[tuple[str, dict]], tokens: int, repeats: int) -> dict[str, dict[str, list[float]]]:
    """Per configuration and modality, the summed seconds of each repeat."""
    for _, inp in inputs[:2]:
        for hooks in configs.values():
            timed(bundle, hooks, inp, tokens)
    totals = {name: {"text": [], "speech": [], "all": []} for name in configs}
    for _ in range(repeats):
        sums = {name: {"text": 0.0, "speech": 0.0} for name in configs}
        for kind, inp in inputs:
            for name, hooks in configs.items():
                sums[name][kind] += timed(bundle, hooks, inp, tokens)
        for name in configs:
            for kind in ("text", "speech"):
                totals[name][kind].append(sums[name][kind])
            totals[name]["all"].append(sums[name]["text"] + sums[name]["speech"])
    return totals


def report(title: str, totals: dict[str, dict[str, list[float]]], counts: dict[str, int], tokens: int) -> dict[str, float]:
    """Print ms per utterance (median over repeats) and hooked/plain ratios; returns the overall ratio per spec."""
    print(title)
    plain = {kind: np.asarray(v) for kind, v in totals["plain"].items()}
    overall = {}
    for name, by_kind in totals.items():
        cells = []
        for kind in ("text", "speech"):
            if counts[kind]:
                per = float(np.median(by_kind[kind])) / counts[kind] * 1e3
                ratio = "" if name == "plain" else f"  ratio {float(np.median(np.asarray(by_kind[kind]) / plain[kind])):.3f}x"
                cells.append(f"{kind}: {per:7.2f} ms/utt{ratio}")
        tail = ""
        if name != "plain":
            overall[name] = float(np.median(np.asarray(by_kind["all"]) / plain["all"]))
            tail = f"  | all: {overall[name]:.3f}x"
        print(f"  {name:<26} " + "   ".join(cells) + tail)
    print(f"  ({counts['text']} text + {counts['speech']} speech utterances, {tokens} forced new tokens each, batch 1; target <= 1.10x)")
    return overall


def run_cpu(args: argparse.Namespace) -> None:
    bundle = load_model(args.model, device="cpu")
    threads = configure_cpu_threads(bundle)
    registry = SiteRegistry.from_model(bundle.model)
    stats = random_stats(registry)
    n_text, n_speech = (6, 3) if args.quick else (20, 10)
    inputs = make_inputs(bundle, n_text, n_speech)
    k = min(500, registry.stack_width("text_decoder"))
    hooked = resolve(decoder_spec(k), registry, stats)
    empty = resolve({"units": {"kind": "explicit", "units": []}, "value": {"kind": "zero"}}, registry, None)
    first = f"(a) {k} decoder units"
    configs = configurations(bundle, registry, {first: hooked, "(b) empty spec": empty}, floor_of=first)
    totals = compare(bundle, configs, inputs, args.tokens, args.repeats)
    report(
        f"{args.model} on CPU ({threads} thread), {registry.n_units} units; spec (a) touches {len(hooked.sites)} of "
        f"{len(registry.stack_sites('text_decoder'))} decoder sites, median of {args.repeats} repeats",
        totals,
        {"text": n_text, "speech": n_speech},
        args.tokens,
    )


def run_full(args: argparse.Namespace) -> None:
    """The full-size random model: bf16 on a CUDA GPU, or fp32 on CPU with `--full-cpu` (one thread, fewer inputs)."""
    cuda = torch.cuda.is_available()
    if not cuda and not args.full_cpu:
        print("full-random (bf16) benchmark skipped: no CUDA GPU on this machine (--full-cpu runs it in fp32 on CPU, ~10 min)")
        return
    bundle = load_model("full-random", device="cuda" if cuda else "cpu")
    if not cuda:
        torch.set_num_threads(1)
    registry = SiteRegistry.from_model(bundle.model)
    stats = random_stats(registry)
    if cuda:
        n_text, n_speech = (4, 2) if args.quick else (10, 5)
        tokens, repeats = args.tokens, max(2, args.repeats // 2)
    else:
        n_text, n_speech = (2, 1) if args.quick else (3, 2)
        tokens, repeats = min(args.tokens, 16), 2 if args.quick else 3
    inputs = make_inputs(bundle, n_text, n_speech)
    hooked = resolve(decoder_spec(2000), registry, stats)
    everywhere = resolve(
        InterventionSpec(units={"kind": "concept", "concept_id": CONCEPT, "set": "random", "k": 2000, "seed": 0}, value={"kind": "on_p50"}),
        registry,
        stats,
    )
    configs = configurations(bundle, registry, {"2000 decoder units": hooked, "2000 units, all stacks": everywhere}, floor_of="2000 decoder units")
    totals = compare(bundle, configs, inputs, tokens, repeats)
    sites = {stack: len(registry.stack_sites(stack)) for stack in STACKS}
    where = torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} thread)"
    report(
        f"full-random on {where} in {str(bundle.dtype).removeprefix('torch.')}, {registry.n_units} units; "
        f"decoder spec touches {len(hooked.sites)}/{sites['text_decoder']} decoder sites, all-stacks spec {len(everywhere.sites)} sites, "
        f"median of {repeats} repeats",
        totals,
        {"text": n_text, "speech": n_speech},
        tokens,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer utterances and repeats")
    parser.add_argument("--model", default="tiny-random", help="CPU model: tiny-random (default) or demo")
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per generation (forced)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per configuration (default 5, quick 2)")
    parser.add_argument("--skip-gpu", action="store_true", help="do not run the full-size model even with a GPU")
    parser.add_argument("--full-cpu", action="store_true", help="without a GPU, run the full-size model in fp32 on CPU")
    args = parser.parse_args()
    args.repeats = args.repeats or (2 if args.quick else 5)
    transformers.logging.set_verbosity_error()
    run_cpu(args)
    if not args.skip_gpu:
        run_full(args)


if __name__ == "__main__":
    main()
