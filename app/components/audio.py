"""Audio on the page: WAV decoding and spectrograms (numpy, pure), the labelled player component, and the upload or
record input that the lab and the bridge share (sent once to the backend's POST /audio, then used by its id)."""
from __future__ import annotations

import base64
import io
import wave
from collections.abc import Mapping
from typing import Any

import numpy as np
from dash import dcc, html

from app.client import BackendError
from app.components.common import control
from app.lab_logic import LabInputError, check_upload_type, decode_upload, upload_size_problem

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


# ------------------------------------------------------------------------------------------- upload or record input

#: Input kinds whose audio the browser holds (an uploaded file, a microphone recording) and sends once to POST /audio.
HELD_KINDS = ("upload", "mic")


def audio_input(prefix: str, max_upload_bytes: int, *, kind: str | None = None) -> list[Any]:
    """The upload box and the microphone recorder of a page (ids `{prefix}-…`), shown for input kind `kind`; each new
    file or recording is sent once to the backend (`register_audio_input`) and the line under them says its id."""
    return [
        html.Div([
            control("Audio file", html.Div(
                dcc.Upload(id=f"{prefix}-upload", children=html.Div(["Drop or ", html.A("choose"),
                                                                     " a WAV, FLAC, OGG or MP3 file"]),
                           className="upload", max_size=max_upload_bytes),
                **{"data-upload-rejected": f"{prefix}-upload-rejected"}),
                    f"{prefix}-file-error", class_name="w-wide",
                    help_text=f"up to {max_upload_bytes / 1e6:g} MB; uploads are not part of share links"),
            html.Div(id=f"{prefix}-upload-name", className="muted"),
        ], id=f"{prefix}-in-upload", className="controls", hidden=kind != "upload"),
        html.Div([
            html.Button("● Record", id=f"{prefix}-mic-start", className="button", **{"data-mic": "start"}),
            html.Button("■ Stop", id=f"{prefix}-mic-stop", className="button", **{"data-mic": "stop"}),
            html.Span(id=f"{prefix}-mic-status", className="muted", **{"data-mic": "status"}),
            html.Div(id=f"{prefix}-mic-preview"),
        ], id=f"{prefix}-in-mic", className="controls", hidden=kind != "mic", **{"data-mic-store": f"{prefix}-mic"}),
        html.Div(id=f"{prefix}-audio-line", className="muted", role="status", **{"aria-live": "polite"}),
    ]


def audio_input_stores(prefix: str, max_upload_bytes: int) -> list[dcc.Store]:
    """What the browser holds for `audio_input`: the file, the recording, the limit, and the backend's answers."""
    return [dcc.Store(id=f"{prefix}-upload-data"), dcc.Store(id=f"{prefix}-upload-limit", data=max_upload_bytes),
            dcc.Store(id=f"{prefix}-upload-rejected", data=None), dcc.Store(id=f"{prefix}-mic", data=None),
            dcc.Store(id=f"{prefix}-audio", data={})]


def held_audio(kind: str, upload: Mapping[str, Any] | None, mic: Mapping[str, Any] | None) -> tuple[bytes, str, str]:
    """(bytes, filename, mime) of the file or recording the browser holds for `kind`, its type checked."""
    data, name, mime = decode_upload(upload if kind == "upload" else mic, "upload" if kind == "upload" else "recording")
    problem = check_upload_type(name, mime)
    if problem:
        raise LabInputError("file", problem)
    return data, name, mime


def send_audio(client: Any, kind: str, upload: Mapping[str, Any] | None, mic: Mapping[str, Any] | None) -> dict[str, Any]:
    """POST the held file or recording to /audio: the backend's {audio_id, duration_s, sha256, …} and its source."""
    return {**client.upload_audio(*held_audio(kind, upload, mic)), "source": kind}


