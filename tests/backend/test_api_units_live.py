"""Unit traces (live per-position activations) and the concentration drill-down, against the stored recording."""
from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest

from neuron_atlas.engine.model.unit_sites import SiteRegistry
from precompute.activation_store import load_acts
from neuron_atlas.engine.concentration import gini, mean_abs_activation
from tests.backend.api_support import assert_error, atlas_store, client_for, make_settings  # noqa: F401


@pytest.fixture(scope="module")
def client(atlas_store, tiny_bundle, tmp_path_factory):
    store, _ = atlas_store
    with client_for(make_settings(store, tmp_path_factory.mktemp("units-live")), tiny_bundle) as c:
        yield c


@pytest.fixture(scope="module")
def run(client):
    return client.get("/runs/latest").json()


def _site_unit(registry: SiteRegistry, stack: str, domain: str | None = None, component: str | None = None) -> int:
    site = next(s for s in registry.sites if s.stack == stack and (domain is None or s.domain == domain)
                and (component is None or s.component == component))
    return site.offset + min(3, site.width - 1)


def _item(run_id: str, store, task: str, index: int = 0) -> dict:
    con = duckdb.connect(str(store), read_only=True)
    try:
        row = con.execute("SELECT item, example_id, tgt_lang FROM items WHERE run_id = ? AND task = ? ORDER BY item "
                          "LIMIT 1 OFFSET ?", [run_id, task, index]).fetchone()
    finally:
        con.close()
    return {"item": row[0], "example_id": row[1], "tgt_lang": row[2]}


