"""Bridge: which stretch of a speech input each output token read (decoder cross-attention over encoder frames).

URL state keys: run, in (example | upload | mic: the speech input), ex (a speech example of the run), aid (the backend's
audio id of an uploaded file or microphone recording, sent once to POST /audio by the same upload box and recorder
as the lab's), tgt (target language), layers and heads (averaged over; empty
= all), unit (a cross-attention k_proj/v_proj unit whose value per frame is drawn as a strip), t0 and t1 (a time span
in seconds: the tokens that read it are listed), tok (a token whose most-attended segment plays), max_new. Clicking a
token (or its row of the band) plays the audio its peak column pools; clicking the spectrogram or the unit strip picks
that column's span. Every control rewrites the URL, so a view is a link and can be saved as a finding (except an
upload's, which the backend keeps for a while but findings do not store).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from dash import Dash, Input, Output, State, callback_context, dcc, html, no_update

from app import context, state as st, ui
from app.client import AtlasClient, BackendError
from app.components import bridge_figures as bf
from app.components.audio import HELD_KINDS, audio_input, audio_input_stores, audio_player, register_audio_input
from app.components.common import control, demo_model_line, notice
from app.lab_logic import upload_limit

PAGE = "bridge"
#: Attention mass on a span above which a token is listed as reading it (besides tokens whose peak lies inside).
READER_MASS = 0.2
#: Volatile fields of an answer (whether it came from the cache, how long it took): left out of findings.
VOLATILE = ("cached", "timing_s")


def resolve(client: AtlasClient, s: dict[str, Any]) -> tuple[dict, list[dict], list[str]]:
    """Fill the run, example and target defaults into `s` (in place); returns the run, its speech examples, problems."""
    problems: list[str] = []
    s["run"] = client.resolve_run(s["run"])
    run = client.run(s["run"])
    examples = client.examples(s["run"], has_audio=True, limit=200)["examples"]
    ids = [e["example_id"] for e in examples]
    if s["ex"] not in ids and s["in"] not in HELD_KINDS:
        if s["ex"] is not None:
            problems.append(f"example {s['ex']!r} is not a speech example of run {s['run']}; showing the first one")
        s["ex"] = ids[0] if ids else None
    langs = list(run.get("languages") or [])
    if s["tgt"] is None or s["tgt"] not in langs:
        lang = next((e["lang"] for e in examples if e["example_id"] == s["ex"]), None) if s["in"] not in HELD_KINDS else \
            ("eng" if "eng" in langs else None)
        if s["tgt"] is not None:
            problems.append(f"target {s['tgt']!r} is not a language of run {s['run']}; using {lang}")
        s["tgt"] = lang if lang in langs else (langs[0] if langs else None)
    return run, examples, problems


def request_body(s: Mapping[str, Any]) -> dict[str, Any]:
    """The POST /bridge body of a page state: its corpus example, or its upload or recording by audio id."""
    span = [float(s["t0"]), float(s["t1"])] if s.get("t0") is not None and s.get("t1") is not None else None
    source = {"audio_id": s.get("aid")} if s.get("in") in HELD_KINDS else {"run_id": s["run"], "example_id": s["ex"]}
    return {**source, "tgt_lang": s["tgt"], "max_new_tokens": int(s["max_new"]),
            "layers": list(s.get("layers") or ()) or None, "heads": list(s.get("heads") or ()) or None,
            "unit_id": s.get("unit"), "span_s": span}


def stable(result: Mapping[str, Any]) -> dict[str, Any]:
    """An answer as a finding keeps it: without whether it was cached or how long it took."""
    return {k: v for k, v in result.items() if k not in VOLATILE}


def audio_src(result: Mapping[str, Any]) -> str:
    """The input's audio through the dashboard's proxy: the stored example's, or the upload as the model heard it."""
    if result.get("audio_id"):
        return f"/media/upload/{quote(result['audio_id'], safe='')}"
    return f"/media/audio/{quote(result['run_id'], safe='')}/{quote(result['example_id'], safe=':')}"


def segment_src(result: Mapping[str, Any], start_s: float, end_s: float) -> str:
    """The input's audio limited to one segment by a media fragment."""
    return f"{audio_src(result)}#t={start_s:.3f},{end_s:.3f}"


