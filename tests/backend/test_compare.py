"""Run comparison (issue 20, part 3) on a tiny-model store with a clean and a faithful run: the vectorised module
against slow pandas/scipy references, the routes and their bad inputs, and `neuron-atlas compare`."""
from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy.stats import hypergeom, spearmanr

from backend.store import compare as cmp
from backend.store.reader import NotFoundError, QueryError, StoreReader
from neuron_atlas.cli import main as cli_main
from tests.backend.api_support import assert_error, client_for, make_settings
from tests.backend.compare_support import RENAMED, SHIFTED, compare_store, two_run_store  # noqa: F401


@pytest.fixture(scope="module")
def store(compare_store):
    """(store, clean run, faithful run, what the derived runs changed): see `compare_store`."""
    return compare_store


@pytest.fixture(scope="module")
def reader(compare_store):
    r = StoreReader(compare_store[0])
    yield r
    r.close()


@pytest.fixture(scope="module")
def db(compare_store):
    con = duckdb.connect(str(compare_store[0]), read_only=True)
    yield con
    con.close()


def aps(db, run_id: str, concept_id: int) -> pd.DataFrame:
    """(site, channel, unit_id, ap) of a concept, joined in SQL: the slow reference for the unit mapping."""
    return db.execute(
        "SELECT s.site, u.unit_id - s.unit_offset AS channel, u.unit_id, u.ap FROM unit_stats u JOIN sites s "
        "ON s.run_id = u.run_id AND u.unit_id >= s.unit_offset AND u.unit_id < s.unit_offset + s.width "
        "WHERE u.run_id = ? AND u.concept_id = ?", [run_id, concept_id]).df()


def reference(db, run_a: str, run_b: str, ca: int, cb: int, k: int) -> dict:
    """Spearman's rho, top-k overlap and movers computed the slow way (pandas merge on site and channel, scipy)."""
    a, b = aps(db, run_a, ca), aps(db, run_b, cb)
    both = a.merge(b, on=["site", "channel"], suffixes=("_a", "_b")).dropna(subset=["ap_a", "ap_b"])
    wa = db.execute("SELECT site, width FROM sites WHERE run_id = ?", [run_a]).df()
    wb = db.execute("SELECT site, width FROM sites WHERE run_id = ?", [run_b]).df()
    same_width = set(wa.merge(wb, on=["site", "width"])["site"])
    both = both[both["site"].isin(same_width)]
    n, rho = len(both), spearmanr(both["ap_a"], both["ap_b"]).statistic
    top_a = set(both.sort_values(["ap_a", "unit_id_a"], ascending=[False, True])["unit_id_a"].head(k))
    top_b = set(both.sort_values(["ap_b", "unit_id_a"], ascending=[False, True])["unit_id_a"].head(k))
    both = both.assign(absd=(both["ap_b"] - both["ap_a"]).abs())
    both = both[both["absd"] > 0]
    moved = both.sort_values(["absd", "unit_id_a"], ascending=[False, True]).head(5)
    return {"n": n, "rho": rho, "count": len(top_a & top_b),
            "moved": moved[["unit_id_a", "unit_id_b"]].to_numpy().tolist()}


# --------------------------------------------------------------------------------------------------------- module


def test_expected_jaccard_matches_a_simulation_and_the_edges():
    rng = np.random.default_rng(0)
    n, k = 60, 12
    sims = []
    for _ in range(20_000):
        a, b = set(rng.choice(n, k, replace=False)), set(rng.choice(n, k, replace=False))
        sims.append(len(a & b) / len(a | b))
    assert cmp.expected_jaccard(n, k) == pytest.approx(np.mean(sims), abs=3e-3)
    assert cmp.expected_jaccard(10, 10) == 1.0 and cmp.expected_jaccard(10, 0) == 0.0
    assert hypergeom.mean(n, k, k) == pytest.approx(k * k / n)
    for total, size in ((60, 12), (10, 6), (928, 5), (20_000, 300), (1000, 999)):
        x = np.arange(size + 1)
        exact = float(np.sum(hypergeom.pmf(x, total, size, size) * x / (2 * size - x)))
        assert cmp.expected_jaccard(total, size) == pytest.approx(exact, rel=1e-9)


