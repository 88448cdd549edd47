"""Pure figure builders: backend data in, Plotly figure out (no I/O, no Dash state), so they are unit-tested alone.

Every figure carries its provenance (run, model, mode, corpus) as the title's subtitle, labels both axes, and uses
colour scales readable with the common colour-vision deficiencies: cividis / viridis for magnitudes, RdBu (ColorBrewer,
colour-blind safe) centred on zero for correlations, and the Okabe–Ito palette for categories.
"""
from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.components.common import (
    MODALITY_COLOURS,
    OKABE_ITO,
    STACK_NAMES,
    Provenance,
    concept_label,
    step_label,
)

SEQUENTIAL = "Cividis"
COUNTS = "Viridis"
DIVERGING = "RdBu"
COMPONENT_COLOURS = {"self-attn": OKABE_ITO[0], "cross-attn": OKABE_ITO[5], "ffn": OKABE_ITO[2], "conv": OKABE_ITO[3],
                     "norm": OKABE_ITO[4], "adapter": OKABE_ITO[1]}
#: CJK web fonts first: their pieces cover only CJK code points (assets/fonts), so Latin text keeps the fonts after them.
FONT = dict(family="Noto Sans JP, Noto Sans SC, Inter, Segoe UI, Helvetica, Arial, sans-serif", size=12, color="#1f2933")
_AXIS = dict(gridcolor="#e6ebf1", linecolor="#c3ccd6", zerolinecolor="#c3ccd6", ticks="outside", tickcolor="#c3ccd6",
             automargin=True)
#: A small light template (the built-in plotly_white adds ~7 KB to every figure sent to the browser).
TEMPLATE = go.layout.Template(layout=dict(
    paper_bgcolor="#ffffff", plot_bgcolor="#ffffff", colorway=list(OKABE_ITO), font=FONT, xaxis=_AXIS, yaxis=_AXIS,
    hoverlabel=dict(font=dict(family=FONT["family"], size=12)), bargap=0.15))


class FigureDataError(ValueError):
    """The data handed to a figure builder does not have the expected shape; the message names the field."""


def _require(data: Mapping[str, Any], *fields: str, what: str) -> None:
    missing = [f for f in fields if f not in data]
    if missing:
        raise FigureDataError(f"{what}: missing field {missing[0]!r}")


def _finish(fig: go.Figure, title: str, prov: Provenance, *, height: int = 380, x_title: str | None = None,
            y_title: str | None = None, legend: bool = True, narrow: bool = False) -> go.Figure:
    """Shared layout: title with the provenance line as subtitle, axis titles, white template, tight margins.

    `narrow` figures (half a row or less) get the provenance on two lines so that none of it is cut off.
    """
    top = 96 if narrow else 80
    fig.update_layout(
        template=TEMPLATE,
        font=FONT,
        title=dict(text=title, subtitle=dict(text=prov.line(wrap=narrow), font=dict(size=11, color="#52606d")),
                   x=0.0, xanchor="left", xref="container", y=1.0, yref="container", yanchor="top", pad=dict(t=10, l=8),
                   font=dict(size=14)),
        height=height + (16 if narrow else 0),
        margin=dict(l=70, r=24, t=top, b=56),
        showlegend=legend,
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0),
        meta={"provenance": prov.as_dict()},
    )
    if x_title is not None:
        fig.update_xaxes(title_text=x_title)
    if y_title is not None:
        fig.update_yaxes(title_text=y_title)
    return fig


def message_figure(message: str, prov: Provenance | None = None, height: int = 260) -> go.Figure:
    """A figure that only says something (no data, not available), still naming its provenance when known."""
    fig = go.Figure()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=13, color="#52606d"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    if prov is not None:
        return _finish(fig, "", prov, height=height, legend=False)
    fig.update_layout(template=TEMPLATE, height=height, margin=dict(l=20, r=20, t=20, b=20))
    return fig


def _row_labels(concepts: Sequence[Mapping[str, Any]]) -> list[str]:
    """Short labels when they are unique among the rows, else the full concept description."""
    short = [concept_label(c, short=True) for c in concepts]
    if len(set(short)) == len(short):
        return short
    return [concept_label(c) for c in concepts]


def _mode_words(hm: Mapping[str, Any]) -> str:
    if hm.get("mode") == "ap":
        return f"AP ≥ {hm.get('threshold'):g}"
    return f"in the {hm.get('mode')}-{hm.get('k')} set"


# --------------------------------------------------------------------------------------------------- selectivity


#: A numbered transformer layer's site key (after the stack): `layers.3.…`, `encoder.layers.3.…`.
_NUMBERED = re.compile(r"^(?:encoder\.)?layers\.(\d+)\.")
_ADAPTER = re.compile(r"^adapter\.layers\.(\d+)\.")
#: Modules the store files under layer numbers past a stack's numbered layers: (long name, short tick label).
_AFTER_LAYERS = {"intermediate_ffn": ("intermediate FFN", "int. FFN"), "encoder.layer_norm": ("encoder final norm", "final norm"),
                 "layer_norm": ("final norm", "final norm"), "inner_layer_norm": ("final norm (after the adapter)", "final norm")}
#: Which name a mixed column's tick shows (the module with most units first).
_TICK_ORDER = ("int. FFN", "adapter", "final norm")


