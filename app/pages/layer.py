"""Layer: one layer's units in a server-paged, sortable grid with a concept's statistics, and its AP histogram.

URL state keys: run, stack, layer, concept, sort, order, comp, site, min_ap, max_ap. The grid asks the backend for
one block of rows at a time (sorting and filtering happen in the store), so a layer of 8,192 units stays fast.
Clicking a row opens the unit page.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dash_ag_grid as dag
from dash import ClientsideFunction, Dash, Input, Output, State, dcc, html, no_update

from app import context, state as st, ui
from app.client import BackendError
from app.components import figures as fg
from app.components.common import STACK_NAMES, concept_label, control, error_text, loading, notice

PAGE = "layer"
SORTABLE = ("unit_id", "ap", "on_p50", "on_p90", "off_mean", "off_p50")
BLOCK = 100
NUM = {"type": "rightAligned", "valueFormatter": {"function": "params.value == null ? '' : d3.format('.4f')(params.value)"}}


def short_site(site: str) -> str:
    """`text_decoder.layers.1.cross_attention.k_proj` → `cross_attention.k_proj`."""
    parts = site.split(".")
    if "layers" in parts:
        i = parts.index("layers")
        return ".".join(parts[i + 2:]) or site
    return ".".join(parts[1:]) or site


def column_defs(sort: str, order: str) -> list[dict[str, Any]]:
    cols = [
        {"field": "unit_id", "headerName": "unit", "width": 82},
        {"field": "site_short", "headerName": "site", "sortable": False, "tooltipField": "site", "flex": 1, "minWidth": 190},
        {"field": "channel", "headerName": "ch", "sortable": False, "width": 62},
        {"field": "component", "headerName": "comp.", "sortable": False, "width": 92},
        {"field": "ap", "headerName": "AP", "width": 84, **NUM},
        {"field": "on_p50", "headerName": "on_p50", "width": 90, **NUM},
        {"field": "on_p90", "headerName": "on_p90", "width": 90, **NUM},
        {"field": "off_mean", "headerName": "off_mean", "width": 96, **NUM},
        {"field": "off_p50", "headerName": "off_p50", "width": 90, **NUM},
    ]
    for c in cols:
        c.setdefault("sortable", c["field"] in SORTABLE)
        if c["field"] == sort:
            c["sort"] = order
    return cols


def column_label(columns: dict, stack: str, layer: int) -> str:
    """`layer 3`, or what a column past the numbered layers holds with its index (`final norm (column 3)`)."""
    desc = columns.get((stack, int(layer)), (str(layer), f"layer {layer}"))[1]
    return desc if desc.startswith("layer ") else f"{desc} (column {layer})"


def _layout_data(s: dict[str, Any]) -> tuple[dict, list[dict], list[dict], list[str], list[str]]:
    """Run record, layers of the stack, concepts with statistics for it, the layer's sites, and problems."""
    c = context.client()
    problems: list[str] = []
    rid = c.resolve_run(s["run"])
    s["run"] = rid
    run = c.run(rid)
    layers = [r for r in c.layers(rid) if r["stack"] == s["stack"]]
    if not layers:
        raise BackendError(404, f"run {rid} has no {s['stack']} layers", "stack")
    if s["layer"] not in [r["layer"] for r in layers]:
        problems.append(f"{s['stack']} has no layer {s['layer']}; showing layer {layers[0]['layer']}")
        s["layer"] = layers[0]["layer"]
    concepts = [cc for cc in c.concepts(rid) if s["stack"] in (cc.get("stacks") or [])]
    if not concepts:
        raise BackendError(404, f"no concept of run {rid} has statistics for the {s['stack']}", "concept")
    if s["concept"] not in [cc["concept_id"] for cc in concepts]:
        if s["concept"] is not None:
            problems.append(f"concept {s['concept']} has no statistics for the {s['stack']}; showing concept {concepts[0]['concept_id']}")
        s["concept"] = concepts[0]["concept_id"]
    sites = next(r["sites"] for r in layers if r["layer"] == s["layer"])
    if s["site"] is not None and s["site"] not in sites:
        problems.append(f"site {s['site']!r} is not in this layer; showing all sites")
        s["site"] = None
    return run, layers, concepts, sites, problems


