"""Request and response models of the HTTP API (they make the OpenAPI document, with an example per request body)."""
from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, model_validator
from pydantic_core import PydanticCustomError

from neuron_atlas.engine.interventions import ConstantValue, InterventionSpec, ScaleValue, SpecError, StatisticValue, ZeroValue

# ------------------------------------------------------------------------------------------------------ shared


class _Open(BaseModel):
    """Response models document the fields the API always sends; extra fields may be added later."""

    model_config = ConfigDict(extra="allow")


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: what went wrong, which field (when one is to blame), and the versions."""

    error: str = Field(description="what went wrong, naming the offending field or entity")
    status: int
    field: str | None = Field(None, description="dotted path of the offending request field, when there is one")
    engine_version: str
    store_version: str | None


def _parse_spec(value: Any) -> InterventionSpec:
    """Validate a spec in JSON mode (as a share link would carry it); errors name the spec field."""
    if isinstance(value, InterventionSpec):
        return value
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PydanticCustomError("spec", "spec: not JSON-serialisable ({error})", {"error": str(exc)}) from None
    try:
        return InterventionSpec.from_json(text)
    except SpecError as exc:
        where = f"spec.{exc.field}" if exc.field else "spec"
        raise PydanticCustomError("spec", "{where}: {reason}", {"where": where, "reason": exc.reason, "field": where}) from None


SpecField = Annotated[InterventionSpec, PlainValidator(_parse_spec, json_schema_input_type=InterventionSpec)]
#: A reference value for attribution: the `value` of an InterventionSpec (what forcing a unit writes).
ReferenceField = Annotated[StatisticValue | ZeroValue | ConstantValue | ScaleValue, Field(discriminator="kind")]

EXAMPLE_SPEC = {
    "version": 2,
    "units": {"kind": "concept", "concept_id": 12, "set": "top", "k": 10, "seed": 0, "stack": "text_decoder"},
    "value": {"kind": "on_p50"},
    "scope": {"positions": "all", "decode_steps": "all"},
}
EXAMPLE_EXPLICIT_SPEC = {
    "units": {"kind": "explicit", "units": [{"module": "text_decoder.layers.0.ffn.fc1", "channel": 3}]},
    "value": {"kind": "zero"},
}

# ------------------------------------------------------------------------------------------------ interventions


class GenerationOptions(BaseModel):
    """What to generate and under which intervention (shared by the JSON and the upload endpoints)."""

    model_config = ConfigDict(extra="forbid")

    tgt_lang: str = Field(description="target language (Seamless code, e.g. `eng`)", min_length=1, max_length=16)
    spec: SpecField | None = Field(None, description="InterventionSpec; null = baseline only")
    run_id: str | None = Field(None, description="run whose concepts and statistics the spec refers to (default: the newest run of the loaded model)", max_length=200)
    return_speech: bool = Field(False, description="also return audio of both outputs")
    max_new_tokens: int | None = Field(None, ge=1, description="tokens to generate (default and maximum: the server's max_new_tokens)")
    probe_token: str | None = Field(None, max_length=100, description="a vocabulary piece (or one-piece word) whose probability is reported at every output step")


class InterventionRequest(GenerationOptions):
    """Input (a corpus example, text with its source language, or an uploaded recording by audio_id) plus generation
    options."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [
            {"text": "Le train part à sept heures.", "src_lang": "fra", "tgt_lang": "eng", "spec": EXAMPLE_EXPLICIT_SPEC},
            {"example_id": "builtin:s000:fra:fra-m1", "modality": "speech", "tgt_lang": "eng", "spec": EXAMPLE_SPEC,
             "return_speech": True},
        ]},
    )

    example_id: str | None = Field(None, description="a corpus example of the run (its text or its audio is the input)", max_length=500)
    modality: Literal["text", "speech"] = Field("text", description="with example_id: feed its text or its audio")
    text: str | None = Field(None, description="input text (with src_lang)", max_length=100_000)
    src_lang: str | None = Field(None, description="language of `text` (Seamless code)", max_length=16)
    audio_id: str | None = Field(None, description="an uploaded recording by the id POST /audio returned (16 kHz mono speech input)", max_length=64)


