"""Offline speech synthesis with the espeak-ng engine bundled in the `espeakng-loader` wheel.

The shared library is driven through ctypes in synchronous mode: a synth callback collects the int16 samples in
memory (22050 Hz), which are then resampled to 16 kHz mono float32, trimmed of leading/trailing silence,
peak-normalised to 0.9 and lightly dithered (Gaussian, seeded from the cache key) so there are no long runs of
exact zeros. The engine is not thread-safe, so `synthesize_many` parallelises over processes, each initialising
espeak once (forked on Linux, spawned elsewhere).

Results are cached as 16 kHz PCM_16 WAV files named by the sha256 of the text, the voice parameters, the engine
version and the pipeline version, so changing any of them re-synthesises. espeak's own output varies slightly
from call to call (random flutter and state carried between utterances), so the cache, not re-synthesis, is
what keeps a corpus fixed.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import multiprocessing
import os
import sys
import threading
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import espeakng_loader
import numpy as np
import soundfile as sf
import torch
import torchaudio
from tqdm.auto import tqdm

from neuron_atlas.engine.constants import SAMPLE_RATE
from neuron_atlas.engine.example import CORPUS_LANGUAGES, CorpusError

#: Bump when the post-processing below changes, so cached files are re-synthesised.
PIPELINE_VERSION = "tts-1"
#: Peak amplitude after normalisation.
PEAK = 0.9
#: Standard deviation of the Gaussian dither added after normalisation.
DITHER = 1e-4
#: Samples below this fraction of the peak count as silence when trimming the ends.
TRIM_THRESHOLD = 0.01
#: Silence kept before the first and after the last loud sample, in seconds.
TRIM_MARGIN_S = 0.02

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3
_EE_OK = 0

_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1


class _Event(ctypes.Structure):
    """espeak_EVENT (speak_lib.h): what the synth callback reports besides samples; word events carry their start."""

    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


def _load_library() -> ctypes.CDLL:
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    lib.espeak_Synchronize.restype = ctypes.c_int
    return lib


_LIB = _load_library()

#: Engine name and version as reported by the bundled library (part of every cache key).
ENGINE_VERSION: str = f"espeak-ng {_LIB.espeak_Info(None).decode()}"


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: espeak language voice + variant, speaking rate (words/min) and base pitch (0-99)."""

    name: str
    lang: str
    espeak: str
    variant: str
    rate: int
    pitch: int

    def __post_init__(self) -> None:
        if not 80 <= self.rate <= 450:
            raise CorpusError(f"voice {self.name!r}: rate {self.rate} outside espeak's 80-450 words/min")
        if not 0 <= self.pitch <= 99:
            raise CorpusError(f"voice {self.name!r}: pitch {self.pitch} outside 0-99")


#: Corpus language -> espeak-ng voice (checked against the bundled data in the tests).
ESPEAK_VOICES: dict[str, str] = {"eng": "en-us", "deu": "de", "spa": "es", "fra": "fr", "jpn": "ja", "cmn": "cmn"}

#: (variant, rate, pitch) of the voices every language gets, in registry order; index 0 is the default voice.
_VARIANTS: tuple[tuple[str, int, int], ...] = (("m1", 165, 45), ("f2", 155, 60), ("m3", 180, 38), ("f4", 170, 55))

#: Language -> its voices; `VOICES[lang][0]` is the default.
VOICES: dict[str, list[Voice]] = {
    lang: [Voice(f"{lang}-{variant}", lang, ESPEAK_VOICES[lang], variant, rate, pitch)
           for variant, rate, pitch in _VARIANTS]
    for lang in CORPUS_LANGUAGES
}


