"""Compare: two runs side by side (clean vs faithful, two models, two corpora, or one run at two steps).

URL state keys: run (run A), run_b, step (A's step), step_b, kind, task, stack, thr, concept (a concept of run A),
k. The page shows which unit sites the runs share, the per-layer difference of selective-unit counts for the matched
concepts (click a row to compare that concept), and one concept's unit AP in A against B with Spearman's rho, the
top-k overlap against chance and the units that moved most, each linking to its unit page in both runs. Every
control rewrites the URL, so a view is a link and can be saved as a finding (`view_calls` / `render`).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dash import Dash, Input, Output, State, callback_context, dcc, html, no_update

from app import context, state as st, ui
from app.client import AtlasClient, BackendError
from app.components import compare_figures as cf
from app.components.common import STACK_NAMES, control, notice

PAGE = "compare"
#: Fields whose bad value the page replaces by its default (and says so) instead of failing the view.
RESETTABLE = {"task": None, "stack": None, "kind": "all", "k": None}
MOVED_SHOWN = 20


def _default_run_b(runs: list[dict], run_a: str) -> str:
    """Run B by default: the newest other run of the same model, else the newest other run, else run A itself."""
    a = next((r for r in runs if r["run_id"] == run_a), {})
    others = [r for r in runs if r["run_id"] != run_a]
    same = [r for r in others if r.get("model_checksum") == a.get("model_checksum")]
    return (same or others or [a])[0].get("run_id", run_a)


def run_options(client: AtlasClient) -> list[dict[str, str]]:
    """Dropdown options of every run, led by what a comparison is usually about: mode, model, corpus."""
    return [{"label": f"{r.get('mode')} · {r.get('model_spec')} · {r.get('corpus_source')} · {r['run_id']}",
             "value": r["run_id"]} for r in client.runs()]


def resolve(client: AtlasClient, s: dict[str, Any]) -> tuple[dict, dict, list[str]]:
    """Fill run and step defaults into `s` (in place) and check them against the runs; returns both run records and
    the problems met (a value the page replaced)."""
    problems: list[str] = []
    runs = client.runs()
    known = {r["run_id"] for r in runs}
    for key in ("run", "run_b"):
        if s[key] is not None and s[key] != "latest" and s[key] not in known:
            problems.append(f"{'run A' if key == 'run' else 'run B'} {s[key]!r} is not in the store; using the default")
            s[key] = None
    s["run"] = client.resolve_run(s["run"])
    s["run_b"] = client.resolve_run(s["run_b"]) if s["run_b"] else _default_run_b(runs, s["run"])
    run_a, run_b = client.run(s["run"]), client.run(s["run_b"])
    steps_a, steps_b = list(run_a["steps"]), list(run_b["steps"])
    if s["step"] is not None and s["step"] not in steps_a:
        problems.append(f"run A has no step {s['step']}; using step {steps_a[0]}")
        s["step"] = None
    s["step"] = steps_a[0] if s["step"] is None else s["step"]
    if s["step_b"] is not None and s["step_b"] not in steps_b:
        problems.append(f"run B has no step {s['step_b']}; using the default")
        s["step_b"] = None
    if s["step_b"] is None:
        if s["run_b"] == s["run"]:
            s["step_b"] = steps_b[-1] if steps_b[-1] != s["step"] else steps_b[0]
        else:
            s["step_b"] = s["step"] if s["step"] in steps_b else steps_b[0]
    return run_a, run_b, problems


def summary_params(s: Mapping[str, Any]) -> dict[str, Any]:
    """Query parameters of GET /compare for a page state (None values left out)."""
    params = {"run_a": s["run"], "run_b": s["run_b"], "step_a": s["step"], "step_b": s["step_b"],
              "kind": None if s["kind"] == "all" else s["kind"], "task": s["task"], "stack": s["stack"],
              "threshold": s["thr"]}
    return {k: v for k, v in params.items() if v is not None}


def concept_params(s: Mapping[str, Any]) -> dict[str, Any]:
    """Query parameters of GET /compare/concept for a page state."""
    params = {"run_a": s["run"], "run_b": s["run_b"], "concept_id": s["concept"], "step_b": s["step_b"],
              "stack": s["stack"], "k": s["k"], "n_moved": MOVED_SHOWN}
    return {k: v for k, v in params.items() if v is not None}


def _reset(s: dict[str, Any], exc: BackendError, problems: list[str]) -> bool:
    """Replace the field a backend 422 blames by its default (saying so); False when it is not one to replace."""
    field = (exc.field or "").removeprefix("query parameter ")
    if exc.status != 422 or field not in RESETTABLE or s.get(field) == RESETTABLE[field]:
        return False
    problems.append(f"{exc.message} — showing {field} {RESETTABLE[field] or 'default'} instead")
    s[field] = RESETTABLE[field]
    return True


def load(client: AtlasClient, s: dict[str, Any], problems: list[str]) -> tuple[dict, dict | None]:
    """The run summary and the chosen concept's comparison for `s` (resolved in place: concept defaults to the first
    matched pair with statistics for the stack; a bad task, stack, kind or k falls back to its default)."""
    for _ in range(len(RESETTABLE) + 1):
        try:
            summary = client.compare(s["run"], s["run_b"], step_a=s["step"], step_b=s["step_b"],
                                     kind=None if s["kind"] == "all" else s["kind"], task=s["task"], stack=s["stack"],
                                     threshold=s["thr"])
            break
        except BackendError as exc:
            if not _reset(s, exc, problems):
                raise
    s["stack"] = summary["layers"]["stack"]
    rows = summary["layers"]["concepts"]
    ids = [p["concept_id_a"] for p in rows]
    if s["concept"] not in ids:
        if s["concept"] is not None:
            problems.append(f"concept {s['concept']} of run A is not a matched concept with {s['stack']} statistics "
                            "at these steps; showing the first one")
        s["concept"] = ids[0] if ids else None
    if s["concept"] is None:
        return summary, None
    for _ in range(2):
        try:
            return summary, client.compare_concept(s["run"], s["run_b"], s["concept"], step_b=s["step_b"],
                                                   stack=s["stack"], k=s["k"], n_moved=MOVED_SHOWN)
        except BackendError as exc:
            if not _reset(s, exc, problems):
                raise
    return summary, None


# --------------------------------------------------------------------------------------------------- rendering


def _count(n: int, word: str) -> str:
    """`1 site`, `3 sites`."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _site_notice(summary: Mapping[str, Any]) -> html.Div:
    sites = summary["sites"]
    by_stack = ", ".join(f"{STACK_NAMES.get(r['stack'], r['stack'])} {r['n_units']:,}" for r in sites["common_by_stack"])
    head = (f"{sites['n_common_units']:,} common units in {sites['n_common_sites']:,} sites ({by_stack}); "
            f"run A has {sites['n_units_a']:,} units, run B {sites['n_units_b']:,}. ")
    model = "Same model. " if summary.get("same_model") else "Different models: only sites with the same key and width are compared. "
    if sites["identical"]:
        return notice(model + head + "Identical unit layouts: every unit is compared.", "info")
    lists = []
    for label, key, count in (("only in run A", "only_a", "n_only_a"), ("only in run B", "only_b", "n_only_b")):
        if sites[count]:
            lists.append(html.Details([html.Summary(f"{_count(sites[count], 'site')} {label}"),
                                       html.Ul([html.Li(x) for x in sites[key]])]))
    if sites["n_width_mismatch"]:
        lists.append(html.Details([html.Summary(f"{_count(sites['n_width_mismatch'], 'site')} with another width"),
                                   html.Ul([html.Li(f"{m['site']}: {m['width_a']} in A, {m['width_b']} in B")
                                            for m in sites["width_mismatch"]])]))
    return notice([html.Div(model + head + sites["note"] + "."), *lists], "warning")


