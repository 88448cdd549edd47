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
import time
from collections.abc import Mapping, Sequence
from typing import Any

from dash import dcc, html

from app import ui
from app.client import AtlasClient
from app import lab_logic
from app.pages import bridge as bridge_page
from app.components import attribution, lab_result
from app.pages import compare as compare_page
from app.pages import overview as overview_page
from app.pages.layer import short_site
from app.pages.unit import STORED_PER_END
from app.components import figures as fg
from app.components.common import Provenance
from app.components.diff import diff_view

#: Live lab panels a finding replays besides the intervention: what fires on the input, and the k sweep job.
FIRES_PATH, SWEEP_PATH = "/activations", "/jobs/sweep"
#: How long saving or re-verifying waits for a k sweep job, and how often it asks.
SWEEP_WAIT_S, SWEEP_POLL_S = 600.0, 0.5
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


#: Histogram bins of a unit's activation distribution (the unit page's client default).
UNIT_BINS = 30


def unit_examples_params(s: Mapping[str, Any]) -> dict[str, Any]:
    """Query of `GET /runs/{run}/units/{unit}/examples` for the unit page's current page of top and bottom examples."""
    offset = min(int(s.get("offset") or 0), STORED_PER_END - 1)
    per = int(s.get("per") or 20)
    params = {"task": s.get("task"), "step": s.get("step"), "n": min(per, STORED_PER_END - offset), "offset": offset}
    return {k: v for k, v in params.items() if v is not None}


#: Label of the stored layer list that names heatmap columns (intermediate FFN, adapter, final norm).
COLUMNS_LABEL = "columns"


def _columns_call(base: str) -> dict[str, Any]:
    return {"method": "GET", "path": f"{base}/layers", "label": COLUMNS_LABEL, "params": {}}


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
            return [*({"method": "GET", "path": f"{base}/heatmap", "label": f"heatmap {x}",
                       "params": _heatmap_params(s, x, component=comp, kind=s["kind"], task=s["task"], step=s["step"])}
                      for x in stacks), _columns_call(base)]
        if tab == "modality":
            task = {"representation": "s2tt+t2tt", "control": "en2x_s2tt+en2x_t2tt"}[s["mm_role"]]
            pooled = [c for c in client.concepts(run, kind="modality", task=task, step=s["step"]) if c.get("language") is None]
            if not pooled:
                raise ViewError("this run has no pooled modality concept for that role and step")
            return [{"method": "GET", "path": f"{base}/heatmap", "label": "modality map",
                     "params": _heatmap_params(s, "text_decoder", concept_ids=[int(pooled[0]["concept_id"])],
                                               group="site")}, _columns_call(base)]
        if tab == "concentration":
            speech_task, text_task = {"representation": ("s2tt", "t2tt"), "control": ("en2x_s2tt", "en2x_t2tt")}[s["c_role"]]
            stacks = (("text_decoder", "text_decoder") if s["c_stack"] == "decoder" else ("speech_encoder", "text_encoder"))
            calls = [{"method": "GET", "path": f"{base}/concentration", "label": f"concentration {m}",
                      "params": {"stack": stk, "step": s["step"], "task": task, "metric": s["c_metric"]}}
                     for m, stk, task in (("speech", stacks[0], speech_task), ("text", stacks[1], text_task))]
            if s.get("c_cell"):
                try:
                    units, concept = overview_page.drill_query(dict(s)), overview_page.drill_concept_query(dict(s))
                except ValueError as exc:
                    raise ViewError(str(exc)) from None
                calls += [{"method": "GET", "path": f"{base}/concentration/units", "label": "drill-down units", "params": units},
                          {"method": "GET", "path": f"{base}/concepts", "label": "drill-down concept", "params": concept}]
            return [*calls, _columns_call(base)]
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
        unit = client.unit(run, int(s["unit"]))
        step = s.get("step") if unit["stack"] == "text_decoder" else None
        return [{"method": "GET", "path": f"{base}/units/{int(s['unit'])}", "label": "unit", "params": {}},
                {"method": "GET", "path": f"{base}/units/{int(s['unit'])}/activations", "label": "activations",
                 "params": {k: v for k, v in (("step", step), ("bins", UNIT_BINS)) if v is not None}},
                {"method": "GET", "path": f"{base}/units/{int(s['unit'])}/examples", "label": "examples",
                 "params": unit_examples_params(s)}]
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
        panels = (("fires", "what fires", FIRES_PATH, lambda: lab_logic.fires_request(s)),
                  ("sweep", "k sweep", SWEEP_PATH,
                   lambda: lab_logic.sweep_request(s, spec, lab_logic.sweep_inputs(s, lab_logic.sweep_examples(client, s)))))
        for key, label, path, request in panels:
            if not s.get(key):
                continue
            try:
                calls.append({"method": "POST", "path": path, "label": label, "body": request()})
            except lab_logic.LabInputError:
                continue  # the lab showed this panel's error, not a result: there is nothing more to keep
        if any(c["label"] == "what fires" for c in calls):
            calls.append(_columns_call(base))  # names the rows that are not numbered layers
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
    if call["path"] == FIRES_PATH:
        return client.activations(call["body"])
    if call["path"] == SWEEP_PATH:
        return run_sweep(client, call["body"])
    return client.post(call["path"], call["body"])


