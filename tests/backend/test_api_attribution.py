"""POST /attribution through the test client: the engine's numbers, the intervened side, caching, the rate limit and
every bad input named."""
from __future__ import annotations

import numpy as np
import pytest

from neuron_atlas.engine import attribution as attr
from neuron_atlas.engine.interventions import ZeroValue, generate_with, prepare_inputs, resolve
from tests.backend.api_support import assert_error, atlas_store, client_for, make_settings  # noqa: F401

TEXT = "Le train part à sept heures."
SPEC = {"units": {"kind": "explicit", "units": [{"module": "text_decoder.layers.1.ffn.fc2", "channel": c} for c in range(8)]},
        "value": {"kind": "constant", "value": 25.0}}
BASE = {"text": TEXT, "src_lang": "fra", "tgt_lang": "eng", "max_new_tokens": 6, "token_index": 1,
        "reference": {"kind": "zero"}}


@pytest.fixture(scope="module")
def client(atlas_store, tiny_bundle, tmp_path_factory):
    store, _ = atlas_store
    with client_for(make_settings(store, tmp_path_factory.mktemp("attribution")), tiny_bundle) as c:
        yield c


@pytest.fixture(scope="module")
def concept_id(client, atlas_store):
    _, run_id = atlas_store
    concepts = client.get(f"/runs/{run_id}/concepts", params={"kind": "language", "task": "t2tt", "limit": 50}).json()["concepts"]
    return concepts[0]["concept_id"]


def test_baseline_attribution_matches_the_engine(client, tiny_bundle, tiny_registry):
    r = client.post("/attribution", json=BASE)
    assert r.status_code == 200, r.text
    body = r.json()
    inputs = prepare_inputs(tiny_bundle, text=TEXT, src_lang="fra")
    out = generate_with(tiny_bundle, tiny_registry, None, inputs, "eng", max_new_tokens=6)
    assert body["output"]["token_ids"] == out.token_ids[0] and body["side"] == "baseline"
    seq = attr.target_sequence(out.sequences[0].tolist(), 1)
    want = attr.attribute_token(tiny_bundle, tiny_registry, inputs, seq, attr.reference_values(ZeroValue(), tiny_registry, None, None))
    assert body["token"]["id"] == seq[-1] == body["output"]["token_ids"][1]
    assert body["token"]["logprob"] == pytest.approx(want.logprob, abs=1e-5) and body["token"]["versus"] is None
    top = body["top"]
    assert len(top) == 50 and [u["unit_id"] for u in top] == attr.rank_units(want.estimates, 50).tolist()
    np.testing.assert_allclose([u["estimate"] for u in top], want.estimates[[u["unit_id"] for u in top]], rtol=1e-4, atol=1e-7)
    assert all(u["reference"] == 0.0 for u in top)
    site, channel = tiny_registry.site_of_unit(top[0]["unit_id"])
    assert (top[0]["site"], top[0]["channel"], top[0]["stack"]) == (site.key, channel, site.stack)
    assert body["n_units_scored"] == tiny_registry.stack_width("text_encoder") + tiny_registry.stack_width("text_decoder")
    assert {(row["stack"]) for row in body["layers"]} == {"text_encoder", "text_decoder"}
    assert sum(row["n_units"] for row in body["layers"]) == body["n_units_scored"]
    v = body["verification"]
    assert v["n"] == 20 and len(v["units"]) == 20 and v["all"]["n_units"] == 20
    assert [u["unit_id"] for u in v["units"]] == [u["unit_id"] for u in top[:20]]
    assert v["objective"] == pytest.approx(want.objective, abs=1e-4)
    assert v["pearson"] is not None and -1 <= v["pearson"] <= 1 and v["spearman"] is not None
    assert set(body["timing_s"]) >= {"generate", "attribution", "verification"}
    again = client.post("/attribution", json=BASE).json()
    assert again["cached"] and again["top"] == top


