"""The lab's request logic (pure): concept choice, cross-modal wording, specs, requests, uploads, sweeps."""
from __future__ import annotations

import base64
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

from app import state as st
from app import lab_logic
from app.pages import lab

SITES = [  # deliberately out of order: the lookup must sort by offset
    {"site": "text_decoder.layers.0.ffn.fc1", "unit_offset": 100, "width": 50},
    {"site": "speech_encoder.encoder.layers.0.ffn1.intermediate_dense", "unit_offset": 0, "width": 100},
    {"site": "text_decoder.layers.0.ffn.fc2", "unit_offset": 150, "width": 10},
]
CONCEPT = {"concept_id": 8, "stacks": ["speech_encoder", "text_decoder"]}


def lab_state(**over):
    s, _ = st.parse("lab", {})
    s.update(run="run-1", ulang="fra", step=2, tgt="fra")
    s.update(over)
    return s


def test_concept_query_follows_role_and_modality():
    assert lab_logic.concept_query(lab_state(role="control", umod="speech")) == {
        "kind": "language", "task": "en2x_s2tt", "step": 2, "language": "fra"}
    assert lab_logic.concept_query(lab_state(role="representation", umod="text"))["task"] == "t2tt"
    q = lab_logic.concept_query(lab_state(role="representation", umod="multimodal"))
    assert (q["kind"], q["task"]) == ("multimodal_language", "s2tt+t2tt")


@pytest.mark.parametrize("over, words", [
    ({"umod": "speech", "in": "example", "mod": "text"}, "cross-modal steering: units found on speech, applied to text input"),
    ({"umod": "text", "in": "upload"}, "cross-modal steering: units found on text, applied to speech input"),
    ({"umod": "speech", "in": "mic"}, "same-modality: units found on speech, applied to speech input"),
    ({"umod": "multimodal", "in": "text"}, "units found on speech and text alike, applied to text input"),
    ({"us": "basket", "units": (4, 9), "in": "example", "mod": "speech"}, "2 basket units applied to speech input"),
])
def test_crossmodal_note(over, words):
    assert lab_logic.crossmodal_note(lab_state(**over)) == words


def test_unit_refs_map_global_ids_to_site_and_channel():
    refs = lab_logic.unit_refs([0, 99, 100, 149, 159], SITES)
    assert refs == [
        {"module": "speech_encoder.encoder.layers.0.ffn1.intermediate_dense", "channel": 0},
        {"module": "speech_encoder.encoder.layers.0.ffn1.intermediate_dense", "channel": 99},
        {"module": "text_decoder.layers.0.ffn.fc1", "channel": 0},
        {"module": "text_decoder.layers.0.ffn.fc1", "channel": 49},
        {"module": "text_decoder.layers.0.ffn.fc2", "channel": 9},
    ]
    with pytest.raises(lab_logic.LabInputError, match="unit 160 does not exist"):
        lab_logic.unit_refs([5, 160], SITES)
    assert lab_logic.unit_refs([], SITES) == []


def test_unit_refs_agree_with_a_loop_reference():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 160, size=50).tolist()
    expected = []
    for i in ids:
        site = next(x for x in SITES if x["unit_offset"] <= i < x["unit_offset"] + x["width"])
        expected.append({"module": site["site"], "channel": i - site["unit_offset"]})
    assert lab_logic.unit_refs(ids, SITES) == expected


def test_concept_specs_pick_the_stack():
    spec = lab_logic.build_spec(lab_state(set="both", k=7, stack="text_decoder", value="on_p90"), CONCEPT)
    assert spec == {"units": {"kind": "concept", "concept_id": 8, "set": "both", "k": 7, "seed": 0, "stack": "text_decoder"},
                    "value": {"kind": "on_p90"}}
    assert lab_logic.build_spec(lab_state(stack="encoder"), CONCEPT)["units"]["stack"] == "speech_encoder"
    assert lab_logic.build_spec(lab_state(stack="all"), CONCEPT)["units"]["stack"] is None
    with pytest.raises(lab_logic.LabInputError, match="decoder statistics only"):
        lab_logic.build_spec(lab_state(stack="encoder"), {"concept_id": 1, "stacks": ["text_decoder"]})
    with pytest.raises(lab_logic.LabInputError, match="no concept matches") as info:
        lab_logic.build_spec(lab_state(), None)
    assert info.value.field == "spec"
    sweep = lab_logic.build_spec(lab_state(set="top", k=10), CONCEPT, set_kind="random", k=3)
    assert (sweep["units"]["set"], sweep["units"]["k"]) == ("random", 3)