def _unmatched_notice(summary: Mapping[str, Any]) -> html.Div | None:
    parts = []
    for side, key in (("A", "unmatched_a"), ("B", "unmatched_b")):
        rows = summary.get(key) or []
        if rows:
            parts.append(html.Details([html.Summary(f"{_count(len(rows), 'concept')} of run {side} without a counterpart"),
                                       html.Ul([html.Li(f"{c['concept_id']} · {c.get('description')}") for c in rows])]))
    if not parts:
        return None
    return notice([html.Div(f"Concepts are matched by {', '.join(summary['matched_by'])}."), *parts], "warning")


def _fmt(v: Any, digits: int = 4) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def concept_block(one: Mapping[str, Any], summary: Mapping[str, Any], graph_id: str = "compare-scatter") -> html.Div:
    """The chosen concept's comparison: headline numbers, the AP scatter and the movers with links to both unit pages."""
    top = one["top_k"]
    run_a, run_b = one["run_a"], one["run_b"]
    ca, cb = one["concept_a"], one["concept_b"]
    facts = [
        ("units compared", f"{one['n_units']:,} ({', '.join(STACK_NAMES.get(x, x) for x in one['stacks'])})"
                           + (f"; {one['n_without_ap']:,} common units without an AP in one run left out"
                              if one.get("n_without_ap") else "")),
        ("Spearman ρ of AP", _fmt(one["spearman_rho"], 3)),
        (f"top-{top['k']} shared", f"{top['count']} of {top['k']} (chance {top['expected_count']:.2f})"),
        ("Jaccard", f"{top['jaccard']:.3f} (two random {top['k']}-sets: {top['expected_jaccard']:.4f})"),
        ("mean |AP B − AP A|", _fmt(one["mean_abs_delta"])),
        ("concepts", f"A: {ca['concept_id']} · {ca.get('description')} — B: {cb['concept_id']} · {cb.get('description')}"),
    ]
    head = ["unit in A", "unit in B", "site", "ch", "layer", "AP A", "AP B", "B − A", "rank A", "rank B"]
    body = [html.Tr([
        html.Td(dcc.Link(str(u["unit_id_a"]), href=ui.href("unit", run=run_a, unit=int(u["unit_id_a"]), concept=ca["concept_id"]),
                         className="unit-link moved-link-a")),
        html.Td(dcc.Link(str(u["unit_id_b"]), href=ui.href("unit", run=run_b, unit=int(u["unit_id_b"]), concept=cb["concept_id"]),
                         className="unit-link moved-link-b")),
        html.Td(u["site"], className="site-cell"), html.Td(u["channel"], className="num"), html.Td(u["layer"], className="num"),
        html.Td(_fmt(u["ap_a"]), className="num"), html.Td(_fmt(u["ap_b"]), className="num"),
        html.Td(f"{u['delta']:+.4f}", className="num"), html.Td(u["rank_a"], className="num"), html.Td(u["rank_b"], className="num"),
    ]) for u in one["moved"]]
    return html.Div([
        html.Table(html.Tbody([html.Tr([html.Th(k), html.Td(v)]) for k, v in facts]), className="table kv", id="compare-facts"),
        html.Div([
            html.Div(ui.graph(graph_id, cf.ap_scatter(one, summary)), className="narrow"),
            html.Div([html.H3(f"Units that moved most ({len(body)})"),
                      html.Table([html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(body)],
                                 className="table moved-table", id="compare-moved") if body else
                      html.P("No unit's AP differs between the two runs.", className="muted", id="compare-moved")],
                     className="wide"),
        ], className="row"),
    ])


