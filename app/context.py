"""Per-app context for callbacks: the backend client and settings of the Dash app that is serving the request."""
from __future__ import annotations

from dataclasses import dataclass

import flask

from app.client import AtlasClient, BackendError
from app.components.common import Provenance

EXTENSION = "neuron_atlas"


@dataclass
class AppContext:
    """What callbacks need besides their inputs: the backend client and the URL the browser sees for the backend."""

    client: AtlasClient
    backend_url: str
    public_backend_url: str


def install(server: flask.Flask, ctx: AppContext) -> None:
    server.extensions[EXTENSION] = ctx


def current() -> AppContext:
    """The context of the app handling the current request (each `create_app` has its own)."""
    return flask.current_app.extensions[EXTENSION]


def client() -> AtlasClient:
    return current().client


def run_and_provenance(run_id: str | None) -> tuple[str, dict, Provenance]:
    """Resolve a run id (None = newest), fetch its record and provenance; raises BackendError."""
    c = client()
    rid = c.resolve_run(run_id)
    run = c.run(rid)
    return rid, run, Provenance.from_run(run)


def run_options() -> list[dict[str, str]]:
    """Dropdown options of every run, newest first (empty when the backend cannot list them)."""
    try:
        runs = client().runs()
    except BackendError:
        return []
    return [{"label": f"{r['run_id']} · {r.get('model_spec')} · {r.get('mode')}", "value": r["run_id"]} for r in runs]