def test_basket_specs_are_explicit_and_need_a_concept_for_statistics():
    refs = [{"module": "text_decoder.layers.0.ffn.fc1", "channel": 3}]
    spec = lab_logic.build_spec(lab_state(us="basket", value="on_p50"), CONCEPT, refs)
    assert spec == {"units": {"kind": "explicit", "units": refs}, "value": {"kind": "on_p50"}, "stats_concept_id": 8}
    assert "stats_concept_id" not in lab_logic.build_spec(lab_state(us="basket", value="zero"), None, refs)
    with pytest.raises(lab_logic.LabInputError, match="reads a concept's statistics"):
        lab_logic.build_spec(lab_state(us="basket", value="off_mean"), None, refs)
    with pytest.raises(lab_logic.LabInputError, match="the basket is empty"):
        lab_logic.build_spec(lab_state(us="basket"), CONCEPT, [])


def test_requests_for_example_and_text_inputs():
    body = lab_logic.build_request(lab_state(**{"in": "example", "ex": "builtin:s000:eng:eng-m1", "mod": "speech", "max_new": 9}),
                             {"units": {}})
    assert body == {"tgt_lang": "fra", "spec": {"units": {}}, "run_id": "run-1", "return_speech": True,
                    "max_new_tokens": 9, "example_id": "builtin:s000:eng:eng-m1", "modality": "speech"}
    body = lab_logic.build_request(lab_state(**{"in": "text", "text": "Hallo Welt", "src": "deu"}), None)
    assert (body["text"], body["src_lang"], body["spec"]) == ("Hallo Welt", "deu", None)
    for over, field in (({"in": "text", "text": "  "}, "text"), ({"in": "example", "ex": None}, "example_id"),
                        ({"tgt": None}, "tgt_lang"), ({"in": "upload"}, "input")):
        with pytest.raises(lab_logic.LabInputError) as info:
            lab_logic.build_request(lab_state(**over), None)
        assert info.value.field == field


def test_uploads_decode_from_data_uris_and_types_are_checked():
    raw = b"RIFF\x00\x00WAVEdata"
    data, name, mime = lab_logic.decode_upload({"contents": "data:audio/wav;base64," + base64.b64encode(raw).decode(),
                                          "filename": "clip.wav"})
    assert (data, name, mime) == (raw, "clip.wav", "audio/wav")
    with pytest.raises(lab_logic.LabInputError, match="no recording yet"):
        lab_logic.decode_upload(None, "recording")
    with pytest.raises(lab_logic.LabInputError, match="could not be read"):
        lab_logic.decode_upload({"contents": "data:audio/wav;base64,@@@", "filename": "x.wav"})
    assert lab_logic.check_upload_type("clip.mp3", "audio/mpeg") is None
    assert lab_logic.check_upload_type("x.bin", "application/octet-stream") is None
    assert lab_logic.check_upload_type("notes.txt", "text/plain").startswith("file: 'notes.txt' is text/plain, not audio")


def test_sweep_ks_and_result_summary():
    assert lab_logic.sweep_ks(10) == [1, 2, 5, 10]
    assert lab_logic.sweep_ks(1) == [1]
    assert lab_logic.sweep_ks(1000) == [125, 250, 500, 1000]
    result = {"key": "k", "model": {"spec": "demo"}, "run_id": "r", "tgt_lang": "fra", "decoding": {"max_new_tokens": 8},
              "spec": None, "intervention": None, "input": {"kind": "text"}, "changed": True, "diff": [],
              "timing_s": {"baseline": 0.1}, "cached": True,
              "baseline": {"text": "a", "token_ids": [1], "top_language": "eng", "language_probabilities": {"eng": 0.91234567891},
                           "language_probability_outside": 0.08, "audio": {"wav_base64": "UklGR"}},
              "intervened": {"text": "b", "token_ids": [2], "top_language": "fra", "language_probabilities": {"fra": 1.0}}}
    summary = lab_logic.result_summary(result)
    assert "timing_s" not in summary and "cached" not in summary and "audio" not in summary["baseline"]
    assert summary["baseline"]["language_probabilities"] == {"eng": 0.912346}
    assert summary["baseline"]["language_probability_outside"] == 0.08


