"""One unit's activation at every position of recorded items, before pooling, from a live forward pass.

The trace reruns the recording of those items (`neuron_atlas.engine.record.record_batch`, batched as the recording
batches them, the run's mode) with a recorder that also keeps the unit's per-position values, so its pooled value is
computed by the very code that filled the store, and can be checked against it. Positions are what the unit's site sees: speech frames (20 ms),
length-adapter frames, text tokens, or the decoder's prefix tokens at the requested step.
"""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from neuron_atlas.engine.model.hooks import HookPoints, Recorder, channels_last
from neuron_atlas.engine.model.loading import ModelBundle
from neuron_atlas.engine.model.unit_sites import SiteRegistry, UnitSite
from neuron_atlas.engine.example import Example
from neuron_atlas.engine.record import record_batch
from neuron_atlas.engine.tasks import TaskItem

#: Seconds per speech-encoder frame: 10 ms filterbank hop, two frames stacked by the feature extractor.
FRAME_S = 0.02
#: Centre of the first filterbank window pair (25 ms windows, 10 ms apart) relative to the audio start.
FRAME_CENTRE_S = 0.0175


@dataclass
class UnitTrace:
    """Per-position values of one unit on one item, the pooled value (mean over valid positions), and where the
    positions are: `times_s` for speech frames, `tokens` for text or decoder positions. `output_tokens` is the
    model's greedy output (</s>, language token, then up to `decode_to` tokens, or its end); for units at decoder
    positions `output_values` holds the unit's value at each of them (the decoder is causal: the first `len(values)` equal
    `values`)."""

    unit_id: int
    site: str
    channel: int
    positions: str
    values: list[float]
    pooled: float
    times_s: list[float] | None
    tokens: list[str] | None
    output_tokens: list[str]
    output_text: str = ""
    output_values: list[float] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class UnitTracer(Recorder):
    """A `Recorder` that hooks only one unit's site and also keeps that unit's value at each position of every row of
    the batch, with the pooling mask that says which positions are valid."""

    def __init__(self, model: nn.Module, registry: SiteRegistry, stacks: list[str], site: UnitSite, channel: int):
        super().__init__(model, registry, stacks)
        self.site, self.channel = site, channel
        self.values: torch.Tensor | None = None
        self.mask: torch.Tensor | None = None

    def _record(self, site: UnitSite, out: torch.Tensor) -> None:
        super()._record(site, out)
        x = channels_last(site, out)
        self.values = x[:, :, self.channel].float().detach().cpu()
        self.mask = self._mask_for(site, x.shape[1]).bool().cpu()
        return None

    @contextmanager
    def active(self):
        hooks = HookPoints(self.model, [self.site] if self.site.stack in self.stacks else [], self._record)
        try:
            yield self
        finally:
            hooks.remove()

    def pooled_value(self, row: int) -> float:
        start = self.site.offset - self.registry.stack_ranges[self.site.stack].start
        return float(self.pooled[self.site.stack][row, start + self.channel])


def position_kind(site: UnitSite, modality: str) -> str:
    """What a site's positions are for an input of `modality`: speech_frames, speech_adapter, text_tokens or decoder."""
    if site.domain == "encoder_out":
        return "speech_adapter" if modality == "speech" else "text_tokens"
    return site.domain


def frame_times(kind: str, n: int, model: nn.Module) -> list[float]:
    """Centre time in seconds of each of `n` speech-encoder or length-adapter frames."""
    centres = FRAME_CENTRE_S + FRAME_S * np.arange(n, dtype=np.float64)
    if kind == "speech_adapter":
        stride = int(model.config.adaptor_stride)
        kernel = int(model.config.adaptor_kernel_size)
        first = np.arange(n) * stride - stride // 2
        centres = FRAME_CENTRE_S + FRAME_S * (first + (kernel - 1) / 2.0)
        centres = np.clip(centres, 0.0, None)
    return [round(float(t), 4) for t in centres]


def batch_groups(items: Sequence[TaskItem], mode: str, batch_size: int) -> list[list[int]]:
    """Indices of `items` in batches `record_batch` accepts: one task and target language (and, for clean text, one
    source language) per batch, at most `batch_size` items (one in faithful mode, as the recording does)."""
    size = 1 if mode == "faithful" else max(1, batch_size)
    groups: dict[tuple, list[int]] = {}
    for i, it in enumerate(items):
        src = it.src_lang if it.modality == "text" else None
        groups.setdefault((it.task, it.tgt_lang, src), []).append(i)
    return [idx[k: k + size] for idx in groups.values() for k in range(0, len(idx), size)]


