"""The Dash app factory: pages, the shared header (navigation, backend status, copy link, save as finding), the audio
proxy and the guard that keeps anything but the dashboard's own CSS/JS out of static serving.

`create_app(backend_url)` returns a `dash.Dash`; its Flask server is `app.server`. The app talks to the backend only
through `app.client.AtlasClient`.
"""
from __future__ import annotations

import os
import re
import threading
from urllib.parse import quote

import dash
import flask
from cachetools import LRUCache
from flask_compress import Compress
from dash import ClientsideFunction, Dash, Input, Output, dcc, html

from app import context
from app.client import AtlasClient, BackendError
from app.components import search, text_limits
from app.components.common import DEMO_CARD_PATH
from app.pages import bridge, compare, findings, lab, layer, overview, unit
from neuron_atlas.resources import assets_dir, demo_model_dir

ASSETS = assets_dir()
#: Only these files under assets/ are served: the dashboard's own scripts and styles, and the CJK web font in fonts/
#: (the demo model and corpus that may live there never are).
STATIC_ALLOWED = re.compile(r"^([A-Za-z0-9_.-]+\.(css|js|ico|svg|png)|fonts/[A-Za-z0-9_.-]+\.(css|woff2|txt))$")
PAGES = (
    (overview, "/", "Overview", "Neuron Atlas · overview"),
    (layer, "/layer", "Layer", "Neuron Atlas · layer"),
    (unit, "/unit", "Unit", "Neuron Atlas · unit"),
    (lab, "/lab", "Lab", "Neuron Atlas · intervention lab"),
    (compare, "/compare", "Compare", "Neuron Atlas · compare runs"),
    (bridge, "/bridge", "Bridge", "Neuron Atlas · encoder-frame ↔ decoder-token bridge"),
    (findings, "/findings", "Findings", "Neuron Atlas · findings"),
)


def _header() -> html.Header:
    links = [dcc.Link(name, href=path, className="nav-link", id=f"nav-{name.lower()}") for _, path, name, _ in PAGES]
    return html.Header([
        html.Div([html.Span("Neuron Atlas", className="brand"), html.Nav(links, className="nav", **{"aria-label": "pages"}),
                  search.search_box()], className="header-left"),
        html.Div([
            html.Span(id="backend-status", className="status"),
            html.Span(id="basket-count", className="status"),
            html.Button("Copy link", id="copy-link", className="button copy-link", title="copy this view's URL"),
            html.Span(className="copy-feedback", id="copy-feedback", role="status"),
            html.Details([
                html.Summary("Save as finding", className="button"),
                html.Div([
                    html.Label([html.Span("Title", className="visually-hidden"),
                                dcc.Input(id="save-title", placeholder="Title", maxLength=300, className="input",
                                          debounce=False)]),
                    html.Label([html.Span("Note", className="visually-hidden"),
                                dcc.Textarea(id="save-note", placeholder="Note (what you see, why it matters)",
                                             maxLength=20000, className="textarea")]),
                    html.Button("Save", id="save-button", className="button primary"),
                    html.Div(id="save-status", role="status"),
                ], className="save-panel"),
            ], className="save-details", id="save-details"),
        ], className="header-right"),
    ], className="header")


def _shell() -> html.Div:
    return html.Div([
        dcc.Location(id="nav", refresh="callback-nav"),
        dcc.Store(id="basket", storage_type="local", data=[]),
        dcc.Store(id="view-result", storage_type="memory"),
        dcc.Store(id="save-request"),
        dcc.Interval(id="status-tick", interval=30_000, n_intervals=0),
        _header(),
        html.Main(dash.page_container, className="main"),
    ], className="shell")


def _register_shell_callbacks(app: Dash) -> None:
    @app.callback(Output("backend-status", "children"), Output("backend-status", "className"), Input("status-tick", "n_intervals"))
    def status(_):
        try:
            ready = context.client().ready()
        except BackendError as exc:
            return f"backend unreachable: {exc.message}", "status status-error"
        model = ready.get("model") or {}
        if ready.get("ready"):
            name = model.get("loaded") or model.get("requested")
            live = f"model {name}" if model.get("state") == "ready" else "live model disabled"
            return f"backend ready · {live}", "status status-ok"
        return ready.get("error") or "backend not ready", "status status-warn"

    @app.callback(Output("basket-count", "children"), Input("basket", "data"))
    def basket_count(basket):
        n = len(basket or [])
        return f"basket: {n} unit{'s' if n != 1 else ''}"

    search.register_callbacks(app)
    text_limits.register_callbacks(app)
    app.clientside_callback(ClientsideFunction(namespace="atlas", function_name="saveRequest"),
                            Output("save-request", "data"), Input("save-button", "n_clicks"), prevent_initial_call=True)


