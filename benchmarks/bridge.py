"""Benchmark: the cost of the encoder-frame ↔ decoder-token bridge against plain greedy decoding of the same input.

Per input, alternating within each repeat: plain greedy `generate` (the baseline, SDPA), the whole bridge trace
(`trace_bridge`: that generation plus one teacher-forced decoder pass with eager cross-attention on the encoder
output the generation computed), that decoder pass alone on the SDPA path and on the eager-cross-attention path
(what the eager path itself costs), and re-averaging a
cached trace (all layers and heads, peaks, a span: what a request with other layers, heads or span costs). Times
are process CPU time (the machine is shared), medians over repeats; ratios are per-repeat ratios' medians.

Run from the repository root:
``python -m benchmarks.bridge`` (demo model on CPU: 6 built-in English sentences spoken by the bundled TTS),
``python -m benchmarks.bridge --quick`` (2 sentences, 2 repeats), ``python -m benchmarks.bridge --full-cpu`` (the
full-size `full-random` architecture in fp32 on CPU, one thread: one 10 s input, 16 new tokens; ~11 GB of memory),
``python -m benchmarks.bridge --flops`` (the full-size FLOP count on the meta device and the projected ratio).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from neuron_atlas.engine import bridge
from neuron_atlas.engine.constants import DECODER_PROMPT_LENGTH
from neuron_atlas.engine.interventions import generate_with, prepare_inputs
from neuron_atlas.engine.model.hooks import AdapterPaddingGuard
from neuron_atlas.engine.model.loading import configure_cpu_threads, load_model
from neuron_atlas.engine.model.unit_sites import SiteRegistry
from neuron_atlas.engine.sentences import SENTENCES
from neuron_atlas.engine.tts import VOICES, synthesize


def _cpu(fn) -> tuple[float, object]:
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


@torch.no_grad()
def _encoded(bundle, inputs) -> torch.Tensor:
    with AdapterPaddingGuard(bundle.model):
        return bundle.model.speech_encoder(input_features=inputs["input_features"], attention_mask=inputs["attention_mask"])[0]


@torch.no_grad()
def _teacher_forced(bundle, inputs, encoded, sequences, eager: bool) -> None:
    """The bridge's second pass: the decoder over the output, on the encoder output the generation computed."""
    def run():
        bundle.model.set_modality("speech")
        bundle.model(encoder_outputs=(encoded,), attention_mask=inputs["attention_mask"], decoder_input_ids=sequences,
                     use_cache=False)
    if eager:
        with bridge.eager_cross_attention(bundle.model):
            run()
    else:
        run()


def measure(bundle, registry, waves: list[np.ndarray], tgt: str, max_new: int, repeats: int) -> dict[str, float]:
    rows: dict[str, list[float]] = {k: [] for k in ("generate", "bridge", "tf_sdpa", "tf_eager", "reaverage", "tokens",
                                                     "ratio_bridge", "ratio_eager")}
    inputs = [prepare_inputs(bundle, audio=w) for w in waves]
    for x in inputs[:1]:  # warm-up
        bridge.trace_bridge(bundle, registry, x, tgt, max_new)
    for _ in range(repeats):
        sums = dict.fromkeys(("generate", "bridge", "tf_sdpa", "tf_eager", "reaverage", "tokens"), 0.0)
        for x, w in zip(inputs, waves):
            t_gen, out = _cpu(lambda: generate_with(bundle, registry, None, x, tgt, max_new_tokens=max_new))
            t_bridge, tr = _cpu(lambda: bridge.trace_bridge(bundle, registry, x, tgt, max_new, duration_s=len(w) / 16000))
            seq = out.sequences[:, : DECODER_PROMPT_LENGTH + len(out.token_ids[0])]
            enc = _encoded(bundle, x)
            t_sdpa, _ = _cpu(lambda: _teacher_forced(bundle, x, enc, seq, eager=False))
            t_eager, _ = _cpu(lambda: _teacher_forced(bundle, x, enc, seq, eager=True))

            def reaverage():
                mean, _, _ = bridge.average(tr)
                bridge.peaks(mean, tr.geometry)
                bridge.span_readers(mean, tr.geometry, 0.2, 0.6)

            t_avg, _ = _cpu(reaverage)
            for key, value in (("generate", t_gen), ("bridge", t_bridge), ("tf_sdpa", t_sdpa), ("tf_eager", t_eager),
                               ("reaverage", t_avg), ("tokens", len(tr.token_ids))):
                sums[key] += value
        for key, value in sums.items():
            rows[key].append(value / len(inputs))
        rows["ratio_bridge"].append(sums["bridge"] / sums["generate"])
        rows["ratio_eager"].append(sums["tf_eager"] / sums["tf_sdpa"])
    return {k: statistics.median(v) for k, v in rows.items()}


