"""`neuron-atlas serve`: one process per model, and uvicorn trusts forwarded addresses from the same proxies as the
rate limiter."""
from __future__ import annotations

import argparse
import asyncio

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from backend.api import commands
from backend.api.settings import Settings


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="neuron-atlas")
    commands.register(p.add_subparsers(dest="command", required=True))
    return p


def test_more_than_one_worker_is_refused_with_the_reason(capsys):
    args = parser().parse_args(["serve", "--workers", "4"])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "--workers 4" in err and "queue, result cache, rate limits and jobs" in err


def _client_seen(options: dict, peer: str, forwarded: str) -> str:
    """The client address an app behind uvicorn's proxy-header middleware sees, configured as `serve` does."""
    seen = {}

    async def app(scope, receive, send):
        seen["client"] = scope["client"][0]

    middleware = ProxyHeadersMiddleware(app, trusted_hosts=options["forwarded_allow_ips"])
    scope = {"type": "http", "client": (peer, 5000), "headers": [(b"x-forwarded-for", forwarded.encode())],
             "scheme": "http"}
    asyncio.run(middleware(scope, None, None))
    return seen["client"]


def test_uvicorn_trusts_forwarded_addresses_from_the_trusted_proxies_only():
    settings = Settings(trusted_proxies="127.0.0.1/32,172.28.0.10/32", _env_file=None)
    options = commands.uvicorn_options(settings, "0.0.0.0", 8000, "info")
    assert options["workers"] == 1 and options["proxy_headers"]
    assert _client_seen(options, "172.28.0.10", "203.0.113.7") == "203.0.113.7", "the dashboard forwards the browser"
    assert _client_seen(options, "198.51.100.2", "203.0.113.7") == "198.51.100.2", "an untrusted peer cannot forge it"
    assert _client_seen(options, "127.0.0.1", "203.0.113.9, 172.28.0.10") == "203.0.113.9"
