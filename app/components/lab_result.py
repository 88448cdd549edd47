"""The lab's result views: baseline and intervened outputs side by side, their audio, language probabilities and
per-token evidence; the k sweep's progress and dose-response; what fires on the input, per stack and layer."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go
from dash import dcc, html
from plotly.subplots import make_subplots

from app import ui
from app.components import figures as fg
from app.components.audio import audio_player, wav_data_uri
from app.components.common import OKABE_ITO, STACK_NAMES, Provenance
from app.components.diff import diff_view
from app.lab_logic import crossmodal_note, chart_concept_lang, dial_line, intervention_line


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
    what = intervention_line(result.get("intervention"))
    return [
        html.Div([html.H2("Result", id="lab-result-heading", tabIndex="-1"), change_badge(result),
                  html.Span(" cached" if result.get("cached") else "", className="muted")], className="result-head"),
        html.P(f"input ({inp.get('kind')}{', ' + inp.get('lang') if inp.get('lang') else ''}): {inp_text}", className="muted"),
        html.P(f"{crossmodal_note(s)} · {what}", className="muted"),
        html.P(dial_line(s), className="muted", id="lab-result-dial"),
        html.Div([
            html.Div([html.H3(f"Baseline → {base.get('top_language') or '?'}"), diff_view(result.get("diff") or [], "baseline", base.get("text")),
                      _output_audio(base, "baseline output")], className="half output-card", id="lab-out-baseline"),
            html.Div([html.H3(f"Intervened → {inter.get('top_language') or '?'}"), diff_view(result.get("diff") or [], "intervened", inter.get("text")),
                      _output_audio(inter, "intervened output")], className="half output-card", id="lab-out-intervened"),
        ], className="row"),
        html.Div([input_audio], className="input-audio") if input_audio is not None else None,
        ui.graph("lab-probs", fg.language_probability_bars(result, prov, concept_lang=chart_concept_lang(s))),
        ui.graph("lab-token-probs", token_figure(result, prov, concept_lang=chart_concept_lang(s))),
        html.Details([html.Summary("Spec, model and decoding"), html.Pre(_pretty({
            "model": result.get("model"), "run_id": result.get("run_id"), "decoding": result.get("decoding"),
            "spec": result.get("spec"), "key": result.get("key"), "timing_s": result.get("timing_s")}))]),
        html.P(prov.line(), className="provenance"),
    ]


def change_badge(result: Mapping[str, Any]) -> html.Span:
    """'changed from token n' or 'unchanged' (a finding saved before the first difference was kept says 'changed')."""
    if not result.get("changed"):
        return html.Span("unchanged", className="badge")
    first = result.get("first_difference")
    return html.Span("changed" if first is None else f"changed from token {first}", className="badge badge-changed")


def _pretty(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True)


# ----------------------------------------------------------------------------------------------- per-token evidence

SIDE_COLOURS = {"baseline": OKABE_ITO[7], "intervened": OKABE_ITO[5]}


def _layout(fig: go.Figure, title: str, prov: Provenance, height: int) -> go.Figure:
    """Title with the provenance line, and the legend under the plot (many entries: above it they overlapped)."""
    fig.update_layout(template=fg.TEMPLATE, font=fg.FONT, height=height, margin=dict(l=70, r=24, t=84, b=170),
                      title=dict(text=title, subtitle=dict(text=prov.line(), font=dict(size=11, color="#52606d")),
                                 x=0.0, xanchor="left", xref="container", y=1.0, yref="container", yanchor="top",
                                 pad=dict(t=10, l=8), font=dict(size=14)),
                      legend=dict(orientation="h", yanchor="top", y=-0.3, xanchor="left", x=0.0),
                      meta={"provenance": prov.as_dict()})
    return fig


def token_figure(result: Mapping[str, Any], prov: Provenance, *, concept_lang: str | None) -> go.Figure:
    """Per output token, baseline vs intervened: the probability that the text so far is in the target (and the
    concept's) language, and the probability greedy decoding gave each token (and the probe token's)."""
    tgt = result.get("tgt_lang")
    langs = [l for l in dict.fromkeys([concept_lang, tgt]) if l]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        subplot_titles=("language of the output so far", "probability of the token chosen at each step"))
    any_token = False
    for side in ("baseline", "intervened"):
        out = result.get(side) or {}
        tokens = out.get("tokens") or []
        x = list(range(len(tokens)))
        by_prefix = out.get("prefix_language_probabilities") or []
        for lang, dash in zip(langs, ("solid", "dot")):
            if by_prefix:
                fig.add_scatter(x=x, y=[p.get(lang, 0.0) for p in by_prefix], mode="lines+markers", row=1, col=1,
                                name=f"{side}: p({lang})", line=dict(color=SIDE_COLOURS[side], dash=dash),
                                customdata=tokens, hovertemplate="token %{x} %{customdata}<br>p=%{y:.3f}<extra></extra>")
        probs = out.get("token_probabilities")
        if probs:
            any_token = True
            fig.add_bar(x=x, y=probs, row=2, col=1, name=f"{side}: chosen token", marker_color=SIDE_COLOURS[side],
                        opacity=0.75, customdata=tokens, hovertemplate="token %{x} %{customdata}<br>p=%{y:.3f}<extra></extra>")
        probe = out.get("probe_probabilities")
        if probe:
            fig.add_scatter(x=x, y=probe, row=2, col=1, mode="lines+markers", name=f"{side}: p({out.get('probe_token')})",
                            line=dict(color=SIDE_COLOURS[side], dash="dash"), marker_symbol="x",
                            hovertemplate="step %{x}<br>p=%{y:.3f}<extra></extra>")
    fig.update_yaxes(range=[0, 1.02])
    fig.update_xaxes(title_text="output token", row=2, col=1)
    fig.update_layout(barmode="group")
    title = "Per output token: baseline vs intervened" + ("" if any_token else " (token probabilities need text output)")
    return _layout(fig, title, prov, height=520)


# -------------------------------------------------------------------------------------------------------- sweep


def sweep_progress(status: Mapping[str, Any]) -> html.Div:
    """A job's progress as a labelled progress bar (queued, generations done of the total, current stage)."""
    progress = status.get("progress") or {}
    done, total = int(progress.get("done") or 0), int(progress.get("total") or 0)
    state = status.get("state")
    if state in ("queued", "loading model"):
        text = f"{state}" + (f" ({status.get('queue_position')} ahead)" if status.get("queue_position") else "")
    else:
        text = f"{done} of {total} generations" + (f" · {progress.get('stage')}" if progress.get("stage") else "")
    return html.Div([
        html.Label("k sweep progress", htmlFor="lab-sweep-bar", className="control-label"),
        html.Progress(id="lab-sweep-bar", value=str(done), max=str(max(total, 1))),
        html.Span(text, className="muted", id="lab-sweep-status", role="status", **{"aria-live": "polite"}),
    ], className="sweep-progress", style={"display": "flex", "gap": "12px", "alignItems": "center"})


