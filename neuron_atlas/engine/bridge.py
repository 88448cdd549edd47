"""The encoder-frame ↔ decoder-token bridge: which stretch of a speech input each output token read.

For one utterance the model decodes greedily on its usual (SDPA) attention path; then one teacher-forced pass of the
decoder over that output, on the encoder output the generation computed (the encoder, most of the cost at full size,
runs once), uses *eager* attention in the cross-attention modules only (SDPA returns no weights), and forward hooks
keep every layer's and head's weights over the encoder's output frames. The row of an output token
is the query that predicted it (the decoder position of the token before it), as in Whisper's alignment heads.

The speech encoder's output passes through the length adaptor, so the columns are adaptor frames: a strided
convolution (kernel `adaptor_kernel_size`, stride `adaptor_stride`, padding stride // 2) over 20 ms encoder frames.
Column j pools encoder frames j·stride − stride//2 … that + kernel − 1; each of those stacks two 25 ms filterbank
windows 10 ms apart (35 ms of audio), so a column *pools* about (kernel − 1)·20 + 35 ms of audio, centred every
stride·20 ms. The encoder's self-attention has already mixed the whole utterance into every frame, so a column is
centred on that span rather than confined to it.
"""
from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from neuron_atlas.engine.constants import DECODER_PROMPT_LENGTH
from neuron_atlas.engine.interventions.generate import generate_with
from neuron_atlas.engine.model.loading import ModelBundle
from neuron_atlas.engine.model.unit_sites import SiteRegistry, UnitSite
from neuron_atlas.engine.unit_trace import FRAME_CENTRE_S, FRAME_S

#: Audio one encoder frame reads: two 25 ms filterbank windows 10 ms apart.
ENCODER_FRAME_SPAN_S = 0.035


class BridgeError(ValueError):
    """A bridge request that cannot be answered (text input, unknown layer or head, a unit that is no k/v unit);
    `field` names the offending input."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ColumnGeometry:
    """Where the adaptor frames (cross-attention columns) sit in the audio: centres, pooled spans, step."""

    centres_s: np.ndarray
    starts_s: np.ndarray
    ends_s: np.ndarray
    step_s: float
    span_s: float
    kernel: int
    stride: int


def column_geometry(model: nn.Module, n_columns: int, duration_s: float) -> ColumnGeometry:
    """Centre, start and end (seconds, clipped to the audio) of each of `n_columns` length-adaptor frames."""
    cfg = model.config
    stride, kernel = int(cfg.adaptor_stride), int(cfg.adaptor_kernel_size)
    first = np.arange(n_columns, dtype=np.float64) * stride - stride // 2
    last = first + kernel - 1
    centres = FRAME_CENTRE_S + FRAME_S * (first + last) / 2.0
    starts = FRAME_S * first
    ends = FRAME_S * last + ENCODER_FRAME_SPAN_S
    centres, starts, ends = (np.clip(x, 0.0, duration_s) for x in (centres, starts, ends))
    return ColumnGeometry(centres, starts, ends, stride * FRAME_S, (kernel - 1) * FRAME_S + ENCODER_FRAME_SPAN_S,
                          kernel, stride)


@dataclass
class BridgeTrace:
    """Cross-attention of every output token over the adaptor frames of one utterance.

    `weights` is (layers, heads, tokens, columns) float32, each row a distribution over columns; `unit_values` is the
    chosen k_proj/v_proj unit's value per column (None without a unit); `argmax_matches` says whether the
    teacher-forced eager pass predicts the same tokens as the generation did (it must)."""

    token_ids: list[int]
    tokens: list[str]
    text: str
    weights: np.ndarray
    geometry: ColumnGeometry
    duration_s: float
    unit_values: np.ndarray | None
    argmax_matches: bool

    @property
    def n_layers(self) -> int:
        return int(self.weights.shape[0])

    @property
    def n_heads(self) -> int:
        return int(self.weights.shape[1])

    @property
    def nbytes(self) -> int:
        return int(self.weights.nbytes + (0 if self.unit_values is None else self.unit_values.nbytes))


def cross_attention_modules(model: nn.Module) -> list[nn.Module]:
    """The decoder's cross-attention modules, layer by layer."""
    return [layer.cross_attention for layer in model.text_decoder.layers]


@contextmanager
def eager_cross_attention(model: nn.Module) -> Iterator[None]:
    """Run the decoder's cross-attention on the eager path (which returns its weights) inside the block only.

    Each cross-attention module gets its own copy of the config with `eager` attention; the shared config, and so
    every other module and every later request, keeps the model's own implementation."""
    modules = cross_attention_modules(model)
    saved = [m.config for m in modules]
    try:
        for m, cfg in zip(modules, saved):
            eager = copy.copy(cfg)
            eager._attn_implementation = "eager"
            m.config = eager
        yield
    finally:
        for m, cfg in zip(modules, saved):
            m.config = cfg


def check_unit(registry: SiteRegistry, unit_id: int) -> tuple[UnitSite, int]:
    """The site and channel of a cross-attention k_proj/v_proj unit (the only units with a value per encoder frame)."""
    try:
        site, channel = registry.site_of_unit(unit_id)
    except IndexError as exc:
        raise BridgeError(f"unit_id: {exc}", "unit_id") from None
    if site.domain != "encoder_out":
        raise BridgeError(f"unit_id: unit {unit_id} is {site.key}[{channel}], not a cross-attention k_proj/v_proj unit; "
                          "only those have a value per encoder frame", "unit_id")
    return site, channel


