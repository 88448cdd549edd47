"""One unit's activation at every position of one recorded item, before pooling, from a live forward pass.

The trace reruns the recording of that item (`neuron_atlas.engine.record.record_batch`, batch of one, the run's mode) with a
recorder that also keeps the unit's per-position values, so its pooled value is computed by the very code that
filled the store, and can be checked against it. Positions are what the unit's site sees: speech frames (20 ms),
length-adapter frames, text tokens, or the decoder's prefix tokens at the requested step.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from neuron_atlas.engine.model.hooks import HookPoints, Recorder, channels_last
from neuron_atlas.engine.model.loading import ModelBundle
from neuron_atlas.engine.model.unit_sites import SiteRegistry, UnitSite
from neuron_atlas.engine.example import Example
from neuron_atlas.engine.record import encode_inputs, record_batch
from neuron_atlas.engine.tasks import TaskItem

#: Seconds per speech-encoder frame: 10 ms filterbank hop, two frames stacked by the feature extractor.
FRAME_S = 0.02
#: Centre of the first filterbank window pair (25 ms windows, 10 ms apart) relative to the audio start.
FRAME_CENTRE_S = 0.0175


@dataclass
class UnitTrace:
    """Per-position values of one unit on one item, the pooled value (mean over valid positions), and where the
    positions are: `times_s` for speech frames, `tokens` for text or decoder positions."""

    unit_id: int
    site: str
    channel: int
    positions: str
    values: list[float]
    pooled: float
    times_s: list[float] | None
    tokens: list[str] | None
    output_tokens: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


class UnitTracer(Recorder):
    """A `Recorder` that hooks only one unit's site and also keeps that unit's value at each valid position."""

    def __init__(self, model: nn.Module, registry: SiteRegistry, stacks: list[str], site: UnitSite, channel: int):
        super().__init__(model, registry, stacks)
        self.site, self.channel = site, channel
        self.values: torch.Tensor | None = None
        self.mask: torch.Tensor | None = None

    def _record(self, site: UnitSite, out: torch.Tensor) -> None:
        super()._record(site, out)
        x = channels_last(site, out)
        self.values = x[0, :, self.channel].float().detach().cpu()
        self.mask = self._mask_for(site, x.shape[1])[0].bool().cpu()
        return None

    @contextmanager
    def active(self):
        hooks = HookPoints(self.model, [self.site] if self.site.stack in self.stacks else [], self._record)
        try:
            yield self
        finally:
            hooks.remove()

    @property
    def pooled_value(self) -> float:
        start = self.site.offset - self.registry.stack_ranges[self.site.stack].start
        return float(self.pooled[self.site.stack][0, start + self.channel])


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


def trace_item(bundle: ModelBundle, registry: SiteRegistry, unit_id: int, item, step: int, mode: str,
               audio: dict[str, np.ndarray] | None = None) -> UnitTrace:
    """Trace `unit_id` on one `neuron_atlas.engine.tasks.TaskItem`: encoder units from the encoder pass, decoder units at the
    teacher-forced prefix of length `step` of the model's own greedy output, as the recording does."""
    site, channel = registry.site_of_unit(unit_id)
    tracers: list[UnitTracer] = []

    def make_recorder(stacks: list[str]) -> UnitTracer:
        tracers.append(UnitTracer(bundle.model, registry, stacks, site, channel))
        return tracers[-1]

    rec = record_batch(bundle, registry, [item], steps=[step], mode=mode, audio=audio, make_recorder=make_recorder)
    tracer = next((t for t in tracers if t.values is not None), None)
    if tracer is None:
        raise ValueError(f"unit {unit_id} ({site.key}) did not run on a {item.task} item")
    kind = position_kind(site, item.modality)
    valid = tracer.mask.numpy()
    values = tracer.values.numpy()[valid]
    generated = rec.generated[0]
    output_tokens = bundle.tokenizer.convert_ids_to_tokens(generated)
    times = tokens = None
    if kind in ("speech_frames", "speech_adapter"):
        times = frame_times(kind, int(valid.sum()), bundle.model)
    elif kind == "decoder":
        tokens = output_tokens[: int(valid.sum())]
    else:
        ids = encode_inputs(bundle, [item], mode, audio)["input_ids"][0].tolist()
        tokens = [t for t, keep in zip(bundle.tokenizer.convert_ids_to_tokens(ids), valid) if keep]
    return UnitTrace(unit_id, site.key, channel, kind, [float(v) for v in values], tracer.pooled_value, times,
                     tokens, output_tokens)


def stored_item(row: dict, example: dict):
    """A `TaskItem` rebuilt from the store's items and examples rows (audio is passed separately, by example id)."""
    ex = Example(example["example_id"], example["sentence_id"], example["lang"], example["text"], None,
                 example.get("reference") or "")
    return TaskItem(row["task"], int(row["item"]), ex, row["src_lang"], row["tgt_lang"], row["label"],
                    row.get("reference") or "")

