"""Batched unit traces vs one trace per item: what a unit page's examples cost the live model.

The unit page traces one page of top and bottom examples (2 × 20 items) to draw its token strips. This times
`trace_items` on those items in batches (as POST /runs/{run}/units/{unit}/traces runs them, batch size 16) against
`trace_item` once per item (what 40 calls of GET .../trace would run), on the trained demo model (`--model demo`,
default) or the tiny random one, on CPU. Items: built-in sentences as X->English text translation (t2tt, two source
languages) and as speech (s2tt, synthetic 1-3 s audio); units: one at decoder positions (`values` over output
tokens) and one in the text encoder. Each output is decoded to `--decode-to` tokens, as the route does. Reports the
median over repeats of the seconds per page for each way and the ratio one-by-one / batched (higher is better), and
checks that both ways give the same values.

    PYTHONPATH=. python benchmarks/trace.py [--model demo] [--items 40] [--repeats 3] [--decode-to 32]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from neuron_atlas.engine.example import Example
from neuron_atlas.engine.model.loading import configure_cpu_threads, load_model
from neuron_atlas.engine.model.unit_sites import SiteRegistry
from neuron_atlas.engine.sentences import SENTENCES
from neuron_atlas.engine.tasks import TaskItem
from neuron_atlas.engine.unit_trace import trace_item, trace_items

#: The route's batch size (backend.api.tracing.TRACE_BATCH_SIZE; not imported: benchmarks use the engine only).
BATCH = 16


def text_items(n: int) -> list[TaskItem]:
    """`n` t2tt items: built-in sentences in German and French (alternating), into English."""
    out = []
    for i in range(n):
        lang = ("deu", "fra")[i % 2]
        s = SENTENCES[(i // 2) % len(SENTENCES)]
        ex = Example(f"bench:{i}:{lang}", str(i // 2), lang, s.text(lang), None, s.text("eng"))
        out.append(TaskItem("t2tt", i, ex, lang, "eng", lang, s.text("eng")))
    return out


def speech_items(n: int) -> tuple[list[TaskItem], dict[str, np.ndarray]]:
    """`n` s2tt items with synthetic 1-3 s audio (a voiced tone with noise), and that audio by example id."""
    rng = np.random.default_rng(0)
    items, audio = [], {}
    for i in range(n):
        samples = int(16000 * (1.0 + 2.0 * i / max(n - 1, 1)))
        t = np.arange(samples) / 16000
        wave = 0.1 * np.sin(2 * np.pi * (150 + 20 * i) * t) + 0.02 * rng.standard_normal(samples)
        ex = Example(f"bench:speech:{i}", str(i), "deu", "", None, "")
        audio[ex.id] = wave.astype(np.float32)
        items.append(TaskItem("s2tt", i, ex, "deu", "eng", "deu", ""))
    return items, audio


def unit_at(registry: SiteRegistry, stack: str, domain: str | None) -> int:
    site = next(s for s in registry.sites if s.stack == stack and (domain is None or s.domain == domain))
    return site.offset + site.width // 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--items", type=int, default=40, help="items per page (top + bottom)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--decode-to", type=int, default=32)
    ap.add_argument("--step", type=int, default=2)
    args = ap.parse_args()
    bundle = load_model(args.model, device="cpu")
    configure_cpu_threads(bundle)
    registry = SiteRegistry.from_model(bundle.model)
    speech, audio = speech_items(args.items)
    cases = [("t2tt, decoder-position unit", text_items(args.items), unit_at(registry, "text_decoder", "decoder"), None),
             ("t2tt, text-encoder unit", text_items(args.items), unit_at(registry, "text_encoder", None), None),
             ("s2tt, decoder-position unit", speech, unit_at(registry, "text_decoder", "decoder"), audio)]
    print(f"model {bundle.spec} · {args.items} items per page · batch {BATCH} · decode to {args.decode_to} tokens · "
          f"step {args.step} · median of {args.repeats}")
    print(f"{'case':32s} {'one by one (s)':>15s} {'batched (s)':>12s} {'ms/item':>8s} {'ratio':>6s}")
    for name, items, unit_id, wav in cases:
        trace_items(bundle, registry, unit_id, items[:2], args.step, "clean", wav, args.decode_to, BATCH)  # warm-up
        single_s, batch_s = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            singles = [trace_item(bundle, registry, unit_id, it, args.step, "clean", wav, args.decode_to) for it in items]
            single_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            batched = trace_items(bundle, registry, unit_id, items, args.step, "clean", wav, args.decode_to, BATCH)
            batch_s.append(time.perf_counter() - t0)
        worst = max(abs(a.pooled - b.pooled) / max(1.0, abs(a.pooled)) for a, b in zip(singles, batched))
        one, many = float(np.median(single_s)), float(np.median(batch_s))
        print(f"{name:32s} {one:15.2f} {many:12.2f} {1000 * many / len(items):8.1f} {one / many:5.2f}x"
              f"   (largest relative difference of pooled values: {worst:.1e})")


if __name__ == "__main__":
    main()
