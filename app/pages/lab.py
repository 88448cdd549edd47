"""Intervention lab: pick an input, a target language and units, then compare baseline and intervened outputs.

URL state keys: run, in (example | text | upload | mic), ex, mod, text, src, tgt, us (concept | basket), role, umod
(units found on speech | text | multimodal), ulang, step, set, k, stack, value, units (basket unit ids), max_new,
go (1 = run on open), sweep (1 = k sweep on open); the dial: strength, factor (value scale), pos (all | last | range),
pos_from, pos_to, decode_steps (all, or e.g. 0,2-4), probe (a token charted per step); fires (1 = what fires on open),
rank (z | activation | magnitude); the sweep's sweep_inputs and seeds; the attribution panel's at_* keys
(app/pages/lab_attribution.py). Uploaded and recorded audio cannot travel in a link; the link keeps every other
setting. A file or recording is sent once to the backend (POST /audio, `app.components.audio`) and Run, the k sweep,
what fires and attribution name it by the audio id it gets; the bridge link carries that id.

Sections are functions (`_input_card`, `_units_card`, `_dial_card`, `_results`, `_fires_card`; the attribution
panel in its own module), so a panel is one call added to `layout`.

The composer picks the concept whose units are forced: a language concept of role × modality (representation:
s2tt / t2tt; control: en2x_s2tt / en2x_t2tt; multimodal: both). Units found on one modality applied to an input of the
other are the paper's cross-modal steering.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update

from app import context, state as st, ui
from app.client import BackendError
from app.components import figures as fg, text_limits
from app.components.audio import audio_id_for, audio_input, audio_input_stores, register_audio_input
from app.components.common import control, demo_model_line, error_text, lang_label, loading, notice, step_label
from app.components.lab_result import fires_view, input_audio_player, result_view, sweep_progress, sweep_view
from app.pages import lab_attribution
from app.lab_logic import (
    ERROR_SLOTS,
    LAB_DEFAULTS,
    PAGE,
    LabInputError,
    add_to_basket,
    basket_entry,
    basket_line,
    basket_units,
    build_request,
    build_spec,
    concept_of,
    crossmodal_note,
    default_href,
    dial_line,
    fires_request,
    result_summary,
    settle_choices,
    sweep_examples,
    sweep_inputs,
    sweep_request,
    unit_refs,
    upload_limit,
    with_basket,
)


# ------------------------------------------------------------------------------------------------------ layout


def _choices(s: dict[str, Any]) -> tuple[dict, dict, list[dict], list[str], list[str]]:
    """Run, capabilities, examples, target languages and problems; fills run-dependent defaults into `s`."""
    c = context.client()
    problems: list[str] = []
    s["run"] = c.resolve_run(s["run"])
    run = c.run(s["run"])
    try:
        caps = c.capabilities()
    except BackendError as exc:
        caps = {}
        problems.append(exc.message)
    examples = c.examples(s["run"], limit=500)["examples"]
    model = caps.get("model") or {}
    model_langs = model.get("languages") or []
    langs = list(dict.fromkeys([*(run.get("languages") or []), *model_langs]))
    if s["ex"] is None and examples:
        s["ex"] = next((e["example_id"] for e in examples if e["lang"] == "eng"), examples[0]["example_id"])
    problems += settle_choices(s, langs=langs, run_langs=run.get("languages") or [], steps=run.get("steps") or [],
                               model=(model.get("loaded") or run.get("model_spec")) if model_langs else None)
    return run, caps, examples, langs, problems


def layout(**query: Any) -> html.Div:
    query, clipped = text_limits.clip_link_text(query)
    s, problems = st.parse(PAGE, {**LAB_DEFAULTS, **query})
    problems += clipped
    try:
        run, caps, examples, langs, more = _choices(s)
    except BackendError as exc:
        return html.Div([html.H1("Intervention lab"), notice(exc.message, "error"), ui.url_sync(PAGE, st.href(PAGE, s))],
                        className="page page-lab")
    problems += more
    model = caps.get("model") or {}
    return html.Div([
        html.H1("Intervention lab"),
        demo_model_line(model.get("loaded") or run.get("model_spec")),
        dcc.Link("Which sound did each output token read? Open the bridge", id="lab-bridge-link", className="button-link",
                 href=bridge_href(s, None)),
        notice([html.Div(p) for p in problems], "warning") if problems else None,
        _model_note(s, run, model),
        html.Div([html.Div(_input_card(s, caps, examples, langs), className="half"),
                  html.Div(_units_card(s, run), className="half")], className="row"),
        _dial_card(s),
        _results(),
        _fires_card(s),
        lab_attribution.panel(s),
        *_stores(s, caps),
    ], className="page page-lab")


def bridge_href(s: Mapping[str, Any], sent: Mapping[str, Any] | None) -> str:
    """The bridge on the lab's speech input: its corpus example fed as audio, or its upload or recording by the id the
    backend gave it (once sent)."""
    if s["in"] in ("upload", "mic"):
        entry = (sent or {}).get(s["in"]) or {}
        return ui.href("bridge", run=s["run"], tgt=s["tgt"], **{"in": s["in"], "aid": entry.get("audio_id")})
    return ui.href("bridge", run=s["run"], ex=s["ex"] if s["in"] == "example" and s["mod"] == "speech" else None,
                   tgt=s["tgt"])


def _model_note(s: Mapping[str, Any], run: Mapping[str, Any], model: Mapping[str, Any]) -> html.Div | None:
    """A warning when the live model is not ready, or is not the model the run was computed with."""
    if model.get("state") not in (None, "ready"):
        return notice(f"live model: {model.get('state')}" + (f" ({model.get('error')})" if model.get("error") else ""),
                      "warning")
    if model.get("checksum") and model.get("checksum") != run.get("model_checksum"):
        return notice(f"the loaded model ({model.get('loaded')}, {model.get('checksum')}) is not the model of run "
                      f"{s['run']} ({run.get('model_spec')}, {run.get('model_checksum')}): concept sets will be refused",
                      "warning")
    return None


def _input_card(s: Mapping[str, Any], caps: Mapping[str, Any], examples: list[dict], langs: list[str]) -> html.Div:
    """The input (corpus example, typed text, upload, microphone), the target language and the run buttons."""
    lang_opts = ui.options(langs, {l: lang_label(l) for l in langs})
    ex_opts = [{"label": f"{e['lang']} · {e['sentence_id']} · {e['text'][:48]}", "value": e["example_id"]} for e in examples]
    return html.Div([
        html.H2("Input"),
        control("Run (concepts and statistics)", ui.dropdown("lab-run-select", context.run_options(), s["run"]),
                "lab-run_id-error", class_name="w-full"),
        control("Input kind", ui.radio("lab-in", [{"label": "corpus example", "value": "example"},
                                                  {"label": "typed text", "value": "text"},
                                                  {"label": "uploaded audio", "value": "upload"},
                                                  {"label": "microphone", "value": "mic"}], s["in"]), "lab-input-error"),
        html.Div([
            control("Example", ui.dropdown("lab-ex", ex_opts, s["ex"]), "lab-example_id-error", class_name="w-wide"),
            control("Feed its", ui.radio("lab-mod", [{"label": "text", "value": "text"}, {"label": "audio", "value": "speech"}],
                                         s["mod"])),
        ], id="lab-in-example", className="controls"),
        html.Div([
            control("Text", html.Div([dcc.Textarea(id="lab-text", value=s["text"], maxLength=text_limits.TEXT_LIMIT,
                                                   className="textarea", placeholder="Type a sentence"),
                                      text_limits.text_help(s["text"])]), "lab-text-error", class_name="w-wide"),
            control("Source language", ui.dropdown("lab-src", lang_opts, s["src"]), "lab-src_lang-error"),
        ], id="lab-in-text", className="controls"),
        *audio_input(PAGE, upload_limit(caps), kind=s["in"]),
        control("Target language", ui.dropdown("lab-tgt", lang_opts, s["tgt"]), "lab-tgt_lang-error"),
        html.Div([html.Button("Run", id="lab-run", className="button primary"),
                  html.Button("Run k sweep", id="lab-sweep", className="button"),
                  html.Button("What fires", id="lab-fires", className="button")], className="actions run-actions"),
        html.Div([
            control("Sweep inputs", dcc.Input(id="lab-sweep-inputs", type="number", min=1, max=8, step=1,
                                              value=s["sweep_inputs"], debounce=True), class_name="w-narrow",
                    help_text="this input + corpus examples in its language (an upload or recording alone)"),
            control("Random seeds", dcc.Input(id="lab-seeds", type="number", min=1, max=8, step=1, value=s["seeds"],
                                              debounce=True), class_name="w-narrow", help_text="one random control per seed"),
        ], className="controls"),
        html.P("Run compares the baseline with the intervened output. The k sweep runs as one backend job: the set at "
               "k/8, k/4, k/2 and k and as many random units per seed, on each input (mean and spread). What fires "
               "lists the units this input drives furthest from their corpus distribution, per layer.", className="hint"),
        error_text("lab-run-error"),
    ], className="card")


def _units_card(s: Mapping[str, Any], run: Mapping[str, Any]) -> html.Div:
    """The composer: a concept's set (role, modality, language, step, set, stack, k) or the basket, and the value."""
    run_langs = run.get("languages") or []
    ks = sorted(int(k) for k in ((run.get("config") or {}).get("analysis") or {}).get("ks") or [])
    kmax = max(20, 4 * (ks[-1] if ks else 500), int(s["k"]))
    k_marks = {v: str(v) for v in sorted({1, *ks, kmax})}
    return html.Div([
        html.H2("Units"),
        control("Use", ui.radio("lab-us", [{"label": "a concept's set", "value": "concept"},
                                           {"label": "the basket", "value": "basket"}], s["us"])),
        html.Div([
            control("Role", ui.radio("lab-role", ui.options(list(st.ROLES)), s["role"])),
            control("Units found on", ui.radio("lab-umod", [{"label": "speech", "value": "speech"}, {"label": "text", "value": "text"},
                                                            {"label": "speech+text", "value": "multimodal"}], s["umod"])),
            control("Concept language", ui.dropdown("lab-ulang", ui.options(run_langs, {l: lang_label(l) for l in run_langs}), s["ulang"])),
            control("Step", ui.dropdown("lab-step", ui.options(run.get("steps") or [], {v: step_label(v) for v in run.get("steps") or []}),
                                        s["step"]), class_name="w-wide"),
        ], className="controls"),
        html.Div(id="lab-concept-line", className="muted"),
        html.Div(crossmodal_note(s), id="lab-crossmodal", className="badge"),
        html.Div([
            control("Set", ui.radio("lab-set", ui.options(["top", "bottom", "both", "random"],
                                                           {"both": "both (2k)", "random": "random (control)"}), s["set"])),
            control("Stack", ui.radio("lab-stack", [{"label": "decoder", "value": "text_decoder"},
                                                    {"label": "encoder", "value": "encoder"}, {"label": "all", "value": "all"}],
                                      s["stack"])),
        ], className="controls"),
        control("k (units per set; both = 2k)", dcc.Slider(id="lab-k", min=1, max=kmax, step=1, value=int(s["k"]), marks=k_marks),
                class_name="w-full"),
        html.Div([
            html.Span("Basket: ", className="control-label"), html.Span(id="lab-basket-list"),
            html.Button("Use the basket", id="lab-basket-use", className="button small"),
            html.Button("Empty the basket", id="lab-basket-clear", className="button small"),
        ], className="basket-row"),
        html.Div([
            control("Value written", ui.dropdown("lab-value", ui.options([*st.VALUES, "scale"], {
                "on_p50": "on_p50 (median when the concept is on)", "on_p90": "on_p90", "off_mean": "off_mean",
                "off_p50": "off_p50", "zero": "zero", "scale": "scale (own value × factor)"}), s["value"])),
            control("Max new tokens", dcc.Input(id="lab-max-new", type="number", min=1, max=1024, step=1, value=s["max_new"],
                                                debounce=True), "lab-max_new_tokens-error", class_name="w-narrow"),
        ], className="controls"),
        error_text("lab-spec-error"),
    ], className="card")


