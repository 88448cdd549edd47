"""Live interventions: the model loaded once at start-up, request preparation, generation, and result shaping.

`ModelHost` loads the configured model in a background thread (so /healthz answers at once and /readyz reports
progress), falling back to a built-in model when the demo model is missing, and says so. `InterventionService`
turns a request into model inputs and a resolved intervention (validating everything before the request takes a
queue slot), computes its cache key, and runs baseline and intervened generation on the queue's worker thread.
"""
from __future__ import annotations

import base64
import difflib
import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from backend.api.errors import ApiProblem
from backend.api.settings import Settings
from backend.api.uploads import AudioStore
from neuron_atlas.engine.audio import encode_wav
from neuron_atlas.engine.constants import SAMPLE_RATE
from neuron_atlas.engine.interventions import InterventionSpec, ResolvedIntervention, generate_with, prepare_inputs, resolve
from neuron_atlas.engine.interventions.generate import chosen_token_probabilities, teacher_forced_scores
from neuron_atlas.engine.model.loading import ModelBundle, ModelLoadError, configure_cpu_threads, load_model
from neuron_atlas.engine.model.unit_sites import SiteRegistry
from backend.queue import Job
from backend.store.reader import NotFoundError, StoreReader, StoreStats
from neuron_atlas.engine.versions import ENGINE_VERSION
from neuron_atlas.engine.example import CorpusError
from neuron_atlas.engine.metrics import LangIdIdentifier, MetricsError, make_identifier
from neuron_atlas.engine.tts import VOICES, synthesize

log = logging.getLogger("backend.api")

#: Decoding settings that are part of every cache key (greedy search, one beam, KV cache on).
DECODING = {"strategy": "greedy", "num_beams": 1, "do_sample": False, "use_cache": True}



def language_mass_outside(probs: dict[str, float]) -> float | None:
    """Identifier mass on no language of the model (another language, or gibberish): 1 - the sum of `probs`; None for
    a text without letters (no evidence at all). Renormalised identifiers (scope `candidates`) always give 0."""
    total = sum(probs.values())
    return round(max(0.0, 1.0 - total), 6) if total > 0 else None