def _install_routes(server: flask.Flask) -> None:
    @server.before_request
    def guard_static():
        path = flask.request.path
        if path.startswith("/assets/"):
            name = path[len("/assets/"):]
            if not STATIC_ALLOWED.match(name):
                flask.abort(404)
        return None

    @server.route(DEMO_CARD_PATH)
    def demo_model_card():
        """The shipped demo model's card (what it was trained on, how, and what was trained in), as plain text."""
        card = demo_model_dir() / "README.md"
        if not card.is_file():
            return flask.Response("the demo model's card is not in this installation", status=404, mimetype="text/plain")
        return flask.Response(card.read_text(encoding="utf-8"), mimetype="text/plain; charset=utf-8")

    @server.route("/healthz")
    def healthz():
        """Liveness of the dashboard process itself (the page header reports the backend)."""
        return flask.jsonify(status="ok")

    @server.route("/media/audio/<run_id>/<path:example_id>")
    def audio(run_id: str, example_id: str):
        """An example's audio, fetched from the backend (the browser never needs to reach the backend itself)."""
        try:
            data = context.client().example_audio(run_id, example_id)
        except BackendError as exc:
            return flask.Response(exc.message, status=exc.status if 400 <= exc.status < 600 else 502, mimetype="text/plain")
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", example_id)[:120] or "audio"
        return flask.Response(data, mimetype="audio/wav", headers={
            "Cache-Control": "public, max-age=3600", "Content-Disposition": f"inline; filename=\"{quote(name)}.wav\""})

    @server.route("/media/upload/<audio_id>")
    def uploaded_audio(audio_id: str):
        """An uploaded recording as the backend holds it (16 kHz mono WAV), for the bridge's players."""
        try:
            data = context.client().uploaded_audio(audio_id)
        except BackendError as exc:
            return flask.Response(exc.message, status=exc.status if 400 <= exc.status < 600 else 502, mimetype="text/plain")
        return flask.Response(data, mimetype="audio/wav", headers={"Cache-Control": "private, max-age=600"})


def browser_chain() -> str | None:
    """X-Forwarded-For for a backend call made while serving a browser request: the request's own chain plus the
    browser's address (the backend trusts only the last hops it knows, so a forged chain does not help)."""
    if not flask.has_request_context():
        return None
    hops = [h.strip() for h in flask.request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    if flask.request.remote_addr:
        hops.append(flask.request.remote_addr)
    return ", ".join(hops) or None


def create_app(backend_url: str, *, public_backend_url: str | None = None, token: str | None = None,
               client: AtlasClient | None = None, compress: bool = True) -> Dash:
    """The dashboard for the backend at `backend_url` (`public_backend_url`: the address written into exported
    scripts, default the same). `client` replaces the HTTP client (tests); `compress=False` serves responses
    uncompressed (the first-visit benchmark's baseline)."""
    client = client or AtlasClient(backend_url, token=token)
    if client.forwarded_for is None:
        client.forwarded_for = browser_chain
    app = Dash(
        __name__,
        use_pages=True,
        pages_folder="",
        assets_folder=str(ASSETS),
        assets_path_ignore=["demo-model", "demo_model", "corpus"],
        suppress_callback_exceptions=True,
        title="Neuron Atlas",
        update_title=None,
        serve_locally=True,
    )
    context.install(app.server, context.AppContext(client, backend_url, public_backend_url or backend_url))
    for module, path, name, title in PAGES:
        dash.register_page(module.__name__, path=path, name=name, title=title, layout=module.layout)
    app.index_string = app.index_string.replace("<html>", '<html lang="en">', 1)
    app.layout = _shell()
    _register_shell_callbacks(app)
    for module, *_ in PAGES:
        module.register_callbacks(app)
    _install_routes(app.server)
    if compress:
        _compress(app.server)
    return app


#: Responses compressed on the way out (plotly.js alone is ~4.8 MB of JavaScript uncompressed).
COMPRESSED_TYPES = ["text/html", "text/css", "application/javascript", "text/javascript", "application/json",
                    "image/svg+xml"]


#: URL prefixes of the static scripts and styles, whose URLs carry a version or modification time (so a cached
#: compressed copy can never be stale).
STATIC_PREFIXES = ("/_dash-component-suites/", "/assets/")
#: Bytes of compressed static files kept per worker (plotly.js is ~1.3 MB compressed).
COMPRESSED_CACHE_BYTES = 64_000_000


class StaticCompressionCache:
    """flask-compress's cache backend: compressed static files, kept once per URL and encoding (compressing plotly.js
    takes ~0.4 s); every other response is compressed afresh and never stored."""

    def __init__(self, max_bytes: int = COMPRESSED_CACHE_BYTES) -> None:
        self._cache: LRUCache = LRUCache(maxsize=max_bytes, getsizeof=len)
        self._lock = threading.Lock()

    @staticmethod
    def key(request: flask.Request) -> str | None:
        """The cache key of a static GET (its path and query), None for anything else."""
        if request.method == "GET" and request.path.startswith(STATIC_PREFIXES):
            return request.full_path
        return None

    def get(self, key: str) -> bytes | None:
        if key.endswith(";None"):
            return None
        with self._lock:
            return self._cache.get(key)

    def set(self, key: str, value: bytes) -> None:
        if key.endswith(";None") or len(value) > self._cache.maxsize:
            return
        with self._lock:
            self._cache[key] = value


def _compress(server: flask.Flask) -> None:
    """Brotli (gzip or deflate for browsers without it) on every text response above 500 bytes; files streamed from
    disk (/assets/) get brotli or deflate, the algorithms flask-compress can stream."""
    cache = StaticCompressionCache()
    server.config.update(COMPRESS_ALGORITHM=["br", "gzip", "deflate"], COMPRESS_ALGORITHM_STREAMING=["br", "deflate"],
                         COMPRESS_BR_LEVEL=5, COMPRESS_LEVEL=6, COMPRESS_MIMETYPES=COMPRESSED_TYPES,
                         COMPRESS_MIN_SIZE=500, COMPRESS_CACHE_BACKEND=lambda: cache,
                         COMPRESS_CACHE_KEY=StaticCompressionCache.key)
    Compress(server)


def backend_url_from_env() -> str:
    return os.environ.get("NEURON_ATLAS_BACKEND_URL", "http://127.0.0.1:8000")
