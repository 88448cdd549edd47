"""Overview: selectivity heatmaps, the decoder modality map, concentration and cross-modal matrices.

URL state keys: see `app.state.PAGES["overview"]` (run, tab, step, k, set, thr, kind, task, comp, mm_role, c_role,
c_stack, c_metric, c_cell, x_role, x_set, x_metric, x_scope, x_layer, x_cell). A click on a selectivity cell opens
the layer view; a click on a concentration cell lists the units carrying the mass; a click on an overlap or
Spearman cell lists the units the two sets share.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dash import ClientsideFunction, Dash, Input, Output, State, ctx, dcc, html, no_update

from app import context, state as st, ui
from app.lab_logic import units_to_lab_href
from app.client import STACKS, BackendError
from app.components import figures as fg
from app.components.common import (
    STACK_NAMES,
    TASK_NAMES,
    Provenance,
    control,
    demo_model_line,
    error_text,
    lang_label,
    loading,
    notice,
    run_description,
)

PAGE = "overview"
TAB_LABELS = {"selectivity": "Selectivity", "modality": "Modality map", "concentration": "Concentration",
              "crossmodal": "Speech × text", "interventions": "Interventions (batch)"}
SET_LABELS = {"ap": "AP ≥ threshold", "top": "top-k", "bottom": "bottom-k", "both": "both (2k)"}
KIND_LABELS = {"language": "language", "multimodal_language": "language (speech+text)", "modality": "modality (speech vs text)"}
ROLE_TASKS = {"representation": ("s2tt", "t2tt"), "control": ("en2x_s2tt", "en2x_t2tt")}
MODALITY_TASK = {"representation": "s2tt+t2tt", "control": "en2x_s2tt+en2x_t2tt"}
SCOPE_LABELS = {"text_decoder": "whole decoder", "text_decoder/self-attn": "self-attention",
                "text_decoder/cross-attn": "cross-attention", "text_decoder/ffn": "FFN", "text_decoder/layer": "per layer"}
DRILL_UNITS = 15


def _run_meta(run_id: str | None) -> tuple[str | None, dict, list[str]]:
    """(run id, run record, problems) — tolerant of an unreachable backend so the layout still renders."""
    try:
        rid, run, _ = context.run_and_provenance(run_id)
        return rid, run, []
    except BackendError as exc:
        if exc.status != 404 or not run_id:
            return None, {}, [exc.message]
    try:
        rid, run, _ = context.run_and_provenance(None)
    except BackendError as exc:
        return None, {}, [exc.message]
    return rid, run, [f"run {run_id!r} is not in this store; showing the newest run, {rid}"]


def stored_ks(run: dict) -> list[int]:
    ks = ((run.get("config") or {}).get("analysis") or {}).get("ks") or []
    return sorted(int(k) for k in ks)


def resolve_defaults(s: dict[str, Any], run: dict) -> list[str]:
    """Fill run-dependent defaults (step, k) and replace values the run does not have; returns the problems."""
    problems = []
    steps = run.get("steps") or []
    if s["step"] is None or (steps and s["step"] not in steps):
        if s["step"] is not None:
            problems.append(f"step {s['step']} is not a recorded step of this run; showing step {steps[0] if steps else '?'}")
        s["step"] = steps[0] if steps else None
    ks = stored_ks(run)
    if s["k"] is None or (ks and s["k"] not in ks):
        if s["k"] is not None:
            problems.append(f"k={s['k']} was not stored for this run; showing k={ks[0] if ks else '?'}")
        s["k"] = ks[0] if ks else None
    return problems


def layout(**query: Any) -> html.Div:
    s, problems = st.parse(PAGE, query)
    rid, run, run_problems = _run_meta(s["run"])
    problems += run_problems
    task_opts: list[dict[str, Any]] = []
    if rid:
        s["run"] = rid
        problems += resolve_defaults(s, run)
        task_opts, s["task"], task_problem = _task_choices(rid, s["kind"], s["task"])
        problems += task_problem
    steps = run.get("steps") or [2]
    ks = stored_ks(run) or ([s["k"]] if s["k"] else [])
    hide = hidden_controls(s["tab"], s["set"])
    top = html.Div([
        control("Run", ui.dropdown("ov-run", context.run_options(), s["run"]), class_name="w-wide"),
        control("Decoding step", dcc.Slider(id="ov-step", min=min(steps), max=max(steps), step=None, value=s["step"],
                                            marks={v: f"{v}" for v in steps}, included=False, allow_direct_input=False),
                help_text="decoder prefix length: 2 = before content token 1", class_name="w-slider"),
        control("Unit set", ui.radio("ov-set", ui.options(["ap", "top", "bottom", "both"], SET_LABELS), s["set"]),
                id_="ov-set-box"),
        control("k", ui.dropdown("ov-k", ui.options(ks), s["k"], searchable=False), class_name="w-narrow", id_="ov-k-box"),
        control("AP threshold", dcc.Slider(id="ov-thr", min=0.5, max=1.0, step=0.01, value=s["thr"],
                                           marks={v: f"{v:g}" for v in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)}),
                class_name="w-slider", id_="ov-thr-box"),
    ], className="controls")
    for box in top.children[2:]:
        box.hidden = box.id in hide

    selectivity = html.Div([
        html.Div([
            control("Concept kind", ui.dropdown("ov-kind", ui.options(list(KIND_LABELS), KIND_LABELS), s["kind"])),
            control("Task", ui.dropdown("ov-task", task_opts, s["task"]), "ov-task-error", class_name="w-wide"),
            control("Component", ui.dropdown("ov-comp", ui.options(list(st.COMPONENT_CHOICES)), s["comp"])),
            control("Colour", ui.radio("ov-scale", [{"label": "unit count", "value": "count"},
                                                    {"label": "share of the column's units", "value": "fraction"}],
                                       s["scale"])),
        ], className="controls"),
        error_text("ov-sel-error"),
        loading(html.Div([html.Div([ui.graph(f"ov-heat-{stack}", class_name="graph wide"),
                                    ui.graph(f"ov-bars-{stack}", class_name="graph narrow")],
                                   id=f"ov-row-{stack}", className="row", hidden=True) for stack in STACKS],
                         id="ov-sel-figures"), "ov-sel-loading"),
        html.Div(id="ov-sel-columns", className="hint"),
        html.P("Click a cell to open that layer's units for the concept. Encoder statistics do not depend on the "
               "decoding step (the encoder runs once per input). For asr and en→X tasks the decoder's prompt "
               "(</s> and the target-language token) already names the concept's language, so decoder units can "
               "reach AP 1.0 at early steps by reading that token: compare with s2tt/t2tt, where the language is "
               "only in the input.", className="hint"),
    ])
    modality = html.Div([
        html.Div([control("Role", ui.radio("ov-mm-role", ui.options(list(st.ROLES)), s["mm_role"]))], className="controls"),
        html.P("Decoder units separating speech-conditioned from text-conditioned decoding (pooled over languages). "
               "Uses the unit set, k and threshold above.", className="hint"),
        error_text("ov-mm-error"),
        loading(ui.graph("ov-mm-graph")),
    ])
    concentration = html.Div([
        html.Div([
            control("Role", ui.radio("ov-c-role", ui.options(list(st.ROLES)), s["c_role"])),
            control("Stack", ui.radio("ov-c-stack", [{"label": "text decoder", "value": "decoder"},
                                                     {"label": "encoders (speech | text)", "value": "encoder"}], s["c_stack"])),
            control("Metric", ui.radio("ov-c-metric", [{"label": "Gini", "value": "gini"},
                                                       {"label": "top-1 % share", "value": "top1_share"}], s["c_metric"])),
        ], className="controls"),
        error_text("ov-c-error"),
        loading(ui.graph("ov-c-graph")),
        html.P("Click a cell to list the units that carry the most magnitude in it.", className="hint"),
        loading(html.Div(id="ov-c-drill")),
        html.Div(id="ov-c-drill-sink", hidden=True),
    ])
    crossmodal = html.Div([
        html.Div([
            control("Role", ui.radio("ov-x-role", ui.options(list(st.ROLES)), s["x_role"])),
            control("Unit set (size: k above)", ui.radio("ov-x-set", ui.options(list(st.STORED_SET_KINDS), SET_LABELS),
                                                         s["x_set"])),
            control("Overlap metric", ui.radio("ov-x-metric", [{"label": "count", "value": "count"},
                                                               {"label": "c/k", "value": "c_over_k"},
                                                               {"label": "Jaccard", "value": "jaccard"}], s["x_metric"])),
            control("Spearman scope", ui.dropdown("ov-x-scope", ui.options(list(st.SPEARMAN_SCOPES), SCOPE_LABELS), s["x_scope"])),
            control("Layer", ui.dropdown("ov-x-layer", [], s["x_layer"], clearable=True, placeholder="first"),
                    class_name="w-narrow", id_="ov-x-layer-box"),
        ], className="controls"),
        error_text("ov-x-error"),
        loading(html.Div([ui.graph("ov-x-overlap", class_name="graph half"), ui.graph("ov-x-spearman", class_name="graph half")],
                         className="row")),
        loading(html.Div(id="ov-x-bylayer")),
        html.P("Click a cell of either matrix to list the units both sets share.", className="hint"),
        loading(html.Div(id="ov-x-shared")),
        html.Div(id="ov-x-shared-sink", hidden=True),
    ])
    crossmodal.children[0].children[-1].hidden = s["x_scope"] != "text_decoder/layer"
    interventions = html.Div([
        html.Div([
            control("Experiment", ui.radio("ov-e-exp", [{"label": "ablation", "value": "ablation"},
                                                        {"label": "steering", "value": "steering"},
                                                        {"label": "dose–response", "value": "dose"}], s["e_exp"])),
            control("Input task", ui.dropdown("ov-e-task", ui.options(list(st.PAGES[PAGE].key("e_task").choices)),
                                              s["e_task"], searchable=False)),
        ], className="controls"),
        html.P("Results of the precompute run's batch experiments (the same InterventionSpecs the lab runs live): mean "
               "probability, over the first inputs of each language, that the output is in the concept's language L. "
               "Uses the decoding step above; k is the one the run's experiments used (evaluate.k, in the chart title), "
               "not the k control above.", className="hint"),
        error_text("ov-e-error"),
        loading(ui.graph("ov-e-graph")),
    ])
    tabs = dcc.Tabs(id="ov-tab", value=s["tab"], children=[
        dcc.Tab(label=TAB_LABELS["selectivity"], value="selectivity", children=selectivity),
        dcc.Tab(label=TAB_LABELS["modality"], value="modality", children=modality),
        dcc.Tab(label=TAB_LABELS["concentration"], value="concentration", children=concentration),
        dcc.Tab(label=TAB_LABELS["crossmodal"], value="crossmodal", children=crossmodal),
        dcc.Tab(label=TAB_LABELS["interventions"], value="interventions", children=interventions),
    ])
    return html.Div([
        html.H1("Overview"),
        demo_model_line(run.get("model_spec")),
        notice([html.Div(p) for p in problems], "warning") if problems else None,
        top,
        run_description(run) if run else None,
        tabs,
        dcc.Store(id="ov-c-cell", data=s["c_cell"]),
        dcc.Store(id="ov-heat-rows", data={}),
        dcc.Store(id="ov-x-cell", data=s["x_cell"]),
        dcc.Store(id="ov-state", data=s),
        ui.url_sync(PAGE, st.href(PAGE, s)),
    ], className="page page-overview")


# ------------------------------------------------------------------------------------------------------- helpers


#: The top row's controls each tab does not read (hidden there): concentration and batch results depend on the step
#: only; Speech × text reads k with its own top/bottom/both set.
TOP_CONTROLS = ("ov-set-box", "ov-k-box", "ov-thr-box")
UNUSED_CONTROLS = {"selectivity": (), "modality": (), "concentration": TOP_CONTROLS, "interventions": TOP_CONTROLS,
                   "crossmodal": ("ov-set-box", "ov-thr-box")}


def hidden_controls(tab: str, unit_set: str | None = None) -> tuple[str, ...]:
    """The top controls the tab does not read; where the unit set applies, the AP threshold only acts for the
    'AP ≥ threshold' set and k only for the top/bottom/both sets."""
    unused = UNUSED_CONTROLS.get(tab, ())
    if "ov-set-box" not in unused and unit_set is not None:
        unused = (*unused, "ov-k-box" if unit_set == "ap" else "ov-thr-box")
    return unused


#: The task the overview opens on when the run has it: speech X→en (the ASR view's top decoder units mostly sit on
#: the prompt's language token in layer 0, the least informative first view).
DEFAULT_TASK = "s2tt"


def _task_choices(run_id: str, kind: str, current: str | None) -> tuple[list[dict[str, Any]], str | None, list[str]]:
    """Task options of a concept kind in a run, the task to show and any problem with the requested one."""
    try:
        concepts = context.client().concepts(run_id, kind=kind)
    except BackendError as exc:
        return [], current, [exc.message]
    tasks = list(dict.fromkeys(c["task"] for c in concepts))
    opts = [{"label": TASK_NAMES.get(t, t), "value": t} for t in tasks]
    if current in tasks:
        return opts, current, []
    problem = [f"task {current!r} has no {kind} concepts in this run"] if current else []
    return opts, (DEFAULT_TASK if DEFAULT_TASK in tasks else tasks[0] if tasks else None), problem


def _concept_for(run_id: str, *, kind: str, task: str, step: int, language: str | None) -> dict | None:
    for c in context.client().concepts(run_id, kind=kind, task=task, step=step):
        if c.get("language") == language:
            return c
    return None


def selectivity_figures(s: dict[str, Any], prov: Provenance
                        ) -> tuple[dict[str, tuple], dict[str, dict[str, int]], list[str]]:
    """Heatmap and sub-module bars for each stack the selected concepts have statistics for, for each stack the
    concept id behind each row label (clicks report the label), and a line per stack naming its non-layer columns."""
    c = context.client()
    concepts = c.concepts(s["run"], kind=s["kind"], task=s["task"], step=s["step"])
    if not concepts:
        raise BackendError(404, f"no {s['kind']} concepts for task {s['task']} at step {s['step']} in this run", "task")
    stacks = [stack for stack in STACKS if any(stack in (cc.get("stacks") or []) for cc in concepts)]
    ids = [int(cc["concept_id"]) for cc in concepts]
    comp = None if s["comp"] == "all" else s["comp"]

    def one(stack: str):
        return c.heatmap(s["run"], stack, mode=s["set"], threshold=s["thr"], k=s["k"], component=comp, concept_ids=ids)

    with ThreadPoolExecutor(max_workers=3) as pool:
        heatmaps = list(pool.map(one, stacks))
    columns = fg.column_names(c.layers(s["run"]))
    figures, rows, notes = {}, {}, []
    for stack, hm in zip(stacks, heatmaps):
        fig = fg.selectivity_heatmap(hm, prov, columns=columns, scale=s.get("scale") or "count")
        rows[stack] = {label: int(cc["concept_id"]) for label, cc in zip(fig.data[0].y, hm["concepts"])}
        figures[stack] = (fig, fg.component_bars(hm, prov, columns=columns))
        notes.append(fg.after_layer_note(hm, columns))
    return figures, rows, [n for n in notes if n]


def drill_cell(s: dict[str, Any]) -> tuple[str, str, int]:
    """(modality, language, layer) of the concentration cell `c_cell`; ValueError naming the key when malformed."""
    parts = (s.get("c_cell") or "").split(":")
    if len(parts) != 3 or parts[0] not in ("speech", "text") or not parts[1] or not parts[2].isdigit():
        raise ValueError(f"c_cell: {s.get('c_cell')!r} is not modality:language:layer")
    return parts[0], parts[1], int(parts[2])


def drill_query(s: dict[str, Any]) -> dict[str, Any]:
    """Query of `GET /runs/{run}/concentration/units` for the selected cell (the page and saved findings ask the same)."""
    modality, lang, layer = drill_cell(s)
    speech_task, text_task = ROLE_TASKS[s["c_role"]]
    stack = "text_decoder" if s["c_stack"] == "decoder" else ("speech_encoder" if modality == "speech" else "text_encoder")
    return {"stack": stack, "layer": layer, "task": speech_task if modality == "speech" else text_task,
            "language": lang, "step": s["step"], "limit": DRILL_UNITS, "offset": 0}


def drill_concept_query(s: dict[str, Any]) -> dict[str, Any]:
    """Query of `GET /runs/{run}/concepts` for the language concept the drill-down's unit links open with."""
    q = drill_query(s)
    return {"kind": "language", "task": q["task"], "step": s["step"], "language": q["language"]}


