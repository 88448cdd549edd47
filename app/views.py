"""What a finding freezes of a view: the backend calls behind it, their answers, and how to replay or render them.

A view's data is the answers of a short list of backend calls (`view_calls`). Saving a finding stores the calls and
their answers; re-running replays the calls and compares (`compare`); "copy as Python" writes a script that makes the
same calls over HTTP (`python_script`); the finding card draws the stored answers with the page's figure builders
(`render`), so the cached result shows at once.
"""
from __future__ import annotations

import json
import math
import pprint
from collections.abc import Mapping, Sequence
from typing import Any

from dash import html

from app import ui
from app.client import AtlasClient
from app import lab_logic
from app.pages import bridge as bridge_page
from app.components import attribution
from app.pages import compare as compare_page
from app.pages import overview as overview_page
from app.components import figures as fg
from app.components.common import Provenance
from app.components.diff import diff_view

#: Floats are compared to this relative tolerance (JSON round trips and summation order).
REL_TOL = 1e-9
MAX_DIFFERENCES = 20


class ViewError(ValueError):
    """A view cannot be frozen or replayed (e.g. an uploaded audio input, which links do not carry)."""


def _heatmap_params(s: Mapping[str, Any], stack: str, **extra: Any) -> dict[str, Any]:
    params = {"stack": stack, "mode": s["set"], "threshold": s["thr"] if s["set"] == "ap" else None,
              "k": s["k"] if s["set"] != "ap" else None}
    params.update(extra)
    return {k: v for k, v in params.items() if v is not None}