STRENGTH_MARKS = {v: f"{v:g}" for v in (-1, 0, 0.5, 1, 2, 4)}


def _dial_card(s: Mapping[str, Any]) -> html.Div:
    """The dial: strength (0 = baseline, 1 = the value, beyond = further), scale factor, decoder positions, decoding
    steps, and a probe token whose probability the result charts per step."""
    return html.Div([
        html.H2("Dial"),
        html.Div([
            control("Strength", dcc.Slider(id="lab-strength", min=-1, max=4, step=0.05, value=float(s["strength"]),
                                           marks=STRENGTH_MARKS, tooltip={"placement": "bottom"}), class_name="w-wide",
                    help_text="each unit moves this far from its own value toward the value written (0 = baseline)"),
            control("Scale factor", dcc.Input(id="lab-factor", type="number", step=0.1, value=s["factor"], debounce=True),
                    class_name="w-narrow", help_text="with value 'scale'"),
        ], className="controls"),
        html.Div([
            control("Decoder positions", ui.radio("lab-pos", [{"label": "all", "value": "all"},
                                                              {"label": "each step's newest", "value": "last"},
                                                              {"label": "a range", "value": "range"}], s["pos"])),
            control("From position", dcc.Input(id="lab-pos-from", type="number", min=0, step=1, value=s["pos_from"],
                                               debounce=True), class_name="w-narrow"),
            control("To (exclusive)", dcc.Input(id="lab-pos-to", type="number", min=1, step=1, value=s["pos_to"],
                                                debounce=True, placeholder="end"), class_name="w-narrow",
                    help_text="0 = </s>, 1 = language token, 2+ = output tokens"),
            control("Decoding steps", dcc.Input(id="lab-decode-steps", type="text", value=s["decode_steps"], debounce=True,
                                                placeholder="all, or e.g. 0,2-4"), class_name="w-narrow",
                    help_text="which output tokens it acts on (0 = the first)"),
            control("Probe token", dcc.Input(id="lab-probe", type="text", value=s["probe"], debounce=True,
                                             placeholder="e.g. ▁Die"), "lab-probe_token-error", class_name="w-narrow",
                    help_text="its probability at every output step"),
        ], className="controls"),
        html.P(dial_line(s), id="lab-dial-line", className="muted"),
    ], className="card", id="lab-dial")