def _module_name(rel: str) -> tuple[str, str]:
    """(long, short) name of one site of a column past the numbered layers."""
    am = _ADAPTER.match(rel)
    if am:
        return f"adapter layer {am.group(1)}", "adapter"
    for prefix, names in _AFTER_LAYERS.items():
        if rel == prefix or rel.startswith(prefix + "."):
            return names
    return rel, rel


def column_names(layers: Sequence[Mapping[str, Any]]) -> dict[tuple[str, int], tuple[str, str]]:
    """(stack, layer) → (tick label, description) from `GET /runs/{run}/layers`: numbered transformer layers keep
    their number; the columns the store files after them are named by what they hold (intermediate FFN, adapter,
    final norm), so no column passes for a layer it is not."""
    out: dict[tuple[str, int], tuple[str, str]] = {}
    for rec in layers:
        rels = [s.split(".", 1)[1] if "." in s else s for s in rec.get("sites") or []]
        numbers = {int(m.group(1)) for m in (_NUMBERED.match(r) for r in rels) if m}
        layer = int(rec["layer"])
        if rels and len(numbers) == 1 and all(_NUMBERED.match(r) for r in rels):
            out[(rec["stack"], layer)] = (str(layer), f"layer {numbers.pop()}")
            continue
        names = list(dict.fromkeys(_module_name(r) for r in rels))
        longs = list(dict.fromkeys(n[0] for n in names))
        shorts = {n[1] for n in names}
        tick = next((s for s in _TICK_ORDER if s in shorts), names[0][1] if names else str(layer))
        out[(rec["stack"], layer)] = (tick, " + ".join(longs) or f"layer {layer}")
    return out


def _columns(stack: str, layers: Sequence[int], columns: Mapping[tuple[str, int], tuple[str, str]] | None
             ) -> tuple[list[str], list[str]]:
    """Tick labels and descriptions of a stack's heatmap columns (plain layer numbers without `columns`)."""
    names = [(columns or {}).get((stack, int(v)), (str(v), f"layer {v}")) for v in layers]
    return [n[0] for n in names], [n[1] for n in names]


def _label_columns(fig: go.Figure, layers: Sequence[int], ticks: Sequence[str]) -> None:
    """Category x axis keyed by layer number (clicks report it), drawn with the column names."""
    fig.update_xaxes(type="category", tickmode="array", tickvals=[str(v) for v in layers], ticktext=list(ticks))


def after_layer_note(hm: Mapping[str, Any], columns: Mapping[tuple[str, int], tuple[str, str]] | None) -> str | None:
    """One line naming the columns that are not numbered layers (None when every column is one)."""
    ticks, longs = _columns(hm["stack"], [int(v) for v in hm["layers"]], columns)
    per = list(hm.get("units_per_layer") or [None] * len(ticks))
    extra = [f"{layer} = {desc}" + (f" ({int(n):,} units)" if n is not None else "")
             for layer, tick, desc, n in zip(hm["layers"], ticks, longs, per) if not desc.startswith("layer ")]
    return f"{STACK_NAMES.get(hm['stack'], hm['stack'])}: columns after the numbered layers: " + "; ".join(extra) if extra else None


#: Heatmap colour scales: raw unit counts, or each count as a share of its column's units.
SCALES = ("count", "fraction")


def selectivity_heatmap(hm: Mapping[str, Any], prov: Provenance, *,
                        columns: Mapping[tuple[str, int], tuple[str, str]] | None = None, scale: str = "count") -> go.Figure:
    """Units per column (layer, or the module filed after the layers) × concept (language) of one stack, coloured by
    count or by the share of the column's units; each cell's customdata is (concept_id, layer, concept, share, column)."""
    _require(hm, "stack", "layers", "concepts", "counts", "units_per_layer", what="heatmap")
    if scale not in SCALES:
        raise FigureDataError(f"scale: expected one of {', '.join(SCALES)}, got {scale!r}")
    concepts, layers = list(hm["concepts"]), [int(v) for v in hm["layers"]]
    z = np.asarray(hm["counts"], dtype=float).reshape(len(concepts), len(layers))
    per_layer = np.asarray(hm["units_per_layer"], dtype=float)
    share = np.divide(z, per_layer[None, :], out=np.zeros_like(z), where=per_layer[None, :] > 0)
    ticks, longs = _columns(hm["stack"], layers, columns)
    labels = _row_labels(concepts)
    custom = np.empty(z.shape + (5,), dtype=object)
    for i, c in enumerate(concepts):
        for j, layer in enumerate(layers):
            custom[i, j] = (int(c["concept_id"]), layer, c.get("description") or concept_label(c), f"{share[i, j]:.1%}",
                            f"{longs[j]} ({int(per_layer[j]):,} units)")
    fraction = scale == "fraction"
    fig = go.Figure(go.Heatmap(
        z=share if fraction else z, x=[str(v) for v in layers], y=labels, customdata=custom, colorscale=COUNTS, zmin=0,
        colorbar=dict(title=dict(text="share of the column's units" if fraction else "units", side="right"),
                      thickness=12, tickformat=".1%" if fraction else None),
        hovertemplate="%{customdata[2]}<br>%{customdata[4]}: %{text} units (%{customdata[3]} of the column)"
                      "<br>click to open its units<extra></extra>",
        text=z.astype(int).astype(str),
        xgap=1, ygap=1,
    ))
    comp = f" · {hm['component']}" if hm.get("component") else ""
    what = "share of each column's units" if fraction else "units"
    title = f"{STACK_NAMES.get(hm['stack'], hm['stack'])}{comp}: {what} {_mode_words(hm)}"
    _label_columns(fig, layers, ticks)
    fig.update_yaxes(type="category", autorange="reversed")
    return _finish(fig, title, prov, height=max(330, 120 + 34 * len(concepts)), x_title="layer (then the modules after it)",
                   y_title="concept (language)", legend=False)


