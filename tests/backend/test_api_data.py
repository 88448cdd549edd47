"""Data, health, audio, export and findings routes through the test client, checked against direct DuckDB queries."""
from __future__ import annotations

import io
import os
import re
import shutil
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from backend.api.app import create_app
from backend.store.reader import EXPORT_TABLES, StoreReader, StoreStats
from neuron_atlas.engine.store_schema import StoreVersionError, create_schema
from neuron_atlas.engine.versions import ENGINE_VERSION, STORE_VERSION
from precompute.activation_store import load_acts
from tests.backend.api_support import KS, LANGS, assert_error, atlas_store, client_for, make_settings  # noqa: F401


@pytest.fixture(scope="module")
def client(atlas_store, tiny_bundle, tmp_path_factory):
    store, _ = atlas_store
    with client_for(make_settings(store, tmp_path_factory.mktemp("data")), tiny_bundle) as c:
        yield c


@pytest.fixture(scope="module")
def db(atlas_store):
    con = duckdb.connect(str(atlas_store[0]), read_only=True)
    yield con
    con.close()


def q(con, sql, *params) -> pd.DataFrame:
    return con.execute(sql, list(params)).df()


def test_runs_run_tasks_languages_steps(client, db, atlas_store):
    _, run_id = atlas_store
    body = client.get("/runs").json()
    assert body["engine_version"] == ENGINE_VERSION and body["store_version"] == STORE_VERSION
    assert [r["run_id"] for r in body["runs"]] == [run_id]
    run = client.get(f"/runs/{run_id}").json()
    assert run["model"]["spec"] == "tiny-random" and run["config"]["analysis"]["ks"] == KS
    assert client.get("/runs/latest").json()["run_id"] == run_id
    tasks = client.get(f"/runs/{run_id}/tasks").json()["tasks"]
    expected = dict(db.execute("SELECT task, count(*) FROM items GROUP BY task").fetchall())
    assert {t["task"]: t["n_items"] for t in tasks} == expected
    assert [t["task"] for t in tasks] == ["asr", "s2tt", "t2tt", "en2x_s2tt", "en2x_t2tt"]
    langs = client.get(f"/runs/{run_id}/languages").json()["languages"]
    assert [lang["language"] for lang in langs] == LANGS and all(lang["n_examples"] == 6 for lang in langs)
    assert client.get(f"/runs/{run_id}/steps").json()["steps"] == [2, 7]
    # the text token ids each text example was fed as (clean mode: no pads), and nothing dropped
    fed = dict(db.execute("SELECT DISTINCT example_id, input_ids FROM items WHERE modality = 'text'").fetchall())
    assert {r["example_id"]: r["input_ids"] for r in run["text_inputs"]} == fed
    assert all(r["fed_length"] == len(r["input_ids"]) for r in run["text_inputs"]) and run["dropped"] == []


def test_a_store_older_than_1_2_is_served_without_token_ids(atlas_store, tmp_path):
    """Stores written before schema 1.2 have no items.input_ids column and no dropped table: still readable."""
    store, run_id = atlas_store
    old = tmp_path / "old.duckdb"
    shutil.copyfile(store, old)
    con = duckdb.connect(str(old))
    con.execute("ALTER TABLE items DROP COLUMN input_ids")
    con.execute("ALTER TABLE sites DROP COLUMN in_reference")
    con.execute("DROP TABLE dropped")
    con.execute("UPDATE meta SET value = '1.1' WHERE key = 'store_version'")
    con.close()
    with client_for(make_settings(old, tmp_path, model="none")) as c:
        run = c.get(f"/runs/{run_id}").json()
        assert run["text_inputs"] == [] and run["dropped"] == [] and run["store_version"] == "1.1"
        assert c.get(f"/runs/{run_id}/sites").status_code == 200
        assert_error(c.get("/export/dropped"), 404, "not in this store")


def test_concepts_filter_and_paginate(client, db, atlas_store):
    _, run_id = atlas_store
    all_rows = client.get(f"/runs/{run_id}/concepts", params={"limit": 500}).json()
    assert all_rows["total"] == db.execute("SELECT count(*) FROM concepts").fetchone()[0]
    page = client.get(f"/runs/{run_id}/concepts", params={"kind": "language", "task": "t2tt", "step": 7}).json()
    ref = q(db, "SELECT concept_id FROM concepts WHERE kind='language' AND task='t2tt' AND step=7 ORDER BY 1")
    assert [c["concept_id"] for c in page["concepts"]] == ref["concept_id"].tolist()
    second = client.get(f"/runs/{run_id}/concepts", params={"limit": 3, "offset": 3}).json()
    assert [c["concept_id"] for c in second["concepts"]] == [3, 4, 5]
    one = client.get(f"/runs/{run_id}/concepts/4").json()
    assert one["concept_id"] == 4 and one["description"]


