"""Live interventions, jobs, cache, queue and rate limits through the test client, checked against the engine itself."""
from __future__ import annotations

import base64
import dataclasses
import difflib
import io
import json
import threading
import time

import duckdb
import numpy as np
import pytest
import soundfile as sf

from backend.api import live
from neuron_atlas.engine.interventions import InMemoryStats, InterventionSpec, generate_with, prepare_inputs, resolve
from backend.queue import JobFailed, QueueFull, ResultCache, TokenBuckets, WorkQueue
from neuron_atlas.engine.versions import STORE_VERSION
from neuron_atlas.engine.metrics import LangIdIdentifier
from tests.backend.api_support import assert_error, atlas_store, client_for, make_settings, tone, wav_bytes  # noqa: F401

TEXT = "Le train part à sept heures."
SPEC = {"units": {"kind": "explicit", "units": [{"module": "text_decoder.layers.1.ffn.fc2", "channel": c} for c in range(8)]},
        "value": {"kind": "constant", "value": 25.0}}


@pytest.fixture(scope="module")
def client(atlas_store, tiny_bundle, tmp_path_factory):
    store, _ = atlas_store
    with client_for(make_settings(store, tmp_path_factory.mktemp("live")), tiny_bundle) as c:
        yield c


def reference(bundle, registry, spec, tgt="eng", max_new=128, **inputs):
    """Baseline and intervened token ids straight from the engine."""
    enc = prepare_inputs(bundle, **inputs)
    resolved = resolve(InterventionSpec.parse(spec), registry, None) if spec else None
    base = generate_with(bundle, registry, None, enc, tgt, max_new_tokens=max_new)
    inter = generate_with(bundle, registry, resolved, enc, tgt, max_new_tokens=max_new)
    return base.token_ids[0], inter.token_ids[0], base.text, inter.text


def test_text_intervention_matches_the_engine(client, tiny_bundle, tiny_registry):
    r = client.post("/interventions", json={"text": TEXT, "src_lang": "fra", "tgt_lang": "eng", "spec": SPEC})
    assert r.status_code == 200, r.text
    body = r.json()
    base_ids, inter_ids, base_text, inter_text = reference(tiny_bundle, tiny_registry, SPEC, text=TEXT, src_lang="fra")
    assert body["baseline"]["token_ids"] == base_ids and body["intervened"]["token_ids"] == inter_ids
    assert body["baseline"]["text"] == base_text and body["intervened"]["text"] == inter_text
    assert body["changed"] == (base_ids != inter_ids) and body["changed"]
    assert body["baseline"]["tokens"] == tiny_bundle.tokenizer.convert_ids_to_tokens(base_ids)
    ops = difflib.SequenceMatcher(None, base_ids, inter_ids, autojunk=False).get_opcodes()
    assert [(d["op"], d["baseline_start"], d["baseline_end"], d["intervened_start"], d["intervened_end"]) for d in body["diff"]] == ops
    first = next(i for i, (a, b) in enumerate(zip(base_ids + [None], inter_ids + [None])) if a != b)
    assert body["first_difference"] == first
    ident = LangIdIdentifier(list(tiny_bundle.languages))
    want = ident.probabilities([base_text, inter_text])
    for side, p in zip(("baseline", "intervened"), want):
        assert body[side]["language_probabilities"] == pytest.approx(p)
        assert body[side]["language_probability_outside"] == pytest.approx(1 - sum(p.values()), abs=1e-6)
        top = max(p, key=p.get)
        assert body[side]["top_language"] == (top if p[top] >= body[side]["language_probability_outside"] else None)
    assert body["intervention"]["n_units"] == 8 and body["intervention"]["by_component"] == {"ffn": 8}
    assert body["spec"] == json.loads(InterventionSpec.parse(SPEC).canonical_json())
    assert body["cached"] is False and body["baseline"]["audio"] is None
    assert body["model"]["checksum"] == tiny_bundle.checksum and body["engine_version"] and body["store_version"] == STORE_VERSION


def test_mass_outside_the_model_languages_and_top_language():
    """Italian or gibberish keeps its identifier mass outside the model's languages: no top language is claimed."""
    from backend.api.live import language_mass_outside

    assert language_mass_outside({"eng": 0.9, "fra": 0.05}) == pytest.approx(0.05)
    assert language_mass_outside({"eng": 0.0, "fra": 0.0}) is None
    ident = LangIdIdentifier(["eng", "fra", "spa", "deu"])
    italian = ident.probabilities(["Questo è un libro molto bello e lo leggo ogni sera."])[0]
    assert language_mass_outside(italian) > max(italian.values())