class ModelHost:
    """The one loaded model: its state (`disabled`, `loading`, `ready`, `error`), bundle, registry and identifier."""

    def __init__(self, settings: Settings, bundle: ModelBundle | None = None):
        self.settings = settings
        self.requested = settings.model
        self.ready = threading.Event()
        self.state = "loading"
        self.bundle: ModelBundle | None = None
        self.registry: SiteRegistry | None = None
        self.identifier = None
        self.error: str | None = None
        self.note: str | None = None
        self.load_s: float | None = None
        self._given = bundle
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Load in the background (or adopt a given bundle at once); `model = none` disables live interventions."""
        if self._given is not None:
            self._adopt(self._given, 0.0)
            return
        if self.requested.lower() == "none":
            self.state = "disabled"
            return
        self._thread = threading.Thread(target=self._load, name="model-loader", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        t0 = time.perf_counter()
        try:
            try:
                bundle = load_model(self.requested, device=self.settings.device)
            except ModelLoadError as exc:
                fallback = self.settings.model_fallback
                if self.requested != "demo" or not fallback:
                    raise
                self.note = f"model {self.requested!r} is unavailable ({exc}); serving the built-in fallback {fallback!r} instead"
                log.warning(self.note)
                bundle = load_model(fallback, device=self.settings.device)
            self._adopt(bundle, time.perf_counter() - t0)
        except Exception as exc:  # reported by /readyz and every intervention request
            self.state = "error"
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("model load failed: %s", self.error)

    def _adopt(self, bundle: ModelBundle, seconds: float) -> None:
        configure_cpu_threads(bundle)
        self.registry = SiteRegistry.from_model(bundle.model)
        scope = self.settings.language_scope
        if self.settings.language_identifier == "langid":
            known = []
            for lang in bundle.languages:
                try:
                    LangIdIdentifier([lang])
                except MetricsError:
                    continue
                known.append(lang)
            self.identifier = LangIdIdentifier(known, scope) if known else None
        else:
            self.identifier = make_identifier(self.settings.language_identifier, list(bundle.languages), scope)
        self.bundle = bundle
        self.load_s = seconds
        self.state = "ready"
        self.ready.set()

    def describe(self) -> dict:
        out: dict[str, Any] = {"requested": self.requested, "state": self.state, "fallback_note": self.note, "error": self.error}
        if self.bundle is not None:
            b = self.bundle
            out.update({"loaded": b.spec, "checksum": b.checksum, "device": str(b.device),
                        "dtype": str(b.dtype).removeprefix("torch."), "languages": list(b.languages),
                        "speech_output": speech_source(b), "load_s": self.load_s})
        return out

    def require(self) -> tuple[ModelBundle, SiteRegistry]:
        """The bundle and registry, or a 503 saying why there is none yet."""
        if self.state == "ready":
            return self.bundle, self.registry
        if self.state == "disabled":
            raise ApiProblem(503, "live interventions are disabled on this server (model = none)")
        if self.state == "error":
            raise ApiProblem(503, f"the model failed to load: {self.error}")
        raise ApiProblem(503, f"the model {self.requested!r} is still loading; retry shortly", headers={"Retry-After": "5"})


def probe_token_id(bundle: ModelBundle, token: str | None) -> tuple[int, str] | None:
    """(id, vocabulary piece) of a probe token: a vocabulary piece as given (`▁Die`), or a word that the tokenizer
    turns into exactly one piece; 422 naming the pieces otherwise."""
    if token is None:
        return None
    tok = bundle.tokenizer
    if not token.strip():
        raise ApiProblem(422, "probe_token: give a token or a one-token word", "probe_token")
    tid = tok.convert_tokens_to_ids(token)
    if tid is not None and tid != tok.unk_token_id:
        return int(tid), token
    pieces = tok.tokenize(token)
    if len(pieces) != 1:
        raise ApiProblem(422, f"probe_token: {token!r} is {len(pieces)} tokens of this model ({' '.join(pieces)}); "
                              "give one of them", "probe_token")
    tid = tok.convert_tokens_to_ids(pieces[0])
    if tid is None or tid == tok.unk_token_id:
        raise ApiProblem(422, f"probe_token: {token!r} is not in this model's vocabulary", "probe_token")
    return int(tid), pieces[0]


def require_same_model(run: dict, bundle: ModelBundle, consequence: str) -> None:
    """409 naming both models when a stored run was computed with another model than the loaded one."""
    if run["model_checksum"] != bundle.checksum:
        raise ApiProblem(409, f"run {run['run_id']} was computed with model {run['model_spec']!r} (checksum "
                              f"{run['model_checksum']}), but the loaded model is {bundle.spec!r} (checksum "
                              f"{bundle.checksum}): {consequence}", "run_id")


def speech_source(bundle: ModelBundle) -> str:
    """`model` when the model's own speech decoder is usable, `tts` when speech must come from the bundled TTS."""
    return "tts" if getattr(bundle.config, "speech_decoder_trained", None) is False else "model"


@dataclass
class Prepared:
    """A validated request: model inputs, resolved intervention, and the cache key that identifies its result."""

    key: str
    inputs: dict[str, torch.Tensor]
    input_desc: dict[str, Any]
    tgt_lang: str
    max_new_tokens: int
    speech: bool
    spec: InterventionSpec | None
    resolved: ResolvedIntervention | None
    run_id: str | None
    prepare_s: float
    probe: tuple[int, str] | None = None


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


INPUT_FIELDS = {"example": "example_id", "text": "text", "audio": "audio_id"}


def input_kind(request: dict[str, Any]) -> str:
    """Which input a request gives (`example`, `text` or `audio`); 422 unless it gives exactly one."""
    given = [kind for kind, field in INPUT_FIELDS.items() if request.get(field) is not None]
    if len(given) != 1:
        raise ApiProblem(422, "input: give exactly one of example_id, text (with src_lang) or audio_id (an upload's id "
                              "from POST /audio)", "input")
    return given[0]


@dataclass
class InputSource:
    """A resolved live input: its description (returned with results) and what the model reads (text or a wave)."""

    desc: dict[str, Any]
    text: str | None = None
    src_lang: str | None = None
    wave: np.ndarray | None = None

    def key_part(self) -> dict[str, Any]:
        """The description as cache keys use it: an upload by the SHA-256 of its samples (not its id or file name),
        so results of two recordings never mix and the same recording under two names shares them."""
        return {k: v for k, v in self.desc.items() if k not in ("filename", "audio_id")}

    def model_inputs(self, bundle: ModelBundle) -> dict[str, torch.Tensor]:
        if self.wave is not None:
            return prepare_inputs(bundle, audio=self.wave)
        return prepare_inputs(bundle, text=self.text, src_lang=self.src_lang)


