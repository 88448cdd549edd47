"""Unit: one unit's AP across concepts, its activation distribution by language × input modality, its top and bottom
examples (paged, each with the unit's activation per token or speech frame as a colour strip, from one batched live
trace), and the same sentence spoken and written side by side.

URL state keys: run, unit, concept, step, task, sent, lang, offset, per.
"""
from __future__ import annotations

from typing import Any

from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update

from app import context, state as st, ui
from app.client import BackendError
from app.components import evidence as ev, figures as fg
from app.components.audio import AudioDataError, audio_player, read_wav, spectrogram
from app.components.common import STACK_NAMES, Provenance, concept_label, control, error_text, lang_label, loading, notice
from app.components.search import search_hint

PAGE = "unit"
SPEECH_TASKS = ("asr", "s2tt", "en2x_s2tt")
TEXT_TASKS = ("t2tt", "en2x_t2tt")
TRACE_ROUTE = "GET /runs/{run}/units/{unit}/trace?example_id=&modality=speech|text&task=&step="
TRACES_ROUTE = "POST /runs/{run}/units/{unit}/traces"
#: Choices of examples per page at each end (top and bottom): one batched trace of 2 × that many items per page.
PAGE_SIZES = (10, 20, 50)
#: Items the store keeps per end of each unit (table `unit_examples`, docs/store.md): the pager's reach.
STORED_PER_END = 50


def audio_src(run_id: str, example_id: str) -> str:
    """URL of an example's audio on this dashboard (proxied from the backend)."""
    return f"/media/audio/{run_id}/{example_id}"


def tasks_for_stack(stack: str, tasks: list[str]) -> list[str]:
    if stack == "speech_encoder":
        return [t for t in tasks if t in SPEECH_TASKS]
    if stack == "text_encoder":
        return [t for t in tasks if t in TEXT_TASKS]
    return list(tasks)


def resolve(s: dict[str, Any]) -> tuple[dict, dict, list[str]]:
    """Fetch the run and unit, fill run-dependent defaults; returns (run, unit, problems)."""
    c = context.client()
    problems: list[str] = []
    s["run"] = c.resolve_run(s["run"])
    run = c.run(s["run"])
    unit = c.unit(s["run"], int(s["unit"]))
    steps = run.get("steps") or []
    if unit["stack"] == "text_decoder":
        if s["step"] not in steps:
            if s["step"] is not None:
                problems.append(f"step {s['step']} was not recorded; showing step {steps[0]}")
            s["step"] = steps[0] if steps else None
    elif s["step"] is not None and s["step"] not in steps:
        s["step"] = steps[0] if steps else None
    if s["step"] is None and steps:
        s["step"] = steps[0]
    concept_ids = {x["concept_id"] for x in unit["stats"]}
    if s["concept"] is not None and s["concept"] not in concept_ids:
        try:
            c.concept(s["run"], s["concept"])
            problems.append(f"concept {s['concept']} has no statistics for this unit")
        except BackendError as exc:
            if exc.status != 404:
                raise
            problems.append(exc.message)
        s["concept"] = None
    tasks = tasks_for_stack(unit["stack"], run.get("tasks") or [])
    if s["task"] not in tasks:
        chosen = next((x["task"] for x in unit["stats"] if x["concept_id"] == s["concept"]), None)
        s["task"] = chosen if chosen in tasks else (tasks[0] if tasks else None)
    langs = run.get("languages") or []
    if s["lang"] not in langs:
        concept_lang = next((x.get("language") for x in unit["stats"] if x["concept_id"] == s["concept"]), None)
        s["lang"] = concept_lang if concept_lang in langs else next((l for l in langs if l != "eng"),
                                                                    langs[0] if langs else None)
    return run, unit, problems


def sentence_options(run_id: str, lang: str | None) -> list[dict[str, str]]:
    """Sentences of a language that have audio (for the spoken-and-written comparison)."""
    if not lang:
        return []
    page = context.client().examples(run_id, lang=lang, has_audio=True, limit=200)
    return [{"label": f"{e['sentence_id']} · {e['text'][:60]}", "value": e["sentence_id"]} for e in page["examples"]]