def component_bars(hm: Mapping[str, Any], prov: Provenance, *,
                   columns: Mapping[tuple[str, int], tuple[str, str]] | None = None) -> go.Figure:
    """Per-column counts of selected units, stacked by sub-module (component), summed over the heatmap's concepts."""
    _require(hm, "stack", "layers", "by_component", what="heatmap")
    layers = [int(v) for v in hm["layers"]]
    ticks, _ = _columns(hm["stack"], layers, columns)
    fig = go.Figure()
    for comp, rows in hm["by_component"].items():
        counts = np.asarray(rows, dtype=float).sum(axis=0) if len(rows) else np.zeros(len(layers))
        fig.add_bar(x=[str(v) for v in layers], y=counts, name=comp, marker_color=COMPONENT_COLOURS.get(comp, OKABE_ITO[7]),
                    hovertemplate=f"{comp}<br>column %{{x}}: %{{y:d}} units<extra></extra>")
    fig.update_layout(barmode="stack")
    _label_columns(fig, layers, ticks)
    title = f"{STACK_NAMES.get(hm['stack'], hm['stack'])}: by sub-module"
    return _finish(fig, title, prov, height=330, x_title="layer (then the modules after it)",
                   y_title="units (all concepts shown)", narrow=True)


def modality_map(hm: Mapping[str, Any], prov: Provenance, *,
                 columns: Mapping[tuple[str, int], tuple[str, str]] | None = None) -> go.Figure:
    """Decoder layer × site (or component) share of modality-selective units (speech vs text): the cross-attention
    k/v spike shows as its own rows when the heatmap carries `by_site` (requested with group=site).

    `hm` is a heatmap of one modality concept; colour = share of the row's units in that layer, text = count.
    """
    _require(hm, "layers", "by_component", "units_per_layer_by_component", "concepts", what="modality heatmap")
    layers = [str(v) for v in hm["layers"]]
    by, per = ("by_site", "units_per_layer_by_site") if hm.get("by_site") else ("by_component", "units_per_layer_by_component")
    comps = [c for c in hm[by] if c in hm[per]]
    counts = np.array([np.asarray(hm[by][c], dtype=float).sum(axis=0) for c in comps]).reshape(len(comps), len(layers))
    totals = np.array([hm[per][c] for c in comps], dtype=float).reshape(len(comps), len(layers))
    share = np.divide(counts, totals, out=np.full_like(counts, np.nan), where=totals > 0)
    text = np.where(totals > 0, counts.astype(int).astype(str), "")
    fig = go.Figure(go.Heatmap(
        z=share, x=layers, y=comps, text=text, texttemplate="%{text}", colorscale=SEQUENTIAL, zmin=0,
        colorbar=dict(title=dict(text="share of the row's units (cell text: count)", side="right"), tickformat=".0%",
                      thickness=12),
        customdata=np.stack([counts, totals], axis=-1),
        hovertemplate="%{y}, layer %{x}: %{customdata[0]:d} of %{customdata[1]:d} units (%{z:.1%})<extra></extra>",
        xgap=1, ygap=1,
    ))
    concept = hm["concepts"][0] if hm["concepts"] else {}
    _label_columns(fig, [int(v) for v in hm["layers"]], _columns(hm.get("stack") or "text_decoder",
                                                                 [int(v) for v in hm["layers"]], columns)[0])
    fig.update_yaxes(type="category", autorange="reversed")
    title = (f"Modality-selective decoder units ({_mode_words(hm)}) · {concept.get('task', '')} · "
             f"{step_label(concept.get('step'))}")
    fig = _finish(fig, title, prov, height=max(300, 110 + 22 * len(comps)), x_title="decoder layer (then the final norm)",
                  y_title="site" if by == "by_site" else "component", legend=False)
    fig.update_yaxes(automargin=True, title_standoff=12)
    return fig


# -------------------------------------------------------------------------------------------------- concentration


