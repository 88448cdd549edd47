"""The lab's attribution view in-process against the real backend: its request from the URL state, the call a
finding stores (replayed identically), its drawing, its Python, and the basket entries it makes."""
from __future__ import annotations

import pytest

from app import state as st, views
from app.components import attribution as at
from app.components.common import Provenance
from app.lab_logic import LabInputError
from tests.app.test_app_backend import env  # noqa: F401  (a fixture)
from tests.backend.api_support import atlas_store, stored_flac  # noqa: F401  (a fixture)

QUERY = {"in": "text", "text": "Le train part à sept heures.", "src": "fra", "tgt": "eng", "us": "concept",
         "role": "representation", "umod": "text", "ulang": "deu", "step": "2", "set": "top", "k": "5",
         "value": "on_p50", "max_new": "8", "at_tok": "1", "at_side": "intervened", "at_ref": "off_mean", "at_n": "4"}


def lab_state(run_id: str, **over: str) -> dict:
    s, problems = st.parse("lab", {**QUERY, "run": run_id, **over})
    assert not problems
    return s


def test_the_url_state_makes_the_attribution_call(env):  # noqa: F811
    _, client, run_id = env
    s = lab_state(run_id)
    assert "at_tok=1" in st.href("lab", s) and "at_side=intervened" in st.href("lab", s)
    calls = views.view_calls(client, "lab", s)
    assert [c["path"] for c in calls] == ["/interventions", "/attribution"]
    body = calls[1]["body"]
    assert body["side"] == "intervened" and body["token_index"] == 1 and body["verify"] == 4
    assert body["reference"] == {"kind": "off_mean"} and isinstance(body["reference_concept_id"], int)
    assert body["spec"] == calls[0]["body"]["spec"] and "return_speech" not in body
    assert views.view_calls(client, "lab", lab_state(run_id, at_tok=""))[1:] == []
    versus = views.view_calls(client, "lab", lab_state(run_id, at_vs="1"))[1]["body"]["versus_token_id"]
    base = client.intervene(calls[0]["body"])
    assert versus == base["baseline"]["token_ids"][1]


def test_a_finding_of_it_replays_draws_and_prints(env):  # noqa: F811
    dash_app, client, run_id = env
    s = lab_state(run_id)
    frozen = views.snapshot(client, "lab", s)
    stored = frozen["responses"][1]
    assert "timing_s" not in stored and "cached" not in stored and len(stored["verification"]["units"]) == 4
    assert views.verify(client, frozen) == []
    changed = {**stored, "top": [{**stored["top"][0], "estimate": stored["top"][0]["estimate"] + 1.0}, *stored["top"][1:]]}
    assert views.compare([frozen["responses"][0], changed], frozen["responses"], ["intervention", "attribution"])
    with dash_app.server.app_context():
        drawn = str(views.render("lab", s, frozen, Provenance(run_id)))
    assert "Token attribution" in drawn and "lab-at-top" in drawn and "finding-fig-1" in drawn
    script = views.python_script("http://127.0.0.1:8000", {"id": "x", "state": {"frozen": frozen}})
    assert "post('/attribution'" in script and "estimate vs actual" in script
    assert "attribution of intervened token 1 (reference off_mean)" in views.describe_state("lab", s)


def test_bad_states_are_named_and_verified_units_fill_the_basket(env):  # noqa: F811
    _, client, run_id = env
    with pytest.raises(LabInputError, match="reads a concept's statistics"):
        at.attribution_request(lab_state(run_id), {"units": {}}, None)
    with pytest.raises(LabInputError, match="needs units"):
        at.attribution_request({**lab_state(run_id), "in": "text"}, None, {"concept_id": 1})
    with pytest.raises(LabInputError, match="none at index 5"):
        at.versus_token({"baseline": {"token_ids": [1, 2]}}, lab_state(run_id, at_tok="5"))
    result = client.attribute(views.view_calls(client, "lab", lab_state(run_id))[1]["body"])
    units = at.verified_units(result)
    assert len(units) == 4 and all(u["run"] == run_id and u["site"] for u in units)
    basket = at.add_to_basket([{"unit_id": units[0]["unit_id"], "run": run_id}, {"unit_id": 1, "run": "other"}], units)
    assert [b["unit_id"] for b in basket] == [u["unit_id"] for u in units]


def test_attribution_and_the_sweep_take_an_uploads_audio_id(env, atlas_store):  # noqa: F811
    from app.pages import lab, lab_attribution

    dash_app, client, run_id = env
    store, _ = atlas_store
    flac = stored_flac(store, run_id)
    sent = client.upload_audio(flac, "mine.flac", "audio/flac")
    s = lab_state(run_id, **{"in": "upload"}, at_side="baseline", at_ref="zero", at_tok="0")
    with dash_app.server.app_context():
        got = lab_attribution.run_attribution(s, sent["audio_id"])
        assert lab.sweep_inputs_of(s, sent["audio_id"]) == [{"audio_id": sent["audio_id"]}]
    assert got["input"]["kind"] == "audio" and got["input"]["sha256"] == sent["sha256"] and got["token"]["index"] == 0
    with pytest.raises(views.ViewError, match="not stored with findings"):
        views.view_calls(client, "lab", s)
