"""Uploaded audio, decoded once and kept server-side under a content id, so every live route can refer to it.

`store_upload` checks an uploaded file part (`read_audio_file`: declared type, size), decodes it to 16 kHz mono with
the server's limits (`decode_upload`) and keeps it; `POST /audio` and the older multipart routes (`/interventions/upload`,
`/jobs/upload`) all go through it. `AudioStore` holds the decoded waves in a TTL + LRU cache bounded by their total bytes.
"""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

import numpy as np
from cachetools import TTLCache
from fastapi import UploadFile
from fastapi.concurrency import run_in_threadpool

from backend.api.errors import ApiProblem
from backend.api.settings import Settings
from neuron_atlas.engine.audio import decode_audio
from neuron_atlas.engine.constants import SAMPLE_RATE

#: Shortest audio input: the speech front end needs several 25 ms frames (a single frame normalises to NaN).
MIN_AUDIO_SECONDS = 0.1
#: Declared content types accepted for an uploaded file part (the bytes are checked by decoding them).
AUDIO_TYPES = ("audio/", "application/octet-stream", "application/ogg", "video/ogg")
#: Hex digits of the wave's SHA-256 that make an audio id.
ID_LENGTH = 32


@dataclass(frozen=True)
class StoredAudio:
    """A decoded upload: 16 kHz mono float32 samples, the SHA-256 of those samples, and its id (a prefix of it)."""

    audio_id: str
    sha256: str
    wave: np.ndarray
    filename: str | None

    @property
    def duration_s(self) -> float:
        return round(len(self.wave) / SAMPLE_RATE, 3)

    def describe(self) -> dict:
        """What `POST /audio` and `GET /audio/{id}` answer."""
        return {"audio_id": self.audio_id, "duration_s": self.duration_s, "sample_rate": SAMPLE_RATE,
                "sha256": self.sha256, "filename": self.filename, "n_samples": int(len(self.wave)),
                "bytes": int(self.wave.nbytes)}


def wave_sha256(wave: np.ndarray) -> str:
    """SHA-256 of a wave's float32 little-endian samples: the same recording decodes to the same hash in any format."""
    return hashlib.sha256(np.ascontiguousarray(wave, dtype="<f4").tobytes()).hexdigest()


async def read_audio_file(settings: Settings, file: UploadFile) -> bytes:
    """The bytes of an uploaded file part: 415 unless it is declared as audio, 413 above the upload limit."""
    declared = (file.content_type or "").split(";")[0].strip().lower()
    if declared and not declared.startswith(AUDIO_TYPES):
        raise ApiProblem(415, f"file: upload {file.filename!r} is declared as {declared!r}; send audio "
                              "(WAV, FLAC, OGG or MP3, e.g. audio/wav)", "file")
    limit = settings.max_upload_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise ApiProblem(413, f"file: upload {file.filename!r} is larger than the limit of {limit / 1e6:g} MB", "file")
    return data


def decode_upload(settings: Settings, data: bytes, filename: str | None) -> np.ndarray:
    """Decode upload bytes to 16 kHz mono within the server's byte and duration limits; 422 when shorter than
    MIN_AUDIO_SECONDS (the decoder's own errors are 422s naming the file)."""
    wave = decode_audio(data, max_bytes=settings.max_upload_bytes, max_seconds=settings.max_audio_seconds,
                        filename=filename)
    if len(wave) < MIN_AUDIO_SECONDS * SAMPLE_RATE:
        raise ApiProblem(422, f"file: upload {filename!r} holds {len(wave) / SAMPLE_RATE:.3f} s of audio; at least "
                              f"{MIN_AUDIO_SECONDS:g} s is needed", "file")
    return wave


class AudioStore:
    """Decoded uploads by audio id: least recently used first out once their samples exceed `max_bytes`, and each
    gone `ttl_s` seconds after it was last uploaded. Thread-safe (routes run in a thread pool)."""

    def __init__(self, max_bytes: int, ttl_s: float):
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._cache: TTLCache[str, StoredAudio] = TTLCache(maxsize=max_bytes, ttl=ttl_s,
                                                             getsizeof=lambda a: max(1, int(a.wave.nbytes)))
        self._lock = threading.Lock()

    def put(self, wave: np.ndarray, filename: str | None) -> StoredAudio:
        """Keep a decoded wave (the same samples twice → the same id, its time to live renewed); 413 when one wave is
        larger than the whole budget."""
        wave = np.ascontiguousarray(wave, dtype=np.float32)
        wave.setflags(write=False)
        digest = wave_sha256(wave)
        item = StoredAudio(digest[:ID_LENGTH], digest, wave, filename)
        if wave.nbytes > self.max_bytes:
            raise ApiProblem(413, f"file: upload {filename!r} decodes to {wave.nbytes / 1e6:.1f} MB of samples, more than "
                                  f"this server's audio store holds ({self.max_bytes / 1e6:g} MB, setting "
                                  "audio_store_bytes)", "file")
        with self._lock:
            self._cache.pop(item.audio_id, None)
            self._cache[item.audio_id] = item
        return item

    def get(self, audio_id: str, field: str = "audio_id") -> StoredAudio:
        """The stored upload, or a 404 naming the id and saying to upload it again."""
        with self._lock:
            item = self._cache.get(audio_id)
        if item is None:
            raise ApiProblem(404, f"{field}: unknown or expired audio id {audio_id!r} (uploads are kept for "
                                  f"{self.ttl_s:g} s and within {self.max_bytes / 1e6:g} MB on this server); upload the "
                                  "file again with POST /audio", field)
        return item


async def store_upload(settings: Settings, store: AudioStore, file: UploadFile) -> StoredAudio:
    """Check, decode and keep an uploaded file part (`POST /audio` and the multipart routes); decoding runs in the
    thread pool."""
    data = await read_audio_file(settings, file)
    wave = await run_in_threadpool(decode_upload, settings, data, file.filename)
    return await run_in_threadpool(store.put, wave, file.filename)