def test_intervened_side_with_a_statistic_reference_and_versus(client, tiny_bundle, tiny_registry, concept_id):
    req = {**BASE, "spec": SPEC, "side": "intervened", "reference": {"kind": "off_mean"},
           "reference_concept_id": concept_id, "verify": 5, "top_k": 10, "per_layer": 2}
    body = client.post("/attribution", json=req).json()
    assert body["side"] == "intervened" and body["reference"]["concept_id"] == concept_id
    inputs = prepare_inputs(tiny_bundle, text=TEXT, src_lang="fra")
    out = generate_with(tiny_bundle, tiny_registry, resolve(SPEC, tiny_registry, None), inputs, "eng", max_new_tokens=6)
    assert body["output"]["token_ids"] == out.token_ids[0]
    assert len(body["top"]) == 10 and body["verification"]["n"] == 5
    assert all(len(row["top"]) <= 2 for row in body["layers"])
    assert all(u["reference"] is not None for u in body["top"])
    versus = (body["token"]["id"] + 1) % 100
    vs = client.post("/attribution", json={**req, "versus_token_id": versus}).json()
    assert vs["token"]["versus"]["id"] == versus
    assert vs["token"]["objective"] != pytest.approx(vs["token"]["logprob"])
    assert vs["verification"]["objective"] == pytest.approx(vs["token"]["objective"], abs=1e-4)


@pytest.mark.parametrize("change, status, field, needle", [
    ({"token_index": 6}, 422, "token_index", "past the last token"),
    ({"side": "intervened"}, 422, "side", "needs a spec"),
    ({"reference": {"kind": "on_p50"}}, 422, "reference_concept_id", "name the concept"),
    ({"reference": {"kind": "on_p50"}, "reference_concept_id": 987654}, 422, "reference_concept_id", "unknown concept 987654"),
    ({"reference_concept_id": 0}, 422, "reference_concept_id", "only used with a statistic"),
    ({"reference": {"kind": "median"}}, 422, None, "reference"),
    ({"verify": 101}, 422, None, "verify"),
    ({"token_index": -1}, 422, None, "token_index"),
    ({"versus_token_id": 10**6}, 422, "versus_token_id", "not a token id"),
    ({"run_id": "no-such-run"}, 404, None, "no-such-run"),
    ({"tgt_lang": "xxx"}, 422, "tgt_lang", "not a target language"),
])
def test_bad_inputs_are_named(client, change, status, field, needle):
    body = assert_error(client.post("/attribution", json={**BASE, **change}), status, needle)
    if field is not None:
        assert body["field"] == field


def test_token_past_the_output_and_versus_itself_are_named(client):
    base = client.post("/attribution", json=BASE).json()
    body = assert_error(client.post("/attribution", json={**BASE, "versus_token_id": base["token"]["id"]}), 422,
                        "versus_token_id", "the attributed token itself")
    assert body["status"] == 422
    eos = client.post("/attribution", json={**BASE, "max_new_tokens": 128, "token_index": 127})
    if eos.status_code != 200:  # the tiny model may run to the limit without an end of sentence
        assert_error(eos, 422, "token_index", "out of range")


def test_json_only_and_rate_limited(client, atlas_store, tiny_bundle, tmp_path):
    assert_error(client.post("/attribution", content="x", headers={"content-type": "text/plain"}), 415, "application/json")
    store, _ = atlas_store
    with client_for(make_settings(store, tmp_path, rate_burst=1, rate_per_s=0.01), tiny_bundle) as c:
        assert c.post("/attribution", json=BASE).status_code == 200
        assert_error(c.post("/attribution", json={**BASE, "token_index": 0}), 429, "too many intervention requests")


def test_an_overflowing_run_is_named_not_a_server_error(client):
    huge = {**SPEC, "value": {"kind": "constant", "value": 1e30}}
    r = client.post("/attribution", json={**BASE, "spec": huge, "side": "intervened"})
    assert_error(r, 422, "non-finite log-probability", "smaller values")
    ok = client.post("/attribution", json={**BASE, "reference": {"kind": "constant", "value": 1e30}, "verify": 3})
    assert ok.status_code == 200, ok.text
    assert all(v["actual"] is None or isinstance(v["actual"], float) for v in ok.json()["verification"]["units"])