def unit_picker(s: dict[str, Any]) -> html.Div:
    """Where a unit could not be shown: open another by id, or find one from a layer."""
    return html.Div([
        control("Open unit id", dcc.Input(id="unit-pick-id", type="number", min=0, step=1, debounce=True,
                                          placeholder="a unit id, e.g. 0"), class_name="w-narrow"),
        html.Button("Open", id="unit-pick-go", className="button"),
        dcc.Link("or find one on a layer page", href=ui.href("layer", run=s["run"]), className="button-link"),
        dcc.Store(id="unit-pick-run", data=s["run"]),
    ], className="controls")


def layout(**query: Any) -> html.Div:
    s, problems = st.parse(PAGE, query)
    try:
        run, unit, more = resolve(s)
    except BackendError as exc:
        return html.Div([html.H1(f"Unit {s['unit']}"), notice(exc.message, "error"), unit_picker(s), search_hint(),
                         ui.url_sync(PAGE, st.href(PAGE, s))], className="page page-unit")
    problems += more
    sent_opts = sentence_options(s["run"], s["lang"])
    if s["sent"] not in [o["value"] for o in sent_opts]:
        if s["sent"] is not None:
            problems.append(f"sentence {s['sent']!r} has no {s['lang']} recording; showing the first one")
        s["sent"] = sent_opts[0]["value"] if sent_opts else None
    steps = run.get("steps") or []
    concept_opts = [{"label": f"{x['concept_id']} · {concept_label(x)} ({x['kind']})", "value": x["concept_id"]}
                    for x in unit["stats"] if x.get("step") == s["step"]]
    tasks = tasks_for_stack(unit["stack"], run.get("tasks") or [])
    where = f"{unit['site']}[{unit['channel']}]"
    lab_href = ui.href("lab", run=s["run"], us="basket", units=(int(s["unit"]),), step=s["step"])
    layer_href = ui.href("layer", run=s["run"], stack=unit["stack"], layer=unit["layer"], concept=s["concept"],
                         site=unit["site"])
    return html.Div([
        html.H1(f"Unit {unit['unit_id']}"),
        html.P(f"{where} · {STACK_NAMES.get(unit['stack'])} layer {unit['layer']} · {unit['component']} · {unit['kind']}",
               className="muted", id="unit-where"),
        notice([html.Div(p) for p in problems], "warning") if problems else None,
        html.Div([
            html.Button("Add to basket", id="unit-basket-add", className="button"),
            html.Span(id="unit-basket-status", className="muted"),
            dcc.Link("Open its layer", href=layer_href, className="button-link"),
            dcc.Link("Intervene on it in the lab", href=lab_href, className="button-link"),
            dcc.Link("See it over the sound (bridge)", href=ui.href("bridge", run=s["run"], unit=int(s["unit"])),
                     className="button-link", id="unit-bridge-link")
            if unit["site"].endswith(("cross_attention.k_proj", "cross_attention.v_proj")) else None,
        ], className="actions"),
        html.Div([
            control("Run", ui.dropdown("unit-run", context.run_options(), s["run"]), class_name="w-wide"),
            control("Unit id", dcc.Input(id="unit-id", type="number", min=0, step=1, value=s["unit"], debounce=True), class_name="w-narrow"),
            control("Decoding step", ui.dropdown("unit-step", ui.options(steps), s["step"]), class_name="w-narrow"),
            control("Highlight concept", ui.dropdown("unit-concept", concept_opts, s["concept"], clearable=True,
                                                     placeholder="none"), class_name="w-wide"),
        ], className="controls"),
        html.Div([html.Div(loading(ui.graph("unit-ap")), className="half"),
                  html.Div(loading(ui.graph("unit-dist")), className="half")], className="row"),
        error_text("unit-error"),
        html.H2("Top and bottom examples"),
        html.Div([control("Task", ui.dropdown("unit-task", ui.options(tasks), s["task"]), "unit-task-error"),
                  control("Per page", ui.dropdown("unit-per", ui.options(sorted({*PAGE_SIZES, s["per"]})), s["per"]),
                          class_name="w-narrow"),
                  html.Div([
                      html.Button("← Previous", id="unit-ex-prev", className="button", disabled=s["offset"] == 0),
                      html.Span(id="unit-ex-range", className="muted", **{"aria-live": "polite"}),
                      html.Button("Next →", id="unit-ex-next", className="button"),
                  ], className="pager", role="navigation", **{"aria-label": "pages of examples"})],
                 className="controls"),
        loading(html.Div(id="unit-examples")),
        dcc.Store(id="unit-ex-items"),
        html.H2("The same sentence, spoken and written"),
        html.Div([
            control("Language", ui.dropdown("unit-lang", ui.options(run.get("languages") or [], {l: lang_label(l) for l in run.get("languages") or []}), s["lang"])),
            control("Sentence", ui.dropdown("unit-sent", sent_opts, s["sent"], placeholder="first with audio"), "unit-sent-error",
                    class_name="w-wide"),
        ], className="controls"),
        loading(html.Div(id="unit-sbs")),
        dcc.Store(id="unit-state", data=s),
        dcc.Store(id="unit-info", data={"unit_id": unit["unit_id"], "site": unit["site"], "channel": unit["channel"],
                                        "stack": unit["stack"], "run": s["run"]}),
        ui.url_sync(PAGE, st.href(PAGE, s)),
    ], className="page page-unit")


