"""The lab's result view: baseline and intervened outputs side by side, their audio, language probabilities."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dash import html

from app import ui
from app.components import figures as fg
from app.components.audio import audio_player, wav_data_uri
from app.components.common import Provenance
from app.components.diff import diff_view
from app.lab_logic import crossmodal_note, chart_concept_lang, intervention_line


def _output_audio(out: Mapping[str, Any], label: str) -> html.Div:
    audio = out.get("audio") or {}
    if audio.get("wav_base64"):
        return audio_player(wav_data_uri(audio["wav_base64"]), label, source=audio.get("audio_source"), note=audio.get("note"))
    return audio_player(None, label, source=audio.get("audio_source"), error=audio.get("error") or "no audio returned")


def input_audio_player(s: Mapping[str, Any], upload: Mapping[str, Any] | None, mic: Mapping[str, Any] | None) -> html.Div | None:
    if s["in"] == "example" and s["mod"] == "speech":
        return audio_player(f"/media/audio/{s['run']}/{s['ex']}", "input", source="corpus")
    if s["in"] == "upload" and upload:
        return audio_player(upload["contents"], f"input · {upload.get('filename')}", source="upload")
    if s["in"] == "mic" and mic:
        return audio_player(mic["contents"], "input · microphone", source="mic")
    return None


def result_view(result: Mapping[str, Any], s: Mapping[str, Any], prov: Provenance, input_audio: html.Div | None) -> list[Any]:
    base, inter = result["baseline"], result["intervened"]
    inp = result.get("input") or {}
    inp_text = inp.get("text") or inp.get("filename") or inp.get("example_id") or "audio"
    changed = result.get("changed")
    badge = (html.Span(f"changed from token {result.get('first_difference')}", className="badge badge-changed") if changed
             else html.Span("unchanged", className="badge"))
    what = intervention_line(result.get("intervention"))
    return [
        html.Div([html.H2("Result"), badge, html.Span(" cached" if result.get("cached") else "", className="muted")],
                 className="result-head"),
        html.P(f"input ({inp.get('kind')}{', ' + inp.get('lang') if inp.get('lang') else ''}): {inp_text}", className="muted"),
        html.P(f"{crossmodal_note(s)} · {what}", className="muted"),
        html.Div([
            html.Div([html.H3(f"Baseline → {base.get('top_language') or '?'}"), diff_view(result.get("diff") or [], "baseline", base.get("text")),
                      _output_audio(base, "baseline output")], className="half output-card", id="lab-out-baseline"),
            html.Div([html.H3(f"Intervened → {inter.get('top_language') or '?'}"), diff_view(result.get("diff") or [], "intervened", inter.get("text")),
                      _output_audio(inter, "intervened output")], className="half output-card", id="lab-out-intervened"),
        ], className="row"),
        html.Div([input_audio], className="input-audio") if input_audio is not None else None,
        ui.graph("lab-probs", fg.language_probability_bars(result, prov, concept_lang=chart_concept_lang(s))),
        html.Details([html.Summary("Spec, model and decoding"), html.Pre(_pretty({
            "model": result.get("model"), "run_id": result.get("run_id"), "decoding": result.get("decoding"),
            "spec": result.get("spec"), "key": result.get("key"), "timing_s": result.get("timing_s")}))]),
        html.P(prov.line(), className="provenance"),
    ]


def _pretty(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True)
