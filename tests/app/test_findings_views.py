"""What a finding keeps of its view, as pure functions: the concentration drill-down's calls and drawing, a lab
result's per-token evidence and dial, old findings compared without the fields they were saved before, and which
cards name the demo model."""
from __future__ import annotations

import pytest

from app import lab_logic, state as st, views
from app.components.common import Provenance
from app.pages import findings, overview

PROV = Provenance(run_id="r1", model_spec="demo", model_checksum="ab", mode="clean", corpus_source="builtin",
                  n_examples=10)


def overview_state(**query: str) -> dict:
    s, problems = st.parse("overview", {"run": "r1", "step": "7", "k": "5", **query})
    assert not problems
    return s


def test_the_drill_down_query_is_the_one_the_page_and_a_finding_ask():
    s = overview_state(tab="concentration", c_cell="speech:deu:1", c_stack="encoder", c_role="control")
    assert overview.drill_query(s) == {"stack": "speech_encoder", "layer": 1, "task": "en2x_s2tt", "language": "deu",
                                       "step": 7, "limit": overview.DRILL_UNITS, "offset": 0}
    assert overview.drill_concept_query(s) == {"kind": "language", "task": "en2x_s2tt", "step": 7, "language": "deu"}
    text = overview_state(tab="concentration", c_cell="text:fra:3")
    assert overview.drill_query(text)["stack"] == "text_decoder" and overview.drill_query(text)["task"] == "t2tt"
    for cell in ("speech:deu", "sound:deu:1", "speech:deu:x", "speech::1"):
        with pytest.raises(ValueError, match=f"c_cell: '{cell}' is not modality:language:layer"):
            overview.drill_cell({"c_cell": cell})


class Calls:
    """A stand-in client: view_calls of the concentration tab reads nothing from the backend."""


def test_a_concentration_view_with_an_open_cell_freezes_the_drill_down_calls():
    s = overview_state(tab="concentration", c_cell="speech:deu:1")
    calls = views.view_calls(Calls(), "overview", s)
    assert [c["label"] for c in calls] == ["concentration speech", "concentration text", "drill-down units",
                                           "drill-down concept", "columns"]
    assert calls[2]["path"] == "/runs/r1/concentration/units" and calls[2]["params"] == overview.drill_query(s)
    assert calls[3]["path"] == "/runs/r1/concepts" and calls[3]["params"]["language"] == "deu"
    assert len(views.view_calls(Calls(), "overview", overview_state(tab="concentration"))) == 3  # + column names
    with pytest.raises(views.ViewError, match="c_cell"):
        views.view_calls(Calls(), "overview", overview_state(tab="concentration", c_cell="nonsense"))
    assert views.describe_state("overview", s) == "overview, concentration tab, step 7, cell speech-conditioned deu layer 1"


def _concentration(task: str) -> dict:
    return {"run_id": "r1", "stack": "text_decoder", "step": 7, "metric": "gini", "layers": [0, 1],
            "series": [{"task": task, "language": "deu", "modality": "speech", "values": [0.2, 0.3]}]}


UNITS = {"stack": "text_decoder", "task": "s2tt", "layer": 1, "n_items": 4, "n_units": 40, "gini": 0.25,
         "units": [{"unit_id": 101, "site": "text_decoder.layers.1.ffn.fc1", "channel": 3, "share": 0.1,
                    "cumulative_share": 0.1},
                   {"unit_id": 107, "site": "text_decoder.layers.1.ffn.fc1", "channel": 9, "share": 0.05,
                    "cumulative_share": 0.15}]}


def test_a_concentration_finding_draws_the_units_its_drill_down_listed():
    s = overview_state(tab="concentration", c_cell="speech:deu:1")
    calls = views.view_calls(Calls(), "overview", s)
    frozen = {"calls": calls, "responses": [_concentration("s2tt"), _concentration("t2tt"), UNITS,
                                            {"concepts": [{"concept_id": 12, "language": "deu"}]}]}
    text = str(views.render("overview", s, frozen, PROV))
    assert "Units carrying the mass: speech-conditioned" in text and "Gini 0.250" in text
    assert "/unit?run=r1&unit=101&concept=12" in text and "/unit?run=r1&unit=107&concept=12" in text
    assert "Send these 2 units to the lab" in text and "finding-fig-1" in text
    old = {"calls": calls[:2], "responses": frozen["responses"][:2]}
    assert "Units carrying the mass" not in str(views.render("overview", s, old, PROV)), "a finding saved before keeps its figure"