#: Top-level answer fields that differ between runs of the same computation (timings, cache flags): kept, since the
#: card shows them, but not compared.
VOLATILE = ("seconds", "timing_s", "cached")


def _without_volatile(answer: Any) -> Any:
    return {k: v for k, v in answer.items() if k not in VOLATILE} if isinstance(answer, Mapping) else answer


def run_sweep(client: AtlasClient, body: Mapping[str, Any]) -> dict[str, Any]:
    """Submit a k sweep job and wait for its result (at once when the backend has it cached); ViewError when it fails
    or runs past SWEEP_WAIT_S."""
    job = client.submit_sweep(body)
    deadline = time.monotonic() + SWEEP_WAIT_S
    while True:
        status = client.job(job["job_id"])
        if status["state"] == "done":
            return status["result"]
        if status["state"] == "error":
            raise ViewError(f"the k sweep failed: {(status.get('error') or {}).get('error')}")
        if time.monotonic() > deadline:
            raise ViewError(f"the k sweep did not finish within {SWEEP_WAIT_S:.0f} s")
        time.sleep(SWEEP_POLL_S)


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


#: Fields a stored lab result gained after the first findings were saved (top level, and per output side).
LATER_RESULT_FIELDS = ("first_difference",)
LATER_SIDE_FIELDS = lab_logic.TOKEN_EVIDENCE


def fresh_as_stored(then: Any, now: Any) -> Any:
    """A fresh answer as an older stored lab result can be compared with it: without the fields that result was
    saved before (a finding reproduces when everything it kept is the same)."""
    if not (isinstance(then, Mapping) and isinstance(now, Mapping) and isinstance(then.get("baseline"), Mapping)
            and isinstance(now.get("baseline"), Mapping)):
        return now
    out = {k: v for k, v in now.items() if k in then or k not in LATER_RESULT_FIELDS}
    for side in ("baseline", "intervened"):
        if isinstance(then.get(side), Mapping) and isinstance(now.get(side), Mapping):
            out[side] = {k: v for k, v in now[side].items() if k in then[side] or k not in LATER_SIDE_FIELDS}
    return out


def compare(then: Sequence[Any], now: Sequence[Any], labels: Sequence[str] | None = None) -> list[str]:
    """Plain-words differences between stored and fresh answers (empty = reproduced); at most MAX_DIFFERENCES."""
    out: list[str] = []
    if len(then) != len(now):
        return [f"{len(then)} answers were stored, {len(now)} came back"]
    for i, (a, b) in enumerate(zip(then, now)):
        a, b = _without_volatile(a), _without_volatile(b)
        _differences(comparable(a, b), fresh_as_stored(a, b), (labels[i] if labels else f"answer {i}"), out)
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
        out = overview_view(s, calls, responses, prov)
    elif page == "layer":
        out = layer_view(s, responses[0], prov)
    elif page == "compare":
        out = compare_page.render(frozen)
    elif page == "bridge":
        out = [*bridge_page.render(frozen),
               html.P("The spectrogram above the band is drawn from the corpus audio when this view is opened; the "
                      "finding keeps the band and its readers.", className="muted", id="finding-not-kept")]
    elif page == "unit":
        out = [ui.graph("finding-fig-0", fg.unit_ap_profile(responses[0], prov, step=s.get("step"), highlight=s.get("concept")))]
        acts = _answer(calls, responses, "activations")
        if acts is not None:
            step = s.get("step") if responses[0].get("stack") == "text_decoder" else None
            out.append(ui.graph("finding-fig-1", fg.language_modality_distribution(acts, prov, step=step)))
        examples = _answer(calls, responses, "examples")
        if examples is not None:
            out += unit_examples_view(examples, offset=int(s.get("offset") or 0))
        out.append(html.P("The examples' per-token activation strips and the spoken vs written traces come from the live "
                          "model and are not kept: open this view to draw them.", className="muted", id="finding-not-kept"))
    elif page == "lab":
        out = lab_view(s, responses[0], prov)
        attributed = _answer(calls, responses, "attribution") if calls else (responses[1] if len(responses) > 1 else None)
        if attributed is not None:
            out += [html.H3("Token attribution"), *attribution.attribution_view(attributed, prov, fig_id="finding-fig-1")]
        fires = _answer(calls, responses, "what fires")
        if fires is not None:
            out += lab_result.fires_view(fires, prov.run_id, basket=False, columns=_columns(calls, responses))
        sweep = _answer(calls, responses, "k sweep")
        if sweep is not None:
            out += lab_result.sweep_view(sweep, prov)
    return out or [html.P("no renderer for this view", className="muted")]


