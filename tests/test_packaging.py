"""Packaging: the lock agrees with pyproject.toml, every imported package is declared, and the CLI and the dashboard
start without importing torch."""
from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCK = tomllib.loads((ROOT / "uv.lock").read_text())
FIRST_PARTY = {"app", "backend", "precompute", "neuron_atlas", "tests", "benchmarks"}
#: Imported only behind a clear "install it" message, for an optional identifier (fasttext:/path/to/lid.176.bin).
OPTIONAL_IMPORTS = {"fasttext"}


def _declared() -> set[tuple[str, str, str]]:
    """(name, specifier, where) of every requirement in pyproject.toml; where = '' | 'extra:X' | 'group:X'."""
    out = {(canonicalize_name(Requirement(r).name), str(Requirement(r).specifier), "") for r in PROJECT["project"]["dependencies"]}
    for extra, reqs in PROJECT["project"]["optional-dependencies"].items():
        out |= {(canonicalize_name(Requirement(r).name), str(Requirement(r).specifier), f"extra:{extra}") for r in reqs}
    for group, reqs in PROJECT["dependency-groups"].items():
        out |= {(canonicalize_name(Requirement(r).name), str(Requirement(r).specifier), f"group:{group}") for r in reqs}
    return out


def _root_package() -> dict:
    return next(p for p in LOCK["package"] if p["name"] == PROJECT["project"]["name"])


def _locked_requirements() -> set[tuple[str, str, str]]:
    meta = _root_package()["metadata"]
    out = set()
    for r in meta["requires-dist"]:
        marker = r.get("marker", "")
        where = f"extra:{marker.split(chr(39))[1]}" if marker.startswith("extra ==") else ""
        out.add((canonicalize_name(r["name"]), r.get("specifier", ""), where))
    for group, reqs in meta.get("requires-dev", {}).items():
        out |= {(canonicalize_name(r["name"]), r.get("specifier", ""), f"group:{group}") for r in reqs}
    return out


def test_lock_was_made_from_this_pyproject():
    """`make lock` after editing pyproject.toml: the lock records the requirements it was resolved for."""
    declared, locked = _declared(), _locked_requirements()
    assert declared == locked, (f"pyproject.toml and uv.lock disagree (run `make lock`): only in pyproject "
                                f"{sorted(declared - locked)}, only in the lock {sorted(locked - declared)}")


def test_every_pin_is_the_locked_version_and_torch_pairs_with_torchaudio():
    versions = {canonicalize_name(p["name"]): p["version"] for p in LOCK["package"]}
    for name, spec, where in _declared():
        assert spec.startswith("=="), f"{name} ({where or 'runtime'}) is not pinned exactly: {spec!r}"
        assert versions[name] == spec[2:], f"{name}: pyproject pins {spec}, the lock has {versions[name]}"
    assert versions["torch"] == versions["torchaudio"] == "2.11.0", "torch and torchaudio must be the same release"
    for name in versions:
        entry = next(p for p in LOCK["package"] if canonicalize_name(p["name"]) == name)
        if "sdist" in entry or "wheels" in entry:
            files = entry.get("wheels", []) + ([entry["sdist"]] if "sdist" in entry else [])
            assert all(f.get("hash", "").startswith("sha256:") for f in files), f"{name}: a file without its hash"


def _imports(folder: Path) -> set[str]:
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_every_imported_package_is_declared():
    """Runtime code imports only declared runtime packages; tests and benchmarks may also use the test extra."""
    dists = packages_distributions()
    runtime = {n for n, _, where in _declared() if where in ("", "extra:ray")}
    test = runtime | {n for n, _, where in _declared() if where == "extra:test"}
    for folders, allowed in ((("app", "backend", "precompute", "neuron_atlas"), runtime), (("tests", "benchmarks"), test)):
        third_party = set().union(*(_imports(ROOT / f) for f in folders)) - FIRST_PARTY - set(sys.stdlib_module_names)
        for module in sorted(third_party - OPTIONAL_IMPORTS):
            owners = {canonicalize_name(d) for d in dists.get(module, [])}
            assert owners, f"{module} is imported but no installed distribution provides it"
            assert owners & allowed, f"{module} (from {sorted(owners)}) is imported in {folders} but not declared"


def _fresh_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_cli_help_and_parser_import_neither_torch_nor_transformers():
    out = _fresh_python("import sys; from neuron_atlas.cli import build_parser; build_parser().format_help(); "
                        "print(sorted(m for m in ('torch', 'transformers', 'duckdb') if m in sys.modules))")
    assert out == "[]", f"`neuron-atlas --help` imports {out}"
    done = subprocess.run([sys.executable, "-m", "neuron_atlas.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "precompute" in done.stdout


def test_dashboard_process_imports_no_torch():
    out = _fresh_python("import sys; import app.wsgi; "
                        "print(sorted(m for m in ('torch', 'transformers', 'backend', 'precompute') if m in sys.modules))")
    assert out == "[]", f"the dashboard imports {out}"


def test_the_cjk_font_css_names_exactly_the_shipped_pieces():
    import re

    fonts = ROOT / "assets" / "fonts"
    refs = set(re.findall(r"url\(\./([^)]+)\)", (fonts / "noto-sans-cjk.css").read_text()))
    assert refs == {p.name for p in fonts.glob("*.woff2")}
    assert (fonts / "OFL.txt").is_file(), "the font's licence ships with it"