def test_repeat_is_answered_from_the_cache(client):
    req = {"text": "Der Zug fährt um sieben ab.", "src_lang": "deu", "tgt_lang": "fra", "spec": SPEC, "max_new_tokens": 12}
    first = client.post("/interventions", json=req).json()
    t0 = time.perf_counter()
    second = client.post("/interventions", json=req).json()
    assert second["cached"] is True and second["key"] == first["key"]
    assert time.perf_counter() - t0 < 0.5
    assert {k: v for k, v in second.items() if k != "cached"} == {k: v for k, v in first.items() if k != "cached"}
    reordered = {"spec": {"value": SPEC["value"], "units": SPEC["units"], "scope": {"decode_steps": "all"}}, **req}
    reordered["spec"] = {"value": SPEC["value"], "units": SPEC["units"], "scope": {"decode_steps": "all"}}
    assert client.post("/interventions", json=reordered).json()["key"] == first["key"], "the key hashes the canonical spec"
    assert client.post("/interventions", json={**req, "max_new_tokens": 11}).json()["key"] != first["key"]
    assert client.post("/interventions", json={**req, "tgt_lang": "deu"}).json()["key"] != first["key"]


def test_concept_spec_uses_the_runs_stored_selection(client, atlas_store, tiny_bundle, tiny_registry):
    store, run_id = atlas_store
    con = duckdb.connect(str(store), read_only=True)
    cid = int(con.execute("SELECT concept_id FROM concepts WHERE kind='language' AND task='en2x_s2tt' AND language='fra' AND step=2").fetchone()[0])
    top = con.execute("SELECT unit_id FROM selections WHERE concept_id=? AND kind='top' AND scope='text_decoder' AND k_requested=10",
                      [cid]).df()["unit_id"].to_numpy()
    vals = con.execute("SELECT unit_id, ap, on_p50 FROM unit_stats WHERE concept_id=?", [cid]).df().set_index("unit_id")
    ex = "builtin:s001:eng:eng-m1"
    text = con.execute("SELECT text FROM examples WHERE example_id=?", [ex]).fetchone()[0]
    con.close()
    spec = {"units": {"kind": "concept", "concept_id": cid, "set": "top", "k": 10, "stack": "text_decoder"}}
    body = client.post("/interventions", json={"example_id": ex, "modality": "text", "tgt_lang": "fra", "spec": spec, "run_id": "latest"}).json()
    assert body["run_id"] == run_id and body["intervention"]["n_units"] == 10
    ap = np.full(tiny_registry.n_units, np.nan)
    ap[vals.index.to_numpy()] = vals["ap"].to_numpy()
    on_p50 = np.full(tiny_registry.n_units, np.nan, dtype=np.float32)
    on_p50[vals.index.to_numpy()] = vals["on_p50"].to_numpy()
    resolved = resolve(spec, tiny_registry, InMemoryStats(tiny_registry, {cid: ap}, {cid: {"on_p50": on_p50}}))
    assert np.array_equal(resolved.unit_ids, np.sort(top))
    enc = prepare_inputs(tiny_bundle, text=text, src_lang="eng")
    ref = generate_with(tiny_bundle, tiny_registry, resolved, enc, "fra")
    base = generate_with(tiny_bundle, tiny_registry, None, enc, "fra")
    assert body["intervened"]["token_ids"] == ref.token_ids[0] and body["baseline"]["token_ids"] == base.token_ids[0]
    assert body["input"] == {"kind": "example", "run_id": run_id, "example_id": ex, "modality": "text", "lang": "eng", "text": text}


