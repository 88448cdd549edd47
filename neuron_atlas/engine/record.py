"""Step-aware recording: greedy generation, then teacher-forced passes at each prefix length, pooled per unit.

Two modes (stored with the run):
- `clean`: batched in length buckets, padding masked out of every mean (and out of the speech adapter's strided
  convolutions, see `AdapterPaddingGuard`), text tokenised with its true source language;
- `faithful`: the reference code's behaviour: batch size 1, text tokenised without a source language (so it
  carries `__eng__`), padded to 256 tokens with the pads included in the text-side means.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np
import torch

from neuron_atlas.engine.audio import load_audio_file
from neuron_atlas.engine.constants import DEFAULT_STEPS, MODES
from neuron_atlas.engine.model.hooks import AdapterPaddingGuard, Recorder
from neuron_atlas.engine.model.loading import ModelBundle
from neuron_atlas.engine.model.unit_sites import SiteRegistry
from neuron_atlas.engine.tasks import TASKS, TaskItem

FAITHFUL_TEXT_LENGTH = 256


@dataclass
class BatchRecording:
    """Pooled activations of a batch: encoder stack -> [B, units]; decoder per step -> [B, units]; generated ids."""

    encoder: dict[str, np.ndarray]
    decoder: dict[int, np.ndarray]
    generated: list[list[int]]
    prefix_lengths: dict[int, list[int]]


def encoder_stack(task: str) -> str:
    return "speech_encoder" if TASKS[task].modality == "speech" else "text_encoder"


def encode_inputs(bundle: ModelBundle, items: Sequence[TaskItem], mode: str, audio: dict[str, np.ndarray] | None = None) -> dict:
    """Model inputs for a batch of items of one task (one source language in clean text mode)."""
    task = items[0].task
    device = bundle.device
    if TASKS[task].modality == "speech":
        waves = [audio[it.example.id] if audio and it.example.id in audio else load_audio_file(it.example.audio_path) for it in items]
        feats = bundle.feature_extractor(waves, sampling_rate=16000, return_tensors="pt", padding=True)
        return {
            "input_features": feats["input_features"].to(device, bundle.dtype),
            "attention_mask": feats["attention_mask"].to(device),
        }
    texts = [it.example.text for it in items]
    if mode == "faithful":
        enc = bundle.tokenizer(texts, src_lang="eng", padding="max_length", max_length=FAITHFUL_TEXT_LENGTH, truncation=True, return_tensors="pt")
    else:
        langs = {it.src_lang for it in items}
        if len(langs) != 1:
            raise ValueError(f"a clean text batch must have one source language, got {sorted(langs)}")
        enc = bundle.tokenizer(texts, src_lang=langs.pop(), padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"].to(device), "attention_mask": enc["attention_mask"].to(device)}


def generate_tokens(bundle: ModelBundle, inputs: dict, tgt_lang: str, max_new_tokens: int) -> torch.Tensor:
    """Greedy text generation (no sampling, no speech output): [B, L] ids starting with `</s> __tgt__`."""
    out = bundle.model.generate(
        **inputs,
        tgt_lang=tgt_lang,
        generate_speech=False,
        do_sample=False,
        num_beams=1,
        max_new_tokens=max_new_tokens,
    )
    return out.sequences if hasattr(out, "sequences") else out[0]


def sequence_lengths(sequences: torch.Tensor, eos_id: int, pad_id: int) -> torch.Tensor:
    """Length of each generated sequence up to and including its first EOS after the language token."""
    L = sequences.shape[1]
    pos = torch.arange(L, device=sequences.device)[None, :]
    is_end = (sequences == eos_id) & (pos >= 2)
    first_end = torch.where(is_end.any(1), is_end.float().argmax(1), torch.full_like(sequences[:, 0], L - 1))
    return first_end + 1


@torch.no_grad()
def record_batch(
    bundle: ModelBundle,
    registry: SiteRegistry,
    items: Sequence[TaskItem],
    steps: Sequence[int] = DEFAULT_STEPS,
    mode: str = "clean",
    audio: dict[str, np.ndarray] | None = None,
    make_recorder: Callable[[list[str]], Recorder] | None = None,
) -> BatchRecording:
    """Record every unit of the task's encoder and the decoder for a batch of items of one task and target language.

    `make_recorder(stacks)` builds the recorder of each pass (default: every unit of those stacks); a unit trace
    passes one that also keeps a single unit's per-position values, so trace and recording pool identically.
    """
    if mode not in MODES:
        raise ValueError(f"unknown recording mode {mode!r}; choose one of {MODES}")
    task = items[0].task
    tgt = {it.tgt_lang for it in items}
    if len(tgt) != 1:
        raise ValueError(f"a batch must have one target language, got {sorted(tgt)}")
    tgt_lang = tgt.pop()
    model = bundle.model
    enc_stack = encoder_stack(task)
    inputs = encode_inputs(bundle, items, mode, audio)
    steps = sorted(steps)
    with ExitStack() as guards:
        if mode == "clean":
            guards.enter_context(AdapterPaddingGuard(model))
        sequences = generate_tokens(bundle, inputs, tgt_lang, max_new_tokens=max(steps) - 1)
        eos, pad = bundle.tokenizer.eos_token_id, bundle.tokenizer.pad_token_id
        seq_len = sequence_lengths(sequences, eos, pad)
        B = sequences.shape[0]
        masks: dict[str, torch.Tensor] = {}
        if enc_stack == "speech_encoder":
            masks["speech_frames"] = inputs["attention_mask"].bool()
        elif mode == "faithful":
            masks["text_tokens"] = torch.ones_like(inputs["attention_mask"], dtype=torch.bool)
        else:
            masks["text_tokens"] = inputs["attention_mask"].bool()
        encoder_out = None
        enc_pooled: dict[str, np.ndarray] = {}
        dec_pooled: dict[int, np.ndarray] = {}
        prefix_lengths: dict[int, list[int]] = {}
        for i, s in enumerate(steps):
            valid = torch.clamp(seq_len, max=s)
            width = min(s, sequences.shape[1])
            prefix = sequences[:, :width]
            dec_mask = torch.arange(width, device=prefix.device)[None, :] < valid[:, None]
            prefix = prefix.masked_fill(~dec_mask, pad)
            stacks = [enc_stack, "text_decoder"] if i == 0 else ["text_decoder"]
            recorder = make_recorder(stacks) if make_recorder is not None else Recorder(model, registry, stacks)
            recorder.prepare(B, {**masks, "decoder": dec_mask}, enc_stack)
            with recorder.active():
                kwargs = dict(decoder_input_ids=prefix, decoder_attention_mask=dec_mask.long(), attention_mask=inputs["attention_mask"], use_cache=False)
                if encoder_out is None:
                    out = model(**{k: v for k, v in inputs.items() if k != "attention_mask"}, **kwargs, output_hidden_states=False)
                    encoder_out = (out.encoder_last_hidden_state,)
                else:
                    model(encoder_outputs=encoder_out, **kwargs)
            if i == 0:
                enc_pooled[enc_stack] = recorder.pooled[enc_stack].cpu().numpy()
            dec_pooled[s] = recorder.pooled["text_decoder"].cpu().numpy()
            prefix_lengths[s] = valid.tolist()
    generated = [row[: int(n)].tolist() for row, n in zip(sequences.cpu(), seq_len.cpu())]
    return BatchRecording(enc_pooled, dec_pooled, generated, prefix_lengths)


def length_buckets(items: Sequence[TaskItem], lengths: Sequence[int], max_batch: int, max_padding: float = 0.25) -> list[list[TaskItem]]:
    """Group items (sorted by length) into batches of at most `max_batch` whose padding stays under `max_padding`.

    Padding is masked exactly, so buckets only bound wasted compute; they keep batches within one target language.
    """
    order = sorted(range(len(items)), key=lambda i: (items[i].tgt_lang, lengths[i], items[i].index))
    batches: list[list[TaskItem]] = []
    current: list[int] = []
    for i in order:
        if current:
            first = current[0]
            too_long = lengths[i] > (1 + max_padding) * max(lengths[first], 1)
            if len(current) >= max_batch or too_long or items[i].tgt_lang != items[first].tgt_lang:
                batches.append([items[j] for j in current])
                current = []
        current.append(i)
    if current:
        batches.append([items[j] for j in current])
    return batches
