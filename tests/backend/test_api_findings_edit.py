"""Editing and deleting findings: title/note only, token-guarded like saving, 404 after delete, and a findings file
written before the edit columns existed keeps working."""
from __future__ import annotations

import sqlite3

from backend.findings import FindingsStore
from tests.backend.api_support import assert_error, atlas_store, client_for, make_settings  # noqa: F401


def test_edit_title_and_note_keeps_what_the_finding_froze_then_delete(atlas_store, tiny_bundle, tmp_path):
    store, run_id = atlas_store
    with client_for(make_settings(store, tmp_path), tiny_bundle) as c:
        made = c.post("/findings", json={"title": "first", "note": "n", "state": {"page": "lab", "k": [1]},
                                         "run_id": run_id}).json()
        fid = made["id"]
        assert made["updated_at"] is None
        r = c.patch(f"/findings/{fid}", json={"note": "better note"})
        assert r.status_code == 200
        got = r.json()
        assert (got["title"], got["note"], got["state"], got["run_id"]) == ("first", "better note", {"page": "lab", "k": [1]}, run_id)
        assert got["updated_at"] >= got["created_at"]
        assert c.patch(f"/findings/{fid}", json={"title": "renamed"}).json()["title"] == "renamed"
        assert c.get(f"/findings/{fid}").json()["note"] == "better note"
        assert_error(c.patch(f"/findings/{fid}", json={}), 422, "give a new title or note")
        assert_error(c.patch(f"/findings/{fid}", json={"title": ""}), 422, "title")
        assert_error(c.patch(f"/findings/{fid}", json={"state": {}}), 422, "state")
        assert_error(c.patch("/findings/aaaaaaaa", json={"title": "x"}), 404, "unknown finding")
        assert c.delete(f"/findings/{fid}").status_code == 204
        assert_error(c.get(f"/findings/{fid}"), 404, "unknown finding")
        assert_error(c.delete(f"/findings/{fid}"), 404, "unknown finding")
        assert_error(c.delete("/findings/NOT-AN-ID"), 404, "8 characters")


def test_edit_and_delete_need_the_token_when_configured(atlas_store, tiny_bundle, tmp_path):
    store, _ = atlas_store
    auth = {"Authorization": "Bearer s3cret"}
    with client_for(make_settings(store, tmp_path, api_token="s3cret"), tiny_bundle) as c:
        fid = c.post("/findings", json={"title": "x"}, headers=auth).json()["id"]
        assert_error(c.patch(f"/findings/{fid}", json={"title": "y"}), 401, "API token")
        assert_error(c.delete(f"/findings/{fid}", headers={"Authorization": "Bearer nope"}), 403, "not valid")
        assert c.get(f"/findings/{fid}").json()["title"] == "x", "a refused edit changes nothing"
        assert c.patch(f"/findings/{fid}", json={"title": "y"}, headers=auth).json()["title"] == "y"
        assert c.delete(f"/findings/{fid}", headers=auth).status_code == 204


def test_a_findings_file_from_before_editing_gains_the_column_and_keeps_its_findings(tmp_path):
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE findings (id TEXT PRIMARY KEY, created_at TEXT NOT NULL, title TEXT NOT NULL, note TEXT NOT NULL,
                               state TEXT NOT NULL, spec TEXT, run_id TEXT, model TEXT, engine_version TEXT NOT NULL);
        INSERT INTO findings VALUES ('abcdefgh', '2026-11-01T00:00:00.000Z', 'old', 'n', '{}', NULL, NULL, NULL, '0.1.0');
    """)
    con.commit()
    con.close()
    findings = FindingsStore(path)
    try:
        assert findings.get("abcdefgh")["updated_at"] is None
        assert findings.update("abcdefgh", title="new")["title"] == "new"
        assert findings.create("fresh", "", {})["title"] == "fresh"
    finally:
        findings.close()
