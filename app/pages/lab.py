"""Intervention lab: pick an input, a target language and units, then compare baseline and intervened outputs.

URL state keys: run, in (example | text | upload | mic), ex, mod, text, src, tgt, us (concept | basket), role, umod
(units found on speech | text | multimodal), ulang, step, set, k, stack, value, units (basket unit ids), max_new,
go (1 = run on open), sweep (1 = k sweep on open). Uploaded and recorded audio cannot travel in a link; the link keeps
every other setting.

The composer picks the concept whose units are forced: a language concept of role × modality (representation:
s2tt / t2tt; control: en2x_s2tt / en2x_t2tt; multimodal: both). Units found on one modality applied to an input of the
other are the paper's cross-modal steering.
"""
from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from dash import ClientsideFunction, Dash, Input, Output, State, ctx, dcc, html, no_update

from app import context, state as st, ui
from app.client import BackendError
from app.components import figures as fg
from app.components.audio import audio_player, wav_data_uri
from app.components.common import Provenance, control, error_text, lang_label, loading, notice, step_label
from app.components.diff import diff_view

PAGE = "lab"
ROLE_TASK = {("representation", "speech"): "s2tt", ("representation", "text"): "t2tt",
             ("control", "speech"): "en2x_s2tt", ("control", "text"): "en2x_t2tt",
             ("representation", "multimodal"): "s2tt+t2tt", ("control", "multimodal"): "en2x_s2tt+en2x_t2tt"}
ERROR_SLOTS = ("file", "text", "src_lang", "tgt_lang", "example_id", "spec", "max_new_tokens", "input", "run_id")
SWEEP_FRACTIONS = (0.125, 0.25, 0.5, 1.0)
AUDIO_MIME_PREFIXES = ("audio/", "application/octet-stream", "application/ogg", "video/ogg")
#: What a bare /lab opens with (the README's example: English → German with French's en→X control units found on
#: text, top + bottom 250 at step 2), so the first Run shows an effect; a link's own values win.
LAB_DEFAULTS = {"in": "text", "text": "My mother works at the hospital.", "src": "eng", "umod": "text", "set": "both",
                "k": "250"}
DEFAULT_CONCEPT_LANG, DEFAULT_TGT, DEFAULT_STEP = "fra", "deu", 2
#: The backend's default upload limit, used when /capabilities cannot be read.
DEFAULT_MAX_UPLOAD_BYTES = 20_000_000


class LabInputError(ValueError):
    """A lab setting that cannot make a request; `field` names the control (an ERROR_SLOTS entry)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


# ----------------------------------------------------------------------------------------------- pure request logic


def concept_query(s: Mapping[str, Any]) -> dict[str, Any]:
    """The concept filters the composer's role × modality × language × step stand for."""
    task = ROLE_TASK[(s["role"], s["umod"])]
    kind = "multimodal_language" if s["umod"] == "multimodal" else "language"
    return {"kind": kind, "task": task, "step": s["step"], "language": s["ulang"]}


def input_modality(s: Mapping[str, Any]) -> str:
    if s["in"] in ("upload", "mic"):
        return "speech"
    if s["in"] == "example":
        return s["mod"]
    return "text"


def crossmodal_note(s: Mapping[str, Any]) -> str:
    """Says whether the units are applied across modalities (units found on speech, text input, or the reverse)."""
    found, applied = s["umod"], input_modality(s)
    if s.get("us") == "basket":
        n = len(s.get("units") or ())
        if not n:
            return f"no basket units to apply to {applied} input yet"
        return f"{n} basket unit{'s' if n != 1 else ''} applied to {applied} input"
    if found == "multimodal":
        return f"units found on speech and text alike, applied to {applied} input"
    if found == applied:
        return f"same-modality: units found on {found}, applied to {applied} input"
    return f"cross-modal steering: units found on {found}, applied to {applied} input"