class UploadOptions(GenerationOptions):
    """Generation options sent as the `request` form field (JSON) next to an uploaded audio file."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"tgt_lang": "eng", "spec": EXAMPLE_EXPLICIT_SPEC}]})


class BridgeRequest(BaseModel):
    """A speech input (an example of a run with audio, or an upload by audio_id), what to decode it into, and how to
    average the cross-attention (POST /bridge)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"example_id": "builtin:s000:eng:eng-m1", "tgt_lang": "eng", "layers": [0, 1], "heads": None,
         "unit_id": None, "span_s": [0.4, 0.8]}]})

    example_id: str | None = Field(None, description="a corpus example of the run with audio (its speech is the input)", max_length=500)
    modality: Literal["text", "speech"] = Field("speech", description="only `speech`: the bridge maps tokens onto audio")
    text: str | None = Field(None, description="refused: the bridge needs speech input (named so the error can say so)", max_length=100_000)
    audio_id: str | None = Field(None, description="an uploaded recording (POST /audio): its speech is the input", max_length=64)
    tgt_lang: str = Field(description="target language (Seamless code, e.g. `eng`)", min_length=1, max_length=16)
    run_id: str | None = Field(None, description="run holding the example (default: the newest run of the loaded model)", max_length=200)
    max_new_tokens: int | None = Field(None, ge=1, description="tokens to generate (default and maximum: the server's max_new_tokens)")
    layers: list[int] | None = Field(None, max_length=256, description="decoder layers to average over (null or empty: all)")
    heads: list[int] | None = Field(None, max_length=256, description="cross-attention heads to average over (null or empty: all)")
    unit_id: int | None = Field(None, ge=0, description="a cross-attention k_proj/v_proj unit: its value per encoder frame")
    span_s: list[float] | None = Field(None, min_length=2, max_length=2, description="[start, end] seconds: which output tokens read it")


class BridgeResult(_Open):
    """Output tokens, their cross-attention over the adaptor frames (averaged as asked), peaks, span readers, unit strip."""

    run_id: str | None
    example_id: str | None
    audio_id: str | None = None
    input: dict[str, Any] | None = Field(None, description="the speech input: example or upload (with its sha256)")
    tgt_lang: str
    text: str
    tokens: list[str]
    token_ids: list[int]
    n_layers: int
    n_heads: int
    layers: list[int]
    heads: list[int]
    columns: dict[str, Any]
    duration_s: float
    weights: list[list[float]]
    peaks: list[dict[str, Any]]
    span: dict[str, Any] | None
    unit: dict[str, Any] | None
    argmax_matches: bool


class AudioInfo(BaseModel):
    """An uploaded recording kept by the server (POST /audio, GET /audio/{audio_id})."""

    audio_id: str = Field(description="content id: the first 32 hex digits of `sha256`; the same samples give the same id")
    duration_s: float
    sample_rate: int = Field(description="always 16000: uploads are decoded to 16 kHz mono")
    sha256: str = Field(description="SHA-256 of the decoded samples (float32 little-endian); part of every result's cache key")
    filename: str | None
    n_samples: int
    bytes: int = Field(description="bytes the decoded samples take in the server's audio store")


# ---------------------------------------------------------------------------------------------------- traces


class TraceItem(BaseModel):
    """One recorded item to trace: the example feeding it, its task, and (en->X tasks) which target language."""

    model_config = ConfigDict(extra="forbid")

    example_id: str = Field(description="the item's input example (see GET /runs/{run}/examples)", min_length=1, max_length=500)
    task: str = Field(description="the task the item belongs to (asr, s2tt, t2tt, en2x_s2tt, en2x_t2tt)", min_length=1, max_length=64)
    tgt_lang: str | None = Field(None, description="en->X tasks: which target of the English example", max_length=16)
    modality: Literal["speech", "text"] | None = Field(None, description="checked against the task's input modality")


