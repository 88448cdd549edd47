"""`neuron-atlas demo`: precompute the demo store if it is missing, then run backend and dashboard until Ctrl-C."""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "configs" / "demo.yaml"


def wait_for(url: str, timeout: float, proc: subprocess.Popen, what: str) -> None:
    """Poll `url` until it answers 200; fail early if the process behind it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the {what} exited with code {proc.returncode} before it was ready (see its output above)")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the {what} did not become ready at {url} within {timeout:.0f} s")


def run_demo(args: argparse.Namespace) -> int:
    from precompute.config import load_run_config
    from precompute.pipeline import run_precompute

    from neuron_atlas.engine.model.loading import DEMO_MODEL_DIR

    model = args.model
    if model is None and args.config == DEMO_CONFIG and not DEMO_MODEL_DIR.is_dir():
        model = "tiny-random"
        print(f"NOTE: the trained demo model is not in this checkout ({DEMO_MODEL_DIR}); running the tiny RANDOM model "
              "instead. Its figures show the pipeline's structure, not language or modality structure.", flush=True)
    cfg = load_run_config(args.config, {"model": model, "name": "demo" if model is None else f"demo-{model}"})
    t0 = time.perf_counter()
    result = run_precompute(cfg, progress=True, reuse=not args.force)
    how = "reused" if result.reused else f"computed in {time.perf_counter() - t0:.0f} s"
    print(f"store {result.store.resolve()} ({how}; run {result.run_id})")
    cli = [sys.executable, "-m", "neuron_atlas.cli"]
    backend_url = f"http://{args.host}:{args.backend_port}"
    app_url = f"http://{args.host}:{args.port}"
    findings = Path(cfg.store).with_name("findings.sqlite")
    procs: list[subprocess.Popen] = []
    try:
        procs.append(subprocess.Popen(cli + ["serve", "--host", args.host, "--port", str(args.backend_port), "--store", str(cfg.store),
                                             "--findings-db", str(findings), "--model", cfg.model]))
        wait_for(f"{backend_url}/readyz", 300, procs[-1], "backend")
        procs.append(subprocess.Popen(cli + ["app", "--host", args.host, "--port", str(args.port), "--backend-url", backend_url]))
        wait_for(app_url, 120, procs[-1], "dashboard")
        print(f"\nNeuron Atlas is running: {app_url}   (backend API: {backend_url}/docs)   Ctrl-C to stop\n", flush=True)
        if args.no_wait:
            return 0
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while all(p.poll() is None for p in procs):
            time.sleep(1)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `demo` subcommand."""
    p = subparsers.add_parser("demo", help="precompute the demo store if needed, then start backend and dashboard")
    p.add_argument("--config", type=Path, default=DEMO_CONFIG)
    p.add_argument("--model", help="override the config's model (e.g. tiny-random)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8050, help="dashboard port")
    p.add_argument("--backend-port", type=int, default=8000, dest="backend_port")
    p.add_argument("--force", action="store_true", help="recompute even if the store already holds this run")
    p.add_argument("--no-wait", action="store_true", dest="no_wait", help="stop both servers once they are up (for checks)")
    p.set_defaults(func=run_demo)