def settle_choices(s: dict[str, Any], *, langs: Sequence[str], run_langs: Sequence[str], steps: Sequence[int],
                   model: str | None = None) -> list[str]:
    """Replaces languages and a step the run or model lacks (naming each and the choices), fills defaults into `s`."""
    problems: list[str] = []
    where = f"the model {model}" if model else f"run {s['run']}"
    checks = (("src", langs, f"not a language of {where}"), ("tgt", langs, f"not a language of {where}"),
              ("ulang", run_langs, f"not a concept language of run {s['run']}"),
              ("step", steps, f"not a step of run {s['run']}"))
    bad = {}
    for key, valid, why in checks:
        if s[key] is not None and s[key] not in valid:
            # the lab's own default source language, or a source language of an input that is not typed text, is
            # replaced without a word: the link did not ask for it, or it plays no part
            if key != "src" or (s["in"] == "text" and s[key] != LAB_DEFAULTS["src"]):
                bad[key] = s[key]
            s[key] = None
    non_pivot = [l for l in run_langs if l != "eng"]
    if s["src"] is None:
        s["src"] = "eng" if "eng" in langs or not langs else langs[0]
    if s["step"] is None:
        s["step"] = DEFAULT_STEP if DEFAULT_STEP in steps else (steps[0] if steps else None)
    if s["ulang"] is None:
        s["ulang"] = DEFAULT_CONCEPT_LANG if DEFAULT_CONCEPT_LANG in run_langs else (non_pivot[0] if non_pivot else None)
    if s["tgt"] is None:
        others = [l for l in (DEFAULT_TGT, *non_pivot) if l != s["ulang"] and (l in langs or not langs)]
        s["tgt"] = "eng" if s["role"] == "representation" or not others else others[0]
    for key, valid, why in checks:
        if key in bad:
            problems.append(f"{key}={bad[key]!s:.60}: {why}; choose one of {', '.join(map(str, valid)) or 'none'} "
                            f"(using {s[key]} for now)")
    if bad and (s["go"] or s["sweep"]):
        s["go"] = s["sweep"] = 0
        problems.append("the link's request was not run, as it named values this lab does not have; check the settings "
                        "and press Run")
    return problems


def default_href(**values: Any) -> str:
    """A link to the lab with the lab's defaults (LAB_DEFAULTS over the state defaults) and the given values."""
    s, _ = st.parse(PAGE, LAB_DEFAULTS)
    return st.href(PAGE, {**s, **values})


def basket_units(basket: Sequence[Mapping[str, Any]] | None, run_id: str | None) -> tuple[int, ...]:
    """Unit ids in the browser's basket for one run, in the order they were added."""
    return tuple(dict.fromkeys(int(b["unit_id"]) for b in basket or () if b.get("run") == run_id))


