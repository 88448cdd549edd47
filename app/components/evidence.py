"""Token-level evidence: a unit's activation as a colour strip over the tokens or speech frames it saw.

One colour scale per page (`strip_scale`), diverging around 0 (vermillion positive, blue negative, Okabe-Ito), so
strips of different examples compare at a glance; every token keeps its value in a tooltip, and each strip says in
words where it peaks (for screen readers and screenshots alike).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from dash import html

POSITIVE = (213, 94, 0)
NEGATIVE = (0, 114, 178)
#: Most colour stops a speech-frame strip sends (longer traces are averaged down to this many).
MAX_FRAME_STOPS = 160
SPECIAL = ("</s>", "<s>", "<pad>", "<unk>")


def strip_scale(traces: Iterable[Mapping[str, Any]]) -> float:
    """The largest |activation| over every value of the given traces (1.0 when there is none), shared by their strips."""
    peak = 0.0
    for tr in traces:
        for key in ("values", "output_values"):
            vals = np.asarray(tr.get(key) or [], dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            if len(vals):
                peak = max(peak, float(np.abs(vals).max()))
    return peak if peak > 0 else 1.0


def colour(value: float | None, scale: float) -> str:
    """Background colour of one activation: transparent at 0, full colour at ±`scale`."""
    if value is None or not np.isfinite(value):
        return "transparent"
    alpha = min(1.0, abs(value) / scale) * 0.85
    r, g, b = POSITIVE if value >= 0 else NEGATIVE
    return f"rgba({r},{g},{b},{alpha:.2f})"


def display_token(token: str) -> str:
    """A SentencePiece token as text: the word-start mark becomes a space."""
    return token.replace("▁", " ")


def _is_special(token: str) -> bool:
    return token in SPECIAL or (token.startswith("__") and token.endswith("__"))


def _peak_words(values: Sequence[float], where: Sequence[str]) -> str:
    if not len(values):
        return "no values"
    i = int(np.nanargmax(np.abs(np.asarray(values, dtype=np.float64))))
    return f"peak {values[i]:+.3f} at {where[i]}"


def token_strip(tokens: Sequence[str], values: Sequence[float] | None, scale: float, *, window: int | None = None,
                what: str = "tokens", strip_id: str | None = None) -> html.Div:
    """Tokens on a background coloured by the unit's activation; the first `window` are underlined (the positions
    the stored value pools over). Tokens without a value (none was computed) are left uncoloured.

    The tokens travel as JSON in one element's `data-strip` attribute, drawn by assets/evidence.js: a Dash component
    per token would be thousands per page of examples, which Dash's renderer takes minutes to mount."""
    values = list(values or [])
    shown, classes, tips, colours = [], [], [], []
    for i, tok in enumerate(tokens):
        v = values[i] if i < len(values) else None
        special = _is_special(tok)
        shown.append(tok if special else display_token(tok))
        classes.append("tok" + (" tok-special" if special else "") + (" tok-window" if window and i < window else ""))
        tips.append(f"{tok} · " + (f"{v:.4f}" if v is not None else "no value"))
        colours.append(colour(v, scale))
    where = [repr(display_token(t).strip() or t) for t in tokens[: len(values)]]
    summary = f"{what}: {_peak_words(values, where)}"
    if window:
        summary += f"; underlined: the first {window}, which the stored value averages"
    data = json.dumps({"tokens": shown, "classes": classes, "tips": tips, "colours": colours}, ensure_ascii=False,
                      separators=(",", ":"))
    extra = {"id": strip_id} if strip_id else {}
    return html.Div([html.Div(className="token-strip", **{"data-strip": data}),
                     html.Div(summary, className="strip-caption")], className="evidence", **extra)


def _frame_stops(values: np.ndarray, scale: float) -> str:
    n = len(values)
    if n > MAX_FRAME_STOPS:
        cuts = np.linspace(0, n, MAX_FRAME_STOPS + 1).astype(int)
        values = np.array([values[a:b].mean() for a, b in zip(cuts[:-1], cuts[1:])])
        n = len(values)
    stops = []
    for i, v in enumerate(values):
        c = colour(float(v), scale)
        stops.append(f"{c} {100 * i / n:.2f}%")
        stops.append(f"{c} {100 * (i + 1) / n:.2f}%")
    return ", ".join(stops)