def concentration_pair(speech: Mapping[str, Any], text: Mapping[str, Any], prov: Provenance, *,
                       speech_task: str, text_task: str,
                       columns: Mapping[tuple[str, int], tuple[str, str]] | None = None) -> go.Figure:
    """Concentration heatmaps layer × language, speech-conditioned and text-conditioned side by side, one colour range;
    `columns` (from `column_names`) names the columns that are not numbered layers (adapter, final norm…).

    Each cell's customdata is (modality, language, layer, task, column description) for the drill-down.
    """
    panels = []
    for data, task, modality in ((speech, speech_task, "speech"), (text, text_task, "text")):
        _require(data, "layers", "series", "metric", "stack", what="concentration")
        rows = [s for s in data["series"] if s["task"] == task]
        panels.append((data, task, modality, rows))
    values = [v for _, _, _, rows in panels for s in rows for v in s["values"] if v is not None]
    zmin, zmax = (min(values), max(values)) if values else (0.0, 1.0)
    if zmax <= zmin:
        zmax = zmin + 1e-9
    metric = panels[0][0]["metric"]
    titles = [f"{m}-conditioned · {t} · {STACK_NAMES.get(d['stack'], d['stack'])}" for d, t, m, _ in panels]
    fig = make_subplots(rows=1, cols=2, subplot_titles=titles, horizontal_spacing=0.1)
    for col, (data, task, modality, rows) in enumerate(panels, start=1):
        layers = [str(v) for v in data["layers"]]
        ticks, longs = _columns(data["stack"], [int(v) for v in data["layers"]], columns)
        langs = [s["language"] for s in rows]
        z = np.array([[np.nan if v is None else v for v in s["values"]] for s in rows], dtype=float).reshape(len(rows), len(layers))
        custom = np.empty(z.shape + (5,), dtype=object)
        for i, lang in enumerate(langs):
            for j, layer in enumerate(data["layers"]):
                custom[i, j] = (modality, lang, int(layer), task, longs[j])
        fig.add_trace(go.Heatmap(
            z=z, x=layers, y=langs, customdata=custom, colorscale=SEQUENTIAL, zmin=zmin, zmax=zmax,
            showscale=col == 2, colorbar=dict(title=dict(text=metric, side="right"), thickness=12),
            hovertemplate=f"{modality} · %{{y}} · %{{customdata[4]}}<br>{metric} %{{z:.3f}}<br>click to list the units"
                          "<extra></extra>", xgap=1, ygap=1), row=1, col=col)
        fig.update_xaxes(type="category", tickmode="array", tickvals=layers, ticktext=ticks, title_text="layer",
                         row=1, col=col)
        fig.update_yaxes(type="category", title_text="language" if col == 1 else None, autorange="reversed", row=1, col=col)
    name = {"gini": "Gini coefficient", "top1_share": "share carried by the top 1 % of units"}.get(metric, metric)
    step = panels[0][0].get("step")
    title = f"Activation concentration ({name}) · {step_label(step)}"
    return _finish(fig, title, prov, height=360, legend=False)


def mass_units_bars(units: Sequence[Mapping[str, Any]], prov: Provenance, *, title: str, value_key: str,
                    value_title: str) -> go.Figure:
    """Horizontal bars of the units carrying the most magnitude in a concentration cell (largest first)."""
    labels = [f"#{u['unit_id']} {u.get('site', '').split('.')[-1]}[{u.get('channel', '')}]" for u in units]
    values = [abs(float(u[value_key])) if u.get(value_key) is not None else 0.0 for u in units]
    fig = go.Figure(go.Bar(x=values, y=labels, orientation="h", marker_color=OKABE_ITO[0],
                           customdata=[u["unit_id"] for u in units],
                           hovertemplate="unit %{customdata}<br>%{x:.4f}<extra></extra>"))
    fig.update_yaxes(type="category", autorange="reversed")
    return _finish(fig, title, prov, height=max(240, 90 + 22 * len(units)), x_title=value_title, y_title="unit",
                   legend=False, narrow=True)


# ------------------------------------------------------------------------------------------------------ cross-modal


def overlap_matrix(data: Mapping[str, Any], prov: Provenance) -> go.Figure:
    """Text language × speech language overlap of decoder unit sets, each cell annotated with its chance level."""
    _require(data, "text_langs", "speech_langs", "matrix", "chance", "metric", what="overlap")
    z = np.array([[np.nan if v is None else v for v in row] for row in data["matrix"]], dtype=float)
    chance = np.array([[np.nan if v is None else v for v in row] for row in data["chance"]], dtype=float)
    fmt = "{:.0f}" if data["metric"] == "count" else "{:.2f}"
    text = [[("" if np.isnan(z[i, j]) else fmt.format(z[i, j])) + ("" if np.isnan(chance[i, j]) else f"<br>(chance {fmt.format(chance[i, j])})")
             for j in range(z.shape[1])] for i in range(z.shape[0])]
    custom = [[(t, s) for s in data["speech_langs"]] for t in data["text_langs"]]
    metric_name = {"count": "shared units", "c_over_k": "shared units / k", "jaccard": "Jaccard index"}[data["metric"]]
    finite = np.concatenate([z[np.isfinite(z)], chance[np.isfinite(chance)]])
    zmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    fig = go.Figure(go.Heatmap(
        z=z, x=data["speech_langs"], y=data["text_langs"], text=text, texttemplate="%{text}", customdata=custom,
        colorscale=SEQUENTIAL, zmin=0, zmax=zmax, colorbar=dict(title=dict(text=metric_name, side="right"), thickness=12),
        hovertemplate="text %{y} × speech %{x}<br>" + metric_name + " %{z:.3f}<br>click to list the shared units<extra></extra>",
        xgap=2, ygap=2,
    ))
    fig.update_xaxes(type="category", side="bottom")
    fig.update_yaxes(type="category", autorange="reversed")
    title = f"Overlap of {data.get('set_kind', 'top')}-{data.get('k')} decoder units · {data.get('role')} · step {data.get('step')}"
    return _finish(fig, title, prov, height=360, x_title="speech language (units found on speech)",
                   y_title="text language (units found on text)", legend=False)


