"""Training and evaluation data of the demo model: sentences, the held-out split, voices, speech and features.

Sentences are the built-in corpus plus the project's template grammar. About a tenth of each is held out; the rest
is spoken by many synthetic training voices (random espeak-ng variant, rate and pitch; the built-in sentences also
by the four voices of the built-in corpus, so the demo precompute runs on familiar audio), with light speed
perturbation and noise. Held-out sentences are spoken by one voice no training clip uses. Speech features come
from the same `SeamlessM4TFeatureExtractor` the model is used with, computed once and cached, together with the
espeak-ng phonemes of every sentence (targets of the training-only CTC loss).
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import random
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio
from tqdm.auto import tqdm
from transformers import SeamlessM4TFeatureExtractor

from precompute.corpus.config import default_cache_dir
from neuron_atlas.engine.example import CORPUS_LANGUAGES, CorpusError
from neuron_atlas.engine.sentences import SENTENCES, Sentence
from neuron_atlas.engine.constants import SAMPLE_RATE
from neuron_atlas.engine.tts import ESPEAK_VOICES, ENGINE_VERSION, VOICES, Voice, synthesize_many
from neuron_atlas.demo_trainer.grammar import generate_sentences
from neuron_atlas.demo_trainer.phonemes import phonemize

#: espeak-ng voice variants the training voices are drawn from (plain human-like variants, no robots or whispers).
TRAIN_VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m6", "m7", "m8", "f1", "f2", "f4", "f5", "Alex", "Andy", "Annie", "adam", "anika",
    "aunty", "benjamin", "boris", "david", "ed", "edward", "iven", "john", "linda", "max", "michel", "paul", "rob",
    "robert", "steph", "travis", "victor",
)
#: The held-out speaker: a variant, rate and pitch that no training clip uses.
HELDOUT_VARIANT, HELDOUT_RATE, HELDOUT_PITCH = "f3", 172, 52
#: Training voices speak at a random rate and base pitch in these ranges.
RATE_RANGE, PITCH_RANGE = (140, 200), (30, 70)
#: Speed perturbation factors (>1 is faster) and the SNR range of the added white noise, in dB.
SPEED_FACTORS: tuple[float, ...] = (0.9, 0.95, 1.05, 1.1)
SNR_RANGE_DB = (15.0, 35.0)
#: Bump when feature computation or augmentation changes, so cached features are recomputed.
FEATURES_VERSION = "demo-features-1"


def heldout_voice(lang: str) -> Voice:
    """The held-out evaluation voice for `lang`."""
    return Voice(f"{lang}-heldout-{HELDOUT_VARIANT}", lang, ESPEAK_VOICES[lang], HELDOUT_VARIANT, HELDOUT_RATE,
                 HELDOUT_PITCH)


def random_voice(lang: str, rng: random.Random) -> Voice:
    """A training voice for `lang`: random variant, rate and pitch."""
    variant = rng.choice(TRAIN_VARIANTS)
    rate, pitch = rng.randint(*RATE_RANGE), rng.randint(*PITCH_RANGE)
    return Voice(f"{lang}-{variant}-r{rate}-p{pitch}", lang, ESPEAK_VOICES[lang], variant, rate, pitch)


@dataclass(frozen=True)
class DataConfig:
    """What the demo model is trained and evaluated on."""

    n_grammar: int = 2500
    heldout_fraction: float = 0.1
    seed: int = 0
    voices_per_sentence: int = 1
    english_voices: int = 2
    builtin_extra_voices: int = 2
    speed_prob: float = 0.3
    noise_prob: float = 0.5
    max_builtin: int | None = None
    languages: tuple[str, ...] = CORPUS_LANGUAGES
    workers: int = 2

    def __post_init__(self) -> None:
        if not 0.0 < self.heldout_fraction < 0.5:
            raise CorpusError(f"heldout_fraction must be in (0, 0.5), got {self.heldout_fraction}")
        for name in ("voices_per_sentence", "english_voices", "workers"):
            if getattr(self, name) < 1:
                raise CorpusError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.builtin_extra_voices < 0 or self.n_grammar < 0:
            raise CorpusError("builtin_extra_voices and n_grammar must be >= 0")
        if not 0.0 <= self.speed_prob <= 1.0 or not 0.0 <= self.noise_prob <= 1.0:
            raise CorpusError("speed_prob and noise_prob must be probabilities in [0, 1]")
        if self.max_builtin is not None and self.max_builtin < 2:
            raise CorpusError(f"max_builtin must be >= 2 (one to train on, one to hold out), got {self.max_builtin}")
        unknown = [lang for lang in self.languages if lang not in CORPUS_LANGUAGES]
        if unknown or "eng" not in self.languages:
            raise CorpusError(f"languages must include 'eng' and come from {CORPUS_LANGUAGES}, got {self.languages}")


@dataclass(frozen=True)
class Clip:
    """One utterance: which sentence, language and voice, and the augmentation applied before features."""

    sentence_id: str
    lang: str
    voice: Voice
    split: str
    speed: float = 1.0
    snr_db: float | None = None


@dataclass
class DemoData:
    """Sentences (train / held-out), clips, and their features: clip `i` is `features[offsets[i]:offsets[i+1]]`;
    `phonemes[(sentence id, language)]` is what espeak-ng says for the sentence."""

    config: DataConfig
    train: list[Sentence]
    heldout: list[Sentence]
    clips: list[Clip]
    features: np.ndarray
    offsets: np.ndarray
    phonemes: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    by_id: dict[str, Sentence] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_id = {s.id: s for s in self.train + self.heldout}

    def clip_features(self, i: int) -> np.ndarray:
        """float32 [frames, 160] input features of clip `i`."""
        return self.features[self.offsets[i]: self.offsets[i + 1]].astype(np.float32)

    def clip_indices(self, split: str) -> list[int]:
        return [i for i, c in enumerate(self.clips) if c.split == split]


def split_sentences(sentences: list[Sentence], fraction: float, seed: int) -> tuple[list[Sentence], list[Sentence]]:
    """Hold out `fraction` of the built-in and of the grammar sentences (at least one of each), seeded."""
    rng = random.Random(f"split-{seed}")
    train: list[Sentence] = []
    heldout: list[Sentence] = []
    for group in ([s for s in sentences if not s.id.startswith("g")], [s for s in sentences if s.id.startswith("g")]):
        if not group:
            continue
        k = max(1, round(len(group) * fraction))
        chosen = set(rng.sample(range(len(group)), k))
        heldout += [s for i, s in enumerate(group) if i in chosen]
        train += [s for i, s in enumerate(group) if i not in chosen]
    return train, heldout


def select_sentences(cfg: DataConfig) -> tuple[list[Sentence], list[Sentence]]:
    """All sentences of a config (built-in first, then grammar), split into train and held-out."""
    builtin = list(SENTENCES[: cfg.max_builtin] if cfg.max_builtin else SENTENCES)
    grammar = generate_sentences(cfg.n_grammar, seed=cfg.seed) if cfg.n_grammar else []
    return split_sentences(builtin + grammar, cfg.heldout_fraction, cfg.seed)


def plan_clips(cfg: DataConfig, train: list[Sentence], heldout: list[Sentence]) -> list[Clip]:
    """Every clip to synthesise: voices and augmentation drawn from a seeded generator."""
    rng = random.Random(f"clips-{cfg.seed}")
    clips: list[Clip] = []

    def augmented(sentence: Sentence, lang: str, voice: Voice) -> Clip:
        speed = rng.choice(SPEED_FACTORS) if rng.random() < cfg.speed_prob else 1.0
        snr = round(rng.uniform(*SNR_RANGE_DB), 2) if rng.random() < cfg.noise_prob else None
        return Clip(sentence.id, lang, voice, "train", speed, snr)

    for sentence in train:
        builtin = not sentence.id.startswith("g")
        for lang in cfg.languages:
            if builtin:
                clips += [Clip(sentence.id, lang, v, "train") for v in VOICES[lang]]
                n_random = cfg.builtin_extra_voices
            else:
                n_random = cfg.english_voices if lang == "eng" else cfg.voices_per_sentence
            clips += [augmented(sentence, lang, random_voice(lang, rng)) for _ in range(n_random)]
    clips += [Clip(s.id, lang, heldout_voice(lang), "heldout") for s in heldout for lang in cfg.languages]
    return clips


# -------------------------------------------------------------------------------------------------- features


@lru_cache(maxsize=8)
def _speed_resampler(factor: float) -> torchaudio.transforms.Resample:
    return torchaudio.transforms.Resample(round(SAMPLE_RATE * factor), SAMPLE_RATE)


@lru_cache(maxsize=1)
def _extractor() -> SeamlessM4TFeatureExtractor:
    return SeamlessM4TFeatureExtractor()


def augment(audio: np.ndarray, speed: float, snr_db: float | None, seed: int) -> np.ndarray:
    """Speed-perturb (resampling, >1 is faster) and add white noise at `snr_db`; float32 16 kHz in and out."""
    x = np.asarray(audio, dtype=np.float32)
    if speed != 1.0:
        with torch.inference_mode():
            x = _speed_resampler(speed)(torch.from_numpy(x)).numpy()
    if snr_db is not None:
        power = float(np.mean(x**2))
        noise = np.random.default_rng(seed).normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), x.shape[0])
        x = (x + noise).astype(np.float32)
    return x


def clip_features(path: Path, clip: Clip, seed: int) -> np.ndarray:
    """float16 [frames, 160] features of one clip: audio from the cache, augmented, through the feature extractor."""
    audio, rate = sf.read(str(path), dtype="float32")
    if rate != SAMPLE_RATE:
        raise CorpusError(f"{path}: expected {SAMPLE_RATE} Hz audio, got {rate}")
    audio = augment(audio, clip.speed, clip.snr_db, seed)
    feats = _extractor()(audio, sampling_rate=SAMPLE_RATE, return_tensors="np")["input_features"][0]
    return feats.astype(np.float16)


def _features_chunk(jobs: list[tuple[str, Clip, int]]) -> list[np.ndarray]:
    torch.set_num_threads(1)
    return [clip_features(Path(path), clip, seed) for path, clip, seed in jobs]


def _clip_seed(clip: Clip) -> int:
    digest = hashlib.sha256(json.dumps(asdict(clip), sort_keys=True, default=str).encode()).hexdigest()
    return int(digest[:8], 16)


def compute_features(paths: list[Path], clips: list[Clip], workers: int, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """Features of every clip, concatenated along frames, and the offsets that delimit them."""
    jobs = [(str(p), c, _clip_seed(c)) for p, c in zip(paths, clips)]
    chunk = 64
    batches = [jobs[i: i + chunk] for i in range(0, len(jobs), chunk)]
    out: list[np.ndarray] = []
    with tqdm(total=len(jobs), desc="speech features", unit="clip", disable=not progress) as bar:
        if workers <= 1 or len(batches) <= 1:
            for b in batches:
                out += _features_chunk(b)
                bar.update(len(b))
        else:
            context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                for b, feats in zip(batches, pool.map(_features_chunk, batches)):
                    out += feats
                    bar.update(len(b))
    lengths = np.array([f.shape[0] for f in out], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return np.concatenate(out, axis=0), offsets


def _features_key(clips: list[Clip], sentences: dict[str, Sentence]) -> str:
    h = hashlib.sha256()
    h.update(f"{FEATURES_VERSION}\x00{ENGINE_VERSION}\x00".encode())
    h.update(json.dumps(_extractor().to_dict(), sort_keys=True, default=str).encode())
    for c in clips:
        h.update(json.dumps([asdict(c), sentences[c.sentence_id].speech_text(c.lang)], sort_keys=True,
                            ensure_ascii=False, default=str).encode())
    return h.hexdigest()[:16]


def _sentence_phonemes(cache_file: Path, sentences: list[Sentence], languages: tuple[str, ...]
                       ) -> dict[tuple[str, str], list[str]]:
    """Phonemes of every sentence in every language, cached as JSON beside the features."""
    if cache_file.is_file():
        stored = json.loads(cache_file.read_text())
        return {(sid, lang): phones for sid, lang, phones in stored}
    keys = [(s.id, lang) for s in sentences for lang in languages]
    by_id = {s.id: s for s in sentences}
    phones = phonemize([(by_id[sid].speech_text(lang), lang) for sid, lang in keys])
    tmp = cache_file.with_name(f".{cache_file.name}.tmp")
    tmp.write_text(json.dumps([[sid, lang, p] for (sid, lang), p in zip(keys, phones)], ensure_ascii=False))
    tmp.replace(cache_file)
    return dict(zip(keys, phones))


def build_data(cfg: DataConfig, cache_dir: Path | None = None, progress: bool = True) -> DemoData:
    """Sentences, split, clips (synthesised through the TTS cache), their features and the sentences' phonemes
    (both cached by content)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    train, heldout = select_sentences(cfg)
    sentences = {s.id: s for s in train + heldout}
    clips = plan_clips(cfg, train, heldout)
    key = _features_key(clips, sentences)
    feature_file = cache / "demo-model" / f"features-{key}.npz"
    feature_file.parent.mkdir(parents=True, exist_ok=True)
    phonemes = _sentence_phonemes(cache / "demo-model" / f"phonemes-{key}.json", train + heldout,
                                  tuple(cfg.languages))
    if feature_file.is_file():
        with np.load(feature_file) as stored:
            return DemoData(cfg, train, heldout, clips, stored["features"], stored["offsets"], phonemes)
    items = [(sentences[c.sentence_id].speech_text(c.lang), c.voice) for c in clips]
    paths = synthesize_many(items, cache / "tts", workers=cfg.workers, progress=progress)
    features, offsets = compute_features(paths, clips, cfg.workers, progress)
    tmp = feature_file.with_name(f".{feature_file.stem}.tmp.npz")
    np.savez(tmp, features=features, offsets=offsets)
    tmp.replace(feature_file)
    return DemoData(cfg, train, heldout, clips, features, offsets, phonemes)
