"""Figure builders: data in, figure out — values checked against independent numpy computations, and every figure
names its run, model, mode and corpus, labels its axes and uses a colour-blind-safe scale."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from app.components import figures as fg
from app.components.audio import spectrogram
from app.components.common import Provenance

PROV = Provenance(run_id="demo-abc123", model_spec="demo", model_checksum="0123456789abcdef", mode="faithful",
                  corpus_source="builtin", n_examples=120)
CONCEPTS = [
    {"concept_id": 3, "kind": "language", "task": "s2tt", "step": 2, "language": "deu", "description": "deu vs rest"},
    {"concept_id": 4, "kind": "language", "task": "s2tt", "step": 2, "language": "fra", "description": "fra vs rest"},
]
HEATMAP = {
    "run_id": "demo-abc123", "stack": "text_decoder", "component": None, "mode": "top", "threshold": None, "k": 5,
    "layers": [0, 1, 2], "concepts": CONCEPTS, "counts": [[2, 3, 0], [3, 2, 0]],
    "by_component": {"self-attn": [[0, 1, 0], [1, 0, 0]], "cross-attn": [[1, 2, 0], [2, 2, 0]], "norm": [[1, 0, 0], [0, 0, 0]]},
    "units_per_layer": [448, 448, 32],
    "units_per_layer_by_component": {"self-attn": [128, 128, 0], "cross-attn": [128, 128, 0], "norm": [96, 96, 32]},
}
CONCENTRATION = {
    "run_id": "demo-abc123", "stack": "text_decoder", "step": 2, "metric": "gini", "layers": [0, 1],
    "series": [
        {"task": "s2tt", "language": "deu", "modality": "speech", "values": [0.70, 0.72]},
        {"task": "s2tt", "language": "fra", "modality": "speech", "values": [0.71, None]},
        {"task": "t2tt", "language": "deu", "modality": "text", "values": [0.60, 0.65]},
        {"task": "t2tt", "language": "fra", "modality": "text", "values": [0.61, 0.90]},
        {"task": "asr", "language": "eng", "modality": "speech", "values": [0.10, 0.99]},
    ],
}
OVERLAP = {"run_id": "demo-abc123", "role": "representation", "step": 2, "set_kind": "top", "k": 5, "metric": "c_over_k",
           "text_langs": ["deu", "fra"], "speech_langs": ["deu", "fra"], "matrix": [[0.4, 0.0], [0.2, None]],
           "chance": [[0.005, 0.005], [0.005, 0.005]]}
SPEARMAN = {"run_id": "demo-abc123", "role": "control", "step": 7, "scope": "text_decoder/layer",
            "text_langs": ["deu", "fra"], "speech_langs": ["deu", "fra"],
            "matrices": [{"layer": 0, "n_units": 448, "matrix": [[0.5, -0.1], [0.0, 0.3]]},
                         {"layer": 1, "n_units": 448, "matrix": [[0.9, 0.2], [-0.4, 0.7]]}]}
UNIT = {"run_id": "demo-abc123", "unit_id": 3246, "site": "text_decoder.layers.1.cross_attention.k_proj", "channel": 14,
        "stack": "text_decoder", "layer": 1, "component": "cross-attn", "kind": "Linear", "stats": [
            {"concept_id": 3, "ap": 0.98, "kind": "language", "task": "s2tt", "step": 2, "language": "deu", "chance_ap": 0.5},
            {"concept_id": 4, "ap": 0.35, "kind": "language", "task": "s2tt", "step": 2, "language": "fra", "chance_ap": 0.5},
            {"concept_id": 13, "ap": 0.99, "kind": "modality", "task": "s2tt+t2tt", "step": 2, "language": None, "chance_ap": 0.5},
            {"concept_id": 24, "ap": 0.61, "kind": "language", "task": "s2tt", "step": 7, "language": "deu", "chance_ap": 0.5},
        ]}
ACTS = {"run_id": "demo-abc123", "unit_id": 3246, "bin_edges": [0, 1], "groups": [
    {"task": "s2tt", "step": 2, "language": "deu", "modality": "speech", "n": 6, "mean": 0.05, "std": 0.01,
     "quantiles": {"min": 0.0, "p05": 0.01, "p25": 0.03, "p50": 0.05, "p75": 0.07, "p95": 0.09, "max": 0.1}, "histogram": [6]},
    {"task": "t2tt", "step": 2, "language": "deu", "modality": "text", "n": 6, "mean": -0.03, "std": 0.01,
     "quantiles": {"min": -0.05, "p05": -0.04, "p25": -0.035, "p50": -0.03, "p75": -0.025, "p95": -0.02, "max": -0.01}, "histogram": [6]},
    {"task": "t2tt", "step": 7, "language": "deu", "modality": "text", "n": 6, "mean": 1.0, "std": 0.0,
     "quantiles": {"min": 1, "p05": 1, "p25": 1, "p50": 1, "p75": 1, "p95": 1, "max": 1}, "histogram": [6]},
]}
RESULT = {"tgt_lang": "eng",
          "baseline": {"text": "The train", "language_probabilities": {"eng": 0.9, "deu": 0.1}},
          "intervened": {"text": "Der Zug", "language_probabilities": {"eng": 0.2, "deu": 0.7, "fra": 0.1}}}

#: Colour-blind-safe scales (validated colour lists, as a trace stores them).
SAFE_SCALES = {name: [c for _, c in go.Heatmap(colorscale=name).colorscale] for name in ("Cividis", "Viridis", "RdBu", "Greys")}


def _all_figures() -> dict[str, go.Figure]:
    times, freqs, db = np.linspace(0, 1, 10), np.linspace(0, 8000, 5), np.zeros((5, 10))
    return {
        "selectivity": fg.selectivity_heatmap(HEATMAP, PROV),
        "bars": fg.component_bars(HEATMAP, PROV),
        "modality": fg.modality_map({**HEATMAP, "concepts": CONCEPTS[:1], "counts": [[2, 3, 0]],
                                     "by_component": {k: v[:1] for k, v in HEATMAP["by_component"].items()}}, PROV),
        "concentration": fg.concentration_pair(CONCENTRATION, CONCENTRATION, PROV, speech_task="s2tt", text_task="t2tt"),
        "mass": fg.mass_units_bars([{"unit_id": 1, "site": "a.b", "channel": 0, "on_p50": -2.0}], PROV, title="t",
                                   value_key="on_p50", value_title="|on_p50|"),
        "overlap": fg.overlap_matrix(OVERLAP, PROV),
        "spearman": fg.spearman_matrix(SPEARMAN, PROV, layer=1),
        "spearman_layers": fg.spearman_by_layer(SPEARMAN, PROV),
        "histogram": fg.ap_histogram([0.1, 0.5, 0.9], 0.5, PROV, title="AP"),
        "profile": fg.unit_ap_profile(UNIT, PROV, step=2),
        "distribution": fg.language_modality_distribution(ACTS, PROV, step=2),
        "spectrogram": fg.spectrogram_figure(times, freqs, db, PROV, title="spec"),
        "tokens": fg.token_activation_figure(["▁Der", "▁Zug"], [0.1, -0.2], PROV, title="tokens"),
        "modality_ap": fg.modality_ap_bars([{"label": "speech (s2tt)", "modality": "speech", "ap": 0.9, "chance": 0.5}], PROV,
                                           title="AP"),
        "probabilities": fg.language_probability_bars(RESULT, PROV, concept_lang="deu"),
        "dose": fg.dose_response([{"k": 1, "set": "top", "p_concept": 0.1, "p_tgt": 0.9},
                                  {"k": 4, "set": "top", "p_concept": 0.6, "p_tgt": 0.3},
                                  {"k": 1, "set": "random", "p_concept": 0.1, "p_tgt": 0.9}], PROV,
                                 concept_lang="deu", tgt_lang="eng", set_kind="top"),
    }


@pytest.mark.parametrize("name", list(_all_figures()))
def test_every_figure_names_its_provenance_labels_axes_and_uses_safe_colours(name):
    fig = _all_figures()[name]
    subtitle = fig.layout.title.subtitle.text.replace("<br>", " ")
    for needle in ("run demo-abc123", "model demo", "0123456789ab", "faithful mode", "builtin corpus", "120 examples"):
        assert needle in subtitle, (name, needle, subtitle)
    assert fig.layout.meta["provenance"]["run_id"] == "demo-abc123"
    x_titles = [fig.layout[k].title.text for k in fig.layout if k.startswith("xaxis") and fig.layout[k].title.text]
    y_titles = [fig.layout[k].title.text for k in fig.layout if k.startswith("yaxis") and fig.layout[k].title.text]
    assert y_titles, f"{name}: no y axis title"
    if name != "profile":
        assert x_titles, f"{name}: no x axis title"
    for trace in fig.data:
        if trace.type == "heatmap":
            assert [c for _, c in trace.colorscale] in SAFE_SCALES.values(), name


def test_selectivity_heatmap_counts_labels_and_click_data():
    fig = fg.selectivity_heatmap(HEATMAP, PROV)
    (trace,) = fig.data
    np.testing.assert_array_equal(np.asarray(trace.z), np.array(HEATMAP["counts"], dtype=float))
    assert list(trace.y) == ["deu", "fra"] and list(trace.x) == ["0", "1", "2"]
    assert [tuple(trace.customdata[i][j][:2]) for i in range(2) for j in range(3)] == [
        (3, 0), (3, 1), (3, 2), (4, 0), (4, 1), (4, 2)]
    share = np.array(HEATMAP["counts"]) / np.array(HEATMAP["units_per_layer"])[None, :]
    assert trace.customdata[1][0][3] == f"{share[1, 0]:.1%}"
    assert "top-5" in fig.layout.title.text and "text decoder" in fig.layout.title.text
    assert fig.layout.xaxis.title.text.startswith("layer")


LAYERS = [
    {"stack": "text_decoder", "layer": 0, "sites": ["text_decoder.layers.0.self_attn.q_proj", "text_decoder.layers.0.ffn.fc1"]},
    {"stack": "text_decoder", "layer": 1, "sites": ["text_decoder.layers.1.self_attn.q_proj"]},
    {"stack": "text_decoder", "layer": 2, "sites": ["text_decoder.layer_norm"]},
    {"stack": "speech_encoder", "layer": 3, "sites": ["speech_encoder.encoder.layers.3.ffn1.intermediate_dense"]},
    {"stack": "speech_encoder", "layer": 4, "sites": ["speech_encoder.encoder.layer_norm", "speech_encoder.intermediate_ffn.fc1"]},
    {"stack": "speech_encoder", "layer": 5, "sites": ["speech_encoder.adapter.layers.0.ffn.fc1",
                                                      "speech_encoder.adapter.layers.0.residual_layer_norm"]},
    {"stack": "speech_encoder", "layer": 6, "sites": ["speech_encoder.inner_layer_norm"]},
]


def test_heatmap_columns_say_what_they_are_and_can_show_shares_of_the_column():
    columns = fg.column_names(LAYERS)
    assert columns[("text_decoder", 1)] == ("1", "layer 1")
    assert columns[("text_decoder", 2)] == ("final norm", "final norm")
    assert columns[("speech_encoder", 3)] == ("3", "layer 3")
    assert columns[("speech_encoder", 4)][0] == "int. FFN" and "encoder final norm" in columns[("speech_encoder", 4)][1]
    assert columns[("speech_encoder", 5)] == ("adapter", "adapter layer 0")
    assert columns[("speech_encoder", 6)][0] == "final norm"
    fig = fg.selectivity_heatmap(HEATMAP, PROV, columns=columns, scale="fraction")
    (trace,) = fig.data
    assert list(fig.layout.xaxis.tickvals) == ["0", "1", "2"] and list(fig.layout.xaxis.ticktext) == ["0", "1", "final norm"]
    assert list(trace.x) == ["0", "1", "2"]
    share = np.array(HEATMAP["counts"]) / np.array(HEATMAP["units_per_layer"])[None, :]
    np.testing.assert_allclose(np.asarray(trace.z, dtype=float), share)
    assert "share of each column's units" in fig.layout.title.text
    assert trace.customdata[0][2][4] == "final norm (32 units)"
    assert fg.after_layer_note(HEATMAP, columns) == ("text decoder: columns after the numbered layers: "
                                                     "2 = final norm (32 units)")
    assert fg.after_layer_note({**HEATMAP, "layers": [0, 1], "units_per_layer": [448, 448]}, columns) is None
    with pytest.raises(fg.FigureDataError, match="scale"):
        fg.selectivity_heatmap(HEATMAP, PROV, scale="log")


def test_selectivity_heatmap_uses_full_labels_when_languages_repeat():
    concepts = [dict(CONCEPTS[0]), {**CONCEPTS[0], "concept_id": 9, "step": 7}]
    fig = fg.selectivity_heatmap({**HEATMAP, "concepts": concepts}, PROV)
    assert list(fig.data[0].y) == ["deu · s2tt · step 2", "deu · s2tt · step 7"]


def test_selectivity_heatmap_refuses_missing_fields():
    with pytest.raises(fg.FigureDataError, match="heatmap: missing field 'counts'"):
        fg.selectivity_heatmap({k: v for k, v in HEATMAP.items() if k != "counts"}, PROV)


def test_component_bars_stack_the_per_component_sums():
    fig = fg.component_bars(HEATMAP, PROV)
    assert fig.layout.barmode == "stack"
    for trace in fig.data:
        expected = np.asarray(HEATMAP["by_component"][trace.name]).sum(axis=0)
        np.testing.assert_array_equal(np.asarray(trace.y), expected)
    total = sum(np.asarray(t.y) for t in fig.data)
    np.testing.assert_array_equal(total, np.asarray(HEATMAP["counts"]).sum(axis=0))


def test_modality_map_colours_by_share_of_each_component():
    hm = {**HEATMAP, "concepts": CONCEPTS[:1], "counts": [[2, 3, 0]],
          "by_component": {k: v[:1] for k, v in HEATMAP["by_component"].items()}}
    fig = fg.modality_map(hm, PROV)
    (trace,) = fig.data
    assert list(trace.y) == ["self-attn", "cross-attn", "norm"]
    z = np.asarray(trace.z, dtype=float)
    assert z[1, 1] == pytest.approx(2 / 128) and z[2, 2] == pytest.approx(0 / 32)
    assert np.isnan(z[0, 2])
    assert trace.text[1][1] == "2" and trace.text[0][2] == ""


def test_modality_map_rows_are_site_roles_when_given():
    hm = {**HEATMAP, "concepts": CONCEPTS[:1], "counts": [[2, 3, 0]],
          "by_component": {k: v[:1] for k, v in HEATMAP["by_component"].items()},
          "by_site": {"cross_attention.q_proj": [[0, 0, 0]], "cross_attention.k_proj": [[2, 3, 0]]},
          "units_per_layer_by_site": {"cross_attention.q_proj": [16, 16, 16], "cross_attention.k_proj": [16, 16, 16]}}
    (trace,) = fg.modality_map(hm, PROV).data
    assert list(trace.y) == ["cross_attention.q_proj", "cross_attention.k_proj"]
    z = np.asarray(trace.z, dtype=float)
    assert z[1, 0] == pytest.approx(2 / 16) and z[1, 1] == pytest.approx(3 / 16) and z[0, 0] == 0


def test_batch_interventions_table_and_dose_lines():
    def cond(lang, set_kind, p, step=2, source="same", k=10, exp="ablation"):
        return {"experiment": exp, "input_task": "t2tt", "language": lang, "set_kind": set_kind, "step": step,
                "unit_source": source, "k": k, "mean_p_concept_lang": p, "n_items": 4}

    rows = [cond("deu", "baseline", 0.9, step=None, source="none"), cond("deu", "both", 0.2), cond("deu", "both", 0.5, step=7),
            cond("fra", "random_top", 0.8), cond("fra", "top", 0.1)]
    table = fg.batch_interventions(rows, PROV, experiment="ablation", input_task="t2tt", step=2)
    (trace,) = table.data
    assert "step 2 · k = 10 per set:" in table.layout.title.text
    assert list(trace.y) == ["deu", "fra"] and list(trace.x)[:4] == ["baseline", "top k", "bottom k", "both 2k"]
    z = np.asarray(trace.z, dtype=float)
    assert z[0, 0] == 0.9 and z[0, 3] == 0.2 and z[1, 1] == 0.1 and z[1, 4] == 0.8 and np.isnan(z[0, 1])
    dose = [cond("deu", kind, p, k=k, exp="dose") for k, kind, p in ((10, "both", 0.1), (50, "both", 0.6),
                                                                         (10, "random_both", 0.0))]
    fig = fg.batch_interventions(dose, PROV, experiment="dose", input_task="t2tt", step=2)
    assert [list(t.x) for t in fig.data] == [[10, 50], [10]] and list(fig.data[0].y) == [0.1, 0.6]
    assert list(fig.layout.xaxis.tickvals) == [10, 50] and fig.layout.xaxis.type == "log"
    empty = fg.batch_interventions(rows, PROV, experiment="steering", input_task="t2tt", step=2)
    assert "no steering" in empty.layout.annotations[0].text
    # a step without stored conditions says so (the dose sweep runs at one step only) instead of showing another step
    for exp, conds in (("dose", dose), ("ablation", rows)):
        other = fg.batch_interventions(conds, PROV, experiment=exp, input_task="t2tt", step=12)
        assert not other.data and "at step 12 (stored at step 2" in other.layout.annotations[0].text
    only_7 = fg.batch_interventions(rows, PROV, experiment="ablation", input_task="t2tt", step=7)
    assert np.isnan(np.asarray(only_7.data[0].z, dtype=float)[1]).all()


def test_concentration_pair_filters_tasks_and_shares_the_colour_range():
    fig = fg.concentration_pair(CONCENTRATION, CONCENTRATION, PROV, speech_task="s2tt", text_task="t2tt")
    speech, text = fig.data
    assert list(speech.y) == ["deu", "fra"] and list(text.y) == ["deu", "fra"]
    assert np.isnan(np.asarray(speech.z, dtype=float)[1, 1])
    values = [0.70, 0.72, 0.71, 0.60, 0.65, 0.61, 0.90]
    assert (speech.zmin, speech.zmax) == (text.zmin, text.zmax) == (min(values), max(values))
    assert tuple(text.customdata[1][1]) == ("text", "fra", 1, "t2tt", "layer 1")
    assert [a.text.split(" · ")[0] for a in fig.layout.annotations] == ["speech-conditioned", "text-conditioned"]
    named = fg.concentration_pair(CONCENTRATION, CONCENTRATION, PROV, speech_task="s2tt", text_task="t2tt",
                                  columns={("text_decoder", 1): ("norm", "final layer_norm")})
    assert list(named.layout.xaxis.ticktext) == ["0", "norm"] and list(named.layout.xaxis.tickvals) == ["0", "1"]
    assert named.data[0].customdata[0][1][4] == "final layer_norm"


def test_overlap_matrix_values_chance_and_click_data():
    fig = fg.overlap_matrix(OVERLAP, PROV)
    (trace,) = fig.data
    z = np.asarray(trace.z, dtype=float)
    assert z[0, 0] == 0.4 and np.isnan(z[1, 1])
    assert trace.text[0][0] == "0.40<br>(chance 0.01)" and trace.text[1][1].startswith("<br>(chance")
    assert tuple(trace.customdata[1][0]) == ("fra", "deu")
    assert (trace.zmin, trace.zmax) == (0, 0.4)
    zeros = fg.overlap_matrix({**OVERLAP, "matrix": [[0, 0], [0, 0]], "chance": [[0, 0], [0, 0]]}, PROV)
    assert zeros.data[0].zmax == 1.0
    assert fig.layout.yaxis.title.text.startswith("text language")


def test_spearman_matrix_picks_the_layer_and_centres_on_zero():
    fig = fg.spearman_matrix(SPEARMAN, PROV, layer=1)
    (trace,) = fig.data
    np.testing.assert_array_equal(np.asarray(trace.z), np.array([[0.9, 0.2], [-0.4, 0.7]]))
    assert (trace.zmid, trace.zmin, trace.zmax) == (0, -1, 1)
    assert "layer 1" in fig.layout.title.text
    first = fg.spearman_matrix(SPEARMAN, PROV, layer=None)
    assert np.asarray(first.data[0].z)[0, 0] == 0.5
    with pytest.raises(fg.FigureDataError, match="no matrices"):
        fg.spearman_matrix({**SPEARMAN, "matrices": []}, PROV)


def test_spearman_by_layer_means_of_diagonal_and_off_diagonal():
    fig = fg.spearman_by_layer(SPEARMAN, PROV)
    same, other = fig.data
    mats = [np.array(m["matrix"]) for m in SPEARMAN["matrices"]]
    assert list(same.y) == pytest.approx([np.mean(np.diag(m)) for m in mats])
    assert list(other.y) == pytest.approx([np.mean(m[~np.eye(2, dtype=bool)]) for m in mats])


def test_ap_histogram_bins_cover_zero_to_one_and_mark_chance():
    fig = fg.ap_histogram([0.1, None, 0.5, 0.9], 0.25, PROV, title="AP for deu")
    (trace,) = fig.data
    assert list(trace.x) == [0.1, 0.5, 0.9]
    assert (trace.xbins.start, trace.xbins.size) == (0.0, 0.02)
    assert fig.layout.shapes[0].x0 == 0.25 and "· 3 units" in fig.layout.title.text


def test_unit_ap_profile_filters_the_step_and_highlights_the_concept():
    fig = fg.unit_ap_profile(UNIT, PROV, step=2, highlight=3)
    bars = [t for t in fig.data if t.type == "bar"]
    aps = [y for t in bars for y in t.y]
    assert sorted(aps) == sorted([0.98, 0.35, 0.99])
    language = next(t for t in bars if t.name == "language")
    assert list(language.marker.line.width) == [3, 0]
    chance = next(t for t in fig.data if t.name == "chance")
    assert list(chance.y) == [0.5, 0.5, 0.5]
    assert len(fg.unit_ap_profile(UNIT, PROV, step=None).data[-1].y) == 4


def test_activation_distribution_boxes_come_from_the_quantiles():
    fig = fg.language_modality_distribution(ACTS, PROV, step=2)
    speech, text = fig.data
    assert speech.name == "speech input" and list(speech.median) == [0.05] and list(speech.q1) == [0.03]
    assert list(text.lowerfence) == [-0.04] and list(text.upperfence) == [-0.02]
    assert list(text.y) == ["deu · text · t2tt"]


def test_spectrogram_peaks_at_the_tone_frequency():
    rate, freq = 16000, 1000.0
    t = np.arange(rate) / rate
    times, freqs, db = spectrogram(np.sin(2 * np.pi * freq * t).astype(np.float32), rate)
    assert db.shape == (len(freqs), len(times)) and len(freqs) <= 100
    with pytest.raises(fg.FigureDataError, match="spectrogram: dB array is"):
        fg.spectrogram_figure(times, freqs, db.T, PROV, title="spec")
    assert abs(freqs[np.argmax(db.mean(axis=1))] - freq) <= rate / 400
    assert times[0] == pytest.approx(0.0125) and times[1] - times[0] == pytest.approx(0.01)
    fig = fg.spectrogram_figure(times, freqs, db, PROV, title="spec", trace={"times_s": [0.1, 0.2], "values": [1.0, 2.0]})
    assert fig.data[1].name == "unit activation" and fig.data[1].yaxis == "y2" and fig.layout.shapes[0].x0 == 0
    assert (fig.layout.yaxis.title.text, fig.layout.yaxis2.title.text) == ("frequency (Hz)", "activation")
    np.testing.assert_array_equal(np.asarray(fig.data[0].z), np.round(db).astype(np.int16))
    assert fig.layout.xaxis.range[1] == pytest.approx(times[-1])


def test_token_activation_figure_refuses_mismatched_lengths():
    with pytest.raises(fg.FigureDataError, match="2 tokens but 1 values"):
        fg.token_activation_figure(["a", "b"], [1.0], PROV, title="t")
    fig = fg.token_activation_figure(["▁Der", "▁Zug"], [0.1, -0.2], PROV, title="t")
    special = fg.token_activation_figure(["</s>", "__eng__"], [0.1, 0.2], PROV, title="t")
    assert list(special.data[0].x) == ["0:&lt;/s&gt;", "1:__eng__"]  # Plotly would read </s> as a tag and show "0:"
    assert list(fig.data[0].x) == ["0:▁Der", "1:▁Zug"]


def test_language_probability_bars_align_languages():
    fig = fg.language_probability_bars(RESULT, PROV)
    base, inter = fig.data
    assert list(base.x) == ["eng", "deu", "fra"]
    assert list(base.y) == [0.9, 0.1, 0.0] and list(inter.y) == [0.2, 0.7, 0.1]


def test_language_probability_bars_show_the_mass_outside_the_model_languages():
    result = {"tgt_lang": "eng",
              "baseline": {"language_probabilities": {"eng": 0.9, "deu": 0.05}, "language_probability_outside": 0.05},
              "intervened": {"language_probabilities": {"eng": 0.1, "deu": 0.1}, "language_probability_outside": 0.8}}
    base, inter = fg.language_probability_bars(result, PROV).data
    assert list(base.x) == ["eng", "deu", fg.OUTSIDE_LABEL]
    assert list(base.y) == [0.9, 0.05, 0.05] and list(inter.y) == [0.1, 0.1, 0.8]
    assert list(fg.language_probability_bars(RESULT, PROV).data[0].x) == ["eng", "deu", "fra"]


def test_dose_response_draws_set_and_random_on_a_log_axis():
    fig = _all_figures()["dose"]
    names = [t.name for t in fig.data]
    assert names == ["top units → p(deu)", "top units → p(eng)", "random units → p(deu)", "random units → p(eng)"]
    assert list(fig.data[0].x) == [1, 4] and list(fig.data[0].y) == [0.1, 0.6]
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis.title.text == fg.K_AXIS_TITLE


def test_message_figure_without_and_with_provenance():
    bare = fg.message_figure("nothing here")
    assert bare.layout.annotations[0].text == "nothing here" and not bare.layout.title.text
    named = fg.message_figure("nothing here", PROV)
    assert "demo-abc123" in named.layout.title.subtitle.text
