"""Findings: saved views under permalinks (`/findings?id=...`), the list of them, and saving the current view.

URL state keys: id (a finding), offset (list page). A finding card shows what it froze (model and checksum, run, mode,
corpus, spec, decoding settings), draws its stored result at once, re-runs it to verify (flagging any difference), and
offers a standalone Python script that replays it against the backend's HTTP API.
"""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from dash import Dash, Input, Output, State, dcc, html, no_update

from app import context, state as st, ui, views
from app.client import BackendError
from app.components.common import Provenance, demo_model_line, loading, notice

PAGE = "findings"
PAGE_SIZE = 25


def _frozen_rows(finding: dict[str, Any]) -> list[tuple[str, Any]]:
    state = finding.get("state") or {}
    prov = state.get("provenance") or {}
    frozen = state.get("frozen") or {}
    model = finding.get("model") or {}
    decoding: Any = "not applicable: the view reads stored statistics" if state.get("page") else "not recorded"
    rows: list[tuple[str, Any]] = [("view", state.get("description") or state.get("page") or "not recorded")]
    if state.get("page") == "lab" and frozen.get("responses"):
        result = frozen["responses"][0]
        decoding = decoding_summary(result.get("decoding"))
        rows.append(("input", input_summary(result.get("input") or {}, result.get("tgt_lang"))))
    if finding.get("spec"):
        rows.append(("spec", spec_summary(finding["spec"])))
    if state.get("page") == "lab" and not frozen.get("responses"):
        decoding = "not recorded: the finding was saved without a result"
    rows += [("live model at save", f"{model.get('spec', '?')} · checksum {model.get('checksum', '?')}")]
    if prov:
        rows += [("run", f"{finding.get('run_id')} · model {prov.get('model_spec')} · checksum {prov.get('model_checksum')}"),
                 ("mode", prov.get("mode")),
                 ("corpus", f"{prov.get('corpus_source')} · {prov.get('n_examples')} examples")]
    else:
        rows += [("run", f"{finding.get('run_id') or 'none'} · provenance not recorded (saved without a dashboard view)")]
    return rows + [("decoding", decoding), ("engine", finding.get("engine_version"))]


def decoding_summary(decoding: dict[str, Any] | None) -> str:
    """Decoding settings in one line: the strategy first, then each setting as `name value`."""
    if not decoding:
        return "not recorded"
    rest = " · ".join(f"{k} {json.dumps(v)}" for k, v in sorted(decoding.items()) if k != "strategy")
    return " · ".join(x for x in (decoding.get("strategy"), rest) if x)


def spec_summary(spec: dict[str, Any]) -> str:
    """An intervention spec in one line: which units, what value, where."""
    units = spec.get("units") or {}
    value = (spec.get("value") or {}).get("kind", "?")
    if value == "scale":
        value += f" ×{(spec.get('value') or {}).get('factor')}"
    if units.get("kind") == "concept":
        where = units.get("stack") or "all stacks"
        comp = f" ({units['component']})" if units.get("component") else ""
        what = f"{units.get('set')}-{units.get('k')} units of concept {units.get('concept_id')} in {where}{comp}"
        if units.get("set") == "random":
            what += f", seed {units.get('seed')}"
    else:
        what = f"{len(units.get('units') or [])} explicit units"
        if spec.get("stats_concept_id") is not None:
            what += f", statistics of concept {spec['stats_concept_id']}"
    scope = spec.get("scope") or {}
    strength = spec.get("strength", 1.0)
    positions = scope.get("positions", "all")
    if isinstance(positions, dict):
        positions = (f"{positions.get('start')}–{positions['stop'] - 1}" if positions.get("stop") is not None
                     else f"from {positions.get('start')}")
    return (f"{what} · value {value} · strength {strength:g} · positions {positions}, "
            f"decoding steps {scope.get('decode_steps', scope.get('steps', 'all'))}")


#: Pages whose result a live model computed (the model loaded at save time), not a precompute run's statistics.
LIVE_PAGES = ("lab", "bridge")


