"""Page state as URL query strings: each page declares its keys (type, default, allowed values) once here.

`parse` turns a query (as Dash pages hand it to `layout(**query)`) into a complete, typed state and a list of plain
problems for values it had to replace; `href` writes a state back as `path?key=value&...` with every key in a fixed
order, so one view has one URL and opening it in a fresh browser reproduces it.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from app.client import SET_KINDS, STATISTICS, TASKS

STORED_SET_KINDS = tuple(k for k in SET_KINDS if k != "random")
COMPONENT_CHOICES = ("all", "self-attn", "cross-attn", "ffn", "conv", "norm", "adapter")
ROLES = ("representation", "control")
STATS = ("unit_id", "ap", "on_p50", "on_p90", "off_mean", "off_p50")
VALUES = (*STATISTICS, "zero")
SPEARMAN_SCOPES = ("text_decoder", "text_decoder/self-attn", "text_decoder/cross-attn", "text_decoder/ffn",
                   "text_decoder/layer")


@dataclass(frozen=True)
class Key:
    """One URL state key: its type (`str`, `int`, `float`, `ints`), default, allowed values and numeric bounds."""

    name: str
    kind: str
    default: Any = None
    choices: tuple | None = None
    lo: float | None = None
    hi: float | None = None
    max_len: int = 300


@dataclass(frozen=True)
class PageSpec:
    name: str
    path: str
    keys: tuple[Key, ...]

    def key(self, name: str) -> Key:
        for k in self.keys:
            if k.name == name:
                return k
        raise KeyError(f"page {self.name} has no state key {name!r}")


PAGES: dict[str, PageSpec] = {
    "overview": PageSpec("overview", "/", (
        Key("run", "str"),
        Key("tab", "str", "selectivity", ("selectivity", "modality", "concentration", "crossmodal", "interventions")),
        Key("step", "int", None, lo=0, hi=4096),
        Key("k", "int", None, lo=1, hi=2**31 - 1),
        Key("kind", "str", "language", ("language", "multimodal_language", "modality")),
        Key("task", "str", None, max_len=64),
        Key("set", "str", "top", ("ap", *STORED_SET_KINDS)),
        Key("thr", "float", 0.9, lo=0.0, hi=1.0),
        Key("comp", "str", "all", COMPONENT_CHOICES),
        Key("scale", "str", "count", ("count", "fraction")),
        Key("mm_role", "str", "representation", ROLES),
        Key("c_role", "str", "representation", ROLES),
        Key("c_stack", "str", "decoder", ("decoder", "encoder")),
        Key("c_metric", "str", "gini", ("gini", "top1_share")),
        Key("c_cell", "str", None, max_len=100),
        Key("x_role", "str", "representation", ROLES),
        Key("x_set", "str", "top", STORED_SET_KINDS),
        Key("x_metric", "str", "c_over_k", ("count", "c_over_k", "jaccard")),
        Key("x_scope", "str", "text_decoder", SPEARMAN_SCOPES),
        Key("x_layer", "int", None, lo=0, hi=4096),
        Key("x_cell", "str", None, max_len=100),
        Key("e_exp", "str", "ablation", ("ablation", "steering", "dose")),
        Key("e_task", "str", "en2x_t2tt", TASKS),
    )),
    "layer": PageSpec("layer", "/layer", (
        Key("run", "str"),
        Key("stack", "str", "text_decoder", ("speech_encoder", "text_encoder", "text_decoder")),
        Key("layer", "int", 0, lo=0, hi=4096),
        Key("concept", "int", None, lo=0, hi=2**31 - 1),
        Key("sort", "str", "ap", STATS),
        Key("order", "str", "desc", ("asc", "desc")),
        Key("comp", "str", "all", COMPONENT_CHOICES),
        Key("site", "str", None),
        Key("min_ap", "float", None, lo=0.0, hi=1.0),
        Key("max_ap", "float", None, lo=0.0, hi=1.0),
    )),
    "unit": PageSpec("unit", "/unit", (
        Key("run", "str"),
        Key("unit", "int", 0, lo=0, hi=2**31 - 1),
        Key("concept", "int", None, lo=0, hi=2**31 - 1),
        Key("step", "int", None, lo=0, hi=4096),
        Key("task", "str", None, TASKS),
        Key("sent", "str", None, max_len=200),
        Key("lang", "str", None, max_len=16),
        Key("offset", "int", 0, lo=0, hi=2**31 - 1),
        Key("per", "int", 20, lo=5, hi=50),
    )),
    "lab": PageSpec("lab", "/lab", (
        Key("run", "str"),
        Key("in", "str", "example", ("example", "text", "upload", "mic")),
        Key("ex", "str", None, max_len=500),
        Key("mod", "str", "text", ("text", "speech")),
        Key("text", "str", "", max_len=2000),
        Key("src", "str", "eng", max_len=16),
        Key("tgt", "str", None, max_len=16),
        Key("us", "str", "concept", ("concept", "basket")),
        Key("role", "str", "control", ROLES),
        Key("umod", "str", "speech", ("speech", "text", "multimodal")),
        Key("ulang", "str", None, max_len=16),
        Key("step", "int", None, lo=0, hi=4096),
        Key("set", "str", "top", SET_KINDS),
        Key("k", "int", 10, lo=1, hi=100_000),
        Key("stack", "str", "text_decoder", ("text_decoder", "encoder", "all")),
        Key("value", "str", "on_p50", (*VALUES, "scale")),
        Key("units", "ints", ()),
        Key("max_new", "int", 32, lo=1, hi=1024),
        Key("go", "int", 0, lo=0, hi=1),
        Key("sweep", "int", 0, lo=0, hi=1),
        Key("at_tok", "int", None, lo=0, hi=1024),
        Key("at_side", "str", "baseline", ("baseline", "intervened")),
        Key("at_ref", "str", "on_p50", VALUES),
        Key("at_vs", "int", 0, lo=0, hi=1),
        Key("at_n", "int", 20, lo=0, hi=100),
        # the dial (issue 19): spec strength, scale factor, decoder positions and decoding steps, a probe token
        Key("strength", "float", 1.0, lo=-100.0, hi=100.0),
        Key("factor", "float", 2.0, lo=-1000.0, hi=1000.0),
        Key("pos", "str", "all", ("all", "last", "range")),
        Key("pos_from", "int", 2, lo=0, hi=4096),
        Key("pos_to", "int", None, lo=1, hi=4096),
        Key("decode_steps", "str", "all", max_len=200),
        Key("probe", "str", "", max_len=100),
        # what fires (ranking) and the k sweep's inputs and random seeds
        Key("fires", "int", 0, lo=0, hi=1),
        Key("rank", "str", "z", ("z", "activation", "magnitude")),
        Key("sweep_inputs", "int", 3, lo=1, hi=8),
        Key("seeds", "int", 3, lo=1, hi=8),
    )),
    "compare": PageSpec("compare", "/compare", (
        Key("run", "str"),
        Key("run_b", "str"),
        Key("step", "int", None, lo=0, hi=4096),
        Key("step_b", "int", None, lo=0, hi=4096),
        Key("kind", "str", "language", ("all", "language", "multimodal_language", "modality")),
        Key("task", "str", None, max_len=64),
        Key("stack", "str", "text_decoder", ("speech_encoder", "text_encoder", "text_decoder")),
        Key("thr", "float", 0.9, lo=0.0, hi=1.0),
        Key("concept", "int", None, lo=0, hi=2**31 - 1),
        Key("k", "int", None, lo=1, hi=2**31 - 1),
    )),
    "bridge": PageSpec("bridge", "/bridge", (
        Key("run", "str"),
        Key("in", "str", "example", ("example", "upload", "mic")),
        Key("aid", "str", None, max_len=64),
        Key("ex", "str", None, max_len=500),
        Key("tgt", "str", None, max_len=16),
        Key("layers", "ints", ()),
        Key("heads", "ints", ()),
        Key("unit", "int", None, lo=0, hi=2**31 - 1),
        Key("t0", "float", None, lo=0.0, hi=3600.0),
        Key("t1", "float", None, lo=0.0, hi=3600.0),
        Key("tok", "int", None, lo=0, hi=4096),
        Key("max_new", "int", 32, lo=1, hi=1024),
    )),
    "findings": PageSpec("findings", "/findings", (
        Key("id", "str", None, max_len=64),
        Key("offset", "int", 0, lo=0, hi=2**31 - 1),
        Key("per", "int", 20, lo=5, hi=50),
    )),
}

PAGE_OF_PATH = {spec.path: name for name, spec in PAGES.items()}


def _first(value: Any) -> Any:
    return value[-1] if isinstance(value, (list, tuple)) and value else value


def _coerce(key: Key, raw: Any) -> Any:
    """The typed value of one raw query value; raises ValueError with a plain reason."""
    if key.kind == "ints":
        text = ",".join(raw) if isinstance(raw, (list, tuple)) else str(raw)
        parts = [p for p in text.replace(" ", "").split(",") if p]
        values = []
        for p in parts:
            if not p.lstrip("-").isdigit():
                raise ValueError(f"{p!r} is not a whole number")
            values.append(int(p))
        if any(v < 0 for v in values):
            raise ValueError("unit ids are not negative")
        return tuple(dict.fromkeys(values))
    raw = _first(raw)
    if raw is None or raw == "":
        if key.kind == "str" and key.default == "":
            return ""
        return None
    text = str(raw)
    if key.kind == "str":
        if len(text) > key.max_len:
            raise ValueError(f"longer than {key.max_len} characters")
        if key.choices and text not in key.choices:
            raise ValueError(f"expected one of {', '.join(key.choices)}")
        return text
    if key.kind == "int":
        if not text.lstrip("-").isdigit():
            raise ValueError("not a whole number")
        value: float = int(text)
    elif key.kind == "float":
        try:
            value = float(text)
        except ValueError:
            raise ValueError("not a number") from None
        if not math.isfinite(value):
            raise ValueError("not a finite number")
    else:
        raise ValueError(f"unknown key type {key.kind}")
    if key.lo is not None and value < key.lo or key.hi is not None and value > key.hi:
        raise ValueError(f"outside {key.lo:g}..{key.hi:g}")
    return value


def parse(page: str, query: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A page's full state from a query mapping (unknown keys ignored); problems name each replaced key and value."""
    spec = PAGES[page]
    state: dict[str, Any] = {}
    problems: list[str] = []
    for key in spec.keys:
        if key.name not in query:
            state[key.name] = key.default
            continue
        try:
            state[key.name] = _coerce(key, query[key.name])
        except ValueError as exc:
            state[key.name] = key.default
            problems.append(f"{key.name}={_first(query[key.name])!s:.60}: {exc}; using the default")
    return state, problems


def query_items(page: str, state: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The state as ordered (key, text) pairs; None and empty values are left out."""
    out = []
    for key in PAGES[page].keys:
        value = state.get(key.name, key.default)
        if value is None or value == "" or (isinstance(value, (list, tuple)) and not value):
            continue
        if key.kind == "ints":
            text = ",".join(str(int(v)) for v in value)
        elif key.kind == "float":
            text = f"{float(value):g}"
        else:
            text = str(value)
        out.append((key.name, text))
    return out


def href(page: str, state: Mapping[str, Any]) -> str:
    """`path?query` of a page state (the canonical URL of the view)."""
    items = query_items(page, state)
    path = PAGES[page].path
    return path + ("?" + urlencode(items) if items else "")


def page_of(path: str) -> str | None:
    """The page name of a URL path (trailing slash tolerated), or None."""
    clean = "/" + path.strip("/") if path and path != "/" else "/"
    return PAGE_OF_PATH.get(clean)
