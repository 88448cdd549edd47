"""`neuron-atlas serve`: run the backend with uvicorn (flags override NEURON_ATLAS_* environment settings and .env)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


#: Why the backend is one process: what a second worker would not share.
ONE_PROCESS = ("the backend runs as one process per model: its intervention queue, result cache, rate limits and "
               "jobs live in that process's memory (and each worker would load its own copy of the model)")


def uvicorn_options(settings, host: str, port: int, log_level: str) -> dict:
    """uvicorn settings: one worker, and proxy headers (X-Forwarded-For) trusted from exactly the peers in
    `trusted_proxies`, the same list the rate limiter reads, so the client it counts is the one uvicorn reports."""
    return {"host": host, "port": port, "log_level": log_level, "timeout_graceful_shutdown": 10, "workers": 1,
            "proxy_headers": True, "forwarded_allow_ips": list(settings.trusted_proxies)}


def _serve(args: argparse.Namespace) -> int:
    if args.workers != 1:
        print(f"error: --workers {args.workers}: {ONE_PROCESS}. Run one `neuron-atlas serve` per model (on another "
              "port or machine) and scale the dashboard instead (`neuron-atlas app --workers N`).", file=sys.stderr)
        return 2
    import uvicorn
    from pydantic import ValidationError

    from backend.api.app import create_app
    from backend.api.settings import Settings
    from neuron_atlas.engine.store_schema import StoreVersionError

    overrides = {"store": args.store, "findings_db": args.findings_db, "model": args.model, "device": args.device,
                 "queue_size": args.queue_size}
    kwargs = {k: v for k, v in overrides.items() if v is not None}
    if args.env_file is not None:
        if not args.env_file.is_file():
            print(f"error: env file {args.env_file} not found", file=sys.stderr)
            return 2
        kwargs["_env_file"] = args.env_file
    try:
        settings = Settings(**kwargs)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"error: invalid settings: {problems}", file=sys.stderr)
        return 2
    try:
        app = create_app(settings)
    except StoreVersionError as exc:
        print(f"error: refusing the store {settings.store}: {exc}", file=sys.stderr)
        return 2
    print(f"serving store {settings.store} (findings: {settings.findings_db}, model: {settings.model}) on "
          f"http://{args.host}:{args.port}", file=sys.stderr)
    uvicorn.run(app, **uvicorn_options(settings, args.host, args.port, args.log_level))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `serve` subcommand."""
    p = subparsers.add_parser("serve", help="serve the atlas store and live interventions over HTTP (FastAPI + uvicorn)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--store", type=Path, help="atlas.duckdb (default: $NEURON_ATLAS_STORE or data/atlas.duckdb)")
    p.add_argument("--findings-db", type=Path, dest="findings_db", help="findings SQLite file")
    p.add_argument("--model", help="demo | tiny-random | full-random | folder | hub id | none")
    p.add_argument("--device", help="auto | cpu | cuda")
    p.add_argument("--queue-size", type=int, dest="queue_size", help="intervention requests waiting or running at once")
    p.add_argument("--env-file", type=Path, dest="env_file", help="read settings from this .env file (default: ./.env if present)")
    p.add_argument("--workers", type=int, default=1, help="must be 1: " + ONE_PROCESS)
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=_serve)
