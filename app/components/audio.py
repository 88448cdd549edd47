"""Audio on the page: WAV decoding and spectrograms (numpy, pure), and the labelled player component."""
from __future__ import annotations

import base64
import io
import wave
from typing import Any

import numpy as np
from dash import html

SOURCE_LABELS = {
    "model": "spoken by the model's own speech decoder",
    "tts": "synthesised by the bundled TTS from the output text (not the model's speech)",
    "corpus": "corpus recording",
    "upload": "your upload",
    "mic": "your microphone recording",
}


class AudioDataError(ValueError):
    """Audio bytes the dashboard cannot read (it only reads PCM WAV, which is what the backend sends)."""


def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    """PCM WAV bytes → mono float32 samples in [-1, 1] and the sample rate."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            rate, width, channels, n = w.getframerate(), w.getsampwidth(), w.getnchannels(), w.getnframes()
            raw = w.readframes(n)
    except (wave.Error, EOFError) as exc:
        raise AudioDataError(f"not a PCM WAV file ({exc})") from None
    if width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 4:
        x = np.frombuffer(raw, dtype="<i4").astype(np.float32) / 2147483648.0
    else:
        raise AudioDataError(f"unsupported WAV sample width of {width} bytes")
    if channels > 1:
        x = x[: len(x) - len(x) % channels].reshape(-1, channels).mean(axis=1)
    return x, rate


def spectrogram(x: np.ndarray, rate: int, *, win_s: float = 0.025, hop_s: float = 0.010,
                max_hz: float = 8000.0, max_bins: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Magnitude spectrogram in dB (Hann window, all frames at once): (frame centre times, frequencies, dB[f, t]).

    Neighbouring frequency bins are averaged (in power) down to at most `max_bins` rows, enough for the page.
    """
    if rate <= 0:
        raise AudioDataError(f"sample rate must be positive, got {rate}")
    x = np.asarray(x, dtype=np.float32).ravel()
    win = max(int(round(win_s * rate)), 8)
    hop = max(int(round(hop_s * rate)), 1)
    if len(x) < win:
        x = np.pad(x, (0, win - len(x)))
    n_frames = 1 + (len(x) - win) // hop
    idx = np.arange(win)[None, :] + hop * np.arange(n_frames)[:, None]
    frames = x[idx] * np.hanning(win).astype(np.float32)[None, :]
    power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).T
    freqs = np.fft.rfftfreq(win, d=1.0 / rate)
    keep = freqs <= max_hz
    power, freqs = power[keep], freqs[keep]
    group = max(1, -(-len(freqs) // max_bins))
    n = len(freqs) // group * group
    if group > 1:
        power = power[:n].reshape(n // group, group, -1).mean(axis=1)
        freqs = freqs[:n].reshape(n // group, group).mean(axis=1)
    db = 10.0 * np.log10(np.maximum(power, 1e-12))
    db = np.maximum(db, db.max() - 80.0)
    times = (np.arange(n_frames) * hop + win / 2) / rate
    return times, freqs, db


def wav_data_uri(wav_base64: str) -> str:
    return f"data:audio/wav;base64,{wav_base64}"


def bytes_data_uri(data: bytes, mime: str = "audio/wav") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def audio_player(src: str | None, label: str, *, source: str | None = None, error: str | None = None,
                 id_: str | dict | None = None, playhead_for: str | None = None, note: str | None = None,
                 preload: str = "metadata") -> html.Div:
    """A labelled <audio> player that says where its sound comes from (model speech, TTS, corpus, upload).

    `preload="none"` for long lists of players, so that opening a page does not fetch every recording."""
    parts: list[Any] = [html.Div(label, className="player-label")]
    if src:
        attrs: dict[str, Any] = {"src": src, "controls": True, "preload": preload, "className": "player"}
        if id_ is not None:
            attrs["id"] = id_
        if playhead_for:
            attrs["data-playhead"] = playhead_for
        parts.append(html.Audio(**attrs))
    else:
        parts.append(html.Div(error or "no audio", className="player-missing"))
    if source:
        parts.append(html.Div(SOURCE_LABELS.get(source, source), className=f"player-source player-source-{source}"))
    if note:
        parts.append(html.Div(note, className="player-note"))
    return html.Div(parts, className="audio-player")