@pytest.mark.parametrize("stack, domain, task, kind", [
    ("speech_encoder", "speech_frames", "s2tt", "speech_frames"),
    ("speech_encoder", "speech_adapter", "asr", "speech_adapter"),
    ("text_encoder", None, "t2tt", "text_tokens"),
    ("text_decoder", "decoder", "s2tt", "decoder"),
    ("text_decoder", "encoder_out", "en2x_t2tt", "text_tokens"),
    ("text_decoder", "encoder_out", "en2x_s2tt", "speech_adapter"),
])
def test_trace_pooled_equals_stored_value(client, run, atlas_store, tiny_registry, tiny_bundle, stack, domain, task,
                                          kind):
    unit = _site_unit(tiny_registry, stack, domain)
    it = _item(run["run_id"], atlas_store[0], task, index=1)
    step = 7 if stack == "text_decoder" else None
    params = {"example_id": it["example_id"], "task": task, "tgt_lang": it["tgt_lang"]}
    if step:
        params["step"] = step
    r = client.get(f"/runs/{run['run_id']}/units/{unit}/trace", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["positions"] == kind and body["item"] == it["item"] and body["tgt_lang"] == it["tgt_lang"]
    values = np.array(body["values"])
    assert len(values) >= 1 and np.isfinite(values).all()
    assert body["pooled"] == pytest.approx(values.mean(), rel=1e-5, abs=1e-6)
    acts = load_acts(Path(run["work_dir"]), task, f"text_decoder.step{step}" if step else stack)
    stored = float(acts[unit - tiny_registry.stack_ranges[stack].start, it["item"]])
    assert body["stored"] == pytest.approx(stored, rel=1e-6)
    assert body["pooled"] == pytest.approx(stored, rel=1e-4, abs=1e-5)
    if kind.startswith("speech"):
        times = body["times_s"]
        assert len(times) == len(values) and times == sorted(times) and body["tokens"] is None
        gap = 0.02 if kind == "speech_frames" else 0.02 * tiny_bundle.model.config.adaptor_stride
        assert np.allclose(np.diff(times), gap, atol=1e-3)
    else:
        assert len(body["tokens"]) == len(values) and body["times_s"] is None
    if kind == "decoder":
        assert len(values) <= step and body["tokens"] == body["output_tokens"][: len(values)]


def test_trace_text_tokens_are_the_tokenised_input(client, run, atlas_store, tiny_registry, tiny_bundle):
    unit = _site_unit(tiny_registry, "text_encoder")
    it = _item(run["run_id"], atlas_store[0], "t2tt")
    body = client.get(f"/runs/{run['run_id']}/units/{unit}/trace",
                      params={"example_id": it["example_id"], "task": "t2tt", "modality": "text"}).json()
    ex = client.get(f"/runs/{run['run_id']}/examples/{it['example_id']}").json()
    ids = tiny_bundle.tokenizer(ex["text"], src_lang=ex["lang"])["input_ids"]
    assert body["tokens"] == tiny_bundle.tokenizer.convert_ids_to_tokens(ids)


def test_trace_bad_inputs_name_the_problem(client, run, atlas_store, tiny_registry):
    rid = run["run_id"]
    it = _item(rid, atlas_store[0], "s2tt")
    unit = _site_unit(tiny_registry, "text_decoder", "decoder")
    base = f"/runs/{rid}/units/{unit}/trace"
    assert_error(client.get(base, params={"example_id": "nope", "task": "s2tt"}), 404, "nope")
    assert_error(client.get(base, params={"example_id": it["example_id"], "task": "fly"}), 422, "task")
    assert_error(client.get(base, params={"example_id": it["example_id"], "task": "s2tt", "modality": "text"}),
                 422, "modality")
    assert_error(client.get(base, params={"example_id": it["example_id"], "task": "s2tt", "step": 5}), 422, "step")
    assert_error(client.get(f"/runs/{rid}/units/{tiny_registry.n_units}/trace",
                            params={"example_id": it["example_id"], "task": "s2tt"}), 404, "out of range")
    eng = _item(rid, atlas_store[0], "en2x_t2tt")
    assert_error(client.get(base, params={"example_id": eng["example_id"], "task": "t2tt"}), 404, "not an input")
    assert_error(client.get(base, params={"example_id": eng["example_id"], "task": "en2x_t2tt", "tgt_lang": "jpn"}),
                 404, "jpn")
    # an encoder unit on a task whose input never reaches that encoder (was a 500 from an empty trace)
    speech_unit = _site_unit(tiny_registry, "speech_encoder", "speech_frames")
    text_item = _item(rid, atlas_store[0], "t2tt")
    r = client.get(f"/runs/{rid}/units/{speech_unit}/trace", params={"example_id": text_item["example_id"], "task": "t2tt"})
    assert_error(r, 422, "speech_encoder", "t2tt")
    assert r.json()["field"] == "task"


def test_trace_refuses_a_run_of_another_model(atlas_store, tmp_path):
    from neuron_atlas.engine.model.loading import load_model

    other = load_model("tiny-random", device="cpu")
    other.checksum = "different"
    store, run_id = atlas_store
    with client_for(make_settings(store, tmp_path), other) as c:
        it = _item(run_id, store, "t2tt")
        assert_error(c.get(f"/runs/{run_id}/units/0/trace", params={"example_id": it["example_id"], "task": "t2tt"}),
                     409, "checksum")


@pytest.mark.parametrize("stack, task, layer", [("text_decoder", "t2tt", 1), ("speech_encoder", "asr", 0)])
def test_concentration_units_rank_the_gini_measure(client, run, atlas_store, tiny_registry, stack, task, layer):
    rid = run["run_id"]
    lang = "deu"
    pages = []
    while not pages or pages[-1]["units"]:
        r = client.get(f"/runs/{rid}/concentration/units", params={
            "stack": stack, "layer": layer, "task": task, "language": lang, "step": 7, "limit": 500,
            "offset": 500 * len(pages)})
        assert r.status_code == 200, r.text
        pages.append(r.json())
    body = {**pages[0], "units": [u for p in pages for u in p["units"]]}
    units = [s for s in tiny_registry.sites if s.stack == stack and s.layer == layer]
    ids = np.concatenate([np.arange(s.offset, s.offset + s.width) for s in units])
    acts = load_acts(Path(run["work_dir"]), task, "text_decoder.step7" if stack == "text_decoder" else stack)
    labels = _labels(atlas_store[0], rid, task)
    expected = mean_abs_activation(np.asarray(acts[ids - tiny_registry.stack_ranges[stack].start]), labels == lang)
    assert body["n_units"] == len(ids) and len(body["units"]) == len(ids)
    got = {u["unit_id"]: u["mean_abs"] for u in body["units"]}
    assert np.allclose([got[i] for i in ids], expected)
    shares = np.array([u["share"] for u in body["units"]])
    assert np.all(np.diff([u["mean_abs"] for u in body["units"]]) <= 0)
    assert shares.sum() == pytest.approx(1.0) and body["units"][-1]["cumulative_share"] == pytest.approx(1.0)
    assert body["gini"] == pytest.approx(float(gini(expected)))
    cell = client.get(f"/runs/{rid}/concentration", params={"stack": stack, "step": 7, "task": task}).json()
    series = next(s for s in cell["series"] if s["language"] == lang)
    assert body["gini"] == pytest.approx(series["values"][cell["layers"].index(layer)], rel=1e-6)
    page = client.get(f"/runs/{rid}/concentration/units", params={
        "stack": stack, "layer": layer, "task": task, "language": lang, "step": 7, "limit": 3, "offset": 2}).json()
    assert [u["unit_id"] for u in page["units"]] == [u["unit_id"] for u in body["units"][2:5]]
    assert page["units"][0]["rank"] == 3


def _labels(store, run_id: str, task: str) -> np.ndarray:
    con = duckdb.connect(str(store), read_only=True)
    try:
        rows = con.execute("SELECT label FROM items WHERE run_id = ? AND task = ? ORDER BY item", [run_id, task]).fetchall()
    finally:
        con.close()
    return np.array([r[0] for r in rows])


def test_concentration_units_bad_inputs(client, run):
    rid = run["run_id"]
    base = f"/runs/{rid}/concentration/units"
    ok = {"stack": "text_decoder", "layer": 0, "task": "t2tt", "language": "deu"}
    assert_error(client.get(base, params={**ok, "language": "xxx"}), 422, "language")
    assert_error(client.get(base, params={**ok, "layer": 99}), 422, "layer")
    assert_error(client.get(base, params={**ok, "stack": "speech_encoder"}), 422, "stack")
    assert_error(client.get(base, params={**ok, "task": "nope"}), 422, "task")
    assert_error(client.get(base, params={**ok, "step": 3}), 422, "step")
