"""The lab's multi-step actions through the API: per-token evidence, the dial's strength, k sweeps as one job with
progress and one rate-limit token, and what fires on an input (checked against the run's own activation arrays)."""
from __future__ import annotations

import time
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch

from neuron_atlas.engine.interventions import InterventionSpec, generate_with, prepare_inputs, resolve
from precompute.activation_store import load_acts
from tests.backend.api_support import assert_error, atlas_store, client_for, make_settings  # noqa: F401
from tests.backend.test_api_interventions import SPEC, TEXT  # the same input and intervention as the live routes



@pytest.fixture(scope="module")
def client(atlas_store, tiny_bundle, tmp_path_factory):
    store, _ = atlas_store
    with client_for(make_settings(store, tmp_path_factory.mktemp("lab-jobs")), tiny_bundle) as c:
        yield c


def control_concept(client, run_id: str, lang: str = "deu") -> dict:
    concepts = client.get(f"/runs/{run_id}/concepts", params={"kind": "language", "task": "en2x_t2tt", "step": 2}).json()["concepts"]
    return next(c for c in concepts if c["language"] == lang)


def poll(client, job_id: str, timeout: float = 120.0) -> list[dict]:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/jobs/{job_id}").json()
        seen.append(status)
        if status["state"] in ("done", "error"):
            return seen
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish: {seen[-1]}")


# ------------------------------------------------------------------------------------------- per-token evidence


def test_per_token_probabilities_and_prefix_languages_match_the_engine(client, tiny_bundle, tiny_registry):
    body = client.post("/interventions", json={"text": TEXT, "src_lang": "fra", "tgt_lang": "eng", "spec": SPEC,
                                               "max_new_tokens": 8, "probe_token": "▁the"}).json()
    enc = prepare_inputs(tiny_bundle, text=TEXT, src_lang="fra")
    resolved = resolve(InterventionSpec.parse(SPEC), tiny_registry, None)
    probe = tiny_bundle.tokenizer.convert_tokens_to_ids("▁the")
    for side, res in (("baseline", None), ("intervened", resolved)):
        out = generate_with(tiny_bundle, tiny_registry, res, enc, "eng", max_new_tokens=8)
        probs = torch.softmax(out.scores[0].float(), -1)
        ids = out.token_ids[0]
        got = body[side]
        assert got["token_probabilities"] == pytest.approx([float(probs[t, i]) for t, i in enumerate(ids)], abs=1e-5)
        assert got["probe_probabilities"] == pytest.approx([float(probs[t, probe]) for t in range(len(ids))], abs=1e-5)
        assert got["probe_token"] == "▁the"
        assert len(got["prefix_language_probabilities"]) == len(ids)
        if ids:
            assert got["prefix_language_probabilities"][-1] == pytest.approx(got["language_probabilities"], abs=1e-5)


def test_token_probabilities_come_with_the_models_own_speech_too(client):
    """The speech path returns no scores; a teacher-forced pass under the same intervention gives the same numbers."""
    req = {"text": TEXT, "src_lang": "fra", "tgt_lang": "eng", "spec": SPEC, "max_new_tokens": 6}
    text = client.post("/interventions", json=req).json()
    speech = client.post("/interventions", json={**req, "return_speech": True}).json()
    for side in ("baseline", "intervened"):
        assert speech[side]["token_ids"] == text[side]["token_ids"]
        assert speech[side]["token_probabilities"] == pytest.approx(text[side]["token_probabilities"], abs=1e-4)


def test_a_probe_of_several_tokens_is_refused_naming_them(client):
    r = client.post("/interventions", json={"text": TEXT, "src_lang": "fra", "tgt_lang": "eng", "probe_token": "hospitalisation"})
    assert_error(r, 422, "probe_token", "tokens of this model")


def test_strength_zero_through_the_api_is_the_baseline(client):
    r = client.post("/interventions", json={"text": TEXT, "src_lang": "fra", "tgt_lang": "eng", "max_new_tokens": 8,
                                            "spec": {**SPEC, "strength": 0.0}}).json()
    assert r["changed"] is False and r["intervened"]["token_ids"] == r["baseline"]["token_ids"]
    assert r["intervention"]["strength"] == 0.0 and r["spec"]["strength"] == 0.0
    full = client.post("/interventions", json={"text": TEXT, "src_lang": "fra", "tgt_lang": "eng", "max_new_tokens": 8, "spec": SPEC}).json()
    assert full["changed"] is True and "strength" not in full["spec"]


