"""The API over real HTTP: `serve` (uvicorn) on 127.0.0.1 with a random free port, stopped at the end (and by a
watchdog inside the server if the test dies), including 32 simultaneous interventions against a queue of 4."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from neuron_atlas.engine.interventions import generate_with, prepare_inputs
from neuron_atlas.engine.versions import ENGINE_VERSION, STORE_VERSION
from tests.backend.api_support import atlas_store  # noqa: F401

pytestmark = pytest.mark.slow  # a real uvicorn server and 32 concurrent interventions: tens of seconds

#: The server exits by itself after this many seconds, whatever happens to the test.
WATCHDOG_S = 240
SERVER = f"""
import argparse, os, sys, threading
threading.Timer({WATCHDOG_S}, os._exit, (3,)).start()
from backend.api.commands import register

parser = argparse.ArgumentParser()
register(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args(sys.argv[1:])
sys.exit(args.func(args))
"""
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@pytest.fixture(scope="module")
def server(atlas_store, tmp_path_factory):
    store, run_id = atlas_store
    tmp = tmp_path_factory.mktemp("server")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NEURON_ATLAS_RATE_BURST": "1000", "NEURON_ATLAS_RATE_PER_S": "1000",
           "NEURON_ATLAS_REQUEST_TIMEOUT_S": "60"}
    cmd = [sys.executable, "-c", SERVER, "serve", "--host", "127.0.0.1", "--port", str(port), "--store", str(store),
           "--findings-db", str(tmp / "findings.sqlite"), "--model", "tiny-random", "--device", "cpu", "--queue-size", "4",
           "--log-level", "warning"]
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}: {(tmp / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become ready in 120 s")
            time.sleep(0.2)
        yield base, proc, run_id
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
    assert proc.returncode is not None


def test_real_server_answers_every_kind_of_route(server):
    base, _, run_id = server
    with httpx.Client(base_url=base, timeout=30) as c:
        r = c.get("/healthz")
        assert r.json()["status"] == "ok" and r.headers["x-neuron-atlas-engine"] == ENGINE_VERSION
        assert r.headers["x-neuron-atlas-store"] == STORE_VERSION
        assert c.get("/runs").json()["runs"][0]["run_id"] == run_id
        assert c.get("/capabilities").json()["limits"]["queue_size"] == 4
        assert c.get(f"/runs/{run_id}/heatmap", params={"stack": "text_decoder"}).json()["counts"]
        assert c.get(f"/runs/{run_id}/audio/builtin:s000:fra:fra-m1").headers["content-type"] == "audio/wav"
        paths = c.get("/openapi.json").json()["paths"]
        assert "/interventions" in paths and "/interventions/upload" in paths and "/findings" in paths
        body = c.post("/interventions", json={"text": "Bonjour.", "src_lang": "fra", "tgt_lang": "eng"}).json()
        assert body["baseline"]["token_ids"] == body["intervened"]["token_ids"]
        fid = c.post("/findings", json={"title": "over HTTP"}).json()["id"]
        assert c.get(f"/findings/{fid}").json()["title"] == "over HTTP"
        bad = c.get("/runs/nope")
        assert bad.status_code == 404 and bad.json()["error"].startswith("unknown run 'nope'")


def test_32_simultaneous_interventions_against_a_queue_of_4(server, tiny_bundle, tiny_registry):
    base, proc, _ = server
    words = ["train", "sister", "rain", "coffee", "book", "river", "house", "music"]
    texts = [f"The {a} and the {b} are here number {i}." for i, (a, b) in
             enumerate((words[i % 8], words[(i * 3 + 1) % 8]) for i in range(32))]
    spec = {"units": {"kind": "explicit", "units": [{"module": "text_decoder.layers.1.ffn.fc2", "channel": c} for c in range(6)]},
            "value": {"kind": "constant", "value": 20.0}}
    with httpx.Client(base_url=base, timeout=60) as c:
        for i in range(6):
            c.post("/interventions", json={"text": f"warm up {i}", "src_lang": "eng", "tgt_lang": "fra", "spec": spec})
    baseline_rss = rss_bytes(proc.pid)
    barrier = threading.Barrier(32)

    def fire(text: str) -> httpx.Response:
        with httpx.Client(base_url=base, timeout=90) as c:
            barrier.wait(30)
            return c.post("/interventions", json={"text": text, "src_lang": "eng", "tgt_lang": "fra", "spec": spec})

    with ThreadPoolExecutor(32) as pool:
        responses = list(pool.map(fire, texts))
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 429, 503}, codes
    assert codes.count(200) >= 4, codes
    for r in responses:
        if r.status_code != 200:
            assert int(r.headers["retry-after"]) >= 1 and r.json()["error"]
    for text, r in zip(texts, responses):
        if r.status_code == 200:
            enc = prepare_inputs(tiny_bundle, text=text, src_lang="eng")
            ref = generate_with(tiny_bundle, tiny_registry, None, enc, "fra")
            assert r.json()["baseline"]["token_ids"] == ref.token_ids[0], text
            assert r.json()["input"]["text"] == text
    assert proc.poll() is None, "the server crashed"
    time.sleep(1.0)
    with httpx.Client(base_url=base, timeout=30) as c:
        assert c.get("/readyz").status_code == 200
        assert c.get("/capabilities").json()["queue"]["pending"] == 0
    grown = rss_bytes(proc.pid) - baseline_rss
    print(f"32 requests: {codes.count(200)} answered, {codes.count(503)} x 503, {codes.count(429)} x 429; "
          f"RSS {baseline_rss / 2**20:.0f} MiB -> +{grown / 2**20:.1f} MiB")
    assert grown < 64 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB after the burst"
