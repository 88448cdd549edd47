"""Benchmark: vectorised AP engine vs the reference's per-unit sklearn calls in a Pool(2).

Baseline = what the reference (apple/ml-selfcond ``average_precision``) does: ``pool.map`` of
``sklearn.metrics.average_precision_score(labels, unit_row)`` over units, one concept at a time, in a
``multiprocessing.Pool(2)`` (pool start-up not timed). It is timed on a subsample of units and extrapolated
linearly. Ours = ``precompute.selectivity.average_precision`` over all units and concepts at once.
Then a measured chunk at full-model width (3,600 examples) is timed and extrapolated to the whole model.

Run from the repository root: ``python -m benchmarks.ap`` (full) or ``python -m benchmarks.ap --quick``.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from multiprocessing import Pool

import numpy as np
from sklearn.metrics import average_precision_score

from precompute.selectivity import average_precision, default_threads, unit_stats

FULL_UNITS = 1_480_000
FULL_EXAMPLES = 3_600
FULL_CONCEPTS = 150


def make_data(rng: np.random.Generator, units: int, examples: int, concepts: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 activations (normal; 10 % of rows rounded to 0.1 for heavy ties, 1 % constant) and
    one-vs-rest labels of a random class per example (positive rate ~ 1/concepts)."""
    acts = rng.standard_normal((units, examples), dtype=np.float32)
    acts[::10] = np.round(acts[::10], 1)
    acts[5::100] = 0.0
    cls = rng.integers(0, concepts, examples)
    cls[:concepts] = np.arange(concepts)
    labels = np.stack([cls == c for c in range(concepts)])
    return acts, labels


def _single_response_ap(unit_response: np.ndarray, labels: np.ndarray) -> float:
    return average_precision_score(y_true=labels, y_score=unit_response)