LANGS = ["eng", "deu", "spa", "fra", "jpn", "cmn"]


def settled(query: dict, *, langs=LANGS, steps=(2, 7, 12), model="demo"):
    s, _ = st.parse("lab", {**lab_logic.LAB_DEFAULTS, "run": "run-1", **query})
    problems = lab_logic.settle_choices(s, langs=langs, run_langs=langs, steps=list(steps), model=model)
    return s, problems


def test_unknown_languages_and_steps_are_named_with_the_choices_and_not_run():
    s, problems = settled({"src": "xxx", "tgt": "klingon", "ulang": "zzz", "step": "5", "go": "1"})
    assert problems[:4] == [
        "src=xxx: not a language of the model demo; choose one of eng, deu, spa, fra, jpn, cmn (using eng for now)",
        "tgt=klingon: not a language of the model demo; choose one of eng, deu, spa, fra, jpn, cmn (using deu for now)",
        "ulang=zzz: not a concept language of run run-1; choose one of eng, deu, spa, fra, jpn, cmn (using fra for now)",
        "step=5: not a step of run run-1; choose one of 2, 7, 12 (using 2 for now)"]
    assert "not run" in problems[4] and (s["go"], s["sweep"]) == (0, 0)
    assert (s["src"], s["tgt"], s["ulang"], s["step"]) == ("eng", "deu", "fra", 2)
    _, problems = settled({"tgt": "xx"}, model=None)
    assert problems == ["tgt=xx: not a language of run run-1; choose one of eng, deu, spa, fra, jpn, cmn (using deu for now)"]
    s, problems = settled({"src": "deu", "tgt": "spa", "ulang": "jpn", "step": "7", "go": "1"})
    assert problems == [] and s["go"] == 1


def test_defaults_are_the_readme_example_and_show_an_effect():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    link = re.search(r"<http://[^/]+(/lab\?[^>]+)>", readme).group(1)
    query = {k: v[-1] for k, v in parse_qs(urlsplit(link).query).items() if k != "go"}
    example, _ = settled(query)
    s, problems = settled({})
    assert problems == [] and s == example
    assert s["ulang"] != s["tgt"] and s["in"] == "text" and s["text"].strip()
    assert settled({"ulang": "deu"})[0]["tgt"] == "spa"
    assert settled({"role": "representation"})[0]["tgt"] == "eng"
    assert settled({}, langs=["eng", "deu"], steps=(1,))[0]["step"] == 1
    href = lab_logic.default_href(run="run-2")
    assert "run=run-2" in href and "in=text" in href and "k=250" in href and "ulang" not in href


def test_a_link_asking_for_the_basket_uses_the_basket():
    basket = [{"run": "run-1", "unit_id": 38388}, {"run": "run-2", "unit_id": 7}, {"run": "run-1", "unit_id": 39105}]
    assert lab_logic.basket_units(basket, "run-1") == (38388, 39105)
    s = lab_logic.with_basket(lab_state(us="basket", value="zero"), basket)
    assert s["units"] == (38388, 39105)
    assert lab_logic.basket_line(s, (38388, 39105)) == "2 units in the basket (38388, 39105) · Run forces 2 units: 38388, 39105"
    assert lab_logic.crossmodal_note(s) == "2 basket units applied to text input"
    named = lab_logic.with_basket(lab_state(us="basket", units=(5,)), basket)
    assert named["units"] == (5,)
    assert lab_logic.basket_line(named, (38388, 39105)).endswith("Run forces 1 unit: 5 (this view's units; 'Use the basket' "
                                                            "switches to the basket's)")
    assert lab_logic.with_basket(lab_state(us="concept"), basket)["units"] == ()
    empty = lab_logic.with_basket(lab_state(us="basket"), [])
    assert "uses the basket, which is empty: add units from a unit page" in lab_logic.basket_line(empty, ())
    assert lab_logic.crossmodal_note(empty) == "no basket units to apply to text input yet"
    assert lab_logic.basket_line(lab_state(us="concept"), ()) == "0 units in the basket"


