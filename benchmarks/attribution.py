"""Token attribution: its cost against a plain forward pass, and how well its estimates agree with forcing.

`cost` (default): on the demo model on CPU (one torch thread, as the backend serves small models), for built-in
English sentences translated into German, times `attribute_token` (one forward + backward pass, zero reference) on
content token 2 against a plain no-grad teacher-forced forward pass of the same sequence (the ratio), and the
verification of the top 20 (one batched pass of 22 rows). Target: attribution < 2 s per token.
`--model full-random` runs the same on the full-size architecture (fp32 on CPU, ~10 GB of memory, e.g.
`--sentences 1 --warmup 0 --verify 2`; on a CUDA GPU, `--device cuda`, in bf16) and prints a FLOP count
(2 × parameters × tokens per forward, the backward to activations about as much again) with the time a GPU at
`--gpu-tflops` would need, and the time to read the bf16 weights twice (forward and backward) at `--gpu-tbps`: at a
few dozen tokens a GPU is bound by that and by kernel launches, not by FLOPs.

`agreement`: the README's lab setting on the demo model (English → German with French's en→X control units found
on text at step 2, top + bottom 250, forced to on_p50; the statistics from a small precompute of en2x_t2tt, ~1 min):
for `--sentences` built-in sentences, the first token the steering changes is attributed on each side with each
reference, and the top-20 estimates are compared with the changes measured by forcing each unit alone (Pearson r,
Spearman rho per sentence; the median is printed).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from neuron_atlas.engine import attribution as attr
from neuron_atlas.engine.interventions import (
    ConceptUnits,
    InterventionSpec,
    StatisticValue,
    ZeroValue,
    generate_with,
    prepare_inputs,
    resolve,
)
from neuron_atlas.engine.model.loading import configure_cpu_threads, load_model
from neuron_atlas.engine.model.unit_sites import SiteRegistry
from neuron_atlas.engine.sentences import SENTENCES

TOKEN = 2
VERIFY = 20


def _forward(bundle, inputs, seq) -> None:
    with torch.no_grad():
        bundle.model(**inputs, decoder_input_ids=torch.tensor([seq[:-1]], device=bundle.device), use_cache=False)


def _sync(bundle) -> None:
    if bundle.device.type == "cuda":
        torch.cuda.synchronize()


def cost(model: str, device: str, n: int, gpu_tflops: float, gpu_tbps: float, verify: int, warmup: int) -> None:
    bundle = load_model(model, device=device)
    threads = configure_cpu_threads(bundle)
    registry = SiteRegistry.from_model(bundle.model)
    params = sum(p.numel() for p in bundle.model.parameters())
    print(f"model {model} ({params / 1e6:.0f} M parameters, {registry.n_units:,} units) on {bundle.device} "
          f"{str(bundle.dtype).removeprefix('torch.')}, {threads} torch thread(s); {n} sentences eng→deu, token {TOKEN}")
    ref = attr.reference_values(ZeroValue(), registry, None, None)
    plain, attributed, verified, lengths = [], [], [], []
    for i in range(n + warmup):
        inputs = prepare_inputs(bundle, text=SENTENCES[i].text("eng"), src_lang="eng")
        out = generate_with(bundle, registry, None, inputs, "deu", max_new_tokens=TOKEN + 1)
        seq = attr.target_sequence(out.sequences[0].tolist(), min(TOKEN, len(out.token_ids[0]) - 1))
        _sync(bundle)
        t0 = time.perf_counter()
        _forward(bundle, inputs, seq)
        _sync(bundle)
        t1 = time.perf_counter()
        found = attr.attribute_token(bundle, registry, inputs, seq, ref)
        _sync(bundle)
        t2 = time.perf_counter()
        top = attr.rank_units(found.estimates, verify)
        attr.verify_forcing(bundle, registry, inputs, seq, ref, [top[j : j + 1] for j in range(len(top))] + [top])
        _sync(bundle)
        t3 = time.perf_counter()
        if i < warmup:
            continue
        plain.append(t1 - t0)
        attributed.append(t2 - t1)
        verified.append(t3 - t2)
        lengths.append(int(inputs["input_ids"].shape[1]) + len(seq) - 1)
    med = statistics.median
    print(f"plain teacher-forced forward  median {med(plain) * 1e3:8.1f} ms")
    print(f"attribution (fwd + bwd)       median {med(attributed) * 1e3:8.1f} ms   ratio {med(a / p for a, p in zip(attributed, plain)):.2f}x the forward   (target < 2000 ms)")
    print(f"verification of the top {verify} (+all)  median {med(verified) * 1e3:8.1f} ms   ({verify + 2} rows in batches of {attr.VERIFY_BATCH_ROWS})")
    tokens = med(lengths)
    flops = 2 * params * tokens * 2
    weight_bytes = 2 * params * 2
    print(f"FLOPs per attribution ≈ 2 × {params / 1e9:.2f} G parameters × {tokens:.0f} tokens × 2 (forward + backward to "
          f"activations) = {flops / 1e12:.3f} TFLOP: {flops / (gpu_tflops * 1e12) * 1e3:.2f} ms at {gpu_tflops:g} TFLOP/s; "
          f"reading the bf16 weights twice ({weight_bytes / 1e9:.1f} GB) at {gpu_tbps:g} TB/s: "
          f"{weight_bytes / (gpu_tbps * 1e12) * 1e3:.2f} ms; measured here: {flops / med(attributed) / 1e9:.1f} GFLOP/s")


def agreement(n: int, store: Path | None) -> None:
    from backend.store.reader import StoreReader, StoreStats

    bundle = load_model("demo", device="cpu")
    configure_cpu_threads(bundle)
    registry = SiteRegistry.from_model(bundle.model)
    store, run_id = _control_store(store, bundle)
    reader = StoreReader(store)
    stats = StoreStats(reader, run_id)
    fra = _french_concept(reader, run_id)
    spec = InterventionSpec(units=ConceptUnits(concept_id=fra, set="both", k=250, stack="text_decoder"))
    steer = resolve(spec, registry, stats)
    french = np.zeros(registry.n_units, dtype=bool)
    french[steer.unit_ids] = True
    refs = {"on_p50": StatisticValue(kind="on_p50"), "off_mean": StatisticValue(kind="off_mean"), "zero": ZeroValue()}
    rows: dict[tuple[str, str, str], list[tuple[float, float, int]]] = {}
    for sentence in SENTENCES[:n]:
        inputs = prepare_inputs(bundle, text=sentence.text("eng"), src_lang="eng")
        base = generate_with(bundle, registry, None, inputs, "deu", max_new_tokens=32)
        inter = generate_with(bundle, registry, steer, inputs, "deu", max_new_tokens=32)
        b, i = base.token_ids[0], inter.token_ids[0]
        first = next((j for j, (x, y) in enumerate(zip(b, i)) if x != y), None)
        if first is None:
            continue
        for side, out, run, other in (("baseline", base, None, i[first]), ("intervened", inter, steer, b[first])):
            seq = attr.target_sequence(out.sequences[0].tolist(), first)
            for name, value in refs.items():
                ref = attr.reference_values(value, registry, None if name == "zero" else stats, None if name == "zero" else fra)
                for objective, versus in (("logprob", None), ("log-odds", other)):
                    found = attr.attribute_token(bundle, registry, inputs, seq, ref, run, versus)
                    top = attr.rank_units(found.estimates, VERIFY)
                    _, actual = attr.verify_forcing(bundle, registry, inputs, seq, ref, [top[j : j + 1] for j in range(VERIFY)], run, versus)
                    c = attr.correlation(found.estimates[top], actual)
                    in_set = int(french[attr.rank_units(found.estimates, 100)].sum())
                    rows.setdefault((side, name, objective), []).append((c["pearson"], c["spearman"], in_set))
    scored = registry.stack_width("text_encoder") + registry.stack_width("text_decoder")
    print(f"demo model, {n} sentences eng→deu steered by fra's en2x control set (both-250, on_p50); first changed token")
    print(f"top-{VERIFY} estimate vs actual (median over sentences), and French-set units among the top 100 "
          f"(chance {100 * len(steer.unit_ids) / scored:.1f})")
    for (side, name, objective), vals in rows.items():
        r = [v[0] for v in vals if v[0] is not None]
        rho = [v[1] for v in vals if v[1] is not None]
        print(f"  {side:10s} reference {name:8s} {objective:8s}  r {statistics.median(r):6.3f}  rho {statistics.median(rho):6.3f}"
              f"  French in top 100: median {statistics.median(v[2] for v in vals):4.1f}  ({len(vals)} sentences)")


def _control_store(store: Path | None, bundle) -> tuple[Path, str]:
    """A store with en2x_t2tt language concepts at step 2 (given, or precomputed into a temporary folder)."""
    from precompute.config import AnalysisConfig, EvaluateConfig, RunConfig
    from precompute.corpus.config import CorpusConfig
    from precompute.pipeline import run_precompute

    root = Path(tempfile.mkdtemp(prefix="attribution-")) if store is None else store.parent
    cfg = RunConfig(name="attribution", model="demo", device="cpu", tasks=["en2x_t2tt"], steps=[2], batch_size=32,
                    store=store or root / "atlas.duckdb", work_dir=root / "work", corpus=CorpusConfig(source="builtin"),
                    analysis=AnalysisConfig(ks=[250]), evaluate=EvaluateConfig(enabled=False))
    result = run_precompute(cfg, progress=False, bundle=bundle)
    return Path(result.store), result.run_id


def _french_concept(reader, run_id: str) -> int:
    frame = reader.concepts(run_id, kind="language", task="en2x_t2tt", step=2, language="fra")
    return int(frame["concept_id"].iloc[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="?", choices=("cost", "agreement"), default="cost")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sentences", type=int, default=12)
    parser.add_argument("--store", type=Path, default=None, help="agreement: reuse (or write) this store")
    parser.add_argument("--verify", type=int, default=VERIFY, help="cost: units verified per token")
    parser.add_argument("--warmup", type=int, default=1, help="cost: sentences run first and not timed")
    parser.add_argument("--gpu-tflops", type=float, default=400.0, help="sustained bf16 TFLOP/s of the projected GPU")
    parser.add_argument("--gpu-tbps", type=float, default=4.8, help="memory bandwidth (TB/s) of the projected GPU")
    args = parser.parse_args()
    if args.what == "cost":
        cost(args.model, args.device, args.sentences, args.gpu_tflops, args.gpu_tbps, args.verify, args.warmup)
    else:
        agreement(args.sentences, args.store)


if __name__ == "__main__":
    main()
