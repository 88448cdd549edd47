"""Find units from every page: the header's search box (unit id, `site:channel`, words of a site key) with filters
(stack, component, concept, AP range), answered by `GET /runs/{run}/search` for the run in the page's URL.

Enter on a query naming one unit opens it; otherwise the matches are listed as links (ArrowDown moves into the list,
Escape closes it; assets/a11y.js). `/` focuses the box from anywhere on the page.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from dash import Dash, Input, Output, State, ctx, dcc, html, no_update

from app import context, state as st, ui
from app.client import BackendError
from app.components.common import STACK_NAMES, concept_label

RESULTS = 20
#: How a single-unit answer was read: Enter opens that unit straight away.
SINGLE = ("unit", "site_channel")
FILTER_IDS = ("unit-search-stack", "unit-search-comp", "unit-search-concept", "unit-search-min-ap", "unit-search-max-ap")


def search_box() -> html.Div:
    """The search field, its filters panel and its result list (one per page, in the header)."""
    filters = html.Details([
        html.Summary("Filters", className="button", id="unit-search-filters-summary"),
        html.Div([
            _field("Stack", dcc.Dropdown(id="unit-search-stack", options=ui.options(list(STACK_NAMES), STACK_NAMES),
                                         placeholder="any stack", className="dropdown")),
            _field("Component", dcc.Dropdown(id="unit-search-comp", options=ui.options(
                [c for c in st.COMPONENT_CHOICES if c != "all"]), placeholder="any component", className="dropdown")),
            _field("Concept (adds AP, sorts by it)", dcc.Dropdown(id="unit-search-concept", options=[],
                                                                  placeholder="none", className="dropdown")),
            html.Div([
                _field("AP from", dcc.Input(id="unit-search-min-ap", type="number", min=0, max=1, step=0.01,
                                            debounce=True, placeholder="0", className="input")),
                _field("AP to", dcc.Input(id="unit-search-max-ap", type="number", min=0, max=1, step=0.01,
                                          debounce=True, placeholder="1", className="input")),
            ], className="search-ap"),
        ], className="search-filters-panel"),
    ], id="unit-search-filters", className="search-filters")
    return html.Div([
        html.Label([html.Span("Find units", className="visually-hidden"),
                    dcc.Input(id="unit-search-q", type="search", debounce=True, autoComplete="off", maxLength=300,
                              placeholder="Find units  ( / )", className="input search-input")],
                   className="search-label"),
        html.Span("unit id (81920), site key with channel (text_decoder.layers.3.ffn.fc1:17), words of a site key "
                  "(decoder fc1), or filters; Enter opens a single unit", id="unit-search-help",
                  className="visually-hidden"),
        filters,
        html.Div(id="unit-search-results", className="search-results", hidden=True, role="region",
                 **{"aria-label": "unit search results", "aria-live": "polite"}),
    ], className="unit-search", role="search")


def search_hint() -> html.Div:
    """Where a page that could not show its unit sends the reader: the header's search box, one key away."""
    return html.Div([
        html.Button("Find another unit", className="button primary focus-search", id="unit-search-hint"),
        html.Span(" by id, site key (text_decoder.layers.3.ffn.fc1:17), words of a site key or filters: the search "
                  "box at the top of every page (press / to reach it)", className="muted"),
    ], className="actions")


def _field(label: str, component: Any) -> html.Div:
    return html.Div([html.Label(label, className="control-label"), component], className="control")


def run_of(search: str | None) -> str | None:
    """The `run` of a page's query string (None: the newest run)."""
    values = parse_qs((search or "").lstrip("?")).get("run")
    return values[-1] if values else None


def _params(stack, comp, concept, min_ap, max_ap) -> dict[str, Any]:
    return {"stack": stack or None, "component": comp or None, "concept_id": concept,
            "min_ap": min_ap if concept is not None else None, "max_ap": max_ap if concept is not None else None}


def result_list(page: dict[str, Any], concept: int | None) -> list[Any]:
    """The answer in words and one link per unit."""
    units = page["units"]
    if not units:
        return [html.P(page.get("message") or "no unit matches", className="muted")]
    head = f"{page['total']:,} unit{'s' if page['total'] != 1 else ''}" + (
        f" · first {len(units)}" if page["total"] > len(units) else "")
    if page.get("concept"):
        head += f" · AP for {concept_label(page['concept'])}, highest first"
    items = []
    for u in units:
        where = f"{STACK_NAMES.get(u['stack'], u['stack'])} layer {u['layer']} · {u['component']}"
        ap = f" · AP {u['ap']:.3f}" if u.get("ap") is not None else ""
        items.append(html.Li([
            dcc.Link(f"unit {u['unit_id']} · {u['site']}:{u['channel']}",
                     href=ui.href("unit", run=page["run_id"], unit=int(u["unit_id"]), concept=concept),
                     className="search-hit"),
            html.Span(f" {where}{ap}", className="muted"),
        ]))
    return [html.P(head, className="muted search-head"), html.Ul(items, className="search-list")]


def register_callbacks(app: Dash) -> None:
    @app.callback(Output("unit-search-results", "children"), Output("unit-search-results", "hidden"),
                  Output("unit-search-q", "value"),
                  Input("unit-search-q", "value"), *[Input(i, "value") for i in FILTER_IDS], Input("nav", "pathname"),
                  State("nav", "search"), prevent_initial_call=True)
    def search(q, stack, comp, concept, min_ap, max_ap, _path, url_search):
        if ctx.triggered_id == "nav":
            return [], True, ""
        params = _params(stack, comp, concept, min_ap, max_ap)
        if not (q or "").strip() and not any(v is not None for v in params.values()):
            return [], True, no_update
        try:
            rid = context.client().resolve_run(run_of(url_search))
            page = context.client().search_units(rid, q=(q or "").strip() or None, limit=RESULTS, **params)
        except BackendError as exc:
            return [html.P(exc.message, className="field-error", role="alert")], False, no_update
        return result_list(page, concept), False, no_update

    @app.callback(Output("nav", "href", allow_duplicate=True), Input("unit-search-q", "n_submit"),
                  State("unit-search-q", "value"), *[State(i, "value") for i in FILTER_IDS], State("nav", "search"),
                  prevent_initial_call=True)
    def open_single(_n, q, stack, comp, concept, min_ap, max_ap, url_search):
        if not (q or "").strip():
            return no_update
        try:
            rid = context.client().resolve_run(run_of(url_search))
            page = context.client().search_units(rid, q=q.strip(), limit=RESULTS,
                                                 **_params(stack, comp, concept, min_ap, max_ap))
        except BackendError:
            return no_update
        if page.get("interpreted_as") in SINGLE and page["units"]:
            return ui.href("unit", run=rid, unit=int(page["units"][0]["unit_id"]), concept=concept)
        return no_update

    @app.callback(Output("unit-search-concept", "options"), Input("unit-search-filters", "open"),
                  State("nav", "search"), prevent_initial_call=True)
    def concepts(is_open, url_search):
        if not is_open:
            return no_update
        try:
            rid = context.client().resolve_run(run_of(url_search))
            items = context.client().concepts(rid)
        except BackendError:
            return []
        return [{"label": f"{c['concept_id']} · {concept_label(c)} ({c['kind']})", "value": c["concept_id"]}
                for c in items]
