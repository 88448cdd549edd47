"""The unit page's token-level evidence in-process against the real backend on the tiny-model store: paged examples,
strips from one batched trace, the language × modality distribution, and the language a concept link implies."""
from __future__ import annotations

import json

import numpy as np
import pytest

from app import state as st
from app.client import AtlasClient
from app.components import evidence as ev, figures as fg
from app.components.common import Provenance
from app.main import create_app
from app.pages import unit
from tests.app.test_app_backend import forwarding
from tests.backend.api_support import atlas_store, client_for, make_settings  # noqa: F401  (atlas_store is a fixture)


@pytest.fixture(scope="module")
def env(atlas_store, tiny_bundle, tmp_path_factory):  # noqa: F811
    store, run_id = atlas_store
    settings = make_settings(store, tmp_path_factory.mktemp("unit-evidence"), max_new_tokens=10)
    with client_for(settings, bundle=tiny_bundle) as tc:
        client = AtlasClient("http://testserver", transport=forwarding(tc))
        dash_app = create_app("http://testserver", client=client)
        yield dash_app, client, run_id


def _unit(registry, stack: str, domain: str | None = None) -> int:
    site = next(s for s in registry.sites if s.stack == stack and (domain is None or s.domain == domain))
    return site.offset + 2


def test_strips_colour_by_one_scale_and_say_where_they_peak():
    assert ev.strip_scale([{"values": [0.1, -0.4]}, {"values": [0.2], "output_values": [0.3, float("nan")]}]) == 0.4
    assert ev.strip_scale([]) == 1.0
    assert ev.colour(0.0, 1.0) == "rgba(213,94,0,0.00)" and ev.colour(-2.0, 1.0) == "rgba(0,114,178,0.85)"
    strip = ev.token_strip(["</s>", "__deu__", "▁Die", "▁T<b>", "▁Tür"], [0.1, 0.2, -0.9, 0.0], 1.0, window=2,
                           what="output tokens")
    data = json.loads(getattr(strip.children[0], "data-strip"))
    assert [c.count("tok-window") for c in data["classes"]] == [1, 1, 0, 0, 0] and "peak -0.900 at 'Die'" in str(strip)
    assert data["tokens"] == ["</s>", "__deu__", " Die", " T<b>", " Tür"]  # drawn as text by assets/evidence.js
    assert data["tips"][-1] == "▁Tür · no value" and data["colours"][-1] == "transparent"  # never fed back: no value
    frames = ev.frame_strip([0.0175 + 0.02 * i for i in range(400)], np.sin(np.arange(400) / 20), 1.0)
    bar = frames.children[0].style["background"]
    assert bar.count("%") == 2 * ev.MAX_FRAME_STOPS and "0.02–8.00 s (400)" in str(frames)
    half = ev.frame_strip([0.0175 + 0.02 * i for i in range(200)], np.ones(200), 1.0, longest_s=8.0)
    assert half.children[0].style["width"] == "50.0%"  # one time scale for the rows of a page


def test_examples_page_through_and_strips_come_from_one_batched_trace(env, tiny_registry):
    dash_app, client, run_id = env
    uid = _unit(tiny_registry, "text_decoder", "decoder")
    s, _ = st.parse("unit", {"run": run_id, "unit": str(uid), "task": "t2tt", "step": "7"})
    prov = Provenance(run_id)
    with dash_app.server.app_context():
        first_children, first = unit.examples_block(s, prov)
        _, second = unit.examples_block({**s, "offset": 20}, prov)
        cells, status = unit.evidence_cells(first)
    assert first["total"] == 12 and len(first["items"]) == 24  # 12 t2tt items, all of them at each end
    assert second["items"] == [] and second["offset"] == 20
    assert "recorded to 5 tokens" in str(first_children)
    assert len(cells) == len(first["items"])
    text = str(cells) + str(status)
    assert "tok-window" in text and "24 items traced live in one batch" in text and "at most 10 new tokens" in text
    assert "recorded window the stored value averages" in text


def test_encoder_strips_cover_the_input_and_show_the_whole_output(env, tiny_registry):
    dash_app, client, run_id = env
    uid = _unit(tiny_registry, "text_encoder")
    s, _ = st.parse("unit", {"run": run_id, "unit": str(uid), "task": "t2tt"})
    with dash_app.server.app_context():
        _, page = unit.examples_block(s, Provenance(run_id))
        page["items"] = page["items"][:3]
        cells, _ = unit.evidence_cells(page)
    text = str(cells)
    assert "input tokens: peak" in text and "tok-window" not in text and "output-text" in text


def test_distribution_groups_by_language_and_modality(env, tiny_registry):
    _, client, run_id = env
    uid = _unit(tiny_registry, "text_decoder", "decoder")
    acts = client.unit_activations(run_id, uid, step=7)
    fig = fg.language_modality_distribution(acts, Provenance(run_id), step=7)
    at_step = [g for g in acts["groups"] if g["step"] in (None, 7)]
    drawn = {y: med for trace in fig.data for y, med in zip(trace.y, trace.median)}
    assert set(drawn) == {f"{g['language']} · {g['modality']} · {g['task']}" for g in at_step}
    for g in at_step:
        assert drawn[f"{g['language']} · {g['modality']} · {g['task']}"] == g["quantiles"]["p50"]
    assert {t.name for t in fig.data} == {f"{g['modality']} input" for g in at_step}
    assert all(t.type == "box" for t in fig.data)


def test_a_unit_opened_from_a_french_concept_speaks_french(env, tiny_registry):
    dash_app, client, run_id = env
    uid = _unit(tiny_registry, "text_decoder", "decoder")
    stats = client.unit(run_id, uid)["stats"]
    fra = next(x["concept_id"] for x in stats if x.get("language") == "fra" and x["kind"] == "language")
    with dash_app.server.app_context():
        s, _ = st.parse("unit", {"run": run_id, "unit": str(uid), "concept": str(fra)})
        unit.resolve(s)
        assert s["lang"] == "fra"
        s, _ = st.parse("unit", {"run": run_id, "unit": str(uid)})
        unit.resolve(s)
        assert s["lang"] == "deu"  # no concept: the first non-English language, as before
        page = str(unit.layout(run=run_id, unit=str(uid), concept=str(fra)))
    assert "lang=fra" in page
