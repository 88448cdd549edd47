"""Recording throughput: clean batched recording vs a batch-1 loop doing what the reference code does.

Baseline (reference behaviour): one example at a time, text padded to 256 tokens, torch's default thread count.
Ours: length-bucketed batches with padding masked out, and our CPU thread policy. Same tiny model, same items,
same process. Prints items/s for both and the speed ratio (target >= 5x on 2 cores). With a CUDA GPU it also
records the full-size random model in bf16 and prints utterances per second.
"""
from __future__ import annotations

import argparse
import time

import torch
import transformers

from neuron_atlas.engine.model.loading import configure_cpu_threads, load_model
from neuron_atlas.engine.model.unit_sites import SiteRegistry
from precompute.corpus import CorpusConfig, load_corpus
from precompute.shards import item_lengths
from neuron_atlas.engine.record import length_buckets, record_batch
from neuron_atlas.engine.tasks import task_items


def run(bundle, registry, items, mode: str, batch: int) -> float:
    lengths = item_lengths(bundle, items)
    t0 = time.perf_counter()
    for bucket in length_buckets(items, lengths, batch):
        record_batch(bundle, registry, bucket, mode=mode)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer sentences")
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    n_sent = 8 if args.quick else 24
    examples = load_corpus(CorpusConfig(max_sentences=n_sent), progress=False)
    bundle = load_model("tiny-random", device="cpu")
    registry = SiteRegistry.from_model(bundle.model)
    langs = ["eng", "deu", "spa", "fra", "jpn", "cmn"]
    items = task_items("s2tt", examples, langs) + task_items("t2tt", examples, langs)
    default_threads = torch.get_num_threads()
    run(bundle, registry, items[:4], "faithful", 1)  # warm-up
    base = run(bundle, registry, items, "faithful", 1)
    base_clean_b1 = run(bundle, registry, items, "clean", 1)
    threads = configure_cpu_threads(bundle)
    ours = run(bundle, registry, items, "clean", args.batch)
    ours_b1 = run(bundle, registry, items, "clean", 1)
    n = len(items)
    print(f"items: {n} ({n // 2} speech s2tt + {n // 2} text t2tt), steps 2,7,12, tiny-random model, CPU")
    print(f"baseline  batch-1 faithful loop, {default_threads} threads : {base:7.2f} s  ({n / base:6.1f} items/s)")
    print(f"          batch-1 clean loop,    {default_threads} threads : {base_clean_b1:7.2f} s  ({n / base_clean_b1:6.1f} items/s)")
    print(f"ours      clean batched (<= {args.batch}), {threads} thread(s): {ours:7.2f} s  ({n / ours:6.1f} items/s)")
    print(f"          clean batch-1 loop,   {threads} thread(s): {ours_b1:7.2f} s  ({n / ours_b1:6.1f} items/s)  [batching alone: {ours_b1 / ours:.1f}x]")
    print(f"speed ratio vs reference loop: {base / ours:.1f}x (target >= 5x)")
    if torch.cuda.is_available():
        full = load_model("full-random", device="cuda")
        reg = SiteRegistry.from_model(full.model)
        speech = task_items("s2tt", examples, langs)[:64]
        run(full, reg, speech[:8], "clean", 8)
        torch.cuda.synchronize()
        t = run(full, reg, speech, "clean", 16)
        torch.cuda.synchronize()
        print(f"full-random bf16 on {torch.cuda.get_device_name()}: {len(speech) / t:.1f} utterances/s (built-in corpus, ~2 s each)")
    else:
        print("no CUDA GPU: full-size bf16 throughput not measured (see benchmarks/fullsize.py)")


if __name__ == "__main__":
    main()