def test_spearman_rho_from_one_sort_matches_scipy_with_ties():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 20, 5000) / 20
    b = np.clip(a + rng.normal(0, 0.2, 5000), 0, 1).round(2)
    assert cmp.spearman_rho(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    assert cmp.spearman_rho(a, np.ones(5000)) is None and cmp.spearman_rho(a[:1], b[:1]) is None


def test_a_run_against_itself_agrees_everywhere(reader, store):
    _, clean, _, _ = store
    summary = cmp.compare_runs(reader, clean, clean)
    assert summary["sites"]["identical"] and summary["same_model"]
    assert not summary["unmatched_a"] and not summary["unmatched_b"]
    assert np.all(np.array(summary["layers"]["diff"]) == 0) and np.array(summary["layers"]["count_a"]).sum() > 0
    one = cmp.compare_concept(reader, clean, clean, summary["concepts"][0]["concept_id_a"], k=10)
    assert one["spearman_rho"] == pytest.approx(1.0)
    assert one["top_k"]["count"] == 10 and one["top_k"]["jaccard"] == 1.0
    assert one["mean_abs_delta"] == 0.0 and one["moved"] == []


def test_clean_vs_faithful_matches_the_slow_reference(reader, store, db):
    _, clean, faithful, _ = store
    summary = cmp.compare_runs(reader, clean, faithful, kind="language")
    assert summary["sites"]["n_common_units"] == summary["sites"]["n_units_a"]
    rhos = []
    for pair in summary["concepts"]:
        one = cmp.compare_concept(reader, clean, faithful, pair["concept_id_a"], k=10, n_moved=5)
        ref = reference(db, clean, faithful, pair["concept_id_a"], pair["concept_id_b"], 10)
        assert one["n_units"] == ref["n"]
        assert one["spearman_rho"] == pytest.approx(ref["rho"], abs=1e-12)
        assert one["top_k"]["count"] == ref["count"] == len(one["top_k"]["units"])
        ranks = [(u["rank_a"], u["rank_b"]) for u in one["top_k"]["units"]]
        assert ranks == sorted(ranks) and all(a <= 10 and b <= 10 for a, b in ranks)
        assert [[u["unit_id_a"], u["unit_id_b"]] for u in one["moved"]] == ref["moved"]
        assert one["top_k"]["expected_jaccard"] == pytest.approx(cmp.expected_jaccard(ref["n"], 10))
        rhos.append(one["spearman_rho"])
    # faithful mode's `__eng__` on every text and pads in the means move text-side APs, not speech-side ones
    by_task = {p["task"]: r for p, r in zip(summary["concepts"], rhos)}
    assert by_task["s2tt"] > by_task["t2tt"]


def test_layer_counts_match_sql(reader, store, db):
    _, clean, faithful, _ = store
    summary = cmp.compare_runs(reader, clean, faithful, stack="text_decoder", threshold=0.8)
    lay = summary["layers"]
    for i, pair in enumerate(lay["concepts"]):
        for side, run_id in (("a", clean), ("b", faithful)):
            ref = db.execute(
                "SELECT s.layer, count(*) AS n FROM unit_stats u JOIN sites s ON s.run_id = u.run_id AND u.unit_id >= "
                "s.unit_offset AND u.unit_id < s.unit_offset + s.width WHERE u.run_id = ? AND u.concept_id = ? AND "
                "s.stack = 'text_decoder' AND u.ap >= 0.8 GROUP BY s.layer", [run_id, pair[f"concept_id_{side}"]]).df()
            got = dict(zip(lay["layers"], lay[f"count_{side}"][i]))
            assert {int(k): int(v) for k, v in zip(ref["layer"], ref["n"])} == {k: v for k, v in got.items() if v}
        assert lay["diff"][i] == [b - a for a, b in zip(lay["count_a"][i], lay["count_b"][i])]


def test_step_2_against_step_7_of_one_run(reader, store):
    _, clean, _, _ = store
    summary = cmp.compare_runs(reader, clean, clean, step_a=2, step_b=7, stack="speech_encoder")
    assert summary["step_a"] == 2 and summary["step_b"] == 7
    assert all(p["step_a"] == 2 and p["step_b"] == 7 for p in summary["concepts"])
    # encoder statistics are step-independent: the encoder side agrees exactly, the decoder side does not
    assert np.all(np.array(summary["layers"]["diff"]) == 0)
    pair = next(p for p in summary["concepts"] if p["task"] == "t2tt")
    enc = cmp.compare_concept(reader, clean, clean, pair["concept_id_a"], step_b=7, stack="text_encoder")
    dec = cmp.compare_concept(reader, clean, clean, pair["concept_id_a"], step_b=7, stack="text_decoder")
    assert enc["spearman_rho"] == pytest.approx(1.0) and enc["concept_b"]["step"] == 7
    assert dec["mean_abs_delta"] > 0


def test_different_layouts_compare_by_site_and_channel(reader, store):
    _, clean, _, info = store
    summary = cmp.compare_runs(reader, clean, SHIFTED)
    sites = summary["sites"]
    assert not sites["identical"]
    assert sites["only_a"] == [info["dropped"]] and sites["only_b"] == []
    assert sites["width_mismatch"] == [{"site": info["widened"], "width_a": info["widened_width"],
                                        "width_b": info["widened_width"] + 1}]
    assert sites["n_common_units"] == sites["n_units_a"] - info["dropped_width"] - info["widened_width"]
    assert "left out" in sites["note"]
    concepts = reader.concepts(clean)
    speech = int(concepts[["speech_encoder" in stacks for stacks in concepts["stacks"]]]["concept_id"].iloc[0])
    one = cmp.compare_concept(reader, clean, SHIFTED, speech, k=10)
    # the same statistics under other unit ids: every unit maps onto itself
    assert one["spearman_rho"] == pytest.approx(1.0) and one["mean_abs_delta"] == 0.0 and one["top_k"]["count"] == 10
    assert one["moved"] == []
    pts = one["points"]
    assert pts["ap_a"] == pts["ap_b"]
    ids = np.array([pts["unit_id_a"], pts["unit_id_b"]])
    before, after = ids[:, ids[0] < info["widened_offset"]], ids[:, ids[0] > info["widened_offset"] + info["widened_width"]]
    assert len(before[0]) and len(after[0])
    assert np.all(before[1] == before[0] - info["dropped_width"]) and np.all(after[1] == after[0] - info["dropped_width"] + 1)


def test_concept_missing_on_one_side_names_it(reader, store):
    _, clean, _, _ = store
    summary = cmp.compare_runs(reader, clean, SHIFTED, step_a=7)
    missing = [c for c in summary["unmatched_a"] if c["task"] == "t2tt"]
    assert [(c["language"], c["step"]) for c in missing] == [("fra", 7)]
    with pytest.raises(QueryError, match=r"^concept_id: .*no counterpart in run cmp-shifted"):
        cmp.compare_concept(reader, clean, SHIFTED, missing[0]["concept_id"])


def test_runs_without_common_sites_are_refused(reader, store):
    _, clean, _, _ = store
    with pytest.raises(QueryError, match="^run_b: .*share no unit site"):
        cmp.compare_runs(reader, clean, RENAMED)
    with pytest.raises(QueryError, match="^step_b: .*no step 12"):
        cmp.compare_runs(reader, clean, clean, step_b=12)
    with pytest.raises(NotFoundError, match="unknown concept 999"):
        cmp.compare_concept(reader, clean, clean, 999)


def test_large_concepts_send_a_seeded_sample_with_every_highlighted_unit(reader, store):
    _, clean, faithful, _ = store
    one = cmp.compare_concept(reader, clean, faithful, 0, k=10, n_moved=5, max_points=100)
    pts = one["points"]
    assert pts["sampled"] and 100 <= len(pts["ap_a"]) <= 125
    shown = set(pts["unit_id_a"])
    assert {u["unit_id_a"] for u in one["moved"]} <= shown
    assert sum(1 for f in pts["top"] if f & 1) == 10 and sum(1 for f in pts["top"] if f & 2) == 10
    assert np.sum(one["density"]["counts"]) == one["n_units"]


# --------------------------------------------------------------------------------------------------------- routes


@pytest.fixture(scope="module")
def client(compare_store, tiny_bundle, tmp_path_factory):
    with client_for(make_settings(compare_store[0], tmp_path_factory.mktemp("compare-api")), tiny_bundle) as c:
        yield c


def test_routes_answer_like_the_module(client, reader, store):
    _, clean, faithful, _ = store
    r = client.get("/compare", params={"run_a": clean, "run_b": faithful, "kind": "language", "stack": "text_decoder"})
    assert r.status_code == 200, r.text
    assert r.json() == cmp.compare_runs(reader, clean, faithful, kind="language", stack="text_decoder")
    r = client.get("/compare/concept", params={"run_a": clean, "run_b": clean, "concept_id": 2, "step_b": 7, "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["concept_b"]["step"] == 7 and body["top_k"]["k"] == 5
    assert body["spearman_rho"] == pytest.approx(cmp.compare_concept(reader, clean, clean, 2, step_b=7, k=5)["spearman_rho"])
    assert client.get("/compare", params={"run_a": "latest", "run_b": clean}).status_code == 200


@pytest.mark.parametrize("params, status, field, needles", [
    ({"run_a": "nope", "run_b": "{clean}"}, 404, "run_a", ["run_a", "unknown run 'nope'"]),
    ({"run_a": "{clean}", "run_b": "nope"}, 404, "run_b", ["run_b", "unknown run 'nope'"]),
    ({"run_a": "{clean}", "run_b": RENAMED}, 422, "run_b", ["share no unit site"]),
    ({"run_a": "{clean}", "run_b": "{clean}", "step_a": 3}, 422, "step_a", ["no step 3", "2, 7"]),
    ({"run_a": "{clean}", "run_b": "{clean}", "step_b": 12}, 422, "step_b", ["no step 12"]),
    ({"run_a": "{clean}", "run_b": "{clean}", "task": "asr"}, 422, "task", ["neither run has task 'asr'"]),
    ({"run_a": "{clean}", "run_b": "{clean}", "threshold": 2}, 422, "threshold", ["threshold"]),
    ({"run_b": "{clean}"}, 422, "run_a", ["run_a", "missing"]),
])
def test_compare_bad_inputs(client, store, params, status, field, needles):
    _, clean, _, _ = store
    params = {k: (v.format(clean=clean) if isinstance(v, str) else v) for k, v in params.items()}
    body = assert_error(client.get("/compare", params=params), status, *needles)
    assert body["field"] == field


@pytest.mark.parametrize("params, status, field, needles", [
    ({"run_b": SHIFTED, "concept_id": "{missing}"}, 422, "concept_id", ["no counterpart", "step 7"]),
    ({"run_b": "{faithful}", "concept_id": 999}, 404, None, ["unknown concept 999"]),
    ({"run_b": "{faithful}", "concept_id": 0, "step_b": 5}, 422, "step_b", ["no step 5"]),
    ({"run_b": "{faithful}", "concept_id": 4, "stack": "speech_encoder"}, 422, "stack", ["text_decoder", "not speech_encoder"]),
    ({"run_b": "{faithful}", "concept_id": 0, "k": 10**6}, 422, "k", ["larger than the"]),
    ({"run_b": RENAMED, "concept_id": 0}, 422, "run_b", ["share no unit site"]),
])
def test_compare_concept_bad_inputs(client, reader, store, params, status, field, needles):
    _, clean, faithful, _ = store
    missing = next(c["concept_id"] for c in cmp.compare_runs(reader, clean, SHIFTED, step_a=7)["unmatched_a"])
    params = {"run_a": clean, **{k: (v.format(faithful=faithful, missing=missing) if isinstance(v, str) else v)
                                    for k, v in params.items()}}
    body = assert_error(client.get("/compare/concept", params=params), status, *needles)
    assert body["field"] == field


# ------------------------------------------------------------------------------------------------------------ CLI


def test_cli_prints_the_summary_and_writes_parquet(store, reader, tmp_path, capsys):
    path, clean, faithful, _ = store
    assert cli_main(["compare", clean, faithful, "--store", str(path), "--kind", "language", "--k", "10",
                     "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "identical unit layouts" in out and "Spearman's rho" in out and "concepts.parquet" in out
    concepts = pd.read_parquet(tmp_path / "concepts.parquet")
    summary = cmp.compare_runs(reader, clean, faithful, kind="language")
    assert list(concepts["concept_id_a"]) == [p["concept_id_a"] for p in summary["concepts"]]
    for row in concepts.itertuples():
        one = cmp.compare_concept(reader, clean, faithful, row.concept_id_a, k=10)
        assert row.spearman_rho == pytest.approx(one["spearman_rho"]) and row.top_k_count == one["top_k"]["count"]
        assert f"{row.spearman_rho:.4f}" in out
    layers = pd.read_parquet(tmp_path / "layers.parquet")
    assert set(layers["stack"]) == {"speech_encoder", "text_encoder", "text_decoder"}
    assert (layers["diff"] == layers["count_b"] - layers["count_a"]).all()
    assert set(pd.read_parquet(tmp_path / "sites.parquet")["status"]) == {"common"}
    moved = pd.read_parquet(tmp_path / "moved.parquet")
    assert (moved["delta"] != 0).all() and (moved.groupby("concept_id_a").size() == 20).all()
    assert list(pd.read_parquet(tmp_path / "runs.parquet")["run_id"]) == [clean, faithful]


def test_cli_reports_bad_runs_and_layouts_in_one_line(store, capsys):
    path, clean, _, _ = store
    assert cli_main(["compare", clean, "nope", "--store", str(path)]) == 2
    assert "unknown run 'nope'" in capsys.readouterr().err
    assert cli_main(["compare", clean, RENAMED, "--store", str(path)]) == 2
    assert "share no unit site" in capsys.readouterr().err
    assert cli_main(["compare", clean, clean, "--store", str(path), "--step-b", "12"]) == 2
    assert "step_b" in capsys.readouterr().err