def with_basket(s: Mapping[str, Any], basket: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
    """The state a run uses: a view asking for the basket without naming units takes the basket's units of its run."""
    units = basket_units(basket, s.get("run")) if s.get("us") == "basket" and not s.get("units") else ()
    return {**s, "units": units} if units else dict(s)


def basket_line(s: Mapping[str, Any], in_basket: Sequence[int]) -> str:
    """What the basket holds and, when the view uses it, which units a Run forces."""
    n = len(in_basket)
    line = f"{n} unit{'' if n == 1 else 's'} in the basket" + (
        f" ({', '.join(map(str, in_basket[:8]))}{', …' if n > 8 else ''})" if n else "")
    if s.get("us") != "basket":
        return line
    used = list(s.get("units") or ())
    if not used:
        return line + " · this view uses the basket, which is empty: add units from a unit page or choose a concept set"
    forced = f" · Run forces {len(used)} unit{'' if len(used) == 1 else 's'}: {', '.join(map(str, used[:12]))}" + (
        " …" if len(used) > 12 else "")
    if tuple(used) != tuple(in_basket):
        forced += " (this view's units; 'Use the basket' switches to the basket's)"
    return line + forced


def chart_concept_lang(s: Mapping[str, Any]) -> str | None:
    """The concept language a result's chart names: only when the forced units come from a concept."""
    return s.get("ulang") if s.get("us") == "concept" else None


def count_text(counts: Mapping[str, Any] | None) -> str:
    """`name n, name n` of a count mapping (the backend's order), or 'none'."""
    return ", ".join(f"{k} {int(v):,}" for k, v in (counts or {}).items()) or "none"


def intervention_line(intervention: Mapping[str, Any] | None) -> str:
    """How many units a result forced, by stack and by component, in words."""
    if not intervention:
        return "baseline only"
    n = intervention.get("n_units")
    forced = f"{n:,} units forced" if isinstance(n, int) else f"{n} units forced"
    return (f"{forced} · by stack: {count_text(intervention.get('by_stack'))} · by component: "
            f"{count_text(intervention.get('by_component'))}")


def upload_limit(caps: Mapping[str, Any] | None) -> int:
    """The backend's upload limit in bytes from its /capabilities (its default when unknown)."""
    try:
        return int((caps or {})["limits"]["max_upload_bytes"])
    except (KeyError, TypeError, ValueError):
        return DEFAULT_MAX_UPLOAD_BYTES


def upload_size_problem(filename: str | None, size: int, limit: int) -> str | None:
    """A plain-words problem when a file is larger than the backend accepts, else None."""
    if size <= limit:
        return None
    have, cap = f"{size / 1e6:.1f} MB", f"{limit / 1e6:g} MB"
    if have == f"{limit / 1e6:.1f} MB":
        have, cap = f"{size:,} bytes", f"{limit:,} bytes"
    return (f"file: {filename or 'the file'!r} is {have}, over the backend's upload limit of {cap}; "
            "choose a smaller or shorter audio file")


def unit_refs(unit_ids: Sequence[int], sites: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Explicit spec units (site key, channel) of global unit ids, from the run's site offsets (vectorised)."""
    if not unit_ids:
        return []
    offsets = np.array([int(x["unit_offset"]) for x in sites], dtype=np.int64)
    widths = np.array([int(x["width"]) for x in sites], dtype=np.int64)
    order = np.argsort(offsets)
    offsets, widths = offsets[order], widths[order]
    keys = [sites[i]["site"] for i in order]
    ids = np.asarray(unit_ids, dtype=np.int64)
    pos = np.searchsorted(offsets, ids, side="right") - 1
    bad = (pos < 0) | (ids >= offsets[np.clip(pos, 0, None)] + widths[np.clip(pos, 0, None)])
    if bad.any():
        raise LabInputError("spec", f"units: unit {int(ids[bad][0])} does not exist in this run")
    return [{"module": keys[p], "channel": int(i - offsets[p])} for i, p in zip(ids, pos)]


def build_spec(s: Mapping[str, Any], concept: Mapping[str, Any] | None, refs: Sequence[Mapping[str, Any]] | None = None,
               *, set_kind: str | None = None, k: int | None = None) -> dict[str, Any]:
    """The InterventionSpec of the lab state (a concept set, or the explicit basket units)."""
    value = {"kind": s["value"]}
    if s["us"] == "basket":
        if not refs:
            raise LabInputError("spec", "units: the basket is empty; add units from a unit page or choose a concept set")
        spec: dict[str, Any] = {"units": {"kind": "explicit", "units": list(refs)}, "value": value}
        if s["value"] != "zero":
            if concept is None:
                raise LabInputError("spec", f"value: {s['value']} reads a concept's statistics; choose a concept in the "
                                            "composer or use the value zero")
            spec["stats_concept_id"] = int(concept["concept_id"])
        return spec
    if concept is None:
        raise LabInputError("spec", "units: no concept matches this role, modality, language and step")
    stack: str | None
    if s["stack"] == "text_decoder":
        stack = "text_decoder"
    elif s["stack"] == "encoder":
        encoders = [x for x in concept.get("stacks") or [] if x != "text_decoder"]
        if not encoders:
            raise LabInputError("spec", "units.stack: this concept has decoder statistics only; choose the decoder or all")
        stack = encoders[0]
    else:
        stack = None
    units = {"kind": "concept", "concept_id": int(concept["concept_id"]), "set": set_kind or s["set"],
             "k": int(k or s["k"]), "seed": 0, "stack": stack}
    return {"units": units, "value": value}


def build_request(s: Mapping[str, Any], spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """The JSON body of POST /interventions (example or text input); upload inputs use `upload_options`."""
    if not s.get("tgt"):
        raise LabInputError("tgt_lang", "tgt_lang: choose a target language")
    body: dict[str, Any] = {"tgt_lang": s["tgt"], "spec": dict(spec) if spec else None, "run_id": s["run"],
                            "return_speech": True, "max_new_tokens": int(s["max_new"])}
    if s["in"] == "example":
        if not s.get("ex"):
            raise LabInputError("example_id", "example_id: choose a corpus example")
        body.update(example_id=s["ex"], modality=s["mod"])
    elif s["in"] == "text":
        if not (s.get("text") or "").strip():
            raise LabInputError("text", "text: type a sentence to translate")
        body.update(text=s["text"], src_lang=s["src"])
    else:
        raise LabInputError("input", f"input: {s['in']} audio goes through the upload endpoint")
    return body


def decode_upload(upload: Mapping[str, Any] | None, what: str = "upload") -> tuple[bytes, str, str]:
    """(bytes, filename, mime) of an uploaded or recorded file held in the browser as a data URI."""
    if upload and upload.get("problem"):
        raise LabInputError("file", upload["problem"])
    if not upload or not upload.get("contents"):
        raise LabInputError("file", f"file: no {what} yet — " + ("choose an audio file" if what == "upload" else "record first"))
    head, _, b64 = upload["contents"].partition(",")
    mime = head.removeprefix("data:").split(";")[0] or "application/octet-stream"
    try:
        data = base64.b64decode(b64, validate=True)
    except ValueError:
        raise LabInputError("file", f"file: {upload.get('filename')!r} could not be read by the browser") from None
    return data, upload.get("filename") or "audio", mime


def check_upload_type(filename: str, mime: str) -> str | None:
    """A plain-words problem when an upload is declared as something other than audio, else None."""
    if mime and not mime.lower().startswith(AUDIO_MIME_PREFIXES):
        return (f"file: {filename!r} is {mime}, not audio; upload WAV, FLAC, OGG or MP3 "
                "(the backend decodes the bytes and checks them)")
    return None


def sweep_ks(k: int) -> list[int]:
    return sorted({max(1, int(round(k * f))) for f in SWEEP_FRACTIONS})


def result_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """What a finding freezes of a result: texts, tokens, language probabilities and identity (no audio)."""
    def side(out: Mapping[str, Any]) -> dict[str, Any]:
        return {"text": out.get("text"), "token_ids": out.get("token_ids"), "top_language": out.get("top_language"),
                "language_probabilities": {k: round(float(v), 6) for k, v in (out.get("language_probabilities") or {}).items()},
                "language_probability_outside": out.get("language_probability_outside")}
    return {"key": result.get("key"), "model": result.get("model"), "run_id": result.get("run_id"),
            "tgt_lang": result.get("tgt_lang"), "decoding": result.get("decoding"), "spec": result.get("spec"),
            "intervention": result.get("intervention"), "input": {k: v for k, v in (result.get("input") or {}).items()},
            "baseline": side(result["baseline"]), "intervened": side(result["intervened"]),
            "changed": result.get("changed"), "diff": result.get("diff")}


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
    s, problems = st.parse(PAGE, {**LAB_DEFAULTS, **query})
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
            control("Text", dcc.Textarea(id="lab-text", value=s["text"], maxLength=2000, className="textarea",
                                         placeholder="Type a sentence"), "lab-text-error", class_name="w-wide"),
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
        notice([html.Div(p) for p in problems], "warning") if problems else None,
        model_note,
        html.Div([html.Div(input_box, className="half"), html.Div(composer, className="half")], className="row"),
        loading(html.Div(id="lab-result", children=html.P(
            "Choose an input and units, then Run: the baseline and the intervened output appear here.", className="hint"))),
        loading(html.Div(id="lab-sweep-out")),
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


def _output_audio(out: Mapping[str, Any], label: str) -> html.Div:
    audio = out.get("audio") or {}
    if audio.get("wav_base64"):
        return audio_player(wav_data_uri(audio["wav_base64"]), label, source=audio.get("audio_source"), note=audio.get("note"))
    return audio_player(None, label, source=audio.get("audio_source"), error=audio.get("error") or "no audio returned")


def _input_audio(s: Mapping[str, Any], upload: Mapping[str, Any] | None, mic: Mapping[str, Any] | None) -> html.Div | None:
    if s["in"] == "example" and s["mod"] == "speech":
        return audio_player(f"/media/audio/{s['run']}/{s['ex']}", "input", source="corpus")
    if s["in"] == "upload" and upload:
        return audio_player(upload["contents"], f"input · {upload.get('filename')}", source="upload")
    if s["in"] == "mic" and mic:
        return audio_player(mic["contents"], "input · microphone", source="mic")
    return None


def result_view(result: Mapping[str, Any], s: Mapping[str, Any], prov: Provenance, input_audio: html.Div | None) -> list[Any]:
    base, inter = result["baseline"], result["intervened"]
    inp = result.get("input") or {}
    inp_text = inp.get("text") or inp.get("filename") or inp.get("example_id") or "audio"
    changed = result.get("changed")
    badge = (html.Span(f"changed from token {result.get('first_difference')}", className="badge badge-changed") if changed
             else html.Span("unchanged", className="badge"))
    what = intervention_line(result.get("intervention"))
    return [
        html.Div([html.H2("Result"), badge, html.Span(" cached" if result.get("cached") else "", className="muted")],
                 className="result-head"),
        html.P(f"input ({inp.get('kind')}{', ' + inp.get('lang') if inp.get('lang') else ''}): {inp_text}", className="muted"),
        html.P(f"{crossmodal_note(s)} · {what}", className="muted"),
        html.Div([
            html.Div([html.H3(f"Baseline → {base.get('top_language') or '?'}"), diff_view(result.get("diff") or [], "baseline", base.get("text")),
                      _output_audio(base, "baseline output")], className="half output-card", id="lab-out-baseline"),
            html.Div([html.H3(f"Intervened → {inter.get('top_language') or '?'}"), diff_view(result.get("diff") or [], "intervened", inter.get("text")),
                      _output_audio(inter, "intervened output")], className="half output-card", id="lab-out-intervened"),
        ], className="row"),
        html.Div([input_audio], className="input-audio") if input_audio is not None else None,
        ui.graph("lab-probs", fg.language_probability_bars(result, prov, concept_lang=chart_concept_lang(s))),
        html.Details([html.Summary("Spec, model and decoding"), html.Pre(_pretty({
            "model": result.get("model"), "run_id": result.get("run_id"), "decoding": result.get("decoding"),
            "spec": result.get("spec"), "key": result.get("key"), "timing_s": result.get("timing_s")}))]),
        html.P(prov.line(), className="provenance"),
    ]


def _pretty(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True)


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
        view = result_view(result, s, prov, _input_audio(s, upload, mic))
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
