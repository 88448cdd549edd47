"""`neuron-atlas app`: serve the dashboard (`app.wsgi`) under gunicorn for a running backend."""
from __future__ import annotations

import argparse
import os
import sys


def gunicorn_options(args: argparse.Namespace) -> dict:
    """gunicorn settings of the dashboard: `workers` processes of `threads` threads each (gthread). Each worker holds
    its own copy of the app and nothing else, so any number is safe; a callback waits at most for one backend call."""
    return {"bind": f"{args.host}:{args.port}", "workers": args.workers, "threads": args.threads,
            "worker_class": "gthread", "timeout": args.timeout, "graceful_timeout": 10, "accesslog": None,
            "errorlog": "-", "loglevel": "warning"}


def _app(args: argparse.Namespace) -> int:
    import httpx
    from gunicorn.app.base import BaseApplication

    url = args.backend_url or os.environ.get("NEURON_ATLAS_BACKEND_URL") or "http://127.0.0.1:8000"
    if not url.startswith(("http://", "https://")):
        print(f"error: --backend-url {url!r} is not an http(s) URL", file=sys.stderr)
        return 2
    for name, value in (("--workers", args.workers), ("--threads", args.threads)):
        if value < 1:
            print(f"error: {name} must be at least 1, got {value}", file=sys.stderr)
            return 2
    try:
        httpx.get(url.rstrip("/") + "/healthz", timeout=3.0)
    except httpx.HTTPError as exc:
        print(f"warning: the backend at {url} does not answer yet ({type(exc).__name__}); the dashboard will say so "
              "until it does (start it with `neuron-atlas serve`)", file=sys.stderr)
    os.environ["NEURON_ATLAS_BACKEND_URL"] = url
    if args.public_backend_url:
        os.environ["NEURON_ATLAS_PUBLIC_BACKEND_URL"] = args.public_backend_url
    options = gunicorn_options(args)

    class Dashboard(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            from app.wsgi import server
            return server

    print(f"dashboard on http://{args.host}:{args.port} (backend {url}; gunicorn, {args.workers} workers x "
          f"{args.threads} threads)", file=sys.stderr)
    Dashboard().run()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `app` subcommand."""
    p = subparsers.add_parser("app", help="serve the dashboard (Dash under gunicorn) for a running backend")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8050)
    p.add_argument("--backend-url", dest="backend_url",
                   help="backend base URL (default: $NEURON_ATLAS_BACKEND_URL or http://127.0.0.1:8000)")
    p.add_argument("--public-backend-url", dest="public_backend_url",
                   help="backend URL written into exported Python scripts (default: --backend-url)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    p.add_argument("--threads", type=int, default=8, help="threads per worker (default 8)")
    p.add_argument("--timeout", type=int, default=180,
                   help="seconds a request may take before its worker is restarted (live interventions wait up to the "
                        "backend's request timeout, 120 s by default)")
    p.set_defaults(func=_app)
