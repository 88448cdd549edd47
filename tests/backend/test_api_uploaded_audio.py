"""POST /audio and `audio_id` on every live route (tiny model): an upload by id gives what the same wave gives by
another way (the old multipart route, or the stored example whose audio was uploaded), ids are content hashes, and
the store is bounded."""
from __future__ import annotations

import json
import time

import duckdb
import numpy as np
import pytest

from tests.backend.api_support import assert_error, atlas_store, client_for, make_settings, tone, wav_bytes  # noqa: F401

SPEC = {"units": {"kind": "explicit", "units": [{"module": "text_decoder.layers.0.ffn.fc1", "channel": 3}]},
        "value": {"kind": "zero"}}


@pytest.fixture(scope="module")
def client(atlas_store, tiny_bundle, tmp_path_factory):
    store, _ = atlas_store
    with client_for(make_settings(store, tmp_path_factory.mktemp("uploads")), tiny_bundle) as c:
        yield c


@pytest.fixture(scope="module")
def speech(atlas_store):
    """A German speech example of the run and its stored FLAC bytes (uploaded as a file by the tests)."""
    store, run_id = atlas_store
    con = duckdb.connect(str(store), read_only=True)
    try:
        example_id, flac = con.execute("SELECT a.example_id, a.flac FROM example_audio a JOIN examples e USING (run_id, example_id) "
                                       "WHERE a.run_id = ? AND e.lang = 'deu' ORDER BY a.example_id LIMIT 1",
                                       [run_id]).fetchone()
    finally:
        con.close()
    return {"run_id": run_id, "example_id": example_id, "flac": bytes(flac)}


def upload(client, data: bytes, name: str = "clip.wav", mime: str = "audio/wav") -> dict:
    r = client.post("/audio", files={"file": (name, data, mime)})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def example_upload(client, speech) -> dict:
    return upload(client, speech["flac"], "example.flac", "audio/flac")


def test_upload_gives_a_content_id_metadata_and_the_wave_back(client):
    wave = np.round(tone(1.2, 16000, freq=330.0) * 32767).astype(np.int16)  # one set of PCM samples in both containers
    first = upload(client, wav_bytes(wave, 16000), "a.wav")
    assert set(first) >= {"audio_id", "duration_s", "sample_rate", "sha256", "filename"}
    assert first["sample_rate"] == 16000 and first["duration_s"] == pytest.approx(1.2, abs=1e-3)
    assert first["filename"] == "a.wav" and first["sha256"].startswith(first["audio_id"])
    again = upload(client, wav_bytes(wave, 16000), "b.wav")
    assert again["audio_id"] == first["audio_id"] and again["filename"] == "b.wav"
    flac = upload(client, wav_bytes(wave, 16000, "FLAC"), "a.flac", "audio/flac")
    assert flac["audio_id"] == first["audio_id"], "the same samples in another container are the same recording"
    other = upload(client, wav_bytes(tone(1.2, 16000, freq=440.0), 16000))
    assert other["audio_id"] != first["audio_id"]
    info = client.get(f"/audio/{first['audio_id']}").json()
    assert info["sha256"] == first["sha256"] and info["n_samples"] == round(1.2 * 16000)
    r = client.get(f"/audio/{first['audio_id']}/wav")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    assert upload(client, r.content)["audio_id"] == first["audio_id"], "the WAV it serves is the wave it holds"


def test_bad_uploads_are_refused_as_the_multipart_routes_refuse_them(client):
    assert_error(client.post("/audio", files={"file": ("notes.txt", wav_bytes(tone(), 16000), "text/plain")}), 415, "notes.txt")
    assert_error(client.post("/audio", files={"file": ("x.wav", b"RIFF\x00\x00\x00\x00WAVEjunk", "audio/wav")}), 422, "could not decode")
    assert_error(client.post("/audio", files={"file": ("x.wav", wav_bytes(tone(0.02), 16000), "audio/wav")}), 422, "at least 0.1 s")
    assert_error(client.post("/audio", json={"file": "x"}), 415, "multipart")


