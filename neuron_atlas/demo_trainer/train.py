"""Train the demo model: a small SeamlessM4Tv2Model learning ASR, X->en and en->X speech and text translation.

One optimiser step = one speech batch + one text batch. A speech clip is encoded once and decoded towards several
targets (its transcript, and its English translation or, for English clips, translations into other languages),
so the expensive speech encoder is shared by the tasks. Decoder inputs are `[</s>, __tgt__, tokens...]` and labels
`[__tgt__, tokens..., </s>]`, exactly what `SeamlessM4Tv2Model.generate(tgt_lang=...)` feeds at inference. Two
CTC losses (linear heads used only in training, as in joint CTC-attention ASR) shape the speech encoder: the
espeak-ng phonemes of the utterance from the Conformer output, which teaches the sounds within a few hundred steps,
and the transcript's tokens from the length-adapter output (three CTC frames per 160 ms adapter frame, since fast
speech has more tokens than adapter frames), which puts the words where the decoder reads them. The heads are not
part of the saved model. Training starts with a short text-only phase, so the decoder already reads its
encoder when speech joins.
Training runs in bf16 autocast on CPU (fp32 master weights) and stops at `steps` or at the time budget, whichever
comes first; the learning-rate schedule follows whichever is further along, so a cut run still anneals.
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import SeamlessM4TFeatureExtractor, SeamlessM4TTokenizer, SeamlessM4Tv2Model

from neuron_atlas.engine.model.configs import TINY_DIMS, generation_config, small_config
from neuron_atlas.engine.model.hooks import AdapterPaddingGuard
from neuron_atlas.engine.model.loading import ModelBundle, load_model, save_bundle, state_checksum
from neuron_atlas.engine.model.tokenizer import lang_token, train_tokenizer
from neuron_atlas.engine.example import CorpusError
from neuron_atlas.engine.sentences import Sentence
from neuron_atlas.demo_trainer.data import DataConfig, DemoData, build_data
from neuron_atlas.demo_trainer.language_evidence import LanguageEvidenceHead
from neuron_atlas.demo_trainer.rows import IGNORE, pad_decoder_rows
from neuron_atlas.demo_trainer.steering import SteeringConfig, SteeringObjective
from neuron_atlas.demo_trainer.card import write_model_card
from neuron_atlas.demo_trainer.evaluate import evaluate_saved

#: The demo model's shape: every stack of the real architecture, small. The speech side keeps the conformer
#: (4 layers, convolution module, relative positions) and the stride-8 length adapter of the large model. The
#: text-to-unit model and vocoder are present but minimal (no t2u layers): speech output is not trained.
DEMO_DIMS: dict = dict(
    hidden_size=192,
    encoder_layers=3,
    decoder_layers=3,
    encoder_ffn_dim=768,
    decoder_ffn_dim=768,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    speech_encoder_layers=4,
    speech_encoder_attention_heads=4,
    speech_encoder_intermediate_size=768,
    conv_depthwise_kernel_size=15,
    t2u_encoder_layers=0,
    t2u_decoder_layers=0,
    t2u_encoder_ffn_dim=16,
    t2u_decoder_ffn_dim=16,
    t2u_encoder_attention_heads=1,
    t2u_decoder_attention_heads=1,
    t2u_variance_predictor_embed_dim=8,
    t2u_variance_predictor_hidden_dim=8,
    t2u_vocab_size=16,
    unit_hifi_gan_vocab_size=16,
    unit_embed_dim=8,
    lang_embed_dim=4,
    spkr_embed_dim=4,
    upsample_initial_channel=32,
    vocoder_num_spkrs=1,
)
#: Characters the (untrained) text-to-unit model embeds; speech output falls back to TTS, so this stays tiny.
CHAR_VOCAB_SIZE = 64
#: Dropout used while training (the saved model has none; it is always used in eval mode).
TRAIN_DROPOUT = dict(dropout=0.1, attention_dropout=0.0, activation_dropout=0.0, speech_encoder_dropout=0.1)
#: Learning-rate multiplier of the language-evidence head: it starts untrained on a trained model and must find
#: its readout within a short continuation run.
EVIDENCE_LR_SCALE = 30.0
#: CTC frames per length-adapter frame for the transcript-token CTC loss on the speech encoder's output.
TOKEN_CTC_UPSAMPLE = 3


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of a demo-model training run."""

    steps: int = 6000
    minutes: float = 50.0
    seed: int = 0
    dims: dict = field(default_factory=lambda: dict(DEMO_DIMS))
    vocab_size: int = 1500
    speech_batch: int = 24
    text_batch: int = 48
    en2x_speech_targets: int = 2
    builtin_text_weight: float = 3.0
    eng_tag_prob: float = 0.15
    lr: float = 1.5e-3
    warmup: float = 0.05
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    label_smoothing: float = 0.1
    ctc_weight: float = 0.5
    ctc_token_weight: float = 0.3
    source_language_labels: bool = True
    steer_weight: float = 0.0
    evidence_weight: float = 0.0
    clip_norm: float = 1.0
    threads: int = 0
    text_phase: float = 0.08
    bf16: bool = True
    dropout: bool = False
    log_every: int = 25

    def __post_init__(self) -> None:
        if self.steps < 1 or self.minutes <= 0:
            raise CorpusError(f"steps must be >= 1 and minutes > 0, got steps={self.steps}, minutes={self.minutes}")
        for name in ("speech_batch", "text_batch", "vocab_size", "log_every"):
            if getattr(self, name) < 1:
                raise CorpusError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.threads < 0:
            raise CorpusError(f"threads must be >= 1, or 0 to measure 1 against all cores, got {self.threads}")
        for name in ("warmup", "text_phase"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise CorpusError(f"{name} is a fraction of training in [0, 1), got {getattr(self, name)}")
        for name in ("steer_weight", "evidence_weight"):
            if getattr(self, name) < 0:
                raise CorpusError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.eng_tag_prob <= 1.0:
            raise CorpusError(f"eng_tag_prob must be in [0, 1], got {self.eng_tag_prob}")


@dataclass
class TrainResult:
    """What a training run did: steps, time, why it stopped, the loss curve, parameter count, steps per thread count."""

    steps: int
    seconds: float
    stopped_by: str
    n_parameters: int
    history: list[dict]
    thread_steps: dict[int, int] = field(default_factory=dict)
    data_seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------- model, tokenizer


def build_tokenizer(train: list[Sentence], every: list[Sentence], languages: tuple[str, ...],
                    vocab_size: int) -> SeamlessM4TTokenizer:
    """BPE tokenizer learned from the training sentences; the characters of `every` sentence are in its alphabet
    (as single characters, so no held-out word shapes a merge) and never map to `<unk>`."""
    texts = [s.text(lang) for s in train for lang in languages]
    alphabet = sorted({ch for s in every for lang in languages for ch in s.text(lang) if not ch.isspace()})
    return train_tokenizer(texts + [" ".join(alphabet)], languages, vocab_size=vocab_size)


def build_model(tokenizer: SeamlessM4TTokenizer, languages: tuple[str, ...], dims: dict, seed: int,
                dropout: bool) -> SeamlessM4Tv2Model:
    """A freshly initialised SeamlessM4Tv2Model with `dims`, sized to the tokenizer, with its generation config."""
    config = small_config(tokenizer, languages, dims)
    config.char_vocab_size = CHAR_VOCAB_SIZE
    if dropout:
        for key, value in TRAIN_DROPOUT.items():
            setattr(config, key, value)
    torch.manual_seed(seed)
    model = SeamlessM4Tv2Model(config)
    model.generation_config = generation_config(config, tokenizer, languages)
    return model


def finalize_config(model: SeamlessM4Tv2Model) -> None:
    """Inference settings for the saved config: no dropout, and a flag that the speech decoder is untrained."""
    for key in TRAIN_DROPOUT:
        setattr(model.config, key, 0.0)
    model.config.speech_decoder_trained = False


def save_model(model: SeamlessM4Tv2Model, tokenizer: SeamlessM4TTokenizer, folder: Path,
               dtype: torch.dtype = torch.float16) -> None:
    """Save weights (float16 by default; `load_model` loads them as float32 on CPU), tokenizer and processor."""
    finalize_config(model)
    saved = model.to(dtype).eval()
    bundle = ModelBundle(model=saved, tokenizer=tokenizer, feature_extractor=SeamlessM4TFeatureExtractor(),
                         spec=str(folder), device=torch.device("cpu"), dtype=dtype, checksum=state_checksum(saved))
    save_bundle(bundle, Path(folder))
    model.to(torch.float32)


# ----------------------------------------------------------------------------------------------------- batches


@dataclass
class Rows:
    """Decoder rows of a batch: which encoder row each comes from, decoder inputs and labels (padded)."""

    source: torch.Tensor
    decoder_input_ids: torch.Tensor
    decoder_attention_mask: torch.Tensor
    labels: torch.Tensor
    tasks: list[str]
    languages: torch.Tensor | None = None
    ctc_targets: torch.Tensor | None = None
    ctc_lengths: torch.Tensor | None = None
    token_targets: torch.Tensor | None = None
    token_lengths: torch.Tensor | None = None


class Batcher:
    """Draws speech and text batches from the training data (seeded), tokenised once up front."""

    def __init__(self, data: DemoData, tokenizer: SeamlessM4TTokenizer, cfg: TrainConfig):
        self.data, self.tok, self.cfg = data, tokenizer, cfg
        self.languages = tuple(data.config.languages)
        self.others = [lang for lang in self.languages if lang != "eng"]
        self.rng = random.Random(f"batches-{cfg.seed}")
        self.eos, self.pad = tokenizer.eos_token_id, tokenizer.pad_token_id
        self.lang_id = {lang: tokenizer.convert_tokens_to_ids(lang_token(lang)) for lang in self.languages}
        self.content: dict[tuple[str, str], list[int]] = {}
        for s in data.train + data.heldout:
            for lang in self.languages:
                self.content[(s.id, lang)] = tokenizer(s.text(lang), add_special_tokens=False)["input_ids"]
        self.phoneme_id: dict[str, int] = {}
        for s in data.train:
            for lang in self.languages:
                for p in data.phonemes[(s.id, lang)]:
                    self.phoneme_id.setdefault(p, len(self.phoneme_id) + 1)
        self.train_clips = data.clip_indices("train")
        self.clip_len = np.diff(data.offsets)
        self.text_sentences = data.train
        weights = [cfg.builtin_text_weight if not s.id.startswith("g") else 1.0 for s in data.train]
        self.text_weights = np.cumsum(weights)
        self._speech_batches: Iterator[list[int]] = iter(())

    def _rows(self, pairs: list[tuple[int, str, str, str]], sources: list[str]) -> Rows:
        """pairs: (encoder row, sentence id, target language, task), sources: each row's input language -> padded
        decoder inputs and labels. With `source_language_labels`, the label of the first position (after `</s>`)
        is the input's language token rather than the target's: generation forces the target token there, so that
        prediction is never used, and it teaches the decoder to identify the language it is reading."""
        seqs = [[self.lang_id[tgt]] + self.content[(sid, tgt)] for _, sid, tgt, _ in pairs]
        firsts = [self.lang_id[src] if self.cfg.source_language_labels else s[0] for s, src in zip(seqs, sources)]
        dec, mask, lab = pad_decoder_rows(seqs, firsts, self.eos, self.pad)
        source = torch.tensor([row for row, _, _, _ in pairs], dtype=torch.long)
        languages = torch.tensor([self.languages.index(src) for src in sources], dtype=torch.long)
        return Rows(source, dec, mask, lab, [task for _, _, _, task in pairs], languages)

    def _epoch(self) -> Iterator[list[int]]:
        order = list(self.train_clips)
        self.rng.shuffle(order)
        b = self.cfg.speech_batch
        batches = []
        for start in range(0, len(order), 50 * b):
            group = sorted(order[start: start + 50 * b], key=lambda i: self.clip_len[i])
            batches += [group[i: i + b] for i in range(0, len(group), b)]
        self.rng.shuffle(batches)
        return iter(batches)

    def speech_batch(self) -> tuple[dict, Rows]:
        """Features of a length-bucketed batch of clips, and its decoder rows (asr, s2tt, en2x_s2tt)."""
        batch = next(self._speech_batches, None)
        if batch is None:
            self._speech_batches = self._epoch()
            batch = next(self._speech_batches)
        feats = [self.data.clip_features(i) for i in batch]
        width = max(f.shape[0] for f in feats)
        x = np.zeros((len(feats), width, feats[0].shape[1]), dtype=np.float32)
        mask = np.zeros((len(feats), width), dtype=np.int64)
        for i, f in enumerate(feats):
            x[i, : f.shape[0]] = f
            mask[i, : f.shape[0]] = 1
        pairs = []
        for row, i in enumerate(batch):
            clip = self.data.clips[i]
            pairs.append((row, clip.sentence_id, clip.lang, "asr"))
            if clip.lang != "eng":
                pairs.append((row, clip.sentence_id, "eng", "s2tt"))
            else:
                k = min(self.cfg.en2x_speech_targets, len(self.others))
                pairs += [(row, clip.sentence_id, tgt, "en2x_s2tt") for tgt in self.rng.sample(self.others, k)]
        inputs = {"input_features": torch.from_numpy(x), "attention_mask": torch.from_numpy(mask)}
        rows = self._rows(pairs, [self.data.clips[batch[row]].lang for row, _, _, _ in pairs])
        transcripts = [[self.phoneme_id[p] for p in self.data.phonemes[(self.data.clips[i].sentence_id,
                                                                       self.data.clips[i].lang)]] for i in batch]
        rows.ctc_targets = torch.tensor([t for ids in transcripts for t in ids], dtype=torch.long)
        rows.ctc_lengths = torch.tensor([len(ids) for ids in transcripts], dtype=torch.long)
        tokens = [self.content[(self.data.clips[i].sentence_id, self.data.clips[i].lang)] for i in batch]
        rows.token_targets = torch.tensor([t + 1 for ids in tokens for t in ids], dtype=torch.long)
        rows.token_lengths = torch.tensor([len(ids) for ids in tokens], dtype=torch.long)
        return inputs, rows

    def text_batch(self) -> tuple[dict, Rows]:
        """Tokenised source texts (tagged with their language, sometimes `__eng__`) and rows (t2tt, en2x_t2tt)."""
        encoder_ids, pairs, sources = [], [], []
        draws = np.searchsorted(self.text_weights, np.array(
            [self.rng.random() * self.text_weights[-1] for _ in range(self.cfg.text_batch)]), side="right")
        for row, k in enumerate(draws):
            sentence = self.text_sentences[int(k)]
            other = self.rng.choice(self.others)
            src, tgt, task = (other, "eng", "t2tt") if self.rng.random() < 0.5 else ("eng", other, "en2x_t2tt")
            tag = "eng" if self.rng.random() < self.cfg.eng_tag_prob else src
            encoder_ids.append([self.lang_id[tag]] + self.content[(sentence.id, src)] + [self.eos])
            pairs.append((row, sentence.id, tgt, task))
            sources.append(src)
        width = max(len(s) for s in encoder_ids)
        ids = torch.full((len(encoder_ids), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(encoder_ids), width), dtype=torch.long)
        for i, s in enumerate(encoder_ids):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        return {"input_ids": ids, "attention_mask": mask}, self._rows(pairs, sources)


# ------------------------------------------------------------------------------------------------------- losses


def encode(model: SeamlessM4Tv2Model, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder states and their attention mask, for speech (after the length adapter) or text inputs."""
    if "input_features" in inputs:
        states = model.speech_encoder(input_features=inputs["input_features"],
                                      attention_mask=inputs["attention_mask"]).last_hidden_state
        lengths = model._compute_sub_sample_lengths_from_attention_mask(inputs["attention_mask"]).long()
        mask = (torch.arange(states.shape[1])[None, :] < lengths[:, None]).long()
        return states, mask
    states = model.text_encoder(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
    return states, inputs["attention_mask"]


def decode_loss(model: SeamlessM4Tv2Model, states: torch.Tensor, mask: torch.Tensor, rows: Rows,
                label_smoothing: float) -> torch.Tensor:
    """Mean token cross-entropy of the decoder rows, each attending to its encoder row."""
    out = model.text_decoder(input_ids=rows.decoder_input_ids, attention_mask=rows.decoder_attention_mask,
                             encoder_hidden_states=states[rows.source], encoder_attention_mask=mask[rows.source])
    logits = model.lm_head(out.last_hidden_state).float()
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), rows.labels.reshape(-1), ignore_index=IGNORE,
                           label_smoothing=label_smoothing)


class ConformerTap:
    """Keeps the speech encoder's Conformer output (before the length adapter) of the last forward, for the CTC loss."""

    def __init__(self, model: SeamlessM4Tv2Model):
        self.states: torch.Tensor | None = None
        self._handle = model.speech_encoder.encoder.register_forward_hook(self._keep)

    def _keep(self, module, args, output) -> None:
        self.states = output[0] if isinstance(output, tuple) else output

    def remove(self) -> None:
        self._handle.remove()


def ctc_loss(head: torch.nn.Linear, states: torch.Tensor, frame_mask: torch.Tensor, targets: torch.Tensor,
             target_lengths: torch.Tensor, upsample: int = 1) -> torch.Tensor:
    """CTC (blank 0) of concatenated `targets` against a linear projection of `states` [batch, frames, hidden];
    with `upsample` > 1 the head predicts that many CTC frames per state (for the 6.25 frames/s adapter output,
    which is slower than fast speech's token rate)."""
    logits = head(states).float()
    logits = logits.reshape(logits.shape[0], logits.shape[1] * upsample, -1)
    log_probs = torch.log_softmax(logits, dim=-1).transpose(0, 1)
    return F.ctc_loss(log_probs, targets, frame_mask.sum(1) * upsample, target_lengths, blank=0, reduction="mean",
                      zero_infinity=True)


class ThreadTuner:
    """Picks the faster torch thread count while training: every `period` steps it times `probe` live steps with
    each candidate and keeps the faster one. On a busy shared machine one thread can beat two by a wide margin, on
    an idle one two win; re-measuring follows the machine."""

    def __init__(self, candidates: tuple[int, ...], period: int = 150, probe: int = 5):
        self.candidates, self.period, self.probe = candidates, period, probe
        self.best = candidates[0]
        self.timings: dict[int, list[float]] = {}
        self.steps: dict[int, int] = {}

    def threads_for(self, step: int) -> int:
        phase = step % self.period
        slot = phase // self.probe
        if len(self.candidates) > 1 and slot < len(self.candidates):
            return self.candidates[slot]
        return self.best

    def record(self, step: int, threads: int, seconds: float) -> None:
        self.steps[threads] = self.steps.get(threads, 0) + 1
        phase = step % self.period
        if phase // self.probe < len(self.candidates) and len(self.candidates) > 1:
            self.timings.setdefault(threads, []).append(seconds)
        if phase == self.probe * len(self.candidates) - 1 and len(self.candidates) > 1:
            means = {t: float(np.median(v)) for t, v in self.timings.items() if v}
            self.best = min(means, key=means.get)
            self.timings.clear()


def lr_factor(progress: float, cfg: TrainConfig) -> float:
    """Linear warm-up over the first `warmup` fraction of training, then cosine decay to `min_lr_ratio`; `progress`
    in [0, 1] is the further along of steps and time, so the schedule fits whichever budget ends training."""
    if progress < cfg.warmup:
        return max(progress / cfg.warmup, 1e-3)
    rest = (progress - cfg.warmup) / (1.0 - cfg.warmup)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(rest, 1.0)))


