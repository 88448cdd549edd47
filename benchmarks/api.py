"""Benchmark: latency of the backend's heatmap, layer and unit endpoints over a synthetic full-scale store,
and of a live intervention on the tiny model.

The store is built straight in DuckDB (generate_series / range and random(), never through pandas) with the
large model's real unit layout (1,502,208 units from `full-random` on the meta device) and the concept structure
of a full run: 5 tasks x 3 steps x 6 languages = 144 concepts, whose unit_stats cover each concept's stacks
(encoder + decoder for language concepts, decoder for the multimodal and modality ones): about 110 M rows.
The unit page's tables (`unit_distributions`, `unit_examples`: 50 items per end) are written at a FLEURS-6 run's size
(350 sentences: 2,100 asr items, 1,750 per other task); the run has no work folder, as a server mounting only the
store sees it.

Targets (issue 6): heatmap < 200 ms and unit < 100 ms at p95; (issue 19) unit search < 200 ms at p95.

Run from the repository root: ``python -m benchmarks.api`` (full scale) or ``python -m benchmarks.api --quick``
(a tenth of the concepts' width, for a smoke run). ``--keep DIR`` reuses / keeps the synthetic store in DIR.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import httpx
import numpy as np

from neuron_atlas.engine.model.unit_sites import SiteRegistry
from neuron_atlas.engine.store_schema import create_schema
from neuron_atlas.engine.versions import ENGINE_VERSION

RUN_ID = "bench-000000000000"
LANGS = ("eng", "deu", "spa", "fra", "jpn", "cmn")
STEPS = (2, 7, 12)
TASKS = {  # task -> (encoder stack, modality, role)
    "asr": ("speech_encoder", "speech", "representation"),
    "s2tt": ("speech_encoder", "speech", "representation"),
    "t2tt": ("text_encoder", "text", "representation"),
    "en2x_s2tt": ("speech_encoder", "speech", "control"),
    "en2x_t2tt": ("text_encoder", "text", "control"),
}
PAIRS = {"representation": ("t2tt", "s2tt"), "control": ("en2x_t2tt", "en2x_s2tt")}
KS = (1000, 2000)
ROOT = Path(__file__).resolve().parents[1]


def full_registry() -> SiteRegistry:
    """The large model's unit registry, built on the meta device (no weights)."""
    from neuron_atlas.engine.model.loading import load_model

    return SiteRegistry.from_model(load_model("full-random", device="meta").model)


def concept_rows() -> list[dict]:
    """The concept structure of a full run (same kinds, roles, tasks and stacks as precompute.analysis)."""
    rows: list[dict] = []

    def add(**kw):
        rows.append({"concept_id": len(rows), **kw})

    for step in STEPS:
        for task, (enc, modality, role) in TASKS.items():
            langs = LANGS if task == "asr" else LANGS[1:]
            for lang in langs:
                add(kind="language", role=role, task=task, step=step, language=lang, modality=modality,
                    stacks=[enc, "text_decoder"], description=f"{lang} vs other languages, {task}, step {step}")
        for role, (text_task, speech_task) in PAIRS.items():
            pair = f"{speech_task}+{text_task}"
            for lang in LANGS[1:]:
                add(kind="multimodal_language", role=role, task=pair, step=step, language=lang, modality=None,
                    stacks=["text_decoder"], description=f"{lang} from speech and text ({pair}), step {step}")
            add(kind="modality", role=role, task=pair, step=step, language=None, modality="speech",
                stacks=["text_decoder"], description=f"speech vs text ({pair}), step {step}")
            for lang in LANGS[1:]:
                add(kind="modality", role=role, task=pair, step=step, language=lang, modality="speech",
                    stacks=["text_decoder"], description=f"speech vs text, {lang} ({pair}), step {step}")
    return rows


def _scopes(registry: SiteRegistry, stack: str) -> dict[str, str]:
    """Selection scope -> SQL condition on units (as precompute.analysis.decoder_scopes)."""
    out = {stack: f"stack = '{stack}'"}
    if stack == "text_decoder":
        out["text_decoder/attention"] = "stack = 'text_decoder' AND component IN ('self-attn', 'cross-attn')"
        out["text_decoder/ffn"] = "stack = 'text_decoder' AND component = 'ffn'"
    return out