class TraceBatchRequest(BaseModel):
    """Several items of one unit traced in one queued job (the unit page's top and bottom examples)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "items": [{"example_id": "builtin:s000:fra:fra-m1", "task": "s2tt"},
                  {"example_id": "builtin:s001:deu:deu-f1", "task": "s2tt"}], "step": 2}]})

    items: list[TraceItem] = Field(description="the items, answered in this order (at most 100)")
    step: int | None = Field(None, ge=0, le=4096, description="decoder units: the prefix length (default: the run's first step)")
    max_new_tokens: int | None = Field(None, ge=1, description="decode each output to this many new tokens (default and maximum: the server's max_new_tokens)")


class AudioOut(BaseModel):
    """Audio of one output: WAV bytes (base64), where it came from (`model` speech output or `tts` of the text)."""

    audio_source: Literal["model", "tts"] | None
    sample_rate: int | None = None
    duration_s: float | None = None
    wav_base64: str | None = None
    error: str | None = Field(None, description="why there is no audio, when there is none")
    note: str | None = Field(None, description="why the audio comes from the TTS although the model has a speech decoder")


class Output(BaseModel):
    """One generation: text, content token ids and tokens, output-language probabilities, optional audio."""

    text: str
    token_ids: list[int]
    tokens: list[str]
    language_probabilities: dict[str, float] = Field(
        description="identifier probability of each model language (the posterior over all the identifier's languages "
                    "read at them, or renormalised over them: settings `language_scope`)")
    language_probability_outside: float | None = Field(
        None, description="mass on any other language or on none (gibberish); null for a text without letters")
    top_language: str | None = Field(description="most probable model language; null when the mass outside outweighs it")
    audio: AudioOut | None = None
    token_probabilities: list[float] | None = Field(
        None, description="per output token, the probability greedy decoding gave it (null when speech came from the model's own speech path)")
    probe_token: str | None = Field(None, description="the vocabulary piece of the request's probe_token")
    probe_probabilities: list[float] | None = Field(None, description="per output step, the probe token's probability")
    prefix_language_probabilities: list[dict[str, float]] = Field(
        default_factory=list, description="per output token, the identifier's language probabilities of the text up to it")


class DiffOp(BaseModel):
    """One difflib opcode over the two token sequences: [start, end) ranges and the tokens in them."""

    op: Literal["equal", "replace", "insert", "delete"]
    baseline_start: int
    baseline_end: int
    intervened_start: int
    intervened_end: int
    baseline_tokens: list[str]
    intervened_tokens: list[str]


class LiveResult(_Open):
    """What every live answer on the loaded model carries: its cache key, versions, model, run, input and spec."""

    key: str = Field(description="cache key: hash of canonical spec, model checksum, decoding settings and input")
    cached: bool
    engine_version: str
    store_version: str | None
    model: dict[str, Any]
    run_id: str | None
    input: dict[str, Any]
    tgt_lang: str
    spec: dict[str, Any] | None


class InterventionResult(LiveResult):
    """Baseline and intervened outputs, their token-level diff and the resolved intervention."""

    decoding: dict[str, Any]
    intervention: dict[str, Any] | None
    baseline: Output
    intervened: Output
    changed: bool
    first_difference: int | None
    diff: list[DiffOp]
    timing_s: dict[str, float]


class JobCreated(BaseModel):
    job_id: str
    state: str
    status_url: str
    cached: bool = False


class JobProgress(BaseModel):
    done: int
    total: int
    stage: str | None = None


class SweepPoint(_Open):
    """One condition of a sweep: the chosen set at k (mean and spread across inputs) or its random control (mean and
    spread across seeds of the per-seed input means)."""

    k: int | None
    set: str
    n_units: int
    p_concept: float | None
    p_concept_std: float | None
    p_tgt: float | None
    p_tgt_std: float | None


class SweepResult(_Open):
    kind: Literal["sweep"]
    run_id: str
    tgt_lang: str
    concept_lang: str | None
    set: str
    ks: list[int]
    seeds: list[int]
    n_inputs: int
    baseline: SweepPoint
    points: list[SweepPoint]
    outputs: list[dict[str, Any]] = Field(description="every generation: input index, k, set, seed, text, p_concept, p_tgt")


class JobStatus(_Open):
    job_id: str
    kind: Literal["intervention", "sweep", "activations"] = "intervention"
    state: Literal["queued", "loading model", "running", "done", "error"]
    created_at: float
    started_at: float | None
    finished_at: float | None
    queue_position: int | None
    progress: JobProgress | None = Field(None, description="generations done of the total, for sweeps")
    result: InterventionResult | SweepResult | None = None
    error: ErrorBody | None = None


class SweepInput(BaseModel):
    """One input of a sweep: a corpus example (with the modality to feed), a text with its source language, or an
    uploaded recording by audio_id."""

    model_config = ConfigDict(extra="forbid")

    example_id: str | None = Field(None, max_length=500)
    modality: Literal["text", "speech"] = "text"
    text: str | None = Field(None, max_length=100_000)
    src_lang: str | None = Field(None, max_length=16)
    audio_id: str | None = Field(None, description="an uploaded recording by the id POST /audio returned (16 kHz mono speech input)", max_length=64)


class SweepRequest(BaseModel):
    """A k sweep as one job: the spec's concept set at each k and seeded random sets of the same size, on each input."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "inputs": [{"text": "My mother works at the hospital.", "src_lang": "eng"}, {"example_id": "builtin:s001:eng:eng-m1"}],
        "tgt_lang": "deu", "spec": EXAMPLE_SPEC, "ks": [2, 5, 10], "seeds": [0, 1, 2]}]})

    inputs: list[SweepInput] = Field(min_length=1, max_length=8)
    tgt_lang: str = Field(min_length=1, max_length=16)
    spec: SpecField = Field(description="an InterventionSpec with concept units: its set, value, scope and strength are swept over k")
    ks: list[Annotated[int, Field(ge=1)]] = Field(min_length=1, max_length=8)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1, max_length=8,
                             description="one random control per seed and k")
    concept_lang: str | None = Field(None, max_length=16, description="language whose output probability the sweep reports (default: the concept's)")
    run_id: str | None = Field(None, max_length=200)
    max_new_tokens: int | None = Field(None, ge=1)