def train_loop(model: SeamlessM4Tv2Model, batcher: Batcher, cfg: TrainConfig, progress: bool = True) -> TrainResult:
    """Optimise `model` until `cfg.steps` or `cfg.minutes`; returns the loss history."""
    cores = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    tuner = ThreadTuner((cfg.threads,) if cfg.threads else tuple(sorted({1, cores})))
    torch.manual_seed(cfg.seed)
    model.train()
    head = torch.nn.Linear(model.config.hidden_size, len(batcher.phoneme_id) + 1)
    token_head = torch.nn.Linear(model.config.hidden_size, TOKEN_CTC_UPSAMPLE * (len(batcher.tok) + 1))
    tap = ConformerTap(model)
    steering = SteeringObjective(model, batcher, SteeringConfig(), cfg.seed) if cfg.steer_weight > 0 else None
    evidence = LanguageEvidenceHead(model, len(batcher.languages)) if cfg.evidence_weight > 0 else None
    named = (list(model.named_parameters()) + [(f"ctc_head.{n}", p) for n, p in head.named_parameters()]
             + [(f"ctc_token_head.{n}", p) for n, p in token_head.named_parameters()])
    decay = [p for n, p in named if p.dim() >= 2 and "embed" not in n and "shared" not in n]
    no_decay = [p for n, p in named if not (p.dim() >= 2 and "embed" not in n and "shared" not in n)]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay, "lr_scale": 1.0},
              {"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0}]
    if evidence is not None:
        named.append(("evidence_head.raw", evidence.raw))
        groups.append({"params": [evidence.raw], "weight_decay": 0.0, "lr_scale": EVIDENCE_LR_SCALE})
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98))
    budget = cfg.minutes * 60.0
    history: list[dict] = []
    smooth: dict[str, float] = {}
    start = time.perf_counter()
    step, stopped_by = 0, "steps"
    with AdapterPaddingGuard(model), tqdm(total=cfg.steps, desc="training demo model", unit="step",
                                          disable=not progress) as bar:
        while step < cfg.steps:
            elapsed = time.perf_counter() - start
            if elapsed >= budget:
                stopped_by = "time"
                break
            factor = lr_factor(max(step / cfg.steps, elapsed / budget), cfg)
            threads = tuner.threads_for(step)
            torch.set_num_threads(threads)
            step_start = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * factor * group["lr_scale"]
            losses = {}
            text_only = max(step / cfg.steps, elapsed / budget) < cfg.text_phase
            batches = [("text", batcher.text_batch())]
            if not text_only:
                batches.insert(0, ("speech", batcher.speech_batch()))
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                for name, (inputs, rows) in batches:
                    states, mask = encode(model, inputs)
                    losses[name] = decode_loss(model, states, mask, rows, cfg.label_smoothing)
                    if evidence is not None:
                        losses[f"evidence_{name}"] = evidence.loss(rows.languages)
                    if name == "speech" and cfg.ctc_weight > 0:
                        losses["ctc"] = ctc_loss(head, tap.states, inputs["attention_mask"], rows.ctc_targets,
                                                 rows.ctc_lengths)
                    if name == "speech" and cfg.ctc_token_weight > 0:
                        losses["ctc_tok"] = ctc_loss(token_head, states, mask, rows.token_targets, rows.token_lengths,
                                                     upsample=TOKEN_CTC_UPSAMPLE)
                if steering is not None:
                    losses["steer"] = steering.loss()
            total = (losses["text"] + losses.get("speech", 0.0) + cfg.ctc_weight * losses.get("ctc", 0.0)
                     + cfg.ctc_token_weight * losses.get("ctc_tok", 0.0) + cfg.steer_weight * losses.get("steer", 0.0)
                     + cfg.evidence_weight * (losses.get("evidence_speech", 0.0) + losses.get("evidence_text", 0.0)))
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_([p for _, p in named], cfg.clip_norm)
            optimizer.step()
            tuner.record(step, threads, time.perf_counter() - step_start)
            step += 1
            values = {name: loss.item() for name, loss in losses.items()}
            for name, value in values.items():
                smooth[name] = 0.98 * smooth.get(name, value) + 0.02 * value
            if step % cfg.log_every == 0 or step == 1 or step == cfg.steps:
                history.append({"step": step, "seconds": round(time.perf_counter() - start, 1),
                                "lr": cfg.lr * factor, **{f"loss_{k}": round(v, 4) for k, v in values.items()}})
            bar.set_postfix(refresh=False, lr=f"{cfg.lr * factor:.1e}", **{k: f"{v:.3f}" for k, v in smooth.items()})
            bar.update()
    tap.remove()
    if steering is not None:
        steering.remove()
    if evidence is not None:
        evidence.remove()
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    return TrainResult(step, round(time.perf_counter() - start, 1), stopped_by, n_params, history,
                       thread_steps=dict(tuner.steps))