def _answer(calls: Sequence[Mapping[str, Any]], responses: Sequence[Any], label: str) -> Any:
    """The stored answer of the call with this label (None when the finding did not store one)."""
    return next((r for c, r in zip(calls, responses) if c.get("label") == label), None)


def _columns(calls: Sequence[Mapping[str, Any]], responses: Sequence[Any]) -> dict | None:
    """Heatmap column names from the stored layer list (findings saved before it was kept draw plain layer numbers)."""
    layers = _answer(calls, responses, COLUMNS_LABEL)
    return fg.column_names(layers["layers"]) if layers else None


def overview_view(s: Mapping[str, Any], calls: Sequence[Mapping[str, Any]], responses: Sequence[Any],
                  prov: Provenance) -> list[Any]:
    """A stored overview tab as the page drew it, with its drill-down or shared-unit list when a cell was open."""
    tab, columns = s.get("tab"), _columns(calls, responses)
    if tab == "selectivity":
        heatmaps = [r for c, r in zip(calls, responses) if c.get("label", "").startswith("heatmap ")]
        out: list[Any] = []
        for i, hm in enumerate(heatmaps):
            out.append(html.Div([
                ui.graph(f"finding-fig-{i}", fg.selectivity_heatmap(hm, prov, columns=columns, scale=s.get("scale") or "count"),
                         class_name="graph wide"),
                ui.graph(f"finding-bars-{i}", fg.component_bars(hm, prov, columns=columns), class_name="graph narrow"),
            ], className="row"))
        notes = [fg.after_layer_note(hm, columns) for hm in heatmaps] if columns else []
        return out + [html.Div([html.Div(n) for n in notes if n], className="hint")]
    if tab == "modality":
        return [ui.graph("finding-fig-0", fg.modality_map(responses[0], prov, columns=columns))]
    if tab == "concentration":
        speech_task = calls[0]["params"]["task"] if calls else "s2tt"
        text_task = calls[1]["params"]["task"] if len(calls) > 1 else "t2tt"
        out = [ui.graph("finding-fig-0", fg.concentration_pair(responses[0], responses[1], prov, speech_task=speech_task,
                                                                text_task=text_task, columns=columns))]
        units = _answer(calls, responses, "drill-down units")
        if units is not None and s.get("c_cell"):
            concepts = (_answer(calls, responses, "drill-down concept") or {}).get("concepts") or []
            concept_id = int(concepts[0]["concept_id"]) if concepts else None
            out += overview_page.drill_down_view({**s, "run": prov.run_id}, prov, units, concept_id, graph_id="finding-fig-1")
        return out
    if tab == "crossmodal":
        per_layer = s.get("x_scope") == "text_decoder/layer"
        out = [html.Div([ui.graph("finding-fig-0", fg.overlap_matrix(responses[0], prov), class_name="graph half"),
                         ui.graph("finding-fig-1", fg.spearman_matrix(responses[1], prov,
                                                                      layer=s.get("x_layer") if per_layer else None),
                                  class_name="graph half")], className="row")]
        if per_layer:
            out.append(ui.graph("finding-fig-2", fg.spearman_by_layer(responses[1], prov)))
        shared = _answer(calls, responses, "shared units")
        if shared is not None and s.get("x_cell"):
            out += overview_page.shared_units_view({**s, "run": prov.run_id}, shared)
        return out
    if tab == "interventions":
        conditions = responses[0]["conditions"]
        if not conditions:
            return [ui.graph("finding-fig-0", fg.message_figure(
                f"this run stored no batch experiments for {s['e_task']} (see evaluate.experiments in its config)", prov))]
        return [ui.graph("finding-fig-0", fg.batch_interventions(conditions, prov, experiment=s["e_exp"],
                                                                 input_task=s["e_task"], step=s.get("step")))]
    return []


