"""/export/{table}: streamed Parquet (several row groups, read back equal), the API token and its rate limit."""
from __future__ import annotations

import io

import duckdb
import pyarrow.parquet as pq
import pytest

from backend.api.settings import Settings
from backend.store.reader import StoreReader
from tests.backend.api_support import assert_error, atlas_store, client_for, make_settings  # noqa: F401


def test_export_streams_row_groups_that_read_back_as_the_table(atlas_store):
    store, run_id = atlas_store
    reader = StoreReader(store, warm=False)
    try:
        chunks = list(reader.export_parquet_chunks(reader.export_query("unit_stats", run_id), batch_rows=1000))
    finally:
        reader.close()
    got = pq.ParquetFile(io.BytesIO(b"".join(chunks)))
    with duckdb.connect(str(store), read_only=True) as con:
        want = con.sql(f"SELECT * FROM unit_stats WHERE run_id = '{run_id}'").to_arrow_table()
    n = want.num_rows
    assert n > 2000, "the tiny store should have enough rows for several row groups"
    assert got.metadata.num_row_groups == -(-n // 1000)
    assert len(chunks) >= got.metadata.num_row_groups, "each row group leaves the server as soon as it is written"
    table = got.read()
    assert table.num_rows == n and table.column_names == want.column_names
    assert table.sort_by("unit_id").equals(want.sort_by("unit_id"))


def test_export_needs_the_token_when_one_is_set(atlas_store, tiny_bundle, tmp_path):
    store, _ = atlas_store
    with client_for(make_settings(store, tmp_path, api_token="s3cret"), tiny_bundle) as c:
        assert_error(c.get("/export/meta"), 401, "requires an API token")
        assert_error(c.get("/export/meta", headers={"Authorization": "Bearer wrong"}), 403, "not valid")
        r = c.get("/export/meta", headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200 and pq.read_table(io.BytesIO(r.content)).num_rows >= 1


def test_export_is_rate_limited_and_a_refused_or_invalid_request_costs_nothing(atlas_store, tiny_bundle, tmp_path):
    store, _ = atlas_store
    with client_for(make_settings(store, tmp_path, export_burst=2, export_per_s=0.001), tiny_bundle) as c:
        assert_error(c.get("/export/meta", params={"run_id": "nope"}), 404, "unknown run")
        assert c.get("/export/meta").status_code == 200
        assert c.get("/export/meta").status_code == 200
        r = c.get("/export/meta")
        assert_error(r, 429, "too many export requests")
        assert int(r.headers["Retry-After"]) >= 1
        assert c.get("/runs").status_code == 200, "reads that are not exports are not limited"


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_api_token_means_no_token(value, monkeypatch):
    monkeypatch.setenv("NEURON_ATLAS_API_TOKEN", value)
    assert Settings(_env_file=None).api_token is None
    monkeypatch.setenv("NEURON_ATLAS_API_TOKEN", "abc")
    assert Settings(_env_file=None).api_token.get_secret_value() == "abc"
