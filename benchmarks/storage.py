"""Working storage of a precompute: bytes per item and peak working disk, this engine vs the double-written layout.

Runs the pipeline (recording + statistics, no batch experiments) on `--model` over the built-in corpus, all five
tasks, steps 2/7/12, measuring the run's work folder after every shard (polled every 50 ms, and after every shard:
its peak is the largest phase's arrays plus the statistics files written so far). Baseline, computed from the same run's item counts and the model's unit counts: the engine
before issue 18 wrote every activation twice at float32 (item-major shards, then a unit-major copy in acts/) and
deleted nothing, so its peak was its total, 2 x items x (encoder + steps x decoder units) x 4 B.
With --float16 it runs again with float16 storage and prints the largest |AP difference| against float32 over every
(concept, unit), and how many top-k sets change. Last, the paper's FLEURS-6 setting and the 89 FLEURS languages SeamlessM4T v2 writes text in
(configs/fleurs-102.yaml) are projected from the measured bytes per stored value, with the phase arithmetic of precompute/pipeline.py.

    PYTHONPATH=. python benchmarks/storage.py --model demo --float16
"""
from __future__ import annotations

import argparse
import json
import tempfile
import threading
from pathlib import Path

import duckdb
import numpy as np
import transformers

from neuron_atlas.engine.model.loading import load_model
from neuron_atlas.engine.model.unit_sites import SiteRegistry
from neuron_atlas.engine.record import encoder_stack
from precompute.config import load_run_config
from precompute.pipeline import plan_phases, run_precompute

TASKS = ["asr", "s2tt", "t2tt", "en2x_s2tt", "en2x_t2tt"]
STEPS = [2, 7, 12]
FULL_WIDTHS = {"speech_encoder": 640_000, "text_encoder": 369_664, "text_decoder": 492_544}  # full-random registry
GB = 1e9


def folder_bytes(folder: Path, pattern: str = "**/*") -> int:
    return sum(p.stat().st_size for p in folder.glob(pattern) if p.is_file())


def measured_run(out: Path, bundle, model: str, sentences: int | None, dtype: str) -> dict:
    """One run; work-folder bytes after every shard, activation bytes written per task."""
    data = {"name": f"storage-{dtype}", "model": model, "device": "cpu", "tasks": TASKS, "steps": STEPS,
            "corpus": {"source": "builtin", "languages": ["eng", "deu", "spa", "fra", "jpn", "cmn"],
                       **({"max_sentences": sentences} if sentences else {})},
            "store": str(out / "atlas.duckdb"), "work_dir": str(out / "work"), "activation_dtype": dtype,
            "analysis": {"ks": [100, 250]}, "evaluate": {"enabled": False}}
    out.mkdir(parents=True)
    (out / "run.yaml").write_text(json.dumps(data))
    work = out / "work"
    written = {t: 0 for t in TASKS}
    peak = [0, 0]
    running = threading.Event()

    def measure() -> None:
        try:
            peak[0] = max(peak[0], folder_bytes(work))
            peak[1] = max(peak[1], folder_bytes(work, "**/*.npy"))
        except FileNotFoundError:  # a file deleted while being listed
            pass

    def poll() -> None:
        while not running.wait(0.05):
            measure()

    def after_shard(key) -> None:
        shard = next(work.glob(f"*/{key.rel}"))
        written[key.task] += folder_bytes(shard, "*.npy")
        measure()

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        result = run_precompute(load_run_config(out / "run.yaml"), progress=False, bundle=bundle, after_shard=after_shard)
    finally:
        running.set()
        poller.join()
    measure()
    stats = folder_bytes(work, "*/stats/concept-*.parquet")
    con = duckdb.connect(str(out / "atlas.duckdb"), read_only=True)
    rows = con.execute("SELECT count(*) FROM unit_stats").fetchone()[0]
    con.close()
    return {"store": out / "atlas.duckdb", "written": written, "peak": peak[0], "peak_acts": peak[1],
            "final": folder_bytes(work), "stats": stats,
            "n_items": result.n_items, "run_id": result.run_id, "stats_bytes_per_row": stats / rows,
            "store_bytes": (out / "atlas.duckdb").stat().st_size}