def baseline(acts: np.ndarray, labels: np.ndarray, processes: int = 2) -> tuple[float, np.ndarray]:
    """Reference-style AP: per concept, pool.map of sklearn over unit rows. Returns seconds and APs."""
    out = np.empty((labels.shape[0], acts.shape[0]))
    with Pool(processes=processes) as pool:
        pool.map(abs, range(processes * 4))
        t0 = time.perf_counter()
        for c, lab in enumerate(labels):
            out[c] = pool.map(partial(_single_response_ap, labels=lab.astype(int)), list(acts))
        elapsed = time.perf_counter() - t0
    return elapsed, out


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    """Best wall time of ``repeats`` calls (after one warm-up call), and all the times."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), times


def peak_working_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes allocated (numpy reports its buffers to tracemalloc) during ``fn``, inputs excluded."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - base


def fmt_s(sec: float) -> str:
    if sec < 120:
        return f"{sec:.3f} s"
    if sec < 7200:
        return f"{sec / 60:.1f} min"
    return f"{sec / 3600:.1f} h"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller run (about a minute)")
    ap.add_argument("--units", type=int, default=None)
    ap.add_argument("--examples", type=int, default=600)
    ap.add_argument("--concepts", type=int, default=6)
    ap.add_argument("--baseline-units", type=int, default=None, help="units in the timed baseline subsample")
    ap.add_argument("--chunk-units", type=int, default=None, help="units in the measured full-width chunk")
    ap.add_argument("--threads", type=int, default=None, help="threads for our engine (default: all CPUs)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    units = args.units or (5_000 if args.quick else 20_000)
    base_units = min(units, args.baseline_units or (500 if args.quick else 2_000))
    chunk_units = args.chunk_units or (10_000 if args.quick else 50_000)
    threads = args.threads or default_threads()
    rng = np.random.default_rng(args.seed)

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs visible, {platform.python_version()}, "
          f"numpy {np.__version__}; our threads = {threads}; baseline = Pool(2)")
    print(f"load average at start: {os.getloadavg()[0]:.2f} (other processes on the machine slow every timing)")
    acts, labels = make_data(rng, units, args.examples, args.concepts)
    print(f"\n[A] same data for both: {units:,} units x {args.examples:,} examples x {args.concepts} concepts "
          f"(float32, positive rate {labels.mean():.3f})")

    b_sec, b_ap = baseline(acts[:base_units], labels)
    b_full = b_sec * units / base_units
    extrap = base_units < units
    print(f"  baseline (sklearn per unit, Pool(2)): measured {fmt_s(b_sec)} on {base_units:,} units"
          + (f" -> {fmt_s(b_full)} for {units:,} units (EXTRAPOLATED linearly)" if extrap else ""))

    ours, ours_all = timed(lambda: average_precision(acts, labels, n_threads=threads), args.repeats)
    ours_1t, _ = timed(lambda: average_precision(acts, labels, n_threads=1), args.repeats)
    got = average_precision(acts, labels, n_threads=threads)
    diff = float(np.abs(got[:, :base_units] - b_ap).max())
    print(f"  ours (average_precision, all units): measured {fmt_s(ours)} best of {args.repeats} "
          f"({', '.join(f'{t:.3f}' for t in ours_all)}); 1 thread {fmt_s(ours_1t)}")
    print(f"  speed ratio baseline/ours: {b_full / ours:,.0f}x ({threads} threads), {b_full / ours_1t:,.0f}x "
          f"(1 thread)")
    print(f"  largest |AP ours - AP sklearn| over the {base_units:,} x {args.concepts} compared: {diff:.2e}")
    st, _ = timed(lambda: unit_stats(acts, labels, n_threads=threads), args.repeats)
    print(f"  unit_stats (AP + on_p50/on_p90/off_mean/off_p50): measured {fmt_s(st)}")
    del acts

    print(f"\n[B] full-width chunk: {chunk_units:,} units x {FULL_EXAMPLES:,} examples (float32)")
    acts, labels = make_data(rng, chunk_units, FULL_EXAMPLES, 6)
    t1, _ = timed(lambda: average_precision(acts, labels[0], n_threads=threads), args.repeats)
    t6, _ = timed(lambda: average_precision(acts, labels, n_threads=threads), args.repeats)
    s1, _ = timed(lambda: unit_stats(acts, labels[0], n_threads=threads), 1)
    mem_ap = peak_working_bytes(lambda: average_precision(acts, labels[0], n_threads=threads))
    mem_st = peak_working_bytes(lambda: unit_stats(acts, labels, n_threads=threads))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    marginal = max(0.0, (t6 - t1) / 5)
    print(f"  measured: AP 1 concept {fmt_s(t1)}; AP 6 concepts sharing one sort {fmt_s(t6)} "
          f"(each extra concept {fmt_s(marginal)}); unit_stats 1 concept {fmt_s(s1)}")
    print(f"  measured: peak working memory (tracemalloc, input excluded) AP {mem_ap / 2**20:.0f} MiB, "
          f"unit_stats x6 {mem_st / 2**20:.0f} MiB; input {acts.nbytes / 2**20:.0f} MiB; "
          f"process max RSS {rss / 2**20:.0f} MiB")
    b_sub = min(200 if args.quick else 500, chunk_units)
    b_sec, _ = baseline(acts[:b_sub], labels[:1])
    per_call = b_sec / b_sub
    print(f"  measured baseline at {FULL_EXAMPLES:,} examples: {per_call * 1e3:.2f} ms per unit-concept "
          f"(Pool(2), {b_sub} units)")

    scale = FULL_UNITS / chunk_units
    naive = t1 * scale * FULL_CONCEPTS
    sorts = FULL_CONCEPTS // 6
    shared = (t1 * sorts + marginal * (FULL_CONCEPTS - sorts)) * scale
    stats = s1 * scale * FULL_CONCEPTS
    base = per_call * FULL_UNITS * FULL_CONCEPTS
    print(f"\n[C] EXTRAPOLATED to the full model: {FULL_UNITS:,} units x {FULL_EXAMPLES:,} examples x "
          f"{FULL_CONCEPTS} concepts (linear in units and concepts, from [B])")
    print(f"  ours AP, one sort per concept: {fmt_s(naive)}")
    print(f"  ours AP, concepts sharing a sort 6 at a time (one label matrix per task x step): {fmt_s(shared)}")
    print(f"  ours unit_stats, one sort per concept: {fmt_s(stats)}")
    print(f"  baseline (sklearn per unit, Pool(2)): {fmt_s(base)}")
    out_bytes = FULL_UNITS * 6 * 8 * 5
    print(f"  peak memory: working set stays per chunk (measured {mem_st / 2**20:.0f} MiB) + outputs "
          f"{out_bytes / 2**20:.0f} MiB (5 float64 stats x 6 concepts x all units); the "
          f"{FULL_UNITS * FULL_EXAMPLES * 4 / 2**30:.1f} GiB float32 activation matrix must be memory-mapped, "
          "it is read chunk by chunk")
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