def result_models(finding: dict[str, Any]) -> list[str]:
    """The model specs behind a finding's result: its run's (both runs' for a comparison), and for a live view the
    model that computed it, so the card can say when any of them is the demo model."""
    state = finding.get("state") or {}
    specs = [(state.get("provenance") or {}).get("model_spec")]
    if state.get("page") in LIVE_PAGES or not state.get("provenance"):
        specs.append((finding.get("model") or {}).get("spec"))
        specs += [(r.get("model") or {}).get("spec") for r in (state.get("frozen") or {}).get("responses") or []
                  if isinstance(r, dict) and isinstance(r.get("model"), dict)]
    run_b = (state.get("query") or {}).get("run_b") if state.get("page") == "compare" else None
    if run_b:
        try:
            specs.append(context.client().run(run_b).get("model_spec"))
        except BackendError:
            pass
    return [x for x in dict.fromkeys(specs) if x]


def input_summary(inp: dict[str, Any], tgt: str | None) -> str:
    if inp.get("kind") == "example":
        source = f"corpus example {inp.get('example_id')} ({inp.get('modality')}, {inp.get('lang')})"
    elif inp.get("kind") == "text":
        source = f"text ({inp.get('src_lang')}): {inp.get('text')}"
    else:
        source = f"uploaded audio {inp.get('filename') or ''} (sha256 {str(inp.get('sha256', ''))[:12]})"
    return f"{source} → {tgt}"


def card(finding: dict[str, Any]) -> html.Div:
    state = finding.get("state") or {}
    page = state.get("page") or ""
    href = state.get("href") or "/"
    view_state, _ = st.parse(page, {k: v for k, v in (state.get("query") or {}).items()}) if page in st.PAGES else ({}, [])
    prov = Provenance(**(state.get("provenance") or {"run_id": finding.get("run_id") or "?"}))
    frozen = state.get("frozen") or {}
    try:
        result = views.render(page, view_state, frozen, prov)
    except (KeyError, TypeError, ValueError) as exc:
        result = [notice(f"the stored result could not be drawn ({type(exc).__name__}: {exc})", "warning")]
    script = views.python_script(context.current().public_backend_url, finding)
    return html.Div([
        html.H1(finding.get("title") or "(untitled)", id="finding-title"),
        demo_model_line("demo" if "demo" in result_models(finding) else None),
        html.P(finding.get("note") or "", className="note", id="finding-note"),
        html.P(f"finding {finding['id']} · saved {finding.get('created_at')}"
               + (f" · edited {finding['updated_at']}" if finding.get("updated_at") else ""), className="muted"),
        html.Div([dcc.Link("Open this view", href=href, id="finding-open", className="button-link primary"),
                  html.Button("Re-run to verify", id="finding-verify", className="button"),
                  html.Button("Copy as Python", className="button copy-text", **{"data-copy-target": "finding-python"})],
                 className="actions"),
        _edit_panel(finding),
        loading(html.Div(id="finding-verify-out")),
        html.H2("Stored result"),
        html.Div(result, id="finding-result"),
        html.H2("What it froze"),
        html.Table(html.Tbody([html.Tr([html.Th(k), html.Td(str(v))]) for k, v in _frozen_rows(finding)]), className="table kv"),
        html.Details([html.Summary("Intervention spec (JSON)"), html.Pre(json.dumps(finding.get("spec"), indent=2, sort_keys=True),
                                                                          className="code")]) if finding.get("spec") else None,
        html.Details([html.Summary("Python (standard library only) reproducing it"),
                      html.Pre(script, id="finding-python", className="code")]),
        dcc.Store(id="finding-id", data=finding["id"]),
    ], className="finding-card")