def layout(**query: Any) -> html.Div:
    s, problems = st.parse(PAGE, query)
    client = context.client()
    try:
        run_a, run_b, more = resolve(client, s)
    except BackendError as exc:
        return html.Div([html.H1("Compare runs"), notice(exc.message, "error"), ui.url_sync(PAGE, st.href(PAGE, s))],
                        className="page page-compare")
    problems += more
    summary = one = None
    error = None
    try:
        summary, one = load(client, s, problems)
    except BackendError as exc:
        error = exc.message
    run_opts = run_options(client)
    tasks = sorted({p["task"] for p in (summary or {}).get("concepts", [])} | ({s["task"]} if s["task"] else set()))
    pair_opts = [{"label": f"{p['concept_id_a']} · {cf.pair_label(p)} ({p['kind']})", "value": p["concept_id_a"]}
                 for p in ((summary or {}).get("layers") or {}).get("concepts", [])]
    controls = html.Div([
        html.Div([
            control("Run A", ui.dropdown("compare-run", run_opts, s["run"]), class_name="w-wide"),
            control("Step A", ui.dropdown("compare-step", ui.options(run_a["steps"]), s["step"])),
            control("Run B", ui.dropdown("compare-run-b", run_opts, s["run_b"]), class_name="w-wide"),
            control("Step B", ui.dropdown("compare-step-b", ui.options(run_b["steps"]), s["step_b"])),
        ], className="controls"),
        html.Div([
            control("Concept kind", ui.dropdown("compare-kind", ui.options(["all", "language", "multimodal_language", "modality"]),
                                                s["kind"])),
            control("Task", ui.dropdown("compare-task", ui.options(tasks), s["task"], clearable=True, placeholder="all tasks")),
            control("Stack", ui.dropdown("compare-stack", ui.options(["speech_encoder", "text_encoder", "text_decoder"], STACK_NAMES),
                                         s["stack"])),
            control("Selective: AP ≥", dcc.Input(id="compare-thr", type="number", min=0, max=1, step=0.01, value=s["thr"],
                                                 debounce=True), class_name="w-narrow"),
            control("Concept (run A)", ui.dropdown("compare-concept", pair_opts, s["concept"]), class_name="w-wide"),
            control("Top-k", dcc.Input(id="compare-k", type="number", min=1, step=1, value=(one or {}).get("top_k", {}).get("k", s["k"]),
                                       debounce=True, placeholder="default"), class_name="w-narrow"),
        ], className="controls"),
    ])
    heatmap_rows: list[list[Any]] = []
    body: list[Any] = []
    if error is not None:
        body += [notice(error, "error"), html.Div(ui.graph("compare-heatmap"), hidden=True)]
    if summary is not None:
        heatmap = cf.layer_difference_heatmap(summary, s["concept"])
        heatmap_rows = [[label, p["concept_id_a"]] for label, p in zip(heatmap.data[0].y or [], summary["layers"]["concepts"])]
        body += [_site_notice(summary), _unmatched_notice(summary), ui.graph("compare-heatmap", heatmap),
                 html.P("Blue: more selective units in run B; red: more in run A. Click a row to compare that concept.",
                        className="hint")]
        body.append(html.H2("One concept, unit by unit"))
        body.append(concept_block(one, summary) if one is not None else
                    notice("no matched concept has statistics for this stack at these steps", "info"))
    return html.Div([
        html.H1("Compare runs"),
        html.P("Run A against run B over the unit sites they share: clean vs faithful, two models, two corpora, or one "
               "run at two steps (pick the same run twice).", className="muted"),
        notice([html.Div(p) for p in problems], "warning") if problems else None,
        controls,
        html.Div(body, id="compare-body"),
        dcc.Store(id="compare-state", data=s),
        dcc.Store(id="compare-rows", data=heatmap_rows),
        ui.url_sync(PAGE, st.href(PAGE, s)),
    ], className="page page-compare")