def report(label: str, r: dict[str, float]) -> None:
    print(f"{label}: {r['tokens']:.1f} output tokens per input (median)")
    print(f"  plain greedy generate (baseline) {r['generate'] * 1000:9.1f} ms CPU per input")
    print(f"  bridge trace                     {r['bridge'] * 1000:9.1f} ms CPU per input  = {r['ratio_bridge']:.2f}x the baseline")
    print(f"  teacher-forced decoder, SDPA     {r['tf_sdpa'] * 1000:9.1f} ms")
    print(f"  teacher-forced decoder, eager x  {r['tf_eager'] * 1000:9.1f} ms  = {r['ratio_eager']:.2f}x the SDPA pass")
    print(f"  re-average a cached trace        {r['reaverage'] * 1000:9.3f} ms")


@torch.no_grad()
def flop_projection(seconds: float = 10.0, tokens: int = 16) -> None:
    """FLOPs of the full-size architecture (meta device, nothing allocated): the plain generation's encoder pass and
    decoder positions against the bridge's extra teacher-forced decoder pass; the projected ratio follows from them."""
    from torch.utils.flop_counter import FlopCounterMode

    model = load_model("full-random", device="meta").model
    frames = int(seconds / 0.02)
    feats = torch.zeros(1, frames, 160, device="meta")
    with FlopCounterMode(display=False) as counter:
        encoded = model.speech_encoder(input_features=feats, attention_mask=None)[0]
    encoder = counter.get_total_flops()
    decoder_input = torch.zeros(1, DECODER_PROMPT_LENGTH + tokens, dtype=torch.long, device="meta")
    with FlopCounterMode(display=False) as counter, bridge.eager_cross_attention(model):
        model.set_modality("speech")
        model(encoder_outputs=(encoded,), decoder_input_ids=decoder_input, use_cache=False)
    decoder = counter.get_total_flops()
    generate = encoder + decoder  # greedy decoding computes the same decoder positions, one at a time
    print(f"full-size FLOPs, {seconds:g} s of speech, {tokens} new tokens: encoder {encoder / 1e9:.1f} GFLOP, decoder over "
          f"the output {decoder / 1e9:.1f} GFLOP; plain generation ≈ {generate / 1e9:.1f} GFLOP, the bridge adds one "
          f"decoder pass: projected {(generate + decoder) / generate:.3f}x the plain generation")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 sentences, 2 repeats")
    parser.add_argument("--model", default="demo", help="CPU model (default demo)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats (default 5; quick 2; full-cpu 2)")
    parser.add_argument("--full-cpu", action="store_true", help="the full-size architecture in fp32 on CPU, one thread")
    parser.add_argument("--flops", action="store_true", help="only the full-size FLOP count and projected ratio")
    args = parser.parse_args()
    if args.flops:
        flop_projection()
        return
    if args.full_cpu:
        torch.set_num_threads(1)
        bundle = load_model("full-random", device="cpu")
        registry = SiteRegistry.from_model(bundle.model)
        wave = (0.1 * np.random.default_rng(0).standard_normal(10 * 16000)).astype(np.float32)
        r = measure(bundle, registry, [wave], "eng", 16, args.repeats or 2)
        report("full-random (2.3 B parameters, fp32, CPU, 1 thread), 10 s of noise, 16 new tokens", r)
        return
    bundle = load_model(args.model, device="cpu")
    threads = configure_cpu_threads(bundle)
    registry = SiteRegistry.from_model(bundle.model)
    sentences = SENTENCES[: 2 if args.quick else 6]
    waves = [synthesize(s.speech_text("eng"), VOICES["eng"][0]) for s in sentences]
    seconds = statistics.mean(len(w) / 16000 for w in waves)
    r = measure(bundle, registry, waves, "eng", 40, args.repeats or (2 if args.quick else 5))
    report(f"{args.model} on CPU ({threads} thread), {len(waves)} built-in English sentences "
           f"({seconds:.2f} s of speech on average) → English", r)


if __name__ == "__main__":
    main()
