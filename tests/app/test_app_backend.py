"""The dashboard in-process against the real backend (FastAPI TestClient transport) on the tiny-model store:
the client, page layouts, the audio proxy and static guard, and findings (freeze, render, verify)."""
from __future__ import annotations

import httpx
import pytest

from app import context, state as st, views
from app.client import AtlasClient, BackendError
from app.main import create_app
from app.pages import findings, lab, layer, overview, unit
from tests.backend.api_support import atlas_store, client_for, make_settings  # noqa: F401  (atlas_store is a fixture)


def forwarding(tc) -> httpx.MockTransport:
    """An httpx transport that hands each request to the backend's TestClient (the app under test, in-process)."""

    def handle(request: httpx.Request) -> httpx.Response:
        r = tc.request(request.method, request.url.raw_path.decode(), headers=dict(request.headers), content=request.read())
        return httpx.Response(r.status_code, headers=[(k, v) for k, v in r.headers.items()
                                                      if k.lower() not in ("content-encoding", "transfer-encoding")],
                              content=r.content)

    return httpx.MockTransport(handle)


@pytest.fixture(scope="module")
def env(atlas_store, tiny_bundle, tmp_path_factory):  # noqa: F811
    store, run_id = atlas_store
    settings = make_settings(store, tmp_path_factory.mktemp("app-findings"))
    with client_for(settings, bundle=tiny_bundle) as tc:
        client = AtlasClient("http://testserver", transport=forwarding(tc))
        dash_app = create_app("http://testserver", client=client)
        yield dash_app, client, run_id


def test_client_reads_the_real_backend(env):
    _, client, run_id = env
    assert client.resolve_run(None) == run_id
    run = client.run(run_id)
    assert run["model_spec"] == "tiny-random" and run["steps"] == [2, 7]
    concepts = client.concepts(run_id, kind="language", task="s2tt", step=2)
    assert [c["language"] for c in concepts] == ["deu", "fra"]
    hm = client.heatmap(run_id, "text_decoder", mode="top", k=5, concept_ids=[c["concept_id"] for c in concepts])
    assert [sum(row) for row in hm["counts"]] == [5, 5]
    page = client.layer_units(run_id, "text_decoder", 1, concepts[0]["concept_id"], sort="ap", order="desc", limit=7,
                              bounds={"ap": (0.5, None)})
    aps = [u["ap"] for u in page["units"]]
    assert len(aps) == 7 and aps == sorted(aps, reverse=True) and min(aps) >= 0.5
    with pytest.raises(BackendError) as info:
        client.unit(run_id, 10**8)
    assert info.value.status == 404 and "out of range" in info.value.message


def test_every_page_layout_renders_and_reports_bad_query_values(env):
    dash_app, _, run_id = env
    with dash_app.server.app_context():
        for module, query in ((overview, {"step": "99", "tab": "concentration"}), (layer, {"layer": "x"}),
                              (unit, {"unit": "3246", "concept": "999999"}), (lab, {"k": "-3"}), (findings, {})):
            tree = module.layout(run=run_id, **query)
            text = str(tree)
            assert "Traceback" not in text
            if module is not findings:
                assert "notice-warning" in text, module.__name__
        missing = unit.layout(run=run_id, unit="99999999")
        assert "out of range" in str(missing) and "notice-error" in str(missing)
        unknown = str(unit.layout(run=run_id, unit="3246", concept="999999"))
        assert "unknown concept 999999" in unknown and "has no statistics for this unit" not in unknown