def _example_cell(item: dict, stored_note: str) -> list[Any]:
    """Input and output of one example as recorded (the strips replace it once the live trace arrives)."""
    speech = item.get("modality") == "speech"
    text = html.Div(item.get("text") or "", className="muted" if speech else None)
    return [text, html.Div([f"→ {item.get('output_text') or ''}", html.Span(stored_note, className="muted")],
                           className="output-text")]


def examples_block(s: dict[str, Any], prov: Provenance) -> tuple[list[Any], dict[str, Any]]:
    """One page of top and bottom examples, each row with a slot for its token strip, and the items to trace
    (in slot order) with the page's range for the pager."""
    c = context.client()
    offset, per = int(s.get("offset") or 0), int(s.get("per") or 20)
    offset = min(offset, STORED_PER_END - 1)
    data = c.unit_examples(s["run"], int(s["unit"]), task=s["task"], step=s["step"], n=min(per, STORED_PER_END - offset),
                           offset=offset)
    steps = c.run(s["run"]).get("steps") or []
    stored_note = f" (recorded to {max(steps) - 2} tokens)" if steps else ""
    out: list[Any] = []
    if steps:
        out.append(html.P(f"Outputs are what recording decoded: greedy, up to the run's largest recorded step, "
                          f"{max(steps)}, i.e. at most {max(steps) - 2} output tokens after the prompt's </s> and "
                          "language token, so they can stop mid-word. Once the live trace arrives each row shows the "
                          "whole output instead (decoded by the loaded model).", className="muted", id="unit-output-note"))
    out.append(html.Div("Per-token activations: asking the live model…", id="unit-ev-status", className="muted"))
    items: list[dict[str, Any]] = []
    total = 0
    for group in data["sets"]:
        total = max(total, int(group.get("total") or 0))
        cols = []
        for which in ("top", "bottom"):
            rows = []
            for rank, item in enumerate(group[which], start=offset + 1):
                audio = None
                if item.get("modality") == "speech" and item.get("example_id"):
                    audio = audio_player(audio_src(s["run"], item["example_id"]), "", source="corpus", preload="none")
                slot = len(items)
                items.append({"example_id": item["example_id"], "task": group["task"], "tgt_lang": item.get("tgt_lang"),
                              "text": item.get("text") or "", "modality": item.get("modality")})
                rows.append(html.Tr([
                    html.Td(str(rank), className="num"),
                    html.Td(f"{item['activation']:.4f}" if item.get("activation") is not None else "–", className="num"),
                    html.Td(item.get("label") or "", title=lang_label(item.get("label") or "")),
                    html.Td([audio, html.Div(_example_cell(item, stored_note), id={"type": "unit-ev", "index": slot},
                                             className="evidence-cell")]),
                ]))
            cols.append(html.Div([
                html.H3(f"{'Highest' if which == 'top' else 'Lowest'} activation · {group['task']}"
                        + (f" · step {group['step']}" if group.get("step") is not None else "")),
                html.Table([html.Thead(html.Tr([html.Th("rank"), html.Th("activation"), html.Th("lang"),
                                                html.Th("input (audio) → output")])), html.Tbody(rows)],
                           className="table examples"),
            ], className="half"))
        out.append(html.Div(cols, className="row"))
    out.append(html.P(prov.line(), className="provenance"))
    page = {"run": s["run"], "unit": int(s["unit"]), "step": s["step"], "items": items,
            "offset": offset, "n": per, "total": total}
    return out, page


