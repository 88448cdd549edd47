"""Uploaded audio: decode a recording once (POST /audio) and refer to it by its content id in every live route."""
from __future__ import annotations

from fastapi import APIRouter, Depends, File, Path, UploadFile
from fastapi.responses import Response

from backend.api.deps import get_state, multipart_body
from backend.api.routers import errors
from backend.api.schemas import AudioInfo
from backend.api.state import AtlasState
from backend.api.uploads import store_upload
from neuron_atlas.engine.audio import encode_wav
from neuron_atlas.engine.constants import SAMPLE_RATE

router = APIRouter(tags=["audio"])

AUDIO_ID = Path(min_length=1, max_length=64, description="an id POST /audio returned")


@router.post("/audio", response_model=AudioInfo, responses=errors(400, 413, 415, 422),
             dependencies=[Depends(multipart_body)],
             summary="Upload a recording (WAV, FLAC, OGG, MP3) once; use its audio_id as the input of any live route")
async def upload_audio(file: UploadFile = File(description="audio: WAV, FLAC, OGG or MP3; any rate; mono or stereo"),
                       state: AtlasState = Depends(get_state)) -> dict:
    """Decodes to 16 kHz mono and keeps the samples in the server's bounded audio store (settings
    `audio_store_bytes`, `audio_store_ttl_s`); the same recording uploaded again gets the same id."""
    stored = await store_upload(state.settings, state.service.audio, file)
    return stored.describe()


@router.get("/audio/{audio_id}", response_model=AudioInfo, responses=errors(404, 422),
            summary="What the server holds of an uploaded recording")
def audio_info(audio_id: str = AUDIO_ID, state: AtlasState = Depends(get_state)) -> dict:
    return state.service.audio.get(audio_id).describe()


@router.get("/audio/{audio_id}/wav", response_class=Response, responses={
    200: {"content": {"audio/wav": {}}, "description": "16-bit PCM WAV, 16 kHz mono"}, **errors(404, 422)},
            summary="An uploaded recording as the model hears it (16 kHz mono WAV), for playback")
def audio_wav(audio_id: str = AUDIO_ID, state: AtlasState = Depends(get_state)) -> Response:
    item = state.service.audio.get(audio_id)
    return Response(encode_wav(item.wave, SAMPLE_RATE), media_type="audio/wav",
                    headers={"Content-Disposition": f'inline; filename="{item.audio_id}.wav"', "Cache-Control": "private, max-age=600"})