def layout(**query: Any) -> html.Div:
    s, problems = st.parse(PAGE, query)
    try:
        run, layers, concepts, sites, more = _layout_data(s)
    except BackendError as exc:
        return html.Div([html.H1("Layer"), notice(exc.message, "error"), ui.url_sync(PAGE, st.href(PAGE, s))],
                        className="page page-layer")
    problems += more
    concept_opts = [{"label": f"{cc['concept_id']} · {concept_label(cc)} ({cc['kind']})", "value": cc["concept_id"]}
                    for cc in concepts]
    columns = fg.column_names(layers)
    layer_opts = [{"label": column_label(columns, s["stack"], r["layer"]), "value": r["layer"]} for r in layers]
    layer_row = next(r for r in layers if r["layer"] == s["layer"])
    query_store = {k: s[k] for k in ("run", "stack", "layer", "concept", "comp", "site", "min_ap", "max_ap")}
    grid = dag.AgGrid(
        id="layer-grid",
        rowModelType="infinite",
        columnDefs=column_defs(s["sort"], s["order"]),
        defaultColDef={"resizable": True, "suppressHeaderMenuButton": True},
        dashGridOptions={"cacheBlockSize": BLOCK, "maxBlocksInCache": 20, "infiniteInitialRowCount": BLOCK,
                         "rowBuffer": 10, "tooltipShowDelay": 300, "animateRows": False,
                         "rowSelection": {"mode": "singleRow", "checkboxes": False, "enableClickSelection": True}},
        style={"height": "520px", "width": "100%"},
        className="layer-grid",
    )
    return html.Div([
        html.H1(f"Layer · {STACK_NAMES.get(s['stack'], s['stack'])} {column_label(columns, s['stack'], s['layer'])}"),
        html.P(f"{layer_row['n_units']:,} units · " + ", ".join(f"{k} {v:,}" for k, v in layer_row["components"].items()),
               className="muted"),
        notice([html.Div(p) for p in problems], "warning") if problems else None,
        html.Div([
            control("Run", ui.dropdown("layer-run", context.run_options(), s["run"]), class_name="w-wide"),
            control("Stack", ui.dropdown("layer-stack", ui.options(["speech_encoder", "text_encoder", "text_decoder"], STACK_NAMES), s["stack"])),
            control("Layer", ui.dropdown("layer-layer", layer_opts, s["layer"])),
            control("Concept (statistics shown)", ui.dropdown("layer-concept", concept_opts, s["concept"]),
                    class_name="w-wide"),
        ], className="controls"),
        html.Div([
            control("Component", ui.dropdown("layer-comp", ui.options(list(st.COMPONENT_CHOICES)), s["comp"])),
            control("Site", ui.dropdown("layer-site", [{"label": short_site(x), "value": x} for x in sites], s["site"],
                                        clearable=True, placeholder="all sites"), class_name="w-wide"),
            control("AP from", dcc.Input(id="layer-min-ap", type="number", min=0, max=1, step=0.01, value=s["min_ap"],
                                         debounce=True, placeholder="0"), "layer-min-ap-error", class_name="w-narrow"),
            control("AP to", dcc.Input(id="layer-max-ap", type="number", min=0, max=1, step=0.01, value=s["max_ap"],
                                       debounce=True, placeholder="1"), "layer-max-ap-error", class_name="w-narrow"),
        ], className="controls"),
        error_text("layer-error"),
        html.Div([
            html.Div([html.Div(id="layer-count", className="muted"), grid,
                      html.P("Sort by clicking a column header; click a row, or press Enter on it, to open the unit.",
                             className="hint")],
                     className="grid-column"),
            html.Div(loading(ui.graph("layer-hist")), className="side-column"),
        ], className="row"),
        dcc.Store(id="layer-query", data=query_store),
        dcc.Store(id="layer-state", data=s),
        html.Div(id="layer-purge-sink", hidden=True),
        ui.url_sync(PAGE, st.href(PAGE, s)),
    ], className="page page-layer")


def _bounds(q: dict[str, Any]) -> dict[str, tuple[float | None, float | None]]:
    if q.get("min_ap") is None and q.get("max_ap") is None:
        return {}
    return {"ap": (q.get("min_ap"), q.get("max_ap"))}


def fetch_rows(q: dict[str, Any], sort: str, order: str, start: int, end: int) -> tuple[list[dict], int]:
    page = context.client().layer_units(
        q["run"], q["stack"], int(q["layer"]), int(q["concept"]), sort=sort, order=order,
        component=None if q["comp"] == "all" else q["comp"], site=q.get("site"), bounds=_bounds(q),
        limit=max(end - start, 1), offset=start)
    rows = [{**u, "site_short": short_site(u["site"])} for u in page["units"]]
    return rows, int(page["total"])


def all_aps(q: dict[str, Any]) -> tuple[list[float | None], float | None]:
    """Every unit's AP in the filtered layer (pages fetched in parallel) and the concept's chance level."""
    c = context.client()
    size = c.page_limit()
    first = c.layer_units(q["run"], q["stack"], int(q["layer"]), int(q["concept"]), sort="unit_id", order="asc",
                          component=None if q["comp"] == "all" else q["comp"], site=q.get("site"), limit=size)
    total = int(first["total"])

    def page(offset: int):
        return c.layer_units(q["run"], q["stack"], int(q["layer"]), int(q["concept"]), sort="unit_id", order="asc",
                             component=None if q["comp"] == "all" else q["comp"], site=q.get("site"), limit=size,
                             offset=offset)["units"]

    units = list(first["units"])
    with ThreadPoolExecutor(max_workers=4) as pool:
        for part in pool.map(page, range(size, total, size)):
            units.extend(part)
    return [u.get("ap") for u in units], first.get("chance_ap")