def evidence_cells(page: dict[str, Any]) -> tuple[list[list[Any]], list[Any]]:
    """Each slot's strips from one batched trace of the page's items, and the page's legend and timing line."""
    c = context.client()
    items = page["items"]
    res = c.unit_traces(page["run"], page["unit"], [{"example_id": i["example_id"], "task": i["task"],
                                                     "tgt_lang": i.get("tgt_lang")} for i in items], step=page["step"])
    scale, longest = ev.strip_scale(res["traces"]), ev.longest_input_s(res["traces"])
    cells = []
    for item, tr in zip(items, res["traces"]):
        head = [] if tr.get("positions") == "text_tokens" else [
            html.Div(item.get("text") or "", className="muted" if item.get("modality") == "speech" else None)]
        cells.append(head + ev.trace_evidence(tr, scale, longest))
    decoder = any(tr.get("positions") == "decoder" for tr in res["traces"])
    took = "from the backend's cache" if res.get("cached") else f"in {res.get('seconds', 0):.1f} s"
    status = [ev.legend(scale), html.Div(
        f"{len(items)} items traced live in one batch {took}; outputs are the loaded model's whole greedy output "
        f"(at most {res.get('max_new_tokens')} new tokens)"
        + ("; underlined tokens are the recorded window the stored value averages" if decoder else ""),
        className="muted")]
    return cells, status


def _modality_ap(unit: dict, lang: str, step: int | None) -> list[dict[str, Any]]:
    """The unit's AP for the sentence's language as a speech-input and as a text-input concept (when it has them)."""
    items = []
    for modality, tasks in (("speech", ("s2tt", "asr")), ("text", ("t2tt",))):
        for task in tasks:
            hit = next((x for x in unit["stats"] if x.get("kind") == "language" and x.get("task") == task
                        and x.get("language") == lang and x.get("step") == step), None)
            if hit is not None:
                items.append({"label": f"{modality} ({task})", "modality": modality, "ap": hit.get("ap"),
                              "chance": hit.get("chance_ap")})
                break
    return items


def trace_details(tr: dict, prov: Provenance, graph_id: str) -> list[Any]:
    """Per-token bars (text input, or decoder positions) and a line saying what was pooled and that it matches."""
    out: list[Any] = []
    where = {"speech_frames": "speech frames (20 ms)", "speech_adapter": "length-adapter frames",
             "text_tokens": "input tokens", "decoder": f"output tokens (prefix of length {tr.get('step')})"}
    if tr.get("tokens"):
        what = "output token" if tr.get("positions") == "decoder" else "input token"
        out.append(ui.graph(graph_id, fg.token_activation_figure(
            tr["tokens"], tr.get("values") or [], prov,
            title=f"Activation per {what} · {tr.get('task')} → {lang_label(tr.get('tgt_lang') or '')}")))
    stored = tr.get("stored")
    check = "" if stored is None else f"; stored value {stored:.4f}" + (
        " (matches)" if abs(stored - tr["pooled"]) <= 1e-4 * max(1.0, abs(stored)) else " (DIFFERS: the run may be stale)")
    out.append(html.P(f"{tr.get('task')} item {tr.get('item')}: mean over {len(tr.get('values') or [])} "
                      f"{where.get(tr.get('positions'), tr.get('positions'))} = {tr['pooled']:.4f}{check}",
                      className="caption"))
    return out