def _side(text: str, **extra) -> dict:
    return {"text": text, "token_ids": [5, 6], "top_language": "deu", "language_probabilities": {"deu": 0.9},
            "language_probability_outside": 0.1, **extra}


TOKENS = {"tokens": ["▁Die", "▁Tür"], "token_probabilities": [0.8, 0.7], "probe_token": None, "probe_probabilities": None,
          "prefix_language_probabilities": [{"deu": 0.6, "fra": 0.1}, {"deu": 0.9, "fra": 0.05}]}


def test_a_lab_result_keeps_the_per_token_evidence_and_the_card_draws_it():
    full = {"baseline": _side("Die Tür", **TOKENS), "intervened": _side("La porte", **TOKENS), "first_difference": 0,
            "changed": True, "tgt_lang": "deu"}
    summary = lab_logic.result_summary(full)
    assert {k: summary["baseline"][k] for k in lab_logic.TOKEN_EVIDENCE} == TOKENS and summary["first_difference"] == 0
    s, _ = st.parse("lab", {"run": "r1", "ulang": "fra", "umod": "text", "strength": "0.5", "pos": "range",
                            "pos_from": "1", "pos_to": "3", "decode_steps": "0-2"})
    figure_ids = [c.id for c in views.render("lab", s, {"calls": [], "responses": [summary]}, PROV) if hasattr(c, "id")]
    assert "finding-fig-tokens" in figure_ids
    text = str(views.lab_view(s, summary, PROV))
    assert "changed from token 0" in text and "strength 0.5" in text and "decoder positions 1–2" in text
    assert "decoding steps 0, 1, 2" in text
    old = {**summary, "baseline": _side("Die Tür"), "intervened": _side("La porte")}
    del old["first_difference"]
    old_text = str(views.lab_view(s, old, PROV))
    assert "finding-fig-tokens" not in old_text and "not kept by findings saved before" in old_text


def test_an_older_lab_finding_still_reproduces_against_a_fresh_result_with_more_fields():
    then = {"baseline": _side("a"), "intervened": _side("b"), "changed": True, "diff": []}
    now = {**then, "first_difference": 0, "baseline": _side("a", **TOKENS), "intervened": _side("b", **TOKENS)}
    assert views.compare([then], [now]) == []
    assert views.compare([then], [{**now, "intervened": _side("c", **TOKENS)}]) == ['answer 0.intervened.text: "b" then, "c" now']
    kept = {**now}
    changed = {**now, "baseline": _side("a", **{**TOKENS, "token_probabilities": [0.8, 0.2]})}
    assert views.compare([kept], [changed]) == ["answer 0.baseline.token_probabilities[1]: 0.7 then, 0.2 now"], \
        "a finding that kept the per-token evidence compares it"
    assert views.compare([{"a": 1}], [{"a": 1, "first_difference": 3}]) == ["answer 0.first_difference: added"], \
        "only lab results drop the later fields"


def test_the_spec_line_names_the_dial():
    spec = {"version": 2, "units": {"kind": "concept", "concept_id": 3, "set": "top", "k": 5, "stack": "text_decoder"},
            "value": {"kind": "scale", "factor": 2.0}, "strength": 0.5,
            "scope": {"positions": {"start": 1, "stop": 4}, "decode_steps": [0, 2]}}
    assert findings.spec_summary(spec) == ("top-5 units of concept 3 in text_decoder · value scale ×2.0 · strength 0.5 · "
                                           "positions 1–3, decoding steps [0, 2]")
    assert findings.spec_summary({"version": 1, "units": {"kind": "explicit", "units": [{}]}, "value": {"kind": "zero"},
                                  "scope": {"positions": "last", "steps": [1]}}).endswith(
        "value zero · strength 1 · positions last, decoding steps [1]")
    open_ended = {**spec, "scope": {"positions": {"start": 2}, "decode_steps": "all"}}
    assert "positions from 2, decoding steps all" in findings.spec_summary(open_ended)