def drill_down(s: dict[str, Any], prov: Provenance) -> list[Any]:
    """The units carrying a concentration cell's magnitude: ranked by mean |activation| over the cell's items."""
    q = drill_query(s)
    page = context.client().concentration_units(s["run"], **q)
    concept = _concept_for(s["run"], **drill_concept_query(s)) if page["units"] else None
    return drill_down_view(s, prov, page, None if concept is None else int(concept["concept_id"]))


def drill_down_view(s: dict[str, Any], prov: Provenance, page: dict[str, Any], concept_id: int | None, *,
                    graph_id: str = "ov-c-drill-graph") -> list[Any]:
    """A concentration cell's mass carriers as bars and unit links (also how a saved finding draws them)."""
    modality, lang, layer = drill_cell(s)
    stack, task, units = page["stack"], page["task"], page["units"]
    if not units:
        return [notice(f"{STACK_NAMES[stack]} layer {layer} has no units for {task} · {lang_label(lang)}", "warning")]
    title = f"Largest mean |activation| in {STACK_NAMES[stack]} layer {layer} · {task} · {lang_label(lang)}"
    fig = fg.mass_units_bars(units, prov, title=title, value_key="share",
                             value_title=f"share of the layer's total |activation| ({page['n_items']} items)")
    links = html.Ul([html.Li(ui.unit_link(s["run"], u, concept_id)) for u in units], className="unit-list")
    top = units[-1]
    return [
        html.H3(f"Units carrying the mass: {modality}-conditioned · {lang_label(lang)} · layer {layer} "
                f"({page['n_units']} units, Gini {page['gini']:.3f})", tabIndex="-1", className="result-heading"),
        html.P(f"The top {len(units)} units carry {100 * top['cumulative_share']:.1f} % of the layer's total mean "
               f"|activation| ({100 * len(units) / page['n_units']:.1f} % of its units).", className="caption"),
        html.Div([ui.graph(graph_id, fig, class_name="graph half"), links], className="row"),
        dcc.Link(f"Send these {len(units)} units to the lab", id="ov-c-drill-lab", className="button small",
                 href=units_to_lab_href(s["run"], [u["unit_id"] for u in units], ulang=lang, step=s["step"])),
    ]