def token_strip(result: Mapping[str, Any], s: Mapping[str, Any]) -> html.Div:
    """The output tokens as links: each one plays the segment its peak column pools."""
    links = []
    for i, (tok, peak) in enumerate(zip(result["tokens"], result["peaks"])):
        cls = "token-chip selected" if s.get("tok") == i else "token-chip"
        links.append(dcc.Link(tok.replace("▁", " ").strip() or tok, href=st.href(PAGE, {**s, "tok": i}), className=cls,
                              id={"type": "bridge-token", "index": i},
                              title=f"peak at {peak['time_s']:.2f} s (weight {peak['weight']:.2f})"))
    return html.Div(links, className="token-strip", id="bridge-tokens")


def player(result: Mapping[str, Any], s: Mapping[str, Any]) -> html.Div | None:
    tok = s.get("tok")
    if tok is None or not 0 <= tok < len(result["peaks"]):
        return None
    p = result["peaks"][tok]
    return html.Div([
        html.Div(f"Token {tok} “{result['tokens'][tok]}” attended most to the column at {p['time_s']:.2f} s "
                 f"(weight {p['weight']:.2f}); playing {p['start_s']:.2f}–{p['end_s']:.2f} s:", className="player-label"),
        html.Audio(src=segment_src(result, p["start_s"], p["end_s"]), controls=True,
                   autoPlay=True, className="player", id="bridge-player"),
    ], className="audio-player")


def readers(result: Mapping[str, Any]) -> html.Div | None:
    """The output tokens that read the chosen span: peak inside it, or at least READER_MASS of their attention on it."""
    span = result.get("span")
    if not span:
        return None
    rows = [(i, tok, m, inside) for i, (tok, m, inside) in enumerate(zip(result["tokens"], span["mass"], span["peak_inside"]))
            if inside or m >= READER_MASS]
    rows.sort(key=lambda r: -r[2])
    n = len(span["columns"])
    head = f"Tokens that read {span['start_s']:.2f}–{span['end_s']:.2f} s ({n} column{'' if n == 1 else 's'} centred inside)"
    if not rows:
        return html.Div([html.H3(head), html.P("No token peaks there or puts 20% of its attention there.", className="muted")],
                        id="bridge-readers")
    body = [html.Tr([html.Td(i, className="num"), html.Td(tok), html.Td(f"{m:.3f}", className="num"),
                     html.Td("yes" if inside else "")]) for i, tok, m, inside in rows]
    return html.Div([html.H3(head), html.Table([html.Thead(html.Tr([html.Th(h) for h in ("#", "token", "mass", "peak inside")])),
                                                html.Tbody(body)], className="table")], id="bridge-readers")


