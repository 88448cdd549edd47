"""The lab's pure request logic (no Dash): URL state to concept query, spec and request; uploads; summaries.

Shared by the lab page, findings (`app.views`) and tests; the page (`app.pages.lab`) adds layout and callbacks."""
from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from app import state as st


PAGE = "lab"
ROLE_TASK = {("representation", "speech"): "s2tt", ("representation", "text"): "t2tt",
             ("control", "speech"): "en2x_s2tt", ("control", "text"): "en2x_t2tt",
             ("representation", "multimodal"): "s2tt+t2tt", ("control", "multimodal"): "en2x_s2tt+en2x_t2tt"}
ERROR_SLOTS = ("file", "text", "src_lang", "tgt_lang", "example_id", "spec", "max_new_tokens", "input", "run_id",
               "probe_token")
SWEEP_FRACTIONS = (0.125, 0.25, 0.5, 1.0)
#: Units per (stack, layer) that 'what fires' lists.
FIRES_PER_LAYER = 5
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


def concept_of(client: Any, s: Mapping[str, Any]) -> dict[str, Any] | None:
    """The run's concept the composer stands for (None when its language or step is not chosen)."""
    q = concept_query(s)
    if q["language"] is None or q["step"] is None:
        return None
    hits = client.concepts(s["run"], kind=q["kind"], task=q["task"], step=q["step"])
    return next((c for c in hits if c.get("language") == q["language"]), None)


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
    """The InterventionSpec of the lab state (a concept set, or the explicit basket units), with the dial's strength,
    positions and decoding steps when they differ from the defaults (so an undialled spec is the one it always was)."""
    return {**_units_and_value(s, concept, refs, set_kind=set_kind, k=k), **dial(s)}


def value_of(s: Mapping[str, Any]) -> dict[str, Any]:
    """The spec's value: a statistic, zero, or the unit's own value times `factor` (scale)."""
    if s.get("value") == "scale":
        return {"kind": "scale", "factor": float(s.get("factor") if s.get("factor") is not None else 2.0)}
    return {"kind": s["value"]}


def parse_decode_steps(text: str | None) -> str | list[int]:
    """`all`, or decoding steps written as `0,2` or ranges `1-3` (0 = the first decoder forward), sorted."""
    text = (text or "all").strip().lower()
    if text in ("", "all"):
        return "all"
    steps: set[int] = set()
    for part in text.replace(" ", "").split(","):
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise LabInputError("spec", f"decoding steps: {part!r} is not a step or a range like 1-3; write e.g. 0,2-4 or all")
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a:
            raise LabInputError("spec", f"decoding steps: the range {part!r} runs backwards")
        if b - a > 4096:
            raise LabInputError("spec", f"decoding steps: the range {part!r} is longer than 4096 steps")
        steps.update(range(a, b + 1))
    return sorted(steps)


def positions_of(s: Mapping[str, Any]) -> str | dict[str, int]:
    """The spec's decoder positions: all, last, or the range pos_from <= p < pos_to (pos_to empty = to the end)."""
    if s.get("pos") != "range":
        return s.get("pos") or "all"
    start = int(s.get("pos_from") or 0)
    stop = s.get("pos_to")
    if stop is not None and int(stop) <= start:
        raise LabInputError("spec", f"positions: the range's end ({stop}) must be after its start ({start})")
    return {"start": start, **({"stop": int(stop)} if stop is not None else {})}


def dial(s: Mapping[str, Any]) -> dict[str, Any]:
    """The spec fields the dial sets, only where they differ from the defaults: strength and scope."""
    out: dict[str, Any] = {}
    strength = float(s.get("strength") if s.get("strength") is not None else 1.0)
    if strength != 1.0:
        out["strength"] = strength
    scope = {"positions": positions_of(s), "decode_steps": parse_decode_steps(s.get("decode_steps"))}
    if scope != {"positions": "all", "decode_steps": "all"}:
        out["scope"] = scope
    return out


