"""Figures of the run comparison (GET /compare, GET /compare/concept): the per-layer difference of selective-unit
counts as a diverging heatmap, and one concept's unit AP in run A against run B. Pure: data in, figure out.

Both figures name both runs' provenance (run, model, mode, corpus) under their title.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from app.components.common import OKABE_ITO, STACK_NAMES, Provenance, lang_label
from app.components.figures import DIVERGING, FONT, TEMPLATE, FigureDataError

#: Marker colour of the scatter's groups: every other unit, A's top-k only, B's top-k only, both top-k.
GROUP_STYLE = {0: ("other units", "#9fb3c8"), 1: ("top-k in A only", OKABE_ITO[5]), 2: ("top-k in B only", OKABE_ITO[0]),
               3: ("top-k in both", OKABE_ITO[2])}


def provenances(summary: Mapping[str, Any]) -> tuple[Provenance, Provenance]:
    """The provenance of run A and run B from a /compare answer."""
    runs = summary.get("runs") or {}
    return Provenance.from_run(runs.get("a") or {}), Provenance.from_run(runs.get("b") or {})


def pair_label(pair: Mapping[str, Any]) -> str:
    """A matched concept pair in words: `fra · t2tt · step 2 → 7` (modality concepts: `speech vs text · fra · …`)."""
    lang = pair.get("language")
    head = f"speech vs text · {lang or 'all'}" if pair.get("kind") == "modality" else lang_label(lang)
    steps = f"step {pair.get('step_a')}" + (f" → {pair.get('step_b')}" if pair.get("step_b") != pair.get("step_a") else "")
    return f"{head} · {pair.get('task')} · {steps}"


def _finish(fig: go.Figure, title: str, prov_a: Provenance, prov_b: Provenance, *, height: int,
            narrow: bool = False) -> go.Figure:
    """Shared layout: the title, both runs' provenance under it (each on two lines in `narrow` figures), the legend
    under the plot."""
    subtitle = f"A: {prov_a.line(wrap=narrow)}<br>B: {prov_b.line(wrap=narrow)}"
    fig.update_layout(
        template=TEMPLATE, font=FONT, height=height + (36 if narrow else 0),
        margin=dict(l=70, r=24, t=124 if narrow else 88, b=56),
        title=dict(text=title, subtitle=dict(text=subtitle, font=dict(size=11, color="#52606d")), x=0.0, xanchor="left",
                   xref="container", y=1.0, yref="container", yanchor="top", pad=dict(t=10, l=8), font=dict(size=14)),
        legend=dict(orientation="h", yanchor="top", y=-0.16, xanchor="left", x=0.0),
        meta={"provenance": {"a": prov_a.as_dict(), "b": prov_b.as_dict()}},
    )
    return fig


def layer_difference_heatmap(summary: Mapping[str, Any], selected: int | None = None) -> go.Figure:
    """Concept pair x layer: units with AP >= threshold in B minus in A (diverging, centred on zero; blue = more in B),
    the counts of both runs in the hover; the row of run A's concept `selected` is marked."""
    layers = summary.get("layers")
    if not isinstance(layers, Mapping):
        raise FigureDataError("layer differences: missing field 'layers'")
    prov_a, prov_b = provenances(summary)
    pairs = layers.get("concepts") or []
    stack = STACK_NAMES.get(layers.get("stack"), layers.get("stack"))
    title = f"Selective units (AP ≥ {layers.get('threshold', 0):g}) per {stack} layer: B − A"
    if not pairs:
        fig = go.Figure()
        fig.add_annotation(text=f"no matched concept has statistics for the {stack}", x=0.5, y=0.5, xref="paper",
                           yref="paper", showarrow=False)
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        return _finish(fig, title, prov_a, prov_b, height=300)
    diff = np.asarray(layers["diff"], dtype=float)
    count_a, count_b = np.asarray(layers["count_a"]), np.asarray(layers["count_b"])
    limit = max(float(np.abs(diff).max()), 1.0)
    x = [f"L{v}" for v in layers["layers"]]
    y = [f"▶ <b>{pair_label(p)}</b>" if p["concept_id_a"] == selected else pair_label(p) for p in pairs]
    units = layers.get("units_per_layer") or [None] * len(x)
    custom = np.stack([count_a, count_b, np.broadcast_to(np.asarray(units, dtype=object), count_a.shape),
                       np.broadcast_to(np.asarray([p["concept_id_a"] for p in pairs], dtype=object)[:, None], count_a.shape)],
                      axis=-1)
    fig = go.Figure(go.Heatmap(
        z=diff, x=x, y=y, customdata=custom, colorscale=DIVERGING, zmid=0, zmin=-limit, zmax=limit,
        texttemplate="%{z:+d}" if diff.size <= 400 else None, textfont=dict(size=11),
        colorbar=dict(title=dict(text="B − A", side="right"), thickness=12),
        hovertemplate="%{y}<br>%{x}: A %{customdata[0]}, B %{customdata[1]} of %{customdata[2]} units"
                      "<br>B − A = %{z:+d}<br>click: compare this concept<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title_text="concept (A step → B step)")
    fig.update_xaxes(title_text=f"{stack} layer", side="bottom")
    return _finish(fig, title, prov_a, prov_b, height=max(320, 150 + 26 * len(pairs)))


def ap_scatter(one: Mapping[str, Any], summary: Mapping[str, Any]) -> go.Figure:
    """Each compared unit's AP in run A (x) against run B (y), the top-k of each run highlighted, with the diagonal and
    both chance levels; hover gives the unit's id in both runs."""
    points = one.get("points")
    if not isinstance(points, Mapping):
        raise FigureDataError("concept comparison: missing field 'points'")
    prov_a, prov_b = provenances(summary)
    ap_a, ap_b = np.asarray(points["ap_a"], dtype=float), np.asarray(points["ap_b"], dtype=float)
    top = np.asarray(points["top"], dtype=int)
    ids_a, ids_b = np.asarray(points["unit_id_a"]), np.asarray(points["unit_id_b"])
    fig = go.Figure()
    for flag in (0, 1, 2, 3):
        sel = top == flag
        if not sel.any():
            continue
        name, colour = GROUP_STYLE[flag]
        fig.add_trace(go.Scattergl(
            x=ap_a[sel], y=ap_b[sel], mode="markers", name=name,
            marker=dict(size=5 if flag == 0 else 9, color=colour, opacity=0.45 if flag == 0 else 0.95,
                        line=dict(width=0 if flag == 0 else 1, color="#ffffff")),
            customdata=np.stack([ids_a[sel], ids_b[sel]], axis=-1),
            hovertemplate="unit %{customdata[0]} in A, %{customdata[1]} in B<br>AP A %{x:.4f} · B %{y:.4f}<extra></extra>"))
    moved = one.get("moved") or []
    if moved:
        fig.add_trace(go.Scattergl(
            x=[u["ap_a"] for u in moved], y=[u["ap_b"] for u in moved], mode="markers", name="moved most",
            marker=dict(size=12, symbol="circle-open", color=OKABE_ITO[7], line=dict(width=1.5)),
            customdata=[[u["unit_id_a"], u["unit_id_b"]] for u in moved],
            hovertemplate="moved: unit %{customdata[0]} in A, %{customdata[1]} in B<br>AP A %{x:.4f} · B %{y:.4f}<extra></extra>"))
    fig.add_shape(type="line", x0=0, y0=0, x1=1, y1=1, line=dict(color="#52606d", width=1, dash="dot"))
    for axis, chance in (("x", one.get("chance_ap_a")), ("y", one.get("chance_ap_b"))):
        if chance is not None:
            line = dict(color="#c3ccd6", width=1, dash="dash")
            if axis == "x":
                fig.add_shape(type="line", x0=chance, x1=chance, y0=0, y1=1, line=line)
            else:
                fig.add_shape(type="line", y0=chance, y1=chance, x0=0, x1=1, line=line)
    rho = one.get("spearman_rho")
    sampled = " (a seeded sample of them shown)" if points.get("sampled") else ""
    title = (f"Unit AP, A vs B · {one.get('n_units', 0):,} units{sampled} · Spearman ρ = "
             + ("n/a" if rho is None else f"{rho:.3f}"))
    fig.update_xaxes(title_text=f"AP in run A (step {one.get('step_a')})", range=[-0.02, 1.02], constrain="domain")
    fig.update_yaxes(title_text=f"AP in run B (step {one.get('step_b')})", range=[-0.02, 1.02], scaleanchor="x",
                     scaleratio=1, constrain="domain")
    return _finish(fig, title, prov_a, prov_b, height=520, narrow=True)


def moved_rows(moved: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The movers as table rows: ids in both runs, where they sit, both APs, the change and both ranks."""
    return [{"unit_id_a": u["unit_id_a"], "unit_id_b": u["unit_id_b"], "site": u["site"], "channel": u["channel"],
             "layer": u["layer"], "ap_a": u["ap_a"], "ap_b": u["ap_b"], "delta": u["delta"], "rank_a": u["rank_a"],
             "rank_b": u["rank_b"]} for u in moved]
