"""Step-aware recording: greedy generation, then teacher-forced passes at each prefix length, pooled per unit.

Two modes (stored with the run):
- `clean`: what the unmodified model computes on each input run alone with the processor's defaults, batched in
  length buckets; `AdapterPaddingGuard` keeps the speech adapter from reading frames an utterance would not have
  alone, and padding is masked out of every mean (text tokenised with its true source language).
- `faithful`: the reference code's recording, one example at a time: text tokenised as a freshly loaded tokenizer's
  `encode(text)` does (target mode: `</s> __{tgt_lang}__ ... </s>` with the tokenizer's configured `tgt_lang`),
  padded to 256 tokens (never truncated), and every unit averaged over every position its module outputs
  (`reference_pool`: pads and the feature extractor's padding frame included, the long-utterance axis quirk too).
  Sites whose pooled vector has the wrong length are then filtered as the reference's reader does
  (`reference_length_filter`).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np
import torch

from neuron_atlas.engine.audio import load_audio_file
from neuron_atlas.engine.constants import DEFAULT_STEPS, MODES
from neuron_atlas.engine.model.hooks import AdapterPaddingGuard, Recorder
from neuron_atlas.engine.model.loading import ModelBundle
from neuron_atlas.engine.model.tokenizer import lang_token
from neuron_atlas.engine.model.unit_sites import SiteRegistry, UnitSite
from neuron_atlas.engine.tasks import TASKS, TaskItem

FAITHFUL_TEXT_LENGTH = 256
#: `SeamlessM4TTokenizer`'s class default `tgt_lang`, what a tokenizer without a configured one uses.
TOKENIZER_DEFAULT_TGT_LANG = "fra"
#: The reference's reader keeps a site only when at least this share of a task's examples pooled to one length.
REFERENCE_MAJORITY_SHARE = 0.90


@dataclass
class BatchRecording:
    """Pooled activations of a batch: encoder stack -> [B, units]; decoder per step -> [B, units]; generated ids."""

    encoder: dict[str, np.ndarray]
    decoder: dict[int, np.ndarray]
    generated: list[list[int]]
    prefix_lengths: dict[int, list[int]]
    #: per item: the text token ids fed to the model (None for speech)
    input_ids: list[list[int] | None] = field(default_factory=list)
    #: per item (faithful mode): site key -> length of a pooled vector that did not have the site's width
    mismatched: list[dict[str, int]] = field(default_factory=list)


def encoder_stack(task: str) -> str:
    return "speech_encoder" if TASKS[task].modality == "speech" else "text_encoder"


def configured_tgt_lang(tokenizer) -> str:
    """The `tgt_lang` a freshly loaded copy of this tokenizer starts with (its tokenizer_config.json, else `fra`)."""
    lang = tokenizer.init_kwargs.get("tgt_lang") or TOKENIZER_DEFAULT_TGT_LANG
    return lang_token(lang)


def reference_text_ids(tokenizer, text: str) -> list[int]:
    """Token ids of `text` as the reference gets them: `encode(text)` on a freshly loaded tokenizer.

    A fresh `SeamlessM4TTokenizer` is left in target mode by its constructor, so the ids are
    `</s> __{tgt_lang}__ <text tokens> </s>` with the configured `tgt_lang` (not the text's language). Built here
    without touching the shared tokenizer's current mode.
    """
    body = tokenizer.encode(text, add_special_tokens=False)
    eos = tokenizer.eos_token_id
    return [eos, tokenizer.convert_tokens_to_ids(configured_tgt_lang(tokenizer)), *body, eos]


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
        ids = [reference_text_ids(bundle.tokenizer, t) for t in texts]
        width = max(FAITHFUL_TEXT_LENGTH, *(len(x) for x in ids))
        pad = bundle.tokenizer.pad_token_id
        input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids])
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
        return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}
    langs = {it.src_lang for it in items}
    if len(langs) != 1:
        raise ValueError(f"a clean text batch must have one source language, got {sorted(langs)}")
    enc = bundle.tokenizer(texts, src_lang=langs.pop(), padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"].to(device), "attention_mask": enc["attention_mask"].to(device)}


def fed_text_ids(inputs: dict, mode: str) -> list[list[int] | None]:
    """Per item, the text token ids the model was fed: faithful keeps the pads it was fed, clean drops batch pads."""
    if "input_ids" not in inputs:
        return [None] * inputs["input_features"].shape[0]
    ids, mask = inputs["input_ids"].cpu(), inputs["attention_mask"].cpu().bool()
    if mode == "faithful":
        return ids.tolist()
    return [row[m].tolist() for row, m in zip(ids, mask)]


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
    if mode == "faithful" and len(items) != 1:
        raise ValueError(f"faithful mode records one example at a time, as the reference does; got a batch of {len(items)}")
    task = items[0].task
    tgt = {it.tgt_lang for it in items}
    if len(tgt) != 1:
        raise ValueError(f"a batch must have one target language, got {sorted(tgt)}")
    tgt_lang = tgt.pop()
    model = bundle.model
    enc_stack = encoder_stack(task)
    inputs = encode_inputs(bundle, items, mode, audio)
    steps = sorted(steps)
    pooling = "reference" if mode == "faithful" else "masked"
    mismatched: list[dict[str, int]] = [{} for _ in items]
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
            # the reference masks decoder positions holding id 0 (Seamless's pad id)
            dec_attention = (prefix != 0).long() if mode == "faithful" else dec_mask.long()
            stacks = [enc_stack, "text_decoder"] if i == 0 else ["text_decoder"]
            recorder = make_recorder(stacks) if make_recorder is not None else Recorder(model, registry, stacks)
            recorder.pooling = pooling
            recorder.prepare(B, {**masks, "decoder": dec_mask}, enc_stack)
            with recorder.active():
                kwargs = dict(decoder_input_ids=prefix, decoder_attention_mask=dec_attention, attention_mask=inputs["attention_mask"], use_cache=False)
                if encoder_out is None:
                    out = model(**{k: v for k, v in inputs.items() if k != "attention_mask"}, **kwargs, output_hidden_states=False)
                    encoder_out = (out.encoder_last_hidden_state,)
                else:
                    model(encoder_outputs=encoder_out, **kwargs)
            for row in mismatched:
                row.update(recorder.mismatched)
            if i == 0:
                enc_pooled[enc_stack] = recorder.pooled[enc_stack].cpu().numpy()
            dec_pooled[s] = recorder.pooled["text_decoder"].cpu().numpy()
            prefix_lengths[s] = valid.tolist()
    generated = [row[: int(n)].tolist() for row, n in zip(sequences.cpu(), seq_len.cpu())]
    return BatchRecording(enc_pooled, dec_pooled, generated, prefix_lengths, fed_text_ids(inputs, mode), mismatched)


@dataclass
class LengthFilter:
    """What the reference's reader drops from one task: examples (item -> reason) and whole sites (key -> reason)."""

    items: dict[int, str]
    sites: dict[str, str]


def reference_length_filter(n_items: int, mismatched: Mapping[int, Mapping[str, int]], sites: Sequence[UnitSite]) -> LengthFilter:
    """Replay the reference's reader (`read_responses_from_cached`) on one task's pooled-vector lengths.

    Per site it takes the most common length over the task's examples; a site where fewer than 90 % share it is
    dropped whole, and an example whose length differs from the majority at any other site is dropped whole. A
    site kept by the reference with a majority length other than its width holds per-frame values, not units, so
    it is dropped here too (its examples are filtered as the reference filters them). `mismatched` maps
    item -> {site key: pooled length} for the sites whose length was not the site's width.
    """
    width = {s.key: s.width for s in sites}
    offset = {s.key: s.offset for s in sites}
    by_site: dict[str, dict[int, int]] = {}
    for item, row in mismatched.items():
        for key, length in row.items():
            by_site.setdefault(key, {})[item] = length
    dropped_items: dict[int, str] = {}
    dropped_sites: dict[str, str] = {}
    for key in sorted(by_site, key=offset.__getitem__):
        lengths = by_site[key]
        counts = Counter({width[key]: n_items - len(lengths)}) + Counter(lengths.values())
        majority, n_major = counts.most_common(1)[0]
        share = n_major / n_items
        if share < REFERENCE_MAJORITY_SHARE:
            dropped_sites[key] = (f"only {share:.0%} of the task's examples pooled to one length ({majority}) at this "
                                  f"site, under the reference reader's {REFERENCE_MAJORITY_SHARE:.0%}: it drops the site")
            continue
        if majority != width[key]:
            dropped_sites[key] = (f"the reference keeps {majority} per-frame values here instead of the site's "
                                  f"{width[key]} channels (frames outnumber channels in most examples)")
        for item in range(n_items):
            length = lengths.get(item, width[key])
            if length != majority and item not in dropped_items:
                dropped_items[item] = (f"{key} pooled to {length} values, not the task's majority length {majority} "
                                       f"(with more frames than channels the reference averages over the wrong axis); "
                                       f"the reference's reader drops such an example")
    return LengthFilter(dropped_items, dropped_sites)


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