def view_calls(client: AtlasClient, page: str, s: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The backend calls whose answers make up a view (run-scoped paths use the concrete run id)."""
    run = s.get("run")
    base = f"/runs/{run}"
    if page == "overview":
        tab = s["tab"]
        if tab == "selectivity":
            concepts = client.concepts(run, kind=s["kind"], task=s["task"], step=s["step"])
            stacks = [x for x in ("speech_encoder", "text_encoder", "text_decoder")
                      if any(x in (c.get("stacks") or []) for c in concepts)]
            comp = None if s["comp"] == "all" else s["comp"]
            return [{"method": "GET", "path": f"{base}/heatmap", "label": f"heatmap {x}",
                     "params": _heatmap_params(s, x, component=comp, kind=s["kind"], task=s["task"], step=s["step"])}
                    for x in stacks]
        if tab == "modality":
            task = {"representation": "s2tt+t2tt", "control": "en2x_s2tt+en2x_t2tt"}[s["mm_role"]]
            pooled = [c for c in client.concepts(run, kind="modality", task=task, step=s["step"]) if c.get("language") is None]
            if not pooled:
                raise ViewError("this run has no pooled modality concept for that role and step")
            return [{"method": "GET", "path": f"{base}/heatmap", "label": "modality map",
                     "params": _heatmap_params(s, "text_decoder", concept_ids=[int(pooled[0]["concept_id"])],
                                               group="site")}]
        if tab == "concentration":
            speech_task, text_task = {"representation": ("s2tt", "t2tt"), "control": ("en2x_s2tt", "en2x_t2tt")}[s["c_role"]]
            stacks = (("text_decoder", "text_decoder") if s["c_stack"] == "decoder" else ("speech_encoder", "text_encoder"))
            return [{"method": "GET", "path": f"{base}/concentration", "label": f"concentration {m}",
                     "params": {"stack": stk, "step": s["step"], "task": task, "metric": s["c_metric"]}}
                    for m, stk, task in (("speech", stacks[0], speech_task), ("text", stacks[1], text_task))]
        if tab == "crossmodal":
            calls = [
                {"method": "GET", "path": f"{base}/overlap", "label": "overlap",
                 "params": {"role": s["x_role"], "step": s["step"], "set_kind": s["x_set"], "k": s["k"], "metric": s["x_metric"]}},
                {"method": "GET", "path": f"{base}/spearman", "label": "spearman",
                 "params": {"role": s["x_role"], "step": s["step"], "scope": s["x_scope"]}},
            ]
            if s.get("x_cell"):
                try:
                    params = overview_page.shared_units_params(dict(s))
                except ValueError as exc:
                    raise ViewError(str(exc)) from None
                calls.append({"method": "GET", "path": f"{base}/overlap/units", "label": "shared units", "params": params})
            return calls
        if tab == "interventions":
            return [{"method": "GET", "path": f"{base}/interventions", "label": "batch interventions",
                     "params": {"input_task": s["e_task"]}}]
        raise ViewError(f"tab: unknown overview tab {tab!r}")
    if page == "layer":
        params = {"concept_id": s["concept"], "sort": s["sort"], "order": s["order"],
                  "component": None if s["comp"] == "all" else s["comp"], "site": s["site"],
                  "min_ap": s["min_ap"], "max_ap": s["max_ap"], "limit": 50, "offset": 0}
        return [{"method": "GET", "path": f"{base}/layers/{s['stack']}/{int(s['layer'])}/units", "label": "layer units",
                 "params": {k: v for k, v in params.items() if v is not None}}]
    if page == "unit":
        return [{"method": "GET", "path": f"{base}/units/{int(s['unit'])}", "label": "unit", "params": {}}]
    if page == "compare":
        return compare_page.view_calls(client, s)
    if page == "bridge":
        return bridge_page.view_calls(client, s)
    if page == "lab":
        if s["in"] in ("upload", "mic"):
            raise ViewError("uploaded or recorded audio is not stored with findings, so this result cannot be replayed")
        concept = _lab_concept(client, s)
        refs = lab_logic.unit_refs(list(s.get("units") or ()), client.sites(run)) if s["us"] == "basket" else None
        spec = lab_logic.build_spec(s, concept, refs)
        body = lab_logic.build_request(s, spec)
        calls = [{"method": "POST", "path": "/interventions", "label": "intervention", "body": body}]
        if s.get("at_tok") is not None:
            calls.append(attribution.attribution_call(client, s, spec, concept, body))
        return calls
    raise ViewError(f"page {page!r} has no data to freeze")


def _lab_concept(client: AtlasClient, s: Mapping[str, Any]) -> dict | None:
    q = lab_logic.concept_query(s)
    if q["language"] is None or q["step"] is None:
        return None
    return next((c for c in client.concepts(s["run"], kind=q["kind"], task=q["task"], step=q["step"])
                 if c.get("language") == q["language"]), None)


def execute(client: AtlasClient, call: Mapping[str, Any]) -> Any:
    """One call's answer as a finding keeps it (intervention results reduced to their summary)."""
    if call["method"] == "GET":
        return client.get(call["path"], call.get("params") or {})
    if call["path"] == "/interventions":
        return lab_logic.result_summary(client.intervene(call["body"]))
    if call["path"] == "/bridge":
        return bridge_page.stable(client.bridge(call["body"]))
    if call["path"] == attribution.PATH:
        return attribution.attribution_summary(client.attribute(call["body"]))
    return client.post(call["path"], call["body"])


def snapshot(client: AtlasClient, page: str, s: Mapping[str, Any]) -> dict[str, Any]:
    calls = view_calls(client, page, s)
    return {"calls": calls, "responses": [execute(client, c) for c in calls]}


def _differences(a: Any, b: Any, path: str, out: list[str]) -> None:
    if len(out) >= MAX_DIFFERENCES:
        return
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                out.append(f"{path}.{key}: {'added' if key not in a else 'missing'}")
            else:
                _differences(a[key], b[key], f"{path}.{key}", out)
        return
    if isinstance(a, Sequence) and isinstance(b, Sequence) and not isinstance(a, str) and not isinstance(b, str):
        if len(a) != len(b):
            out.append(f"{path}: {len(a)} entries then, {len(b)} now")
            return
        for i, (x, y) in enumerate(zip(a, b)):
            _differences(x, y, f"{path}[{i}]", out)
        return
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        if not math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=1e-12):
            out.append(f"{path}: {a!r} then, {b!r} now")
        return
    if a != b:
        out.append(f"{path}: {json.dumps(a, ensure_ascii=False)[:80]} then, {json.dumps(b, ensure_ascii=False)[:80]} now")