def build_store(path: Path, work_dir: Path, quick: bool = False, n_items: int = 2100, log=print,
                memory_limit: str | None = None) -> dict:
    """Write a synthetic store with the large model's layout; returns build timings and sizes. `memory_limit` caps
    DuckDB's memory (e.g. "8GB"; it spills to disk beyond it) on a machine shared with other work."""
    t0 = time.perf_counter()
    registry = full_registry()
    path.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    if memory_limit:
        con.execute("SET memory_limit = ?", [memory_limit])
    con.execute("SET preserve_insertion_order = true")
    create_schema(con)
    concepts = concept_rows()
    if quick:
        concepts = [c for c in concepts if c["step"] == STEPS[0]][:24]
    run_dir = work_dir / RUN_ID
    con.execute(
        "INSERT INTO runs VALUES (?, 'bench', now()::TIMESTAMP, ?, 'full-random', 'full-random-seed0', ?, 'clean', ?, ?, ?, "
        "'builtin', 'synthetic', ?, ?, ?, ?, 0.0)",
        [RUN_ID, ENGINE_VERSION, json.dumps({"spec": "full-random", "checksum": "full-random-seed0"}), list(TASKS),
         list(STEPS), list(LANGS), n_items * len(LANGS), json.dumps({"analysis": {"ks": list(KS), "seed": 0}}),
         json.dumps({}), str(run_dir)],
    )
    sites = registry.sites_frame().rename(columns={"key": "site", "offset": "unit_offset"})
    con.register("_sites", sites)
    con.execute(
        "INSERT INTO sites SELECT ?, site, module, call, stack, layer, component, kind, width, channel_axis, domain, "
        "unit_offset, TRUE FROM _sites", [RUN_ID])
    con.unregister("_sites")
    con.execute(
        "INSERT INTO units SELECT run_id, (unit_offset + i)::INTEGER, site, i::INTEGER, stack, layer, component, kind "
        "FROM sites, range(width) t(i) ORDER BY unit_offset + i")
    for c in concepts:
        con.execute(
            "INSERT INTO concepts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [RUN_ID, c["concept_id"], c["kind"], c["role"], c["task"], c["step"], c["language"], c["modality"],
             n_items // 6, n_items - n_items // 6, c["stacks"], c["description"]],
        )
    ranges = {s: registry.stack_ranges[s] for s in registry.stack_ranges}
    t_stats = time.perf_counter()
    for c in concepts:
        for stack in sorted(c["stacks"]):
            r = ranges[stack]
            stop = r.start + (len(r) // 10 if quick else len(r))
            # AP near chance with a selective tail; quantiles as signed activations.
            con.execute(
                "INSERT INTO unit_stats SELECT ?, ?, i::INTEGER, 0.17 + 0.8 * pow(random(), 6), "
                "(random() * 4 - 2)::REAL, (random() * 4)::REAL, (random() * 2 - 1)::REAL, (random() * 2 - 1)::REAL "
                "FROM range(?, ?) t(i)", [RUN_ID, c["concept_id"], r.start, stop])
    stats_s = time.perf_counter() - t_stats
    t_sel = time.perf_counter()
    kmax = max(KS)
    for c in concepts:
        for stack in c["stacks"]:
            for scope, cond in _scopes(registry, stack).items():
                con.execute(
                    "CREATE OR REPLACE TEMP TABLE _scope AS SELECT s.unit_id, s.ap FROM unit_stats s "
                    f"JOIN units u USING (run_id, unit_id) WHERE s.run_id = ? AND s.concept_id = ? AND {cond}",
                    [RUN_ID, c["concept_id"]])
                con.execute(
                    "CREATE OR REPLACE TEMP TABLE _ranked AS SELECT unit_id, "
                    "row_number() OVER (ORDER BY ap DESC, unit_id) AS rt, row_number() OVER (ORDER BY ap ASC, unit_id DESC) AS rb "
                    "FROM _scope QUALIFY rt <= ? OR rb <= ?", [kmax, kmax])
                con.execute("CREATE OR REPLACE TEMP TABLE _rnd AS SELECT unit_id, row_number() OVER () AS r "
                            f"FROM (SELECT unit_id FROM _scope USING SAMPLE {2 * kmax} ROWS)")
                for k in KS:
                    args = [RUN_ID, c["concept_id"], scope, k, k]
                    con.execute(
                        "INSERT INTO selections "
                        "SELECT ?, ?, 'top', ?, ?, ?, NULL, unit_id, rt FROM _ranked WHERE rt <= ? UNION ALL "
                        "SELECT ?, ?, 'bottom', ?, ?, ?, NULL, unit_id, rb FROM _ranked WHERE rb <= ? UNION ALL "
                        "SELECT ?, ?, 'both', ?, ?, ?, NULL, unit_id, rt FROM _ranked WHERE rt <= ? UNION ALL "
                        "SELECT ?, ?, 'both', ?, ?, ?, NULL, unit_id, rb FROM _ranked WHERE rb <= ? UNION ALL "
                        "SELECT ?, ?, 'random', ?, ?, ?, 'top', unit_id, r FROM _rnd WHERE r <= ? UNION ALL "
                        "SELECT ?, ?, 'random', ?, ?, ?, 'both', unit_id, r FROM _rnd WHERE r <= ?",
                        (args + [k]) * 4 + [RUN_ID, c["concept_id"], scope, k, k, k] + [RUN_ID, c["concept_id"], scope, k, 2 * k, 2 * k],
                    )
    sel_s = time.perf_counter() - t_sel
    layers = {s: sorted({site.layer for site in registry.sites if site.stack == s}) for s in ranges}
    con.execute(
        "INSERT INTO concentration SELECT ?, t.task, l.lang, t.modality, st.step, t.stack, y.layer, 1000, random(), "
        "random() * 0.1, random() * 1000 FROM (VALUES " + ", ".join(
            f"('{task}', '{m}', '{stk}')" for task, (enc, m, _) in TASKS.items() for stk in (enc, "text_decoder"))
        + ") t(task, modality, stack), (SELECT unnest(?) AS lang) l, (SELECT unnest(?) AS step) st, "
        "(SELECT unnest(?) AS layer) y", [RUN_ID, list(LANGS), list(STEPS), list(range(max(len(v) for v in layers.values())))])
    by_key = {(c["kind"], c["task"], c["step"], c["language"]): c["concept_id"] for c in concepts}
    for role, (tt, stt) in PAIRS.items():
        for step in STEPS:
            for tl in LANGS[1:]:
                for sl in LANGS[1:]:
                    a, b = by_key.get(("language", tt, step, tl)), by_key.get(("language", stt, step, sl))
                    if a is None or b is None:
                        continue
                    for kind in ("top", "bottom", "both"):
                        for k in KS:
                            count = int(np.random.default_rng(a * 1000 + b).integers(0, k // 4))
                            con.execute("INSERT INTO overlap VALUES (?, ?, ?, ?, ?, 'text_decoder', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                        [RUN_ID, role, step, kind, k, tl, sl, a, b, count, count / k, count / (2 * k - count),
                                         k * k / 492544, k / 492544, k / (2 * 492544), 492544])
                    for scope, layer in [("text_decoder", -1), ("text_decoder/self-attn", -1), ("text_decoder/cross-attn", -1),
                                         ("text_decoder/ffn", -1)] + [("text_decoder/layer", y) for y in layers["text_decoder"]]:
                        con.execute("INSERT INTO spearman VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, random(), 1000)",
                                    [RUN_ID, role, step, scope, layer, tl, sl, a, b])
    _write_examples_and_items(con, n_items)
    con.execute("CHECKPOINT")
    before = path.stat().st_size
    summaries_s = _write_unit_summaries(con, registry, n_items, quick)
    con.execute("CHECKPOINT")
    n_stats = con.execute("SELECT count(*) FROM unit_stats").fetchone()[0]
    n_dist = con.execute("SELECT count(*) FROM unit_distributions").fetchone()[0]
    n_ex = con.execute("SELECT count(*) FROM unit_examples").fetchone()[0]
    con.close()
    out = {"build_s": time.perf_counter() - t0, "unit_stats_s": stats_s, "selections_s": sel_s, "unit_stats_rows": n_stats,
           "concepts": len(concepts), "store_bytes": path.stat().st_size, "summaries_s": summaries_s,
           "unit_distributions_rows": n_dist, "unit_examples_rows": n_ex, "summaries_bytes": path.stat().st_size - before}
    log(f"built {path} in {out['build_s']:.0f} s: {n_stats:,} unit_stats rows, {n_dist:,} unit_distributions rows, "
        f"{n_ex:,} unit_examples rows ({out['summaries_bytes'] / 1e9:.2f} GB, {summaries_s:.0f} s), {len(concepts)} concepts, "
        f"{out['store_bytes'] / 1e9:.2f} GB")
    return out


def _write_examples_and_items(con: duckdb.DuckDBPyConnection, n_items: int) -> None:
    """Examples (with short FLAC audio) and the items of every task: FLEURS-sized, `n_items // 6` sentences."""
    import io

    import pandas as pd
    import soundfile as sf

    per_lang = n_items // len(LANGS)
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(np.arange(16000) * 2 * np.pi * 220 / 16000)).astype(np.float32), 16000, format="FLAC")
    examples = pd.DataFrame([{"run_id": RUN_ID, "example_id": f"bench:s{s:03d}:{lang}", "sentence_id": f"s{s:03d}",
                              "lang": lang, "text": f"sentence {s} in {lang}", "reference": f"sentence {s}", "voice": None,
                              "duration_s": 1.0, "has_audio": True} for lang in LANGS for s in range(per_lang)])
    con.register("_ex", examples)
    con.execute("INSERT INTO examples SELECT * FROM _ex")
    con.execute("INSERT INTO example_audio SELECT run_id, example_id, ? FROM _ex", [buf.getvalue()])
    con.unregister("_ex")
    rows = []
    for task, (_, modality, _) in TASKS.items():
        item = 0
        for lang in LANGS:
            if task != "asr" and lang == "eng":
                continue
            for s in range(per_lang):
                src = lang if not task.startswith("en2x") else "eng"
                tgt = "eng" if task in ("s2tt", "t2tt") else lang
                rows.append((RUN_ID, task, item, f"bench:s{s:03d}:{src}", f"s{s:03d}", lang, src, tgt, modality, "ref"))
                item += 1
    con.executemany("INSERT INTO items (run_id, task, item, example_id, sentence_id, label, src_lang, tgt_lang, modality, "
                    "reference, output_ids, output_text, prefix_lengths) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, [3, 4, 5], "
                    "'out', [2, 7, 12])", rows)