def dense_bytes(widths: dict[str, int], task: str, n_items: int, n_sources: int, value_bytes: float) -> float:
    """Bytes one task's activations take here: decoder values per item and step, encoder values per distinct input."""
    return value_bytes * (n_items * len(STEPS) * widths["text_decoder"] + n_sources * widths[encoder_stack(task)])


def fleurs_items(langs: int, sentences: int) -> dict[str, tuple[int, int]]:
    """(items, distinct encoder inputs) per task for `langs` FLEURS languages (English one of them) of `sentences` each."""
    x = langs - 1
    return {"asr": (langs * sentences, langs * sentences), "s2tt": (x * sentences, x * sentences),
            "t2tt": (x * sentences, x * sentences), "en2x_s2tt": (x * sentences, sentences),
            "en2x_t2tt": (x * sentences, sentences)}


def projection(widths: dict[str, int], items: dict[str, tuple[int, int]], value_bytes: float) -> dict:
    per_task = {t: dense_bytes(widths, t, n, src, value_bytes) for t, (n, src) in items.items()}
    phases = {"+".join(p): sum(per_task[t] for t in p) for p in plan_phases(TASKS, "clean")}
    old = sum(2 * dense_bytes(widths, t, n, n, 4) for t, (n, _) in items.items())
    return {"per_task": per_task, "phases": phases, "peak": max(phases.values()), "total": sum(per_task.values()),
            "old": old}


def stat_rows(widths: dict[str, int], langs: int) -> int:
    """(concept, unit) rows of unit_stats for all five tasks at `langs` languages: per step, language concepts on the
    task's encoder and the decoder, multimodal-language and modality concepts (2 roles) on the decoder."""
    x, enc_s, enc_t, dec = langs - 1, widths["speech_encoder"], widths["text_encoder"], widths["text_decoder"]
    language = langs * (enc_s + dec) + 2 * x * (enc_s + dec) + 2 * x * (enc_t + dec)
    pairs = 2 * x * dec + 2 * (1 + x) * dec
    return len(STEPS) * (language + pairs)


