"""The dashboard as a WSGI application, for gunicorn: `gunicorn app.wsgi:server`. `neuron-atlas app` and the compose
file both serve it this way.

Configured by the environment: NEURON_ATLAS_BACKEND_URL (where the backend answers, default http://127.0.0.1:8000),
NEURON_ATLAS_PUBLIC_BACKEND_URL (the address written into exported scripts, default the same) and
NEURON_ATLAS_API_TOKEN (the backend's write token, held by the dashboard only when set and non-empty, so that its
users can save findings).
"""
from __future__ import annotations

import os

from app.main import backend_url_from_env, create_app


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


application = create_app(backend_url_from_env(), public_backend_url=_env("NEURON_ATLAS_PUBLIC_BACKEND_URL"),
                         token=_env("NEURON_ATLAS_API_TOKEN"))
server = application.server