def dial_line(s: Mapping[str, Any]) -> str:
    """The dial's setting in words (shown under the controls and with every result)."""
    strength = float(s.get("strength") if s.get("strength") is not None else 1.0)
    try:
        pos, steps = positions_of(s), parse_decode_steps(s.get("decode_steps"))
    except LabInputError as exc:
        return exc.message
    where = {"all": "every decoder position", "last": "each step's newest decoder position"}.get(pos) if isinstance(pos, str) else (
        f"decoder positions {pos['start']}–{pos['stop'] - 1}" if "stop" in pos else f"decoder positions from {pos['start']}")
    when = "every decoding step" if steps == "all" else f"decoding step{'s' if len(steps) > 1 else ''} {', '.join(map(str, steps[:12]))}" + (
        " …" if len(steps) > 12 else "")
    if strength == 0:
        how = "strength 0: the model is left exactly as it is"
    elif strength == 1:
        how = "strength 1: the value is written"
    else:
        how = f"strength {strength:g}: each unit moves {strength:g}× the way from its own value to the written one"
    return f"{how} · at {where} · on {when} (encoder-side units are written wherever they run)"


def _units_and_value(s: Mapping[str, Any], concept: Mapping[str, Any] | None, refs: Sequence[Mapping[str, Any]] | None,
                     *, set_kind: str | None, k: int | None) -> dict[str, Any]:
    value = value_of(s)
    if s["us"] == "basket":
        if not refs:
            raise LabInputError("spec", "units: the basket is empty; add units from a unit page or choose a concept set")
        spec: dict[str, Any] = {"units": {"kind": "explicit", "units": list(refs)}, "value": value}
        if s["value"] not in ("zero", "scale"):
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


def build_request(s: Mapping[str, Any], spec: Mapping[str, Any] | None, audio_id: str | None = None) -> dict[str, Any]:
    """The JSON body of POST /interventions: the lab's input (an uploaded or recorded one by the `audio_id` the
    backend gave it), target, spec and the dial's probe token."""
    if not s.get("tgt"):
        raise LabInputError("tgt_lang", "tgt_lang: choose a target language")
    body: dict[str, Any] = {"tgt_lang": s["tgt"], "spec": dict(spec) if spec else None, "run_id": s["run"],
                            "return_speech": True, "max_new_tokens": int(s["max_new"])}
    if (s.get("probe") or "").strip():
        body["probe_token"] = s["probe"].strip()
    body.update(input_fields(s, audio_id))
    return body


def input_fields(s: Mapping[str, Any], audio_id: str | None = None) -> dict[str, Any]:
    """The input part of a request: a corpus example (with the modality fed), typed text with its language, or an
    uploaded or recorded file by the `audio_id` POST /audio gave it."""
    body: dict[str, Any] = {}
    if s["in"] == "example":
        if not s.get("ex"):
            raise LabInputError("example_id", "example_id: choose a corpus example")
        body.update(example_id=s["ex"], modality=s["mod"])
    elif s["in"] == "text":
        if not (s.get("text") or "").strip():
            raise LabInputError("text", "text: type a sentence to translate")
        body.update(text=s["text"], src_lang=s["src"])
    elif not audio_id:
        raise LabInputError("file", "file: no " + ("upload yet — choose an audio file" if s["in"] == "upload"
                                                   else "recording yet — record first"))
    else:
        body["audio_id"] = audio_id
    return body