@pytest.mark.parametrize("stack,threshold", [("text_decoder", 0.9), ("text_decoder", 0.5), ("speech_encoder", 0.7)])
def test_heatmap_ap_counts_match_sql(client, db, atlas_store, stack, threshold):
    _, run_id = atlas_store
    body = client.get(f"/runs/{run_id}/heatmap", params={"stack": stack, "threshold": threshold, "kind": "language"}).json()
    ids = [c["concept_id"] for c in body["concepts"]]
    ref = q(db, "SELECT s.concept_id, u.layer, count(*) AS n FROM unit_stats s JOIN units u USING (run_id, unit_id) "
                "WHERE u.stack = ? AND s.ap >= ? AND s.concept_id IN (SELECT unnest(?)) GROUP BY ALL", stack, threshold, ids)
    expected = np.zeros((len(ids), len(body["layers"])), dtype=int)
    for r in ref.itertuples():
        expected[ids.index(r.concept_id), body["layers"].index(r.layer)] = r.n
    assert np.array_equal(np.array(body["counts"]), expected)
    assert expected.sum() > 0
    assert np.array_equal(sum(np.array(v) for v in body["by_component"].values()), expected)
    n_units = q(db, "SELECT layer, count(*) AS n FROM units WHERE stack = ? GROUP BY 1 ORDER BY 1", stack)
    assert body["units_per_layer"] == n_units["n"].tolist()
    concepts = q(db, "SELECT concept_id, stacks FROM concepts WHERE kind = 'language'")
    assert sorted(ids) == sorted(c for c, s in zip(concepts["concept_id"], concepts["stacks"]) if stack in list(s))


def test_heatmap_top_sets_and_component(client, db, atlas_store):
    _, run_id = atlas_store
    params = {"stack": "text_decoder", "mode": "top", "k": 10, "task": "s2tt", "step": 2, "component": "cross-attn"}
    body = client.get(f"/runs/{run_id}/heatmap", params=params).json()
    ids = [c["concept_id"] for c in body["concepts"]]
    ref = q(db, "SELECT s.concept_id, u.layer, count(*) AS n FROM selections s JOIN units u USING (run_id, unit_id) "
                "WHERE s.kind='top' AND s.scope='text_decoder' AND s.k_requested=10 AND u.component='cross-attn' "
                "AND s.concept_id IN (SELECT unnest(?)) GROUP BY ALL", ids)
    expected = np.zeros((len(ids), len(body["layers"])), dtype=int)
    for r in ref.itertuples():
        expected[ids.index(r.concept_id), body["layers"].index(r.layer)] = r.n
    assert np.array_equal(np.array(body["counts"]), expected) and body["k"] == 10
    assert list(body["by_component"]) == ["cross-attn"]
    params.pop("component")
    full = client.get(f"/runs/{run_id}/heatmap", params={**params, "mode": "both"}).json()
    assert np.array(full["counts"]).sum(axis=1).tolist() == [20] * len(ids)