# ----------------------------------------------------------------------------------------------------- sweeps


def test_a_sweep_is_one_job_with_progress_and_its_points_match_single_runs(client, atlas_store):
    _, run_id = atlas_store
    concept = control_concept(client, run_id)
    spec = {"units": {"kind": "concept", "concept_id": concept["concept_id"], "set": "both", "k": 4, "stack": "text_decoder"},
            "value": {"kind": "on_p50"}}
    inputs = [{"text": "My mother works at the hospital.", "src_lang": "eng"}, {"text": "The train leaves at seven.", "src_lang": "eng"}]
    r = client.post("/jobs/sweep", json={"inputs": inputs, "tgt_lang": "fra", "spec": spec, "ks": [2, 4], "seeds": [0, 1],
                                         "run_id": run_id, "max_new_tokens": 5})
    assert r.status_code == 202, r.text
    seen = poll(client, r.json()["job_id"])
    final = seen[-1]
    assert final["state"] == "done" and final["kind"] == "sweep", final
    total = 2 * (1 + 2 * (1 + 2))
    assert final["progress"] == {"done": total, "total": total, "stage": final["progress"]["stage"]}
    assert all(s["progress"]["total"] == total for s in seen if s.get("progress"))
    res = final["result"]
    assert res["concept_lang"] == "deu" and res["set"] == "both" and res["n_inputs"] == 2
    assert [(p["k"], p["set"]) for p in res["points"]] == [(2, "both"), (2, "random"), (4, "both"), (4, "random")]
    assert all(p["n_units"] == 2 * p["k"] for p in res["points"])
    assert len(res["outputs"]) == total
    rand = res["points"][1]
    assert rand["n_seeds"] == 2 and rand["p_concept_std"] is not None
    # each point's mean is the mean of its generations, and a generation is what a single request gives
    both4 = [o for o in res["outputs"] if o["set"] == "both" and o["k"] == 4]
    assert res["points"][2]["p_tgt"] == pytest.approx(np.mean([o["p_tgt"] for o in both4]), abs=1e-6)
    single = client.post("/interventions", json={**inputs[0], "tgt_lang": "fra", "run_id": run_id, "max_new_tokens": 5,
                                                 "spec": {**spec, "units": {**spec["units"], "k": 4}}}).json()
    assert single["intervened"]["text"] == next(o["text"] for o in both4 if o["input"] == 0)
    seeded = client.post("/interventions", json={**inputs[1], "tgt_lang": "fra", "run_id": run_id, "max_new_tokens": 5,
                                                 "spec": {**spec, "units": {**spec["units"], "set": "random", "k": 4, "seed": 1}}}).json()
    assert seeded["intervened"]["text"] == next(o["text"] for o in res["outputs"]
                                                 if o["set"] == "random" and o["k"] == 2 and o["seed"] == 1 and o["input"] == 1)


def test_a_sweep_spends_one_rate_limit_token(atlas_store, tiny_bundle, tmp_path):
    store, run_id = atlas_store
    with client_for(make_settings(store, tmp_path, rate_burst=2, rate_per_s=0.001), tiny_bundle) as c:
        concept = control_concept(c, run_id)
        spec = {"units": {"kind": "concept", "concept_id": concept["concept_id"], "set": "top", "k": 2}, "value": {"kind": "on_p50"}}
        r = c.post("/jobs/sweep", json={"inputs": [{"text": "Good morning.", "src_lang": "eng"}], "tgt_lang": "fra", "spec": spec,
                                        "ks": [1, 2, 3, 4], "seeds": [0, 1, 2], "run_id": run_id, "max_new_tokens": 3})
        assert r.status_code == 202
        assert poll(c, r.json()["job_id"])[-1]["state"] == "done"
        assert c.post("/interventions", json={"text": TEXT, "src_lang": "fra", "tgt_lang": "eng", "max_new_tokens": 3}).status_code == 200
        assert_error(c.post("/interventions", json={"text": TEXT, "src_lang": "fra", "tgt_lang": "eng", "max_new_tokens": 3}), 429)