def spearman_matrix(data: Mapping[str, Any], prov: Provenance, layer: int | None = None) -> go.Figure:
    """Spearman ρ of decoder AP vectors, text language × speech language (one layer for the per-layer scope)."""
    _require(data, "text_langs", "speech_langs", "matrices", what="spearman")
    mats = data["matrices"]
    if not mats:
        raise FigureDataError("spearman: no matrices")
    chosen = next((m for m in mats if layer is not None and m["layer"] == layer), mats[0])
    z = np.array([[np.nan if v is None else v for v in row] for row in chosen["matrix"]], dtype=float)
    text = [["" if np.isnan(v) else f"{v:.2f}" for v in row] for row in z]
    custom = [[(t, s) for s in data["speech_langs"]] for t in data["text_langs"]]
    fig = go.Figure(go.Heatmap(
        z=z, x=data["speech_langs"], y=data["text_langs"], text=text, texttemplate="%{text}", customdata=custom,
        colorscale=DIVERGING, zmid=0, zmin=-1, zmax=1, colorbar=dict(title=dict(text="Spearman ρ", side="right"), thickness=12),
        hovertemplate="text %{y} × speech %{x}<br>ρ = %{z:.3f}<br>click to list the shared units<extra></extra>",
        xgap=2, ygap=2,
    ))
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category", autorange="reversed")
    scope = str(data.get("scope", "text_decoder")).removeprefix("text_decoder").lstrip("/") or "whole decoder"
    where = f"layer {chosen['layer']}" if chosen.get("layer", -1) >= 0 else scope
    title = f"Spearman ρ of AP · {data.get('role')} · {where} ({chosen.get('n_units')} units) · step {data.get('step')}"
    return _finish(fig, title, prov, height=360, x_title="speech language", y_title="text language", legend=False)


def spearman_by_layer(data: Mapping[str, Any], prov: Provenance) -> go.Figure:
    """Diagonal (same-language) and off-diagonal mean ρ per decoder layer for the per-layer scope."""
    _require(data, "text_langs", "speech_langs", "matrices", what="spearman")
    layers, same, other = [], [], []
    for m in data["matrices"]:
        z = np.array([[np.nan if v is None else v for v in row] for row in m["matrix"]], dtype=float)
        mask = np.array([[t == s for s in data["speech_langs"]] for t in data["text_langs"]])
        layers.append(str(m["layer"]))
        same.append(float(np.nanmean(z[mask])) if mask.any() and np.isfinite(z[mask]).any() else None)
        other.append(float(np.nanmean(z[~mask])) if (~mask).any() and np.isfinite(z[~mask]).any() else None)
    fig = go.Figure()
    fig.add_scatter(x=layers, y=same, mode="lines+markers", name="same language", line_color=OKABE_ITO[0])
    fig.add_scatter(x=layers, y=other, mode="lines+markers", name="different languages", line_color=OKABE_ITO[1],
                    line_dash="dash")
    fig.update_xaxes(type="category")
    fig.update_yaxes(range=[-1, 1], zeroline=True)
    title = f"Mean Spearman ρ per decoder layer · {data.get('role')} · step {data.get('step')}"
    return _finish(fig, title, prov, height=300, x_title="decoder layer", y_title="mean ρ")


# ------------------------------------------------------------------------------------------------------- layer, unit


def ap_histogram(aps: Sequence[float | None], chance: float | None, prov: Provenance, *, title: str) -> go.Figure:
    """Histogram of one layer's unit APs for a concept, with the chance level marked."""
    values = np.array([v for v in aps if v is not None], dtype=float)
    fig = go.Figure(go.Histogram(x=values, xbins=dict(start=0.0, end=1.0001, size=0.02), marker_color=OKABE_ITO[0],
                                 hovertemplate="AP %{x}<br>%{y} units<extra></extra>"))
    if chance is not None:
        fig.add_vline(x=chance, line_dash="dash", line_color=OKABE_ITO[5],
                      annotation_text=f"chance {chance:.2f}", annotation_position="top")
    fig.update_xaxes(range=[0, 1])
    return _finish(fig, f"{title} · {len(values)} units", prov, height=300, x_title="average precision (AP)",
                   y_title="units", legend=False, narrow=True)


TASK_SHORT = {"asr": "asr", "s2tt": "s2tt", "t2tt": "t2tt", "en2x_s2tt": "en→x s2tt", "en2x_t2tt": "en→x t2tt",
              "s2tt+t2tt": "s2tt+t2tt", "en2x_s2tt+en2x_t2tt": "en→x s+t"}
KIND_SHORT = {"language": "language", "multimodal_language": "speech+text language", "modality": "speech vs text"}