@pytest.mark.parametrize("mode, component", [("ap", None), ("top", "cross-attn")])
def test_heatmap_by_site_role_matches_sql(client, db, atlas_store, mode, component):
    _, run_id = atlas_store
    params = {"stack": "text_decoder", "mode": mode, "threshold": 0.6, "k": 10, "task": "s2tt", "step": 2,
              "group": "site", **({"component": component} if component else {})}
    body = client.get(f"/runs/{run_id}/heatmap", params=params).json()
    ids = [c["concept_id"] for c in body["concepts"]]
    source = ("SELECT concept_id, unit_id FROM unit_stats WHERE ap >= 0.6" if mode == "ap" else
              "SELECT concept_id, unit_id FROM selections WHERE kind='top' AND scope='text_decoder' AND k_requested=10")
    ref = q(db, f"SELECT s.concept_id, regexp_replace(u.site, '^text_decoder\\.(layers\\.[0-9]+\\.)?', '') AS role, "
                f"u.layer, count(*) AS n FROM ({source}) s JOIN units u ON u.unit_id = s.unit_id "
                "WHERE u.stack = 'text_decoder' AND s.concept_id IN (SELECT unnest(?))"
                + (" AND u.component = ?" if component else "") + " GROUP BY ALL", ids, *([component] if component else []))
    roles = q(db, "SELECT DISTINCT regexp_replace(site, '^text_decoder\\.(layers\\.[0-9]+\\.)?', '') AS role "
                  "FROM units WHERE stack = 'text_decoder'" + (" AND component = ?" if component else ""),
              *([component] if component else []))
    assert set(body["by_site"]) == set(roles["role"]) and set(body["units_per_layer_by_site"]) == set(body["by_site"])
    assert "cross_attention.k_proj" in body["by_site"] and "cross_attention.v_proj" in body["by_site"]
    for role, rows in body["by_site"].items():
        expected = np.zeros((len(ids), len(body["layers"])), dtype=int)
        for r in ref[ref["role"] == role].itertuples():
            expected[ids.index(r.concept_id), body["layers"].index(r.layer)] = r.n
        assert np.array_equal(np.array(rows), expected), role
    assert np.array_equal(sum(np.array(v) for v in body["by_site"].values()), np.array(body["counts"]))
    assert sum(np.array(v) for v in body["units_per_layer_by_site"].values()).tolist() == body["units_per_layer"]
    assert client.get(f"/runs/{run_id}/heatmap", params={"stack": "text_decoder"}).json()["by_site"] is None


def test_batch_interventions_and_their_outputs_match_the_tables(client, db, atlas_store):
    _, run_id = atlas_store
    body = client.get(f"/runs/{run_id}/interventions", params={"input_task": "t2tt"}).json()
    ref = q(db, "SELECT experiment_id, set_kind, mean_p_concept_lang FROM interventions WHERE input_task = 't2tt' "
                "ORDER BY experiment_id")
    assert [c["experiment_id"] for c in body["conditions"]] == ref["experiment_id"].tolist()
    assert set(body["experiments"]) >= {"ablation"} and {c["set_kind"] for c in body["conditions"]} >= {"baseline", "both"}
    spec_row = next(c for c in body["conditions"] if c["set_kind"] == "both")
    assert spec_row["spec"]["units"]["set"] == "both" and isinstance(spec_row["spec"], dict)
    page = client.get(f"/runs/{run_id}/interventions/{spec_row['experiment_id']}/outputs", params={"limit": 2}).json()
    outs = q(db, "SELECT item, output_text FROM intervention_outputs WHERE experiment_id = ? ORDER BY item",
             spec_row["experiment_id"])
    assert page["total"] == len(outs) and [o["item"] for o in page["outputs"]] == outs["item"].tolist()[:2]
    assert page["outputs"][0]["output_text"] == outs["output_text"].iloc[0]
    assert isinstance(page["outputs"][0]["lang_probs"], dict) and page["condition"]["experiment_id"] == spec_row["experiment_id"]
    assert_error(client.get(f"/runs/{run_id}/interventions/999999/outputs"), 404, "999999")
    assert_error(client.get(f"/runs/{run_id}/interventions", params={"experiment": "nope"}), 422, "experiment")


def test_concentration_overlap_spearman_match_tables(client, db, atlas_store):
    _, run_id = atlas_store
    conc = client.get(f"/runs/{run_id}/concentration", params={"stack": "text_decoder", "step": 7, "task": "s2tt"}).json()
    ref = q(db, "SELECT language, layer, gini FROM concentration WHERE stack='text_decoder' AND step=7 AND task='s2tt'")
    for series in conc["series"]:
        for layer, value in zip(conc["layers"], series["values"]):
            want = ref[(ref.language == series["language"]) & (ref.layer == layer)]["gini"].item()
            assert value == pytest.approx(want)
    ov = client.get(f"/runs/{run_id}/overlap", params={"role": "control", "step": 2, "set_kind": "both", "k": 5, "metric": "jaccard"}).json()
    ref = q(db, "SELECT text_lang, speech_lang, jaccard, chance_jaccard, count FROM overlap WHERE role='control' AND step=2 "
                "AND set_kind='both' AND k=5")
    assert len(ref) == len(ov["text_langs"]) * len(ov["speech_langs"]) == 4
    for r in ref.itertuples():
        i, j = ov["text_langs"].index(r.text_lang), ov["speech_langs"].index(r.speech_lang)
        assert ov["matrix"][i][j] == pytest.approx(r.jaccard) and ov["chance"][i][j] == pytest.approx(r.chance_jaccard)
        assert ov["counts"][i][j] == r.count
    sp = client.get(f"/runs/{run_id}/spearman", params={"role": "representation", "step": 7, "scope": "text_decoder/layer"}).json()
    ref = q(db, "SELECT layer, text_lang, speech_lang, rho FROM spearman WHERE role='representation' AND step=7 AND scope='text_decoder/layer'")
    assert [m["layer"] for m in sp["matrices"]] == sorted(ref["layer"].unique().tolist())
    for r in ref.itertuples():
        m = next(m for m in sp["matrices"] if m["layer"] == r.layer)
        got = m["matrix"][sp["text_langs"].index(r.text_lang)][sp["speech_langs"].index(r.speech_lang)]
        assert (got is None and np.isnan(r.rho)) or got == pytest.approx(r.rho)
    one = client.get(f"/runs/{run_id}/spearman", params={"step": 7, "scope": "text_decoder/layer", "layer": 1}).json()
    assert [m["layer"] for m in one["matrices"]] == [1]