def register_callbacks(app: Dash) -> None:
    ui.register_url_sync(app, PAGE)

    @app.callback(Output("nav", "href", allow_duplicate=True),
                  Input("layer-run", "value"), Input("layer-stack", "value"), Input("layer-layer", "value"),
                  State("layer-state", "data"), prevent_initial_call=True)
    def reload(run_id, stack, layer, s):
        if not s or (run_id, stack, layer) == (s["run"], s["stack"], s["layer"]):
            return no_update
        keep = {**s, "run": run_id, "stack": stack, "layer": layer}
        if stack != s["stack"] or run_id != s["run"]:
            keep.update(site=None, concept=s["concept"] if run_id == s["run"] else None, layer=layer if stack == s["stack"] else 0)
        if layer != s["layer"]:
            keep["site"] = None
        return st.href(PAGE, keep)

    @app.callback(Output("layer-query", "data"), Output("layer-state", "data"), Output(f"{PAGE}-url", "data"),
                  Output("layer-min-ap-error", "children"), Output("layer-max-ap-error", "children"),
                  Input("layer-concept", "value"), Input("layer-comp", "value"), Input("layer-site", "value"),
                  Input("layer-min-ap", "value"), Input("layer-max-ap", "value"), Input("layer-grid", "getRowsRequest"),
                  State("layer-query", "data"), State("layer-state", "data"), prevent_initial_call=True)
    def update(concept, comp, site, min_ap, max_ap, request, q, s):
        errors = ["", ""]
        for i, v in enumerate((min_ap, max_ap)):
            if v is not None and not 0 <= v <= 1:
                errors[i] = "AP lies between 0 and 1"
        if min_ap is not None and max_ap is not None and min_ap > max_ap:
            errors[1] = "'AP to' is below 'AP from'"
        if any(errors):
            return no_update, no_update, no_update, *errors
        new_q = {**q, "concept": concept, "comp": comp or "all", "site": site, "min_ap": min_ap, "max_ap": max_ap}
        sort, order = s["sort"], s["order"]
        if request is not None:
            model = request.get("sortModel") or []
            sort, order = (model[0]["colId"], model[0]["sort"]) if model else ("unit_id", "asc")
        new_s = {**s, **new_q, "sort": sort, "order": order}
        return (new_q if new_q != q else no_update, new_s if new_s != s else no_update,
                st.href(PAGE, new_s) if new_s != s else no_update, "", "")

    app.clientside_callback(ClientsideFunction(namespace="atlas", function_name="purgeGrid"),
                            Output("layer-purge-sink", "children"), Input("layer-query", "data"),
                            State("layer-grid", "id"), prevent_initial_call=True)

    @app.callback(Output("layer-grid", "getRowsResponse"), Output("layer-error", "children"), Output("layer-count", "children"),
                  Input("layer-grid", "getRowsRequest"), State("layer-query", "data"), prevent_initial_call=True)
    def rows(request, q):
        if not request or not q:
            return no_update, no_update, no_update
        model = request.get("sortModel") or []
        sort, order = (model[0]["colId"], model[0]["sort"]) if model else ("unit_id", "asc")
        if sort not in SORTABLE:
            sort, order = "unit_id", "asc"
        try:
            data, total = fetch_rows(q, sort, order, int(request.get("startRow", 0)), int(request.get("endRow", BLOCK)))
        except BackendError as exc:
            return {"rowData": [], "rowCount": 0}, exc.message, ""
        return {"rowData": data, "rowCount": total}, "", f"{total:,} units match"

    @app.callback(Output("layer-hist", "figure"), Input("layer-query", "data"))
    def histogram(q):
        if not q or q.get("concept") is None:
            return fg.message_figure("choose a concept")
        try:
            _, _, prov = context.run_and_provenance(q["run"])
            aps, chance = all_aps(q)
            concept = context.client().concept(q["run"], int(q["concept"]))
        except BackendError as exc:
            return fg.message_figure("no histogram: " + exc.message)
        title = f"AP · {concept_label(concept)}"
        return fg.ap_histogram(aps, chance, prov, title=title)

    @app.callback(Output("nav", "href", allow_duplicate=True), Input("layer-grid", "selectedRows"),
                  State("layer-query", "data"), prevent_initial_call=True)
    def open_unit(rows, q):
        if not rows or not q or rows[0].get("unit_id") is None:
            return no_update
        return ui.href("unit", run=q["run"], unit=int(rows[0]["unit_id"]), concept=q.get("concept"))
