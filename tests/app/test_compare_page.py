"""The compare page in-process against the real backend on the two-run tiny store: defaults and bad URL values, the
no-common-sites error that keeps the controls, the figures, URL state transitions and findings (freeze, render,
verify)."""
from __future__ import annotations

import numpy as np
import pytest

from app import context, state as st, views
from app.client import AtlasClient
from app.components import compare_figures as cf
from app.main import create_app
from app.pages import compare, findings
from tests.app.test_app_backend import forwarding
from tests.backend.api_support import client_for, make_settings
from tests.backend.compare_support import RENAMED, SHIFTED, compare_store, two_run_store  # noqa: F401


@pytest.fixture(scope="module")
def env(compare_store, tiny_bundle, tmp_path_factory):  # noqa: F811
    store, clean, faithful, _ = compare_store
    with client_for(make_settings(store, tmp_path_factory.mktemp("compare-app")), bundle=tiny_bundle) as tc:
        client = AtlasClient("http://testserver", transport=forwarding(tc))
        yield create_app("http://testserver", client=client), client, clean, faithful


def state_of(**query) -> dict:
    s, problems = st.parse("compare", query)
    assert not problems
    return s


def test_layout_resolves_defaults_into_the_url(env):
    dash_app, client, clean, faithful = env
    with dash_app.server.app_context():
        tree = compare.layout(run=clean)
    text = str(tree)
    s = next(c for c in tree.children if getattr(c, "id", None) == "compare-state").data
    assert (s["run"], s["run_b"], s["step"], s["step_b"], s["stack"]) == (clean, faithful, 2, 2, "text_decoder")
    assert s["concept"] is not None and "notice-warning" not in text
    assert "Identical unit layouts" in text and "compare-heatmap" in text and "compare-scatter" in text
    assert f"/unit?run={clean}&unit=" in text and f"/unit?run={faithful}&unit=" in text
    with dash_app.server.app_context():
        same = next(c for c in compare.layout(run=clean, run_b=clean).children if getattr(c, "id", None) == "compare-state").data
    assert (same["step"], same["step_b"]) == (2, 7)


@pytest.mark.parametrize("query, needle", [
    ({"step": "99"}, "run A has no step 99"),
    ({"step_b": "12"}, "run B has no step 12"),
    ({"run_b": "nope"}, "run B 'nope' is not in the store"),
    ({"concept": "999"}, "concept 999 of run A is not a matched concept"),
    ({"task": "asr"}, "neither run has task 'asr'"),
    ({"k": "100000"}, "larger than the"),
])
def test_bad_url_values_are_replaced_and_said(env, query, needle):
    dash_app, _, clean, _ = env
    with dash_app.server.app_context():
        text = str(compare.layout(run=clean, **query))
    assert "notice-warning" in text and needle in text and "compare-scatter" in text


def test_runs_without_common_sites_keep_the_controls(env):
    dash_app, _, clean, _ = env
    with dash_app.server.app_context():
        text = str(compare.layout(run=clean, run_b=RENAMED))
    assert "notice-error" in text and "share no unit site" in text
    assert "compare-run-b" in text and "compare-heatmap" in text and "compare-scatter" not in text


def test_other_layouts_are_named_with_what_is_left_out(env):
    dash_app, _, clean, _ = env
    with dash_app.server.app_context():
        text = str(compare.layout(run=clean, run_b=SHIFTED, step="7"))
    assert "1 site only in run A" in text and "1 site with another width" in text and "left out" in text
    assert "1 concept of run A without a counterpart" in text


def test_figures_draw_the_answers(env):
    _, client, clean, faithful = env
    summary = client.compare(clean, faithful, kind="language")
    one = client.compare_concept(clean, faithful, summary["layers"]["concepts"][1]["concept_id_a"], k=5)
    heat = cf.layer_difference_heatmap(summary, summary["layers"]["concepts"][1]["concept_id_a"])
    assert np.array_equal(np.asarray(heat.data[0].z), np.asarray(summary["layers"]["diff"]))
    assert heat.data[0].zmid == 0 and heat.data[0].y[1].startswith("▶")
    assert faithful in heat.layout.title.subtitle.text and clean in heat.layout.title.subtitle.text
    scatter = cf.ap_scatter(one, summary)
    groups = {t.name: len(t.x) for t in scatter.data}
    both = groups.get("top-k in both", 0)
    assert groups.get("top-k in A only", 0) + both == 5 and groups.get("top-k in B only", 0) + both == 5
    assert sum(n for name, n in groups.items() if name != "moved most") == one["n_units"]
    assert groups["moved most"] == len(one["moved"]) > 0


def test_url_transitions_forget_what_no_longer_applies():
    s = state_of(run="a", run_b="b", step="2", step_b="7", concept="3", k="5")
    assert compare.next_state(s, "run", "c") == {**s, "run": "c", "step": None, "concept": None}
    assert compare.next_state(s, "run_b", "c")["step_b"] is None
    assert compare.next_state(s, "step", 7)["concept"] is None
    assert compare.next_state(s, "step_b", 2)["concept"] == 3
    assert compare.next_state(s, "stack", "text_encoder")["concept"] == 3


def test_saved_compare_view_replays_and_renders(env):
    dash_app, client, clean, faithful = env
    href = st.href("compare", state_of(run=clean, run_b=faithful, step="7", kind="language", stack="text_encoder", k="5"))
    with dash_app.server.app_context():
        finding = findings.save(href, "faithful moves text-encoder units", "", None)
        card = str(findings.card(client.finding(finding["id"])))
    frozen = finding["state"]["frozen"]
    assert [c["path"] for c in frozen["calls"]] == ["/compare", "/compare/concept"]
    params = frozen["calls"][1]["params"]
    assert (params["run_a"], params["run_b"], params["step_b"], params["stack"], params["k"]) == (clean, faithful, 7, "text_encoder", 5)
    assert views.verify(client, frozen) == []
    assert finding["run_id"] == clean and "compare " + clean in finding["state"]["description"]
    assert "finding-fig-0" in card and "finding-fig-1" in card and "no renderer" not in card
    assert "get('/compare/concept'" in views.python_script("http://x", finding)
    prov = context.Provenance.from_run(client.run(clean))
    with dash_app.server.app_context():
        assert "finding-fig-1" in str(views.render("compare", st.parse("compare", finding["state"]["query"])[0], frozen, prov))
