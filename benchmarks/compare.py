"""Benchmark: cost of comparing two runs (GET /compare, GET /compare/concept through the FastAPI app in-process, and
the whole `neuron-atlas compare` table set) on the tiny two-run store or on a synthetic full-scale store.

The full-scale store is `benchmarks.api.build_store` (the large model's 1,502,208 units, 144 concepts, ~110 M
unit_stats rows) plus a second run copied from it in DuckDB with every AP moved by up to ±0.05 (run B), so both runs
have the same layout and every concept matches.

Run from the repository root:
``python -m benchmarks.compare --tiny`` (the tiny model's clean and faithful runs, ~1 min to build),
``python -m benchmarks.compare --quick`` (a tenth of the width, 24 concepts) or ``python -m benchmarks.compare``
(full scale); ``--keep DIR`` reuses / keeps the synthetic store in DIR.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb

RUN_B = "bench-b-000000000000"


def add_perturbed_run(store: Path, run_a: str, run_b: str = RUN_B, jitter: float = 0.1) -> float:
    """Copy run `run_a` as `run_b` (faithful mode) with each AP moved uniformly by up to ±jitter/2; returns seconds."""
    t0 = time.perf_counter()
    con = duckdb.connect(str(store))
    try:
        if con.execute("SELECT count(*) FROM runs WHERE run_id = ?", [run_b]).fetchone()[0]:
            return 0.0
        con.execute("INSERT INTO runs SELECT * REPLACE (? AS run_id, 'faithful' AS mode) FROM runs WHERE run_id = ?", [run_b, run_a])
        for table in ("sites", "concepts"):
            con.execute(f"INSERT INTO {table} SELECT * REPLACE (? AS run_id) FROM {table} WHERE run_id = ?", [run_b, run_a])
        con.execute("INSERT INTO unit_stats SELECT * REPLACE (? AS run_id, least(greatest(ap + ? * (random() - 0.5), 0.0), 1.0) AS ap) "
                    "FROM unit_stats WHERE run_id = ? ORDER BY concept_id, unit_id", [run_b, jitter, run_a])
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return time.perf_counter() - t0


def _timed(fn, repeats: int) -> dict:
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    q = statistics.quantiles(samples, n=20, method="inclusive") if len(samples) > 1 else samples * 19
    return {"n": len(samples), "p50_ms": statistics.median(samples), "p95_ms": q[18], "max_ms": max(samples)}


def measure(store: Path, run_a: str, run_b: str, repeats: int) -> dict[str, dict]:
    """Latencies of the compare routes (in-process FastAPI, JSON included) and of the full command's tables."""
    from fastapi.testclient import TestClient

    from backend.api.app import create_app
    from backend.api.settings import Settings
    from backend.store.compare_commands import comparison_tables

    tmp = Path(tempfile.mkdtemp(prefix="atlas-compare-bench-"))
    settings = Settings(store=store, findings_db=tmp / "findings.sqlite", model="none", warm_store=False, _env_file=None)
    out: dict[str, dict] = {}
    with TestClient(create_app(settings)) as client:
        def get(path: str, params: dict) -> dict:
            r = client.get(path, params=params)
            r.raise_for_status()
            return r.json()

        t0 = time.perf_counter()
        summary = get("/compare", {"run_a": run_a, "run_b": run_b, "kind": "language"})
        out["first /compare (cold: layouts, DuckDB blocks)"] = {"n": 1, "p50_ms": (time.perf_counter() - t0) * 1000}
        pairs = summary["concepts"]
        lang = next(p for p in pairs if len(p["stacks"]) > 1)
        out["/compare, decoder layers, language concepts of one step"] = _timed(
            lambda: get("/compare", {"run_a": run_a, "run_b": run_b, "kind": "language", "stack": "text_decoder"}), repeats)
        out["/compare, speech encoder layers, language concepts"] = _timed(
            lambda: get("/compare", {"run_a": run_a, "run_b": run_b, "kind": "language", "stack": "speech_encoder"}), repeats)
        out[f"/compare/concept, encoder + decoder units ({lang['task']})"] = _timed(
            lambda: get("/compare/concept", {"run_a": run_a, "run_b": run_b, "concept_id": lang["concept_id_a"]}), repeats)
        out["/compare/concept, decoder units only"] = _timed(
            lambda: get("/compare/concept", {"run_a": run_a, "run_b": run_b, "concept_id": lang["concept_id_a"],
                                             "stack": "text_decoder"}), repeats)
        reader = client.app.state.atlas.reader()
        t0 = time.perf_counter()
        _, tables = comparison_tables(reader, run_a, run_b)
        out[f"`neuron-atlas compare` tables ({len(tables['concepts'])} concepts, every stack)"] = {
            "n": 1, "p50_ms": (time.perf_counter() - t0) * 1000}
        out["_units"] = {"n": summary["sites"]["n_common_units"]}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny model's clean and faithful runs")
    parser.add_argument("--quick", action="store_true", help="synthetic store at a tenth of the width, 24 concepts")
    parser.add_argument("--keep", type=Path, help="build (or reuse) the store in this folder and keep it")
    parser.add_argument("--repeats", type=int, default=10, help="measured requests per route (default 10)")
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="atlas-compare-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    build: dict = {}
    if args.tiny:
        from backend.model.loading import configure_cpu_threads, load_model
        from tests.backend.compare_support import build_two_run_store

        bundle = load_model("tiny-random", device="cpu")
        configure_cpu_threads(bundle)
        t0 = time.perf_counter()
        store, run_a, run_b = build_two_run_store(root, bundle)
        build = {"build_s": time.perf_counter() - t0}
    else:
        from benchmarks.api import RUN_ID, build_store

        store, run_a, run_b = root / "atlas.duckdb", RUN_ID, RUN_B
        marker = root / ("built-quick" if args.quick else "built-full")
        if marker.exists() and store.exists():
            build = json.loads(marker.read_text())
        else:
            build = build_store(store, root / "work", quick=args.quick)
            marker.write_text(json.dumps(build))
        build["run_b_s"] = add_perturbed_run(store, run_a, run_b) or build.get("run_b_s", 0.0)
        marker.write_text(json.dumps(build))
    results = measure(store, run_a, run_b, args.repeats)
    units = results.pop("_units")["n"]
    print(f"store {store} ({store.stat().st_size / 1e9:.2f} GB): runs {run_a} vs {run_b}, {units:,} common units; "
          f"build {json.dumps({k: round(v, 1) for k, v in build.items() if k.endswith('_s')})}")
    print(f"{'what':70} {'n':>3} {'p50 ms':>9} {'p95 ms':>9}")
    for label, r in results.items():
        p95 = f"{r['p95_ms']:9.1f}" if "p95_ms" in r else f"{'':>9}"
        print(f"{label:70} {r['n']:>3} {r['p50_ms']:9.1f} {p95}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