def test_bad_sweeps_are_refused_before_they_run(client, atlas_store):
    _, run_id = atlas_store
    concept = control_concept(client, run_id)
    spec = {"units": {"kind": "concept", "concept_id": concept["concept_id"], "set": "top", "k": 2}, "value": {"kind": "on_p50"}}
    ok_input = {"text": "Good morning.", "src_lang": "eng"}
    assert_error(client.post("/jobs/sweep", json={"inputs": [ok_input], "tgt_lang": "fra", "spec": SPEC, "ks": [1]}),
                 422, "spec.units.kind", "concept units")
    assert_error(client.post("/jobs/sweep", json={"inputs": [ok_input, {"text": "Hallo", "src_lang": "xxx"}], "tgt_lang": "fra",
                                                  "spec": spec, "ks": [1], "run_id": run_id}), 422, "inputs[1]", "src_lang")
    assert_error(client.post("/jobs/sweep", json={"inputs": [ok_input] * 8, "tgt_lang": "fra", "spec": spec,
                                                  "ks": [1, 2, 3, 4, 5, 6, 7, 8], "seeds": [0, 1, 2, 3, 4], "run_id": run_id}),
                 422, "generations", "limit")
    assert_error(client.post("/jobs/sweep", json={"inputs": [], "tgt_lang": "fra", "spec": spec, "ks": [1]}), 422, "inputs")
    assert_error(client.post("/jobs/sweep", json={"inputs": [ok_input], "tgt_lang": "fra", "spec": spec, "ks": [100000],
                                                  "run_id": run_id}), 422, "k = 100000")


# ------------------------------------------------------------------------------------------------ what fires


def test_what_fires_on_a_corpus_example_equals_its_recording(client, atlas_store):
    store, run_id = atlas_store
    con = duckdb.connect(str(store), read_only=True)
    try:
        work = Path(con.execute("SELECT work_dir FROM runs WHERE run_id = ?", [run_id]).fetchone()[0])
        example_id, item = con.execute("SELECT example_id, item FROM items WHERE run_id = ? AND task = 't2tt' AND src_lang = 'fra' "
                                       "ORDER BY item LIMIT 1", [run_id]).fetchone()
        starts = dict(con.execute("SELECT stack, min(unit_offset) FROM sites WHERE run_id = ? GROUP BY stack", [run_id]).fetchall())
    finally:
        con.close()
    r = client.post("/activations", json={"example_id": example_id, "tgt_lang": "eng", "run_id": run_id, "step": 2, "n": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["statistics_task"] == "t2tt" and body["note"] is None
    assert [s["stack"] for s in body["stacks"]] == ["text_encoder", "text_decoder"]
    for stack in body["stacks"]:
        name = "text_decoder.step2" if stack["stack"] == "text_decoder" else stack["stack"]
        arr = np.asarray(load_acts(work, "t2tt", name))
        assert stack["statistics"] and stack["layers"]
        for layer in stack["layers"]:
            units = layer["units"]
            assert 1 <= len(units) <= 3 and all(u["layer"] == layer["layer"] for u in units)
            zs = [abs(u["z"]) for u in units]
            assert zs == sorted(zs, reverse=True)
            for u in units:
                row = arr[u["unit_id"] - starts[stack["stack"]]]
                assert u["activation"] == pytest.approx(float(row[item]), rel=1e-3, abs=1e-4)
                assert u["corpus_mean"] == pytest.approx(float(row.mean()), rel=1e-4, abs=1e-5)
                assert u["z"] == pytest.approx((u["activation"] - row.mean()) / row.std(), rel=1e-2, abs=1e-3)


def test_what_fires_ranks_by_activation_on_typed_text_and_refuses_bad_input(client, atlas_store):
    _, run_id = atlas_store
    body = client.post("/activations", json={"text": "My mother works at the hospital.", "src_lang": "eng", "tgt_lang": "fra",
                                             "run_id": run_id, "rank_by": "activation", "n": 2}).json()
    assert body["statistics_task"] == "en2x_t2tt" and body["step"] == 2
    for stack in body["stacks"]:
        for layer in stack["layers"]:
            acts = [u["activation"] for u in layer["units"]]
            assert acts == sorted(acts, reverse=True) and len(acts) <= 2
    assert_error(client.post("/activations", json={"text": "Hi", "src_lang": "eng", "tgt_lang": "fra", "run_id": run_id, "step": 3}),
                 422, "step", "2, 7")
    assert_error(client.post("/activations", json={"tgt_lang": "fra", "run_id": run_id}), 422, "input")
    assert_error(client.post("/activations", json={"text": "Hi", "src_lang": "eng", "tgt_lang": "fra", "n": 0}), 422, "n")
