"""The dashboard's partial plotly.js bundle (assets/plotly-partial.min.js): it must register every trace type the
dashboard's figures draw, and be the plotly.js release that plotly.py writes figures for."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import plotly.graph_objects as go
from plotly.basedatatypes import BaseTraceType
from plotly.offline import get_plotlyjs_version

from neuron_atlas.resources import assets_dir

ROOT = Path(__file__).resolve().parents[2]
ENTRY = ROOT / "tools" / "plotly-bundle" / "entry.js"
BUNDLE = assets_dir() / "plotly-partial.min.js"
TRACE_CLASSES = {name: getattr(go, name) for name in dir(go)
                 if isinstance(getattr(go, name), type) and issubclass(getattr(go, name), BaseTraceType)}
TRACE_TYPES = {cls().type for cls in TRACE_CLASSES.values()}


def registered_traces() -> set[str]:
    return set(re.findall(r"require\('plotly\.js/lib/([a-z0-9]+)'\)", ENTRY.read_text()))


def drawn_traces() -> dict[str, list[str]]:
    """Trace types the app's code creates (`go.Heatmap(...)`, `{"type": "box"}`, `dict(type="bar")`),
    with where: trace type -> ["file:line", ...]."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "app").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            kind = None
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "go" \
                    and node.attr in TRACE_CLASSES:
                kind = TRACE_CLASSES[node.attr]().type
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values):
                    if isinstance(key, ast.Constant) and key.value == "type" and isinstance(value, ast.Constant) \
                            and value.value in TRACE_TYPES:
                        kind = value.value
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
                for kw in node.keywords:
                    if kw.arg == "type" and isinstance(kw.value, ast.Constant) and kw.value.value in TRACE_TYPES:
                        kind = kw.value.value
            if kind:
                found.setdefault(kind, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_every_drawn_trace_type_is_in_the_bundle() -> None:
    drawn = drawn_traces()
    assert {"heatmap", "bar", "scatter"} <= set(drawn), "the scan no longer finds the dashboard's figures"
    missing = {kind: where for kind, where in drawn.items() if kind not in registered_traces()}
    assert not missing, (f"trace types drawn but not in the partial plotly.js bundle: {missing}; add them to "
                         "tools/plotly-bundle/entry.js and run `make plotly-bundle`")


def test_bundle_is_the_plotly_js_release_plotly_py_targets() -> None:
    banner = BUNDLE.read_text(encoding="utf-8")[:300]
    match = re.search(r"plotly\.js v(\d+\.\d+\.\d+)", banner)
    assert match, "assets/plotly-partial.min.js has no version banner; rebuild it with `make plotly-bundle`"
    assert match.group(1) == get_plotlyjs_version()
    lock = (ROOT / "tools" / "plotly-bundle" / "package-lock.json").read_text()
    assert f'"node_modules/plotly.js": {{\n      "version": "{get_plotlyjs_version()}"' in lock
    assert "var Plotly=" in BUNDLE.read_text(encoding="utf-8")[:2000]