def test_overlap_click_through_lists_the_shared_units(client, db, atlas_store):
    _, run_id = atlas_store
    cell = q(db, "SELECT * FROM overlap WHERE set_kind='both' ORDER BY count DESC, role, step, k LIMIT 1").iloc[0]
    body = client.get(f"/runs/{run_id}/overlap/units", params={
        "role": cell.role, "step": int(cell.step), "set_kind": "both", "k": int(cell.k),
        "text_lang": cell.text_lang, "speech_lang": cell.speech_lang}).json()
    sets = [set(q(db, "SELECT unit_id FROM selections WHERE concept_id=? AND kind='both' AND scope='text_decoder' AND k_requested=?",
                  c, int(cell.k))["unit_id"])
            for c in (int(cell.text_concept), int(cell.speech_concept))]
    assert {u["unit_id"] for u in body["units"]} == sets[0] & sets[1]
    assert body["total"] == cell["count"] > 0
    assert all(u["stack"] == "text_decoder" for u in body["units"])


def test_layer_units_sort_filter_paginate(client, db, atlas_store):
    _, run_id = atlas_store
    cid = int(q(db, "SELECT concept_id FROM concepts WHERE kind='language' AND task='t2tt' AND step=2 LIMIT 1").iloc[0, 0])
    ref = q(db, "SELECT s.unit_id, s.ap, s.on_p50, u.component, u.site, u.channel FROM unit_stats s JOIN units u USING (run_id, unit_id) "
                "WHERE s.concept_id = ? AND u.stack='text_decoder' AND u.layer = 1", cid)
    body = client.get(f"/runs/{run_id}/layers/text_decoder/1/units", params={"concept_id": cid, "limit": 7}).json()
    want = ref.sort_values(["ap", "unit_id"], ascending=[False, True]).head(7)
    assert [u["unit_id"] for u in body["units"]] == want["unit_id"].tolist()
    assert body["total"] == len(ref)
    assert [u["site"] for u in body["units"]] == want["site"].tolist() and [u["channel"] for u in body["units"]] == want["channel"].tolist()
    params = {"concept_id": cid, "sort": "on_p50", "order": "asc", "component": "ffn", "min_ap": 0.4, "limit": 5, "offset": 2}
    body = client.get(f"/runs/{run_id}/layers/text_decoder/1/units", params=params).json()
    sub = ref[(ref.component == "ffn") & (ref.ap >= 0.4)].sort_values(["on_p50", "unit_id"])
    assert [u["unit_id"] for u in body["units"]] == sub["unit_id"].iloc[2:7].tolist() and body["total"] == len(sub)
    assert all(u["component"] == "ffn" and u["ap"] >= 0.4 for u in body["units"])