def upgrade_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A version-1 intervention spec in version-2 form (`scope.steps` renamed `scope.decode_steps`), the backend's rule
    for reading findings saved before the rename (`tests/app/test_findings_v1.py` checks the two agree)."""
    out = dict(spec)
    scope = out.get("scope")
    if out.get("version") != 1:
        return out
    if isinstance(scope, Mapping):
        out["scope"] = {("decode_steps" if k == "steps" else k): v for k, v in scope.items()}
    out["version"] = 2
    return out


def comparable(then: Any, now: Any) -> Any:
    """A stored answer as it compares with a fresh one: an intervention result saved with a version-1 spec has its
    spec upgraded, and takes the fresh `key` and `intervention.digest`, which hash the spec's text (the version bump
    rewrote it) while the spec itself is compared field by field."""
    if not (isinstance(then, Mapping) and isinstance(now, Mapping) and isinstance(then.get("spec"), Mapping)
            and then["spec"].get("version") == 1 and isinstance(now.get("spec"), Mapping)):
        return then
    out = {**then, "spec": upgrade_spec(then["spec"]), "key": now.get("key")}
    if isinstance(then.get("intervention"), Mapping) and isinstance(now.get("intervention"), Mapping):
        out["intervention"] = {**then["intervention"], "digest": now["intervention"].get("digest")}
    return out


def compare(then: Sequence[Any], now: Sequence[Any], labels: Sequence[str] | None = None) -> list[str]:
    """Plain-words differences between stored and fresh answers (empty = reproduced); at most MAX_DIFFERENCES."""
    out: list[str] = []
    if len(then) != len(now):
        return [f"{len(then)} answers were stored, {len(now)} came back"]
    for i, (a, b) in enumerate(zip(then, now)):
        _differences(comparable(a, b), b, (labels[i] if labels else f"answer {i}"), out)
    return out[:MAX_DIFFERENCES]


def verify(client: AtlasClient, frozen: Mapping[str, Any]) -> list[str]:
    """Replay a finding's calls and list what differs from its stored answers; raises ViewError / BackendError."""
    calls = frozen.get("calls") or []
    if not calls:
        raise ViewError(frozen.get("not_replayable") or "this finding stored no replayable calls")
    fresh = [execute(client, c) for c in calls]
    return compare(frozen.get("responses") or [], fresh, [c.get("label", c["path"]) for c in calls])


# --------------------------------------------------------------------------------------------------- rendering


def render(page: str, s: Mapping[str, Any], frozen: Mapping[str, Any], prov: Provenance) -> list[Any]:
    """The stored answers drawn with the page's figure builders (no backend call)."""
    responses = frozen.get("responses") or []
    calls = frozen.get("calls") or []
    if not responses:
        return [html.P("this finding stored no result", className="muted")]
    out: list[Any] = []
    if page == "overview":
        tab = s.get("tab")
        if tab == "selectivity":
            out = [ui.graph(f"finding-fig-{i}", fg.selectivity_heatmap(r, prov, scale=s.get("scale") or "count"))
                   for i, r in enumerate(responses)]
        elif tab == "modality":
            out = [ui.graph("finding-fig-0", fg.modality_map(responses[0], prov))]
        elif tab == "concentration":
            speech_task = calls[0]["params"]["task"] if calls else "s2tt"
            text_task = calls[1]["params"]["task"] if len(calls) > 1 else "t2tt"
            out = [ui.graph("finding-fig-0", fg.concentration_pair(responses[0], responses[1], prov,
                                                                    speech_task=speech_task, text_task=text_task))]
        elif tab == "crossmodal":
            out = [ui.graph("finding-fig-0", fg.overlap_matrix(responses[0], prov)),
                   ui.graph("finding-fig-1", fg.spearman_matrix(responses[1], prov, layer=s.get("x_layer")))]
            if len(responses) > 2 and s.get("x_cell"):
                out += overview_page.shared_units_view({**s, "run": prov.run_id}, responses[2])
        elif tab == "interventions":
            out = [ui.graph("finding-fig-0", fg.batch_interventions(responses[0]["conditions"], prov,
                                                                     experiment=s["e_exp"], input_task=s["e_task"],
                                                                     step=s.get("step")))]
    elif page == "layer":
        rows = responses[0].get("units") or []
        head = ["unit", "site", "ch", "AP", "on_p50", "off_mean"]
        body = [html.Tr([html.Td(u["unit_id"]), html.Td(u["site"]), html.Td(u["channel"]),
                         *[html.Td("" if u.get(k) is None else f"{u[k]:.4f}", className="num") for k in ("ap", "on_p50", "off_mean")]])
                for u in rows[:20]]
        out = [html.P(f"{responses[0].get('total')} units matched; the first {len(body)} by {s.get('sort')} {s.get('order')}:"),
               html.Table([html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(body)], className="table")]
    elif page == "compare":
        out = compare_page.render(frozen)
    elif page == "bridge":
        out = bridge_page.render(frozen)
    elif page == "unit":
        out = [ui.graph("finding-fig-0", fg.unit_ap_profile(responses[0], prov, step=s.get("step"), highlight=s.get("concept")))]
    elif page == "lab":
        r = responses[0]
        out = [html.Div([
            html.Div([html.H3(f"Baseline → {r['baseline'].get('top_language') or '?'}"),
                      diff_view(r.get("diff") or [], "baseline", r["baseline"].get("text"))], className="half output-card"),
            html.Div([html.H3(f"Intervened → {r['intervened'].get('top_language') or '?'}"),
                      diff_view(r.get("diff") or [], "intervened", r["intervened"].get("text"))], className="half output-card"),
        ], className="row"), ui.graph("finding-fig-0", fg.language_probability_bars(r, prov, concept_lang=lab_logic.chart_concept_lang(s)))]
        if len(responses) > 1:
            out += [html.H3("Token attribution"), *attribution.attribution_view(responses[1], prov, fig_id="finding-fig-1")]
    return out or [html.P("no renderer for this view", className="muted")]