#: Grid columns of the layer page a finding's table repeats (field, header).
LAYER_COLUMNS = (("unit_id", "unit"), ("site", "site"), ("channel", "ch"), ("component", "comp."), ("ap", "AP"),
                 ("on_p50", "on_p50"), ("on_p90", "on_p90"), ("off_mean", "off_mean"), ("off_p50", "off_p50"))


def layer_view(s: Mapping[str, Any], page: Mapping[str, Any], prov: Provenance) -> list[Any]:
    """The layer grid's first rows as stored (every column the grid shows; each unit links to its page)."""
    rows = page.get("units") or []

    def cell(u: Mapping[str, Any], field: str) -> html.Td:
        value = u.get(field)
        if field == "unit_id":
            return html.Td(dcc.Link(str(value), href=ui.href("unit", run=prov.run_id, unit=int(value), concept=s.get("concept")),
                                    className="unit-link"))
        if field == "site":
            return html.Td(short_site(str(value)), title=str(value))
        if isinstance(value, float):
            return html.Td(f"{value:.4f}", className="num")
        return html.Td("" if value is None else str(value))

    body = [html.Tr([cell(u, f) for f, _ in LAYER_COLUMNS]) for u in rows]
    return [html.P(f"{page.get('total')} units matched; the first {len(body)} by {s.get('sort')} {s.get('order')} "
                   "(the layer page's AP histogram over all of them is drawn when the view is opened):"),
            html.Table([html.Thead(html.Tr([html.Th(h, scope="col") for _, h in LAYER_COLUMNS])), html.Tbody(body)],
                       className="table")]


def unit_examples_view(data: Mapping[str, Any], *, offset: int) -> list[Any]:
    """The stored page of a unit's highest and lowest activating examples: rank, activation, language, input → the
    output recording decoded (the unit page's columns, without the live per-token strips)."""
    out: list[Any] = []
    for group in data.get("sets") or []:
        cols = []
        for which in ("top", "bottom"):
            rows = [html.Tr([html.Td(str(rank), className="num"),
                             html.Td("–" if item.get("activation") is None else f"{item['activation']:.4f}", className="num"),
                             html.Td(item.get("label") or ""),
                             html.Td([html.Div(item.get("text") or item.get("example_id") or ""),
                                      html.Div(f"→ {item.get('output_text') or ''}", className="output-text")])])
                    for rank, item in enumerate(group.get(which) or [], start=offset + 1)]
            step = f" · step {group['step']}" if group.get("step") is not None else ""
            cols.append(html.Div([
                html.H3(f"{'Highest' if which == 'top' else 'Lowest'} activation · {group.get('task')}{step}"),
                html.Table([html.Thead(html.Tr([html.Th(h, scope="col") for h in ("rank", "activation", "lang",
                                                                                  "input → output")])),
                            html.Tbody(rows)], className="table examples"),
            ], className="half"))
        out.append(html.Div(cols, className="row"))
    return out


def has_token_evidence(result: Mapping[str, Any]) -> bool:
    """Whether a stored lab result kept the per-token evidence (findings saved before it was kept did not)."""
    return any((result.get(side) or {}).get(key) for side in ("baseline", "intervened")
               for key in ("token_probabilities", "prefix_language_probabilities", "probe_probabilities"))


def lab_view(s: Mapping[str, Any], r: Mapping[str, Any], prov: Provenance) -> list[Any]:
    """A stored lab result as the lab showed it: what was forced and how (the dial), both outputs with their diff,
    the language probabilities and the per-token chart (the lab's own figure builders)."""
    concept_lang = lab_logic.chart_concept_lang(s)
    tokens: Any = (ui.graph("finding-fig-tokens", lab_result.token_figure(r, prov, concept_lang=concept_lang))
                   if has_token_evidence(r) else
                   html.P("per-token probabilities: not kept by findings saved before they were",
                          className="muted", id="finding-no-tokens"))
    return [
        html.Div([lab_result.change_badge(r),
                  html.Span(f" {lab_logic.crossmodal_note(s)} · {lab_logic.intervention_line(r.get('intervention'))}",
                            className="muted")], className="result-head"),
        html.P(lab_logic.dial_line(s), className="muted", id="finding-dial"),
        html.P("The outputs' audio is not kept with findings: open this view to hear it.", className="muted"),
        html.Div([
            html.Div([html.H3(f"Baseline → {r['baseline'].get('top_language') or '?'}"),
                      diff_view(r.get("diff") or [], "baseline", r["baseline"].get("text"))], className="half output-card"),
            html.Div([html.H3(f"Intervened → {r['intervened'].get('top_language') or '?'}"),
                      diff_view(r.get("diff") or [], "intervened", r["intervened"].get("text"))], className="half output-card"),
        ], className="row", style={"marginBottom": "12px"}),
        ui.graph("finding-fig-0", fg.language_probability_bars(r, prov, concept_lang=concept_lang)),
        tokens,
    ]