@pytest.mark.parametrize("path, body", [
    ("/interventions", {"tgt_lang": "eng"}),
    ("/activations", {"tgt_lang": "eng"}),
    ("/attribution", {"tgt_lang": "eng", "token_index": 0, "reference": {"kind": "zero"}}),
    ("/bridge", {"tgt_lang": "eng"}),
    ("/jobs/sweep", None),
])
def test_an_unknown_audio_id_is_a_404_that_says_to_upload_again(client, speech, path, body):
    if body is None:
        concept = client.get(f"/runs/{speech['run_id']}/concepts", params={"kind": "language", "task": "en2x_t2tt", "step": 2}).json()["concepts"][0]
        body = {"inputs": [{"audio_id": "0" * 32}], "tgt_lang": "eng", "ks": [2], "seeds": [0],
                "spec": {"units": {"kind": "concept", "concept_id": concept["concept_id"], "set": "top", "k": 2},
                         "value": {"kind": "on_p50"}}}
    else:
        body = {**body, "audio_id": "0" * 32}
    err = assert_error(client.post(path, json=body), 404, "0" * 32, "POST /audio", "again")
    assert (err["field"] or "").endswith("audio_id")


def test_exactly_one_input_and_no_text_for_the_bridge(client, example_upload, speech):
    aid = example_upload["audio_id"]
    assert_error(client.post("/interventions", json={"tgt_lang": "eng", "audio_id": aid, "text": "Hallo", "src_lang": "deu"}),
                 422, "exactly one of example_id, text", "audio_id")
    err = assert_error(client.post("/bridge", json={"tgt_lang": "eng", "audio_id": aid, "text": "Hallo"}), 422, "speech input")
    assert err["field"] == "text"


def test_interventions_by_audio_id_equal_the_multipart_upload(client, example_upload, speech):
    opts = {"tgt_lang": "eng", "spec": SPEC, "max_new_tokens": 6}
    old = client.post("/interventions/upload", files={"file": ("example.flac", speech["flac"], "audio/flac")},
                      data={"options": json.dumps(opts)})
    assert old.status_code == 200, old.text
    new = client.post("/interventions", json={**opts, "audio_id": example_upload["audio_id"]})
    assert new.status_code == 200, new.text
    old, new = old.json(), new.json()
    assert new["input"]["kind"] == "audio" and new["input"]["sha256"] == example_upload["sha256"]
    assert new["input"]["audio_id"] == old["input"]["audio_id"] == example_upload["audio_id"]
    assert new["key"] == old["key"] and new["cached"], "one recording, one cache entry, whichever route sent it"
    for side in ("baseline", "intervened"):
        assert new[side]["token_ids"] == old[side]["token_ids"]
    by_example = client.post("/interventions", json={**opts, "example_id": speech["example_id"], "modality": "speech"}).json()
    assert by_example["baseline"]["token_ids"] == new["baseline"]["token_ids"]
    assert by_example["intervened"]["token_ids"] == new["intervened"]["token_ids"]
    job = client.post("/jobs/upload", files={"file": ("example.flac", speech["flac"], "audio/flac")},
                      data={"options": json.dumps(opts)})
    assert job.status_code == 202, job.text


def test_a_different_recording_never_shares_a_cached_result(client):
    opts = {"tgt_lang": "eng", "max_new_tokens": 4}
    a = upload(client, wav_bytes(tone(1.0, 16000, freq=200.0), 16000))
    b = upload(client, wav_bytes(tone(1.0, 16000, freq=600.0), 16000))
    ra = client.post("/interventions", json={**opts, "audio_id": a["audio_id"]}).json()
    rb = client.post("/interventions", json={**opts, "audio_id": b["audio_id"]}).json()
    assert ra["key"] != rb["key"] and not rb["cached"]


def test_bridge_by_audio_id_equals_the_stored_example(client, example_upload, speech):
    common = {"tgt_lang": "eng", "max_new_tokens": 5, "span_s": [0.0, 0.4]}
    by_example = client.post("/bridge", json={**common, "example_id": speech["example_id"], "run_id": speech["run_id"]})
    by_id = client.post("/bridge", json={**common, "audio_id": example_upload["audio_id"]})
    assert by_example.status_code == 200 and by_id.status_code == 200, (by_example.text, by_id.text)
    a, b = by_example.json(), by_id.json()
    assert b["audio_id"] == example_upload["audio_id"] and b["example_id"] is None and b["run_id"] is None
    assert b["input"]["sha256"] == example_upload["sha256"]
    assert b["tokens"] == a["tokens"] and b["columns"] == a["columns"] and b["duration_s"] == a["duration_s"]
    np.testing.assert_allclose(b["weights"], a["weights"], atol=1e-6)
    assert b["span"] == a["span"]