def test_example_speech_input_and_uploads_in_every_format(client, atlas_store, tiny_bundle, tiny_registry):
    store, run_id = atlas_store
    ex = "builtin:s002:deu:deu-m1"
    body = client.post("/interventions", json={"example_id": ex, "modality": "speech", "tgt_lang": "eng", "spec": SPEC}).json()
    con = duckdb.connect(str(store), read_only=True)
    flac = con.execute("SELECT flac FROM example_audio WHERE example_id=?", [ex]).fetchone()[0]
    con.close()
    wave, _ = sf.read(io.BytesIO(flac), dtype="float32")
    base_ids, inter_ids, _, _ = reference(tiny_bundle, tiny_registry, SPEC, audio=wave)
    assert body["baseline"]["token_ids"] == base_ids and body["intervened"]["token_ids"] == inter_ids
    stereo = tone(1.5, 44100, channels=2)
    for fmt, subtype, mime in [("WAV", "PCM_16", "audio/wav"), ("FLAC", "PCM_16", "audio/flac"), ("OGG", "VORBIS", "audio/ogg"),
                               ("MP3", "MPEG_LAYER_III", "audio/mpeg")]:
        data = wav_bytes(stereo, 44100, fmt, subtype)
        r = client.post("/interventions/upload", files={"file": (f"clip.{fmt.lower()}", data, mime)},
                        data={"options": json.dumps({"tgt_lang": "eng", "spec": SPEC, "max_new_tokens": 8})})
        assert r.status_code == 200, (fmt, r.text)
        got = r.json()
        assert got["input"]["kind"] == "audio" and got["input"]["duration_s"] == pytest.approx(1.5, abs=0.06)
        assert len(got["baseline"]["token_ids"]) <= 8
    from neuron_atlas.engine.audio import decode_audio

    wav = wav_bytes(stereo, 44100)
    r = client.post("/interventions/upload", files={"file": ("clip.wav", wav, "audio/wav")},
                    data={"options": json.dumps({"tgt_lang": "eng", "spec": SPEC})}).json()
    base_ids, inter_ids, _, _ = reference(tiny_bundle, tiny_registry, SPEC, audio=decode_audio(wav))
    assert r["baseline"]["token_ids"] == base_ids and r["intervened"]["token_ids"] == inter_ids


def test_speech_output_from_the_model_or_labelled_tts(atlas_store, tiny_bundle, tmp_path):
    store, _ = atlas_store
    req = {"text": TEXT, "src_lang": "fra", "tgt_lang": "eng", "spec": SPEC, "return_speech": True}
    with client_for(make_settings(store, tmp_path), tiny_bundle) as c:
        body = c.post("/interventions", json=req).json()
    for side in ("baseline", "intervened"):
        audio = body[side]["audio"]
        assert audio["audio_source"] in ("model", "tts")
        if audio["audio_source"] == "tts":
            assert "speech output failed" in audio["note"]
        if audio["wav_base64"]:
            wave, rate = sf.read(io.BytesIO(base64.b64decode(audio["wav_base64"])))
            assert rate == audio["sample_rate"] and len(wave) / rate == pytest.approx(audio["duration_s"], abs=1e-3)
    config = tiny_bundle.model.config
    config.speech_decoder_trained = False
    try:
        with client_for(make_settings(store, tmp_path / "tts"), tiny_bundle) as c:
            assert c.get("/capabilities").json()["speech_output"] == "tts"
            body = c.post("/interventions", json={**req, "text": "Hello there, good morning.", "src_lang": "eng"}).json()
    finally:
        del config.speech_decoder_trained
    for side in ("baseline", "intervened"):
        audio = body[side]["audio"]
        assert audio["audio_source"] == "tts"
        if audio["wav_base64"] is None:
            assert "no words" in audio["error"] or "no voice" in audio["error"]
        else:
            wave, rate = sf.read(io.BytesIO(base64.b64decode(audio["wav_base64"])))
            assert rate == 16000 and len(wave) > 1600 and np.abs(wave).max() > 0.1


def test_jobs_lifecycle_and_cache(client):
    req = {"text": "Der Zug fährt um sieben ab.", "src_lang": "deu", "tgt_lang": "eng", "spec": SPEC, "max_new_tokens": 9}
    r = client.post("/jobs", json=req)
    assert r.status_code == 202 and r.headers["location"] == f"/jobs/{r.json()['job_id']}"
    job_id = r.json()["job_id"]
    deadline = time.monotonic() + 30
    while (status := client.get(f"/jobs/{job_id}").json())["state"] not in ("done", "error") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert status["state"] == "done" and status["queue_position"] is None and status["started_at"] >= status["created_at"]
    sync = client.post("/interventions", json=req).json()
    assert sync["cached"] is True and sync["intervened"] == status["result"]["intervened"]
    again = client.post("/jobs", json=req).json()
    assert again["cached"] is True and again["state"] == "done"
    failing = client.post("/jobs", json={**req, "spec": {"units": {"kind": "concept", "concept_id": 999999, "set": "top", "k": 3}}})
    assert_error(failing, 422, "spec.units.concept_id", "unknown concept 999999")


