"""Batched unit traces (POST /runs/{run}/units/{unit}/traces) and paged unit examples, on the tiny-model store."""
from __future__ import annotations

import duckdb
import numpy as np
import pytest

from neuron_atlas.engine.model.unit_sites import SiteRegistry
from tests.backend.api_support import assert_error, atlas_store, client_for, make_settings  # noqa: F401

MAX_NEW = 12


@pytest.fixture(scope="module")
def client(atlas_store, tiny_bundle, tmp_path_factory):
    store, _ = atlas_store
    with client_for(make_settings(store, tmp_path_factory.mktemp("traces"), max_new_tokens=MAX_NEW), tiny_bundle) as c:
        yield c


@pytest.fixture(scope="module")
def run(client):
    return client.get("/runs/latest").json()


def _unit(registry: SiteRegistry, stack: str, domain: str | None = None) -> int:
    site = next(s for s in registry.sites if s.stack == stack and (domain is None or s.domain == domain))
    return site.offset + min(3, site.width - 1)


def _items(store, run_id: str, task: str, n: int) -> list[dict]:
    con = duckdb.connect(str(store), read_only=True)
    try:
        rows = con.execute("SELECT item, example_id, tgt_lang, src_lang FROM items WHERE run_id = ? AND task = ? "
                           "ORDER BY item LIMIT ?", [run_id, task, n]).fetchall()
    finally:
        con.close()
    return [{"item": r[0], "example_id": r[1], "tgt_lang": r[2], "src_lang": r[3]} for r in rows]


def _post(client, run_id: str, unit: int, body, **kw):
    return client.post(f"/runs/{run_id}/units/{unit}/traces", json=body, **kw)


@pytest.mark.parametrize("stack, domain, task, step", [
    ("text_decoder", "decoder", "s2tt", 7),
    ("speech_encoder", "speech_frames", "asr", None),
    ("text_encoder", None, "t2tt", None),
    ("text_decoder", "encoder_out", "s2tt", 2),
])
def test_batched_traces_match_single_traces_and_the_store(client, run, atlas_store, tiny_registry, stack, domain, task,
                                                          step):
    """Items of several languages in one request: answered in request order, each equal to its one-item trace and
    to the stored pooled value (so batching changes nothing the store would see)."""
    rid = run["run_id"]
    unit = _unit(tiny_registry, stack, domain)
    items = _items(atlas_store[0], rid, task, 12)
    wanted = [items[7], items[0], items[8], items[1]]
    assert len({i["src_lang"] for i in wanted}) > 1
    r = _post(client, rid, unit, {"items": [{"example_id": i["example_id"], "task": task} for i in wanted], "step": step})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["unit_id"] == unit and body["cached"] is False and body["max_new_tokens"] == MAX_NEW
    assert [t["item"] for t in body["traces"]] == [i["item"] for i in wanted]
    for got, it in zip(body["traces"], wanted):
        values = np.array(got["values"])
        assert len(values) >= 1 and np.isfinite(values).all()
        assert got["pooled"] == pytest.approx(values.mean(), rel=1e-5, abs=1e-6)
        assert got["stored"] is not None and got["pooled"] == pytest.approx(got["stored"], rel=1e-4, abs=1e-5)
        params = {"example_id": it["example_id"], "task": task, **({"step": step} if step else {})}
        single = client.get(f"/runs/{rid}/units/{unit}/trace", params=params).json()
        assert single["positions"] == got["positions"] and single["tokens"] == got["tokens"]
        assert np.allclose(single["values"], values, rtol=1e-4, atol=1e-5)
        assert single["output_tokens"] == got["output_tokens"] and single["output_text"] == got["output_text"]
        assert len(got["output_tokens"]) <= MAX_NEW + 2
        if domain == "decoder":
            whole = np.array(got["output_values"])
            # the decoder is causal: over the whole output, its first `step` positions are the recorded window
            assert len(whole) == len(got["output_tokens"]) and len(whole) >= len(values)
            assert np.allclose(whole[: len(values)], values, rtol=1e-4, atol=1e-5)
            assert got["tokens"] == got["output_tokens"][: len(values)]
        else:
            assert got["output_values"] is None


def test_a_repeat_is_answered_from_the_cache(client, run, atlas_store, tiny_registry):
    rid = run["run_id"]
    unit = _unit(tiny_registry, "text_decoder", "decoder")
    items = [{"example_id": i["example_id"], "task": "t2tt"} for i in _items(atlas_store[0], rid, "t2tt", 2)]
    first = _post(client, rid, unit, {"items": items, "step": 2}).json()
    again = _post(client, rid, unit, {"items": items, "step": 2}).json()
    assert first["cached"] is False and again["cached"] is True
    assert again["traces"] == first["traces"]