def unit_ap_profile(unit: Mapping[str, Any], prov: Provenance, *, step: int | None = None,
                    highlight: int | None = None) -> go.Figure:
    """A unit's AP for every concept (of one step when given), grouped by kind, with each concept's chance level."""
    _require(unit, "stats", "unit_id", what="unit")
    stats = [s for s in unit["stats"] if step is None or s.get("step") == step]
    order = {k: i for i, k in enumerate(KIND_SHORT)}
    stats.sort(key=lambda s: (order.get(s.get("kind"), 9), s.get("task") or "", s.get("language") or "", s.get("step") or 0))
    outer = [KIND_SHORT.get(s.get("kind"), str(s.get("kind"))) for s in stats]
    inner = [f"{TASK_SHORT.get(s.get('task'), s.get('task'))} {s.get('language') or 'all'}"
             + ("" if step is not None else f" s{s.get('step')}") for s in stats]
    fig = go.Figure()
    kinds = list(dict.fromkeys(s.get("kind") for s in stats))
    for i, kind in enumerate(kinds):
        idx = [j for j, s in enumerate(stats) if s.get("kind") == kind]
        fig.add_bar(x=[[outer[j] for j in idx], [inner[j] for j in idx]], y=[stats[j].get("ap") for j in idx],
                    name=KIND_SHORT.get(kind, str(kind)), marker_color=OKABE_ITO[i % len(OKABE_ITO)],
                    marker_line=dict(width=[3 if stats[j].get("concept_id") == highlight else 0 for j in idx], color="#000"),
                    customdata=[[stats[j].get("concept_id"), stats[j].get("description") or inner[j]] for j in idx],
                    hovertemplate="%{customdata[1]}<br>AP %{y:.3f} · concept %{customdata[0]}<extra></extra>")
    fig.add_scatter(x=[outer, inner], y=[s.get("chance_ap") for s in stats], mode="markers", name="chance",
                    marker=dict(symbol="line-ew-open", size=16, color="#000", line=dict(width=2)),
                    hovertemplate="chance %{y:.3f}<extra></extra>")
    fig.update_xaxes(tickangle=-90, tickfont=dict(size=9), tickmode="linear", dtick=1)  # every bar named: no skipping
    fig.update_yaxes(range=[0, 1.02])
    title = f"Unit {unit['unit_id']}: AP per concept" + (f" · step {step}" if step is not None else "")
    return _finish(fig, title, prov, height=400, x_title=None, y_title="average precision (AP)", narrow=True)


def language_modality_distribution(acts: Mapping[str, Any], prov: Provenance, *, step: int | None = None) -> go.Figure:
    """A unit's pooled activation per language × input modality, one box per (language, modality, task) drawn from
    the store's quantiles (whiskers p05–p95, box p25–p75, median, mean dashed), speech and text in their own colours."""
    _require(acts, "groups", "unit_id", what="activations")
    groups = [g for g in acts["groups"] if (step is None or g.get("step") in (None, step))
              and (g.get("quantiles") or {}).get("p50") is not None]
    if not groups:
        raise FigureDataError(f"unit {acts['unit_id']}: no stored distribution" + (f" at step {step}" if step is not None else ""))
    groups.sort(key=lambda g: (str(g.get("language")), str(g.get("modality")), str(g.get("task"))))
    fig = go.Figure()
    for i, modality in enumerate(sorted({str(g.get("modality")) for g in groups})):
        mine = [g for g in groups if str(g.get("modality")) == modality]
        q = {name: [g["quantiles"][name] for g in mine] for name in ("p05", "p25", "p50", "p75", "p95")}
        fig.add_trace(go.Box(
            y=[f"{g['language']} · {modality} · {g['task']}" for g in mine], q1=q["p25"], median=q["p50"], q3=q["p75"],
            lowerfence=q["p05"], upperfence=q["p95"], mean=[g.get("mean") for g in mine], boxmean=True,
            orientation="h", name=f"{modality} input", marker_color=OKABE_ITO[(1 + 4 * i) % len(OKABE_ITO)],
            customdata=[[g.get("n")] for g in mine],
            hovertemplate="%{y}<br>median %{median:.4f} · p25–p75 %{q1:.4f}–%{q3:.4f}<extra></extra>"))
    labels = [f"{g['language']} · {g['modality']} · {g['task']}" for g in groups]
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=labels, autorange="reversed")
    title = f"Unit {acts['unit_id']}: pooled activation by language × input modality" + (
        f" · step {step}" if step is not None else "")
    return _finish(fig, title, prov, height=max(300, 120 + 22 * len(labels)), x_title="pooled activation (p05–p95 whiskers)",
                   y_title="language · input · task", legend=True, narrow=True)


# ---------------------------------------------------------------------------------------------- spoken vs written


def spectrogram_figure(times: np.ndarray, freqs: np.ndarray, db: np.ndarray, prov: Provenance, *, title: str,
                       trace: Mapping[str, Any] | None = None) -> go.Figure:
    """Spectrogram (time × frequency, dB) with the unit's per-frame activation over it when a trace is given.

    dB values are sent as whole numbers (the colour scale cannot show finer steps). The vertical line (shape 0) is
    the playhead, moved by assets/app.js while the audio plays.
    """
    db = np.asarray(db)
    if db.shape != (len(freqs), len(times)):
        raise FigureDataError(f"spectrogram: dB array is {db.shape}, expected {(len(freqs), len(times))}")
    fig = go.Figure(go.Heatmap(x=np.round(times, 3), y=np.round(freqs, 1), z=np.round(db).astype(np.int16),
                               colorscale="Greys", reversescale=True, showscale=False,
                               hovertemplate="%{x:.2f} s · %{y:.0f} Hz · %{z} dB<extra></extra>"))
    if trace is not None:
        _require(trace, "times_s", "values", what="trace")
        fig.add_trace(go.Scatter(x=trace["times_s"], y=trace["values"], mode="lines", name="unit activation", yaxis="y2",
                                 line=dict(color=OKABE_ITO[5], width=2.5),
                                 hovertemplate="%{x:.2f} s · activation %{y:.4f}<extra></extra>"))
        fig.update_layout(yaxis2=dict(title=dict(text="activation"), overlaying="y", side="right", showgrid=False))
    duration = float(times[-1]) if len(times) else 0.0
    fig.add_shape(type="line", x0=0, x1=0, y0=0, y1=1, yref="paper", line=dict(color=OKABE_ITO[0], width=2))
    fig.update_xaxes(range=[0, max(duration, 1e-3)])
    fig.update_layout(yaxis=dict(title=dict(text="frequency (Hz)")))
    return _finish(fig, title, prov, height=300, x_title="time (s)", legend=trace is not None, narrow=True)