def frame_strip(times_s: Sequence[float], values: Sequence[float], scale: float, *, what: str = "speech frames",
                strip_id: str | None = None, longest_s: float | None = None) -> html.Div:
    """A speech input's frames as one bar coloured left to right by the unit's activation, with its time span; with
    `longest_s` (the longest input shown alongside) the bar's width is proportional to its duration, so strips of
    different rows share one time scale."""
    vals = np.asarray(values, dtype=np.float64)
    if not len(vals):
        return html.Div(f"{what}: no frames", className="strip-caption")
    width = 100.0 if not longest_s else max(5.0, min(100.0, 100.0 * times_s[-1] / longest_s))
    bar = html.Div(className="frame-strip", title=f"{len(vals)} {what}, {times_s[0]:.2f}–{times_s[-1]:.2f} s",
                   style={"background": f"linear-gradient(to right, {_frame_stops(vals, scale)})", "width": f"{width:.1f}%"})
    where = [f"{t:.2f} s" for t in times_s]
    caption = f"{what} {times_s[0]:.2f}–{times_s[-1]:.2f} s ({len(vals)}): {_peak_words(list(vals), where)}"
    extra = {"id": strip_id} if strip_id else {}
    return html.Div([bar, html.Div(caption, className="strip-caption")], className="evidence", **extra)


def legend(scale: float) -> html.Div:
    """The page's colour scale: −scale … 0 … +scale."""
    neg, pos = f"rgba({','.join(map(str, NEGATIVE))},0.85)", f"rgba({','.join(map(str, POSITIVE))},0.85)"
    return html.Div([
        html.Span(f"{-scale:.3g}"),
        html.Span(className="strip-legend-bar", style={"background": f"linear-gradient(to right, {neg}, transparent, {pos})"}),
        html.Span(f"+{scale:.3g}"),
        html.Span("activation colour scale, shared by every strip on this page; hover a token for its value",
                  className="muted"),
    ], className="strip-legend", id="unit-strip-legend")


def longest_input_s(traces: Iterable[Mapping[str, Any]]) -> float | None:
    """The latest frame time over the traces that have frames (None when none has)."""
    ends = [float(tr["times_s"][-1]) for tr in traces if tr.get("times_s")]
    return max(ends) if ends else None


def trace_evidence(trace: Mapping[str, Any], scale: float, longest_s: float | None = None) -> list[Any]:
    """The strip of one traced item over the positions its unit sees (input tokens or speech frames for encoder
    units and cross-attention keys and values, output tokens for decoder positions), and the whole output text."""
    out: list[Any] = []
    kind = trace.get("positions")
    if kind == "decoder":
        tokens = trace.get("output_tokens") or []
        values = trace.get("output_values") or trace.get("values") or []
        out.append(token_strip(tokens, values, scale, window=len(trace.get("values") or []), what="output tokens"))
        return out
    if kind in ("speech_frames", "speech_adapter"):
        label = "speech frames" if kind == "speech_frames" else "length-adapter frames"
        out.append(frame_strip(trace.get("times_s") or [], trace.get("values") or [], scale, what=label,
                               longest_s=longest_s))
    else:
        out.append(token_strip(trace.get("tokens") or [], trace.get("values") or [], scale, what="input tokens"))
    out.append(html.Div(f"→ {trace.get('output_text') or ''}", className="output-text"))
    return out


def add_frame_strip(fig: go.Figure, trace: Mapping[str, Any], scale: float) -> go.Figure:
    """A spectrogram figure with the unit's per-frame activation as a colour strip under it, on the same time axis."""
    times, values = trace.get("times_s") or [], trace.get("values") or []
    if not times:
        return fig
    fig.add_trace(go.Heatmap(x=times, y=["unit"], z=[values], yaxis="y3", zmin=-scale, zmax=scale,
                             colorscale=[[0.0, f"rgb{NEGATIVE}"], [0.5, "rgb(255,255,255)"], [1.0, f"rgb{POSITIVE}"]],
                             showscale=False, hovertemplate="%{x:.2f} s · activation %{z:.4f}<extra></extra>"))
    fig.update_layout(yaxis=dict(domain=[0.2, 1.0]), xaxis=dict(anchor="y3"),
                      yaxis3=dict(domain=[0.0, 0.12], anchor="x", showgrid=False, ticks="", tickfont=dict(size=10)))
    if fig.layout.yaxis2.overlaying:
        fig.update_layout(yaxis2=dict(domain=[0.2, 1.0]))
    return fig
