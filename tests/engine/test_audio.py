"""Tests for neuron_atlas.engine.audio: decoding of every accepted format, limits enforced before decoding, bad input."""
from __future__ import annotations

import io
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from neuron_atlas.engine import audio
from neuron_atlas.engine.constants import SAMPLE_RATE
from neuron_atlas.engine.audio import (
    AudioError,
    decode_audio,
    duration_seconds,
    encode_wav,
    load_audio_file,
    resample,
)


def sine(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def to_bytes(x: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def peak_frequency(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def wav_header(rate: int, channels: int, n_frames: int) -> bytes:
    """A canonical 44-byte PCM_16 WAV header, written by hand as an independent reference for the limit tests."""
    data_size = n_frames * channels * 2
    return (
        b"RIFF" + struct.pack("<I", 36 + data_size) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * 2, channels * 2, 16)
        + b"data" + struct.pack("<I", data_size)
    )


@pytest.fixture(scope="module")
def one_hour_wav() -> bytes:
    """A real one-hour 8 kHz mono int16 WAV (57.6 MB) with a quiet tone in its first second."""
    n = 8000 * 3600
    pcm = np.zeros(n, dtype="<i2")
    pcm[:8000] = (sine(440, 8000, 1.0) * 32767).astype("<i2")
    return wav_header(8000, 1, n) + pcm.tobytes()


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_float_wav_any_rate_becomes_16k_sine(rate: int) -> None:
    data = to_bytes(sine(440, rate, 2.0), rate, "WAV", "FLOAT")
    out = decode_audio(data)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - 2 * SAMPLE_RATE) <= 1
    assert abs(peak_frequency(out, SAMPLE_RATE) - 440) < 1.0
    reference = sine(440, SAMPLE_RATE, 2.0)
    interior = slice(800, len(reference) - 800)
    np.testing.assert_allclose(out[interior], reference[interior], atol=1e-2)


def test_int16_wav_at_16k_is_sample_exact() -> None:
    x = sine(440, SAMPLE_RATE, 1.0)
    pcm = np.round(x * 32767).astype(np.int16)
    out = decode_audio(to_bytes(pcm, SAMPLE_RATE, "WAV", "PCM_16"))
    np.testing.assert_allclose(out, pcm.astype(np.float32) / 32768, atol=1e-7)


def test_stereo_is_downmixed_by_mean() -> None:
    left, right = sine(440, SAMPLE_RATE, 1.0, 0.6), sine(1000, SAMPLE_RATE, 1.0, 0.2)
    out = decode_audio(to_bytes(np.stack([left, right], axis=1), SAMPLE_RATE, "WAV", "FLOAT"))
    np.testing.assert_allclose(out, (left + right) / 2, atol=1e-6)


def test_multichannel_44k_downmix_and_resample() -> None:
    chans = np.stack([sine(440, 44100, 1.0, 0.3)] * 4, axis=1)
    out = decode_audio(to_bytes(chans, 44100, "WAV", "PCM_16"))
    assert abs(len(out) - SAMPLE_RATE) <= 1
    assert abs(peak_frequency(out, SAMPLE_RATE) - 440) < 1.5
    assert 0.25 < np.abs(out).max() < 0.35


@pytest.mark.parametrize(
    "fmt, subtype, rate",
    [("FLAC", "PCM_16", 44100), ("OGG", "VORBIS", 22050), ("OGG", "OPUS", 48000), ("MP3", "MPEG_LAYER_III", 44100)],
)
def test_compressed_formats(fmt: str, subtype: str, rate: int) -> None:
    data = to_bytes(sine(440, rate, 2.0), rate, fmt, subtype)
    out = decode_audio(data, filename=f"clip.{fmt.lower()}")
    assert out.dtype == np.float32 and out.ndim == 1
    # lossy codecs may add a few ms of encoder delay or padding
    assert abs(duration_seconds(out) - 2.0) < 0.1
    assert abs(peak_frequency(out, SAMPLE_RATE) - 440) < 1.0
    assert np.abs(out).max() <= 1.0


def test_output_clipped_to_unit_range() -> None:
    loud = 3.0 * np.ones(1000, dtype=np.float32)
    out = decode_audio(to_bytes(loud, SAMPLE_RATE, "WAV", "FLOAT"))
    assert out.max() == pytest.approx(1.0)


def test_odd_rate_uses_fallback_and_keeps_frequency() -> None:
    out = decode_audio(to_bytes(sine(440, 44101, 2.0), 44101, "WAV", "FLOAT"))
    assert abs(len(out) - 2 * SAMPLE_RATE) <= 2
    assert abs(peak_frequency(out, SAMPLE_RATE) - 440) < 1.0


def test_byte_limit_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("decoder must not be reached")

    monkeypatch.setattr(audio.sf, "SoundFile", fail)
    with pytest.raises(AudioError, match=r"upload is 80\.0 MB; the limit is 10 MB"):
        decode_audio(b"\0" * 80_000_000, max_bytes=10_000_000)


def test_duration_limit_from_header_without_reading(one_hour_wav: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("samples must not be read")

    monkeypatch.setattr(sf.SoundFile, "read", fail)
    start = time.perf_counter()
    with pytest.raises(AudioError, match=r"audio is 3600\.0 s long; the limit is 30 s"):
        decode_audio(one_hour_wav, max_seconds=30)
    assert time.perf_counter() - start < 2.0


def test_duration_limit_on_file(one_hour_wav: bytes, tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    path.write_bytes(one_hour_wav)
    with pytest.raises(AudioError, match=r"long\.wav: audio is 3600\.0 s long; the limit is 30 s"):
        load_audio_file(path, max_seconds=30)


def test_within_limits_accepted() -> None:
    data = to_bytes(sine(440, 8000, 3.0), 8000, "WAV", "PCM_16")
    out = decode_audio(data, max_bytes=len(data), max_seconds=3.0)
    assert abs(len(out) - 3 * SAMPLE_RATE) <= 1


@pytest.mark.parametrize(
    "payload",
    [
        b"This is a plain text file, not audio.\n" * 20,
        b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(200),
        np.random.default_rng(0).bytes(4096),
        b"RIFF\x24\x00\x00\x00WAVEfmt ",
    ],
    ids=["text", "png", "random", "truncated-wav"],
)
def test_undecodable_bytes(payload: bytes) -> None:
    with pytest.raises(AudioError, match="could not decode audio: not a WAV/FLAC/OGG/MP3 file"):
        decode_audio(payload)


def test_empty_upload() -> None:
    with pytest.raises(AudioError, match="^upload is empty$"):
        decode_audio(b"")
    with pytest.raises(AudioError, match="upload 'a.wav' is empty"):
        decode_audio(b"", filename="a.wav")


def test_zero_length_audio() -> None:
    with pytest.raises(AudioError, match="audio has no samples"):
        decode_audio(wav_header(16000, 1, 0))


def test_nan_samples() -> None:
    x = sine(440, SAMPLE_RATE, 0.5)
    x[100] = np.nan
    with pytest.raises(AudioError, match="NaN or infinite"):
        decode_audio(to_bytes(x, SAMPLE_RATE, "WAV", "FLOAT"))
    x[100] = np.inf
    with pytest.raises(AudioError, match="NaN or infinite"):
        decode_audio(to_bytes(x, SAMPLE_RATE, "WAV", "FLOAT"))


def test_silence_refused_unless_allowed() -> None:
    data = to_bytes(np.zeros(8000, dtype=np.float32), 8000, "WAV", "PCM_16")
    with pytest.raises(AudioError, match="audio is silent"):
        decode_audio(data)
    out = decode_audio(data, allow_silent=True)
    assert len(out) == SAMPLE_RATE and not out.any()


def test_antiphase_stereo_is_silent_after_downmix() -> None:
    x = sine(440, SAMPLE_RATE, 0.5)
    with pytest.raises(AudioError, match="after downmix"):
        decode_audio(to_bytes(np.stack([x, -x], axis=1), SAMPLE_RATE, "WAV", "FLOAT"))


def test_unsupported_container_refused() -> None:
    data = to_bytes(sine(440, 16000, 0.5), 16000, "AIFF", "PCM_16")
    with pytest.raises(AudioError, match="unsupported audio format AIFF"):
        decode_audio(data)


def test_bad_limit_arguments() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        decode_audio(b"x", max_bytes=0)
    with pytest.raises(ValueError, match="max_seconds"):
        decode_audio(b"x", max_seconds=float("nan"))
    with pytest.raises(TypeError, match="bytes"):
        decode_audio("not bytes")  # type: ignore[arg-type]


def test_load_audio_file_ok_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.flac"
    sf.write(good, sine(440, 48000, 1.0), 48000, format="FLAC")
    out = load_audio_file(good)
    assert abs(len(out) - SAMPLE_RATE) <= 1
    with pytest.raises(AudioError, match="missing.wav: no such audio file"):
        load_audio_file(tmp_path / "missing.wav")
    bad = tmp_path / "notes.wav"
    bad.write_text("hello")
    with pytest.raises(AudioError, match="notes.wav: could not decode audio"):
        load_audio_file(bad)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="empty.wav: audio file is empty"):
        load_audio_file(empty)
    with pytest.raises(AudioError, match="not a regular file"):
        load_audio_file(tmp_path)


def test_encode_wav_round_trip_and_clipping() -> None:
    x = sine(440, SAMPLE_RATE, 0.5)
    data = encode_wav(x)
    info = sf.info(io.BytesIO(data))
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "PCM_16", SAMPLE_RATE, 1)
    np.testing.assert_allclose(decode_audio(data), x, atol=1 / 32767)
    clipped, _ = sf.read(io.BytesIO(encode_wav(np.array([2.0, -2.0, 0.0], dtype=np.float32))), dtype="int16")
    assert clipped.tolist() == [32767, -32768, 0]
    with pytest.raises(AudioError, match="NaN"):
        encode_wav(np.array([0.1, np.nan]))
    with pytest.raises(AudioError, match="no samples"):
        encode_wav(np.zeros(0))


def test_resample_shapes_and_validation() -> None:
    stereo = np.stack([sine(440, 48000, 1.0), sine(440, 48000, 1.0)], axis=1)
    out = resample(stereo, 48000)
    assert out.shape == (SAMPLE_RATE, 2) and out.dtype == np.float32
    same = resample(sine(440, SAMPLE_RATE, 0.1), SAMPLE_RATE)
    np.testing.assert_array_equal(same, sine(440, SAMPLE_RATE, 0.1))
    with pytest.raises(ValueError, match="rate"):
        resample(same, 0)
    with pytest.raises(AudioError, match="no samples"):
        resample(np.zeros(0), 8000)


def test_duration_seconds() -> None:
    assert duration_seconds(np.zeros(24000)) == 1.5
    assert duration_seconds(np.zeros((44100, 2)), 44100) == 1.0