class InterventionService:
    """Validate, key, and run live intervention requests against the hosted model and the store's statistics."""

    def __init__(self, settings: Settings, host: ModelHost, reader_fn):
        self.settings = settings
        self.host = host
        self.reader_fn = reader_fn
        self._model_lock = threading.Lock()
        self.audio = AudioStore(settings.audio_store_bytes, settings.audio_store_ttl_s)

    @property
    def model_lock(self) -> threading.Lock:
        """Held by whatever runs the shared model (hooks live on it): generation, unit traces, attribution, the bridge."""
        return self._model_lock

    # ----------------------------------------------------------------------------------------------- prepare

    def _reader(self) -> StoreReader:
        reader = self.reader_fn()
        if reader is None:
            raise ApiProblem(503, f"no analysis store is open (expected at {self.settings.store})")
        return reader

    def _run_for(self, run_id: str | None, bundle: ModelBundle) -> str:
        reader = self._reader()
        if run_id is not None:
            return reader.resolve_run(run_id)
        latest = reader.latest_run(bundle.checksum)
        if latest is None:
            raise ApiProblem(404, "the store holds no runs yet")
        return latest

    def prepare(self, request: dict[str, Any]) -> Prepared:
        """Validate a request fully (input, languages, spec against the model and the run) and compute its cache key."""
        t0 = time.perf_counter()
        bundle, registry = self.host.require()
        s = self.settings
        tgt = request["tgt_lang"]
        if tgt not in bundle.languages:
            raise ApiProblem(422, f"tgt_lang: {tgt!r} is not a target language of the loaded model; it has {', '.join(bundle.languages)}", "tgt_lang")
        max_new = request.get("max_new_tokens") or s.max_new_tokens
        if max_new > s.max_new_tokens:
            raise ApiProblem(422, f"max_new_tokens: {max_new} is above this server's limit of {s.max_new_tokens}", "max_new_tokens")
        spec: InterventionSpec | None = request.get("spec")
        needs_run = spec is not None and (spec.statistics_concept() is not None or spec.units.kind == "concept")
        run_id = request.get("run_id")
        kind = input_kind(request)
        if kind == "example" or needs_run or run_id is not None:
            run_id = self._run_for(run_id, bundle)
        resolved = None  # before any input work: a bad spec costs no reading of examples or uploads
        if spec is not None:
            if needs_run:
                require_same_model(self._reader().run(run_id), bundle, "its concepts do not describe this model's units")
            stats = StoreStats(self._reader(), run_id) if needs_run else None
            resolved = resolve(spec, registry, stats)
        source = self.resolve_input(request, bundle, run_id)
        inputs = source.model_inputs(bundle)
        desc = source.desc
        speech = bool(request.get("return_speech"))
        probe = probe_token_id(bundle, request.get("probe_token"))
        key = _digest({
            "spec": spec.canonical_json() if spec is not None else None,
            "stats_run": run_id if needs_run else None,
            "model": bundle.checksum,
            "decoding": {**DECODING, "max_new_tokens": max_new, "speech": speech, "speech_source": speech_source(bundle)},
            "input": source.key_part(),
            "tgt_lang": tgt,
            "engine": ENGINE_VERSION,
            "language_id": [s.language_identifier, s.language_scope],
            **({"probe": probe[0]} if probe is not None else {}),
        })
        return Prepared(key, inputs, desc, tgt, max_new, speech, spec, resolved, run_id, time.perf_counter() - t0, probe)

    def resolve_input(self, request: dict[str, Any], bundle: ModelBundle, run_id: str | None) -> InputSource:
        """The one place every live route turns its input fields into what the model reads: a corpus example of
        `run_id` (its text or its audio, per `modality`), typed text with `src_lang`, or an upload by `audio_id`."""
        kind = input_kind(request)
        if kind == "example":
            return self._example_input(bundle, run_id, request["example_id"], request.get("modality") or "text")
        if kind == "audio":
            item = self.audio.get(request["audio_id"])
            return InputSource({"kind": "audio", "audio_id": item.audio_id, "sha256": item.sha256,
                                "filename": item.filename, "duration_s": item.duration_s}, wave=item.wave)
        text, src = request["text"], request.get("src_lang")
        if not src:
            raise ApiProblem(422, "src_lang: required with text (the source language of the input)", "src_lang")
        if src not in bundle.languages:
            raise ApiProblem(422, f"src_lang: {src!r} is not a language of the loaded model; it has {', '.join(bundle.languages)}", "src_lang")
        if not text.strip():
            raise ApiProblem(422, "text: the input text is empty", "text")
        if len(text) > self.settings.max_text_chars:
            raise ApiProblem(422, f"text: {len(text)} characters; the limit is {self.settings.max_text_chars}", "text")
        return InputSource({"kind": "text", "text": text, "src_lang": src}, text=text, src_lang=src)

    def _example_input(self, bundle: ModelBundle, run_id: str, example_id: str, modality: str) -> InputSource:
        reader = self._reader()
        try:
            ex = reader.example(run_id, example_id)
        except NotFoundError as exc:
            raise ApiProblem(404, str(exc), "example_id") from None
        desc = {"kind": "example", "run_id": run_id, "example_id": example_id, "modality": modality, "lang": ex["lang"]}
        if modality == "text":
            if ex["lang"] not in bundle.languages:
                raise ApiProblem(422, f"example_id: language {ex['lang']!r} is not a language of the loaded model", "example_id")
            return InputSource({**desc, "text": ex["text"]}, text=ex["text"], src_lang=ex["lang"])
        wave, rate = reader.example_audio(run_id, example_id)
        if rate != SAMPLE_RATE:
            raise ApiProblem(422, f"example_id: stored audio of {example_id!r} is {rate} Hz, not {SAMPLE_RATE}", "example_id")
        return InputSource(desc, wave=np.asarray(wave, dtype=np.float32), src_lang=ex["lang"])

    # --------------------------------------------------------------------------------------------------- run

    def execute(self, prepared: Prepared, job: Job | None = None) -> dict[str, Any]:
        """Baseline and intervened generation (one at a time on the model), language probabilities, diff, audio."""
        bundle, registry = self.host.require()
        timing = {"prepare": round(prepared.prepare_s, 4)}
        use_model_speech = prepared.speech and speech_source(bundle) == "model"
        outs, speech_errors = {}, {}
        with self._model_lock:
            for name, resolved in (("baseline", None), ("intervened", prepared.resolved)):
                t0 = time.perf_counter()
                out = None
                if use_model_speech:
                    try:
                        out = generate_with(bundle, registry, resolved, prepared.inputs, prepared.tgt_lang,
                                            max_new_tokens=prepared.max_new_tokens, speech=True)
                    except (IndexError, RuntimeError, ValueError) as exc:
                        speech_errors[name] = f"the model's speech output failed ({type(exc).__name__}: {exc}); spoken by the bundled TTS instead"
                        log.warning("speech generation failed, falling back to TTS: %s", exc)
                if out is None:
                    out = generate_with(bundle, registry, resolved, prepared.inputs, prepared.tgt_lang,
                                        max_new_tokens=prepared.max_new_tokens, speech=False)
                if out.scores is None and out.token_ids[0]:
                    out.scores = teacher_forced_scores(bundle, registry, resolved, prepared.inputs, out.sequences)
                outs[name] = out
                timing[name] = round(time.perf_counter() - t0, 4)
        t0 = time.perf_counter()
        texts = [outs["baseline"].text, outs["intervened"].text]
        probs = self.host.identifier.probabilities(texts) if self.host.identifier is not None else [{}, {}]
        timing["language_id"] = round(time.perf_counter() - t0, 4)
        result_outputs = {}
        for (name, out), p in zip(outs.items(), probs):
            ids = out.token_ids[0]
            audio = None
            if prepared.speech:
                t1 = time.perf_counter()
                audio = self._audio(out, prepared.tgt_lang, use_model_speech and name not in speech_errors)
                if name in speech_errors:
                    audio["note"] = speech_errors[name]
                timing[f"audio_{name}"] = round(time.perf_counter() - t1, 4)
            clean = {k: float(v) for k, v in p.items()}
            outside = language_mass_outside(clean)
            top = max(clean, key=clean.get) if clean and max(clean.values()) > 0 else None
            if top is not None and outside is not None and clean[top] < outside:
                top = None
            result_outputs[name] = {
                "text": out.text, "token_ids": [int(i) for i in ids],
                "tokens": bundle.tokenizer.convert_ids_to_tokens(ids), "language_probabilities": clean,
                "language_probability_outside": outside, "top_language": top, "audio": audio,
                **self.token_evidence(out, prepared.probe),
            }
        base, inter = result_outputs["baseline"], result_outputs["intervened"]
        diff = token_diff(base["token_ids"], inter["token_ids"], base["tokens"], inter["tokens"])
        first = next((d["baseline_start"] for d in diff if d["op"] != "equal"), None)
        return {
            "key": prepared.key, "cached": False, "engine_version": ENGINE_VERSION,
            "store_version": None,
            "model": {"spec": bundle.spec, "checksum": bundle.checksum, "device": str(bundle.device)},
            "run_id": prepared.run_id, "input": prepared.input_desc, "tgt_lang": prepared.tgt_lang,
            "decoding": {**DECODING, "max_new_tokens": prepared.max_new_tokens},
            "spec": None if prepared.spec is None else json.loads(prepared.spec.canonical_json()),
            "intervention": None if prepared.resolved is None else prepared.resolved.describe(),
            "baseline": base, "intervened": inter, "changed": base["token_ids"] != inter["token_ids"],
            "first_difference": first, "diff": diff, "timing_s": timing,
        }

    def token_evidence(self, out, probe: tuple[int, str] | None) -> dict[str, Any]:
        """Per output token: the probability greedy decoding gave its token (and the probe token's), and the language
        identifier's probabilities of the text up to and including it (where the output turns into which language)."""
        ids = out.token_ids[0]
        chosen = probe_probs = None
        if out.scores is not None and ids:
            chosen_rows, probe_rows = chosen_token_probabilities(out.scores, out.token_ids, None if probe is None else probe[0])
            chosen = [round(p, 6) for p in chosen_rows[0]]
            probe_probs = None if probe_rows is None else [round(p, 6) for p in probe_rows[0]]
        prefixes = [self.host.bundle.tokenizer.decode(ids[: t + 1], skip_special_tokens=True) for t in range(len(ids))]
        by_prefix = self.host.identifier.probabilities(prefixes) if self.host.identifier is not None and prefixes else []
        return {"token_probabilities": chosen, "probe_probabilities": probe_probs,
                "probe_token": None if probe is None else probe[1],
                "prefix_language_probabilities": [{k: round(float(v), 6) for k, v in p.items()} for p in by_prefix]}

    def _audio(self, out, tgt_lang: str, from_model: bool) -> dict[str, Any]:
        if from_model:
            wave = np.asarray(out.waveform, dtype=np.float32)
            rate = int(out.sample_rate)
            if wave.size == 0 or not np.isfinite(wave).all():
                return {"audio_source": "model", "error": "the model produced no usable speech"}
            return _wav_payload(wave, rate, "model")

        voices = VOICES.get(tgt_lang)
        if not voices:
            return {"audio_source": "tts", "error": f"the bundled TTS has no voice for {tgt_lang!r}"}
        if not any(ch.isalpha() for ch in out.text):
            return {"audio_source": "tts", "error": "the output has no words to speak"}
        try:
            wave = synthesize(out.text, voices[0])
        except CorpusError as exc:
            return {"audio_source": "tts", "error": f"speech synthesis failed: {exc}"}
        return _wav_payload(wave, SAMPLE_RATE, "tts")


def _wav_payload(wave: np.ndarray, rate: int, source: str) -> dict[str, Any]:
    data = encode_wav(np.clip(wave, -1.0, 1.0), rate)
    return {"audio_source": source, "sample_rate": rate, "duration_s": round(len(wave) / rate, 3),
            "wav_base64": base64.b64encode(data).decode("ascii"), "error": None}


def token_diff(a_ids: list[int], b_ids: list[int], a_tok: list[str], b_tok: list[str]) -> list[dict[str, Any]]:
    """difflib opcodes between two token-id sequences, with the tokens of each side."""
    ops = difflib.SequenceMatcher(None, a_ids, b_ids, autojunk=False).get_opcodes()
    return [{"op": op, "baseline_start": i1, "baseline_end": i2, "intervened_start": j1, "intervened_end": j2,
             "baseline_tokens": a_tok[i1:i2], "intervened_tokens": b_tok[j1:j2]} for op, i1, i2, j1, j2 in ops]


def result_size(result: dict[str, Any]) -> int:
    """Approximate bytes a cached result holds (its JSON length)."""
    return len(json.dumps(result))