def test_activations_by_audio_id_equal_the_stored_example(client, example_upload, speech):
    common = {"tgt_lang": "eng", "run_id": speech["run_id"], "step": 2, "n": 3}
    a = client.post("/activations", json={**common, "example_id": speech["example_id"], "modality": "speech"})
    b = client.post("/activations", json={**common, "audio_id": example_upload["audio_id"]})
    assert a.status_code == 200 and b.status_code == 200, (a.text, b.text)
    a, b = a.json(), b.json()
    assert b["input"]["audio_id"] == example_upload["audio_id"] and b["statistics_task"] == a["statistics_task"] == "s2tt"
    assert b["stacks"] == a["stacks"] and b["output_tokens"] == a["output_tokens"]


def test_attribution_by_audio_id_equals_the_stored_example(client, example_upload, speech):
    common = {"tgt_lang": "eng", "side": "baseline", "token_index": 0, "reference": {"kind": "zero"}, "verify": 3,
              "top_k": 5, "max_new_tokens": 4}
    a = client.post("/attribution", json={**common, "example_id": speech["example_id"], "modality": "speech"})
    b = client.post("/attribution", json={**common, "audio_id": example_upload["audio_id"]})
    assert a.status_code == 200 and b.status_code == 200, (a.text, b.text)
    a, b = a.json(), b.json()
    assert b["input"]["sha256"] == example_upload["sha256"] and b["output"] == a["output"]
    assert [u["unit_id"] for u in b["top"]] == [u["unit_id"] for u in a["top"]]
    np.testing.assert_allclose([u["estimate"] for u in b["top"]], [u["estimate"] for u in a["top"]], rtol=1e-5, atol=1e-7)


def test_a_sweep_on_an_upload_equals_the_sweep_on_the_stored_example(client, example_upload, speech):
    run_id = speech["run_id"]
    concept = client.get(f"/runs/{run_id}/concepts", params={"kind": "language", "task": "en2x_t2tt", "step": 2}).json()["concepts"][0]
    spec = {"units": {"kind": "concept", "concept_id": concept["concept_id"], "set": "top", "k": 4}, "value": {"kind": "on_p50"}}
    common = {"tgt_lang": "eng", "spec": spec, "ks": [2, 4], "seeds": [0], "run_id": run_id, "max_new_tokens": 4}
    results = []
    for inp in ({"example_id": speech["example_id"], "modality": "speech"}, {"audio_id": example_upload["audio_id"]}):
        r = client.post("/jobs/sweep", json={**common, "inputs": [inp]})
        assert r.status_code == 202, r.text
        deadline = time.time() + 120
        while (status := client.get(f"/jobs/{r.json()['job_id']}").json())["state"] not in ("done", "error"):
            assert time.time() < deadline
            time.sleep(0.1)
        assert status["state"] == "done", status
        results.append(status["result"])
    by_example, by_id = results
    assert by_id["inputs"][0]["audio_id"] == example_upload["audio_id"]
    assert [o["text"] for o in by_id["outputs"]] == [o["text"] for o in by_example["outputs"]]


def test_the_byte_budget_evicts_the_least_recently_used(atlas_store, tiny_bundle, tmp_path):
    store, _ = atlas_store
    one_second = 16000 * 4
    with client_for(make_settings(store, tmp_path, audio_store_bytes=int(2.5 * one_second)), tiny_bundle) as c:
        ids = [upload(c, wav_bytes(tone(1.0, 16000, freq=f), 16000))["audio_id"] for f in (200.0, 300.0)]
        assert c.get(f"/audio/{ids[0]}").status_code == 200  # the first is now the most recently used
        third = upload(c, wav_bytes(tone(1.0, 16000, freq=400.0), 16000))["audio_id"]
        assert_error(c.get(f"/audio/{ids[1]}"), 404, ids[1], "POST /audio")
        assert c.get(f"/audio/{ids[0]}").status_code == 200 and c.get(f"/audio/{third}").status_code == 200
        assert_error(c.post("/audio", files={"file": ("long.wav", wav_bytes(tone(3.0), 16000), "audio/wav")}), 413,
                     "audio_store_bytes")