class _Engine:
    """An initialised espeak-ng instance in this process; every call is serialised by a lock."""

    def __init__(self) -> None:
        rate = _LIB.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(),
                                      _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed with {rate} (data at {espeakng_loader.get_data_path()})")
        self.sample_rate = rate
        self._chunks: list[np.ndarray] = []
        self._words: list[tuple[int, int, int]] = []
        self._callback = _CALLBACK(self._collect)
        _LIB.espeak_SetSynthCallback(self._callback)
        self.lock = threading.RLock()

    def _collect(self, wav: Any, count: int, events: Any) -> int:
        if wav and count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        i = 0
        while events and events[i].type != _EVENT_LIST_TERMINATED:
            if events[i].type == _EVENT_WORD:
                self._words.append((events[i].text_position, events[i].length, events[i].audio_position))
            i += 1
        return 0

    def raw_with_words(self, text: str, voice: Voice) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
        """`raw`, plus espeak's word events: (1-based character position in `text`, length in characters, start in
        ms) of each word espeak speaks as a word (it may fold a short function word into its neighbour)."""
        with self.lock:
            self._words = []
            samples = self.raw(text, voice)
            words, self._words = self._words, []
        return samples, words

    def raw(self, text: str, voice: Voice) -> np.ndarray:
        """Synthesise `text` with `voice`; int16 samples at the engine's rate."""
        with self.lock:
            self._words = []
            self._chunks = []
            if _LIB.espeak_SetVoiceByName(f"{voice.espeak}+{voice.variant}".encode()) != _EE_OK:
                raise CorpusError(f"voice {voice.name!r}: espeak-ng has no voice {voice.espeak}+{voice.variant}")
            _LIB.espeak_SetParameter(_PARAM_RATE, voice.rate, 0)
            _LIB.espeak_SetParameter(_PARAM_PITCH, voice.pitch, 0)
            data = text.encode("utf-8") + b"\0"
            status = _LIB.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if status != _EE_OK:
                raise CorpusError(f"espeak_Synth failed ({status}) for {text!r} with voice {voice.name!r}")
            _LIB.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


_ENGINE: _Engine | None = None
_ENGINE_LOCK = threading.Lock()


def _engine() -> _Engine:
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = _Engine()
        return _ENGINE