def _write_unit_summaries(con: duckdb.DuckDBPyConnection, registry: SiteRegistry, n_items: int, quick: bool) -> float:
    """`unit_distributions` (one row per unit x task x step x language) and `unit_examples` (one row per unit x task
    x step, 50 items and values per end) at the full run's size, inserted once sorted by unit as precompute's
    ingestion writes them (generated in temporary tables first, so the store file holds no freed blocks); returns
    seconds."""
    t0 = time.perf_counter()
    per_lang = n_items // len(LANGS)
    keep = 50
    for table in ("unit_distributions", "unit_examples"):
        con.execute(f"CREATE TEMP TABLE _{table} AS SELECT * FROM {table} LIMIT 0")
    for task, (enc, _, _) in TASKS.items():
        langs = [lang for lang in LANGS if task == "asr" or lang != "eng"]
        n_task = per_lang * len(langs)
        for stack, step in [(enc, None)] + [("text_decoder", s) for s in STEPS]:
            r = registry.stack_ranges[stack]
            stop = r.start + (len(r) // 10 if quick else len(r))
            con.execute(
                "INSERT INTO _unit_distributions SELECT ?, ?, ?, l.lang, i::INTEGER, ?, m, m * 0.5 + 0.1, abs(m) + 0.2, "
                "m - 2, m - 1.5, m - 0.5, m, m + 0.5, m + 1.5, m + 2 "
                "FROM (SELECT unnest(?) AS lang) l, (SELECT i, (random() * 4 - 2)::REAL AS m FROM range(?, ?) t(i)) u",
                [RUN_ID, task, step, per_lang, langs, r.start, stop])
            con.execute(
                "INSERT INTO _unit_examples SELECT ?, ?, ?, i::INTEGER, "
                "list_transform(range(?), lambda x: floor(random() * ?)::INTEGER), list_transform(range(?), lambda x: (random() * 4)::REAL), "
                "list_transform(range(?), lambda x: floor(random() * ?)::INTEGER), list_transform(range(?), lambda x: (random() * -4)::REAL) "
                "FROM range(?, ?) t(i)", [RUN_ID, task, step, keep, n_task, keep, keep, n_task, keep, r.start, stop])
    for table, order in (("unit_distributions", "unit_id, task, step, language"), ("unit_examples", "unit_id, task, step")):
        con.execute(f"INSERT INTO {table} SELECT * FROM _{table} ORDER BY {order}")
        con.execute(f"DROP TABLE _{table}")
    return time.perf_counter() - t0


def _percentiles(samples: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(samples, n=20, method="inclusive")
    return statistics.median(samples), q[18]



def _serve(store: Path, tmp: Path, port: int, model: str) -> subprocess.Popen:
    """Start `serve` (uvicorn) in a child process; it exits by itself after an hour at most."""
    script = (
        "import argparse, os, sys, threading\n"
        "threading.Timer(3600, os._exit, (3,)).start()\n"
        "from backend.api.commands import register\n"
        "p = argparse.ArgumentParser(); register(p.add_subparsers(dest='command', required=True))\n"
        "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NEURON_ATLAS_RATE_BURST": "100000", "NEURON_ATLAS_RATE_PER_S": "100000"}
    cmd = [sys.executable, "-c", script, "serve", "--port", str(port), "--store", str(store), "--findings-db",
           str(tmp / "findings.sqlite"), "--model", model, "--device", "cpu", "--log-level", "warning"]
    return subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "server.log", "w"))


