"""`neuron-atlas app`: options and refusal of a bad backend URL."""
from __future__ import annotations

import argparse

from app import commands


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="neuron-atlas")
    commands.register(p.add_subparsers(dest="command", required=True))
    return p


def test_app_subcommand_options_and_defaults():
    args = parser().parse_args(["app"])
    assert (args.host, args.port, args.backend_url, args.public_backend_url) == ("127.0.0.1", 8050, None, None)
    args = parser().parse_args(["app", "--host", "0.0.0.0", "--port", "9000", "--backend-url", "http://api:8000"])
    assert (args.host, args.port, args.backend_url) == ("0.0.0.0", 9000, "http://api:8000")
    assert args.func is commands._app


def test_a_backend_url_that_is_not_http_is_refused(capsys, monkeypatch):
    monkeypatch.delenv("NEURON_ATLAS_BACKEND_URL", raising=False)
    args = parser().parse_args(["app", "--backend-url", "localhost:8000"])
    assert args.func(args) == 2
    assert "error: --backend-url 'localhost:8000' is not an http(s) URL" in capsys.readouterr().err


def test_gunicorn_runs_the_wsgi_app_with_the_chosen_workers_and_threads():
    args = parser().parse_args(["app", "--port", "9001", "--workers", "3", "--threads", "4"])
    opts = commands.gunicorn_options(args)
    assert (opts["bind"], opts["workers"], opts["threads"], opts["worker_class"]) == ("127.0.0.1:9001", 3, 4, "gthread")
    assert opts["timeout"] > 120, "a live intervention may wait up to the backend's 120 s request timeout"


def test_zero_workers_or_threads_are_refused(capsys):
    args = parser().parse_args(["app", "--backend-url", "http://127.0.0.1:9", "--workers", "0"])
    assert args.func(args) == 2
    assert "--workers must be at least 1, got 0" in capsys.readouterr().err
