"""Model inputs from text or audio, and greedy generation under an intervention (text, or speech via the vocoder)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np
import torch

from neuron_atlas.engine.constants import DECODER_PROMPT_LENGTH, SAMPLE_RATE
from neuron_atlas.engine.interventions.apply import intervene
from neuron_atlas.engine.interventions.resolve import ResolvedIntervention
from neuron_atlas.engine.model.hooks import AdapterPaddingGuard
from neuron_atlas.engine.model.loading import ModelBundle
from neuron_atlas.engine.model.tokenizer import lang_token
from neuron_atlas.engine.model.unit_sites import SiteRegistry


def prepare_inputs(
    bundle: ModelBundle,
    *,
    text: str | Sequence[str] | None = None,
    src_lang: str | None = None,
    audio: np.ndarray | Sequence[np.ndarray] | None = None,
) -> dict[str, torch.Tensor]:
    """Model inputs from text (tokenised with its source language) or 16 kHz float32 audio (a batch when given lists)."""
    if (text is None) == (audio is None):
        raise ValueError("give exactly one of text or audio")
    if text is not None:
        texts = [text] if isinstance(text, str) else list(text)
        if not texts:
            raise ValueError("text: no texts given")
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise ValueError(f"text[{i}]: expected a non-empty string, got {t!r}")
        if src_lang is None:
            raise ValueError("src_lang: required with text (the source-language token starts the encoder input)")
        tok = bundle.tokenizer
        if tok.convert_tokens_to_ids(lang_token(src_lang)) in (None, tok.unk_token_id):
            raise ValueError(f"src_lang: {src_lang!r} is not a language of this model's tokenizer")
        enc = tok(texts, src_lang=src_lang, padding=True, return_tensors="pt")
        return {"input_ids": enc["input_ids"].to(bundle.device), "attention_mask": enc["attention_mask"].to(bundle.device)}
    if src_lang is not None:
        raise ValueError("src_lang: only used with text (speech input carries no language token)")
    waves = [audio] if isinstance(audio, np.ndarray) else list(audio)
    if not waves:
        raise ValueError("audio: no audio given")
    for i, w in enumerate(waves):
        w = np.asarray(w)
        if w.ndim != 1 or w.size == 0:
            raise ValueError(f"audio[{i}]: expected a non-empty 1-D array of 16 kHz samples, got shape {w.shape}")
        if not np.isfinite(w).all():
            raise ValueError(f"audio[{i}]: contains NaN or infinite samples")
    waves = [np.asarray(w, dtype=np.float32) for w in waves]
    feats = bundle.feature_extractor(waves, sampling_rate=SAMPLE_RATE, return_tensors="pt", padding=True)
    return {
        "input_features": feats["input_features"].to(bundle.device, bundle.dtype),
        "attention_mask": feats["attention_mask"].to(bundle.device),
    }


@dataclass
class GenerationResult:
    """Greedy generation output: raw sequences (`</s> __tgt__ ...`), content token ids and texts, scores, speech."""

    sequences: torch.Tensor
    token_ids: list[list[int]]
    texts: list[str]
    scores: torch.Tensor | None
    waveforms: list[np.ndarray] | None
    sample_rate: int

    @property
    def text(self) -> str:
        return self._single(self.texts, "text")

    @property
    def waveform(self) -> np.ndarray | None:
        return None if self.waveforms is None else self._single(self.waveforms, "waveform")

    @staticmethod
    def _single(items: list, name: str):
        if len(items) != 1:
            raise ValueError(f"{name}: this result holds a batch of {len(items)}; index {name}s instead")
        return items[0]


@torch.no_grad()
def teacher_forced_scores(bundle: ModelBundle, registry: SiteRegistry, resolved: ResolvedIntervention | None,
                          inputs: Mapping[str, torch.Tensor], sequences: torch.Tensor) -> torch.Tensor:
    """Next-token logits [batch, steps, vocab] of generated `sequences` (`</s> __tgt__ ...`) from one teacher-forced
    decoder pass under the same intervention: the scores of a generation that returned none (the speech path)."""
    sequences = sequences.to(bundle.device)
    with ExitStack() as stack:
        if "input_features" in inputs:
            stack.enter_context(AdapterPaddingGuard(bundle.model))
        stack.enter_context(intervene(bundle, registry, resolved))
        out = bundle.model(**inputs, decoder_input_ids=sequences[:, :-1], use_cache=False)
    return out.logits[:, DECODER_PROMPT_LENGTH - 1 :].float().cpu()


def chosen_token_probabilities(scores: torch.Tensor, token_ids: Sequence[Sequence[int]],
                               probe_id: int | None = None) -> tuple[list[list[float]], list[list[float]] | None]:
    """Per output token, the softmax probability greedy decoding gave the token it chose (and, with `probe_id`, the
    probability of that one token at the same steps), from `GenerationResult.scores` [batch, steps, vocab]."""
    probs = torch.softmax(scores.float(), dim=-1)
    width = probs.shape[1]
    ids = torch.tensor([list(row[:width]) + [0] * (width - len(row[:width])) for row in token_ids], dtype=torch.long)
    chosen = probs.gather(-1, ids[:, :, None])[..., 0]
    lengths = [min(len(row), width) for row in token_ids]
    out = [chosen[i, :n].tolist() for i, n in enumerate(lengths)]
    probe = None
    if probe_id is not None:
        probe = [probs[i, :n, probe_id].tolist() for i, n in enumerate(lengths)]
    return out, probe


def _content_ids(sequences: torch.Tensor, eos_id: int) -> list[list[int]]:
    """Generated tokens after `</s> __tgt__`, up to (not including) the first EOS."""
    body = sequences[:, DECODER_PROMPT_LENGTH:].cpu()
    is_end = body == eos_id
    lengths = torch.where(is_end.any(1), is_end.int().argmax(1), torch.full((body.shape[0],), body.shape[1]))
    return [row[: int(n)].tolist() for row, n in zip(body, lengths)]


@torch.no_grad()
def generate_with(
    bundle: ModelBundle,
    registry: SiteRegistry,
    resolved: ResolvedIntervention | None,
    inputs: Mapping[str, torch.Tensor],
    tgt_lang: str,
    max_new_tokens: int = 128,
    speech: bool = False,
    use_cache: bool = True,
    speaker_id: int = 0,
) -> GenerationResult:
    """Greedy decoding (no sampling, one beam) under an intervention; with `speech`, the model's text-to-unit + vocoder path.

    Speech inputs run with `AdapterPaddingGuard`, so a padded batch decodes as each utterance would alone.
    """
    if tgt_lang not in bundle.languages:
        raise ValueError(f"tgt_lang: {tgt_lang!r} is not a target language of this model ({', '.join(bundle.languages)})")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens: must be >= 1, got {max_new_tokens}")
    model = bundle.model
    with ExitStack() as stack:
        if "input_features" in inputs:
            stack.enter_context(AdapterPaddingGuard(model))
        stack.enter_context(intervene(bundle, registry, resolved))
        if speech:
            out = model.generate(
                **inputs,
                tgt_lang=tgt_lang,
                generate_speech=True,
                return_intermediate_token_ids=True,
                speaker_id=speaker_id,
                text_do_sample=False,
                text_num_beams=1,
                text_max_new_tokens=max_new_tokens,
                text_use_cache=use_cache,
            )
        else:
            out = model.generate(
                **inputs,
                tgt_lang=tgt_lang,
                generate_speech=False,
                do_sample=False,
                num_beams=1,
                max_new_tokens=max_new_tokens,
                use_cache=use_cache,
            )
    sequences = out.sequences
    token_ids = _content_ids(sequences, bundle.tokenizer.eos_token_id)
    texts = bundle.tokenizer.batch_decode(token_ids, skip_special_tokens=True)
    scores = None
    waveforms = None
    if speech:
        full = torch.full((len(token_ids),), out.waveform.shape[-1])
        lengths = (full if out.waveform_lengths is None else torch.as_tensor(out.waveform_lengths).reshape(-1)).tolist()
        wave = out.waveform.float().cpu().numpy()
        waveforms = [wave[i, : int(n)] for i, n in enumerate(lengths)]
    else:
        scores = torch.stack(out.scores, dim=1).float().cpu()
    return GenerationResult(sequences.cpu(), token_ids, texts, scores, waveforms, int(model.config.sampling_rate))
