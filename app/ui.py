"""Page plumbing shared by every page: URL sync, graph and dropdown helpers, plain-words errors."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from dash import ClientsideFunction, Dash, Input, Output, dcc, html

from app import state as st
from app.client import BackendError

GRAPH_CONFIG = {"displaylogo": False, "displayModeBar": "hover",
                "toImageButtonOptions": {"format": "svg", "filename": "neuron-atlas"},
                "modeBarButtonsToRemove": ["lasso2d", "select2d"]}


#: What a graph shows until its callback fills it (a plain dict: no template, nothing to validate or send).
PLACEHOLDER = {"data": [], "layout": {"height": 300, "xaxis": {"visible": False}, "yaxis": {"visible": False},
                                      "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)"}}


def graph(id_: str | dict, figure: go.Figure | None = None, class_name: str = "graph") -> dcc.Graph:
    return dcc.Graph(id=id_, figure=figure if figure is not None else PLACEHOLDER, config=GRAPH_CONFIG,
                     className=class_name)


def url_sync(page: str, initial_href: str) -> html.Div:
    """The page's canonical URL store; a client-side callback writes it into the address bar (no reload, no history spam)."""
    return html.Div([dcc.Store(id=f"{page}-url", data=initial_href), html.Div(id=f"{page}-url-sink", hidden=True)])


def register_url_sync(app: Dash, page: str) -> None:
    app.clientside_callback(ClientsideFunction(namespace="atlas", function_name="syncUrl"),
                            Output(f"{page}-url-sink", "children"), Input(f"{page}-url", "data"))


def options(values: Sequence[Any], labels: Mapping[Any, str] | None = None) -> list[dict[str, Any]]:
    return [{"label": (labels or {}).get(v, str(v)), "value": v} for v in values]


def dropdown(id_: str, opts: list[dict[str, Any]], value: Any, *, clearable: bool = False,
             placeholder: str | None = None, searchable: bool = True) -> dcc.Dropdown:
    return dcc.Dropdown(id=id_, options=opts, value=value, clearable=clearable, placeholder=placeholder,
                        searchable=searchable, className="dropdown")


def radio(id_: str, opts: list[dict[str, Any]], value: Any) -> dcc.RadioItems:
    return dcc.RadioItems(id=id_, options=opts, value=value, inline=True, className="radio")


def plain(exc: Exception) -> str:
    """A message fit for the page: the backend's words, or a short generic sentence (never a traceback)."""
    if isinstance(exc, BackendError):
        return exc.message
    return f"something went wrong in the dashboard ({type(exc).__name__}); the app log has the details"


def route_error(exc: BackendError, slots: Sequence[str], default: str) -> dict[str, str]:
    """Which control's error slot a backend error belongs to: its `field` (or the field its message starts with)."""
    field = exc.field or ""
    if not field and ":" in exc.message:
        field = exc.message.split(":", 1)[0].strip()
    field = field.removeprefix("query parameter ").removeprefix("options.")
    for slot in slots:
        if field == slot or field.startswith(slot + ".") or field.startswith(slot + "["):
            return {slot: exc.message}
    return {default: exc.message}


def href(page: str, **values: Any) -> str:
    """A link to a page with the given state (other keys at their defaults)."""
    state, _ = st.parse(page, {})
    state.update(values)
    return st.href(page, state)


def unit_link(run_id: str, unit: Mapping[str, Any], concept: int | None = None) -> dcc.Link:
    label = f"unit {unit['unit_id']} · {unit.get('site', '?')}[{unit.get('channel', '?')}]"
    return dcc.Link(label, href=href("unit", run=run_id, unit=int(unit["unit_id"]), concept=concept), className="unit-link")