def test_audio_proxy_and_static_guard(env):
    dash_app, _, run_id = env
    web = dash_app.server.test_client()
    r = web.get(f"/media/audio/{run_id}/builtin:s000:deu:deu-m1")
    assert r.status_code == 200 and r.mimetype == "audio/wav" and r.data[:4] == b"RIFF"
    r = web.get(f"/media/audio/{run_id}/builtin:nope")
    assert r.status_code == 404 and "unknown example" in r.get_data(as_text=True)
    assert web.get("/assets/style.css").status_code == 200
    assert web.get("/assets/app.js").status_code == 200
    page = web.get("/").get_data(as_text=True)
    assert "/assets/fonts/noto-sans-cjk.css" in page, "the CJK web font is linked on every page"
    css = web.get("/assets/fonts/noto-sans-cjk.css").get_data(as_text=True)
    first = css.split("url(./", 1)[1].split(")", 1)[0]
    font = web.get(f"/assets/fonts/{first}")
    assert font.status_code == 200 and font.data[:4] == b"wOF2"
    for path in ("/assets/demo-model/config.json", "/assets/demo-model/model.safetensors", "/assets/notes.md",
                 "/assets/%2e%2e/pyproject.toml", "/assets/fonts/../app.js", "/assets/fonts/sub/x.woff2"):
        assert web.get(path).status_code == 404, path
    assert web.get("/").status_code == 200


@pytest.mark.parametrize("page, query", [
    ("overview", {"tab": "selectivity", "task": "s2tt", "set": "top", "k": "5"}),
    ("overview", {"tab": "modality", "set": "ap", "thr": "0.8"}),
    ("overview", {"tab": "concentration", "c_stack": "encoder"}),
    ("overview", {"tab": "concentration", "c_stack": "encoder", "c_cell": "text:fra:1"}),
    ("overview", {"tab": "crossmodal", "x_scope": "text_decoder/layer"}),
    ("overview", {"tab": "crossmodal", "x_cell": "fra:deu"}),
    ("overview", {"tab": "interventions", "e_exp": "dose", "e_task": "en2x_t2tt"}),
    ("layer", {"stack": "text_decoder", "layer": "1", "concept": "3", "sort": "on_p50", "order": "asc"}),
    ("unit", {"unit": "3246"}),
    ("lab", {"in": "text", "text": "Guten Morgen", "src": "deu", "tgt": "eng", "role": "representation", "umod": "speech",
             "ulang": "deu", "k": "3"}),
])
def test_frozen_views_replay_identically_and_render(env, page, query):
    dash_app, client, run_id = env
    s, problems = st.parse(page, {"run": run_id, **query})
    assert not problems
    if page == "overview":
        overview.resolve_defaults(s, client.run(run_id))
    if page == "unit":
        s["step"] = 2
    if page == "lab":
        s["step"] = 2
    frozen = views.snapshot(client, page, s)
    assert frozen["calls"] and len(frozen["responses"]) == len(frozen["calls"])
    assert views.verify(client, frozen) == []
    prov = context.Provenance.from_run(client.run(run_id))
    finding = {"id": "abcd2345", "title": "t", "run_id": run_id, "model": {"spec": "tiny-random"},
               "state": {"page": page, "query": dict(st.query_items(page, s)), "frozen": frozen,
                         "provenance": {**prov.as_dict(), "model_spec": "demo"}}}
    with dash_app.server.app_context():
        rendered = views.render(page, s, frozen, prov)
        demo = str(findings.card(finding))
        plain = str(findings.card({**finding, "state": {**finding["state"], "provenance": prov.as_dict()}}))
    assert rendered and "no renderer" not in str(rendered)
    if page == "unit":
        assert [c["label"] for c in frozen["calls"]] == ["unit", "activations", "examples"]
        assert "Highest activation" in str(rendered) and "finding-fig-1" in str(rendered), "AP profile, distribution, examples"
    assert "could not be drawn" not in demo and "Demo model, not SeamlessM4T v2" in demo and "Demo model" not in plain, \
        "every kind of finding card names the demo model when its result came from it"


