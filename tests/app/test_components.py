"""Components and helpers: diff rendering, WAV reading, audio player labels, error routing, finding comparison
and the exported Python script."""
from __future__ import annotations

import ast
import io

import numpy as np
import pytest
import soundfile as sf

from app import ui, views
from app.client import BackendError
from app.components.audio import AudioDataError, audio_player, read_wav
from app.components.diff import diff_segments, diff_view, token_text

DIFF = [
    {"op": "equal", "baseline_tokens": ["▁Der", "▁Zug"], "intervened_tokens": ["▁Der", "▁Zug"]},
    {"op": "replace", "baseline_tokens": ["▁fährt"], "intervened_tokens": ["▁part", "ira"]},
    {"op": "delete", "baseline_tokens": ["▁ab"], "intervened_tokens": []},
    {"op": "insert", "baseline_tokens": [], "intervened_tokens": ["."]},
]


def test_diff_segments_mark_each_side():
    assert diff_segments(DIFF, "baseline") == [(" Der Zug", "equal"), (" fährt", "changed"), (" ab", "removed")]
    assert diff_segments(DIFF, "intervened") == [(" Der Zug", "equal"), (" partira", "changed"), (".", "added")]
    with pytest.raises(ValueError, match="side: expected"):
        diff_segments(DIFF, "left")
    assert token_text("▁Zug") == " Zug"


def test_diff_view_spans_carry_classes_and_fall_back_to_text():
    view = diff_view(DIFF, "intervened")
    assert [c.className for c in view.children] == ["tok tok-equal", "tok tok-changed", "tok tok-added"]
    assert diff_view([], "baseline", "plain").children == "plain"
    assert diff_view([], "baseline").children == "(empty output)"


def test_read_wav_matches_soundfile():
    rng = np.random.default_rng(1)
    x = (0.5 * rng.standard_normal((1600, 2))).clip(-1, 1).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, 22050, format="WAV", subtype="PCM_16")
    got, rate = read_wav(buf.getvalue())
    ref, ref_rate = sf.read(io.BytesIO(buf.getvalue()), dtype="float32")
    assert rate == ref_rate == 22050
    np.testing.assert_allclose(got, ref.mean(axis=1), atol=1e-6)
    with pytest.raises(AudioDataError, match="not a PCM WAV file"):
        read_wav(b"not audio at all")


def test_audio_player_says_where_the_sound_comes_from():
    tts = audio_player("data:audio/wav;base64,AAAA", "intervened output", source="tts")
    audio, label = tts.children[1], tts.children[2]
    assert audio.src == "data:audio/wav;base64,AAAA" and audio.controls
    assert "synthesised by the bundled TTS" in label.children and "player-source-tts" in label.className
    missing = audio_player(None, "baseline output", source="tts", error="the bundled TTS has no voice for 'jpn'")
    assert missing.children[1].children == "the bundled TTS has no voice for 'jpn'"
    played = audio_player("/media/audio/r/e", "input", playhead_for="unit-spec")
    assert getattr(played.children[1], "data-playhead") == "unit-spec"


def test_route_error_finds_the_control():
    spec_err = BackendError(422, "spec.units.k: k=5000 is larger than the 928 units", "spec.units.k")
    assert ui.route_error(spec_err, ("file", "spec", "tgt_lang"), "run") == {"spec": spec_err.message}
    opt_err = BackendError(422, "options.tgt_lang: required field is missing", "options.tgt_lang")
    assert ui.route_error(opt_err, ("file", "spec", "tgt_lang"), "run") == {"tgt_lang": opt_err.message}
    bare = BackendError(422, "file: upload 'x.txt' is declared as 'text/plain'")
    assert ui.route_error(bare, ("file",), "run") == {"file": bare.message}
    other = BackendError(429, "too many intervention requests from this client; retry in 3 s")
    assert ui.route_error(other, ("file",), "run") == {"run": other.message}
    assert "ValueError" in ui.plain(ValueError("boom")) and "Traceback" not in ui.plain(ValueError("boom"))


def test_compare_reports_differences_in_plain_words():
    then = [{"a": 1.0, "b": [1, 2, 3], "c": "x", "d": {"e": True}}]
    assert views.compare(then, [{"a": 1.0 + 1e-13, "b": [1, 2, 3], "c": "x", "d": {"e": True}}]) == []
    diffs = views.compare(then, [{"a": 1.5, "b": [1, 2], "c": "y", "d": {"e": True, "f": 1}}], ["heatmap"])
    assert diffs == ["heatmap.a: 1.0 then, 1.5 now", "heatmap.b: 3 entries then, 2 now", 'heatmap.c: "x" then, "y" now',
                     "heatmap.d.f: added"]
    assert views.compare([1], [1, 2]) == ["1 answers were stored, 2 came back"]
    assert len(views.compare([list(range(50))], [list(range(1, 51))])) == views.MAX_DIFFERENCES


def test_verify_refuses_findings_without_calls():
    with pytest.raises(views.ViewError, match="uploaded audio"):
        views.verify(None, {"calls": [], "not_replayable": "uploaded audio is not stored"})


