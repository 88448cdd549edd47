"""The lab's token attribution: its request from the URL state, what a finding keeps of its answer, and its views
(estimate-vs-actual scatter, top units, per-layer table, the output with the attributed token marked).

Pure functions of data (no callbacks): the lab panel (`app.pages.lab_attribution`), findings (`app.views`) and tests
share them.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from dash import html

from app import ui
from app.components.common import Provenance
from app.components.figures import _finish
from app.lab_logic import LabInputError, build_request

PATH = "/attribution"
SIDES = ("baseline", "intervened")
#: The verification count a new panel asks for (the backend's default too).
DEFAULT_VERIFY = 20
#: Rows of the top-units table.
TOP_ROWS = 30


def attribution_request(s: Mapping[str, Any], spec: Mapping[str, Any] | None, concept: Mapping[str, Any] | None,
                        versus_token_id: int | None = None, audio_id: str | None = None) -> dict[str, Any]:
    """The JSON body of POST /attribution for the lab state `s` (keys at_*), its run spec and composer concept (an
    uploaded or recorded input by its backend `audio_id`)."""
    if s.get("at_tok") is None:
        raise LabInputError("attribution", "token: choose the index of an output token to attribute")
    body = {k: v for k, v in build_request(s, spec, audio_id).items() if k != "return_speech"}
    if s["at_side"] == "intervened" and not body.get("spec"):
        raise LabInputError("attribution", "side: the intervened output needs units; choose a concept set or the basket")
    reference = s["at_ref"]
    body.update(side=s["at_side"], token_index=int(s["at_tok"]), reference={"kind": reference}, verify=int(s["at_n"]))
    if reference != "zero":
        if concept is None:
            raise LabInputError("attribution", f"reference: {reference} reads a concept's statistics; choose a concept "
                                               "in the composer or the reference zero")
        body["reference_concept_id"] = int(concept["concept_id"])
    if versus_token_id is not None:
        body["versus_token_id"] = int(versus_token_id)
    return body


def versus_token(intervention: Mapping[str, Any], s: Mapping[str, Any]) -> int:
    """The other output's token at the attributed index (the log-odds' second token), from an intervention answer."""
    other = "intervened" if s["at_side"] == "baseline" else "baseline"
    ids = (intervention.get(other) or {}).get("token_ids") or []
    index = int(s["at_tok"])
    if index >= len(ids):
        raise LabInputError("attribution", f"versus: the {other} output has {len(ids)} tokens, none at index {index}; "
                                           "attribute the log-probability instead")
    return int(ids[index])


def attribution_call(client: Any, s: Mapping[str, Any], spec: Mapping[str, Any] | None,
                     concept: Mapping[str, Any] | None, intervention_body: Mapping[str, Any],
                     audio_id: str | None = None) -> dict[str, Any]:
    """The backend call behind the lab's attribution view (with `at_vs`, the other output's token comes from the run's
    intervention answer, which the backend serves from its cache after a Run)."""
    versus = versus_token(client.intervene(intervention_body), s) if s.get("at_vs") else None
    body = attribution_request(s, spec, concept, versus, audio_id)
    return {"method": "POST", "path": PATH, "label": "attribution", "body": body}


def attribution_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """What a finding keeps of an answer: everything but the timing and whether it came from the cache."""
    return {k: v for k, v in result.items() if k not in ("timing_s", "cached", "store_version")}


def verified_units(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Basket entries of the verified units (site and channel from the top list), for the answer's run."""
    rows = {u["unit_id"]: u for u in result.get("top") or []}
    out = []
    for v in (result.get("verification") or {}).get("units") or []:
        u = rows.get(v["unit_id"], {})
        out.append({"unit_id": int(v["unit_id"]), "site": u.get("site"), "channel": u.get("channel"),
                    "run": result.get("run_id")})
    return out


