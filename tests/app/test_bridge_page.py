"""The bridge page in-process against the real backend on the tiny store: defaults and bad URL values, the request a
state makes, clicks on the figure, and findings (freeze, render without a backend call, verify)."""
from __future__ import annotations

import pytest

from app import state as st, views
from app.client import AtlasClient
from app.components import bridge_figures as bf
from app.main import create_app
from app.pages import bridge
from tests.app.test_app_backend import forwarding
from tests.backend.api_support import atlas_store, client_for, make_settings, stored_flac  # noqa: F401


@pytest.fixture(scope="module")
def env(atlas_store, tiny_bundle, tmp_path_factory):  # noqa: F811
    store, run_id = atlas_store
    with client_for(make_settings(store, tmp_path_factory.mktemp("bridge-app")), bundle=tiny_bundle) as tc:
        client = AtlasClient("http://testserver", transport=forwarding(tc))
        yield create_app("http://testserver", client=client), client, run_id


def page_state(tree) -> dict:
    return next(c for c in tree.children if getattr(c, "id", None) == "bridge-state").data


def test_layout_fills_example_and_target_and_draws(env):
    dash_app, _, run_id = env
    with dash_app.server.app_context():
        tree = bridge.layout(run=run_id, max_new="5", layers="1", tok="0")
    s = page_state(tree)
    text = str(tree)
    assert s["ex"] and s["tgt"] == s["ex"].split(":")[2] and list(s["layers"]) == [1]
    assert "notice-warning" not in text and "notice-error" not in text
    assert "length-adaptor frame" in text and "bridge-player" in text and "#t=" in text


@pytest.mark.parametrize("query, needle", [
    ({"ex": "nope:nothing"}, "is not a speech example of run"),
    ({"tgt": "xxx"}, "target 'xxx' is not a language of run"),
])
def test_bad_url_values_are_replaced_and_said(env, query, needle):
    dash_app, _, run_id = env
    with dash_app.server.app_context():
        text = str(bridge.layout(run=run_id, max_new="4", **query))
    assert "notice-warning" in text and needle in text and "bridge-figure" in text


def test_backend_refusals_are_shown_with_the_controls(env):
    dash_app, _, run_id = env
    with dash_app.server.app_context():
        text = str(bridge.layout(run=run_id, max_new="4", layers="7"))
    assert "notice-error" in text and "layers: 7 is out of range" in text and "bridge-layers" in text


def test_request_body_and_clicks():
    s, _ = st.parse("bridge", {"run": "r", "ex": "e", "tgt": "eng", "layers": "0,2", "t0": "0.1", "t1": "0.4"})
    assert bridge.request_body(s) == {"run_id": "r", "example_id": "e", "tgt_lang": "eng", "max_new_tokens": 32,
                                      "layers": [0, 2], "heads": None, "unit_id": None, "span_s": [0.1, 0.4]}
    assert bridge.request_body({**s, "t1": None})["span_s"] is None
    cols = {"centres_s": [0.0075, 0.1675, 0.3275], "starts_s": [0.0, 0.0, 0.08], "ends_s": [0.115, 0.275, 0.435]}
    assert bridge.clicked_state(s, {"points": [{"x": 0.2, "y": "2 · ▁train"}]}, cols)["tok"] == 2
    span = bridge.clicked_state(s, {"points": [{"x": 0.3, "y": 4000.0}]}, cols)
    assert (span["t0"], span["t1"]) == (0.08, 0.435)
    assert bridge.clicked_state(s, None, cols) is None


def test_finding_freezes_renders_and_verifies(env):
    dash_app, client, run_id = env
    s, _ = st.parse("bridge", {"run": run_id, "max_new": "4", "t0": "0", "t1": "0.3"})
    frozen = views.snapshot(client, "bridge", s)
    (call,), (answer,) = frozen["calls"], frozen["responses"]
    assert call["path"] == "/bridge" and call["body"]["example_id"] and "cached" not in answer
    assert views.verify(client, frozen) == []
    changed = {**frozen, "responses": [{**answer, "text": answer["text"] + "!"}]}
    assert [d for d in views.verify(client, changed) if d.startswith("bridge.text:")]
    with dash_app.server.app_context():
        drawn = str(views.render("bridge", s, frozen, None))
    assert "finding-fig-0" in drawn and "Tokens that read" in drawn
    fig = bf.bridge_figure(answer)
    assert [t.name for t in fig.data] == ["attention", "peak"]
    assert "bridge" in views.describe_state("bridge", s)
    assert "post('/bridge'" in views.python_script("http://x", {"state": {"frozen": frozen}})


def test_an_upload_by_audio_id_draws_the_band_plays_from_the_upload_and_is_not_frozen(env, atlas_store):  # noqa: F811
    dash_app, client, run_id = env
    store, _ = atlas_store
    flac = stored_flac(store, run_id)
    sent = client.upload_audio(flac, "mine.flac", "audio/flac")
    with dash_app.server.app_context():
        waiting = str(bridge.layout(run=run_id, **{"in": "upload"}))
        tree = bridge.layout(run=run_id, max_new="5", tok="0", aid=sent["audio_id"], **{"in": "upload"})
        gone = str(bridge.layout(run=run_id, aid="0" * 32, **{"in": "mic"}))
    assert "bridge-hint" in waiting and "Choose an audio file" in waiting and "bridge-upload" in waiting
    text = str(tree)
    assert "notice-error" not in text and "length-adaptor frame" in text
    assert f"/media/upload/{sent['audio_id']}#t=" in text and "bridge-input-player" in text and "mine.flac" in text
    assert "notice-error" in gone and "POST /audio" in gone and "record it again" in gone
    assert bridge.request_body(page_state(tree))["audio_id"] == sent["audio_id"]
    with dash_app.server.test_client() as browser:
        played = browser.get(f"/media/upload/{sent['audio_id']}")
        assert played.status_code == 200 and played.mimetype == "audio/wav" and played.data[:4] == b"RIFF"
    with pytest.raises(views.ViewError, match="not stored with findings"):
        views.snapshot(client, "bridge", page_state(tree))