def test_python_script_is_valid_standalone_python_replaying_the_calls():
    finding = {"id": "abcd2345", "title": 'Say "hi"', "created_at": "2026-01-01", "run_id": "r",
               "model": {"spec": "demo", "checksum": "c0ffee"},
               "state": {"href": "/lab?x=1", "frozen": {"calls": [
                   {"method": "GET", "path": "/runs/r/heatmap", "label": "heatmap", "params": {"stack": "text_decoder", "k": 5}},
                   {"method": "POST", "path": "/interventions", "label": "intervention",
                    "body": {"text": "null true", "tgt_lang": "eng", "spec": None, "return_speech": True}}]}}}
    script = views.python_script("http://backend:8000/", finding)
    tree = ast.parse(script)
    imports = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert imports == {"json", "os", "time", "urllib.parse", "urllib.request"}
    assert "BACKEND = os.environ.get(\"NEURON_ATLAS_BACKEND\", 'http://backend:8000')" in script
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") in ("get", "post")]
    assert [c.func.id for c in calls] == ["get", "post"]
    assert ast.literal_eval(calls[0].args[1]) == {"k": 5, "stack": "text_decoder"}
    assert ast.literal_eval(calls[1].args[1]) == {"text": "null true", "tgt_lang": "eng", "spec": None, "return_speech": True}
    empty = views.python_script("http://b", {"id": "x", "state": {"frozen": {"not_replayable": "uploaded audio"}}})
    assert "raise SystemExit('uploaded audio')" in empty


def test_a_malformed_overlap_cell_in_the_url_is_named_not_a_server_error():
    from app.pages import overview

    for cell in ("deu:deu:zz", "deu", ":deu"):
        with pytest.raises(ValueError, match=f"x_cell: '{cell}' is not text_language:speech_language"):
            overview.shared_units({"x_cell": cell})


def test_a_finding_saved_without_provenance_says_so_instead_of_printing_none():
    from app.pages import findings

    rows = dict(findings._frozen_rows({"run_id": None, "state": {"page": "lab"}, "model": {"spec": "demo", "checksum": "ab"}}))
    assert "provenance not recorded" in rows["run"] and "None" not in rows["run"]
    assert rows["decoding"].startswith("not recorded") and "mode" not in rows and "corpus" not in rows
    full = dict(findings._frozen_rows({"run_id": "r1", "state": {"page": "overview", "provenance": {
        "model_spec": "demo", "model_checksum": "ab", "mode": "clean", "corpus_source": "builtin", "n_examples": 780}}}))
    assert full["run"] == "r1 · model demo · checksum ab" and full["corpus"] == "builtin · 780 examples"

    bare = dict(findings._frozen_rows({"run_id": None, "state": {}, "model": {}}))
    assert bare["view"] == "not recorded" and bare["decoding"] == "not recorded"


def test_run_description_lists_fed_token_ids_and_dropped_examples():
    from app.components.common import run_description

    run = {"mode": "faithful",
           "text_inputs": [{"example_id": "fra1", "tasks": ["t2tt"], "input_ids": [3, 600, 41, 3], "fed_length": 256}],
           "dropped": [{"task": "s2tt", "item": 4, "example_id": "deu9", "site": None, "reason": "pooled to 70 values"}]}
    text = str(run_description(run).to_plotly_json())
    assert "3 600 41 3  + 252 × pad" in text and "fra1" in text
    assert "s2tt · deu9: pooled to 70 values" in text and "faithful mode" in text
    old = str(run_description({"mode": "clean"}).to_plotly_json())
    assert "before store schema 1.2" in old


def test_demo_model_line_only_for_the_demo_model_and_its_card_is_served():
    from app.components.common import DEMO_CARD_PATH, demo_model_line
    from app.main import create_app

    line = str(demo_model_line("demo"))
    assert "Demo model, not SeamlessM4T v2" in line and "trained in by auxiliary objectives" in line and DEMO_CARD_PATH in line
    assert demo_model_line("tiny-random") is None and demo_model_line("facebook/seamless-m4t-v2-large") is None
    web = create_app("http://127.0.0.1:9").server.test_client()
    card = web.get(DEMO_CARD_PATH)
    assert card.status_code == 200 and "steerability" in card.get_data(as_text=True).lower()


def test_what_fires_names_rows_that_are_not_numbered_layers():
    """A stack's last row holding its final layer_norm reads "final layer_norm", not "layer 3" (honest axes)."""
    from app.components.lab_result import fires_view

    unit = {"unit_id": 7, "site": "text_encoder.layer_norm", "channel": 0, "activation": 1.0, "z": 3.0, "component": "norm"}
    result = {"input": {"text": "hi"}, "step": 2, "rank_by": "z", "statistics_task": "t2tt", "n": 1,
              "stacks": [{"stack": "text_encoder", "n_units": 10, "layers": [{"layer": 0, "units": [unit]},
                                                                            {"layer": 3, "units": [unit]}]}]}
    text = str(fires_view(result, "r1", basket=False,
                          columns={("text_encoder", 0): ("0", "layer 0"), ("text_encoder", 3): ("norm", "final layer_norm")}))
    assert "final layer_norm" in text and "layer 3" not in text and "layer 0" in text
    assert "layer 3" in str(fires_view(result, "r1", basket=False))
