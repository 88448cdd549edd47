"""A backend given only the store file (the run's work folder deleted, as in a compose deployment that mounts the
store alone) serves every page's routes: overview, layer, unit (distributions, top and bottom examples) and the
concentration drill-down, with the values the recording had."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest

from backend.store.reader import StoreReader
from neuron_atlas.engine.concentration import gini, mean_abs_activation
from precompute.activation_store import load_acts
from tests.backend.api_support import client_for, make_settings

pytestmark = pytest.mark.slow
LANGS = ["eng", "deu", "fra"]


@pytest.fixture(scope="module")
def store_only(tmp_path_factory, tiny_bundle):
    """A tiny run's store, with reference values read from its work folder before that folder is deleted."""
    from precompute.config import load_run_config
    from precompute.pipeline import run_precompute

    root = tmp_path_factory.mktemp("store-only")
    cfg = {"name": "alone", "model": "tiny-random", "device": "cpu", "tasks": ["asr", "s2tt", "t2tt"], "steps": [2, 7],
           "corpus": {"source": "builtin", "languages": LANGS, "max_sentences": 4}, "shard_size": 4, "batch_size": 4,
           "store": str(root / "atlas.duckdb"), "work_dir": str(root / "work"), "analysis": {"ks": [5], "seed": 0},
           "evaluate": {"enabled": False}, "keep_activations": True}  # reference values, then the folder goes
    (root / "run.yaml").write_text(json.dumps(cfg))
    result = run_precompute(load_run_config(root / "run.yaml"), progress=False, bundle=tiny_bundle)
    work = result.work_dir
    ref = {"t2tt.step7": np.array(load_acts(work, "t2tt", "text_decoder.step7")),
           "asr.speech_encoder": np.array(load_acts(work, "asr", "speech_encoder"))}
    shutil.rmtree(root / "work")
    assert not (root / "work").exists()
    return result.store, result.run_id, ref, root


@pytest.fixture(scope="module")
def client(store_only, tiny_bundle, tmp_path_factory):
    store, *_ = store_only
    with client_for(make_settings(store, tmp_path_factory.mktemp("store-only-api")), tiny_bundle) as c:
        yield c


def _q(store: Path, sql: str, params=()):
    con = duckdb.connect(str(store), read_only=True)
    try:
        return con.execute(sql, list(params)).df()
    finally:
        con.close()


def _ok(client, url: str, **params) -> dict:
    r = client.get(url, params=params)
    assert r.status_code == 200, f"{url} {params}: {r.status_code} {r.text[:300]}"
    return r.json()


def test_overview_and_layer_pages_need_only_the_store(client, store_only):
    store, run, _, _ = store_only
    base = f"/runs/{run}"
    for path in ("", "/tasks", "/languages", "/steps", "/concepts", "/layers", "/sites", "/examples"):
        _ok(client, base + path)
    concept = _ok(client, base + "/concepts", kind="language", task="t2tt", step=7)["concepts"][0]["concept_id"]
    assert _ok(client, base + "/heatmap", stack="text_decoder", kind="language", threshold=0.5)["counts"]
    _ok(client, base + "/concentration", stack="text_decoder", step=7)
    _ok(client, base + "/overlap", role="representation", step=7)
    _ok(client, base + "/spearman", role="representation", step=7)
    page = _ok(client, base + "/layers/text_decoder/1/units", concept_id=concept, limit=5)
    assert page["units"] and page["total"] > 0
    ex = _ok(client, base + "/examples", limit=1)["examples"][0]
    _ok(client, base + f"/examples/{ex['example_id']}")