def sweep_figure(result: Mapping[str, Any], prov: Provenance) -> go.Figure:
    """Dose-response over k: the chosen set (mean ± sd over inputs) vs random units (mean ± sd over seeds)."""
    concept, tgt, chosen = result.get("concept_lang"), result.get("tgt_lang"), result.get("set")
    fig = go.Figure()
    styles = {chosen: dict(color=OKABE_ITO[5], dash="solid"), "random": dict(color=OKABE_ITO[7], dash="dot")}
    for kind in (chosen, "random"):
        pts = sorted((p for p in result.get("points") or [] if p["set"] == kind), key=lambda p: p["k"])
        spread = "sd over inputs" if kind != "random" else f"sd over {pts[0].get('n_seeds', '?') if pts else '?'} seeds"
        for lang, metric, symbol in ((concept, "p_concept", "circle"), (tgt, "p_tgt", "x")):
            if not lang or (metric == "p_tgt" and tgt == concept):
                continue
            ys = [p.get(metric) for p in pts]
            if all(y is None for y in ys):
                continue
            fig.add_scatter(x=[p["k"] for p in pts], y=ys, mode="lines+markers", marker_symbol=symbol,
                            error_y=dict(type="data", array=[p.get(f"{metric}_std") or 0 for p in pts], visible=True),
                            name=f"{kind} units → p({lang}) ({spread})",
                            line=dict(color=styles[kind]["color"], dash=styles[kind]["dash"] if metric == "p_concept" else "dashdot"),
                            hovertemplate="k=%{x}<br>p=%{y:.3f}<extra></extra>")
    base = result.get("baseline") or {}
    if base.get("p_concept") is not None:
        fig.add_hline(y=base["p_concept"], line=dict(color="#52606d", dash="dot", width=1),
                      annotation_text=f"baseline p({concept})", annotation_position="bottom right")
    ks = sorted({int(p["k"]) for p in result.get("points") or []})
    fig.update_xaxes(type="log", tickvals=ks, ticktext=[f"{k:,}" for k in ks], title_text=fg.K_AXIS_TITLE)
    fig.update_yaxes(range=[0, 1.02], title_text="output-language probability")
    title = (f"Dose–response: {chosen}-k units of {concept} vs random units (target {tgt}; "
             f"{result.get('n_inputs')} inputs, {len(result.get('seeds') or [])} random seeds)")
    return _layout(fig, title, prov, height=420)


