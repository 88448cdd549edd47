"""The axe-core the accessibility test injects (tests/browser/vendor/axe.min.js, made by `make axe-core`): it is the
release tools/axe-core/package-lock.json pins, unedited, with its MPL-2.0 notice kept. Needs no browser."""
from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "tests" / "browser" / "vendor"
LOCK = ROOT / "tools" / "axe-core" / "package-lock.json"
PACKAGE = ROOT / "tools" / "axe-core" / "package.json"


def locked_version() -> str:
    """The axe-core version the lock installs, checked against the exact pin of package.json."""
    pinned = json.loads(PACKAGE.read_text())["devDependencies"]["axe-core"]
    locked = json.loads(LOCK.read_text())["packages"]["node_modules/axe-core"]["version"]
    assert pinned == locked, f"package.json pins axe-core {pinned}, the lock has {locked}: run npm install there"
    return locked


def test_vendored_axe_is_the_locked_release_with_its_licence() -> None:
    script = (VENDOR / "axe.min.js").read_text(encoding="utf-8")
    banner = re.match(r"/\*! axe v(\d+\.\d+\.\d+)\n", script)
    assert banner, "tests/browser/vendor/axe.min.js has no axe version banner; rebuild it with `make axe-core`"
    assert banner.group(1) == locked_version(), "the vendored axe.min.js is not the locked axe-core: `make axe-core`"
    assert int(banner.group(1).split(".")[0]) >= 4
    assert "Mozilla Public\n * License, v. 2.0" in script[:1000], "axe-core's MPL-2.0 header must stay in the file"
    assert "Mozilla Public License, version 2.0" in (VENDOR / "axe-core-LICENSE").read_text()
    assert (VENDOR / "axe-core-LICENSE-3RD-PARTY.txt").is_file()


def test_vendored_axe_matches_the_hash_axe_core_published() -> None:
    """build.js checked the file against axe-core's sri-history.json and wrote that hash beside it; a file edited or
    rebuilt by hand since then no longer matches."""
    digest = hashlib.sha256((VENDOR / "axe.min.js").read_bytes()).digest()
    sri = "sha256-" + base64.b64encode(digest).decode()
    assert sri == (VENDOR / "axe.min.js.sri").read_text().strip()