def upload_line(result: Mapping[str, Any], s: Mapping[str, Any]) -> html.Div | None:
    """For an upload or recording: what the backend holds of it, and a player of the whole input as the model hears it."""
    if not result.get("audio_id"):
        return None
    inp = result.get("input") or {}
    return audio_player(audio_src(result), f"your input · {inp.get('filename') or 'recording'} · "
                                           f"{inp.get('duration_s', 0):.2f} s · audio id {result['audio_id']}",
                        source=s.get("in") if s.get("in") in HELD_KINDS else "upload", id_="bridge-input-player")


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def layout(**query: Any) -> html.Div:
    s, problems = st.parse(PAGE, query)
    client = context.client()
    try:
        run, examples, more = resolve(client, s)
    except BackendError as exc:
        return html.Div([html.H1("Bridge"), notice(exc.message, "error"), ui.url_sync(PAGE, st.href(PAGE, s))],
                        className="page page-bridge")
    problems += more
    result = error = hint = None
    wav = None
    held = s["in"] in HELD_KINDS
    try:
        caps = client.capabilities()
    except BackendError:
        caps = {}
    if held and s["aid"] is None:
        hint = ("Choose an audio file" if s["in"] == "upload" else "Record a sentence") + \
            ": it is sent to the backend once, and the band appears here."
    elif s["ex"] is None and not held:
        error = f"run {s['run']} holds no example with audio; the bridge needs speech"
    else:
        try:
            result = client.bridge(request_body(s))
            wav = client.uploaded_audio(s["aid"]) if held else client.example_audio(s["run"], s["ex"])
        except BackendError as exc:
            error = exc.message + (" (choose or record it again)" if held and exc.status == 404 else "")
    n_layers = (result or {}).get("n_layers") or 0
    n_heads = (result or {}).get("n_heads") or 0
    ex_opts = [{"label": f"{e['example_id']} · {e.get('text', '')[:50]}", "value": e["example_id"]} for e in examples]
    controls = html.Div([
        html.Div([
            control("Run", ui.dropdown("bridge-run", context.run_options(), s["run"]), class_name="w-wide"),
            control("Speech input", ui.radio("bridge-in", [{"label": "corpus speech example", "value": "example"},
                                                           {"label": "uploaded file", "value": "upload"},
                                                           {"label": "microphone", "value": "mic"}], s["in"])),
            html.Div(control("Speech example", ui.dropdown("bridge-ex", ex_opts, s["ex"]), class_name="w-wide"),
                     id="bridge-in-example", hidden=held),
            control("Target", ui.dropdown("bridge-tgt", ui.options(run.get("languages") or []), s["tgt"])),
            control("Max new tokens", dcc.Input(id="bridge-max-new", type="number", min=1, max=1024, step=1,
                                                value=s["max_new"], debounce=True), class_name="w-narrow"),
        ], className="controls"),
        *audio_input(PAGE, upload_limit(caps), kind=s["in"]),
        html.Div([
            control("Layers (none = all)", dcc.Checklist(id="bridge-layers", options=ui.options(list(range(n_layers))),
                                                         value=list(s["layers"]), inline=True)),
            control("Heads (none = all)", dcc.Checklist(id="bridge-heads", options=ui.options(list(range(n_heads))),
                                                        value=list(s["heads"]), inline=True)),
            control("k/v unit strip", dcc.Input(id="bridge-unit", type="number", min=0, step=1, value=s["unit"],
                                                debounce=True, placeholder="unit id"), class_name="w-narrow"),
            control("Span from (s)", dcc.Input(id="bridge-t0", type="number", min=0, step="any", value=s["t0"], debounce=True),
                    class_name="w-narrow"),
            control("to (s)", dcc.Input(id="bridge-t1", type="number", min=0, step="any", value=s["t1"], debounce=True),
                    class_name="w-narrow"),
        ], className="controls"),
    ])
    body: list[Any] = []
    if hint is not None:
        body += [html.P(hint, className="hint", id="bridge-hint"), html.Div(ui.graph("bridge-figure"), hidden=True)]
    if error is not None:
        body += [notice(error, "error"), html.Div(ui.graph("bridge-figure"), hidden=True)]
    if result is not None:
        body += [
            html.P(_sentence(result["columns"]["note"]) + " " + _sentence(result["row"]), className="hint",
                   id="bridge-columns-note"),
            upload_line(result, s),
            token_strip(result, s), player(result, s),
            ui.graph("bridge-figure", bf.bridge_figure(result, wav)),
            html.P("Click a row of the band to hear what that token read; click the spectrogram or the unit strip to "
                   "pick that column's span.", className="hint"),
            readers(result),
        ]
    return html.Div([
        html.H1("Bridge: which sound each output token read"),
        demo_model_line(run.get("model_spec")),
        notice([html.Div(p) for p in problems], "warning") if problems else None,
        controls,
        html.Div(body, id="bridge-body"),
        dcc.Store(id="bridge-state", data=s),
        dcc.Store(id="bridge-columns", data=(result or {}).get("columns")),
        *audio_input_stores(PAGE, upload_limit(caps)),
        ui.url_sync(PAGE, st.href(PAGE, s)),
    ], className="page page-bridge")


# ---------------------------------------------------------------------------------------------------- findings