def test_unit_page_distributions_and_examples_from_the_store(client, store_only):
    store, run, ref, _ = store_only
    unit = int(_q(store, "SELECT unit_offset + 3 FROM sites WHERE site = 'text_decoder.layers.1.ffn.fc1'").iloc[0, 0])
    start = int(_q(store, "SELECT min(unit_offset) FROM sites WHERE stack = 'text_decoder'").iloc[0, 0])
    acts = ref["t2tt.step7"][unit - start].astype(np.float64)
    labels = _q(store, "SELECT label FROM items WHERE task = 't2tt' ORDER BY item")["label"].to_numpy()
    _ok(client, f"/runs/{run}/units/{unit}")
    dist = _ok(client, f"/runs/{run}/units/{unit}/activations", step=7)
    assert {(g["task"], g["step"]) for g in dist["groups"]} == {("asr", 7), ("s2tt", 7), ("t2tt", 7)}
    for lang in ("deu", "fra"):
        g = next(g for g in dist["groups"] if g["task"] == "t2tt" and g["language"] == lang)
        v = acts[labels == lang]
        assert g["n"] == len(v) and g["modality"] == "text"
        assert g["mean"] == pytest.approx(v.mean(), rel=1e-5) and g["std"] == pytest.approx(v.std(), rel=1e-4, abs=1e-7)
        assert [g["quantiles"][k] for k in ("min", "p05", "p25", "p50", "p75", "p95", "max")] == pytest.approx(
            np.quantile(v, [0, 0.05, 0.25, 0.5, 0.75, 0.95, 1]), rel=1e-5)
    every = _ok(client, f"/runs/{run}/units/{unit}/activations")
    assert {g["step"] for g in every["groups"]} == {2, 7}
    ex = _ok(client, f"/runs/{run}/units/{unit}/examples", task="t2tt", step=7, n=3, offset=0)
    (one,) = ex["sets"]
    order = np.argsort(-acts, kind="stable")
    assert [t["item"] for t in one["top"]] == order[:3].tolist() and one["top"][0]["text"]
    assert [t["activation"] for t in one["top"]] == pytest.approx(acts[order[:3]].tolist())
    assert [b["item"] for b in one["bottom"]] == np.argsort(acts, kind="stable")[:3].tolist()
    assert one["stored"] == len(acts)  # a tiny run keeps every item (fewer than 50)
    reader = StoreReader(store)
    try:
        paged = reader.unit_examples(run, unit, "t2tt", 7, n=2, offset=1)["sets"][0]
    finally:
        reader.close()
    assert [t["item"] for t in paged["top"]] == order[1:3].tolist()
    assert len(_ok(client, f"/runs/{run}/units/{unit}/examples")["sets"]) == 3 * 2  # every task x step
    enc = _ok(client, f"/runs/{run}/units/5/examples", n=2)
    assert {(s["task"], s["step"]) for s in enc["sets"]} == {("asr", None), ("s2tt", None)}
    asr = ref["asr.speech_encoder"][5].astype(np.float64)
    got = next(s for s in enc["sets"] if s["task"] == "asr")
    assert [t["item"] for t in got["top"]] == np.argsort(-asr, kind="stable")[:2].tolist()


def test_concentration_drill_down_from_the_store(client, store_only, tiny_registry):
    store, run, ref, _ = store_only
    body = _ok(client, f"/runs/{run}/concentration/units", stack="text_decoder", layer=1, task="t2tt", language="deu",
               step=7, limit=500)
    units = [s for s in tiny_registry.sites if s.stack == "text_decoder" and s.layer == 1]
    ids = np.concatenate([np.arange(s.offset, s.offset + s.width) for s in units])
    labels = _q(store, "SELECT label FROM items WHERE task = 't2tt' ORDER BY item")["label"].to_numpy()
    start = tiny_registry.stack_ranges["text_decoder"].start
    expected = mean_abs_activation(ref["t2tt.step7"][ids - start], labels == "deu")
    got = {u["unit_id"]: u["mean_abs"] for u in body["units"]}
    assert body["n_units"] == len(ids) and np.allclose([got[i] for i in ids], expected, rtol=1e-12)
    assert body["gini"] == pytest.approx(float(gini(expected)))
    cell = _ok(client, f"/runs/{run}/concentration", stack="text_decoder", step=7, task="t2tt")
    series = next(s for s in cell["series"] if s["language"] == "deu")
    assert body["gini"] == pytest.approx(series["values"][cell["layers"].index(1)], rel=1e-9)


def test_bad_paging_and_old_stores_get_clear_errors(client, store_only, tiny_bundle, tmp_path):
    store, run, _, _ = store_only
    r = client.get(f"/runs/{run}/units/5/examples", params={"n": 60})
    assert r.status_code == 422 and "at most 50" in r.text
    old = tmp_path / "old.duckdb"
    shutil.copyfile(store, old)
    con = duckdb.connect(str(old))
    con.execute("DROP TABLE unit_distributions")  # as a store written before schema 1.3
    con.execute("DROP TABLE unit_examples")
    con.execute("UPDATE meta SET value = '1.2' WHERE key = 'store_version'")
    con.close()
    with client_for(make_settings(old, tmp_path), tiny_bundle) as c:
        for url in (f"/runs/{run}/units/5/activations", f"/runs/{run}/units/5/examples"):
            r = c.get(url)
            assert r.status_code == 404 and "before store schema 1.3" in r.text and "re-run" in r.text
        assert c.get(f"/runs/{run}/units/5").status_code == 200  # the rest of the store still serves
        r = c.get(f"/runs/{run}/concentration/units",
                  params={"stack": "text_decoder", "layer": 1, "task": "t2tt", "language": "deu", "step": 7})
        assert r.status_code == 404 and "before store schema 1.3" in r.text
