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
                        ({"tgt": None}, "tgt_lang"), ({"in": "upload"}, "file"), ({"in": "mic"}, "file")):
        with pytest.raises(lab_logic.LabInputError) as info:
            lab_logic.build_request(lab_state(**over), None)
        assert info.value.field == field
    body = lab_logic.build_request(lab_state(**{"in": "mic"}), None, "a1b2")
    assert body["audio_id"] == "a1b2" and not {"text", "example_id"} & set(body)


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


def test_the_sweep_request_asks_for_k_fractions_seeds_and_inputs():
    """One job: k/8, k/4, k/2 and k of the set, `seeds` random controls each (the backend sizes both-sets' controls 2k)."""
    s = lab_state(k=8, set="both", seeds=3, sweep_inputs=3, **{"in": "text"}, text="Hello there.", src="eng")
    spec = lab_logic.build_spec(s, CONCEPT)
    examples = [{"example_id": "e1", "lang": "eng"}, {"example_id": "d1", "lang": "deu"}, {"example_id": "e2", "lang": "eng"},
                {"example_id": "e3", "lang": "eng"}]
    inputs = lab_logic.sweep_inputs(s, examples)
    assert inputs == [{"text": "Hello there.", "src_lang": "eng"}, {"example_id": "e1", "modality": "text"},
                      {"example_id": "e2", "modality": "text"}]
    body = lab_logic.sweep_request(s, spec, inputs)
    assert body["ks"] == [1, 2, 4, 8] and body["seeds"] == [0, 1, 2] and body["concept_lang"] == "fra"
    assert body["spec"]["units"]["set"] == "both" and body["inputs"] == inputs and body["tgt_lang"] == "fra"
    with pytest.raises(lab_logic.LabInputError, match="concept's set"):
        lab_logic.sweep_request(s, {"units": {"kind": "explicit", "units": []}}, inputs)
    with pytest.raises(lab_logic.LabInputError, match="no recording yet"):
        lab_logic.sweep_inputs({**s, "in": "mic"}, examples)
    assert lab_logic.sweep_inputs({**s, "in": "mic"}, examples, "a1b2") == [{"audio_id": "a1b2"}], \
        "a recording (language unknown) is swept alone"
    speech = lab_state(**{"in": "example"}, ex="e1", mod="speech", sweep_inputs=2)
    assert lab_logic.sweep_inputs(speech, examples) == [{"example_id": "e1", "modality": "speech"},
                                                        {"example_id": "e2", "modality": "speech"}]


def test_an_undialled_spec_is_the_spec_it_always_was():
    spec = lab_logic.build_spec(lab_state(), CONCEPT)
    assert set(spec) == {"units", "value"}


def test_the_dial_writes_strength_positions_and_decoding_steps_into_the_spec():
    s = lab_state(strength=0.5, pos="range", pos_from=2, pos_to=5, decode_steps="0, 2-3")
    spec = lab_logic.build_spec(s, CONCEPT)
    assert spec["strength"] == 0.5
    assert spec["scope"] == {"positions": {"start": 2, "stop": 5}, "decode_steps": [0, 2, 3]}
    assert lab_logic.build_spec(lab_state(pos="last"), CONCEPT)["scope"] == {"positions": "last", "decode_steps": "all"}
    assert lab_logic.build_spec(lab_state(pos="range", pos_from=3, pos_to=None), CONCEPT)["scope"]["positions"] == {"start": 3}
    assert "strength 0.5" in lab_logic.dial_line(s) and "decoder positions 2–4" in lab_logic.dial_line(s)
    assert "left exactly as it is" in lab_logic.dial_line(lab_state(strength=0.0))


@pytest.mark.parametrize("over, words", [
    ({"decode_steps": "1-x"}, "not a step or a range"),
    ({"decode_steps": "4-2"}, "runs backwards"),
    ({"pos": "range", "pos_from": 5, "pos_to": 5}, "must be after its start"),
])
def test_bad_dial_settings_are_named(over, words):
    with pytest.raises(lab_logic.LabInputError, match=words) as info:
        lab_logic.build_spec(lab_state(**over), CONCEPT)
    assert info.value.field == "spec"


def test_scale_values_carry_their_factor_and_need_no_statistics_concept():
    spec = lab_logic.build_spec(lab_state(value="scale", factor=3.0, us="basket"), None, [{"module": "m", "channel": 1}])
    assert spec["value"] == {"kind": "scale", "factor": 3.0} and "stats_concept_id" not in spec