def _wait_ready(base: str, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            r = httpx.get(f"{base}/readyz", timeout=5)
            if r.status_code == 200 and r.json()["store"]["warm"]["state"] in ("done", "off"):
                print(f"server ready; store warm-up took {r.json()['store']['warm']['seconds'] or 0:.1f} s")
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the server did not become ready")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure(client: httpx.Client, requests: list[tuple[str, dict]], warmup: int = 3) -> dict:
    """Latency of each request (cycled), after `warmup` unmeasured calls: p50, p95, max in ms."""
    for url, params in requests[:warmup]:
        client.get(url, params=params).raise_for_status()
    samples = []
    for url, params in requests:
        t0 = time.perf_counter()
        r = client.get(url, params=params)
        samples.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
    p50, p95 = _percentiles(samples)
    return {"n": len(samples), "p50_ms": p50, "p95_ms": p95, "max_ms": max(samples)}


def summarised_units(quick: bool) -> dict[str, np.ndarray]:
    """Unit ids per stack the synthetic store has unit page rows for: every unit, or the first tenth of each stack
    (`--quick`)."""
    registry = full_registry()
    return {s: np.arange(r.start, r.start + (len(r) // 10 if quick else len(r))) for s, r in registry.stack_ranges.items()}


def data_latencies(base: str, repeats: int, seed: int = 0, units: dict[str, np.ndarray] | None = None) -> dict[str, dict]:
    """p50/p95 of the heatmap, layer and unit endpoints over varied concepts, layers and units (the unit page's
    distribution and examples over `units`, default every unit)."""
    rng = np.random.default_rng(seed)
    with httpx.Client(base_url=base, timeout=120) as c:
        run = c.get("/runs").json()["runs"][0]["run_id"]
        concepts = c.get(f"/runs/{run}/concepts", params={"limit": 500}).json()["concepts"]
        layers = [layer for layer in c.get(f"/runs/{run}/layers").json()["layers"]]
        lang = [x for x in concepts if x["kind"] == "language"]
        families = sorted({(x["task"], x["step"]) for x in lang})
        pick = lambda seq: seq[int(rng.integers(len(seq)))]
        out = {}
        out["heatmap: decoder, one task x step (AP >= 0.9)"] = measure(c, [
            (f"/runs/{run}/heatmap", {"stack": "text_decoder", "task": t, "step": s, "kind": "language", "threshold": 0.9})
            for t, s in (pick(families) for _ in range(repeats))])
        out["heatmap: encoder, one task x step (AP >= 0.5)"] = measure(c, [
            (f"/runs/{run}/heatmap", {"stack": STACK_OF[t], "task": t, "step": s, "kind": "language", "threshold": 0.5})
            for t, s in (pick(families) for _ in range(repeats))])
        out["heatmap: decoder, stored top-1000 sets"] = measure(c, [
            (f"/runs/{run}/heatmap", {"stack": "text_decoder", "task": t, "step": s, "kind": "language", "mode": "top", "k": 1000})
            for t, s in (pick(families) for _ in range(repeats))])
        out["heatmap: decoder, every language concept (AP >= 0.9)"] = measure(c, [
            (f"/runs/{run}/heatmap", {"stack": "text_decoder", "kind": "language", "threshold": float(th)})
            for th in rng.uniform(0.85, 0.95, max(repeats // 4, 5))], warmup=1)
        dec_layers = [x["layer"] for x in layers if x["stack"] == "text_decoder"]
        out["layer: decoder layer, top 50 by AP"] = measure(c, [
            (f"/runs/{run}/layers/text_decoder/{pick(dec_layers)}/units", {"concept_id": pick(lang)["concept_id"], "limit": 50})
            for _ in range(repeats)])
        out["layer: filtered (AP >= 0.3, ffn) sorted by on_p50, page 3"] = measure(c, [
            (f"/runs/{run}/layers/text_decoder/{pick(dec_layers)}/units",
             {"concept_id": pick(lang)["concept_id"], "sort": "on_p50", "order": "asc", "component": "ffn", "min_ap": 0.3,
              "limit": 50, "offset": 100}) for _ in range(repeats)])
        n_units = sum(x["n_units"] for x in layers)
        out["unit: stats across all concepts"] = measure(c, [
            (f"/runs/{run}/units/{int(u)}", {}) for u in rng.integers(0, n_units, repeats)])
        pool = np.arange(n_units) if units is None else np.concatenate(list(units.values()))
        decoder = pool if units is None else units["text_decoder"]
        out["unit: activation distribution"] = measure(c, [
            (f"/runs/{run}/units/{int(u)}/activations", {}) for u in rng.choice(pool, repeats)])
        out["unit: top/bottom examples"] = measure(c, [
            (f"/runs/{run}/units/{int(u)}/examples", {"n": 5}) for u in rng.choice(pool, repeats)])
        out["unit: top/bottom examples, one task x step, n 20"] = measure(c, [
            (f"/runs/{run}/units/{int(u)}/examples", {"n": 20, "task": "s2tt", "step": 7}) for u in rng.choice(decoder, repeats)])
    return out


STACK_OF = {task: enc for task, (enc, _, _) in TASKS.items()}


def intervention_latency(base: str, repeats: int) -> dict[str, dict]:
    """p50 of live interventions on the tiny model (distinct inputs, then repeats answered from the cache)."""
    spec = {"units": {"kind": "explicit", "units": [{"module": "text_decoder.layers.1.ffn.fc2", "channel": c} for c in range(8)]},
            "value": {"kind": "constant", "value": 20.0}}
    words = ["train", "river", "music", "coffee", "garden", "window", "letter", "morning"]
    bodies = [{"text": f"The {words[i % 8]} near the {words[(i * 5 + 3) % 8]} number {i}.", "src_lang": "eng", "tgt_lang": "fra",
               "spec": spec, "max_new_tokens": 32} for i in range(repeats)]
    out = {}
    with httpx.Client(base_url=base, timeout=120) as c:
        c.post("/interventions", json={**bodies[0], "text": "warm up"}).raise_for_status()
        for label, batch in (("intervention: text, tiny model (cache miss)", bodies),
                             ("intervention: repeat (cache hit)", bodies)):
            samples = []
            for body in batch:
                t0 = time.perf_counter()
                r = c.post("/interventions", json=body)
                samples.append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()
            p50, p95 = _percentiles(samples)
            out[label] = {"n": len(samples), "p50_ms": p50, "p95_ms": p95, "max_ms": max(samples)}
    return out


TARGETS_MS = {"heatmap": 200.0, "unit": 100.0}


def search_latencies(base: str, repeats: int, seed: int = 1) -> dict[str, dict]:
    """p50/p95 of GET /runs/{run}/search (issue 19: < 200 ms at full scale): a unit id, a site key with a channel,
    words of a site key, filters, and a concept's AP range over the decoder and over every stack it covers."""
    rng = np.random.default_rng(seed)
    with httpx.Client(base_url=base, timeout=120) as c:
        run = c.get("/runs").json()["runs"][0]["run_id"]
        sites = c.get(f"/runs/{run}/sites").json()["sites"]
        concepts = [x for x in c.get(f"/runs/{run}/concepts", params={"limit": 500}).json()["concepts"]
                    if x["kind"] == "language"]
        n_units = sum(s["width"] for s in sites)
        pick = lambda seq: seq[int(rng.integers(len(seq)))]
        url = f"/runs/{run}/search"
        dec_layers = sorted({s["layer"] for s in sites if s["stack"] == "text_decoder"})
        out = {
            "search: unit id": measure(c, [(url, {"q": str(int(u))}) for u in rng.integers(0, n_units, repeats)]),
            "search: site key with channel": measure(c, [
                (url, {"q": f"{s['site']}:{int(rng.integers(s['width']))}"}) for s in (pick(sites) for _ in range(repeats))]),
            "search: words of a site key (layers.N fc1)": measure(c, [
                (url, {"q": f"layers.{pick(dec_layers)}. fc1", "offset": int(rng.integers(0, 4000))}) for _ in range(repeats)]),
            "search: filters (decoder, ffn, a layer)": measure(c, [
                (url, {"stack": "text_decoder", "component": "ffn", "layer": pick(dec_layers)}) for _ in range(repeats)]),
            "search: concept AP >= 0.9 in the decoder": measure(c, [
                (url, {"stack": "text_decoder", "concept_id": pick(concepts)["concept_id"], "min_ap": 0.9})
                for _ in range(repeats)]),
            "search: concept AP in [0.5, 0.8], every stack": measure(c, [
                (url, {"concept_id": pick(concepts)["concept_id"], "min_ap": 0.5, "max_ap": 0.8}) for _ in range(repeats)]),
        }
    return out


TARGETS_MS["search"] = 200.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the width and 24 concepts, fewer repeats")
    parser.add_argument("--keep", type=Path, help="build (or reuse) the synthetic store in this folder and keep it")
    parser.add_argument("--repeats", type=int, help="measured requests per endpoint (default 60, quick 20)")
    parser.add_argument("--memory-limit", help="cap DuckDB's memory while building the store, e.g. 8GB")
    parser.add_argument("--build-only", action="store_true", help="build (or reuse) the store with --keep, measure nothing")
    args = parser.parse_args(argv)
    if args.build_only and args.keep is None:
        parser.error("--build-only needs --keep DIR (the store it builds would be deleted at once)")
    repeats = args.repeats or (20 if args.quick else 60)
    tmp_ctx = tempfile.TemporaryDirectory(prefix="atlas-bench-") if args.keep is None else None
    root = Path(tmp_ctx.name) if tmp_ctx else args.keep
    root.mkdir(parents=True, exist_ok=True)
    store, marker = root / "atlas.duckdb", root / ("built-quick" if args.quick else "built-full")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"duckdb {duckdb.__version__}")
    if marker.exists() and store.exists():
        print(f"reusing the synthetic store in {root}")
        build = json.loads(marker.read_text())
    else:
        build = build_store(store, root / "work", quick=args.quick, memory_limit=args.memory_limit)
        marker.write_text(json.dumps(build))
    if args.build_only:
        return 0
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _serve(store, root, port, "tiny-random")
    try:
        _wait_ready(base, proc)
        rss_warm = _rss_mib(proc.pid)
        results = data_latencies(base, repeats, units=summarised_units(args.quick))
        results.update(search_latencies(base, repeats))
        results.update(intervention_latency(base, repeats))
        print(f"server RSS: {rss_warm:.0f} MiB after the store warm-up, {_rss_mib(proc.pid):.0f} MiB at the end")
    finally:
        proc.terminate()
        proc.wait(30)
        if tmp_ctx:
            tmp_ctx.cleanup()
    print(f"\nstore: {build['unit_stats_rows']:,} unit_stats rows, {build['concepts']} concepts, "
          f"{build['unit_distributions_rows']:,} unit_distributions and {build['unit_examples_rows']:,} unit_examples rows "
          f"({build['summaries_bytes'] / 1e9:.2f} GB when built), store file now {store.stat().st_size / 1e9:.2f} GB (built in "
          f"{build['build_s']:.0f} s)")
    print(f"{'endpoint':58} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  target")
    ok = True
    for label, r in results.items():
        kind = label.split(":")[0]
        target = TARGETS_MS.get(kind)
        verdict = ""
        if target is not None and "every language concept" not in label:
            met = r["p95_ms"] < target
            ok &= met
            verdict = f"p95 < {target:.0f} ms: {'met' if met else 'MISSED'} ({target / r['p95_ms']:.1f}x)"
        print(f"{label:58} {r['n']:>4} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['max_ms']:>8.1f}  {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