def _edit_panel(finding: dict[str, Any]) -> html.Details:
    """Edit the title and note, or delete the finding (what it froze cannot change)."""
    return html.Details([
        html.Summary("Edit or delete", className="button"),
        html.Div([
            html.Label("Title", htmlFor="finding-edit-title"),
            dcc.Input(id="finding-edit-title", value=finding.get("title") or "", maxLength=300, className="input"),
            html.Label("Note", htmlFor="finding-edit-note"),
            dcc.Textarea(id="finding-edit-note", value=finding.get("note") or "", maxLength=20000, className="textarea"),
            html.Div([html.Button("Save changes", id="finding-edit-save", className="button primary"),
                      html.Button("Delete this finding", id="finding-delete", className="button danger")],
                     className="actions"),
            dcc.ConfirmDialog(id="finding-delete-confirm",
                              message="Delete this finding for good? Its permalink will stop working."),
            html.Div(id="finding-edit-status", role="status"),
        ], className="save-panel"),
    ], className="save-details", id="finding-edit")


def _write_error(exc: BackendError) -> html.Div:
    if exc.status == 401:
        return html.Div(NO_WRITE_TOKEN.replace("save findings", "change findings").replace("not saved", "not changed"),
                        className="field-error")
    if exc.status == 403:
        return html.Div(WRONG_WRITE_TOKEN.replace("not saved", "not changed"), className="field-error")
    return html.Div(ui.plain(exc), className="field-error")


def listing(offset: int) -> html.Div:
    page = context.client().findings(limit=PAGE_SIZE, offset=offset)
    rows = [html.Tr([html.Td(dcc.Link(f["title"], href=f"/findings?id={f['id']}")), html.Td(f.get("created_at", "")[:19]),
                     html.Td((f.get("state") or {}).get("description", "")), html.Td(f.get("run_id") or "")])
            for f in page["findings"]]
    nav = []
    if offset > 0:
        nav.append(dcc.Link("← newer", href=f"/findings?offset={max(offset - PAGE_SIZE, 0)}", className="button-link"))
    if offset + PAGE_SIZE < page["total"]:
        nav.append(dcc.Link("older →", href=f"/findings?offset={offset + PAGE_SIZE}", className="button-link"))
    if not rows:
        return html.Div([html.P("No findings yet. Use “Save as finding” at the top of any page to save what you see.")])
    return html.Div([
        html.P(f"{page['total']} findings, newest first"),
        html.Table([html.Thead(html.Tr([html.Th(h) for h in ("title", "saved (UTC)", "view", "run")])), html.Tbody(rows)],
                   className="table"),
        html.Div(nav, className="actions"),
    ])


def layout(**query: Any) -> html.Div:
    s, problems = st.parse(PAGE, query)
    body: Any
    try:
        body = card(context.client().finding(s["id"])) if s["id"] else [html.H1("Findings"), listing(int(s["offset"]))]
    except BackendError as exc:
        body = [html.H1("Findings"), notice(exc.message, "error")]
    return html.Div([
        notice([html.Div(p) for p in problems], "warning") if problems else None,
        html.Div(body),
        ui.url_sync(PAGE, st.href(PAGE, s)),
    ], className="page page-findings")


#: What a dashboard user reads when the backend wants a token this dashboard does not hold (or holds wrongly).
NO_WRITE_TOKEN = ("not saved: this backend requires an API token to save findings, and this dashboard holds none "
                  "(its operator can give it one: NEURON_ATLAS_API_TOKEN for `neuron-atlas app`, DASHBOARD_API_TOKEN "
                  "in docker compose)")
WRONG_WRITE_TOKEN = ("not saved: the backend refused this dashboard's API token (its operator should set it to the "
                     "backend's ATLAS_API_TOKEN)")