def describe_state(page: str, s: Mapping[str, Any]) -> str:
    if page == "unit":
        return f"unit {s.get('unit')}" + (f", concept {s.get('concept')}" if s.get("concept") is not None else "")
    if page == "layer":
        return f"{s.get('stack')} layer {s.get('layer')}, concept {s.get('concept')}"
    if page == "overview":
        cell = f", cell text {s['x_cell'].replace(':', ' × speech ')}" if s.get("tab") == "crossmodal" and s.get("x_cell") else ""
        if s.get("tab") == "concentration" and s.get("c_cell"):
            try:
                modality, lang, layer = overview_page.drill_cell(dict(s))
                cell = f", cell {modality}-conditioned {lang} layer {layer}"
            except ValueError:
                cell = f", cell {s['c_cell']}"
        return f"overview, {s.get('tab')} tab, step {s.get('step')}{cell}"
    if page == "compare":
        return compare_page.describe(s)
    if page == "bridge":
        return bridge_page.describe(s)
    if page == "lab":
        what = f"lab, {s.get('role')} units of {s.get('ulang')} ({s.get('set')}-{s.get('k')}), target {s.get('tgt')}"
        if s.get("at_tok") is not None:
            what += f", attribution of {s.get('at_side')} token {s.get('at_tok')} (reference {s.get('at_ref')})"
        what += ", what fires" if s.get("fires") else ""
        what += f", k sweep ({s.get('sweep_inputs')} inputs, {s.get('seeds')} seeds)" if s.get("sweep") else ""
        return what
    return page


# ------------------------------------------------------------------------------------------------- python export


#: Labels of calls whose answer is a list of units (the script prints one unit a line, as the view lists them).
UNIT_LISTS = ("drill-down units", "shared units")


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
        "import time",
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
        elif call["path"] == SWEEP_PATH:
            body = pprint.pformat(call["body"], width=100, sort_dicts=True)
            lines += [f"job = post({call['path']!r}, {body})",
                      "while (status := get(f\"/jobs/{job['job_id']}\", {}))['state'] not in ('done', 'error'):",
                      "    time.sleep(0.5)",
                      f"answer_{i} = status.get('result') or status",
                      f"for p in answer_{i}.get('points') or []:",
                      "    print(p['set'], 'k', p['k'], 'p(concept)', p.get('p_concept'), 'p(target)', p.get('p_tgt'))"]
            lines.append("")
            continue
        else:
            body = pprint.pformat(call["body"], width=100, sort_dicts=True)
            lines.append(f"answer_{i} = post({call['path']!r}, {body})")
        if call["path"] == "/interventions":
            lines += ["for side in ('baseline', 'intervened'):",
                      f"    out = answer_{i}[side]",
                      "    print(side, repr(out['text']), out['top_language'], out['language_probabilities'])",
                      f"    target = answer_{i}['tgt_lang']",
                      "    for t, token in enumerate(out.get('tokens') or []):",
                      "        chosen = (out.get('token_probabilities') or [None] * (t + 1))[t]",
                      "        prefix = (out.get('prefix_language_probabilities') or [{}] * (t + 1))[t]",
                      "        print(f'  token {t} {token!r}: p(token) {chosen}, p({target}) of the output so far {prefix.get(target)}')"]
        elif call["path"] == attribution.PATH:
            lines += [f"v = answer_{i}['verification']",
                      f"print('token', answer_{i}['token'], 'estimate vs actual: r', v['pearson'], 'rho', v['spearman'])",
                      f"for u in answer_{i}['top'][:20]:",
                      "    print(u['unit_id'], u['site'], u['channel'], round(u['estimate'], 5))"]
        elif call["path"] == FIRES_PATH:
            lines += [f"for stack in answer_{i}['stacks']:",
                      "    for layer in stack['layers']:",
                      "        print(stack['stack'], 'layer', layer['layer'], [(u['unit_id'], round(u['activation'], 3)) for u in layer['units']])"]
        elif call.get("label") in UNIT_LISTS:
            lines += [f"print({call['label'] + ':'!r}, 'listed', len(answer_{i}['units']), 'of',"
                      f" answer_{i}.get('n_units', answer_{i}.get('total')))",
                      f"for u in answer_{i}['units']:",
                      "    print(u['unit_id'], u['site'], u['channel'])"]
        else:
            lines.append(f"print(json.dumps(answer_{i}, indent=1)[:2000])")
        lines.append("")
    return "\n".join(lines)