def test_unit_stats_activations_and_examples(client, db, atlas_store):
    store, run_id = atlas_store
    unit_id = int(q(db, "SELECT unit_offset + 3 FROM sites WHERE site = 'text_decoder.layers.1.ffn.fc1'").iloc[0, 0])
    body = client.get(f"/runs/{run_id}/units/{unit_id}").json()
    assert (body["site"], body["channel"], body["stack"], body["layer"], body["component"]) == (
        "text_decoder.layers.1.ffn.fc1", 3, "text_decoder", 1, "ffn")
    ref = q(db, "SELECT concept_id, ap, on_p50 FROM unit_stats WHERE unit_id = ? ORDER BY 1", unit_id)
    assert [s["concept_id"] for s in body["stats"]] == ref["concept_id"].tolist()
    assert [s["ap"] for s in body["stats"]] == pytest.approx(ref["ap"].tolist())
    work = q(db, "SELECT work_dir FROM runs").iloc[0, 0]
    start = int(q(db, "SELECT min(unit_offset) FROM sites WHERE stack='text_decoder'").iloc[0, 0])
    acts = np.asarray(load_acts(Path(work), "t2tt", "text_decoder.step7")[unit_id - start], dtype=np.float64)
    labels = q(db, "SELECT label FROM items WHERE task='t2tt' ORDER BY item")["label"].to_numpy()
    dist = client.get(f"/runs/{run_id}/units/{unit_id}/activations", params={"step": 7}).json()
    group = next(g for g in dist["groups"] if g["task"] == "t2tt" and g["language"] == "fra")
    assert group["quantiles"]["p50"] == pytest.approx(np.median(acts[labels == "fra"]))
    assert group["n"] == int((labels == "fra").sum()) and group["quantiles"]["max"] == pytest.approx(acts[labels == "fra"].max())
    assert {g["step"] for g in dist["groups"]} == {7}
    ex = client.get(f"/runs/{run_id}/units/{unit_id}/examples", params={"task": "t2tt", "step": 7, "n": 3}).json()
    top = ex["sets"][0]["top"]
    assert [t["item"] for t in top] == np.argsort(-acts, kind="stable")[:3].tolist()
    assert top[0]["activation"] == pytest.approx(acts.max()) and top[0]["text"]
    assert ex["sets"][0]["bottom"][0]["activation"] == pytest.approx(acts.min())
    enc = client.get(f"/runs/{run_id}/units/5/activations").json()
    assert {g["task"] for g in enc["groups"]} == {"asr", "s2tt", "en2x_s2tt"} and {g["step"] for g in enc["groups"]} == {None}


def test_layers_sites_examples_and_audio(client, db, atlas_store):
    _, run_id = atlas_store
    layers = client.get(f"/runs/{run_id}/layers").json()["layers"]
    assert sum(layer["n_units"] for layer in layers) == db.execute("SELECT count(*) FROM units").fetchone()[0]
    sites = client.get(f"/runs/{run_id}/sites").json()["sites"]
    assert len(sites) == db.execute("SELECT count(*) FROM sites").fetchone()[0]
    page = client.get(f"/runs/{run_id}/examples", params={"lang": "fra", "limit": 4}).json()
    assert page["total"] == 6 and len(page["examples"]) == 4 and all(e["lang"] == "fra" for e in page["examples"])
    ex_id = page["examples"][0]["example_id"]
    one = client.get(f"/runs/{run_id}/examples/{ex_id}").json()
    assert one["text"] and {i["task"] for i in one["items"]} == {"asr", "s2tt", "t2tt"}
    r = client.get(f"/runs/{run_id}/audio/{ex_id}")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    wav, rate = sf.read(io.BytesIO(r.content), dtype="float32")
    flac = db.execute("SELECT flac FROM example_audio WHERE example_id = ?", [ex_id]).fetchone()[0]
    ref, ref_rate = sf.read(io.BytesIO(flac), dtype="float32")
    assert rate == ref_rate == 16000 and np.allclose(wav, ref, atol=2 / 32768)


def test_export_parquet_whole_table_and_one_run(client, db, atlas_store):
    _, run_id = atlas_store
    for table, params in [("concepts", {}), ("unit_stats", {"run_id": run_id}), ("meta", {}), ("selections", {"run_id": "latest"})]:
        r = client.get(f"/export/{table}", params=params)
        assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apache.parquet"
        got = pq.read_table(io.BytesIO(r.content))
        assert got.num_rows == db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        assert got.column_names == [c[0] for c in db.execute(f"DESCRIBE {table}").fetchall()]
    assert_error(client.get("/export/pg_catalog"), 422, "table")
    assert_error(client.get("/export/meta", params={"run_id": run_id}), 422, "meta table holds no runs")


def test_docs_list_every_exportable_table(client, atlas_store):
    """docs/api.md names exactly the tables the export route accepts, and each of them exports."""
    _, run_id = atlas_store
    doc = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    listed = re.search(r"`GET /export/\{table\}[^(]*\(([^)]*)\)", doc)
    assert listed, "the export section lists its tables in parentheses"
    assert re.findall(r"`(\w+)`", listed.group(1)) == list(EXPORT_TABLES)
    for table in ("interventions", "intervention_outputs"):
        assert client.get(f"/export/{table}", params={"run_id": run_id}).status_code == 200


