"""The built wheel, installed as a user would: a fresh virtual environment filled from the lock (no editable install,
no source tree on sys.path), used from another working directory."""
from __future__ import annotations

import gzip
import json
import os
import shutil
import re
import socket
import subprocess
import sys
import time
import urllib.request
import zlib
from pathlib import Path

import pytest

from neuron_atlas.demo import stop_processes

ROOT = Path(__file__).resolve().parents[1]
UV = ROOT / ".tools" / "bin" / "uv"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not UV.exists(), reason="uv is installed by `make install` (.tools/bin/uv); run `make test`")]


def _run(cmd: list, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=kw.pop("timeout", 600), **kw)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, headers: dict | None = None, timeout: float = 5.0) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, dict(resp.headers), resp.read()


def _wait(url: str, proc: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{url}: the server exited early:\n{proc.stdout.read()[-3000:]}"
        try:
            _get(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {seconds:.0f} s")


def _source_copy(dest: Path) -> Path:
    """The checkout's files as git sees them (tracked, and untracked but not ignored), links kept as links: the
    wheel is built from what a clean clone holds, never from a stale setuptools build/ folder."""
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT).stdout
    for name in filter(None, listed.split("\0")):
        src = ROOT / name
        if not src.exists() and not src.is_symlink():
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding the lock's runtime packages and the wheel, nothing else; returns its bin/ folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    source = _source_copy(tmp / "source")
    _run([UV, "build", "--wheel", "--out-dir", tmp / "dist", source], cwd=source, env=env)
    wheel = next((tmp / "dist").glob("neuron_atlas-*.whl"))
    _run([UV, "export", "--frozen", "--no-emit-project", "--no-default-groups", "--extra", "ray", "-o", tmp / "req.txt"],
         cwd=ROOT, env=env)
    _run([UV, "venv", "--python", sys._base_executable, tmp / "venv"], env=env)
    py = tmp / "venv" / "bin" / "python"
    _run([UV, "pip", "install", "--python", py, "--require-hashes", "--no-deps", "-r", tmp / "req.txt"], env=env)
    _run([UV, "pip", "install", "--python", py, "--no-deps", wheel], env=env)
    return tmp / "venv" / "bin"


def test_wheel_ships_its_data_and_imports_outside_the_source_tree(installed, tmp_path):
    code = ("import json, neuron_atlas, app, backend; from neuron_atlas import resources as r; "
            "print(json.dumps([neuron_atlas.__file__, app.__file__, str(r.demo_model_dir()), "
            "sorted(p.name for p in r.assets_dir().iterdir()), r.packaged_configs()]))")
    out = json.loads(_run([installed / "python", "-c", code], cwd=tmp_path).stdout)
    for path in out[:3]:
        assert str(ROOT) not in path and "site-packages" in path, f"{path} is not the installed copy"
    assert {"app.js", "style.css", "demo-model"} <= set(out[3])
    assert out[4] == ["demo", "fleurs-102", "fleurs-large", "tiny"]
    done = _run([installed / "neuron-atlas", "sites", "--model", "demo"], cwd=tmp_path, timeout=300)
    assert "units" in done.stdout and "stack" in done.stdout


def test_installed_serve_and_app_report_the_demo_model_and_serve_compressed_scripts(installed, tmp_path):
    bport, aport = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEURON_ATLAS_")}
    procs = []
    try:
        procs.append(subprocess.Popen([installed / "neuron-atlas", "serve", "--port", str(bport), "--model", "demo",
                                       "--store", tmp_path / "none.duckdb", "--findings-db", tmp_path / "f.sqlite"],
                                      cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        _wait(f"http://127.0.0.1:{bport}/healthz", procs[-1], 180)
        deadline = time.monotonic() + 180
        while (model := json.loads(_get(f"http://127.0.0.1:{bport}/capabilities")[2])["model"])["state"] == "loading":
            assert time.monotonic() < deadline, "the demo model did not load"
            time.sleep(0.5)
        assert model["state"] == "ready" and model["loaded"] == "demo" and model["fallback_note"] is None, model
        procs.append(subprocess.Popen([installed / "neuron-atlas", "app", "--port", str(aport), "--workers", "1",
                                       "--backend-url", f"http://127.0.0.1:{bport}"],
                                      cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        _wait(f"http://127.0.0.1:{aport}/healthz", procs[-1], 120)
        status, _, page = _get(f"http://127.0.0.1:{aport}/")
        assert status == 200 and b"app.js" in page, "the dashboard page links its browser-side callbacks"
        status, headers, body = _get(f"http://127.0.0.1:{aport}/assets/app.js", {"Accept-Encoding": "deflate"})
        shipped = (ROOT / "assets" / "app.js").read_bytes()
        assert status == 200 and headers.get("Content-Encoding") == "deflate" and zlib.decompress(body) == shipped
        renderer = next(s for s in re.findall(r'src="([^"]+)"', page.decode()) if "dash_renderer" in s)
        _, plain_headers, plain = _get(f"http://127.0.0.1:{aport}{renderer}")
        _, headers, body = _get(f"http://127.0.0.1:{aport}{renderer}", {"Accept-Encoding": "gzip"})
        assert headers.get("Content-Encoding") == "gzip" and gzip.decompress(body) == plain
        assert len(body) < len(plain) / 3
    finally:
        stop_processes(procs, timeout=20)