def test_saving_a_lab_finding_freezes_spec_and_result(env):
    dash_app, client, run_id = env
    href = st.href("lab", st.parse("lab", {"run": run_id, "in": "example", "ex": "builtin:s001:fra:fra-m1", "mod": "text",
                                           "tgt": "deu", "role": "control", "umod": "speech", "ulang": "deu", "step": "7",
                                           "set": "both", "k": "2"})[0])
    with dash_app.server.app_context():
        finding = findings.save(href, "both-2 deu units", "note", None)
        card = findings.card(client.finding(finding["id"]))
    assert finding["run_id"] == run_id and finding["title"] == "both-2 deu units"
    assert finding["spec"]["units"]["set"] == "both" and finding["spec"]["units"]["k"] == 2
    concept = client.concept(run_id, finding["spec"]["units"]["concept_id"])
    assert (concept["task"], concept["language"], concept["step"]) == ("en2x_s2tt", "deu", 7)
    frozen = finding["state"]["frozen"]
    assert frozen["responses"][0]["tgt_lang"] == "deu" and views.verify(client, frozen) == []
    assert finding["state"]["href"] == href
    text = str(card)
    assert "both-2 units of concept" in text and "corpus example builtin:s001:fra:fra-m1 (text, fra) → deu" in text
    assert "strength 1 · positions all, decoding steps all" in text and "strength 1: the value is written" in text
    kept = frozen["responses"][0]["intervened"]
    assert kept["tokens"] and len(kept["prefix_language_probabilities"]) == len(kept["tokens"])
    assert "finding-fig-tokens" in text and "not kept by findings saved before" not in text


def test_a_lab_finding_keeps_what_fires_and_the_k_sweep_it_showed(env):
    dash_app, client, run_id = env
    s, problems = st.parse("lab", {"run": run_id, "in": "text", "text": "Guten Morgen", "src": "deu", "tgt": "eng",
                                   "role": "representation", "umod": "speech", "ulang": "deu", "step": "2", "k": "2",
                                   "fires": "1", "sweep": "1", "sweep_inputs": "1", "seeds": "1", "max_new": "6"})
    assert not problems
    frozen = views.snapshot(client, "lab", s)
    assert [c["label"] for c in frozen["calls"]] == ["intervention", "what fires", "k sweep", "columns"]
    fires, sweep = frozen["responses"][1], frozen["responses"][2]
    assert fires["stacks"] and sweep["ks"] == [1, 2] and sweep["seconds"] > 0, "the card says how long the sweep took"
    assert views.verify(client, frozen) == []
    prov = context.Provenance.from_run(client.run(run_id))
    with dash_app.server.app_context():
        text = str(views.render("lab", s, frozen, prov))
    assert "What fires on this input" in text and "+ basket" not in text, "the card lists the units without the lab's basket"
    assert "k sweep" in text and "lab-dose" in text
    assert views.describe_state("lab", s).endswith(", what fires, k sweep (1 inputs, 1 seeds)")
    script = views.python_script("http://b", {"id": "x", "state": {"frozen": frozen}})
    compile(script, "finding.py", "exec")
    assert "job = post('/jobs/sweep'" in script and "time.sleep(0.5)" in script
    assert "for stack in answer_1['stacks']:" in script


def test_saving_refuses_the_findings_page_and_keeps_uploaded_results(env):
    dash_app, _, run_id = env
    with dash_app.server.app_context():
        with pytest.raises(views.ViewError, match="open a dashboard view"):
            findings.save("/findings?id=abcd2345", "t", "", None)
        summary = {"tgt_lang": "eng", "spec": None, "baseline": {"text": "a", "language_probabilities": {}},
                   "intervened": {"text": "b", "language_probabilities": {}}, "diff": []}
        finding = findings.save(f"/lab?run={run_id}&in=upload&tgt=eng", "upload", "", {"page": "lab", "summary": summary})
    frozen = finding["state"]["frozen"]
    assert frozen["calls"] == [] and "not stored with findings" in frozen["not_replayable"]
    assert frozen["responses"] == [summary]