def test_health_readiness_capabilities_and_version_headers(client, atlas_store):
    _, run_id = atlas_store
    assert client.get("/healthz").json() == {"status": "ok", "engine_version": ENGINE_VERSION, "store_version": STORE_VERSION}
    ready = client.get("/readyz").json()
    assert ready["ready"] and ready["model"]["state"] == "ready" and ready["store"]["open"]
    caps = client.get("/capabilities").json()
    assert caps["model"]["loaded"] == "tiny-random" and caps["device"] == "cpu"
    layers = client.get(f"/runs/{run_id}/layers").json()["layers"]
    assert caps["unit_sites"]["n_units"] == sum(layer["n_units"] for layer in layers)
    assert caps["languages"]["runs"] == sorted(LANGS) and caps["languages"]["model"][:3] == ["eng", "deu", "spa"]
    assert caps["limits"]["queue_size"] == 8 and caps["engine_version"] == ENGINE_VERSION
    for url in ["/healthz", "/runs", f"/runs/{run_id}/units/0", "/runs/nope", "/nowhere", "/openapi.json"]:
        r = client.get(url)
        assert r.headers["x-neuron-atlas-engine"] == ENGINE_VERSION and r.headers["x-neuron-atlas-store"] == STORE_VERSION, url
    assert_error(client.get("/nowhere"), 404, "no route GET /nowhere")


def test_findings_create_read_list_and_survive_restart(atlas_store, tiny_bundle, tmp_path):
    store, run_id = atlas_store
    settings = make_settings(store, tmp_path)
    spec = {"units": {"kind": "explicit", "units": [{"module": "text_decoder.layers.0.ffn.fc1", "channel": 3}]}, "value": {"kind": "zero"}}
    title = "<script>alert('x')</script> & «ünïcode»"
    with client_for(settings, tiny_bundle) as c:
        r = c.post("/findings", json={"title": title, "note": "line 1\nline 2", "state": {"page": "lab", "k": [1, 2]},
                                      "spec": spec, "run_id": run_id})
        assert r.status_code == 201 and r.headers["location"] == f"/findings/{r.json()['id']}"
        fid = r.json()["id"]
        assert len(fid) == 8
        for i in range(3):
            c.post("/findings", json={"title": f"t{i}"})
        listing = c.get("/findings", params={"limit": 2}).json()
        assert listing["total"] == 4 and [f["title"] for f in listing["findings"]] == ["t2", "t1"]
    with client_for(settings, tiny_bundle) as c:
        got = c.get(f"/findings/{fid}").json()
    assert got["title"] == title and got["note"] == "line 1\nline 2" and got["state"] == {"page": "lab", "k": [1, 2]}
    assert got["spec"]["units"]["units"][0]["channel"] == 3 and got["spec"]["version"] == 2
    assert got["model"]["checksum"] == tiny_bundle.checksum


def test_findings_writes_need_the_token_when_configured(atlas_store, tiny_bundle, tmp_path):
    store, _ = atlas_store
    with client_for(make_settings(store, tmp_path, api_token="s3cret"), tiny_bundle) as c:
        assert_error(c.post("/findings", json={"title": "x"}), 401, "API token")
        assert_error(c.post("/findings", json={"title": "x"}, headers={"Authorization": "Bearer nope"}), 403, "not valid")
        assert c.post("/findings", json={"title": "x"}, headers={"Authorization": "Bearer s3cret"}).status_code == 201
        assert c.post("/findings", json={"title": "y"}, headers={"X-API-Token": "s3cret"}).status_code == 201
        assert c.get("/findings").json()["total"] == 2
        assert c.get("/capabilities").json()["auth"]["writes_need_token"] is True