# ------------------------------------------------------------------------------------------------ entry point


#: The `--quick` smoke run: tiny dims, few sentences and steps; checks the pipeline end to end in about a minute.
QUICK_DATA = DataConfig(n_grammar=30, max_builtin=12, builtin_extra_voices=0, english_voices=1)
QUICK_TRAIN = TrainConfig(steps=60, minutes=3.0, dims=dict(TINY_DIMS), vocab_size=300, speech_batch=8,
                          text_batch=16, warmup=0.1, lr=3e-3)


def train_demo_model(out: Path, train_cfg: TrainConfig = TrainConfig(), data_cfg: DataConfig = DataConfig(),
                     cache_dir: Path | None = None, progress: bool = True,
                     evaluate_limit: int | None = None, init_from: Path | None = None) -> dict:
    """Build data, train, save to `out` (model, tokenizer, processor, training report) and evaluate on held-out
    data; writes `training_report.json` and the model card, and returns the report. With `init_from` (a model
    folder this function wrote) training continues from those weights and that tokenizer, and the report keeps
    the earlier runs' records."""
    t0 = time.perf_counter()
    data = build_data(data_cfg, cache_dir=cache_dir, progress=progress)
    data_seconds = time.perf_counter() - t0
    languages = tuple(data_cfg.languages)
    earlier: list[dict] = []
    if init_from is not None:
        start = load_model(str(init_from), device="cpu")
        if tuple(start.languages) != languages:
            raise CorpusError(f"init_from: {init_from} has languages {start.languages}, the data config {languages}")
        tokenizer, model = start.tokenizer, start.model.float()
        previous = json.loads((Path(init_from) / "training_report.json").read_text())
        earlier = previous.get("earlier_runs", []) + [{"train": previous["train"],
                                                        "train_config": previous["train_config"]}]
    else:
        tokenizer = build_tokenizer(data.train, data.train + data.heldout, languages, train_cfg.vocab_size)
        model = build_model(tokenizer, languages, train_cfg.dims, train_cfg.seed, train_cfg.dropout)
    batcher = Batcher(data, tokenizer, train_cfg)
    result = train_loop(model, batcher, train_cfg, progress=progress)
    result.data_seconds = round(data_seconds, 1)
    out = Path(out)
    save_model(model, tokenizer, out)
    metrics = evaluate_saved(out, data, limit=evaluate_limit, progress=progress)
    report = {
        "train": result.to_dict(),
        "train_config": {k: v for k, v in asdict(train_cfg).items()},
        "data_config": asdict(data_cfg),
        "data": {"train_sentences": len(data.train), "heldout_sentences": len(data.heldout),
                 "train_clips": len(data.clip_indices("train")), "heldout_clips": len(data.clip_indices("heldout")),
                 "heldout_builtin_ids": sorted(s.id for s in data.heldout if not s.id.startswith("g")),
                 "speech_hours": round(float(data.offsets[-1]) * 0.02 / 3600, 2)},
        "metrics": metrics,
        "init_from": None if init_from is None else str(init_from),
        "earlier_runs": earlier,
        "cpu_count": os.cpu_count(),
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    (out / "training_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    write_model_card(out, report)
    return report