def view_calls(client: AtlasClient, state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The one backend call behind a bridge view, with the page's defaults resolved as the page resolves them."""
    s = dict(state)
    if s.get("in") in HELD_KINDS:
        from app.views import ViewError  # app.views imports this page

        raise ViewError("uploaded or recorded audio is not stored with findings, so this result cannot be replayed")
    resolve(client, s)
    return [{"method": "POST", "path": "/bridge", "label": "bridge", "body": request_body(s)}]


def render(frozen: Mapping[str, Any]) -> list[Any]:
    """A finding's stored bridge answer: the band (and unit strip) without the spectrogram (no backend call)."""
    result = (frozen.get("responses") or [None])[0]
    if not result:
        return []
    return [html.P(_sentence(result["columns"]["note"]), className="hint"), ui.graph("finding-fig-0", bf.bridge_figure(result)),
            readers(result)]


def describe(s: Mapping[str, Any]) -> str:
    span = f", span {s.get('t0')}–{s.get('t1')} s" if s.get("t0") is not None and s.get("t1") is not None else ""
    unit = f", unit {s.get('unit')}" if s.get("unit") is not None else ""
    what = f"upload {s.get('aid')}" if s.get("in") in HELD_KINDS else s.get("ex")
    return f"bridge {what} → {s.get('tgt')}{unit}{span}"


# --------------------------------------------------------------------------------------------------- callbacks


CONTROLS = {"bridge-run": "run", "bridge-in": "in", "bridge-ex": "ex", "bridge-tgt": "tgt", "bridge-max-new": "max_new",
            "bridge-layers": "layers", "bridge-heads": "heads", "bridge-unit": "unit", "bridge-t0": "t0", "bridge-t1": "t1"}


def clicked_state(s: Mapping[str, Any], click: Mapping[str, Any] | None, columns: Mapping[str, Any] | None) -> dict | None:
    """The state after a click on the figure: a band row picks that token; elsewhere, the clicked column's span."""
    point = ((click or {}).get("points") or [{}])[0]
    x, y = point.get("x"), point.get("y")
    if x is None or not columns:
        return None
    if isinstance(y, str) and " · " in y:
        index = y.split(" · ", 1)[0]
        if index.isdigit():
            return {**s, "tok": int(index)}
    centres = columns["centres_s"]
    j = min(range(len(centres)), key=lambda i: abs(centres[i] - float(x)))
    return {**s, "t0": round(columns["starts_s"][j], 3), "t1": round(columns["ends_s"][j], 3)}


def register_callbacks(app: Dash) -> None:
    ui.register_url_sync(app, PAGE)
    register_audio_input(app, PAGE, context.client)

    @app.callback(Output("nav", "href", allow_duplicate=True), Input("bridge-audio", "data"), State("bridge-state", "data"),
                  prevent_initial_call=True)
    def use_sent_audio(sent, s):
        """A file or recording the backend now holds: show the bridge on it (its id in the URL)."""
        entry = (sent or {}).get((s or {}).get("in")) or {}
        if not entry.get("audio_id") or entry["audio_id"] == s.get("aid"):
            return no_update
        return st.href(PAGE, {**s, "aid": entry["audio_id"], "tok": None, "t0": None, "t1": None})

    @app.callback(Output("nav", "href", allow_duplicate=True),
                  *[Input(cid, "value") for cid in CONTROLS], Input("bridge-figure", "clickData"),
                  State("bridge-columns", "data"), State("bridge-state", "data"), prevent_initial_call=True)
    def navigate(*args):
        columns, s = args[-2], args[-1]
        trigger = callback_context.triggered_id
        if not s or trigger is None:
            return no_update
        if trigger == "bridge-figure":
            new = clicked_state(s, args[-3], columns)
            return no_update if new is None or new == s else st.href(PAGE, new)
        key = CONTROLS[trigger]
        value = dict(zip(CONTROLS, args[:len(CONTROLS)]))[trigger]
        if key in ("layers", "heads"):
            value = sorted(int(v) for v in value or ())
            if value == list(s.get(key) or ()):
                return no_update
        elif value == s.get(key) or (key in ("run", "in", "ex", "tgt", "max_new") and value is None):
            return no_update
        new = {**s, key: value}
        if key in ("run", "in", "ex", "tgt", "max_new"):
            new["tok"] = None
        if key == "run":
            new.update(ex=None, tgt=None, unit=None)
        if key == "in":
            new["aid"] = None  # an id belongs to the file or recording it was sent from
        return st.href(PAGE, new)
