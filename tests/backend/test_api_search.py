"""GET /runs/{run}/search: unit id, site:channel, site key, words of a site key, filters and AP ranges, each checked
against the store's own tables; bad inputs get a 4xx naming the field."""
from __future__ import annotations

import duckdb
import pytest

from tests.backend.api_support import atlas_store, client_for, make_settings  # noqa: F401


@pytest.fixture(scope="module")
def client(atlas_store, tiny_bundle, tmp_path_factory):
    store, _ = atlas_store
    with client_for(make_settings(store, tmp_path_factory.mktemp("search")), tiny_bundle) as c:
        yield c


@pytest.fixture(scope="module")
def sites(atlas_store):
    con = duckdb.connect(str(atlas_store[0]), read_only=True)
    try:
        yield con.execute("SELECT site, stack, layer, component, width, unit_offset FROM sites WHERE run_id = ? "
                          "ORDER BY unit_offset", [atlas_store[1]]).df()
    finally:
        con.close()


def search(client, run_id, **params):
    r = client.get(f"/runs/{run_id}/search", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_unit_id_and_a_site_channel_find_that_unit(client, atlas_store, sites):
    run_id = atlas_store[1]
    row = sites.iloc[len(sites) // 2]
    unit_id = int(row["unit_offset"]) + 3
    by_id = search(client, run_id, q=str(unit_id))
    assert by_id["interpreted_as"] == "unit" and by_id["total"] == 1
    assert by_id["units"][0]["site"] == row["site"]
    assert by_id["units"][0]["channel"] == 3
    by_key = search(client, run_id, q=f"{row['site']}:3")
    assert by_key["interpreted_as"] == "site_channel" and [u["unit_id"] for u in by_key["units"]] == [unit_id]


def test_site_words_and_filters_list_the_matching_sites_units(client, atlas_store, sites):
    run_id = atlas_store[1]
    dec = sites[(sites["stack"] == "text_decoder") & (sites["component"] == "ffn")]
    page = search(client, run_id, stack="text_decoder", component="ffn", limit=50, offset=5)
    assert page["interpreted_as"] == "filters" and page["total"] == int(dec["width"].sum())
    expected = [u for a, w in zip(dec["unit_offset"], dec["width"]) for u in range(int(a), int(a + w))][5:55]
    assert [u["unit_id"] for u in page["units"]] == expected
    assert {u["component"] for u in page["units"]} == {"ffn"}
    fc1 = sites[sites["site"].str.contains("layers.1.") & sites["site"].str.contains("fc1")]
    words = search(client, run_id, q="layers.1. FC1", limit=200)
    assert words["interpreted_as"] == "site_text" and words["total"] == int(fc1["width"].sum())
    assert {u["site"] for u in words["units"]} == set(fc1["site"])
    exact = search(client, run_id, q=fc1["site"].iloc[0])
    assert exact["interpreted_as"] == "site" and exact["total"] == int(fc1["width"].iloc[0])
    none = search(client, run_id, q="no-such-module")
    assert none["total"] == 0 and none["units"] == [] and "no-such-module" in none["message"]


def test_an_ap_range_keeps_the_units_in_it_highest_first(client, atlas_store):
    run_id = atlas_store[1]
    concept = client.get(f"/runs/{run_id}/concepts", params={"kind": "language", "limit": 1}).json()["concepts"][0]
    cid = concept["concept_id"]
    page = search(client, run_id, stack="text_decoder", concept_id=cid, min_ap=0.2, max_ap=0.9, limit=500)
    con = duckdb.connect(str(atlas_store[0]), read_only=True)
    try:
        expected = con.execute(
            "SELECT s.unit_id FROM unit_stats s JOIN units u USING (run_id, unit_id) WHERE s.run_id = ? AND concept_id = ? "
            "AND u.stack = 'text_decoder' AND ap BETWEEN 0.2 AND 0.9 ORDER BY ap DESC, unit_id", [run_id, cid]).fetchall()
    finally:
        con.close()
    assert page["total"] == len(expected) > 0
    assert [u["unit_id"] for u in page["units"]] == [e[0] for e in expected][:500]
    aps = [u["ap"] for u in page["units"]]
    assert aps == sorted(aps, reverse=True) and all(0.2 <= a <= 0.9 for a in aps)
    one = search(client, run_id, q=str(page["units"][0]["unit_id"]), concept_id=cid)
    assert one["units"][0]["ap"] == pytest.approx(aps[0])


@pytest.mark.parametrize("params, status, field", [
    ({"q": "999999999"}, 404, None),
    ({"q": "text_decoder.layers.0.nope:3"}, 404, None),
    ({"min_ap": 0.5}, 422, "concept_id"),
    ({"concept_id": 0, "min_ap": 0.8, "max_ap": 0.2}, 422, "max_ap"),
    ({"concept_id": 0, "min_ap": 1.5}, 422, "min_ap"),
    ({"stack": "nope"}, 422, "stack"),
    ({"concept_id": 99999}, 404, None),
])
def test_bad_searches_say_what_is_wrong(client, atlas_store, params, status, field):
    r = client.get(f"/runs/{atlas_store[1]}/search", params=params)
    assert r.status_code == status, r.text
    if field:
        assert r.json()["field"] == field, r.json()


def test_a_channel_beyond_the_site_is_refused(client, atlas_store, sites):
    row = sites.iloc[0]
    r = client.get(f"/runs/{atlas_store[1]}/search", params={"q": f"{row['site']}:{int(row['width'])}"})
    assert r.status_code == 404 and f"0..{int(row['width']) - 1}" in r.json()["error"]