def side_by_side(s: dict[str, Any], example: dict, unit: dict, prov: Provenance) -> list[Any]:
    """Speech (audio, spectrogram, per-frame trace) and text (tokens, per-token trace) of one example."""
    c = context.client()
    notes: list[Any] = []
    traces: dict[str, dict | None] = {"speech": None, "text": None}
    english = example["lang"] == "eng"
    speech_task, text_task = ("asr", "en2x_t2tt") if english else ("s2tt", "t2tt")
    own = {"speech_encoder": "speech", "text_encoder": "text"}.get(unit["stack"])
    for modality, task in (("speech", speech_task), ("text", text_task)):
        if own is not None and modality != own:
            notes.append(notice(f"{unit['stack'].replace('_', ' ')} units only run on {own} input: no {modality} trace", "info"))
            continue
        try:
            traces[modality] = c.unit_trace(s["run"], int(s["unit"]), example_id=example["example_id"], modality=modality,
                                            task=task, step=s["step"])
        except BackendError as exc:
            if exc.missing_route:
                notes = [notice(f"Per-frame and per-token activations need a backend endpoint this server does not offer "
                                f"({TRACE_ROUTE}); showing the audio, its spectrogram and the text.", "info")]
                break
            notes.append(notice(f"{modality} trace: {exc.message}", "warning"))
    speech_col: list[Any] = [html.H3(f"Spoken · {lang_label(example['lang'])}")]
    if example.get("has_audio"):
        try:
            x, rate = read_wav(c.example_audio(s["run"], example["example_id"]))
            times, freqs, db = spectrogram(x, rate)
            over = traces["speech"] if traces["speech"] is not None and traces["speech"].get("times_s") else None
            fig = fg.spectrogram_figure(times, freqs, db, prov, title=f"Spectrogram · {example['example_id']}",
                                        trace=over)
            if over is not None:
                fig = ev.add_frame_strip(fig, over, ev.strip_scale([over]))
            speech_col += [audio_player(audio_src(s["run"], example["example_id"]), "play the sentence", source="corpus",
                                        playhead_for="unit-spec"), ui.graph("unit-spec", fig)]
        except (BackendError, AudioDataError) as exc:
            speech_col.append(notice(f"audio: {exc}", "warning"))
    else:
        speech_col.append(notice("this example has no audio", "info"))
    if traces["speech"] is not None:
        speech_col += trace_details(traces["speech"], prov, "unit-tokens-speech")
    text_col: list[Any] = [html.H3(f"Written · {lang_label(example['lang'])}"), html.P(example.get("text") or "", className="sentence")]
    if traces["text"] is not None:
        tr = traces["text"]
        text_col.append(ev.token_strip(tr.get("tokens") or [], tr.get("values") or [], ev.strip_scale([tr]),
                                       what="input tokens" if tr.get("positions") != "decoder" else "output tokens",
                                       strip_id="unit-sbs-strip"))
        text_col += trace_details(tr, prov, "unit-tokens")
    ap_items = _modality_ap(unit, example["lang"], s["step"])
    if ap_items:
        text_col.append(ui.graph("unit-modality-ap", fg.modality_ap_bars(
            ap_items, prov, title=f"AP for {example['lang']} by input modality · step {s['step']}")))
    else:
        text_col.append(notice(f"the unit has no {example['lang']} language concept at this step (encoder units only have "
                               "statistics for their own modality; English is the pivot of X→en tasks)", "info"))
    return [*notes, html.Div([html.Div(speech_col, className="half"), html.Div(text_col, className="half")], className="row")]