# ---------------------------------------------------------------------------------------------------- findings


def view_calls(client: AtlasClient, state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The backend calls behind a compare view (a finding stores them and their answers), with the defaults the page
    fills in resolved exactly as the page resolves them."""
    s = dict(state)
    resolve(client, s)
    load(client, s, [])
    calls = [{"method": "GET", "path": "/compare", "label": "run comparison", "params": summary_params(s)}]
    if s.get("concept") is not None:
        calls.append({"method": "GET", "path": "/compare/concept", "label": "concept comparison", "params": concept_params(s)})
    return calls


def render(frozen: Mapping[str, Any]) -> list[Any]:
    """A finding's stored compare answers drawn with this page's builders (no backend call)."""
    responses = frozen.get("responses") or []
    summary = responses[0]
    concept = responses[1]["concept_a"]["concept_id"] if len(responses) > 1 else None
    out: list[Any] = [_site_notice(summary), ui.graph("finding-fig-0", cf.layer_difference_heatmap(summary, concept))]
    if len(responses) > 1:
        out.append(concept_block(responses[1], summary, graph_id="finding-fig-1"))
    return out


def describe(s: Mapping[str, Any]) -> str:
    return (f"compare {s.get('run')} step {s.get('step')} vs {s.get('run_b')} step {s.get('step_b')}, "
            f"{s.get('stack')}, concept {s.get('concept')}")


# --------------------------------------------------------------------------------------------------- callbacks


def next_state(s: dict[str, Any], changed: str, value: Any) -> dict[str, Any]:
    """The state after one control changed: a new run forgets that run's step; a new step, kind or task forgets the
    concept (concept ids are per step)."""
    new = {**s, changed: value}
    if changed == "run":
        new.update(step=None, concept=None)
    elif changed == "run_b":
        new.update(step_b=None)
    if changed in ("run", "step", "kind", "task"):
        new["concept"] = None
    return new


CONTROLS = {"compare-run": "run", "compare-step": "step", "compare-run-b": "run_b", "compare-step-b": "step_b",
            "compare-kind": "kind", "compare-task": "task", "compare-stack": "stack", "compare-thr": "thr",
            "compare-concept": "concept", "compare-k": "k"}


def register_callbacks(app: Dash) -> None:
    ui.register_url_sync(app, PAGE)

    @app.callback(Output("nav", "href", allow_duplicate=True),
                  *[Input(cid, "value") for cid in CONTROLS], Input("compare-heatmap", "clickData"),
                  State("compare-rows", "data"), State("compare-state", "data"), prevent_initial_call=True)
    def navigate(*args):
        rows, s = args[-2], args[-1]
        trigger = callback_context.triggered_id
        if not s or trigger is None:
            return no_update
        if trigger == "compare-heatmap":
            label = ((args[-3] or {}).get("points") or [{}])[0].get("y")
            concept = dict(rows or []).get(label)
            if concept is None or concept == s.get("concept"):
                return no_update
            return st.href(PAGE, {**s, "concept": int(concept)})
        key = CONTROLS[trigger]
        value = dict(zip(CONTROLS, args[:len(CONTROLS)]))[trigger]
        if key == "thr" and (value is None or not 0 <= value <= 1):
            return no_update
        if key == "k" and value is not None and value < 1:
            return no_update
        if key in ("run", "run_b", "step", "step_b", "kind", "stack") and value is None:
            return no_update
        if value == s.get(key):
            return no_update
        return st.href(PAGE, next_state(s, key, value))