@pytest.mark.parametrize("page, provenance, live, expected", [
    ("overview", "demo", "tiny-random", ["demo"]),
    ("layer", "tiny-random", "demo", ["tiny-random"]),
    ("unit", "demo", None, ["demo"]),
    ("lab", "tiny-random", "demo", ["tiny-random", "demo"]),
    ("bridge", "tiny-random", "demo", ["tiny-random", "demo"]),
    ("lab", None, "demo", ["demo"]),
    ("compare", "demo", "tiny-random", ["demo"]),
])
def test_the_models_a_card_names_are_those_behind_its_result(page, provenance, live, expected):
    finding = {"model": {"spec": live} if live else None,
               "state": {"page": page, "provenance": {"model_spec": provenance} if provenance else None, "frozen": {}}}
    assert findings.result_models(finding) == expected


def test_decoding_settings_read_as_words():
    assert findings.decoding_summary({"strategy": "greedy", "max_new_tokens": 12, "do_sample": False}) == \
        "greedy · do_sample false · max_new_tokens 12"
    assert findings.decoding_summary(None) == "not recorded"


def test_copy_as_python_lists_the_drill_down_units_one_a_line():
    s = overview_state(tab="concentration", c_cell="speech:deu:1")
    script = views.python_script("http://b", {"id": "x", "state": {"frozen": {"calls": views.view_calls(Calls(), "overview", s)}}})
    compile(script, "finding.py", "exec")
    assert "print('drill-down units:', 'listed', len(answer_2['units'])" in script
    assert "for u in answer_2['units']:\n    print(u['unit_id'], u['site'], u['channel'])" in script


def test_timings_and_cache_flags_are_kept_but_not_compared():
    then = {"seconds": 3.2, "timing_s": {"total": 1.0}, "cached": False, "points": [{"k": 1, "p_tgt": 0.5}]}
    assert views.compare([then], [{**then, "seconds": 0.01, "timing_s": {"total": 0.2}, "cached": True}]) == []
    assert views.compare([then], [{**then, "points": [{"k": 1, "p_tgt": 0.4}]}]) == ["answer 0.points[0].p_tgt: 0.5 then, 0.4 now"]


def test_a_unit_finding_keeps_its_page_of_top_and_bottom_examples():
    s, _ = st.parse("unit", {"run": "r1", "unit": "7", "task": "s2tt", "step": "2", "offset": "40", "per": "20"})
    assert views.unit_examples_params(s) == {"task": "s2tt", "step": 2, "n": 10, "offset": 40}, \
        "the page asks for what the store keeps (50 per end)"
    data = {"sets": [{"task": "s2tt", "step": 2, "total": 50,
                      "top": [{"example_id": "e1", "activation": 1.5, "label": "deu", "text": "Guten Tag", "output_text": "Good day"}],
                      "bottom": [{"example_id": "e2", "activation": -0.25, "label": "fra", "text": None, "output_text": "Bonjour"}]}]}
    text = str(views.unit_examples_view(data, offset=40))
    assert "Highest activation · s2tt · step 2" in text and "Lowest activation" in text
    assert "'41'" in text and "1.5000" in text and "→ Good day" in text and "'e2'" in text


def test_a_layer_finding_lists_every_grid_column_of_its_rows_compactly():
    s, _ = st.parse("layer", {"run": "r1", "stack": "text_decoder", "layer": "1", "concept": "3"})
    page = {"total": 448, "units": [{"unit_id": 3323, "site": "text_decoder.layers.1.cross_attention.q_proj", "channel": 27,
                                     "component": "cross-attn", "ap": 1.0, "on_p50": -0.0292, "on_p90": None,
                                     "off_mean": -0.03, "off_p50": -0.0305}]}
    text = str(views.layer_view(s, page, PROV))
    assert "448 units matched; the first 1 by ap desc" in text
    assert "Link(children='3323', href='/unit?run=r1&unit=3323&concept=3&" in text, "the unit links by its id alone"
    assert "children='cross_attention.q_proj', title='text_decoder.layers.1.cross_attention.q_proj'" in text
    assert text.count("Th(") == len(views.LAYER_COLUMNS) == 9 and "Td('')" in text, "every grid column; a missing value blank"