def audio_id_for(client: Any, kind: str, sent: Mapping[str, Any] | None, upload: Mapping[str, Any] | None,
                 mic: Mapping[str, Any] | None) -> str | None:
    """The backend id of the held audio of input kind `kind`: the one it was sent under, or (never sent, or expired
    from the backend's store since) sent again now from the bytes the browser still holds; None for other kinds."""
    if kind not in HELD_KINDS:
        return None
    entry = (sent or {}).get(kind) or {}
    if entry.get("problem"):
        raise LabInputError("file", entry["problem"])
    if entry.get("audio_id"):
        try:
            client.audio_info(entry["audio_id"])
            return entry["audio_id"]
        except BackendError as exc:
            if exc.status != 404:
                raise
    return send_audio(client, kind, upload, mic)["audio_id"]


def audio_line(entry: Mapping[str, Any] | None) -> Any:
    """The line under the inputs: what the backend holds of the file or recording, or why it refused it."""
    if not entry:
        return ""
    if entry.get("problem"):
        return html.Div(entry["problem"], className="field-error")
    return (f"sent to the backend once: {entry.get('filename')} · {entry.get('duration_s', 0):.2f} s at 16 kHz · "
            f"audio id {entry.get('audio_id')}")


def register_audio_input(app: Any, prefix: str, client_of: Any) -> None:
    """Callbacks of `audio_input`: the size guard, the chosen file, the recording's preview, and sending each new file
    or recording once to POST /audio (kept in `{prefix}-audio` by kind). `client_of()` is the backend client."""
    from dash import ClientsideFunction, Input, Output, State, ctx

    app.clientside_callback(ClientsideFunction(namespace="atlas", function_name="guardUpload"),
                            Output(f"{prefix}-upload-rejected", "data"), Input(f"{prefix}-upload-limit", "data"))

    @app.callback(Output(f"{prefix}-mic-preview", "children"), Input(f"{prefix}-mic", "data"), prevent_initial_call=True)
    def mic_preview(mic):
        if not mic or not mic.get("contents"):
            return []
        return audio_player(mic["contents"], f"your recording ({mic.get('duration_s', 0):.1f} s)", source="mic")

    @app.callback(Output(f"{prefix}-upload-data", "data"), Output(f"{prefix}-upload-name", "children"),
                  Input(f"{prefix}-upload", "contents"), Input(f"{prefix}-upload-rejected", "data"),
                  State(f"{prefix}-upload", "filename"), State(f"{prefix}-upload-limit", "data"), prevent_initial_call=True)
    def uploaded(contents, rejected, filename, limit):
        if rejected:
            problem = upload_size_problem(rejected.get("filename"), int(rejected.get("size") or 0), int(limit))
            if problem:
                return {"filename": rejected.get("filename"), "problem": problem}, html.Div(problem, className="field-error")
        if not contents:
            return None, ""
        head = contents.split(",", 1)[0]
        mime = head.removeprefix("data:").split(";")[0] or "application/octet-stream"
        problem = check_upload_type(filename or "upload", mime)
        name = html.Span(f"{filename} ({mime})")
        return {"contents": contents, "filename": filename}, [name, html.Div(problem, className="field-error")] if problem else name

    @app.callback(Output(f"{prefix}-audio", "data"), Output(f"{prefix}-audio-line", "children"),
                  Input(f"{prefix}-upload-data", "data"), Input(f"{prefix}-mic", "data"), State(f"{prefix}-audio", "data"),
                  prevent_initial_call=True)
    def send(upload, mic, sent):
        kind = "mic" if ctx.triggered_id == f"{prefix}-mic" else "upload"
        held = mic if kind == "mic" else upload
        if not held:
            return {k: v for k, v in (sent or {}).items() if k != kind}, ""
        try:
            entry = send_audio(client_of(), kind, upload, mic)
        except LabInputError as exc:
            entry = {"problem": exc.message, "source": kind}
        except BackendError as exc:
            entry = {"problem": exc.message, "source": kind}
        return {**(sent or {}), kind: entry}, audio_line(entry)
