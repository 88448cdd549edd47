"""Intervention lab: pick an input, a target language and units, then compare baseline and intervened outputs.

URL state keys: run, in (example | text | upload | mic), ex, mod, text, src, tgt, us (concept | basket), role, umod
(units found on speech | text | multimodal), ulang, step, set, k, stack, value, units (basket unit ids), max_new,
go (1 = run on open), sweep (1 = k sweep on open), and the attribution panel's at_* keys (app/pages/lab_attribution.py). Uploaded and recorded audio cannot travel in a link; the link keeps
every other setting.

The composer picks the concept whose units are forced: a language concept of role × modality (representation:
s2tt / t2tt; control: en2x_s2tt / en2x_t2tt; multimodal: both). Units found on one modality applied to an input of the
other are the paper's cross-modal steering.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dash import ClientsideFunction, Dash, Input, Output, State, ctx, dcc, html, no_update

from app import context, state as st, ui
from app.client import BackendError
from app.components import figures as fg, text_limits
from app.components.audio import audio_player
from app.components.common import control, demo_model_line, error_text, lang_label, loading, notice, step_label
from app.components.lab_result import input_audio_player, result_view
from app.pages import lab_attribution
from app.lab_logic import (
    ERROR_SLOTS,
    LAB_DEFAULTS,
    PAGE,
    LabInputError,
    basket_line,
    basket_units,
    build_request,
    build_spec,
    check_upload_type,
    concept_query,
    crossmodal_note,
    decode_upload,
    default_href,
    result_summary,
    settle_choices,
    sweep_ks,
    unit_refs,
    upload_limit,
    upload_size_problem,
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
    model_note = None
    if model.get("state") not in (None, "ready"):
        model_note = notice(f"live model: {model.get('state')}" + (f" ({model.get('error')})" if model.get("error") else ""),
                            "warning")
    elif model.get("checksum") and model.get("checksum") != run.get("model_checksum"):
        model_note = notice(f"the loaded model ({model.get('loaded')}, {model.get('checksum')}) is not the model of run "
                            f"{s['run']} ({run.get('model_spec')}, {run.get('model_checksum')}): concept sets will be refused",
                            "warning")
    lang_opts = ui.options(langs, {l: lang_label(l) for l in langs})
    run_langs = run.get("languages") or []
    ex_opts = [{"label": f"{e['lang']} · {e['sentence_id']} · {e['text'][:48]}", "value": e["example_id"]} for e in examples]
    ks = sorted(int(k) for k in ((run.get("config") or {}).get("analysis") or {}).get("ks") or [])
    kmax = max(20, 4 * (ks[-1] if ks else 500), int(s["k"]))
    k_marks = {v: str(v) for v in sorted({1, *ks, kmax})}
    input_box = html.Div([
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
        html.Div([
            control("Audio file", dcc.Upload(id="lab-upload", children=html.Div(["Drop or ", html.A("choose"), " a WAV, FLAC, OGG or MP3 file"]),
                                             className="upload", max_size=upload_limit(caps)),
                    "lab-file-error", class_name="w-wide",
                    help_text=f"up to {upload_limit(caps) / 1e6:g} MB; uploads are not part of share links"),
            html.Div(id="lab-upload-name", className="muted"),
        ], id="lab-in-upload", className="controls"),
        html.Div([
            html.Button("● Record", id="lab-mic-start", className="button", **{"data-mic": "start"}),
            html.Button("■ Stop", id="lab-mic-stop", className="button", **{"data-mic": "stop"}),
            html.Span(id="lab-mic-status", className="muted", **{"data-mic": "status"}),
            html.Div(id="lab-mic-preview"),
        ], id="lab-in-mic", className="controls"),
        control("Target language", ui.dropdown("lab-tgt", lang_opts, s["tgt"]), "lab-tgt_lang-error"),
        html.Div([html.Button("Run", id="lab-run", className="button primary"),
                  html.Button("Run k sweep", id="lab-sweep", className="button")], className="actions run-actions"),
        html.P("Run compares the baseline with the intervened output; the k sweep forces k/8, k/4, k/2 and k units of "
               "the set and of random units.", className="hint"),
        error_text("lab-run-error"),
    ], className="card")
    composer = html.Div([
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
            control("Value written", ui.dropdown("lab-value", ui.options(list(st.VALUES), {
                "on_p50": "on_p50 (median when the concept is on)", "on_p90": "on_p90", "off_mean": "off_mean",
                "off_p50": "off_p50", "zero": "zero"}), s["value"])),
            control("Max new tokens", dcc.Input(id="lab-max-new", type="number", min=1, max=1024, step=1, value=s["max_new"],
                                                debounce=True), "lab-max_new_tokens-error", class_name="w-narrow"),
        ], className="controls"),
        error_text("lab-spec-error"),
    ], className="card")
    return html.Div([
        html.H1("Intervention lab"),
        demo_model_line(model.get("loaded") or run.get("model_spec")),
        dcc.Link("Which sound did each output token read? Open the bridge", id="lab-bridge-link", className="button-link",
                 href=ui.href("bridge", run=s["run"], ex=s["ex"] if s["in"] == "example" and s["mod"] == "speech" else None,
                              tgt=s["tgt"])),
        notice([html.Div(p) for p in problems], "warning") if problems else None,
        model_note,
        html.Div([html.Div(input_box, className="half"), html.Div(composer, className="half")], className="row"),
        loading(html.Div(id="lab-result", children=html.P(
            "Choose an input and units, then Run: the baseline and the intervened output appear here.", className="hint"))),
        loading(html.Div(id="lab-sweep-out")),
        lab_attribution.panel(s),
        dcc.Store(id="lab-upload-data"),
        dcc.Store(id="lab-upload-limit", data=upload_limit(caps)),
        dcc.Store(id="lab-upload-rejected", data=None),
        dcc.Store(id="lab-mic", data=None),
        dcc.Store(id="lab-go", data=s["go"]),
        dcc.Store(id="lab-sweep-go", data=s["sweep"]),
        dcc.Store(id="lab-state", data=s),
        ui.url_sync(PAGE, st.href(PAGE, s)),
    ], className="page page-lab")


# ---------------------------------------------------------------------------------------------------- running


def _concept(s: Mapping[str, Any]) -> dict | None:
    q = concept_query(s)
    if q["language"] is None or q["step"] is None:
        return None
    hits = context.client().concepts(s["run"], kind=q["kind"], task=q["task"], step=q["step"])
    return next((c for c in hits if c.get("language") == q["language"]), None)


def _spec(s: Mapping[str, Any], *, set_kind: str | None = None, k: int | None = None) -> dict[str, Any]:
    concept = _concept(s)
    refs = None
    if s["us"] == "basket":
        refs = unit_refs(list(s.get("units") or ()), context.client().sites(s["run"]))
    return build_spec(s, concept, refs, set_kind=set_kind, k=k)


def run_intervention(s: Mapping[str, Any], upload: Mapping[str, Any] | None, mic: Mapping[str, Any] | None,
                     spec: Mapping[str, Any]) -> dict[str, Any]:
    c = context.client()
    if s["in"] in ("upload", "mic"):
        data, name, mime = decode_upload(upload if s["in"] == "upload" else mic, "upload" if s["in"] == "upload" else "recording")
        problem = check_upload_type(name, mime)
        if problem:
            raise LabInputError("file", problem)
        options = {"tgt_lang": s["tgt"], "spec": dict(spec), "run_id": s["run"], "return_speech": True,
                   "max_new_tokens": int(s["max_new"])}
        return c.intervene_upload(data, name, mime, options)
    return c.intervene(build_request(s, spec))


def control_size(set_kind: str, k: int) -> int:
    """Units of a set at k (both = top k + bottom k): the size its random control must have."""
    return 2 * k if set_kind == "both" else k


def sweep(s: Mapping[str, Any], upload, mic) -> tuple[list[dict[str, Any]], str | None]:
    """Intervene at k/8, k/4, k/2 and k with the chosen set and with as many random units; stops at the first error."""
    points: list[dict[str, Any]] = []
    lang, tgt = s["ulang"], s["tgt"]
    chosen = s["set"] if s["set"] != "random" else "top"
    for k in sweep_ks(int(s["k"])):
        for kind in (chosen, "random"):
            size = k if kind == chosen else control_size(chosen, k)
            try:
                result = run_intervention(s, upload, mic, _spec(s, set_kind=kind, k=size))
            except BackendError as exc:
                return points, exc.message
            probs = result["intervened"].get("language_probabilities") or {}
            points.append({"k": k, "set": kind, "p_concept": probs.get(lang), "p_tgt": probs.get(tgt)})
    return points, None


def register_callbacks(app: Dash) -> None:
    ui.register_url_sync(app, PAGE)
    lab_attribution.register_callbacks(app)

    @app.callback(Output("lab-mic-preview", "children"), Input("lab-mic", "data"), prevent_initial_call=True)
    def mic_preview(mic):
        if not mic or not mic.get("contents"):
            return []
        return audio_player(mic["contents"], f"your recording ({mic.get('duration_s', 0):.1f} s)", source="mic")

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
                  State("lab-state", "data"), prevent_initial_call=True)
    def update(inp, ex, mod, text, src, tgt, us, role, umod, ulang, step, set_kind, k, stack, value, max_new, go, sweep_go, s):
        new = {**s, "in": inp, "ex": ex, "mod": mod, "text": text or "", "src": src, "tgt": tgt, "us": us, "role": role,
               "umod": umod, "ulang": ulang, "step": step, "set": set_kind, "k": int(k or 1), "stack": stack,
               "value": value, "max_new": int(max_new or s["max_new"]), "go": go or 0, "sweep": sweep_go or 0}
        if ctx.triggered_id not in ("lab-go", "lab-sweep-go") and any(new[x] != s[x] for x in new if x not in ("go", "sweep")):
            new["go"], new["sweep"] = 0, 0
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

    app.clientside_callback(ClientsideFunction(namespace="atlas", function_name="guardUpload"),
                            Output("lab-upload-rejected", "data"), Input("lab-upload-limit", "data"))

    @app.callback(Output("lab-upload-data", "data"), Output("lab-upload-name", "children"),
                  Input("lab-upload", "contents"), Input("lab-upload-rejected", "data"), State("lab-upload", "filename"),
                  State("lab-upload-limit", "data"), prevent_initial_call=True)
    def uploaded(contents, rejected, filename, limit):
        if rejected:
            problem = upload_size_problem(rejected.get("filename"), int(rejected.get("size") or 0), int(limit))
            if problem:
                return ({"filename": rejected.get("filename"), "problem": problem},
                        html.Div(problem, className="field-error"))
        if not contents:
            return None, ""
        head = contents.split(",", 1)[0]
        mime = head.removeprefix("data:").split(";")[0] or "application/octet-stream"
        problem = check_upload_type(filename or "upload", mime)
        name = html.Span(f"{filename} ({mime})")
        return {"contents": contents, "filename": filename}, [name, html.Div(problem, className="field-error")] if problem else name

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
                  State("lab-mic", "data"), State("basket", "data"), prevent_initial_call="initial_duplicate")
    def run(n, s, upload, mic, basket):
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
            result = run_intervention(s, upload, mic, _spec(s))
        except LabInputError as exc:
            return fail(exc.field, exc.message)
        except BackendError as exc:
            slot, message = next(iter(ui.route_error(exc, ERROR_SLOTS, "run").items()))
            return fail(slot, message)
        view = result_view(result, s, prov, input_audio_player(s, upload, mic))
        return view, 1, {"page": PAGE, "summary": result_summary(result)}, *clear.values(), ""

    @app.callback(Output("lab-sweep-out", "children"), Output("lab-sweep-go", "data"),
                  Input("lab-sweep", "n_clicks"), State("lab-state", "data"), State("lab-upload-data", "data"),
                  State("lab-mic", "data"))
    def run_sweep(n, s, upload, mic):
        if not n and not (s.get("sweep") and s["in"] in ("example", "text")):
            return no_update, no_update
        if s["us"] == "basket":
            return notice("the k sweep varies a concept's set; switch 'Use' to a concept's set", "warning"), 0
        try:
            _, _, prov = context.run_and_provenance(s["run"])
            points, error = sweep(s, upload, mic)
        except LabInputError as exc:
            return notice(exc.message, "error"), 0
        except BackendError as exc:
            return notice(exc.message, "error"), 0
        children: list[Any] = []
        if error:
            children.append(notice(f"the sweep stopped early: {error}", "warning"))
        if points:
            fig = fg.dose_response(points, prov, concept_lang=s["ulang"] or "?", tgt_lang=s["tgt"],
                                   set_kind=s["set"] if s["set"] != "random" else "top")
            children.append(ui.graph("lab-dose", fig))
        return children, 1 if points and not error else 0