def token_activation_figure(tokens: Sequence[str], values: Sequence[float], prov: Provenance, *, title: str) -> go.Figure:
    """The unit's activation at each text token of the written sentence."""
    if len(tokens) != len(values):
        raise FigureDataError(f"trace: {len(tokens)} tokens but {len(values)} values")
    labels = [f"{i}:{html.escape(t)}" for i, t in enumerate(tokens)]
    colours = [OKABE_ITO[5] if v >= 0 else OKABE_ITO[0] for v in values]
    fig = go.Figure(go.Bar(x=labels, y=list(values), marker_color=colours,
                           hovertemplate="%{x}<br>activation %{y:.4f}<extra></extra>"))
    fig.update_xaxes(type="category", tickangle=-40)
    return _finish(fig, title, prov, height=300, x_title="text token", y_title="activation", legend=False, narrow=True)


def modality_ap_bars(items: Sequence[Mapping[str, Any]], prov: Provenance, *, title: str) -> go.Figure:
    """The unit's AP for the sentence's language in each modality (speech vs text), each with its chance level."""
    fig = go.Figure()
    for it in items:
        fig.add_bar(x=[it["label"]], y=[it.get("ap")], name=it["label"],
                    marker_color=MODALITY_COLOURS.get(it.get("modality"), OKABE_ITO[2]),
                    hovertemplate="%{x}<br>AP %{y:.3f}<extra></extra>")
    fig.add_scatter(x=[it["label"] for it in items], y=[it.get("chance") for it in items], mode="markers", name="chance",
                    marker=dict(symbol="line-ew-open", size=28, color="#000", line=dict(width=2)))
    fig.update_yaxes(range=[0, 1.02])
    return _finish(fig, title, prov, height=280, x_title="modality (concept)", y_title="AP", legend=False, narrow=True)


# ---------------------------------------------------------------------------------------------------------- lab


#: Bar of the identifier's mass on languages the model does not generate (or on no language at all).
OUTSIDE_LABEL = "other / none"


def language_probability_bars(result: Mapping[str, Any], prov: Provenance, *, concept_lang: str | None = None) -> go.Figure:
    """Output-language probabilities of the baseline and the intervened output, side by side per language."""
    _require(result, "baseline", "intervened", what="intervention result")
    base = result["baseline"].get("language_probabilities") or {}
    inter = result["intervened"].get("language_probabilities") or {}
    langs = list(dict.fromkeys([*base, *inter]))
    outside = [result[side].get("language_probability_outside") for side in ("baseline", "intervened")]
    if any(o is not None and o >= 0.005 for o in outside):
        langs.append(OUTSIDE_LABEL)
        base, inter = ({**probs, OUTSIDE_LABEL: o or 0.0} for probs, o in zip((base, inter), outside))
    fig = go.Figure()
    fig.add_bar(x=langs, y=[base.get(l, 0.0) for l in langs], name="baseline", marker_color=OKABE_ITO[7],
                hovertemplate="baseline · %{x}: %{y:.3f}<extra></extra>")
    fig.add_bar(x=langs, y=[inter.get(l, 0.0) for l in langs], name="intervened", marker_color=OKABE_ITO[5],
                hovertemplate="intervened · %{x}: %{y:.3f}<extra></extra>")
    tgt = result.get("tgt_lang")
    title = f"Output-language probability · target {tgt}" + (f" · units of {concept_lang}" if concept_lang else "")
    fig.update_layout(barmode="group")
    fig.update_xaxes(type="category")
    fig.update_yaxes(range=[0, 1])
    return _finish(fig, title, prov, height=300, x_title="language (identifier)", y_title="probability")


#: Column order of the batch-intervention table per experiment (set_kind or unit_source), with readable names.
K_AXIS_TITLE = "k (per set; both = 2k units, log scale)"


def _k_axis(fig: go.Figure, ks: Sequence[Any]) -> None:
    """Log k axis ticked at the k values swept (Plotly's minor log ticks read as bare digits: '2' for 200)."""
    values = sorted({int(k) for k in ks if k})
    fig.update_xaxes(type="log", tickvals=values, ticktext=[f"{k:,}" for k in values])


BATCH_COLUMNS = {
    "ablation": (("set_kind", "baseline", "baseline"), ("set_kind", "top", "top k"), ("set_kind", "bottom", "bottom k"),
                 ("set_kind", "both", "both 2k"), ("set_kind", "random_top", "random k"),
                 ("set_kind", "random_both", "random 2k")),
    "steering": (("set_kind", "baseline", "baseline"), ("unit_source", "same-modality", "same modality"),
                 ("unit_source", "cross-modal", "cross-modal"), ("unit_source", "random", "random 2k")),
}