def describe_state(page: str, s: Mapping[str, Any]) -> str:
    if page == "unit":
        return f"unit {s.get('unit')}" + (f", concept {s.get('concept')}" if s.get("concept") is not None else "")
    if page == "layer":
        return f"{s.get('stack')} layer {s.get('layer')}, concept {s.get('concept')}"
    if page == "overview":
        cell = f", cell text {s['x_cell'].replace(':', ' × speech ')}" if s.get("tab") == "crossmodal" and s.get("x_cell") else ""
        return f"overview, {s.get('tab')} tab, step {s.get('step')}{cell}"
    if page == "compare":
        return compare_page.describe(s)
    if page == "bridge":
        return bridge_page.describe(s)
    if page == "lab":
        what = f"lab, {s.get('role')} units of {s.get('ulang')} ({s.get('set')}-{s.get('k')}), target {s.get('tgt')}"
        if s.get("at_tok") is not None:
            what += f", attribution of {s.get('at_side')} token {s.get('at_tok')} (reference {s.get('at_ref')})"
        return what
    return page


# ------------------------------------------------------------------------------------------------- python export


def python_script(backend_url: str, finding: Mapping[str, Any]) -> str:
    """A standalone script (standard library only) that replays a finding's calls against the backend's HTTP API."""
    frozen = (finding.get("state") or {}).get("frozen") or {}
    calls = frozen.get("calls") or []
    lines = [
        f'"""Reproduce Neuron Atlas finding {finding.get("id")}: {str(finding.get("title", "")).replace(chr(34), chr(39))}',
        "",
        f"Saved {finding.get('created_at')} from {(finding.get('state') or {}).get('href', '')}",
        f"Model {((finding.get('model') or {}).get('spec'))} (checksum {((finding.get('model') or {}).get('checksum'))}), run {finding.get('run_id')}.",
        '"""',
        "import json",
        "import os",
        "import urllib.parse",
        "import urllib.request",
        "",
        f'BACKEND = os.environ.get("NEURON_ATLAS_BACKEND", {backend_url.rstrip("/")!r})',
        "",
        "",
        "def get(path, params):",
        "    query = urllib.parse.urlencode(params, doseq=True)",
        "    with urllib.request.urlopen(f\"{BACKEND}{urllib.parse.quote(path)}?{query}\", timeout=300) as r:",
        "        return json.load(r)",
        "",
        "",
        "def post(path, body):",
        "    req = urllib.request.Request(f\"{BACKEND}{path}\", data=json.dumps(body).encode(),",
        "                                 headers={\"Content-Type\": \"application/json\"}, method=\"POST\")",
        "    with urllib.request.urlopen(req, timeout=600) as r:",
        "        return json.load(r)",
        "",
        "",
    ]
    if not calls:
        lines.append(f"raise SystemExit({(frozen.get('not_replayable') or 'this finding has no replayable calls')!r})")
        return "\n".join(lines) + "\n"
    for i, call in enumerate(calls):
        lines.append(f"# {call.get('label', call['path'])}")
        if call["method"] == "GET":
            lines.append(f"answer_{i} = get({call['path']!r}, {json.dumps(call.get('params') or {}, sort_keys=True)})")
        else:
            body = pprint.pformat(call["body"], width=100, sort_dicts=True)
            lines.append(f"answer_{i} = post({call['path']!r}, {body})")
        if call["path"] == "/interventions":
            lines += ["for side in ('baseline', 'intervened'):",
                      f"    out = answer_{i}[side]",
                      "    print(side, repr(out['text']), out['top_language'], out['language_probabilities'])"]
        elif call["path"] == attribution.PATH:
            lines += [f"v = answer_{i}['verification']",
                      f"print('token', answer_{i}['token'], 'estimate vs actual: r', v['pearson'], 'rho', v['spearman'])",
                      f"for u in answer_{i}['top'][:20]:",
                      "    print(u['unit_id'], u['site'], u['channel'], round(u['estimate'], 5))"]
        else:
            lines.append(f"print(json.dumps(answer_{i}, indent=1)[:2000])")
        lines.append("")
    return "\n".join(lines)
