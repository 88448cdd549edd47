"""Decode, validate, resample and encode speech audio for the corpus reader, the recording job and uploads.

Everything leaves this module as 16 kHz mono float32 in [-1, 1], the input format of SeamlessM4T v2's speech
encoder. Size and duration limits are enforced before the samples are decoded, so oversized uploads are cheap
to refuse.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as taf
from scipy.signal import resample_poly

from neuron_atlas.engine.constants import SAMPLE_RATE

#: libsndfile container formats accepted as input (WAV and its 64-bit variants, FLAC, OGG Vorbis/Opus, MP3).
ACCEPTED_FORMATS: frozenset[str] = frozenset({"WAV", "WAVEX", "RF64", "W64", "FLAC", "OGG", "MP3"})

#: Sample rates outside this range are refused as implausible (a crafted header could claim anything).
MIN_RATE = 1000
MAX_RATE = 768000

#: A signal whose peak stays below this level (about -80 dBFS, three int16 steps) counts as silent.
SILENCE_PEAK = 1e-4

#: Above this product of the reduced rate ratio torchaudio's sinc kernel grows too large; use polyphase instead.
_MAX_KERNEL_PRODUCT = 1_000_000

_NOT_AUDIO = "could not decode audio: not a WAV/FLAC/OGG/MP3 file"


class AudioError(ValueError):
    """Audio is unusable (empty, undecodable, too long, too large, silent or not finite); the message says why."""


def _prefix(label: str | None) -> str:
    return f"{label}: " if label else ""


def _check_limit(name: str, value: float | None) -> None:
    valid = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if value is not None and not valid:
        raise ValueError(f"{name} must be a positive number or None, got {value!r}")


def _libsndfile_message(exc: Exception) -> str:
    return str(getattr(exc, "error_string", None) or exc).strip()


def _decode(source: str | io.BytesIO, label: str | None, max_seconds: float | None, allow_silent: bool) -> np.ndarray:
    """Open `source` with libsndfile, check header limits, read, validate, downmix and resample to 16 kHz."""
    pre = _prefix(label)
    try:
        handle = sf.SoundFile(source)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"{pre}{_NOT_AUDIO} ({_libsndfile_message(exc)})") from exc
    with handle as f:
        if f.format not in ACCEPTED_FORMATS:
            raise AudioError(
                f"{pre}unsupported audio format {f.format}; accepted: WAV, FLAC, OGG (Vorbis/Opus), MP3"
            )
        rate, frames, channels = int(f.samplerate), int(f.frames), int(f.channels)
        if channels < 1:
            raise AudioError(f"{pre}audio declares {channels} channels")
        if not MIN_RATE <= rate <= MAX_RATE:
            raise AudioError(f"{pre}sample rate {rate} Hz is outside the supported {MIN_RATE}-{MAX_RATE} Hz")
        if frames <= 0:
            raise AudioError(f"{pre}audio has no samples")
        if max_seconds is not None and frames > max_seconds * rate:
            raise AudioError(f"{pre}audio is {frames / rate:.1f} s long; the limit is {max_seconds:g} s")
        to_read = -1 if max_seconds is None else min(frames, math.floor(max_seconds * rate) + 1)
        try:
            data = f.read(frames=to_read, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"{pre}could not decode audio: {_libsndfile_message(exc)}") from exc
    if data.shape[0] == 0:
        raise AudioError(f"{pre}audio has no samples")
    if max_seconds is not None and data.shape[0] > max_seconds * rate:
        raise AudioError(f"{pre}audio is longer than the limit of {max_seconds:g} s")
    if not np.isfinite(data).all():
        raise AudioError(f"{pre}audio contains NaN or infinite samples")
    mono = data.mean(axis=1, dtype=np.float32)
    peak = float(np.max(np.abs(mono)))
    if not allow_silent and peak < SILENCE_PEAK:
        level = "-inf" if peak == 0.0 else f"{20 * math.log10(peak):.0f}"
        raise AudioError(f"{pre}audio is silent (peak {level} dBFS after downmix to mono)")
    out = resample(mono, rate, SAMPLE_RATE)
    np.clip(out, -1.0, 1.0, out=out)
    return out


def decode_audio(
    data: bytes,
    *,
    max_bytes: int | None = None,
    max_seconds: float | None = None,
    filename: str | None = None,
    allow_silent: bool = False,
) -> np.ndarray:
    """Decode WAV/FLAC/OGG/MP3 bytes to 16 kHz mono float32 in [-1, 1], refusing bad or oversized input.

    The byte limit is checked before decoding and the duration limit from the header before reading samples;
    `filename` (optional) only names the upload in error messages.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"decode_audio expects bytes, got {type(data).__name__}")
    _check_limit("max_bytes", max_bytes)
    _check_limit("max_seconds", max_seconds)
    subject = f"upload {filename!r}" if filename else "upload"
    size = len(data) if not isinstance(data, memoryview) else data.nbytes
    if size == 0:
        raise AudioError(f"{subject} is empty")
    if max_bytes is not None and size > max_bytes:
        raise AudioError(f"{subject} is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:g} MB")
    return _decode(io.BytesIO(bytes(data)), filename, max_seconds, allow_silent)


def load_audio_file(path: Path, max_seconds: float | None = None, *, allow_silent: bool = False) -> np.ndarray:
    """Read an audio file from disk as 16 kHz mono float32 in [-1, 1], with the same checks as `decode_audio`."""
    _check_limit("max_seconds", max_seconds)
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such audio file")
    if not path.is_file():
        raise AudioError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: audio file is empty")
    return _decode(str(path), str(path), max_seconds, allow_silent)


def _samples(x: np.ndarray) -> np.ndarray:
    """float32 samples, 1-D or (frames, channels), non-empty and finite (AudioError otherwise)."""
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim not in (1, 2):
        raise AudioError(f"audio must be 1-D or (frames, channels), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise AudioError("audio has no samples")
    if not np.isfinite(arr).all():
        raise AudioError("audio contains NaN or infinite samples")
    return arr


def resample(x: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Resample float audio (time on axis 0; 1-D or frames x channels) from `rate` to `target` Hz as float32.

    Uses torchaudio's windowed-sinc resampler; for awkward rate ratios whose sinc kernel would be huge
    (e.g. 44101 -> 16000) it falls back to scipy's polyphase filter.
    """
    for name, value in (("rate", rate), ("target", target)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{name} must be a positive integer sample rate, got {value!r}")
    arr = _samples(x)
    rate, target = int(rate), int(target)
    if rate == target:
        return arr.copy()
    g = math.gcd(rate, target)
    up, down = target // g, rate // g
    if up * down > _MAX_KERNEL_PRODUCT:
        return resample_poly(arr, up, down, axis=0).astype(np.float32)
    wave = torch.from_numpy(np.ascontiguousarray(arr.T))
    out = taf.resample(wave, rate, target)
    return np.ascontiguousarray(out.numpy().T)


def encode_wav(x: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    """Encode float audio (1-D or frames x channels, clipped to [-1, 1]) as 16-bit PCM WAV bytes."""
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise ValueError(f"rate must be a positive integer sample rate, got {rate!r}")
    arr = _samples(x)
    buf = io.BytesIO()
    sf.write(buf, np.clip(arr, -1.0, 1.0), int(rate), format="WAV", subtype="PCM_16")
    return buf.getvalue()


def duration_seconds(x: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """Length of audio `x` (time on axis 0) in seconds at sample rate `rate`."""
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate!r}")
    return float(np.shape(x)[0]) / float(rate)
