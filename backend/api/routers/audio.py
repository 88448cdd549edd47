"""Example audio, served by example id from the store's FLAC blobs (never by a path from the request)."""
from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Path
from fastapi.responses import Response

from backend.api.deps import get_reader
from backend.api.routers import errors
from backend.api.routers.data import run_path
from neuron_atlas.engine.audio import encode_wav
from backend.store.reader import StoreReader

router = APIRouter(tags=["audio"], responses=errors(404, 422, 503))


@router.get("/runs/{run_id}/audio/{example_id:path}", response_class=Response,
            responses={200: {"content": {"audio/wav": {}}, "description": "16-bit PCM WAV, 16 kHz mono"}},
            summary="An example's audio as WAV")
def example_audio(run_id: str = Depends(run_path), example_id: str = Path(max_length=500),
                  reader: StoreReader = Depends(get_reader)) -> Response:
    wave, rate = reader.example_audio(run_id, example_id)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", example_id)[:120] or "audio"
    return Response(encode_wav(wave, rate), media_type="audio/wav",
                    headers={"Content-Disposition": f'inline; filename="{name}.wav"', "Cache-Control": "public, max-age=3600"})