class ActivationsRequest(BaseModel):
    """What fires on one input: a corpus example, a text or an uploaded recording, recorded at a decoder step of the
    run."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"text": "My mother works at the hospital.", "src_lang": "eng", "tgt_lang": "deu", "step": 2, "n": 5, "rank_by": "z"}]})

    example_id: str | None = Field(None, max_length=500)
    modality: Literal["text", "speech"] = "text"
    text: str | None = Field(None, max_length=100_000)
    src_lang: str | None = Field(None, max_length=16)
    audio_id: str | None = Field(None, description="an uploaded recording by the id POST /audio returned (16 kHz mono speech input)", max_length=64)
    tgt_lang: str = Field(min_length=1, max_length=16)
    run_id: str | None = Field(None, max_length=200)
    step: int | None = Field(None, ge=1, description="decoder prefix length (a step of the run; default its smallest)")
    n: int = Field(5, ge=1, le=50, description="units per (stack, layer)")
    rank_by: Literal["z", "activation", "magnitude"] = Field(
        "z", description="|z| against the run's per-unit corpus mean and std, the activation, or |activation|")


class ActivationUnit(_Open):
    unit_id: int
    site: str
    channel: int
    layer: int
    component: str
    activation: float
    corpus_mean: float | None
    corpus_std: float | None
    z: float | None


class ActivationLayer(BaseModel):
    layer: int
    units: list[ActivationUnit]


class ActivationStack(_Open):
    stack: str
    n_units: int
    statistics: bool
    layers: list[ActivationLayer]


class Activations(_Open):
    kind: Literal["activations"]
    run_id: str
    input: dict[str, Any]
    tgt_lang: str
    step: int
    n: int
    rank_by: str
    statistics_task: str
    note: str | None
    output_tokens: list[str]
    stacks: list[ActivationStack]


# ----------------------------------------------------------------------------------------------------- findings


class FindingCreate(BaseModel):
    """A finding to save: title, note, the dashboard state (URL state, figure settings) and optionally a spec."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "title": "French control units steer English text",
        "note": "Top-10 decoder units of fra (en2x_s2tt, step 2) at on_p50 turn the output French.",
        "state": {"page": "lab", "run_id": "atlas-1a2b3c4d5e6f", "example_id": "builtin:s000:eng:eng-m1", "tgt_lang": "eng"},
        "spec": EXAMPLE_SPEC,
        "run_id": "atlas-1a2b3c4d5e6f",
    }]})

    title: str = Field(min_length=1, max_length=300)
    note: str = Field("", max_length=20_000)
    state: dict[str, Any] = Field(default_factory=dict, description="dashboard state, stored as given")
    spec: SpecField | None = None
    run_id: str | None = Field(None, max_length=200)