def save(href: str, title: str, note: str, view_result: dict | None) -> dict[str, Any]:
    """Freeze the view at `href` (path + query) as a finding; returns the created finding. Raises BackendError / ViewError."""
    path, _, query = href.partition("?")
    page = st.page_of(path)
    if page is None or page == PAGE:
        raise views.ViewError("open a dashboard view (overview, layer, unit or lab) to save it as a finding")
    raw = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    s, _ = st.parse(page, raw)
    client = context.client()
    rid, _, prov = context.run_and_provenance(s.get("run"))
    s["run"] = rid
    try:
        frozen = views.snapshot(client, page, s)
    except views.ViewError as exc:
        if page == "lab" and view_result and view_result.get("page") == "lab":
            frozen = {"calls": [], "responses": [view_result["summary"]], "not_replayable": str(exc)}
        else:
            raise
    spec = None
    if page == "lab":
        spec = (frozen["calls"][0]["body"].get("spec") if frozen["calls"] else frozen["responses"][0].get("spec"))
    state = {"page": page, "href": st.href(page, s), "query": dict(st.query_items(page, s)), "provenance": prov.as_dict(),
             "description": views.describe_state(page, s), "frozen": frozen}
    return client.create_finding(title, note, state, spec=spec, run_id=rid)


def register_callbacks(app: Dash) -> None:
    ui.register_url_sync(app, PAGE)

    @app.callback(Output("save-status", "children"), Input("save-request", "data"), State("save-title", "value"),
                  State("save-note", "value"), State("view-result", "data"), prevent_initial_call=True)
    def save_current(request, title, note, view_result):
        if not request or not request.get("href"):
            return no_update
        if not (title or "").strip():
            return html.Div("title: give the finding a title", className="field-error")
        try:
            finding = save(request["href"], title.strip(), note or "", view_result)
        except BackendError as exc:
            return _write_error(exc)
        except views.ViewError as exc:
            return html.Div(str(exc), className="field-error")
        link = f"/findings?id={finding['id']}"
        return html.Div(["Saved: ", dcc.Link(link, href=link, id="save-permalink"),
                         html.Button("Copy", className="button small copy-text", **{"data-copy-href": link})])

    @app.callback(Output("finding-edit-status", "children"), Output("finding-title", "children"),
                  Output("finding-note", "children"), Input("finding-edit-save", "n_clicks"), State("finding-id", "data"),
                  State("finding-edit-title", "value"), State("finding-edit-note", "value"), prevent_initial_call=True)
    def edit(n, finding_id, title, note):
        if not n or not finding_id:
            return no_update, no_update, no_update
        if not (title or "").strip():
            return html.Div("title: a finding needs a title", className="field-error"), no_update, no_update
        try:
            finding = context.client().update_finding(finding_id, title=title.strip(), note=note or "")
        except BackendError as exc:
            return _write_error(exc), no_update, no_update
        return notice(f"Saved ({finding.get('updated_at')}).", "success"), finding["title"], finding["note"]

    @app.callback(Output("finding-delete-confirm", "displayed"), Input("finding-delete", "n_clicks"), prevent_initial_call=True)
    def ask_delete(n):
        return bool(n)

    @app.callback(Output("finding-edit-status", "children", allow_duplicate=True), Output("nav", "href"),
                  Input("finding-delete-confirm", "submit_n_clicks"), State("finding-id", "data"), prevent_initial_call=True)
    def delete(n, finding_id):
        if not n or not finding_id:
            return no_update, no_update
        try:
            context.client().delete_finding(finding_id)
        except BackendError as exc:
            return _write_error(exc), no_update
        return no_update, "/findings"

    @app.callback(Output("finding-verify-out", "children"), Input("finding-verify", "n_clicks"), State("finding-id", "data"),
                  prevent_initial_call=True)
    def verify(n, finding_id):
        if not n or not finding_id:
            return no_update
        try:
            finding = context.client().finding(finding_id)
            differences = views.verify(context.client(), (finding.get("state") or {}).get("frozen") or {})
        except (BackendError, views.ViewError) as exc:
            return notice(f"could not re-run: {ui.plain(exc) if isinstance(exc, BackendError) else exc}", "warning")
        if not differences:
            return notice("Re-run matches the stored result exactly.", "success")
        return notice([html.Div(f"Re-run differs from the stored result in {len(differences)} place(s):"),
                       html.Ul([html.Li(d) for d in differences])], "error")