def test_a_batch_costs_one_rate_limit_token(atlas_store, tiny_bundle, tiny_registry, tmp_path):
    store, rid = atlas_store
    settings = make_settings(store, tmp_path, rate_burst=1, rate_per_s=0.001, max_new_tokens=4)
    with client_for(settings, tiny_bundle) as c:
        unit = _unit(tiny_registry, "text_encoder")
        items = [{"example_id": i["example_id"], "task": "t2tt"} for i in _items(store, rid, "t2tt", 6)]
        assert _post(c, rid, unit, {"items": items}).status_code == 200
        assert_error(_post(c, rid, unit, {"items": items[:2]}), 429)


def test_bad_batches_name_the_problem(client, run, atlas_store, tiny_registry):
    rid = run["run_id"]
    unit = _unit(tiny_registry, "text_decoder", "decoder")
    ok = {"example_id": _items(atlas_store[0], rid, "s2tt", 1)[0]["example_id"], "task": "s2tt"}
    eng = _items(atlas_store[0], rid, "en2x_t2tt", 1)[0]

    def check(body, status, field, *needles, unit_id=unit):
        r = _post(client, rid, unit_id, body)
        assert_error(r, status, *needles)
        assert r.json()["field"] == field, r.json()

    check({"items": []}, 422, "items", "at least one")
    check({"items": [ok] * 101}, 422, "items", "101", "at most 100")
    check({"items": [ok, {"example_id": "nope", "task": "s2tt"}]}, 404, "items[1].example_id", "items[1]", "nope")
    check({"items": [{**ok, "task": "fly"}]}, 422, "items[0].task", "items[0].task", "fly")
    check({"items": [ok, {**ok, "modality": "text"}]}, 422, "items[1].modality", "speech input")
    check({"items": [{"example_id": eng["example_id"], "task": "t2tt"}]}, 404, "items[0].example_id", "not an input")
    check({"items": [{"example_id": eng["example_id"], "task": "en2x_t2tt", "tgt_lang": "jpn"}]}, 404,
          "items[0].example_id", "jpn")
    check({"items": [ok], "step": 5}, 422, "step", "no step 5")
    check({"items": [ok], "max_new_tokens": MAX_NEW + 1}, 422, "max_new_tokens", "limit")
    speech_unit = _unit(tiny_registry, "speech_encoder", "speech_frames")
    t2tt = {"example_id": _items(atlas_store[0], rid, "t2tt", 1)[0]["example_id"], "task": "t2tt"}
    check({"items": [ok, t2tt]}, 422, "items[1].task", "speech_encoder", "t2tt", unit_id=speech_unit)
    assert_error(_post(client, rid, tiny_registry.n_units, {"items": [ok]}), 404, "out of range")
    assert_error(_post(client, rid, unit, {"items": [{**ok, "colour": "red"}]}), 422, "colour")
    assert_error(_post(client, rid, unit, {"step": 2}), 422, "items")
    assert_error(client.post(f"/runs/{rid}/units/{unit}/traces", content=b"items=1",
                             headers={"Content-Type": "application/x-www-form-urlencoded"}), 415, "application/json")
    assert_error(_post(client, "nope", unit, {"items": [ok]}), 404, "nope")


def test_unit_examples_page_through_both_ends(client, run, tiny_registry):
    rid = run["run_id"]
    unit = _unit(tiny_registry, "text_decoder", "decoder")
    base = f"/runs/{rid}/units/{unit}/examples"
    whole = client.get(base, params={"task": "t2tt", "step": 7, "n": 6}).json()
    first = client.get(base, params={"task": "t2tt", "step": 7, "n": 3}).json()
    second = client.get(base, params={"task": "t2tt", "step": 7, "n": 3, "offset": 3}).json()
    assert second["offset"] == 3 and len(whole["sets"]) == 1
    total = whole["sets"][0]["total"]
    assert total == first["sets"][0]["total"] == 12  # 6 sentences x 2 non-English languages
    for end in ("top", "bottom"):
        pages = first["sets"][0][end] + second["sets"][0][end]
        assert [x["item"] for x in pages] == [x["item"] for x in whole["sets"][0][end]]
    acts = [x["activation"] for x in whole["sets"][0]["top"]]
    assert acts == sorted(acts, reverse=True)
    past = client.get(base, params={"task": "t2tt", "step": 7, "n": 3, "offset": total}).json()
    assert past["sets"][0]["top"] == [] and past["sets"][0]["bottom"] == []
    assert_error(client.get(base, params={"offset": -1}), 422, "offset")
    assert_error(client.get(base, params={"n": 101}), 422, "n")