def ap_difference(a: Path, b: Path, k: int) -> dict:
    con = duckdb.connect()
    con.execute(f"ATTACH '{a}' AS a (READ_ONLY); ATTACH '{b}' AS b (READ_ONLY)")
    worst, mean, n = con.execute(
        "SELECT max(abs(x.ap - y.ap)), avg(abs(x.ap - y.ap)), count(*) FROM a.unit_stats x "
        "JOIN b.unit_stats y USING (concept_id, unit_id)").fetchone()
    sets = con.execute(
        "WITH x AS (SELECT concept_id, scope, list(unit_id ORDER BY unit_id) u FROM a.selections WHERE kind='top' AND "
        "k_requested=? GROUP BY ALL), y AS (SELECT concept_id, scope, list(unit_id ORDER BY unit_id) u FROM b.selections "
        "WHERE kind='top' AND k_requested=? GROUP BY ALL) "
        "SELECT count(*), count(*) FILTER (WHERE x.u <> y.u), min(len(list_intersect(x.u, y.u)) / len(x.u)) "
        "FROM x JOIN y USING (concept_id, scope)", [k, k]).fetchone()
    return {"max": worst, "mean": mean, "pairs": n, "sets": sets[0], "sets_changed": sets[1], "min_overlap": sets[2]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-random", help="tiny-random (seconds) or demo (minutes)")
    parser.add_argument("--sentences", type=int, default=None, help="max sentences per language (default: all)")
    parser.add_argument("--float16", action="store_true", help="also run float16 storage and compare the AP")
    parser.add_argument("--fleurs-sentences", type=int, default=346,
                        help="sentences per FLEURS language for the projection (346: ~9,000 task items at 6 languages)")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    bundle = load_model(args.model, device="cpu")
    registry = SiteRegistry.from_model(bundle.model)
    widths = {s: registry.stack_width(s) for s in registry.stack_ranges}
    with tempfile.TemporaryDirectory() as tmp:
        runs = {"float32": measured_run(Path(tmp) / "f32", bundle, args.model, args.sentences, "float32")}
        if args.float16:
            runs["float16"] = measured_run(Path(tmp) / "f16", bundle, args.model, args.sentences, "float16")
        n_items = runs["float32"]["n_items"]
        old_per_task = {t: 2 * dense_bytes(widths, t, n, n, 4) for t, n in n_items.items()}
        old_total = sum(old_per_task.values())
        print(f"model {args.model}: {json.dumps(widths)} units; items {json.dumps(n_items)}; steps {STEPS}")
        print(f"{'task':10s} {'old B/item':>12s} " + " ".join(f"{d + ' B/item':>15s}" for d in runs))
        for t, n in n_items.items():
            print(f"{t:10s} {old_per_task[t] / n:12.0f} " + " ".join(f"{r['written'][t] / n:15.0f}" for r in runs.values()))
        for dtype, r in runs.items():
            total = sum(r["written"].values())
            old_peak = old_total + r["stats"]
            print(f"{dtype}: activations written {total / 1e6:.2f} MB (old layout {old_total / 1e6:.2f} MB: "
                  f"{old_total / total:.2f}x less), their peak on disk {r['peak_acts'] / 1e6:.2f} MB (old: all of them, "
                  f"{old_total / r['peak_acts']:.2f}x less); working folder peak {r['peak'] / 1e6:.2f} MB vs old "
                  f"{old_peak / 1e6:.2f} MB (its activations + the same statistics files {r['stats'] / 1e6:.2f} MB): "
                  f"{old_peak / r['peak']:.2f}x less; left after the run {r['final'] / 1e6:.2f} MB")
        con = duckdb.connect(str(runs["float32"]["store"]), read_only=True)
        sources = dict(con.execute("SELECT task, count(DISTINCT example_id) FROM items GROUP BY task").fetchall())
        con.close()
        values = sum(dense_bytes(widths, t, n, sources[t], 1) for t, n in n_items.items())
        value_bytes = {dtype: sum(r["written"].values()) / values for dtype, r in runs.items()}
        stats_row = runs["float32"]["stats_bytes_per_row"]
        print(f"statistics files: {stats_row:.1f} B per (concept, unit) row; store {runs['float32']['store_bytes'] / 1e6:.1f} MB")
        print("measured bytes per stored value (npy headers included): "
              + ", ".join(f"{d} {v:.4f}" for d, v in value_bytes.items()))
        if args.float16:
            d = ap_difference(runs["float32"]["store"], runs["float16"]["store"], 100)
            print(f"float16 vs float32 AP over {d['pairs']} (concept, unit) pairs: max |dAP| {d['max']:.2e}, mean "
                  f"{d['mean']:.2e}; top-100 sets changed in {d['sets_changed']} of {d['sets']} (smallest overlap "
                  f"{d['min_overlap']:.3f})")
    for langs in (6, 89):
        items = fleurs_items(langs, args.fleurs_sentences)
        n = sum(i for i, _ in items.values())
        for dtype, vb in value_bytes.items():
            p = projection(FULL_WIDTHS, items, vb)
            phases = ", ".join(f"{k} {v / GB:.1f}" for k, v in p["phases"].items())
            stats = stat_rows(FULL_WIDTHS, langs) * stats_row
            print(f"FLEURS {langs} languages x {args.fleurs_sentences} sentences ({n} items), full size, {dtype}: "
                  f"peak {(p['peak'] + stats) / GB:.1f} GB = largest phase {p['peak'] / GB:.1f} GB (phases: {phases} GB) "
                  f"+ statistics files {stats / GB:.1f} GB; activations written {p['total'] / GB:.1f} GB; "
                  f"old layout {p['old'] / GB:.1f} GB ({p['old'] / (p['peak'] + stats):.1f}x the new peak)")


if __name__ == "__main__":
    main()