def _results() -> html.Div:
    """Where results land: the Run result, the sweep (progress, then its chart); each scrolls into view and takes
    focus when it arrives."""
    return html.Div([
        loading(html.Div(id="lab-result", children=html.P(
            "Choose an input and units, then Run: the baseline and the intervened output appear here.", className="hint"))),
        html.Div(id="lab-sweep-progress"),
        html.Div(id="lab-sweep-out"),
        dcc.Interval(id="lab-sweep-poll", interval=400, disabled=True),
    ], className="lab-results")


def _fires_card(s: Mapping[str, Any]) -> html.Div:
    """What fires on the input: ranking choice and the per-layer lists (filled by the What fires button)."""
    return html.Div([
        html.Div([
            control("Rank units by", ui.radio("lab-rank", [{"label": "deviation from the corpus (|z|)", "value": "z"},
                                                           {"label": "activation", "value": "activation"},
                                                           {"label": "|activation|", "value": "magnitude"}], s["rank"])),
            html.Span(id="lab-fires-status", className="muted", role="status", **{"aria-live": "polite"}),
        ], className="controls"),
        loading(html.Div(id="lab-fires-out")),
    ], className="card", id="lab-fires-card")


def _stores(s: Mapping[str, Any], caps: Mapping[str, Any]) -> list[Any]:
    return [
        *audio_input_stores(PAGE, upload_limit(caps)),
        dcc.Store(id="lab-go", data=s["go"]),
        dcc.Store(id="lab-sweep-go", data=s["sweep"]),
        dcc.Store(id="lab-fires-go", data=s["fires"]),
        dcc.Store(id="lab-sweep-job", data=None),
        dcc.Store(id="lab-fires-units", data={}),
        *[dcc.Store(id=f"{target}-scrolled") for target in ("lab-result", "lab-sweep-out", "lab-fires-out")],
        dcc.Store(id="lab-state", data=s),
        ui.url_sync(PAGE, st.href(PAGE, s)),
    ]


