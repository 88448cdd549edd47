"""POST /bridge on the tiny store: the answer's shape and sense, caching, and a named 4xx for every bad input."""
from __future__ import annotations

import duckdb
import numpy as np
import pytest

from tests.backend.api_support import assert_error, atlas_store, client_for, make_settings  # noqa: F401


@pytest.fixture(scope="module")
def client(atlas_store, tiny_bundle, tmp_path_factory):
    store, _ = atlas_store
    with client_for(make_settings(store, tmp_path_factory.mktemp("bridge")), tiny_bundle) as c:
        yield c


@pytest.fixture(scope="module")
def examples(atlas_store):
    store, run_id = atlas_store
    con = duckdb.connect(str(store), read_only=True)
    try:
        speech = con.execute("SELECT example_id FROM example_audio WHERE run_id = ? ORDER BY example_id LIMIT 1",
                             [run_id]).fetchone()[0]
    finally:
        con.close()
    return {"run_id": run_id, "speech": speech}


@pytest.fixture(scope="module")
def kv_unit(tiny_registry):
    site = next(s for s in tiny_registry.sites if s.domain == "encoder_out" and s.key.endswith("k_proj"))
    return site.offset + 2


def test_bridge_answers_tokens_weights_peaks_and_unit(client, examples, kv_unit, tiny_bundle):
    body = {"example_id": examples["speech"], "tgt_lang": "eng", "max_new_tokens": 6, "unit_id": kv_unit,
            "span_s": [0.0, 0.5]}
    r = client.post("/bridge", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    n_tok, n_col = len(out["tokens"]), out["columns"]["n"]
    assert n_tok == len(out["token_ids"]) >= 1 and not out["cached"]
    assert (out["n_layers"], out["n_heads"]) == (tiny_bundle.config.decoder_layers, tiny_bundle.config.decoder_attention_heads)
    assert out["layers"] == list(range(out["n_layers"])) and out["heads"] == list(range(out["n_heads"]))
    w = np.array(out["weights"])
    assert w.shape == (n_tok, n_col)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-4)
    assert [p["column"] for p in out["peaks"]] == w.argmax(axis=1).tolist()
    cols = out["columns"]
    assert cols["step_s"] == pytest.approx(tiny_bundle.config.adaptor_stride * 0.02)
    assert "length-adaptor frame" in cols["note"]
    assert max(cols["ends_s"]) <= out["duration_s"] + 1e-9
    inside = [i for i, c in enumerate(cols["centres_s"]) if c <= 0.5]
    assert out["span"]["columns"] == inside
    np.testing.assert_allclose(out["span"]["mass"], w[:, inside].sum(axis=1), atol=1e-5)
    assert out["unit"]["unit_id"] == kv_unit and out["unit"]["site"].endswith("cross_attention.k_proj")
    assert len(out["unit"]["values"]) == n_col
    assert out["argmax_matches"] is True
    model = tiny_bundle.model
    assert model.config._attn_implementation == "sdpa"
    assert all(layer.cross_attention.config is model.config for layer in model.text_decoder.layers)

    again = client.post("/bridge", json={**body, "layers": [1], "heads": [0]})
    assert again.status_code == 200 and again.json()["cached"] is True
    assert again.json()["tokens"] == out["tokens"] and again.json()["layers"] == [1]
    assert again.json()["weights"] != out["weights"]


@pytest.mark.parametrize("change, status, field, needle", [
    ({"text": "Hello there."}, 422, "text", "speech input"),
    ({"modality": "text"}, 422, "modality", "speech input"),
    ({"example_id": None}, 422, "example_id", "required"),
    ({"example_id": "nope:nothing"}, 404, "example_id", "unknown example"),
    ({"layers": [0, 9]}, 422, "layers", "9 is out of range"),
    ({"heads": [7]}, 422, "heads", "7 is out of range"),
    ({"tgt_lang": "xxx"}, 422, "tgt_lang", "not a target language"),
    ({"max_new_tokens": 100_000}, 422, "max_new_tokens", "limit"),
    ({"span_s": [0.8, 0.2]}, 422, "span_s", "start < end"),
    ({"unit_id": 0}, 422, "unit_id", "not a cross-attention k_proj/v_proj unit"),
    ({"unit_id": 10**9}, 422, "unit_id", "out of range"),
    ({"run_id": "no-such-run"}, 404, "run_id", "no-such-run"),
    ({"surprise": 1}, 422, None, "surprise"),
])
def test_bad_inputs_are_named(client, examples, change, status, field, needle):
    body = {"example_id": examples["speech"], "tgt_lang": "eng", "max_new_tokens": 4, **change}
    err = assert_error(client.post("/bridge", json=body), status, needle)
    if field is not None:
        assert (err["field"] or "").endswith(field), err


def test_bridge_is_documented(client):
    spec = client.get("/openapi.json").json()
    assert "/bridge" in spec["paths"]
    assert "422" in spec["paths"]["/bridge"]["post"]["responses"]