def batch_interventions(conditions: Sequence[Mapping[str, Any]], prov: Provenance, *, experiment: str, input_task: str,
                        step: int | None) -> go.Figure:
    """The stored batch experiments of one input task: language × condition heatmap of the mean probability that
    the output is in the concept's language (ablation: lower = the units mattered; steering: higher = they steer),
    or for `dose` that probability against k, chosen units vs random."""
    rows = [c for c in conditions if c["experiment"] == experiment and c["input_task"] == input_task]
    langs = list(dict.fromkeys(c["language"] for c in rows))
    if not rows:
        return message_figure(f"this run stored no {experiment} experiments for {input_task}", prov)
    stored_steps = sorted({int(c["step"]) for c in rows if c["set_kind"] != "baseline" and c.get("step") is not None})
    if step not in stored_steps:
        where = f"stored at step {', '.join(map(str, stored_steps))}" if stored_steps else "none stored with units"
        return message_figure(f"no {experiment} conditions for {input_task} at step {step} ({where}): pick that step", prov)
    rows = [c for c in rows if c["set_kind"] == "baseline" or c.get("step") == step]
    if experiment == "dose":
        fig = go.Figure()
        for i, lang in enumerate(langs):
            colour = OKABE_ITO[i % len(OKABE_ITO)]
            for kind, dash in (("both", "solid"), ("random_both", "dot")):
                pts = sorted((c for c in rows if c["language"] == lang and c["set_kind"] == kind
                              and c.get("mean_p_concept_lang") is not None), key=lambda c: c["k"])
                if pts:
                    fig.add_scatter(x=[c["k"] for c in pts], y=[c["mean_p_concept_lang"] for c in pts],
                                    mode="lines+markers", line=dict(color=colour, dash=dash),
                                    name=f"{lang} · {'both' if kind == 'both' else 'random'}",
                                    hovertemplate=f"{lang} {kind}<br>k=%{{x}}: p=%{{y:.3f}}<extra></extra>")
        _k_axis(fig, [c["k"] for c in rows])
        fig.update_yaxes(range=[0, 1])
        title = f"Stored dose–response · {input_task} · step {step}: control units of L forced (solid) vs random (dotted)"
        return _finish(fig, title, prov, height=360, x_title=K_AXIS_TITLE, y_title="p(output in L)")
    columns = BATCH_COLUMNS[experiment]
    z = np.full((len(langs), len(columns)), np.nan)
    n = np.zeros_like(z)
    for c in rows:
        if c["set_kind"] != "baseline" and c.get("step") != step:
            continue
        for j, (field, value, _) in enumerate(columns):
            if c.get(field) == value and c.get("mean_p_concept_lang") is not None:
                z[langs.index(c["language"]), j] = c["mean_p_concept_lang"]
                n[langs.index(c["language"]), j] = c.get("n_items") or 0
    text = [["" if np.isnan(v) else f"{v:.2f}" for v in row] for row in z]
    fig = go.Figure(go.Heatmap(
        z=z, x=[name for _, _, name in columns], y=langs, text=text, texttemplate="%{text}", colorscale=SEQUENTIAL,
        zmin=0, zmax=1, customdata=n, xgap=1, ygap=1,
        colorbar=dict(title=dict(text="p(output in L)", side="right"), thickness=12),
        hovertemplate="L=%{y} · %{x}: %{z:.3f} (%{customdata:.0f} items)<extra></extra>"))
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category", autorange="reversed")
    what = "ablating L's units on L's inputs" if experiment == "ablation" else "steering other inputs toward L"
    ks = sorted({int(c["k"]) for c in rows if c["set_kind"] != "baseline" and c.get("step") == step and c.get("k")})
    sizes = f" · k = {', '.join(map(str, ks))} per set" if ks else ""
    return _finish(fig, f"Stored {experiment} · {input_task} · step {step}{sizes}: {what}", prov,
                   height=max(300, 120 + 34 * len(langs)), x_title="condition", y_title="concept language L",
                   legend=False)


def dose_response(points: Sequence[Mapping[str, Any]], prov: Provenance, *, concept_lang: str, tgt_lang: str,
                  set_kind: str) -> go.Figure:
    """k sweep: output-language probability against the number of forced units, chosen set vs random control."""
    fig = go.Figure()
    styles = {set_kind: dict(color=OKABE_ITO[5], dash="solid"), "random": dict(color=OKABE_ITO[7], dash="dot")}
    for kind in (set_kind, "random"):
        pts = sorted((p for p in points if p["set"] == kind and p.get("p_concept") is not None), key=lambda p: p["k"])
        if not pts:
            continue
        fig.add_scatter(x=[p["k"] for p in pts], y=[p["p_concept"] for p in pts], mode="lines+markers",
                        name=f"{kind} units → p({concept_lang})", line=styles[kind],
                        hovertemplate="k=%{x}<br>p=%{y:.3f}<extra></extra>")
        if tgt_lang != concept_lang:
            fig.add_scatter(x=[p["k"] for p in pts], y=[p["p_tgt"] for p in pts], mode="lines+markers",
                            name=f"{kind} units → p({tgt_lang})", line=dict(color=styles[kind]["color"], dash="dashdot"),
                            marker_symbol="x", opacity=0.6, hovertemplate="k=%{x}<br>p=%{y:.3f}<extra></extra>")
    _k_axis(fig, [p["k"] for p in points])
    fig.update_yaxes(range=[0, 1])
    title = f"Dose–response: forcing {set_kind}-k units of {concept_lang} vs random units (target {tgt_lang})"
    return _finish(fig, title, prov, height=320, x_title=K_AXIS_TITLE, y_title="output-language probability")