def trace_items(bundle: ModelBundle, registry: SiteRegistry, unit_id: int, items: Sequence[TaskItem], step: int,
                mode: str, audio: dict[str, np.ndarray] | None = None, decode_to: int | None = None,
                batch_size: int = 16) -> list[UnitTrace]:
    """Trace `unit_id` on several `TaskItem`s, batched as the recording batches them: encoder units from the encoder
    pass, decoder units at the teacher-forced prefix of length `step` of the model's own greedy output. With
    `decode_to`, the output is decoded to that many new tokens and decoder units are also traced over all of it."""
    site, channel = registry.site_of_unit(unit_id)
    out: list[UnitTrace | None] = [None] * len(items)
    for idx in batch_groups(items, mode, batch_size):
        batch = [items[i] for i in idx]
        for i, trace in zip(idx, _trace_batch(bundle, registry, site, unit_id, channel, batch, step, mode, audio, decode_to)):
            out[i] = trace
    return out


def _trace_batch(bundle: ModelBundle, registry: SiteRegistry, site: UnitSite, unit_id: int, channel: int,
                 items: list[TaskItem], step: int, mode: str, audio: dict[str, np.ndarray] | None,
                 decode_to: int | None) -> list[UnitTrace]:
    tracers: list[UnitTracer] = []

    def make_recorder(stacks: list[str]) -> UnitTracer:
        tracers.append(UnitTracer(bundle.model, registry, stacks, site, channel))
        return tracers[-1]

    # a pass over prefixes of length `full` (</s>, language token, `decode_to` tokens) sees every output token as input
    full = decode_to + 2 if decode_to is not None and decode_to + 2 > step else None
    steps = [step] if full is None else [step, full]
    rec = record_batch(bundle, registry, items, steps=steps, mode=mode, audio=audio, make_recorder=make_recorder)
    first = tracers[0]
    if first.values is None:
        raise ValueError(f"unit {unit_id} ({site.key}) did not run on a {items[0].task} item")
    whole = tracers[1] if full is not None and site.domain == "decoder" else None
    kind = position_kind(site, items[0].modality)
    traces = []
    for b, item in enumerate(items):
        valid = first.mask[b].numpy()
        values = first.values[b].numpy()[valid]
        generated = rec.generated[b][:full]
        output_tokens = bundle.tokenizer.convert_ids_to_tokens(generated)
        times = tokens = None
        if kind in ("speech_frames", "speech_adapter"):
            times = frame_times(kind, int(valid.sum()), bundle.model)
        elif kind == "decoder":
            tokens = output_tokens[: int(valid.sum())]
        else:
            tokens = bundle.tokenizer.convert_ids_to_tokens(rec.input_ids[b])
        output_values = None
        if whole is not None:
            output_values = [float(v) for v in whole.values[b, : len(generated)].numpy()]
        traces.append(UnitTrace(unit_id, site.key, channel, kind, [float(v) for v in values], first.pooled_value(b),
                                times, tokens, output_tokens,
                                bundle.tokenizer.decode(generated, skip_special_tokens=True), output_values))
    return traces


def trace_item(bundle: ModelBundle, registry: SiteRegistry, unit_id: int, item: TaskItem, step: int, mode: str,
               audio: dict[str, np.ndarray] | None = None, decode_to: int | None = None) -> UnitTrace:
    """Trace `unit_id` on one `TaskItem` (a batch of one; see `trace_items`)."""
    return trace_items(bundle, registry, unit_id, [item], step, mode, audio, decode_to)[0]


def stored_item(row: dict, example: dict):
    """A `TaskItem` rebuilt from the store's items and examples rows (audio is passed separately, by example id)."""
    ex = Example(example["example_id"], example["sentence_id"], example["lang"], example["text"], None,
                 example.get("reference") or "")
    return TaskItem(row["task"], int(row["item"]), ex, row["src_lang"], row["tgt_lang"], row["label"],
                    row.get("reference") or "")