def sweep_view(result: Mapping[str, Any], prov: Provenance) -> list[Any]:
    return [html.H2("k sweep", id="lab-sweep-heading", tabIndex="-1"),
            html.P(f"{len(result.get('outputs') or [])} generations in {result.get('seconds', 0):.1f} s on "
                   f"{result.get('n_inputs')} inputs: " + "; ".join(
                       (i.get("text") or i.get("example_id") or "?")[:40] for i in result.get("inputs") or []),
                   className="muted"),
            ui.graph("lab-dose", sweep_figure(result, prov))]


# --------------------------------------------------------------------------------------------------- what fires

RANK_WORDS = {"z": "|z| against the run's corpus (per-unit mean and sd over the matching task's items)",
              "activation": "activation", "magnitude": "|activation|"}


#: One layer's units on one wrapped line (a bullet list per layer ran a screen and a half at 1024×700).
CHIP_ROW = {"display": "flex", "flexWrap": "wrap", "gap": "4px 18px", "listStyle": "none", "margin": 0, "padding": 0}


def _unit_chip(run_id: str, u: Mapping[str, Any], stack: str, basket: bool = True) -> html.Li:
    z = f" · z {u['z']:+.1f}" if u.get("z") is not None else ""
    label = f"{u['unit_id']} {u['component']} {u['site'].rsplit('.', 1)[-1]}[{u['channel']}]"
    return html.Li([
        dcc.Link(label, href=ui.href("unit", run=run_id, unit=int(u["unit_id"])), className="unit-link",
                 title=f"{u['site']}[{u['channel']}] · activation {u['activation']:.3f}{z}"),
        html.Span(f" {u['activation']:+.2f}{z}", className="muted"),
        html.Button("+ basket", id={"type": "lab-fires-add", "unit": int(u["unit_id"])}, className="button small",
                    **{"aria-label": f"add unit {u['unit_id']} to the basket", "data-stack": stack}) if basket else None,
    ], className="fires-unit")


def fires_view(result: Mapping[str, Any], run_id: str, *, basket: bool = True,
               columns: Mapping[tuple[str, int], tuple[str, str]] | None = None) -> list[Any]:
    """Per stack, one row per layer with its top units: a link to each unit's page and (with `basket`, the lab's
    callbacks being there to take it) a button into the basket. `columns` (`figures.column_names`) names the rows
    that are not numbered layers (adapter, final norm…)."""
    inp = result.get("input") or {}
    parts: list[Any] = [
        html.H2("What fires on this input", id="lab-fires-heading", tabIndex="-1"),
        html.P(f"input: {inp.get('text') or inp.get('example_id') or 'uploaded audio ' + str(inp.get('filename'))} · decoder at step {result.get('step')} · ranked by "
               f"{RANK_WORDS.get(result.get('rank_by'), result.get('rank_by'))} · corpus: {result.get('statistics_task')} · "
               f"top {result.get('n')} per layer", className="muted"),
    ]
    if result.get("note"):
        parts.append(html.P(result["note"], className="notice notice-warning"))
    for stack in result.get("stacks") or []:
        rows = [html.Tr([html.Th((columns or {}).get((stack["stack"], int(layer["layer"])), (None, f"layer {layer['layer']}"))[1],
                                 scope="row", style={"whiteSpace": "nowrap"}),
                         html.Td(html.Ul([_unit_chip(run_id, u, stack["stack"], basket) for u in layer["units"]], className="fires-units",
                                         style=CHIP_ROW))])
                for layer in stack["layers"]]
        parts.append(html.Details([
            html.Summary(f"{STACK_NAMES.get(stack['stack'], stack['stack'])} · {len(stack['layers'])} layers · "
                         f"{stack['n_units']:,} units"),
            html.Table([html.Thead(html.Tr([html.Th("layer", scope="col"), html.Th("top units", scope="col")])),
                        html.Tbody(rows)], className="fires-table"),
        ], open=True, className="fires-stack"))
    return parts