class FindingUpdate(BaseModel):
    """New title and/or note of a saved finding; what it froze (state, spec, run, model) cannot change."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"title": "French units steer (k=250)"}]})

    title: str | None = Field(None, min_length=1, max_length=300)
    note: str | None = Field(None, max_length=20_000)

    @model_validator(mode="after")
    def _something(self) -> "FindingUpdate":
        if self.title is None and self.note is None:
            raise ValueError("give a new title or note (or both)")
        return self


class Finding(BaseModel):
    id: str
    created_at: str
    updated_at: str | None = None
    title: str
    note: str
    state: dict[str, Any]
    spec: dict[str, Any] | None
    run_id: str | None
    model: dict[str, Any] | None
    engine_version: str


class FindingList(BaseModel):
    total: int
    limit: int
    offset: int
    findings: list[Finding]


# --------------------------------------------------------------------------------------------------------- data


class RunSummary(_Open):
    run_id: str
    name: str | None
    created_at: str | None
    model_spec: str | None
    model_checksum: str | None
    mode: str | None
    tasks: list[str]
    steps: list[int]
    languages: list[str]


class RunList(BaseModel):
    engine_version: str
    store_version: str | None
    runs: list[RunSummary]


class Concept(_Open):
    concept_id: int
    kind: str
    role: str
    task: str
    step: int
    language: str | None
    modality: str | None
    positives: int
    negatives: int
    stacks: list[str]
    description: str | None


class ConceptList(BaseModel):
    run_id: str
    total: int
    limit: int
    offset: int
    concepts: list[Concept]


class Heatmap(_Open):
    run_id: str
    stack: str
    component: str | None
    mode: str
    threshold: float | None
    k: int | None
    layers: list[int]
    concepts: list[Concept]
    counts: list[list[int]] = Field(description="counts[i][j]: concept i, layer j")
    by_component: dict[str, list[list[int]]]
    units_per_layer: list[int]
    by_site: dict[str, list[list[int]]] | None = Field(None, description="with group=site: counts per site role")
    units_per_layer_by_site: dict[str, list[int]] | None = None


class Concentration(_Open):
    run_id: str
    stack: str
    step: int
    metric: str
    layers: list[int]
    series: list[dict[str, Any]]


class OverlapMatrix(_Open):
    run_id: str
    role: str
    step: int
    set_kind: str
    k: int
    metric: str
    text_langs: list[str]
    speech_langs: list[str]
    matrix: list[list[float | None]]
    chance: list[list[float | None]]


class UnitRow(_Open):
    unit_id: int
    site: str
    channel: int
    stack: str
    layer: int
    component: str


class UnitPage(_Open):
    total: int
    limit: int
    offset: int
    units: list[UnitRow]


class SpearmanMatrices(_Open):
    run_id: str
    role: str
    step: int
    scope: str
    text_langs: list[str]
    speech_langs: list[str]
    matrices: list[dict[str, Any]]


class UnitDetail(_Open):
    run_id: str
    unit_id: int
    site: str
    channel: int
    stack: str
    layer: int
    component: str
    kind: str
    stats: list[dict[str, Any]]


class ExamplePage(_Open):
    run_id: str
    total: int
    limit: int
    offset: int
    examples: list[dict[str, Any]]


class Health(BaseModel):
    status: str
    engine_version: str
    store_version: str | None


class Readiness(_Open):
    ready: bool
    model: dict[str, Any]
    store: dict[str, Any]
    engine_version: str
    store_version: str | None


# ---------------------------------------------------------------------------------------------------- attribution


class AttributionRequest(BaseModel):
    """One output token of a run (its input, target language and intervention, as POST /interventions takes them):
    rank the units by their estimated effect on the token's log-probability, and verify the top ones by forcing."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"text": "My mother works at the hospital.", "src_lang": "eng", "tgt_lang": "deu", "spec": EXAMPLE_SPEC,
         "side": "intervened", "token_index": 0, "reference": {"kind": "off_mean"}, "verify": 20},
        {"example_id": "builtin:s000:fra:fra-m1", "modality": "text", "tgt_lang": "eng", "side": "baseline",
         "token_index": 1, "reference": {"kind": "zero"}},
    ]})

    example_id: str | None = Field(None, description="a corpus example of the run (its text or its audio is the input)", max_length=500)
    modality: Literal["text", "speech"] = Field("text", description="with example_id: feed its text or its audio")
    text: str | None = Field(None, description="input text (with src_lang)", max_length=100_000)
    src_lang: str | None = Field(None, description="language of `text` (Seamless code)", max_length=16)
    audio_id: str | None = Field(None, description="an uploaded recording by the id POST /audio returned (16 kHz mono speech input)", max_length=64)
    tgt_lang: str = Field(description="target language (Seamless code, e.g. `eng`)", min_length=1, max_length=16)
    spec: SpecField | None = Field(None, description="the run's InterventionSpec (needed for side `intervened`)")
    run_id: str | None = Field(None, description="run whose concepts and statistics the spec and reference read (default: the newest run of the loaded model)", max_length=200)
    max_new_tokens: int | None = Field(None, ge=1, description="tokens the output is generated to (default and maximum: the server's max_new_tokens)")
    side: Literal["baseline", "intervened"] = Field("baseline", description="which output: without or under the spec")
    token_index: int = Field(ge=0, description="content token of that output (0 = the first token after the language token)")
    reference: ReferenceField = Field(default_factory=StatisticValue, description="what forcing a unit writes: a concept statistic (on_p50, on_p90, off_mean, off_p50), zero, a constant or a scale")
    reference_concept_id: int | None = Field(None, description="concept whose statistic is the reference (default: the spec's statistics concept)")
    versus_token_id: int | None = Field(None, ge=0, description="attribute the log-odds log p(token) - log p(this token id) instead of the log-probability (e.g. the other output's token at this index; unlike a log-probability it does not saturate)")
    verify: int = Field(20, ge=0, le=100, description="how many top units to force, one at a time and all together, to measure the real change")
    top_k: int = Field(50, ge=1, le=1000, description="units returned in `top`, largest |estimate| first")
    per_layer: int = Field(5, ge=0, le=50, description="units listed per stack and layer")


class AttributedUnit(_Open):
    unit_id: int
    site: str
    channel: int
    stack: str
    layer: int
    component: str
    estimate: float = Field(description="estimated change of the objective (log-probability or log-odds) when forced to the reference")
    activation: float | None = Field(description="the unit's mean value over the positions its module outputs (null where it overflowed)")
    reference: float | None = Field(description="the value forcing writes (null for a scale reference, or where it overflows)")


class VerifiedUnit(_Open):
    unit_id: int
    estimate: float
    actual: float | None = Field(description="measured change of the objective with the unit forced alone (null where forcing overflowed)")


class AttributionResult(LiveResult):
    """The token, every scored unit's estimate summarised per layer, the top units and the verification."""

    side: Literal["baseline", "intervened"]
    output: dict[str, Any] = Field(description="the side's output: text, token_ids, tokens")
    token: dict[str, Any] = Field(description="index, id, text, logprob and prob of the attributed token; objective and versus")
    reference: dict[str, Any]
    n_units_scored: int
    top: list[AttributedUnit]
    layers: list[dict[str, Any]]
    verification: dict[str, Any]
    timing_s: dict[str, float]