def sweep_examples(client: Any, s: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The corpus examples the sweep draws its further inputs from: the typed text's language, else the whole run
    (`client` is an AtlasClient; typed loosely so this module stays free of the HTTP client)."""
    if s["in"] == "text":
        return client.examples(s["run"], lang=s["src"], limit=50)["examples"]
    return client.examples(s["run"], limit=500)["examples"]


def sweep_inputs(s: Mapping[str, Any], examples: Sequence[Mapping[str, Any]],
                 audio_id: str | None = None) -> list[dict[str, Any]]:
    """The sweep's inputs: the lab's own input first, then corpus examples in its language (same modality), up to
    `sweep_inputs` in all; an uploaded or recorded input (language unknown) is swept alone."""
    first = input_fields(s, audio_id)
    if "audio_id" in first:
        return [first]
    lang = s["src"] if s["in"] == "text" else next((e["lang"] for e in examples if e["example_id"] == s["ex"]), None)
    modality = s["mod"] if s["in"] == "example" else "text"
    out = [first]
    for e in examples:
        if len(out) >= int(s.get("sweep_inputs") or 1):
            break
        if e["lang"] != lang or e["example_id"] == s.get("ex"):
            continue
        if modality == "speech" and not e.get("has_audio", True):
            continue
        out.append({"example_id": e["example_id"], "modality": modality})
    return out


def sweep_request(s: Mapping[str, Any], spec: Mapping[str, Any], inputs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The body of POST /jobs/sweep: the lab's spec at k/8, k/4, k/2 and k, with `seeds` random controls of each size."""
    if spec.get("units", {}).get("kind") != "concept":
        raise LabInputError("spec", "units: the k sweep varies a concept's set; switch 'Use' to a concept's set")
    return {"inputs": list(inputs), "tgt_lang": s["tgt"], "spec": dict(spec), "ks": sweep_ks(int(s["k"])),
            "seeds": list(range(int(s.get("seeds") or 1))), "concept_lang": s.get("ulang"), "run_id": s["run"],
            "max_new_tokens": int(s["max_new"])}


def fires_request(s: Mapping[str, Any], audio_id: str | None = None) -> dict[str, Any]:
    """The body of POST /activations for the lab's input at its step, ranked as chosen."""
    if not s.get("tgt"):
        raise LabInputError("tgt_lang", "tgt_lang: choose a target language")
    return {**input_fields(s, audio_id), "tgt_lang": s["tgt"], "run_id": s["run"], "step": s.get("step"), "n": FIRES_PER_LAYER,
            "rank_by": s.get("rank") or "z"}


def units_to_lab_href(run_id: str, unit_ids: Sequence[int], **values: Any) -> str:
    """A lab link that forces the given units (the basket view with them in the URL), e.g. from the overview."""
    return default_href(run=run_id, us="basket", units=tuple(dict.fromkeys(int(u) for u in unit_ids)), go=0, sweep=0, **values)


def basket_entry(run_id: str, unit: Mapping[str, Any]) -> dict[str, Any]:
    """A basket entry (what a unit page adds) from a listed unit."""
    return {"unit_id": int(unit["unit_id"]), "site": unit.get("site"), "channel": unit.get("channel"),
            "stack": unit.get("stack"), "run": run_id}


def add_to_basket(basket: Sequence[Mapping[str, Any]] | None, entry: Mapping[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """The basket with `entry` added (kept to the entry's run, as the unit page does), and whether it was new."""
    kept = [dict(b) for b in basket or () if b.get("run") == entry["run"]]
    if any(int(b["unit_id"]) == int(entry["unit_id"]) for b in kept):
        return kept, False
    return [*kept, dict(entry)], True


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


#: Per-output-token fields of a result side that a finding keeps (added after the first findings were saved).
TOKEN_EVIDENCE = ("tokens", "token_probabilities", "probe_token", "probe_probabilities", "prefix_language_probabilities")


def result_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """What a finding freezes of a result: texts, tokens, language probabilities, the per-token evidence the lab's
    token chart draws, and identity (no audio)."""
    def side(out: Mapping[str, Any]) -> dict[str, Any]:
        return {"text": out.get("text"), "token_ids": out.get("token_ids"), "top_language": out.get("top_language"),
                "language_probabilities": {k: round(float(v), 6) for k, v in (out.get("language_probabilities") or {}).items()},
                "language_probability_outside": out.get("language_probability_outside"),
                **{k: out.get(k) for k in TOKEN_EVIDENCE}}
    return {"key": result.get("key"), "model": result.get("model"), "run_id": result.get("run_id"),
            "tgt_lang": result.get("tgt_lang"), "decoding": result.get("decoding"), "spec": result.get("spec"),
            "intervention": result.get("intervention"), "input": {k: v for k, v in (result.get("input") or {}).items()},
            "baseline": side(result["baseline"]), "intervened": side(result["intervened"]),
            "changed": result.get("changed"), "first_difference": result.get("first_difference"), "diff": result.get("diff")}