def test_concentration_drill_down_lists_the_mass_carriers(env):
    dash_app, client, run_id = env
    s, problems = st.parse("overview", {"run": run_id, "tab": "concentration", "c_cell": "speech:deu:1", "step": "7"})
    assert not problems
    overview.resolve_defaults(s, client.run(run_id))
    from app.components.common import Provenance

    with dash_app.server.app_context():
        tree = str(overview.drill_down(s, Provenance(run_id)))
    page = client.concentration_units(run_id, stack="text_decoder", layer=1, task="s2tt", language="deu", step=7,
                                      limit=overview.DRILL_UNITS)
    assert "Gini" in tree and "stand-in" not in tree and "needs a backend endpoint" not in tree
    assert f"{100 * page['units'][-1]['cumulative_share']:.1f} %" in tree
    assert all(f"unit {u['unit_id']} " in tree for u in page["units"])

    frozen = views.snapshot(client, "overview", s)
    assert views.verify(client, frozen) == []
    with dash_app.server.app_context():
        kept = str(views.render("overview", s, frozen, Provenance(run_id)))
    links = lambda text: [part.split("'")[0] for part in text.split("href='/unit?")[1:]]  # noqa: E731
    assert links(kept) == links(tree) and len(links(kept)) == len(page["units"]), "the finding lists what the drill-down did"


def test_unit_page_shows_live_traces_matching_the_store(env, tiny_registry):
    dash_app, client, run_id = env
    site = next(x for x in tiny_registry.sites if x.stack == "text_decoder" and x.domain == "decoder")
    s, problems = st.parse("unit", {"run": run_id, "unit": str(site.offset + 2), "step": "7"})
    assert not problems
    example = client.example(run_id, "builtin:s000:deu:deu-m1")
    from app.components.common import Provenance

    with dash_app.server.app_context():
        tree = str(unit.side_by_side(s, example, client.unit(run_id, site.offset + 2), Provenance(run_id)))
    assert tree.count("(matches)") == 2 and "DIFFERS" not in tree and "notice-warning" not in tree
    assert "output tokens (prefix of length 7)" in tree and "Activation per output token" in tree


def test_unit_page_traces_an_encoder_unit_only_on_its_own_modality(env, tiny_registry):
    """A speech-encoder unit has no activation on written input: the page says so instead of asking for a trace."""
    dash_app, client, run_id = env
    site = next(x for x in tiny_registry.sites if x.stack == "speech_encoder" and x.domain == "speech_frames")
    s, _ = st.parse("unit", {"run": run_id, "unit": str(site.offset + 1), "step": "2"})
    example = client.example(run_id, "builtin:s000:deu:deu-m1")
    from app.components.common import Provenance

    with dash_app.server.app_context():
        tree = str(unit.side_by_side(s, example, client.unit(run_id, site.offset + 1), Provenance(run_id)))
    assert "speech encoder units only run on speech input: no text trace" in tree
    assert tree.count("(matches)") == 1 and "notice-warning" not in tree


def test_overview_opens_on_speech_translation(env):
    dash_app, _, run_id = env

    def dropdown_value(node, component_id):
        if getattr(node, "id", None) == component_id:
            return node.value
        children = getattr(node, "children", None)
        for child in children if isinstance(children, (list, tuple)) else [children]:
            if child is not None and not isinstance(child, (str, int, float)):
                found = dropdown_value(child, component_id)
                if found is not None:
                    return found
        return None

    with dash_app.server.app_context():
        assert dropdown_value(overview.layout(run=run_id), "ov-task") == "s2tt"
        assert dropdown_value(overview.layout(run=run_id, task="asr"), "ov-task") == "asr"


def test_overview_of_an_unknown_run_falls_back_to_the_newest_and_says_so(env):
    dash_app, _, run_id = env
    with dash_app.server.app_context():
        text = str(overview.layout(run="nope"))
    assert "run 'nope' is not in this store; showing the newest run" in text and run_id in text


def test_unit_examples_say_how_far_outputs_were_decoded(env):
    dash_app, client, run_id = env
    with dash_app.server.app_context():
        _, _, prov = context.run_and_provenance(run_id)
        text = str(unit.examples_block({"run": run_id, "unit": 3246, "task": "asr", "step": 2}, prov))
    steps = client.run(run_id)["steps"]
    assert f"largest recorded step, {max(steps)}, i.e. at most {max(steps) - 2} output tokens" in text