def test_job_reports_loading_model_while_the_model_loads(atlas_store, tiny_bundle, tmp_path, monkeypatch):
    store, _ = atlas_store
    gate = threading.Event()

    def slow_load(spec, device="auto", seed=0):
        gate.wait(30)
        return tiny_bundle

    monkeypatch.setattr(live, "load_model", slow_load)
    from fastapi.testclient import TestClient

    from backend.api.app import create_app

    app = create_app(make_settings(store, tmp_path))
    with TestClient(app) as c:
        assert c.get("/readyz").status_code == 503 and c.get("/readyz").json()["model"]["state"] == "loading"
        assert_error(c.post("/interventions", json={"text": TEXT, "src_lang": "fra", "tgt_lang": "eng"}), 503, "still loading")
        r = c.post("/jobs", json={"text": TEXT, "src_lang": "fra", "tgt_lang": "eng", "spec": SPEC})
        assert r.status_code == 202 and r.json()["state"] == "loading model"
        job_id = r.json()["job_id"]
        assert c.get(f"/jobs/{job_id}").json()["state"] == "loading model"
        gate.set()
        deadline = time.monotonic() + 30
        while c.get(f"/jobs/{job_id}").json()["state"] != "done" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert c.get(f"/jobs/{job_id}").json()["result"]["intervened"]["token_ids"]
        assert c.get("/readyz").status_code == 200


def test_rate_limit_answers_429_with_retry_after(atlas_store, tiny_bundle, tmp_path):
    store, _ = atlas_store
    with client_for(make_settings(store, tmp_path, rate_burst=2, rate_per_s=0.01), tiny_bundle) as c:
        req = {"text": TEXT, "src_lang": "fra", "tgt_lang": "eng", "max_new_tokens": 4}
        assert [c.post("/interventions", json=req).status_code for _ in range(2)] == [200, 200]
        r = c.post("/interventions", json=req)
        assert_error(r, 429, "too many intervention requests")
        assert int(r.headers["retry-after"]) >= 1
        assert c.get("/runs").status_code == 200, "reads are not rate limited"


def test_rate_limit_counts_forwarded_clients_only_behind_a_trusted_proxy(atlas_store, tiny_bundle, tmp_path):
    """The dashboard's server (a trusted peer) forwards each browser's address: two browsers get their own buckets;
    an untrusted peer cannot pick a bucket by sending X-Forwarded-For."""
    from fastapi.testclient import TestClient

    from backend.api.app import create_app

    store, _ = atlas_store
    req = {"text": TEXT, "src_lang": "fra", "tgt_lang": "eng", "max_new_tokens": 4}

    def codes(c, forwarded: str, n: int) -> list[int]:
        return [c.post("/interventions", json=req, headers={"X-Forwarded-For": forwarded}).status_code for _ in range(n)]

    settings = make_settings(store, tmp_path, rate_burst=1, rate_per_s=0.01, trusted_proxies="127.0.0.1/32")
    with TestClient(create_app(settings, bundle=tiny_bundle), client=("127.0.0.1", 40000)) as app_server:
        assert codes(app_server, "10.0.0.1", 2) == [200, 429]
        assert codes(app_server, "10.0.0.2", 1) == [200], "another browser has its own bucket"
        assert codes(app_server, "6.6.6.6, 10.0.0.1", 1) == [429], "a forged hop left of the browser is ignored"
    with TestClient(create_app(settings, bundle=tiny_bundle), client=("192.0.2.7", 40000)) as stranger:
        assert codes(stranger, "10.0.0.3", 1) == [200]
        assert codes(stranger, "10.0.0.4", 1) == [429], "an untrusted peer is counted by its own address"
    with pytest.raises(ValueError, match="not an IP address"):
        make_settings(store, tmp_path, trusted_proxies="localhost")


def test_full_queue_and_timeouts(atlas_store, tiny_bundle, tmp_path, monkeypatch):
    """With the worker blocked, a queue of 1 answers 503 + Retry-After and a waiting request times out with 504."""
    store, _ = atlas_store
    gate = threading.Event()
    real = live.InterventionService.execute

    def blocked(self, prepared, job=None):
        gate.wait(30)
        return real(self, prepared, job)

    monkeypatch.setattr(live.InterventionService, "execute", blocked)
    with client_for(make_settings(store, tmp_path, queue_size=1, request_timeout_s=0.5), tiny_bundle) as c:
        first = c.post("/jobs", json={"text": TEXT, "src_lang": "fra", "tgt_lang": "eng"})
        assert first.status_code == 202
        deadline = time.monotonic() + 10
        while c.get(f"/jobs/{first.json()['job_id']}").json()["state"] == "queued" and time.monotonic() < deadline:
            time.sleep(0.01)
        status = c.get(f"/jobs/{first.json()['job_id']}").json()
        assert status["state"] == "running" and status["queue_position"] == 0 and status["result"] is None
        full = c.post("/interventions", json={"text": "Bonjour.", "src_lang": "fra", "tgt_lang": "eng"})
        assert_error(full, 503, "queue is full")
        assert int(full.headers["retry-after"]) >= 1
        assert_error(c.post("/jobs", json={"text": "Salut.", "src_lang": "fra", "tgt_lang": "eng"}), 503, "queue is full")
        gate.set()
        deadline = time.monotonic() + 30
        while c.get(f"/jobs/{first.json()['job_id']}").json()["state"] != "done" and time.monotonic() < deadline:
            time.sleep(0.02)
        gate.clear()
        slow = c.post("/interventions", json={"text": "Merci.", "src_lang": "fra", "tgt_lang": "eng"})
        assert_error(slow, 504, "still running", "/jobs/")
        gate.set()


