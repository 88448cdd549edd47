"""`neuron-atlas app`: serve the dashboard (Dash on Flask) for a running backend."""
from __future__ import annotations

import argparse
import os
import sys


def _app(args: argparse.Namespace) -> int:
    import httpx

    from app.main import create_app

    url = args.backend_url or os.environ.get("NEURON_ATLAS_BACKEND_URL") or "http://127.0.0.1:8000"
    if not url.startswith(("http://", "https://")):
        print(f"error: --backend-url {url!r} is not an http(s) URL", file=sys.stderr)
        return 2
    try:
        httpx.get(url.rstrip("/") + "/healthz", timeout=3.0)
    except httpx.HTTPError as exc:
        print(f"warning: the backend at {url} does not answer yet ({type(exc).__name__}); the dashboard will say so "
              "until it does (start it with `neuron-atlas serve`)", file=sys.stderr)
    dash_app = create_app(url, public_backend_url=args.public_backend_url, token=os.environ.get("NEURON_ATLAS_API_TOKEN"))
    print(f"dashboard on http://{args.host}:{args.port} (backend {url})", file=sys.stderr)
    dash_app.run(host=args.host, port=args.port, debug=False, threaded=True)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `app` subcommand."""
    p = subparsers.add_parser("app", help="serve the dashboard (Dash) for a running backend")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8050)
    p.add_argument("--backend-url", dest="backend_url",
                   help="backend base URL (default: $NEURON_ATLAS_BACKEND_URL or http://127.0.0.1:8000)")
    p.add_argument("--public-backend-url", dest="public_backend_url",
                   help="backend URL written into exported Python scripts (default: --backend-url)")
    p.set_defaults(func=_app)
