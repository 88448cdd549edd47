"""Findings and share links saved before the spec's decoding-step scope was renamed (spec version 1, `scope.steps`)
open and replay identically against the current backend. The fixture was written by the code of commit c04c821."""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from app import state as st, views
from app.client import AtlasClient
from app.main import create_app
from app.pages import findings
from neuron_atlas.engine.interventions import InterventionSpec, upgrade_spec
from tests.app.test_app_backend import forwarding
from tests.backend.api_support import atlas_store, client_for, make_settings  # noqa: F401  (atlas_store is a fixture)

FIXTURE = Path(__file__).parent / "fixtures" / "findings_spec_v1.json"


@pytest.fixture(scope="module")
def env(atlas_store, tiny_bundle, tmp_path_factory):  # noqa: F811
    store, run_id = atlas_store
    with client_for(make_settings(store, tmp_path_factory.mktemp("findings-v1")), bundle=tiny_bundle) as tc:
        client = AtlasClient("http://testserver", transport=forwarding(tc))
        yield create_app("http://testserver", client=client), client, run_id


def saved(run_id: str) -> dict:
    """The fixture with the session's run id in place of the one it was saved under."""
    return json.loads(FIXTURE.read_text().replace("{run_id}", run_id))


def test_the_fixture_holds_version_1_specs_with_a_decoding_step_scope():
    data = saved("r")
    assert [f["spec"]["version"] for f in data["findings"]] == [1, 1]
    assert data["findings"][1]["spec"]["scope"] == {"positions": "last", "steps": [1, 2]}


def test_version_1_findings_replay_identically(env):
    _, client, run_id = env
    for finding in saved(run_id)["findings"]:
        frozen = finding["state"]["frozen"]
        assert views.verify(client, frozen) == [], finding["title"]
        fresh = views.execute(client, frozen["calls"][0])
        assert fresh["spec"]["version"] == 2 and "decode_steps" in fresh["spec"]["scope"]
        assert views.compare(frozen["responses"], [{**fresh, "intervened": {**fresh["intervened"], "text": "x"}}]), \
            "a changed output is still reported"


def test_a_version_1_share_link_rebuilds_the_saved_request(env):
    _, client, run_id = env
    data = saved(run_id)
    path, _, query = data["lab_href"].partition("?")
    s, problems = st.parse(st.page_of(path), {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()})
    assert not problems
    frozen = data["findings"][0]["state"]["frozen"]
    calls = views.view_calls(client, "lab", s)
    assert calls == frozen["calls"]
    assert views.verify(client, {"calls": calls, "responses": frozen["responses"]}) == []


def test_a_version_1_finding_card_names_its_decoding_steps(env):
    dash_app, _, run_id = env
    with dash_app.server.app_context():
        text = str(findings.card(saved(run_id)["findings"][1]))
    assert "positions last, decoding steps [1, 2]" in text


def test_the_dashboard_upgrades_specs_as_the_engine_reads_them():
    for finding in saved("r")["findings"]:
        for spec in (finding["spec"], finding["state"]["frozen"]["responses"][0]["spec"]):
            assert views.upgrade_spec(spec) == upgrade_spec(spec) == json.loads(InterventionSpec.parse(spec).canonical_json())


def test_a_finding_saved_before_the_per_token_evidence_was_kept_draws_what_it_kept_and_says_so(env):
    """The fixture's findings stored no per-token probabilities and no first difference: the card draws the outputs and
    the language bars, says the per-token chart was not kept, and re-verifying ignores the fields it was saved before."""
    dash_app, client, run_id = env
    finding = saved(run_id)["findings"][0]
    stored = finding["state"]["frozen"]["responses"][0]
    assert "tokens" not in stored["intervened"] and "first_difference" not in stored
    with dash_app.server.app_context():
        text = str(findings.card(finding))
    assert "not kept by findings saved before" in text and "finding-fig-tokens" not in text
    assert "finding-fig-0" in text and "strength 1 · positions all, decoding steps all" in text
    fresh = views.execute(client, finding["state"]["frozen"]["calls"][0])
    assert fresh["intervened"]["tokens"] and "first_difference" in fresh
    assert views.verify(client, finding["state"]["frozen"]) == []