def test_dial_settings_travel_in_the_url():
    s = lab_state(strength=2.5, pos="range", pos_from=3, pos_to=9, decode_steps="0,4", probe="▁Die", rank="activation",
                  seeds=5, sweep_inputs=2, fires=1)
    again, problems = st.parse("lab", {k: v[0] for k, v in parse_qs(urlsplit(st.href("lab", s)).query).items()})
    assert problems == []
    for key in ("strength", "pos", "pos_from", "pos_to", "decode_steps", "probe", "rank", "seeds", "sweep_inputs", "fires"):
        assert again[key] == s[key], key
    assert st.parse("lab", {"strength": "nan"})[1] and st.parse("lab", {"pos": "middle"})[1]


def test_probe_token_and_what_fires_requests():
    s = lab_state(**{"in": "text"}, text="Hi.", src="eng", probe=" ▁Die ", rank="magnitude")
    assert lab_logic.build_request(s, None)["probe_token"] == "▁Die"
    assert "probe_token" not in lab_logic.build_request(lab_state(**{"in": "text"}, text="Hi."), None)
    body = lab_logic.fires_request(s)
    assert body == {"text": "Hi.", "src_lang": "eng", "tgt_lang": "fra", "run_id": "run-1", "step": 2, "n": 5, "rank_by": "magnitude"}
    with pytest.raises(lab_logic.LabInputError, match="no upload yet"):
        lab_logic.fires_request({**s, "in": "upload"})
    assert lab_logic.fires_request({**s, "in": "upload"}, "a1b2") == {
        "audio_id": "a1b2", "tgt_lang": "fra", "run_id": "run-1", "step": 2, "n": 5, "rank_by": "magnitude"}


def test_listed_units_go_to_the_basket_once_and_to_the_lab_by_link():
    entry = lab_logic.basket_entry("run-1", {"unit_id": 7, "site": "s", "channel": 2, "stack": "text_decoder"})
    basket, added = lab_logic.add_to_basket([{"unit_id": 3, "run": "other"}], entry)
    assert added and basket == [entry]
    again, added = lab_logic.add_to_basket(basket, entry)
    assert not added and again == basket
    href = lab_logic.units_to_lab_href("run-1", [5, 9, 5], ulang="deu", step=7)
    q = parse_qs(urlsplit(href).query)
    assert urlsplit(href).path == "/lab" and q["us"] == ["basket"] and q["units"] == ["5,9"] and q["ulang"] == ["deu"]


def test_the_labs_own_default_source_language_is_replaced_silently():
    """A run and model without English: the default src=eng is not the link's choice, so no warning and the link runs."""
    s, _ = st.parse("lab", {**lab_logic.LAB_DEFAULTS, "run": "r", "go": "1"})
    problems = lab_logic.settle_choices(s, langs=["deu", "fra"], run_langs=["deu", "fra"], steps=[7])
    assert problems == [] and s["go"] == 1 and s["src"] == "deu" and s["step"] == 7
    s, _ = st.parse("lab", {"run": "r", "in": "example", "src": "xxx"})
    assert lab_logic.settle_choices(s, langs=["deu", "fra"], run_langs=["deu", "fra"], steps=[7]) == []


def test_held_audio_is_sent_once_and_again_only_when_the_backend_dropped_it():
    import base64

    from app.client import BackendError
    from app.components.audio import audio_id_for

    class Backend:
        def __init__(self, known: set[str]):
            self.known, self.uploads = known, []

        def audio_info(self, audio_id):
            if audio_id not in self.known:
                raise BackendError(404, f"audio_id: unknown or expired audio id {audio_id!r}", "audio_id")
            return {"audio_id": audio_id}

        def upload_audio(self, data, filename, mime):
            self.uploads.append((data, filename, mime))
            return {"audio_id": "new", "duration_s": 1.0}

    upload = {"contents": "data:audio/wav;base64," + base64.b64encode(b"RIFFdata").decode(), "filename": "a.wav"}
    kept = Backend({"old"})
    assert audio_id_for(kept, "upload", {"upload": {"audio_id": "old"}}, upload, None) == "old" and not kept.uploads
    dropped = Backend(set())
    assert audio_id_for(dropped, "upload", {"upload": {"audio_id": "old"}}, upload, None) == "new"
    assert dropped.uploads == [(b"RIFFdata", "a.wav", "audio/wav")]
    assert audio_id_for(dropped, "text", {}, upload, None) is None
    with pytest.raises(lab_logic.LabInputError, match="could not decode"):
        audio_id_for(kept, "upload", {"upload": {"problem": "file: 'a.wav' could not decode"}}, upload, None)
    with pytest.raises(lab_logic.LabInputError, match="no recording yet"):
        audio_id_for(kept, "mic", {}, upload, None)