def test_run_of_another_model_is_refused_for_concept_specs(atlas_store, tiny_bundle, tmp_path):
    store, _ = atlas_store
    other = dataclasses.replace(tiny_bundle, checksum="0000111122223333")
    with client_for(make_settings(store, tmp_path), other) as c:
        spec = {"units": {"kind": "concept", "concept_id": 0, "set": "top", "k": 3}}
        r = c.post("/interventions", json={"text": TEXT, "src_lang": "fra", "tgt_lang": "eng", "spec": spec, "run_id": "latest"})
        assert_error(r, 409, "0000111122223333", tiny_bundle.checksum)
        ok = c.post("/interventions", json={"text": TEXT, "src_lang": "fra", "tgt_lang": "eng", "spec": SPEC})
        assert ok.status_code == 200


def test_work_queue_cache_and_buckets_units():
    ready = threading.Event()
    q = WorkQueue(2, ready=ready)
    a = q.submit("a", lambda job: "A")
    assert a.state == "loading model"
    assert q.submit("a", lambda job: "other") is a, "identical requests in flight share one job"
    def teapot(job):
        raise JobFailed(418, "teapot")

    b = q.submit("b", teapot)
    with pytest.raises(QueueFull) as info:
        q.submit("c", lambda job: "C")
    assert info.value.retry_after >= 1 and "full" in str(info.value)
    ready.set()
    assert a.wait(5) and a.result == "A" and a.state == "done"
    assert b.wait(5) and b.state == "error" and b.error.status == 418
    assert q.submit("c", lambda job: "C").wait(5)
    q.shutdown()
    cache = ResultCache(max_entries=2, max_bytes=100)
    cache.put("x", 1, 40)
    cache.put("y", 2, 40)
    cache.get("x")
    cache.put("z", 3, 40)
    assert cache.get("y") is None and cache.get("x") == 1 and cache.nbytes == 80
    cache.put("big", 4, 101)
    assert cache.get("big") is None
    buckets = TokenBuckets(capacity=2, rate=1.0)
    assert [buckets.take("c", now=0.0)[0] for _ in range(3)] == [True, True, False]
    assert buckets.take("c", now=0.0)[1] == 1 and buckets.take("c", now=1.01)[0] and buckets.take("other", now=0.0)[0]


@pytest.mark.parametrize("input_task, modality", [("en2x_t2tt", "text"), ("en2x_s2tt", "speech")])
def test_live_request_replays_a_stored_batch_condition(client, atlas_store, input_task, modality):
    """The same InterventionSpec gives the same output in the batch experiments and through the live endpoint."""
    store, run_id = atlas_store
    con = duckdb.connect(str(store), read_only=True)
    exp, spec = con.execute(
        "SELECT experiment_id, spec FROM interventions WHERE experiment='steering' AND input_task=? AND set_kind='both' "
        "ORDER BY experiment_id LIMIT 1", [input_task]).fetchone()
    rows = con.execute(
        "SELECT o.tgt_lang, o.output_text, i.example_id FROM intervention_outputs o JOIN items i "
        "ON i.run_id = o.run_id AND i.task = ? AND i.item = o.item WHERE o.experiment_id = ? ORDER BY o.item", [input_task, exp]).fetchall()
    con.close()
    assert rows
    for tgt, stored, example_id in rows:
        body = client.post("/interventions", json={"example_id": example_id, "modality": modality, "tgt_lang": tgt,
                                                   "spec": json.loads(spec), "run_id": run_id, "max_new_tokens": 8}).json()
        assert body["intervened"]["text"] == stored