def add_to_basket(basket: Sequence[Mapping[str, Any]] | None, units: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The basket with `units` added (kept to their run, as the unit page keeps it; repeats dropped)."""
    run = units[0]["run"] if units else None
    out = [dict(b) for b in basket or () if b.get("run") == run]
    have = {b["unit_id"] for b in out}
    out += [dict(u) for u in units if u["unit_id"] not in have]
    return out


def objective_label(result: Mapping[str, Any]) -> str:
    token = result.get("token") or {}
    versus = token.get("versus")
    name = f"log p({token.get('text')})"
    return f"{name} − log p({versus['text']})" if versus else name


def scatter(result: Mapping[str, Any], prov: Provenance) -> go.Figure:
    """Estimated vs actual change of each verified unit (forced alone), with the diagonal and the correlations."""
    v = result.get("verification") or {}
    units = v.get("units") or []
    est = [u["estimate"] for u in units]
    act = [u["actual"] for u in units]
    fig = go.Figure()
    if units:
        lo, hi = min(est + act), max(est + act)
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="estimate = actual",
                                 line=dict(color="#9aa5b1", dash="dash")))
        fig.add_trace(go.Scatter(x=est, y=act, mode="markers", name="one unit forced", marker=dict(size=9),
                                 text=[f"unit {u['unit_id']}" for u in units],
                                 hovertemplate="%{text}<br>estimate %{x:.4g}<br>actual %{y:.4g}<extra></extra>"))
    r, rho = v.get("pearson"), v.get("spearman")
    corr = "n/a" if r is None else f"r = {r:.3f}, ρ = {rho:.3f}"
    title = (f"Top {v.get('n', 0)} units: estimated vs actual change of {objective_label(result)} ({corr}); "
             f"all together: est. {(v.get('all') or {}).get('estimate', 0):.3g}, actual {(v.get('all') or {}).get('actual', 0):.3g}")
    return _finish(fig, title, prov, height=400, x_title="estimated change (gradient × (reference − activation))",
                   y_title="actual change (forced)")


def output_tokens(result: Mapping[str, Any], token_button=None) -> html.Div:
    """The side's output tokens, the attributed one marked; `token_button(i, text)` makes each clickable."""
    tokens = (result.get("output") or {}).get("tokens") or []
    index = (result.get("token") or {}).get("index")
    parts = []
    for i, t in enumerate(tokens):
        cls = "token token-attributed" if i == index else "token"
        parts.append(token_button(i, t, cls) if token_button else html.Span(t, className=cls, title=f"token {i}"))
    return html.Div(parts, className="token-row", **({"id": "lab-at-tokens"} if token_button else {}))


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.4g}"


def top_table(result: Mapping[str, Any], rows: int = TOP_ROWS) -> html.Table:
    actual = {u["unit_id"]: u["actual"] for u in (result.get("verification") or {}).get("units") or []}
    run = result.get("run_id") or "latest"
    head = ["unit", "stack", "layer", "component", "estimate", "actual (forced)", "activation", "reference"]
    body = [html.Tr([html.Td(ui.unit_link(run, u)), html.Td(u["stack"]), html.Td(u["layer"], className="num"),
                     html.Td(u["component"]), html.Td(_num(u["estimate"]), className="num"),
                     html.Td(_num(actual.get(u["unit_id"])), className="num"), html.Td(_num(u["activation"]), className="num"),
                     html.Td(_num(u.get("reference")), className="num")])
            for u in (result.get("top") or [])[:rows]]
    return html.Table([html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(body)], className="table",
                      id="lab-at-top")


def layer_table(result: Mapping[str, Any]) -> html.Table:
    head = ["stack", "layer", "units scored", "Σ estimate", "Σ |estimate|", "largest |estimate|"]
    body = [html.Tr([html.Td(row["stack"]), html.Td(row["layer"], className="num"), html.Td(row["n_units"], className="num"),
                     html.Td(_num(row["sum_estimate"]), className="num"), html.Td(_num(row["sum_abs_estimate"]), className="num"),
                     html.Td(", ".join(f"{u['site'].split('.', 1)[-1]}[{u['channel']}] {u['estimate']:.3g}" for u in row["top"]))])
            for row in result.get("layers") or []]
    return html.Table([html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(body)], className="table",
                      id="lab-at-layers")


def headline(result: Mapping[str, Any]) -> str:
    token = result.get("token") or {}
    ref = result.get("reference") or {}
    of = f" of concept {ref['concept_id']}" if ref.get("concept_id") is not None else ""
    return (f"{result.get('side')} output, token {token.get('index')} {token.get('text')!r}: p = {token.get('prob', 0):.3f}"
            f" · objective {objective_label(result)} = {token.get('objective', 0):.3f} · reference {ref.get('kind')}{of}"
            f" · {result.get('n_units_scored', 0):,} units scored")


def attribution_view(result: Mapping[str, Any], prov: Provenance, token_button=None, fig_id: str = "lab-at-scatter") -> list[Any]:
    """The attribution answer drawn: headline, output tokens, scatter, top units, per-layer table."""
    return [
        html.P(headline(result), className="muted", id="lab-at-headline"),
        output_tokens(result, token_button),
        ui.graph(fig_id, scatter(result, prov)),
        html.H3("Top units by |estimated change|"),
        top_table(result),
        html.Details([html.Summary("Per stack and layer"), layer_table(result)]),
    ]