def test_incompatible_store_is_refused_naming_both_versions(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    create_schema(con)
    con.execute("UPDATE meta SET value = '9.3' WHERE key = 'store_version'")
    con.close()
    with pytest.raises(StoreVersionError, match=rf"9\.3.*{STORE_VERSION}"):
        create_app(make_settings(path, tmp_path, model="none"))


def test_a_run_written_into_an_older_minor_version_store_gains_its_new_columns(tmp_path):
    """A 1.0 store (interventions without corpus scores) stays readable, and writing a run into it adds the columns
    instead of silently dropping the new values."""
    from neuron_atlas.engine.store_schema import ADDED_COLUMNS
    from precompute.store_writer import insert_frame, store_transaction

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    create_schema(con)
    for table, column, _ in ADDED_COLUMNS:
        con.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    con.execute("UPDATE meta SET value = '1.0' WHERE key = 'store_version'")
    con.close()
    with store_transaction(path, "r1") as con:
        cols = [r[0] for r in con.execute("DESCRIBE interventions").fetchall()]
        insert_frame(con, "interventions", pd.DataFrame([dict.fromkeys(cols, None) | {"run_id": "r1", "corpus_bleu": 12.5}]))
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT corpus_bleu FROM interventions").fetchone() == (12.5,)
        assert con.execute("SELECT value FROM meta WHERE key = 'store_version'").fetchone() == (STORE_VERSION,)


def test_missing_store_then_published_and_replaced(atlas_store, tiny_bundle, tmp_path):
    """No store at start: data routes answer 503 naming the path; once a store is published it is served, and a
    store renamed over it (as precompute publishes a run) is picked up."""
    store, run_id = atlas_store
    target = tmp_path / "later.duckdb"
    with client_for(make_settings(target, tmp_path, model="none"), raise_server_exceptions=True) as c:
        assert_error(c.get("/runs"), 503, "no store", str(target))
        assert c.get("/readyz").status_code == 503
        assert c.get("/healthz").json()["store_version"] is None
        shutil.copyfile(store, target)
        time.sleep(1.1)
        assert [r["run_id"] for r in c.get("/runs").json()["runs"]] == [run_id]
        assert c.get("/readyz").json()["model"]["state"] == "disabled"
        tmp = tmp_path / ".later.tmp"
        shutil.copyfile(store, tmp)
        con = duckdb.connect(str(tmp))
        con.execute("UPDATE runs SET name = 'renamed'")
        con.close()
        os.replace(tmp, target)
        assert c.get(f"/runs/{run_id}").json()["name"] == "renamed"


def test_demo_model_fallback_is_reported(atlas_store, tmp_path, monkeypatch):
    """A checkout without assets/demo-model (e.g. a trimmed image) falls back to tiny-random and says so."""
    from neuron_atlas.engine.model import loading

    monkeypatch.setattr(loading, "DEMO_MODEL_DIR", tmp_path / "no-demo-model")
    store, _ = atlas_store
    with client_for(make_settings(store, tmp_path, model="demo")) as c:
        model = c.get("/capabilities").json()["model"]
    assert model["requested"] == "demo" and model["loaded"] == "tiny-random" and model["state"] == "ready"
    assert "demo" in model["fallback_note"] and "tiny-random" in model["fallback_note"]


def test_the_shipped_demo_model_is_served_by_default(atlas_store, tmp_path):
    store, _ = atlas_store
    with client_for(make_settings(store, tmp_path, model="demo")) as c:
        model = c.get("/capabilities").json()["model"]
    assert model["requested"] == "demo" and model["loaded"] == "demo" and model["state"] == "ready"
    assert model["fallback_note"] is None and model["speech_output"] == "tts"


def test_cors_origins(atlas_store, tiny_bundle, tmp_path):
    store, _ = atlas_store
    with client_for(make_settings(store, tmp_path, cors_origins="http://localhost:8050"), tiny_bundle) as c:
        r = c.get("/healthz", headers={"Origin": "http://localhost:8050"})
        assert r.headers["access-control-allow-origin"] == "http://localhost:8050"
        assert "access-control-allow-origin" not in c.get("/healthz", headers={"Origin": "http://evil.test"}).headers


def test_store_stats_matches_selections_and_an_independent_ranking(atlas_store, tiny_registry):
    from neuron_atlas.engine.interventions import InMemoryStats

    store, run_id = atlas_store
    reader = StoreReader(store)
    stats = StoreStats(reader, run_id)
    con = duckdb.connect(str(store), read_only=True)
    cid = int(con.execute("SELECT concept_id FROM concepts WHERE kind='language' AND task='t2tt' LIMIT 1").fetchone()[0])
    stored = lambda kind, k, extra="": set(con.execute(
        f"SELECT unit_id FROM selections WHERE concept_id=? AND kind=? AND scope='text_decoder' AND k_requested=? {extra}",
        [cid, kind, k]).df()["unit_id"])
    for kind in ("top", "bottom", "both"):
        assert set(stats.selection(cid, kind, 5, 0, "text_decoder", None).tolist()) == stored(kind, 5)
    ffn = set(con.execute("SELECT unit_id FROM selections WHERE concept_id=? AND kind='top' AND scope='text_decoder/ffn' AND k_requested=5",
                          [cid]).df()["unit_id"])
    assert set(stats.selection(cid, "top", 5, 0, "text_decoder", "ffn").tolist()) == ffn
    rows = con.execute("SELECT unit_id, ap, on_p50 FROM unit_stats WHERE concept_id=?", [cid]).df()
    ap = np.full(tiny_registry.n_units, np.nan)
    ap[rows["unit_id"]] = rows["ap"]
    mem = InMemoryStats(tiny_registry, {cid: ap})
    for args in [("top", 7, 0, "text_decoder", None), ("top", 12, 0, None, None), ("random", 9, 3, "text_decoder", "cross-attn"),
                 ("top", 4, 0, "text_encoder", "norm")]:
        assert np.array_equal(stats.selection(cid, *args), mem.selection(cid, *args)), args
    ids = stats.selection(cid, "both", 5, 0, "text_decoder", None)
    values = stats.unit_values(cid, ids[::-1], "on_p50")
    expected = rows.set_index("unit_id").loc[ids[::-1], "on_p50"].to_numpy(np.float32)
    assert np.array_equal(values, expected)
    assert np.isnan(stats.unit_values(cid, np.array([0]), "on_p50")[0])  # speech encoder: no stats for a t2tt concept
    reader.close()
    con.close()


def test_settings_from_environment_and_env_file(tmp_path, monkeypatch):
    from backend.api.settings import Settings

    env = tmp_path / ".env"
    env.write_text("NEURON_ATLAS_QUEUE_SIZE=3\nNEURON_ATLAS_CORS_ORIGINS=http://a.test, http://b.test\nNEURON_ATLAS_API_TOKEN=t0k\n")
    monkeypatch.setenv("NEURON_ATLAS_MAX_TEXT_CHARS", "77")
    s = Settings(_env_file=env)
    assert (s.queue_size, s.max_text_chars, s.cors_origins) == (3, 77, ["http://a.test", "http://b.test"])
    assert s.api_token.get_secret_value() == "t0k" and "t0k" not in repr(s)
    monkeypatch.setenv("NEURON_ATLAS_QUEUE_SIZE", "5")
    assert Settings(_env_file=env).queue_size == 5, "the environment overrides the .env file"
    assert Settings(_env_file=None).model == "demo"


def test_store_and_memory_select_the_same_units_with_ties_at_the_cut_off(atlas_store, tiny_registry, tmp_path):
    """APs rounded to one decimal tie by the dozen at every cut-off: the live (store) and batch (memory) paths, which
    both call the engine's `select_units`, still pick the same units, and top ties go to the lower unit id."""
    from neuron_atlas.engine.interventions import InMemoryStats

    store, run_id = atlas_store
    tied = tmp_path / "tied.duckdb"
    shutil.copy(store, tied)
    with duckdb.connect(str(tied)) as con:
        con.execute("UPDATE unit_stats SET ap = round(ap, 1)")
        cid = int(con.execute("SELECT concept_id FROM concepts WHERE kind='language' AND task='t2tt' LIMIT 1").fetchone()[0])
        rows = con.execute("SELECT unit_id, ap FROM unit_stats WHERE concept_id=? AND NOT isnan(ap)", [cid]).df()
    ap = np.full(tiny_registry.n_units, np.nan)
    ap[rows["unit_id"]] = rows["ap"]
    reader = StoreReader(tied)
    live, batch = StoreStats(reader, run_id), InMemoryStats(tiny_registry, {cid: ap})
    decoder = tiny_registry.stack_ranges["text_decoder"]
    in_decoder = np.flatnonzero(np.isfinite(ap[decoder.start:decoder.stop])) + decoder.start
    order = in_decoder[np.lexsort((in_decoder, -ap[in_decoder]))]
    for k in (1, 7, 37, 90):
        cut = ap[order[k - 1]]
        assert (ap[order] == cut).sum() > 1, f"k={k}: the cut-off is tied"
        for kind in ("top", "bottom", "both", "random"):
            for stack, component in (("text_decoder", None), (None, None), ("text_decoder", "ffn")):
                args = (kind, k, 5, stack, component)
                assert np.array_equal(live.selection(cid, *args), batch.selection(cid, *args)), args
        assert live.selection(cid, "top", k, 0, "text_decoder", None).tolist() == sorted(order[:k].tolist())
    reader.close()
