"""Shared helpers of the API tests: one tiny-model store per test session, settings and clients over it."""
from __future__ import annotations

import io
import json
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from backend.api.app import create_app
from backend.api.settings import Settings

LANGS = ["eng", "deu", "fra"]
KS = [5, 10]
_BUILT: dict[str, tuple[Path, str]] = {}


def build_store(root: Path, bundle) -> tuple[Path, str]:
    """Run the tiny-model precompute once per session (3 languages, 6 sentences, all tasks, steps 2 and 7)."""
    if "store" in _BUILT:
        return _BUILT["store"]
    from precompute.config import load_run_config
    from precompute.pipeline import run_precompute

    root.mkdir(parents=True, exist_ok=True)
    cfg = {
        "name": "api", "model": "tiny-random", "device": "cpu",
        "tasks": ["asr", "s2tt", "t2tt", "en2x_s2tt", "en2x_t2tt"], "steps": [2, 7],
        "corpus": {"source": "builtin", "languages": LANGS, "max_sentences": 6},
        "shard_size": 6, "batch_size": 6, "store": str(root / "atlas.duckdb"), "work_dir": str(root / "work"),
        "analysis": {"ks": KS, "seed": 0},
        "evaluate": {"n_examples": 3, "max_new_tokens": 8, "dose_ks": [5]},
        # the arrays stay so tests can check what the store serves against the raw recording; the server never
        # reads them (tests/backend/test_store_only.py serves a store whose work folder is gone)
        "keep_activations": True,
    }
    (root / "run.yaml").write_text(json.dumps(cfg))
    result = run_precompute(load_run_config(root / "run.yaml"), progress=False, bundle=bundle)
    _BUILT["store"] = (Path(cfg["store"]), result.run_id)
    return _BUILT["store"]


@pytest.fixture(scope="session")
def atlas_store(tmp_path_factory, tiny_bundle) -> tuple[Path, str]:
    """(store path, run id) of the session's tiny-model store."""
    return build_store(tmp_path_factory.getbasetemp() / "api-store", tiny_bundle)


def make_settings(store: Path, tmp: Path, **over) -> Settings:
    """Settings for tests: no .env, generous rate limits unless overridden."""
    values = {"store": store, "findings_db": tmp / "findings.sqlite", "model": "tiny-random", "device": "cpu",
              "rate_burst": 1000, "rate_per_s": 1000, "export_burst": 1000, "export_per_s": 1000, "_env_file": None}
    values.update(over)
    return Settings(**values)


@contextmanager
def client_for(settings: Settings, bundle=None, raise_server_exceptions: bool = True):
    """A TestClient with the app's lifespan running (the model adopted from `bundle` when given)."""
    app = create_app(settings, bundle=bundle)
    with TestClient(app, raise_server_exceptions=raise_server_exceptions) as client:
        wait_ready(client)
        yield client


def wait_ready(client, timeout: float = 60.0) -> dict:
    """Wait until the model has left the `loading` state (the store may legitimately be missing)."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get("/readyz").json()
        if body["model"]["state"] != "loading" or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def stored_flac(store: Path, run_id: str) -> bytes:
    """The FLAC bytes of the run's first example with audio, as an upload of a real recording."""
    con = duckdb.connect(str(store), read_only=True)
    try:
        return bytes(con.execute("SELECT flac FROM example_audio WHERE run_id = ? ORDER BY example_id LIMIT 1",
                                 [run_id]).fetchone()[0])
    finally:
        con.close()


def wav_bytes(x: np.ndarray, rate: int, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def tone(seconds: float = 1.0, rate: int = 16000, freq: float = 220.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = (0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    return x if channels == 1 else np.stack([x] * channels, axis=1)


def assert_error(response, status: int, *needles: str) -> dict:
    """A JSON error with the given status whose message contains every needle (case-insensitive)."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    body = response.json()
    assert set(body) >= {"error", "status", "engine_version", "store_version"}, body
    assert body["status"] == status
    assert "Traceback" not in body["error"] and "File \"" not in body["error"]
    for needle in needles:
        assert needle.lower() in body["error"].lower(), (needle, body["error"])
    return body