def test_the_chart_names_a_concept_language_only_for_concept_units():
    assert lab_logic.chart_concept_lang(lab_state(us="concept", ulang="fra")) == "fra"
    assert lab_logic.chart_concept_lang(lab_state(us="basket", ulang="deu", units=(1,))) is None


def test_the_result_line_reads_as_words():
    line = lab_logic.intervention_line({"n_units": 1500, "by_stack": {"text_decoder": 1500},
                                  "by_component": {"cross-attn": 50, "ffn": 300, "self-attn": 1150}})
    assert line == "1,500 units forced · by stack: text_decoder 1,500 · by component: cross-attn 50, ffn 300, self-attn 1,150"
    assert "{" not in line
    assert lab_logic.intervention_line(None) == "baseline only"
    assert lab_logic.count_text({}) == "none"


def test_upload_limits_come_from_the_backend_and_oversized_files_are_named():
    assert lab_logic.upload_limit({"limits": {"max_upload_bytes": 5_000_000}}) == 5_000_000
    assert lab_logic.upload_limit({}) == lab_logic.upload_limit(None) == lab_logic.DEFAULT_MAX_UPLOAD_BYTES == 20_000_000
    assert lab_logic.upload_size_problem("a.wav", 20_000_000, 20_000_000) is None
    assert lab_logic.upload_size_problem("big.wav", 25_000_000, 20_000_000) == (
        "file: 'big.wav' is 25.0 MB, over the backend's upload limit of 20 MB; choose a smaller or shorter audio file")
    assert "20,000,001 bytes, over the backend's upload limit of 20,000,000 bytes" in lab_logic.upload_size_problem(
        "edge.wav", 20_000_001, 20_000_000)
    problem = lab_logic.upload_size_problem("big.wav", 55_000_000, 20_000_000)
    with pytest.raises(lab_logic.LabInputError, match="'big.wav' is 55.0 MB") as info:
        lab_logic.decode_upload({"filename": "big.wav", "problem": problem})
    assert info.value.field == "file"


def test_the_sweep_controls_a_both_set_with_as_many_random_units(monkeypatch):
    """both = top k + bottom k = 2k units, so its random control has 2k (as in the batch experiments)."""
    asked = []
    monkeypatch.setattr(lab, "_spec", lambda s, *, set_kind, k: {"set": set_kind, "k": k})
    monkeypatch.setattr(lab, "run_intervention", lambda s, upload, mic, spec: asked.append(
        (spec["set"], spec["k"])) or {"intervened": {"language_probabilities": {"fra": 0.5, "deu": 0.5}}})
    points, error = lab.sweep({"ulang": "fra", "tgt": "deu", "k": 8, "set": "both"}, None, None)
    assert error is None and len(points) == 8
    assert asked == [("both", 1), ("random", 2), ("both", 2), ("random", 4), ("both", 4), ("random", 8),
                     ("both", 8), ("random", 16)]
    asked.clear()
    lab.sweep({"ulang": "fra", "tgt": "deu", "k": 2, "set": "top"}, None, None)
    assert asked == [("top", 1), ("random", 1), ("top", 2), ("random", 2)]


def test_the_labs_own_default_source_language_is_replaced_silently():
    """A run and model without English: the default src=eng is not the link's choice, so no warning and the link runs."""
    s, _ = st.parse("lab", {**lab_logic.LAB_DEFAULTS, "run": "r", "go": "1"})
    problems = lab_logic.settle_choices(s, langs=["deu", "fra"], run_langs=["deu", "fra"], steps=[7])
    assert problems == [] and s["go"] == 1 and s["src"] == "deu" and s["step"] == 7
    s, _ = st.parse("lab", {"run": "r", "in": "example", "src": "xxx"})
    assert lab_logic.settle_choices(s, langs=["deu", "fra"], run_langs=["deu", "fra"], steps=[7]) == []