# ---------------------------------------------------------------------------------------------------- running


def _concept(s: Mapping[str, Any]) -> dict | None:
    return concept_of(context.client(), s)


def _spec(s: Mapping[str, Any], *, set_kind: str | None = None, k: int | None = None) -> dict[str, Any]:
    concept = _concept(s)
    refs = None
    if s["us"] == "basket":
        refs = unit_refs(list(s.get("units") or ()), context.client().sites(s["run"]))
    return build_spec(s, concept, refs, set_kind=set_kind, k=k)


def run_intervention(s: Mapping[str, Any], spec: Mapping[str, Any], audio_id: str | None) -> dict[str, Any]:
    return context.client().intervene(build_request(s, spec, audio_id))


def sweep_inputs_of(s: Mapping[str, Any], audio_id: str | None) -> list[dict[str, Any]]:
    """The sweep's inputs for the lab state (its own input, then corpus examples in the same language)."""
    if audio_id is not None:
        return sweep_inputs(s, [], audio_id)
    return sweep_inputs(s, sweep_examples(context.client(), s))


def register_callbacks(app: Dash) -> None:
    ui.register_url_sync(app, PAGE)
    lab_attribution.register_callbacks(app)

    register_audio_input(app, PAGE, context.client)

    @app.callback(Output("lab-bridge-link", "href"), Input("lab-state", "data"), Input("lab-audio", "data"),
                  prevent_initial_call=True)
    def bridge_link(s, sent):
        return bridge_href(s, sent)

    @app.callback(Output("lab-in-example", "hidden"), Output("lab-in-text", "hidden"), Output("lab-in-upload", "hidden"),
                  Output("lab-in-mic", "hidden"), Input("lab-in", "value"))
    def show_input(kind):
        return kind != "example", kind != "text", kind != "upload", kind != "mic"

    @app.callback(Output("nav", "href", allow_duplicate=True), Input("lab-run-select", "value"), State("lab-state", "data"),
                  prevent_initial_call=True)
    def reload(run_id, s):
        if not s or run_id == s["run"]:
            return no_update
        return default_href(run=run_id)

    @app.callback(Output("lab-state", "data"), Output(f"{PAGE}-url", "data"),
                  Input("lab-in", "value"), Input("lab-ex", "value"), Input("lab-mod", "value"), Input("lab-text", "value"),
                  Input("lab-src", "value"), Input("lab-tgt", "value"), Input("lab-us", "value"), Input("lab-role", "value"),
                  Input("lab-umod", "value"), Input("lab-ulang", "value"), Input("lab-step", "value"), Input("lab-set", "value"),
                  Input("lab-k", "value"), Input("lab-stack", "value"), Input("lab-value", "value"),
                  Input("lab-max-new", "value"), Input("lab-go", "data"), Input("lab-sweep-go", "data"),
                  Input("lab-fires-go", "data"), Input("lab-strength", "value"), Input("lab-factor", "value"),
                  Input("lab-pos", "value"), Input("lab-pos-from", "value"), Input("lab-pos-to", "value"),
                  Input("lab-decode-steps", "value"), Input("lab-probe", "value"), Input("lab-rank", "value"),
                  Input("lab-sweep-inputs", "value"), Input("lab-seeds", "value"),
                  State("lab-state", "data"), prevent_initial_call=True)
    def update(inp, ex, mod, text, src, tgt, us, role, umod, ulang, step, set_kind, k, stack, value, max_new, go, sweep_go,
               fires_go, strength, factor, pos, pos_from, pos_to, decode_steps, probe, rank, n_inputs, seeds, s):
        new = {**s, "in": inp, "ex": ex, "mod": mod, "text": text or "", "src": src, "tgt": tgt, "us": us, "role": role,
               "umod": umod, "ulang": ulang, "step": step, "set": set_kind, "k": int(k or 1), "stack": stack,
               "value": value, "max_new": int(max_new or s["max_new"]), "go": go or 0, "sweep": sweep_go or 0,
               "fires": fires_go or 0, "strength": float(strength if strength is not None else 1.0),
               "factor": float(factor) if factor is not None else s["factor"], "pos": pos,
               "pos_from": int(pos_from) if pos_from is not None else s["pos_from"],
               "pos_to": int(pos_to) if pos_to not in (None, "") else None,
               "decode_steps": (decode_steps or "all").strip() or "all", "probe": probe or "", "rank": rank,
               "sweep_inputs": int(n_inputs or s["sweep_inputs"]), "seeds": int(seeds or s["seeds"])}
        flags = ("go", "sweep", "fires")
        if ctx.triggered_id not in ("lab-go", "lab-sweep-go", "lab-fires-go") and any(
                new[x] != s[x] for x in new if x not in flags):
            new["go"], new["sweep"], new["fires"] = 0, 0, 0
        if new == s:
            return no_update, no_update
        return new, st.href(PAGE, new)

    @app.callback(Output("lab-crossmodal", "children"), Input("lab-state", "data"), Input("basket", "data"))
    def crossmodal(s, basket):
        return crossmodal_note(with_basket(s, basket))

    @app.callback(Output("lab-state", "data", allow_duplicate=True), Output(f"{PAGE}-url", "data", allow_duplicate=True),
                  Input("basket", "data"), State("lab-state", "data"), prevent_initial_call="initial_duplicate")
    def adopt_basket(basket, s):
        new = with_basket(s, basket)
        if new == s:
            return no_update, no_update
        return new, st.href(PAGE, new)

    @app.callback(Output("lab-concept-line", "children"), Input("lab-state", "data"))
    def concept_line(s):
        try:
            concept = _concept(s)
        except BackendError as exc:
            return exc.message
        if concept is None:
            return "no concept matches this role, modality, language and step"
        return f"concept {concept['concept_id']}: {concept.get('description')} ({concept.get('positives')} positive items)"

    @app.callback(Output("lab-basket-list", "children"), Input("basket", "data"), Input("lab-state", "data"))
    def basket_list(basket, s):
        return basket_line(with_basket(s, basket), basket_units(basket, s.get("run")))

    @app.callback(Output("nav", "href", allow_duplicate=True), Input("lab-basket-use", "n_clicks"),
                  State("basket", "data"), State("lab-state", "data"), prevent_initial_call=True)
    def use_basket(n, basket, s):
        units = basket_units(basket, s.get("run"))
        if not n or not units:
            return no_update
        return st.href(PAGE, {**s, "us": "basket", "units": units, "go": 0, "sweep": 0})

    @app.callback(Output("basket", "data", allow_duplicate=True), Input("lab-basket-clear", "n_clicks"), prevent_initial_call=True)
    def clear_basket(n):
        return [] if n else no_update

    outputs = [Output("lab-result", "children"), Output("lab-go", "data"), Output("view-result", "data", allow_duplicate=True),
               *[Output(f"lab-{slot}-error", "children") for slot in ERROR_SLOTS], Output("lab-run-error", "children")]

    @app.callback(*outputs, Input("lab-run", "n_clicks"), State("lab-state", "data"), State("lab-upload-data", "data"),
                  State("lab-mic", "data"), State("lab-audio", "data"), State("basket", "data"),
                  prevent_initial_call="initial_duplicate")
    def run(n, s, upload, mic, sent, basket):
        s = with_basket(s, basket)
        clear = {slot: "" for slot in ERROR_SLOTS}
        if not n and not (s.get("go") and s["in"] in ("example", "text")):
            return no_update, no_update, no_update, *clear.values(), ""

        def fail(slot: str, message: str):
            errs = dict(clear)
            if slot in errs:
                errs[slot] = message
                return no_update, 0, no_update, *errs.values(), "the request was not run: see the message by the control"
            return no_update, 0, no_update, *errs.values(), message

        try:
            _, _, prov = context.run_and_provenance(s["run"])
            result = run_intervention(s, _spec(s), audio_id_for(context.client(), s["in"], sent, upload, mic))
        except LabInputError as exc:
            return fail(exc.field, exc.message)
        except BackendError as exc:
            slot, message = next(iter(ui.route_error(exc, ERROR_SLOTS, "run").items()))
            return fail(slot, message)
        view = result_view(result, s, prov, input_audio_player(s, upload, mic))
        return view, 1, {"page": PAGE, "summary": result_summary(result)}, *clear.values(), ""

    @app.callback(Output("lab-dial-line", "children"), Input("lab-state", "data"))
    def dial_words(s):
        return dial_line(s)

    @app.callback(Output("lab-sweep-job", "data"), Output("lab-sweep-poll", "disabled"),
                  Output("lab-sweep-progress", "children"), Output("lab-sweep-out", "children", allow_duplicate=True),
                  Input("lab-sweep", "n_clicks"), State("lab-state", "data"), State("basket", "data"),
                  State("lab-upload-data", "data"), State("lab-mic", "data"), State("lab-audio", "data"),
                  prevent_initial_call="initial_duplicate")
    def submit_sweep(n, s, basket, upload, mic, sent):
        if not n and not (s.get("sweep") and s["in"] in ("example", "text")):
            return no_update, no_update, no_update, no_update
        s = with_basket(s, basket)
        try:
            request = sweep_request(s, _spec(s), sweep_inputs_of(s, audio_id_for(context.client(), s["in"], sent, upload, mic)))
            job = context.client().submit_sweep(request)
        except LabInputError as exc:
            return None, True, notice(exc.message, "error"), []
        except BackendError as exc:
            return None, True, notice(exc.message, "error"), []
        return job["job_id"], False, sweep_progress({"state": job.get("state"), "progress": None}), []

    @app.callback(Output("lab-sweep-progress", "children", allow_duplicate=True), Output("lab-sweep-out", "children"),
                  Output("lab-sweep-poll", "disabled", allow_duplicate=True), Output("lab-sweep-go", "data"),
                  Input("lab-sweep-poll", "n_intervals"), State("lab-sweep-job", "data"), State("lab-state", "data"),
                  prevent_initial_call=True)
    def poll_sweep(_, job_id, s):
        if not job_id:
            return no_update, no_update, True, no_update
        try:
            status = context.client().job(job_id)
        except BackendError as exc:
            return notice(f"the sweep's progress could not be read: {exc.message}", "error"), no_update, True, 0
        if status["state"] == "error":
            return notice(f"the sweep failed: {(status.get('error') or {}).get('error')}", "error"), [], True, 0
        if status["state"] != "done":
            return sweep_progress(status), no_update, False, no_update
        _, _, prov = context.run_and_provenance(s["run"])
        return sweep_progress(status), sweep_view(status["result"], prov), True, 1

    @app.callback(Output("lab-fires-out", "children"), Output("lab-fires-units", "data"), Output("lab-fires-go", "data"),
                  Input("lab-fires", "n_clicks"), State("lab-state", "data"), State("lab-upload-data", "data"),
                  State("lab-mic", "data"), State("lab-audio", "data"))
    def what_fires(n, s, upload, mic, sent):
        if not n and not (s.get("fires") and s["in"] in ("example", "text")):
            return no_update, no_update, no_update
        try:
            result = context.client().activations(fires_request(s, audio_id_for(context.client(), s["in"], sent, upload, mic)))
        except (LabInputError, BackendError) as exc:
            return notice(exc.message, "error"), {}, 0
        units = {str(u["unit_id"]): basket_entry(result["run_id"], {**u, "stack": stack["stack"]})
                 for stack in result["stacks"] for layer in stack["layers"] for u in layer["units"]}
        return fires_view(result, result["run_id"], columns=fg.column_names(context.client().layers(result["run_id"]))), units, 1

    @app.callback(Output("basket", "data", allow_duplicate=True), Output("lab-fires-status", "children"),
                  Input({"type": "lab-fires-add", "unit": ALL}, "n_clicks"), State("lab-fires-units", "data"),
                  State("basket", "data"), prevent_initial_call=True)
    def fires_to_basket(clicks, units, basket):
        trigger = ctx.triggered_id
        if not trigger or not any(clicks or ()) or str(trigger["unit"]) not in (units or {}):
            return no_update, no_update
        new, added = add_to_basket(basket, units[str(trigger["unit"])])
        if not added:
            return no_update, f"unit {trigger['unit']} is already in the basket ({len(new)} units)"
        return new, f"unit {trigger['unit']} added · the basket holds {len(new)} units"

    for target, heading in (("lab-result", "lab-result-heading"), ("lab-sweep-out", "lab-sweep-heading"),
                            ("lab-fires-out", "lab-fires-heading")):
        app.clientside_callback(
            f"""function (children) {{
                var tries = 0;
                function attempt() {{
                    var h = document.getElementById("{heading}");
                    if (!h) {{ if (tries++ < 60) {{ setTimeout(attempt, 50); }} return; }}
                    h.scrollIntoView({{block: "start"}});
                    h.focus({{preventScroll: true}});
                }}
                setTimeout(attempt, 60);
                return window.dash_clientside.no_update;
            }}""",
            Output(f"{target}-scrolled", "data"), Input(target, "children"), prevent_initial_call=True)