def shared_cell(x_cell: str) -> tuple[str, str]:
    """(text language, speech language) of a Speech × text cell; ValueError naming the key when malformed."""
    parts = (x_cell or "").split(":")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"x_cell: {x_cell!r} is not text_language:speech_language")
    return parts[0], parts[1]


#: Shared units listed (and kept by a finding saved from the cell).
SHARED_UNITS = 100


def shared_units_params(s: dict[str, Any]) -> dict[str, Any]:
    """Query of `GET /runs/{run}/overlap/units` for the selected cell (the dashboard and saved findings ask the same)."""
    text_lang, speech_lang = shared_cell(s["x_cell"])
    return {"text_lang": text_lang, "speech_lang": speech_lang, "role": s["x_role"], "step": s["step"],
            "set_kind": s["x_set"], "k": s["k"], "limit": SHARED_UNITS, "offset": 0}


def shared_units(s: dict[str, Any]) -> list[Any]:
    params = shared_units_params(s)
    page = context.client().overlap_units(s["run"], **params)
    return shared_units_view(s, page)


def shared_units_view(s: dict[str, Any], page: dict[str, Any]) -> list[Any]:
    """The units two sets share, as links to their unit pages (also how a saved finding draws them)."""
    text_lang, speech_lang = shared_cell(s["x_cell"])
    head = (f"{page['total']} units shared by the {s['x_set']}-{page.get('k')} sets of text {lang_label(text_lang)} "
            f"(concept {page.get('text_concept')}) and speech {lang_label(speech_lang)} (concept {page.get('speech_concept')})")
    if not page["units"]:
        return [html.H3(head, tabIndex="-1", className="result-heading")]
    items = [html.Li([ui.unit_link(s["run"], u, page.get("text_concept")),
                      html.Span(f" · rank {u.get('text_rank')} in text, {u.get('speech_rank')} in speech", className="muted")])
             for u in page["units"]]
    more = [html.P(f"showing the first {len(items)}", className="muted")] if page["total"] > len(items) else []
    to_lab = dcc.Link(f"Send these {len(items)} units to the lab", id="ov-x-units-lab", className="button small",
                      href=units_to_lab_href(s["run"], [u["unit_id"] for u in page["units"]], ulang=text_lang, step=s["step"]))
    return [html.H3(head, tabIndex="-1", className="result-heading"), html.Ul(items, className="unit-list"), *more, to_lab]