def cache_key(text: str, voice: Voice) -> str:
    """sha256 hex digest of everything that determines the audio: text, voice, engine and pipeline version."""
    payload = json.dumps({"text": text, "voice": asdict(voice), "engine": ENGINE_VERSION,
                          "pipeline": PIPELINE_VERSION}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def cache_path(cache_dir: Path, text: str, voice: Voice) -> Path:
    """Where the cached WAV for (text, voice) lives under `cache_dir`."""
    return Path(cache_dir) / f"{cache_key(text, voice)}.wav"


@lru_cache(maxsize=8)
def _resampler(orig_rate: int) -> torchaudio.transforms.Resample:
    return torchaudio.transforms.Resample(orig_rate, SAMPLE_RATE)


def resample(audio: np.ndarray, orig_rate: int) -> np.ndarray:
    """Mono float audio at `orig_rate` -> float32 at 16 kHz with torchaudio's sinc resampler.

    Same algorithm as torchaudio.functional.resample, but the kernel is built once per rate; rebuilding it per
    clip was the dominant cost (and 10x slower with 2 torch threads on a 2-core machine).
    """
    audio = np.asarray(audio, dtype=np.float32)
    if orig_rate == SAMPLE_RATE:
        return audio
    with torch.inference_mode():
        return _resampler(int(orig_rate))(torch.from_numpy(audio)).numpy()


def _trimmed(samples: np.ndarray, sample_rate: int, seed: int) -> tuple[np.ndarray, int]:
    """`postprocess`, and the index of the first kept 16 kHz sample of the untrimmed audio."""
    x = resample(np.asarray(samples, dtype=np.float32) / 32768.0, sample_rate)
    level = np.abs(x)
    peak = float(level.max(initial=0.0))
    if peak == 0.0:
        raise CorpusError("synthesis produced only silence")
    loud = np.flatnonzero(level > TRIM_THRESHOLD * peak)
    margin = int(TRIM_MARGIN_S * SAMPLE_RATE)
    start = max(loud[0] - margin, 0)
    x = x[start: loud[-1] + margin + 1]
    x = x * (PEAK / peak) + np.random.default_rng(seed).normal(0.0, DITHER, x.shape[0])
    return x.astype(np.float32), int(start)


def postprocess(samples: np.ndarray, sample_rate: int, seed: int) -> np.ndarray:
    """int16 samples at `sample_rate` -> trimmed, peak-normalised, dithered 16 kHz float32."""
    return _trimmed(samples, sample_rate, seed)[0]


def synthesize(text: str, voice: Voice) -> np.ndarray:
    """Speak `text` with `voice`: 16 kHz mono float32, trimmed, peaking at ~0.9, with seeded dither."""
    if not text.strip():
        raise CorpusError(f"cannot synthesise empty text with voice {voice.name!r}")
    engine = _engine()
    raw = engine.raw(text, voice)
    if raw.size == 0:
        raise CorpusError(f"espeak-ng produced no audio for {text!r} with voice {voice.name!r}")
    try:
        return postprocess(raw, engine.sample_rate, int(cache_key(text, voice)[:16], 16))
    except CorpusError as exc:
        raise CorpusError(f"{exc}: {text!r} with voice {voice.name!r}") from None


@dataclass(frozen=True)
class WordTiming:
    """One spoken word: its text, and where espeak-ng spoke it in the synthesised audio (seconds; the end is the
    next word's start, or the end of the audio for the last word)."""

    word: str
    start_s: float
    end_s: float


def synthesize_with_words(text: str, voice: Voice) -> tuple[np.ndarray, list[WordTiming]]:
    """`synthesize`, plus each word's timing from espeak-ng's word events, shifted by the trimmed leading silence.

    The audio is a fresh synthesis (espeak varies slightly between calls), so use it together with these timings."""
    if not text.strip():
        raise CorpusError(f"cannot synthesise empty text with voice {voice.name!r}")
    engine = _engine()
    raw, events = engine.raw_with_words(text, voice)
    if raw.size == 0:
        raise CorpusError(f"espeak-ng produced no audio for {text!r} with voice {voice.name!r}")
    wave, start = _trimmed(raw, engine.sample_rate, int(cache_key(text, voice)[:16], 16))
    duration = len(wave) / SAMPLE_RATE
    starts = [min(max(ms / 1000.0 - start / SAMPLE_RATE, 0.0), duration) for _, _, ms in events]
    words = [text[pos - 1: pos - 1 + length] for pos, length, _ in events]
    ends = starts[1:] + [duration]
    return wave, [WordTiming(w, round(a, 4), round(b, 4)) for w, a, b in zip(words, starts, ends)]


def write_wav_atomic(path: Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write a PCM_16 WAV via a temporary file and os.replace, so readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        sf.write(tmp, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _synthesize_to(text: str, voice: Voice, path: str) -> str:
    write_wav_atomic(Path(path), synthesize(text, voice))
    return path


def _init_worker() -> None:
    """Pool initializer: one torch thread (as in DataLoader workers) and a fresh engine and lock for this process."""
    global _ENGINE, _ENGINE_LOCK
    torch.set_num_threads(1)
    _ENGINE_LOCK = threading.Lock()
    with _ENGINE_LOCK:
        _ENGINE = _Engine()


def _pool_context() -> multiprocessing.context.BaseContext:
    """fork on Linux (instant start, no `__main__` guard needed, workers re-initialise espeak); spawn elsewhere."""
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def synthesize_many(items: Sequence[tuple[str, Voice]], cache_dir: Path, workers: int = 2,
                    progress: bool = True) -> list[Path]:
    """Make sure every (text, voice) has a cached WAV under `cache_dir`; returns their paths in input order.

    Missing files are synthesised by `workers` processes (espeak is not thread-safe); with `workers` <= 1, or a
    single missing file, synthesis runs in this process.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = [cache_path(cache_dir, text, voice) for text, voice in items]
    missing: dict[Path, tuple[str, Voice]] = {}
    for (text, voice), path in zip(items, paths):
        if not path.exists():
            missing.setdefault(path, (text, voice))
    unique = len(set(paths))
    with tqdm(total=unique, initial=unique - len(missing), desc="synthesising speech", unit="clip",
              disable=not progress) as bar:
        if workers <= 1 or len(missing) <= 1:
            for path, (text, voice) in missing.items():
                _synthesize_to(text, voice, str(path))
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(missing)), mp_context=_pool_context(),
                                     initializer=_init_worker) as pool:
                futures = [pool.submit(_synthesize_to, text, voice, str(path))
                           for path, (text, voice) in missing.items()]
                for future in as_completed(futures):
                    error = future.exception()
                    if error is not None:
                        pool.shutdown(wait=True, cancel_futures=True)
                        raise error
                    bar.update()
    return paths