@torch.no_grad()
def trace_bridge(bundle: ModelBundle, registry: SiteRegistry, inputs: dict[str, torch.Tensor], tgt_lang: str,
                 max_new_tokens: int, unit_id: int | None = None, duration_s: float | None = None) -> BridgeTrace:
    """Greedy output of one speech input and every layer's and head's cross-attention of each output token.

    `duration_s` is the audio's length (spans are clipped to it); by default it is read off the feature frames."""
    if "input_features" not in inputs:
        raise BridgeError("input: the bridge maps output tokens onto speech frames; give speech input, not text", "input")
    if inputs["input_features"].shape[0] != 1:
        raise BridgeError("input: the bridge traces one utterance at a time", "input")
    unit = check_unit(registry, unit_id) if unit_id is not None else None
    model = bundle.model
    encoded: list[torch.Tensor] = []
    keep_encoder = model.speech_encoder.register_forward_hook(lambda module, args, output: encoded.append(output[0]))
    try:
        generated = generate_with(bundle, registry, None, inputs, tgt_lang, max_new_tokens=max_new_tokens)
    finally:
        keep_encoder.remove()
    token_ids = generated.token_ids[0]
    n = len(token_ids)
    decoder_input = generated.sequences[:, : DECODER_PROMPT_LENGTH + n].to(bundle.device)
    captured: list[torch.Tensor | None] = [None] * len(model.text_decoder.layers)
    unit_out: list[torch.Tensor] = []

    def keep_weights(layer: int):
        def hook(module, args, output):
            captured[layer] = output[1]
        return hook

    def keep_unit(module, args, output):
        unit_out.append(output[0, :, unit[1]].float().cpu())

    with ExitStack() as stack:
        stack.enter_context(eager_cross_attention(model))
        handles = [m.register_forward_hook(keep_weights(i)) for i, m in enumerate(cross_attention_modules(model))]
        if unit is not None:
            handles.append(model.get_submodule(unit[0].module).register_forward_hook(keep_unit))
        stack.callback(lambda: [h.remove() for h in handles])
        model.set_modality("speech")
        out = model(encoder_outputs=(encoded[0],), attention_mask=inputs.get("attention_mask"),
                    decoder_input_ids=decoder_input, use_cache=False)
    if any(w is None for w in captured):
        raise RuntimeError("a cross-attention module returned no weights on the eager path")
    rows = slice(DECODER_PROMPT_LENGTH - 1, DECODER_PROMPT_LENGTH - 1 + n)
    weights = torch.stack([w[0, :, rows, :] for w in captured]).float().cpu().numpy()
    predicted = out.logits[0, rows].argmax(-1).cpu().tolist()
    frames = int(inputs["attention_mask"][0].sum()) if "attention_mask" in inputs else inputs["input_features"].shape[1]
    duration = float(duration_s) if duration_s is not None else frames * FRAME_S + ENCODER_FRAME_SPAN_S - FRAME_S
    geometry = column_geometry(model, weights.shape[-1], duration)
    return BridgeTrace(
        token_ids=[int(t) for t in token_ids], tokens=bundle.tokenizer.convert_ids_to_tokens(token_ids),
        text=generated.text, weights=weights, geometry=geometry, duration_s=duration,
        unit_values=None if unit is None else unit_out[0].numpy(), argmax_matches=predicted == list(token_ids))


def _pick(values: Sequence[int] | None, n: int, name: str) -> list[int]:
    if values is None or len(values) == 0:
        return list(range(n))
    bad = [v for v in values if not 0 <= int(v) < n]
    if bad:
        raise BridgeError(f"{name}: {bad[0]} is out of range; this model's decoder has {name} 0..{n - 1}", name)
    return sorted({int(v) for v in values})


def average(trace: BridgeTrace, layers: Sequence[int] | None = None, heads: Sequence[int] | None = None) -> tuple[np.ndarray, list[int], list[int]]:
    """Mean cross-attention (tokens, columns) over the chosen layers and heads (None or empty: all); and the choice."""
    lay = _pick(layers, trace.n_layers, "layers")
    hed = _pick(heads, trace.n_heads, "heads")
    return trace.weights[np.ix_(lay, hed)].mean(axis=(0, 1)), lay, hed


def peaks(mean: np.ndarray, geometry: ColumnGeometry) -> list[dict[str, float | int]]:
    """Per output token: the column it attends to most, that column's weight, and the audio span to play."""
    top = mean.argmax(axis=1) if mean.size else np.zeros(0, dtype=int)
    return [{"column": int(c), "weight": float(mean[i, c]), "time_s": float(geometry.centres_s[c]),
             "start_s": float(geometry.starts_s[c]), "end_s": float(geometry.ends_s[c])} for i, c in enumerate(top)]


def span_readers(mean: np.ndarray, geometry: ColumnGeometry, start_s: float, end_s: float) -> dict[str, object]:
    """The output tokens that read a time span: each token's attention mass on the columns centred inside it, and
    whether its peak column is one of them."""
    if not 0 <= start_s < end_s:
        raise BridgeError(f"span_s: expected 0 <= start < end, got [{start_s:g}, {end_s:g}]", "span_s")
    inside = (geometry.centres_s >= start_s) & (geometry.centres_s <= end_s)
    mass = mean[:, inside].sum(axis=1) if mean.size else np.zeros(0)
    top = mean.argmax(axis=1) if mean.size else np.zeros(0, dtype=int)
    return {"start_s": float(start_s), "end_s": float(end_s), "columns": np.flatnonzero(inside).tolist(),
            "mass": [float(m) for m in mass], "peak_inside": [bool(inside[c]) for c in top]}