# ----------------------------------------------------------------------------------------------------- callbacks


def register_callbacks(app: Dash) -> None:
    ui.register_url_sync(app, PAGE)

    @app.callback(Output("ov-task", "options"), Output("ov-task", "value"), Output("ov-task-error", "children"),
                  Input("ov-kind", "value"), State("ov-run", "value"), State("ov-task", "value"), prevent_initial_call=True)
    def task_options(kind, run_id, current):
        try:
            rid = context.client().resolve_run(run_id)
        except BackendError as exc:
            return [], None, exc.message
        opts, value, problems = _task_choices(rid, kind, current)
        if not opts:
            return [], None, problems[0] if problems else f"this run has no {kind} concepts"
        return opts, value, ""

    @app.callback(Output("ov-state", "data"), Output(f"{PAGE}-url", "data"),
                  Input("ov-run", "value"), Input("ov-tab", "value"), Input("ov-step", "value"), Input("ov-k", "value"),
                  Input("ov-set", "value"), Input("ov-thr", "value"), Input("ov-kind", "value"), Input("ov-task", "value"),
                  Input("ov-comp", "value"), Input("ov-scale", "value"), Input("ov-mm-role", "value"), Input("ov-c-role", "value"),
                  Input("ov-c-stack", "value"), Input("ov-c-metric", "value"), Input("ov-c-cell", "data"),
                  Input("ov-x-role", "value"), Input("ov-x-set", "value"), Input("ov-x-metric", "value"),
                  Input("ov-x-scope", "value"), Input("ov-x-layer", "value"), Input("ov-x-cell", "data"),
                  Input("ov-e-exp", "value"), Input("ov-e-task", "value"),
                  State("ov-state", "data"), prevent_initial_call=True)
    def update_state(run_id, tab, step, k, set_kind, thr, kind, task, comp, scale, mm_role, c_role, c_stack, c_metric,
                     c_cell, x_role, x_set, x_metric, x_scope, x_layer, x_cell, e_exp, e_task, previous):
        new = {"run": run_id, "tab": tab, "step": step, "k": k, "set": set_kind, "thr": thr, "kind": kind,
               "task": task, "comp": comp, "scale": scale, "mm_role": mm_role, "c_role": c_role, "c_stack": c_stack,
               "c_metric": c_metric, "c_cell": c_cell, "x_role": x_role, "x_set": x_set, "x_metric": x_metric,
               "x_scope": x_scope, "x_layer": x_layer, "x_cell": x_cell, "e_exp": e_exp, "e_task": e_task}
        if previous and new == previous:
            return no_update, no_update
        return new, st.href(PAGE, new)

    @app.callback(Output("nav", "href", allow_duplicate=True), Input("ov-run", "value"), State("ov-state", "data"),
                  prevent_initial_call=True)
    def change_run(run_id, s):
        if not s or not run_id or run_id == s.get("run"):
            return no_update
        return st.href(PAGE, {**s, "run": run_id, "step": None, "k": None, "task": None, "c_cell": None, "x_cell": None})

    sel_outputs = [Output(f"ov-{kind}-{stack}", "figure") for stack in STACKS for kind in ("heat", "bars")]
    sel_outputs += [Output(f"ov-row-{stack}", "hidden") for stack in STACKS]

    @app.callback(*sel_outputs, Output("ov-heat-rows", "data"), Output("ov-sel-error", "children"),
                  Output("ov-sel-columns", "children"), Input("ov-state", "data"))
    def selectivity(s):
        n = len(sel_outputs) + 3
        if not s or s["tab"] != "selectivity":
            return (no_update,) * n
        hidden = (True,) * len(STACKS)
        blank = (no_update,) * (2 * len(STACKS))
        if not s.get("run") or not s.get("task"):
            return (*blank, *hidden, {}, "choose a run and a task", [])
        try:
            _, _, prov = context.run_and_provenance(s["run"])
            figures, rows, notes = selectivity_figures(s, prov)
        except BackendError as exc:
            return (*blank, *hidden, {}, exc.message, [])
        figs = [figures[stack][i] if stack in figures else no_update for stack in STACKS for i in (0, 1)]
        return (*figs, *[stack not in figures for stack in STACKS], rows, "", [html.Div(x) for x in notes])

    @app.callback(*[Output(box, "hidden") for box in TOP_CONTROLS], Output("ov-x-layer-box", "hidden"),
                  Input("ov-tab", "value"), Input("ov-set", "value"), Input("ov-x-scope", "value"),
                  prevent_initial_call=True)
    def show_acting_controls(tab, unit_set, scope):
        """Only the controls the open tab (and its unit set) reads are shown."""
        unused = hidden_controls(tab, unit_set)
        return (*[box in unused for box in TOP_CONTROLS], scope != "text_decoder/layer")

    @app.callback(Output("nav", "href", allow_duplicate=True),
                  *[Input(f"ov-heat-{stack}", "clickData") for stack in STACKS], State("ov-state", "data"),
                  State("ov-heat-rows", "data"), prevent_initial_call=True)
    def open_layer(*args):
        s, rows = args[-2], args[-1]
        trigger = ctx.triggered_id
        if not trigger or not s:
            return no_update
        data = ctx.triggered[0]["value"]
        if not data or not data.get("points"):
            return no_update
        stack = trigger.removeprefix("ov-heat-")
        point = data["points"][0]
        concept_id = (rows or {}).get(stack, {}).get(str(point.get("y")))
        if concept_id is None or point.get("x") is None:
            return no_update
        return ui.href("layer", run=s["run"], stack=stack, layer=int(point["x"]), concept=int(concept_id), comp=s["comp"])

    @app.callback(Output("ov-e-graph", "figure"), Output("ov-e-error", "children"), Input("ov-state", "data"))
    def batch(s):
        if not s or s["tab"] != "interventions":
            return no_update, no_update
        try:
            _, _, prov = context.run_and_provenance(s["run"])
            data = context.client().interventions(s["run"], input_task=s["e_task"])
        except BackendError as exc:
            return fg.message_figure("no figure: " + exc.message), exc.message
        if not data["conditions"]:
            return fg.message_figure(f"this run stored no batch experiments for {s['e_task']} (see evaluate.experiments "
                                     "in its config)", prov), ""
        return fg.batch_interventions(data["conditions"], prov, experiment=s["e_exp"], input_task=s["e_task"],
                                      step=s["step"]), ""

    @app.callback(Output("ov-mm-graph", "figure"), Output("ov-mm-error", "children"), Input("ov-state", "data"))
    def modality(s):
        if not s or s["tab"] != "modality":
            return no_update, no_update
        try:
            _, _, prov = context.run_and_provenance(s["run"])
            concept = _concept_for(s["run"], kind="modality", task=MODALITY_TASK[s["mm_role"]], step=s["step"], language=None)
            if concept is None:
                return fg.message_figure("this run has no pooled modality concept for that role and step", prov), ""
            hm = context.client().heatmap(s["run"], "text_decoder", mode=s["set"], threshold=s["thr"], k=s["k"],
                                          concept_ids=[int(concept["concept_id"])], group="site")
            return fg.modality_map(hm, prov, columns=fg.column_names(context.client().layers(s["run"]))), ""
        except BackendError as exc:
            return fg.message_figure("no figure: " + exc.message), exc.message

    @app.callback(Output("ov-c-graph", "figure"), Output("ov-c-error", "children"), Input("ov-state", "data"))
    def concentration(s):
        if not s or s["tab"] != "concentration":
            return no_update, no_update
        speech_task, text_task = ROLE_TASKS[s["c_role"]]
        c = context.client()
        try:
            _, _, prov = context.run_and_provenance(s["run"])
            if s["c_stack"] == "decoder":
                data = c.concentration(s["run"], "text_decoder", step=s["step"], metric=s["c_metric"])
                speech, text = data, data
            else:
                speech = c.concentration(s["run"], "speech_encoder", step=s["step"], task=speech_task, metric=s["c_metric"])
                text = c.concentration(s["run"], "text_encoder", step=s["step"], task=text_task, metric=s["c_metric"])
            return fg.concentration_pair(speech, text, prov, speech_task=speech_task, text_task=text_task,
                                         columns=fg.column_names(c.layers(s["run"]))), ""
        except BackendError as exc:
            return fg.message_figure("no figure: " + exc.message), exc.message

    @app.callback(Output("ov-c-cell", "data"), Input("ov-c-graph", "clickData"), prevent_initial_call=True)
    def concentration_click(data):
        if not data or not data.get("points"):
            return no_update
        point = data["points"][0]
        modality = "speech" if point.get("curveNumber", 0) == 0 else "text"
        return f"{modality}:{point['y']}:{int(point['x'])}"

    @app.callback(Output("ov-c-drill", "children"), Input("ov-state", "data"))
    def concentration_drill(s):
        if not s or s["tab"] != "concentration" or not s.get("c_cell"):
            return [] if s and not s.get("c_cell") else no_update
        try:
            _, _, prov = context.run_and_provenance(s["run"])
            return drill_down(s, prov)
        except (BackendError, ValueError) as exc:
            return [notice(ui.plain(exc) if isinstance(exc, BackendError) else f"c_cell: {s['c_cell']!r} is not "
                           "modality:language:layer", "error")]

    @app.callback(Output("ov-x-layer", "options"), Input("ov-run", "value"))
    def decoder_layers(run_id):
        try:
            rid = context.client().resolve_run(run_id)
            layers = [r["layer"] for r in context.client().layers(rid) if r["stack"] == "text_decoder"]
        except BackendError:
            return []
        return ui.options(layers)

    @app.callback(Output("ov-x-overlap", "figure"), Output("ov-x-spearman", "figure"), Output("ov-x-bylayer", "children"),
                  Output("ov-x-error", "children"), Input("ov-state", "data"))
    def crossmodal(s):
        if not s or s["tab"] != "crossmodal":
            return no_update, no_update, no_update, no_update
        c = context.client()
        errors = []
        try:
            _, _, prov = context.run_and_provenance(s["run"])
        except BackendError as exc:
            empty = fg.message_figure(exc.message)
            return empty, empty, [], exc.message
        try:
            ov = fg.overlap_matrix(c.overlap(s["run"], role=s["x_role"], step=s["step"], set_kind=s["x_set"], k=s["k"],
                                             metric=s["x_metric"]), prov)
        except BackendError as exc:
            ov = fg.message_figure("no overlap: " + exc.message, prov)
            errors.append(exc.message)
        bylayer: list[Any] = []
        try:
            layer = s["x_layer"] if s["x_scope"] == "text_decoder/layer" else None
            sp_data = c.spearman(s["run"], role=s["x_role"], step=s["step"], scope=s["x_scope"])
            sp = fg.spearman_matrix(sp_data, prov, layer=layer)
            if s["x_scope"] == "text_decoder/layer":
                bylayer = [ui.graph("ov-x-bylayer-graph", fg.spearman_by_layer(sp_data, prov))]
        except BackendError as exc:
            sp = fg.message_figure("no Spearman correlations: " + exc.message, prov)
            errors.append(exc.message)
        return ov, sp, bylayer, " · ".join(errors)

    @app.callback(Output("ov-x-cell", "data"), Input("ov-x-overlap", "clickData"), Input("ov-x-spearman", "clickData"),
                  prevent_initial_call=True)
    def crossmodal_click(a, b):
        data = a if ctx.triggered_id == "ov-x-overlap" else b
        if not data or not data.get("points"):
            return no_update
        point = data["points"][0]
        return f"{point['y']}:{point['x']}"

    for results in ("ov-c-drill", "ov-x-shared"):
        app.clientside_callback(ClientsideFunction(namespace="a11y", function_name="reveal"),
                                Output(f"{results}-sink", "children"), Input(results, "children"),
                                State(results, "id"), prevent_initial_call=True)

    @app.callback(Output("ov-x-shared", "children"), Input("ov-state", "data"))
    def crossmodal_shared(s):
        if not s or s["tab"] != "crossmodal":
            return no_update
        if not s.get("x_cell"):
            return []
        try:
            return shared_units(s)
        except BackendError as exc:
            return [notice(exc.message, "error")]
        except ValueError as exc:
            return [notice(str(exc), "error")]