def register_callbacks(app: Dash) -> None:
    ui.register_url_sync(app, PAGE)

    @app.callback(Output("nav", "href", allow_duplicate=True), Input("unit-run", "value"), Input("unit-id", "value"),
                  State("unit-state", "data"), prevent_initial_call=True)
    def reload(run_id, unit_id, s):
        if not s or unit_id is None or (run_id, unit_id) == (s["run"], s["unit"]):
            return no_update
        return ui.href(PAGE, run=run_id, unit=int(unit_id), step=s["step"], lang=s["lang"])

    @app.callback(Output("nav", "href", allow_duplicate=True), Input("unit-pick-go", "n_clicks"),
                  Input("unit-pick-id", "value"), State("unit-pick-run", "data"), prevent_initial_call=True)
    def pick(_, unit_id, run_id):
        if unit_id is None:
            return no_update
        return ui.href(PAGE, run=run_id, unit=int(unit_id))

    @app.callback(Output("unit-state", "data"), Output(f"{PAGE}-url", "data"),
                  Input("unit-step", "value"), Input("unit-concept", "value"), Input("unit-task", "value"),
                  Input("unit-lang", "value"), Input("unit-sent", "value"), Input("unit-per", "value"),
                  Input("unit-ex-prev", "n_clicks"), Input("unit-ex-next", "n_clicks"), State("unit-state", "data"),
                  State("unit-ex-items", "data"), prevent_initial_call=True)
    def update(step, concept, task, lang, sent, per, _prev, _next, s, page):
        offset, per = int(s.get("offset") or 0), int(per or s["per"])
        if ctx.triggered_id == "unit-ex-next" and page and offset + per < page.get("total", 0):
            offset += per
        elif ctx.triggered_id == "unit-ex-prev":
            offset = max(0, offset - per)
        elif (task, step, per) != (s["task"], s["step"], s["per"]):
            offset = 0
        new = {**s, "step": step, "concept": concept, "task": task, "lang": lang, "sent": sent, "offset": offset,
               "per": per}
        if new == s:
            return no_update, no_update
        return new, st.href(PAGE, new)

    @app.callback(Output("unit-ap", "figure"), Output("unit-dist", "figure"), Output("unit-error", "children"),
                  Input("unit-state", "data"))
    def figures(s):
        try:
            _, _, prov = context.run_and_provenance(s["run"])
            c = context.client()
            unit = c.unit(s["run"], int(s["unit"]))
            ap = fg.unit_ap_profile(unit, prov, step=s["step"], highlight=s["concept"])
        except BackendError as exc:
            return fg.message_figure(exc.message), fg.message_figure(""), exc.message
        try:
            dist = fg.language_modality_distribution(c.unit_activations(s["run"], int(s["unit"]),
                                                                 step=s["step"] if unit["stack"] == "text_decoder" else None),
                                              prov, step=s["step"] if unit["stack"] == "text_decoder" else None)
            err = ""
        except BackendError as exc:
            dist, err = fg.message_figure("no activation distribution: " + exc.message, prov), exc.message
        return ap, dist, err

    @app.callback(Output("unit-examples", "children"), Output("unit-task-error", "children"),
                  Output("unit-ex-items", "data"), Output("unit-ex-range", "children"),
                  Output("unit-ex-prev", "disabled"), Output("unit-ex-next", "disabled"), Input("unit-state", "data"))
    def examples(s):
        if not s.get("task"):
            return [], "this unit's stack has no recorded task", None, "", True, True
        try:
            _, _, prov = context.run_and_provenance(s["run"])
            children, page = examples_block(s, prov)
        except BackendError as exc:
            return [], exc.message, None, "", True, True
        first, total = page["offset"] + 1, page["total"]
        last = min(page["offset"] + page["n"], total)
        shown = f"ranks {first}–{last} of {total} from each end" if first <= total else f"past the last of {total} items"
        return children, "", page, shown, page["offset"] == 0, last >= total

    @app.callback(Output({"type": "unit-ev", "index": ALL}, "children"), Output("unit-ev-status", "children"),
                  Input("unit-ex-items", "data"), State({"type": "unit-ev", "index": ALL}, "id"),
                  prevent_initial_call=True)
    def strips(page, ids):
        if not page or not page.get("items") or len(ids) != len(page["items"]):
            return [no_update] * len(ids), no_update
        try:
            cells, status = evidence_cells(page)
        except BackendError as exc:
            why = (f"this backend has no batched trace route ({TRACES_ROUTE})" if exc.missing_route or exc.status == 405
                   else exc.message)
            return [no_update] * len(ids), notice(f"no per-token activations: {why}; the examples show what recording "
                                                  "stored", "info")
        by_slot = {i: cell for i, cell in enumerate(cells)}
        return [by_slot.get(x["index"], no_update) for x in ids], status

    @app.callback(Output("unit-sent", "options"), Output("unit-sent", "value"), Input("unit-lang", "value"),
                  State("unit-state", "data"), State("unit-sent", "value"), prevent_initial_call=True)
    def sentences(lang, s, current):
        try:
            opts = sentence_options(s["run"], lang)
        except BackendError:
            return [], None
        ids = [o["value"] for o in opts]
        return opts, current if current in ids else (ids[0] if ids else None)

    @app.callback(Output("unit-sbs", "children"), Output("unit-sent-error", "children"), Input("unit-state", "data"))
    def spoken_written(s):
        if not s.get("sent") or not s.get("lang"):
            return [], ""
        try:
            _, _, prov = context.run_and_provenance(s["run"])
            c = context.client()
            page = c.examples(s["run"], lang=s["lang"], sentence_id=s["sent"], limit=10)
            if not page["examples"]:
                return [], f"no {s['lang']} example of sentence {s['sent']}"
            example = next((e for e in page["examples"] if e.get("has_audio")), page["examples"][0])
            unit = c.unit(s["run"], int(s["unit"]))
            return side_by_side(s, example, unit, prov), ""
        except BackendError as exc:
            return [], exc.message

    @app.callback(Output("basket", "data", allow_duplicate=True), Output("unit-basket-status", "children"),
                  Input("unit-basket-add", "n_clicks"), State("basket", "data"), State("unit-info", "data"),
                  prevent_initial_call=True)
    def add_to_basket(n, basket, info):
        if not n or not info:
            return no_update, no_update
        basket = [b for b in (basket or []) if b.get("run") == info["run"]]
        if any(b["unit_id"] == info["unit_id"] for b in basket):
            return no_update, f"already in the basket ({len(basket)} units)"
        basket.append(info)
        return basket, f"added · the basket holds {len(basket)} units"
