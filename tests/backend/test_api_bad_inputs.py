"""The bad-input suite: every malformed request gets a 4xx JSON answer whose message names the problem."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from tests.backend.api_support import assert_error, atlas_store, client_for, make_settings, tone, wav_bytes  # noqa: F401

GOOD = {"text": "Le train part à sept heures.", "src_lang": "fra", "tgt_lang": "eng"}
SPEC = {"units": {"kind": "explicit", "units": [{"module": "text_decoder.layers.0.ffn.fc1", "channel": 1}]}, "value": {"kind": "zero"}}


@pytest.fixture(scope="module")
def client(atlas_store, tiny_bundle, tmp_path_factory):
    store, _ = atlas_store
    settings = make_settings(store, tmp_path_factory.mktemp("bad"), max_upload_bytes=10_000_000, max_audio_seconds=30,
                             max_text_chars=200, max_json_bytes=100_000, max_new_tokens=64)
    with client_for(settings, tiny_bundle) as c:
        yield c


def upload(client, data: bytes, name="clip.wav", mime="audio/wav", options=None):
    return client.post("/interventions/upload", files={"file": (name, data, mime)},
                       data={"options": json.dumps(options or {"tgt_lang": "eng"})})


def wav_header(rate: int, channels: int, n_frames: int) -> bytes:
    size = n_frames * channels * 2
    return (b"RIFF" + struct.pack("<I", 36 + size) + b"WAVE" + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * 2, channels * 2, 16)
            + b"data" + struct.pack("<I", size))


def test_corrupt_empty_and_non_audio_uploads(client):
    assert_error(upload(client, b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk"), 422, "could not decode audio", "clip.wav")
    assert_error(upload(client, b""), 422, "empty")
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
    assert_error(upload(client, png, "picture.wav"), 422, "could not decode audio", "picture.wav")
    silent = wav_bytes(np.zeros(16000, np.float32), 16000)
    assert_error(upload(client, silent), 422, "silent")
    truncated = wav_bytes(tone(1.0), 16000)[:60]
    assert_error(upload(client, truncated), 422, "at least 0.1 s")


def test_one_hour_upload_is_refused_before_decoding(client):
    """Real one-hour WAVs: at 8 kHz (57.6 MB) refused by size (413); at 1 kHz (7.2 MB, under the byte limit) refused
    by duration from the header, before the samples are decoded."""
    n = 8000 * 3600
    hour = wav_header(8000, 1, n) + np.zeros(n, "<i2").tobytes()
    assert_error(upload(client, hour), 413, "too large", "11,000,000 bytes")
    n = 1000 * 3600
    pcm = np.zeros(n, "<i2")
    pcm[:1000] = (tone(1.0, 1000, freq=100) * 32767).astype("<i2")
    assert_error(upload(client, wav_header(1000, 1, n) + pcm.tobytes()), 422, "3600.0 s long", "limit is 30 s")


def test_wrong_content_types(client):
    assert_error(upload(client, wav_bytes(tone(), 16000), "notes.txt", "text/plain"), 415, "text/plain", "notes.txt")
    r = client.post("/interventions", content=json.dumps(GOOD), headers={"Content-Type": "text/plain"})
    assert_error(r, 415, "text/plain", "application/json")
    r = client.post("/interventions/upload", json={"tgt_lang": "eng"})
    assert_error(r, 415, "application/json", "multipart/form-data")
    assert_error(client.post("/findings", data={"title": "x"}), 415, "application/x-www-form-urlencoded")
    assert_error(client.post("/interventions", content=json.dumps(GOOD)), 415, "(none)")


def test_huge_and_malformed_json(client):
    huge = {**GOOD, "spec": {"units": {"kind": "explicit", "units": [{"module": "x" * 50, "channel": i} for i in range(5000)]}}}
    assert_error(client.post("/interventions", json=huge), 413, "too large")
    assert_error(client.post("/findings", json={"title": "t", "state": {"blob": "x" * 200_000}}), 413, "too large")
    r = client.post("/interventions", content=b'{"text": "a", "tgt_lang": ', headers={"Content-Type": "application/json"})
    assert assert_error(r, 422, "body: invalid JSON at character 26")["field"] == "body"
    r = client.post("/interventions", content=b'{"text": "x",', headers={"Content-Type": "application/json"})
    assert assert_error(r, 422, "body: invalid JSON at character 13", "double quotes")["field"] == "body"
    assert assert_error(client.post("/interventions", json=[1, 2, 3]), 422, "valid dictionary")["field"] == "body"
    assert_error(client.post("/interventions", json={**GOOD, "colour": "red"}), 422, "colour", "extra")
    bad_options = client.post("/interventions/upload", files={"file": ("a.wav", wav_bytes(tone(), 16000), "audio/wav")},
                              data={"options": "{not json"})
    assert assert_error(bad_options, 422, "options: invalid JSON")["field"] == "options"
    no_options = client.post("/interventions/upload", files={"file": ("a.wav", wav_bytes(tone(), 16000), "audio/wav")})
    assert_error(no_options, 422, "options", "missing")


@pytest.mark.parametrize("spec, needles", [
    ({"units": {"kind": "bogus"}}, ["spec.units.kind", "bogus"]),
    ({"units": {"kind": "explicit", "units": [{"module": "text_decoder.layers.0.ffn.fc1", "channel": "3"}]}}, ["spec.units.units[0].channel"]),
    ({"units": {"kind": "explicit", "units": []}, "value": {"kind": "on_p50"}}, ["stats_concept_id"]),
    ({"units": {"kind": "explicit", "units": [{"module": "text_decoder.layers.0.ffn.fc1", "channel": 1}]}, "scope": {"decode_steps": [-1]}}, ["spec.scope.decode_steps", "-1"]),
    ({"version": 7, "units": {"kind": "explicit", "units": []}}, ["spec.version", "unsupported spec version 7"]),
    ({"units": {"kind": "explicit", "units": []}, "value": {"kind": "constant", "value": "NaN"}}, ["spec.value.value"]),
    ("not an object", ["spec", "JSON object"]),
])
def test_malformed_spec_names_the_field(client, spec, needles):
    assert_error(client.post("/interventions", json={**GOOD, "spec": spec}), 422, *needles)


@pytest.mark.parametrize("spec, status, needles", [
    ({"units": {"kind": "explicit", "units": [{"module": "text_decoder.layers.0.ffn.fc1", "channel": 999}]}, "value": {"kind": "zero"}},
     422, ["spec.units.units[0].channel", "channel 999 is out of range"]),
    ({"units": {"kind": "explicit", "units": [{"module": "text_decoder.layers.0.fc1", "channel": 1}]}, "value": {"kind": "zero"}},
     422, ["spec.units.units[0].module", "did you mean 'text_decoder.layers.0.ffn.fc1'"]),
    ({"units": {"kind": "concept", "concept_id": 4242, "set": "top", "k": 3}}, 422, ["spec.units.concept_id", "unknown concept 4242"]),
    ({"units": {"kind": "concept", "concept_id": 0, "set": "top", "k": 100000}}, 422, ["spec.units.k", "larger than"]),
    ({"units": {"kind": "concept", "concept_id": 0, "set": "top", "k": 3, "stack": "text_encoder"}}, 422, ["spec.units.stack", "text_encoder"]),
])
def test_spec_that_does_not_fit_the_model_or_run(client, spec, status, needles):
    assert_error(client.post("/interventions", json={**GOOD, "spec": spec}), status, *needles)


@pytest.mark.parametrize("body, needles", [
    ({**GOOD, "tgt_lang": "xxx"}, ["tgt_lang", "'xxx'"]),
    ({**GOOD, "src_lang": "klingon"}, ["src_lang", "'klingon'"]),
    ({"text": "hello", "tgt_lang": "eng"}, ["src_lang", "required"]),
    ({"tgt_lang": "eng"}, ["exactly one of example_id, text"]),
    ({**GOOD, "example_id": "builtin:s000:fra:fra-m1"}, ["exactly one of"]),
    ({**GOOD, "text": "x" * 201}, ["text", "201 characters", "limit is 200"]),
    ({**GOOD, "text": "   "}, ["text", "empty"]),
    ({**GOOD, "max_new_tokens": 65}, ["max_new_tokens", "limit of 64"]),
    ({**GOOD, "max_new_tokens": 0}, ["max_new_tokens"]),
    ({**GOOD, "tgt_lang": None}, ["tgt_lang"]),
    ({"example_id": "builtin:nope", "tgt_lang": "eng"}, ["unknown example 'builtin:nope'"]),
    ({**GOOD, "run_id": "no-such-run"}, ["unknown run 'no-such-run'"]),
])
def test_bad_intervention_requests(client, body, needles):
    r = client.post("/interventions", json=body)
    assert 400 <= r.status_code < 500
    assert_error(r, r.status_code, *needles)


def test_unknown_run_concept_language_unit_and_ids(client, atlas_store):
    _, run_id = atlas_store
    assert_error(client.get("/runs/no-such-run"), 404, "unknown run 'no-such-run'", run_id)
    assert_error(client.get("/runs/no-such-run/heatmap", params={"stack": "text_decoder"}), 404, "unknown run")
    assert_error(client.get(f"/runs/{run_id}/concepts/777"), 404, "unknown concept 777")
    assert_error(client.get(f"/runs/{run_id}/heatmap", params={"stack": "text_decoder", "concept_ids": [777]}), 404, "unknown concept 777")
    assert_error(client.get(f"/runs/{run_id}/layers/text_decoder/0/units", params={"concept_id": 777}), 404, "unknown concept 777")
    assert_error(client.get(f"/runs/{run_id}/concepts", params={"language": "xx"}), 422, "unknown language 'xx'", "eng")
    assert_error(client.get(f"/runs/{run_id}/examples", params={"lang": "zz"}), 422, "lang", "unknown language 'zz'")
    assert_error(client.get(f"/runs/{run_id}/units/99999999"), 404, "unit 99999999 is out of range")
    assert_error(client.get(f"/runs/{run_id}/units/-1"), 422, "unit_id")
    assert_error(client.get(f"/runs/{run_id}/units/99999999/activations"), 404, "out of range")
    assert_error(client.get(f"/runs/{run_id}/layers/text_decoder/99/units", params={"concept_id": 0}), 404, "no layer 99")
    assert_error(client.get(f"/runs/{run_id}/layers/bogus_stack/0/units", params={"concept_id": 0}), 422, "stack")
    assert_error(client.get(f"/runs/{run_id}/heatmap", params={"stack": "text_decoder", "mode": "top", "k": 3}), 422, "k", "3")
    assert_error(client.get(f"/runs/{run_id}/heatmap", params={"stack": "text_decoder", "threshold": "nan"}), 422, "threshold")
    assert_error(client.get(f"/runs/{run_id}/concentration", params={"stack": "text_decoder", "step": 5}), 422, "no step 5")
    assert_error(client.get(f"/runs/{run_id}/overlap/units", params={"text_lang": "xx", "speech_lang": "fra"}), 404, "'xx'")
    assert_error(client.get(f"/runs/{run_id}/examples/nope:nope"), 404, "unknown example 'nope:nope'")
    assert_error(client.get(f"/runs/{run_id}/audio/nope:nope"), 404, "unknown example 'nope:nope'")
    assert_error(client.get(f"/runs/{run_id}/audio/..%2F..%2Fetc%2Fpasswd"), 404, "unknown example '../../etc/passwd'")
    assert_error(client.get(f"/runs/{run_id}/examples", params={"limit": 5000}), 422, "limit", "page limit of 500")
    assert_error(client.get("/jobs/deadbeef"), 404, "unknown job 'deadbeef'")
    assert_error(client.get("/findings/ABC"), 404, "unknown finding 'ABC'")
    assert_error(client.get("/findings/aaaaaaaa"), 404, "unknown finding 'aaaaaaaa'")
    assert_error(client.post("/findings", json={"title": ""}), 422, "title")
    assert_error(client.post("/findings", json={"title": "t", "spec": {"units": {"kind": "nope"}}}), 422, "spec.units.kind")
    assert_error(client.delete("/findings"), 405, "not allowed")


def test_filters_the_run_does_not_have_are_named_not_an_empty_page(client, atlas_store):
    _, run_id = atlas_store
    concepts = f"/runs/{run_id}/concepts"
    body = assert_error(client.get(concepts, params={"step": 5}), 422, "step: run", "has no step 5", "its steps are 2, 7")
    assert body["field"] == "step"
    body = assert_error(client.get(concepts, params={"task": "foo"}), 422, "task: run", "no task 'foo'", "asr", "s2tt+t2tt")
    assert body["field"] == "task"
    assert client.get(concepts, params={"task": "s2tt+t2tt"}).json()["total"] > 0, "pooled concept tasks are tasks"
    assert client.get(concepts, params={"task": "t2tt", "step": 7, "language": "fra"}).json()["total"] > 0
    heatmap = f"/runs/{run_id}/heatmap"
    for params, field, needles in [({"language": "xxx"}, "language", ["unknown language 'xxx'", "eng, deu, fra"]),
                                   ({"task": "foo"}, "task", ["no task 'foo'"]),
                                   ({"step": 5}, "step", ["no step 5", "2, 7"]),
                                   ({"step": 5, "concept_ids": [0]}, "step", ["no step 5"])]:
        body = assert_error(client.get(heatmap, params={"stack": "text_decoder", **params}), 422, *needles)
        assert body["field"] == field and "concept_ids" not in body["error"]
    batch = f"/runs/{run_id}/interventions"
    for params, field in [({"step": 5}, "step"), ({"language": "xxx"}, "language"), ({"input_task": "foo"}, "input_task")]:
        assert assert_error(client.get(batch, params=params), 422, field, run_id)["field"] == field
    assert assert_error(client.get(f"/runs/{run_id}/units/0/examples", params={"task": "foo"}), 422, "no task 'foo'")["field"] == "task"


@pytest.mark.parametrize("path, params", [
    ("/runs/{run}/examples", {}), ("/runs/{run}/concepts", {}), ("/findings", {}),
    ("/runs/{run}/layers/text_decoder/0/units", {"concept_id": 0}),
    ("/runs/{run}/concentration/units", {"stack": "text_decoder", "layer": 0, "task": "t2tt", "language": "fra"}),
])
def test_one_page_limit_message_at_any_size(client, atlas_store, path, params):
    """Every size above the configured page limit gets the same message and field, however large."""
    _, run_id = atlas_store
    for limit in (501, 1000, 100_000, 10**12):
        r = client.get(path.format(run=run_id), params={**params, "limit": limit})
        body = assert_error(r, 422, f"query parameter limit: {limit} is above the page limit of 500")
        assert body["field"] == "limit"
    assert client.get(path.format(run=run_id), params={**params, "limit": 500}).status_code == 200
    assert assert_error(client.get(path.format(run=run_id), params={**params, "limit": 0}), 422, "limit")["field"] == "limit"


def test_page_limit_follows_the_setting(atlas_store, tiny_bundle, tmp_path):
    store, run_id = atlas_store
    with client_for(make_settings(store, tmp_path, page_limit=3), tiny_bundle) as c:
        assert_error(c.get(f"/runs/{run_id}/examples", params={"limit": 4}), 422, "4 is above the page limit of 3")
        assert len(c.get(f"/runs/{run_id}/examples", params={"limit": 3}).json()["examples"]) == 3


def test_unknown_run_names_the_field_run_id(client, atlas_store):
    _, run_id = atlas_store
    for route in ("/interventions", "/jobs"):
        body = assert_error(client.post(route, json={**GOOD, "run_id": "nope"}), 404, "unknown run 'nope'", run_id)
        assert body["field"] == "run_id"
    body = assert_error(upload(client, wav_bytes(tone(), 16000), options={"tgt_lang": "eng", "run_id": "nope"}), 404, "unknown run 'nope'")
    assert body["field"] == "run_id"
    assert assert_error(client.get("/runs/nope/concepts"), 404, "unknown run 'nope'")["field"] == "run_id"
    assert assert_error(client.get("/export/units", params={"run_id": "nope"}), 404, "unknown run 'nope'")["field"] == "run_id"


def test_requests_refused_by_validation_spend_no_rate_limit_token(atlas_store, tiny_bundle, tmp_path):
    store, _ = atlas_store
    with client_for(make_settings(store, tmp_path, rate_burst=2, rate_per_s=0.001), tiny_bundle) as c:
        refused = [
            c.post("/interventions", content=b'{"text": "x",', headers={"Content-Type": "application/json"}),
            c.post("/interventions", json={"text": "x"}),
            c.post("/interventions", json={**GOOD, "run_id": "nope"}),
            c.post("/interventions", json={**GOOD, "tgt_lang": "xxx"}),
            c.post("/interventions", json={**GOOD, "spec": {"units": {"kind": "bogus"}}}),
            c.post("/jobs", json={**GOOD, "src_lang": "klingon"}),
            upload(c, b""),
        ] * 3
        assert all(r.status_code in (404, 422) for r in refused), [r.status_code for r in refused]
        ok = {**GOOD, "max_new_tokens": 2}
        assert [c.post("/interventions", json=ok).status_code for _ in range(2)] == [200, 200]
        assert_error(c.post("/interventions", json=ok), 429, "too many intervention requests")
        # an empty bucket is refused before any work, valid or not (the server is protected first)
        assert_error(c.post("/interventions", json={**GOOD, "tgt_lang": "xxx"}), 429, "too many intervention requests")


def test_unknown_concept_is_404_naming_the_runs_concepts(client, atlas_store):
    """The unit page checks a highlighted concept missing from the unit's statistics against the concept route: a
    concept that does not exist at all is a 404 naming the run's concept range."""
    _, run_id = atlas_store
    n = client.get(f"/runs/{run_id}/concepts", params={"limit": 1}).json()["total"]
    assert_error(client.get(f"/runs/{run_id}/concepts/99999"), 404, "unknown concept 99999", run_id, f"concepts 0..{n - 1}")
    stats = client.get(f"/runs/{run_id}/units/0").json()["stats"]
    assert all(0 <= s["concept_id"] < n for s in stats)
