"""Figures of the bridge page: spectrogram, a k/v unit's strip and the token × time attention band on one time axis."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.components.audio import AudioDataError, read_wav, spectrogram


def token_labels(result: Mapping[str, Any]) -> list[str]:
    """`3 · ▁train`: index and token, so repeated tokens stay distinct rows."""
    return [f"{i} · {t}" for i, t in enumerate(result["tokens"])]


def bridge_figure(result: Mapping[str, Any], wav: bytes | None = None) -> go.Figure:
    """Spectrogram (when the WAV is given), the unit strip (when the answer has a unit) and the attention band, on
    one time axis in seconds; each token's peak column is marked and the chosen span shaded."""
    cols = result["columns"]
    centres = np.asarray(cols["centres_s"], dtype=float)
    rows: list[str] = []
    spec = None
    if wav is not None:
        try:
            x, rate = read_wav(wav)
            spec = spectrogram(x, rate)
            rows.append("spectrogram")
        except AudioDataError:
            spec = None
    if result.get("unit"):
        rows.append("unit")
    rows.append("band")
    n_tok = len(result["tokens"])
    heights = {"spectrogram": 0.32, "unit": 0.08, "band": max(0.3, min(0.6, 0.03 * n_tok))}
    fig = make_subplots(rows=len(rows), cols=1, shared_xaxes=True, vertical_spacing=0.04,
                        row_heights=[heights[r] for r in rows])
    row = {name: i + 1 for i, name in enumerate(rows)}
    if spec is not None:
        times, freqs, db = spec
        fig.add_trace(go.Heatmap(x=times, y=freqs, z=db, colorscale="Greys", reversescale=True, showscale=False,
                                 name="spectrogram", hovertemplate="%{x:.2f} s · %{y:.0f} Hz<extra></extra>"),
                      row=row["spectrogram"], col=1)
        fig.update_yaxes(title_text="Hz", row=row["spectrogram"], col=1)
    if "unit" in row:
        unit = result["unit"]
        fig.add_trace(go.Heatmap(x=centres, y=[f"unit {unit['unit_id']}"], z=[unit["values"]], colorscale="RdBu",
                                 zmid=0, showscale=False, name="unit",
                                 hovertemplate="%{x:.2f} s · value %{z:.4f}<extra></extra>"),
                      row=row["unit"], col=1)
    labels = token_labels(result)
    fig.add_trace(go.Heatmap(x=centres, y=labels, z=result["weights"], colorscale="Viridis", zmin=0,
                             colorbar={"title": "weight", "len": 0.4, "y": 0.2}, name="attention",
                             hovertemplate="%{y}<br>column at %{x:.2f} s · weight %{z:.3f}<extra></extra>"),
                  row=row["band"], col=1)
    fig.add_trace(go.Scatter(x=[p["time_s"] for p in result["peaks"]], y=labels, mode="markers", name="peak",
                             marker={"symbol": "circle-open", "color": "#e4572e", "size": 9, "line": {"width": 2}},
                             hovertemplate="%{y}: peak at %{x:.2f} s<extra></extra>"), row=row["band"], col=1)
    fig.update_yaxes(autorange="reversed", row=row["band"], col=1)
    span = result.get("span")
    if span:
        fig.add_vrect(x0=span["start_s"], x1=span["end_s"], fillcolor="#f2c14e", opacity=0.25, line_width=0)
    fig.update_xaxes(title_text="time (s)", range=[0, result["duration_s"]], row=len(rows), col=1)
    fig.update_layout(height=260 + 22 * n_tok + (260 if spec is not None else 0), margin={"l": 110, "r": 20, "t": 30, "b": 40},
                      showlegend=False, clickmode="event",
                      title={"text": f"{result['text']} · layers {_ranges(result['layers'])} · heads {_ranges(result['heads'])}",
                             "font": {"size": 13}})
    return fig


def _ranges(values: list[int]) -> str:
    return ", ".join(str(v) for v in values)
