"""`neuron-atlas precompute` end to end on the tiny model: every table, resume after a crash, bad inputs."""
from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from neuron_atlas.engine.model.loading import load_model, state_checksum
from neuron_atlas.engine.model.tokenizer import lang_token
from neuron_atlas.cli import main
from precompute.activation_store import load_acts
from precompute.config import ConfigError, load_run_config
from precompute.corpus import CorpusError
from precompute.pipeline import run_precompute

LANGS = ["eng", "deu", "fra"]


def small_config(tmp_path, **over):
    data = {
        "name": "t",
        "model": "tiny-random",
        "device": "cpu",
        "tasks": ["asr", "s2tt", "t2tt", "en2x_s2tt", "en2x_t2tt"],
        "steps": [2, 7],
        "corpus": {"source": "builtin", "languages": LANGS, "max_sentences": 8},
        "shard_size": 4,
        "batch_size": 4,
        "store": str(tmp_path / "atlas.duckdb"),
        "work_dir": str(tmp_path / "work"),
        "analysis": {"ks": [10, 20]},
        "evaluate": {"n_examples": 4, "max_new_tokens": 8, "dose_ks": [5, 10]},
        "keep_activations": True,
    }
    for key, value in over.items():
        data[key] = value
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps(data))
    return load_run_config(path)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_bundle):
    tmp = tmp_path_factory.mktemp("run")
    cfg = small_config(tmp)
    result = run_precompute(cfg, progress=False, bundle=tiny_bundle)
    return cfg, result


def test_run_fills_every_table_consistently(finished, tiny_registry):
    cfg, result = finished
    con = duckdb.connect(str(cfg.store), read_only=True)
    q = lambda sql: con.execute(sql).fetchall()
    assert q("SELECT count(*) FROM units")[0][0] == tiny_registry.n_units
    assert q("SELECT mode, steps, tasks FROM runs")[0] == ("clean", [2, 7], cfg.tasks)
    n_items = dict(q("SELECT task, count(*) FROM items GROUP BY task"))
    assert n_items == {"asr": 24, "s2tt": 16, "t2tt": 16, "en2x_s2tt": 16, "en2x_t2tt": 16}
    assert q("SELECT count(*) FROM example_audio")[0][0] == q("SELECT count(*) FROM examples")[0][0] == 24
    # unit_stats: every concept has one row per unit of each of its stacks
    widths = {s: tiny_registry.stack_width(s) for s in tiny_registry.stack_ranges}
    expected = sum(sum(widths[s] for s in stacks) for (stacks,) in q("SELECT stacks FROM concepts"))
    assert q("SELECT count(*) FROM unit_stats")[0][0] == expected
    assert q("SELECT count(*) FROM unit_stats WHERE ap IS NULL OR isnan(ap)")[0][0] == 0
    kinds = dict(q("SELECT kind, count(*) FROM concepts GROUP BY kind"))
    # language: asr 3 + four X<->en tasks x 2 languages, per step; multimodal: 2 roles x 2 languages; modality: 2 roles x (1 + 2)
    assert kinds == {"language": 2 * (3 + 4 * 2), "multimodal_language": 2 * 2 * 2, "modality": 2 * 2 * 3}
    top = q("SELECT count(*) FROM selections WHERE kind='top' AND scope='text_decoder' AND k_requested=10 GROUP BY concept_id")
    assert {n for (n,) in top} == {10}
    assert q("SELECT count(*) FROM concentration WHERE gini < 0 OR gini > 1")[0][0] == 0
    assert q("SELECT count(DISTINCT (text_lang, speech_lang)) FROM overlap WHERE role='representation'")[0][0] == 4
    assert q("SELECT count(*) FROM spearman WHERE scope='text_decoder/layer'")[0][0] > 0
    con.close()


def test_unit_major_arrays_match_store_ap(finished, tiny_registry):
    """The AP in the store is the AP of the stored activation column (sklearn as the independent reference)."""
    from sklearn.metrics import average_precision_score

    cfg, result = finished
    con = duckdb.connect(str(cfg.store), read_only=True)
    cid, lang = con.execute("SELECT concept_id, language FROM concepts WHERE kind='language' AND task='t2tt' AND step=7 LIMIT 1").fetchone()
    labels = np.array([r[0] == lang for r in con.execute("SELECT label FROM items WHERE task='t2tt' ORDER BY item").fetchall()])
    acts = load_acts(result.work_dir, "t2tt", "text_decoder.step7")
    unit = tiny_registry.stack_ranges["text_decoder"].start + 17
    ap = con.execute("SELECT ap FROM unit_stats WHERE concept_id=? AND unit_id=?", [cid, unit]).fetchone()[0]
    assert ap == pytest.approx(average_precision_score(labels, acts[17]), abs=1e-12)


def test_resume_after_crash_gives_identical_results(tmp_path, finished, tiny_bundle):
    """A crash in the second phase, after the first phase's activations were deleted: the resumed run records only
    what is missing and needs no deleted array (the first phase's statistics are on disk)."""
    cfg_ref, ref = finished
    cfg = small_config(tmp_path, keep_activations=False)
    calls = []

    def crash_in_second_phase(key):
        calls.append(key)
        if len(calls) == 8:
            raise RuntimeError("injected failure")

    with pytest.raises(RuntimeError, match="injected failure"):
        run_precompute(cfg, progress=False, after_shard=crash_in_second_phase, bundle=tiny_bundle)
    assert {k.task for k in calls[:6]} == {"asr"} and calls[7].task == "s2tt"
    assert not cfg.store.exists(), "a failed run must not leave a store behind"
    resumed = []
    result = run_precompute(cfg, progress=False, after_shard=resumed.append, bundle=tiny_bundle)
    assert set(calls[:8]).isdisjoint(resumed), "finished shards were recorded again"
    assert result.run_id == ref.run_id
    a = duckdb.connect(str(cfg.store), read_only=True).execute("SELECT concept_id, unit_id, ap FROM unit_stats ORDER BY 1, 2").fetchnumpy()
    b = duckdb.connect(str(cfg_ref.store), read_only=True).execute("SELECT concept_id, unit_id, ap FROM unit_stats ORDER BY 1, 2").fetchnumpy()
    assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_process_pool_gives_the_same_arrays_as_one_process(tmp_path, finished):
    _, ref = finished
    cfg = small_config(tmp_path, tasks=["s2tt", "t2tt"], workers=2)
    result = run_precompute(cfg, progress=False)
    assert result.run_id.split("-")[-1] != "" and result.work_dir != ref.work_dir
    for task, name in [("s2tt", "speech_encoder"), ("t2tt", "text_decoder.step7")]:
        assert np.array_equal(load_acts(result.work_dir, task, name), load_acts(ref.work_dir, task, name))


def test_rerun_replaces_run_rows_without_duplicates(tmp_path, finished, tiny_bundle):
    cfg = small_config(tmp_path, tasks=["t2tt"], steps=[2])
    run_precompute(cfg, progress=False, bundle=tiny_bundle)
    run_precompute(cfg, progress=False, bundle=tiny_bundle)
    con = duckdb.connect(str(cfg.store), read_only=True)
    assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
    assert con.execute("SELECT count(*) FROM items").fetchone()[0] == 16


def test_planted_language_unit_ranks_first_for_its_language_only(tmp_path):
    """Make one text-encoder unit see only the French language token; the analysis must find it."""
    bundle = load_model("tiny-random", device="cpu")
    model, tok = bundle.model, bundle.tokenizer
    dim = 15  # last sine dimension: frequency 1e-4, so the position table is ~0 there for every position
    fra = tok.convert_tokens_to_ids(lang_token("fra"))
    emb = model.text_encoder.embed_tokens.weight
    with __import__("torch").no_grad():
        emb[:, dim] = 0.0
        emb[fra, dim] = 40.0
    bundle.checksum = state_checksum(model)
    cfg = small_config(tmp_path, tasks=["t2tt"], steps=[2], corpus={"source": "builtin", "languages": ["eng", "deu", "spa", "fra"], "max_sentences": 8})
    run_precompute(cfg, progress=False, bundle=bundle)
    con = duckdb.connect(str(cfg.store), read_only=True)
    unit = con.execute("SELECT unit_id FROM units WHERE site='text_encoder.layers.0.self_attn_layer_norm' AND channel=?", [dim]).fetchone()[0]
    # rank = 1 + units of the stack with a strictly higher AP (units reading this one may tie with it)
    rows = con.execute(
        "SELECT c.language, s.ap, (SELECT count(*) FROM unit_stats s2 JOIN units u2 USING (run_id, unit_id) "
        " WHERE s2.concept_id = s.concept_id AND u2.stack='text_encoder' AND s2.ap > s.ap) + 1 AS rank "
        "FROM unit_stats s JOIN concepts c USING (run_id, concept_id) WHERE s.unit_id = ? AND c.kind='language'", [unit]
    ).fetchall()
    by_lang = {lang: (ap, rank) for lang, ap, rank in rows}
    assert by_lang["fra"] == (pytest.approx(1.0), 1)
    for lang in ("deu", "spa"):
        assert by_lang[lang][1] > 1 and by_lang[lang][0] < 0.5


@pytest.mark.parametrize(
    "over, message",
    [
        ({"tasks": ["t2tt", "s2st"]}, "tasks: unknown task 's2st'"),
        ({"corpus": {"languages": ["eng", "xxx"]}}, "corpus.languages: unknown language"),
        ({"steps": [1, 7]}, "steps: steps are decoder prefix lengths"),
        ({"modee": "clean"}, "modee: unknown setting"),
        ({"mode": "sloppy"}, "mode: Input should be 'clean' or 'faithful'"),
        ({"evaluate": {"seed": 3}}, "evaluate: .*evaluate.seed was removed.*analysis.seed"),
        ({"evaluate": {"language_scope": "six"}}, "evaluate.language_scope: Input should be 'all' or 'candidates'"),
    ],
)
def test_bad_config_names_the_field(tmp_path, over, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        small_config(tmp_path, **over)


def test_malformed_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks: [t2tt\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_run_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_run_config(tmp_path / "nope.yaml")


def _manifest(tmp_path, rows):
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_bad_corpus_entries_stop_with_the_entry_named_and_no_store(tmp_path, tiny_bundle):
    good = tmp_path / "ok.wav"
    sf.write(good, np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.2, 16000)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00junk")
    base = {"sentence_id": "s1", "text": "Hello there.", "audio": str(good)}
    cases = [
        ([{**base, "id": "a", "lang": "eng"}, {**base, "id": "b", "lang": "fra", "audio": str(tmp_path / "missing.wav")}], "missing.wav"),
        ([{**base, "id": "a", "lang": "eng", "audio": str(corrupt)}], "corrupt"),
        ([], "empty"),
    ]
    for rows, message in cases:
        cfg = small_config(tmp_path, corpus={"source": "manifest", "manifest": str(_manifest(tmp_path, rows)), "languages": ["eng", "fra"]})
        with pytest.raises(CorpusError, match=message):
            run_precompute(cfg, progress=False, bundle=tiny_bundle)
        assert not cfg.store.exists()


def test_cli_prints_clear_errors_and_full_size_counts(tmp_path, capsys):
    bad = tmp_path / "run.yaml"
    bad.write_text("corpus: {languages: [eng, klingon]}\n")
    assert main(["precompute", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "corpus.languages" in err and "klingon" in err and "Traceback" not in err
    assert main(["sites", "--model", "full-random"]) == 0
    out = capsys.readouterr().out
    assert "1,502,208 units" in out and "text_decoder" in out


def test_shipped_example_configs_validate():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        load_run_config(path)


def test_intervention_tables_cover_every_task_and_step(finished):
    cfg, _ = finished
    con = duckdb.connect(str(cfg.store), read_only=True)
    covered = set(con.execute("SELECT input_task, step FROM interventions WHERE experiment='ablation' AND step IS NOT NULL").fetchall())
    assert covered == {(t, s) for t in cfg.tasks for s in cfg.steps}
    kinds = {k for (k,) in con.execute("SELECT DISTINCT set_kind FROM interventions").fetchall()}
    assert {"baseline", "top", "bottom", "both", "random_top", "random_both"} <= kinds
    sources = {k for (k,) in con.execute("SELECT DISTINCT unit_source FROM interventions WHERE experiment='steering'").fetchall()}
    assert sources == {"none", "same-modality", "cross-modal", "random"}
    assert con.execute("SELECT count(*) FROM interventions WHERE skipped IS NOT NULL").fetchone()[0] == 0
    # random controls have the size of the set they control for
    sizes = dict(con.execute("SELECT set_kind, max(n_units) FROM interventions WHERE experiment='ablation' GROUP BY 1").fetchall())
    assert sizes["random_both"] == sizes["both"] == 2 * sizes["top"]
    n = con.execute("SELECT count(*) FROM intervention_outputs o JOIN interventions i USING (run_id, experiment_id)").fetchone()[0]
    assert n == con.execute("SELECT sum(n_items) FROM interventions").fetchone()[0]


def test_translation_conditions_store_the_corpus_score_of_their_outputs(finished):
    """corpus_* is sacrebleu's corpus score over the condition's stored outputs (per target language, item-weighted),
    the reference's system score, which is not the mean of sentence scores; ASR conditions have none."""
    from neuron_atlas.engine.metrics import corpus_scores

    cfg, _ = finished
    con = duckdb.connect(str(cfg.store), read_only=True)
    conds = con.execute("SELECT experiment_id, input_task, corpus_bleu, corpus_chrfpp, corpus_combined, mean_combined "
                        "FROM interventions WHERE n_items > 0").fetchall()
    checked = 0
    for exp, task, c_bleu, c_chrf, c_comb, mean_comb in conds:
        if task == "asr":
            assert c_bleu is None and c_comb is None
            continue
        rows = con.execute("SELECT tgt_lang, output_text, reference FROM intervention_outputs WHERE experiment_id = ?", [exp]).fetchall()
        by_lang: dict[str, list] = {}
        for tgt, hyp, ref in rows:
            by_lang.setdefault(tgt, []).append((hyp, ref))
        want = {name: sum(len(v) * corpus_scores([h for h, _ in v], [r for _, r in v], lang=lang)[name]
                          for lang, v in by_lang.items()) / len(rows) for name in ("bleu", "chrfpp", "combined")}
        assert (c_bleu, c_chrf, c_comb) == pytest.approx((want["bleu"], want["chrfpp"], want["combined"]))
        assert c_comb == pytest.approx(0.6 * c_bleu + 0.4 * c_chrf)
        checked += 1
    assert checked > 10


def test_stored_condition_replays_from_its_spec_json(finished, tiny_bundle, tiny_registry):
    """The batch path (batched generate) and a single request replaying the stored spec give the same text."""
    from neuron_atlas.engine.concept_stats import LazyConceptStats, parquet_loader
    from neuron_atlas.engine.interventions import InterventionSpec, generate_with, prepare_inputs, resolve

    cfg, result = finished
    con = duckdb.connect(str(cfg.store), read_only=True)
    exp, spec_json = con.execute(
        "SELECT experiment_id, spec FROM interventions WHERE experiment='steering' AND input_task='en2x_t2tt' AND set_kind='both' LIMIT 1"
    ).fetchone()
    item, tgt, stored = con.execute("SELECT item, tgt_lang, output_text FROM intervention_outputs WHERE experiment_id=? LIMIT 1", [exp]).fetchone()
    text, src = con.execute(
        "SELECT e.text, i.src_lang FROM items i JOIN examples e USING (run_id, example_id) WHERE i.task='en2x_t2tt' AND i.item=?", [item]
    ).fetchone()
    stats = LazyConceptStats(tiny_registry, parquet_loader(result.stats_dir, tiny_registry.n_units))
    resolved = resolve(InterventionSpec.from_json(spec_json), tiny_registry, stats)
    live = generate_with(tiny_bundle, tiny_registry, resolved, prepare_inputs(tiny_bundle, text=text, src_lang=src), tgt,
                         max_new_tokens=cfg.evaluate.max_new_tokens)
    assert live.text == stored
    assert resolved.unit_ids.size == 2 * 10


def test_random_controls_force_the_stored_random_sets(finished, tiny_registry):
    """What the dashboard shows as a concept's random set is what its batch control forced, and every concept gets
    its own draw (one shared draw would make every random baseline the same single sample)."""
    from neuron_atlas.engine.concept_stats import LazyConceptStats, parquet_loader
    from neuron_atlas.engine.interventions import InterventionSpec, resolve

    cfg, result = finished
    con = duckdb.connect(str(cfg.store), read_only=True)
    rows = con.execute("SELECT concept_id, set_kind, k, spec FROM interventions WHERE experiment = 'ablation' "
                       "AND set_kind LIKE 'random_%'").fetchall()
    stats = LazyConceptStats(tiny_registry, parquet_loader(result.stats_dir, tiny_registry.n_units))
    drawn = set()
    for concept, set_kind, k, spec_json in rows:
        forced = resolve(InterventionSpec.from_json(spec_json), tiny_registry, stats).unit_ids
        stored = con.execute("SELECT unit_id FROM selections WHERE concept_id = ? AND kind = 'random' AND scope = ? "
                             "AND k_requested = ? AND matches = ? ORDER BY unit_id",
                             [concept, cfg.evaluate.stack, k, set_kind.removeprefix("random_")]).fetchall()
        assert forced.tolist() == [u for (u,) in stored], (concept, set_kind)
        assert json.loads(spec_json)["units"]["seed"] < 2**53
        drawn.add(tuple(forced.tolist()))
    assert len(rows) > 4 and len(drawn) == len(rows)


def store_tables(path, skip=("runs",)) -> dict:
    """Every table of a store but `skip`, rows in a canonical order, as DataFrames."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        names = [t for (t,) in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").df() for t in names if t not in skip}
    finally:
        con.close()


def assert_same_stores(a, b, skip=("runs",)) -> None:
    ta, tb = store_tables(a, skip), store_tables(b, skip)
    assert ta.keys() == tb.keys()
    for name in ta:
        pd.testing.assert_frame_equal(ta[name], tb[name], check_exact=True, obj=name)


@pytest.mark.slow
def test_ray_executor_writes_the_same_store_as_local(tmp_path, tiny_bundle):
    """A local Ray instance on CPU, shards at a file:// URL on a separate path, statistics as Ray tasks over unit
    chunks: the store equals the local executor's, bit for bit."""
    ray = pytest.importorskip("ray")
    over = {"tasks": ["s2tt", "t2tt"], "steps": [2, 7], "evaluate": {"enabled": False}, "keep_activations": False,
            "analysis": {"ks": [10, 20], "chunk_units": 300}}
    for sub in ("local", "ray"):
        (tmp_path / sub).mkdir()
    local_cfg = small_config(tmp_path / "local", **over)
    run_precompute(local_cfg, progress=False, bundle=tiny_bundle)
    far = tmp_path / "elsewhere" / "work"
    cfg = small_config(tmp_path / "ray", executor="ray", workers=2, work_dir=far.as_uri(), **over)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = run_precompute(cfg, progress=False)
    finally:
        ray.shutdown()
    assert result.work_dir.startswith("file://") and (far / result.run_id / "shards").is_dir()
    assert not list(far.rglob("*.npy")), "the statistics are in, so the activations are deleted"
    assert_same_stores(cfg.store, local_cfg.store)


def test_default_run_deletes_activations_phase_by_phase_with_the_same_statistics(tmp_path, finished, tiny_bundle):
    """keep_activations false (the default): every phase's arrays go once its statistics are in, the working disk
    peaks at the largest phase's arrays, and the statistics equal those of a run that kept everything."""
    cfg_ref, ref = finished
    cfg = small_config(tmp_path, keep_activations=False, evaluate={"enabled": False})
    npy_bytes = lambda folder, pattern="*": sum(p.stat().st_size for p in folder.rglob(f"shards/{pattern}/**/*.npy"))
    seen = []
    result = run_precompute(cfg, progress=False, bundle=tiny_bundle, after_shard=lambda key: seen.append(npy_bytes(tmp_path / "work")))
    work = tmp_path / "work" / result.run_id
    assert not list(work.rglob("*.npy")) and len(list(work.rglob("meta.json"))) == len(seen)
    assert sorted(p.name for p in (work / "phases").iterdir()) == ["asr.json", "en2x_s2tt+en2x_t2tt.json", "s2tt+t2tt.json"]
    ref_root = Path(ref.work_dir)
    phases = [["asr"], ["s2tt", "t2tt"], ["en2x_s2tt", "en2x_t2tt"]]
    largest = max(sum(npy_bytes(ref_root, t) for t in tasks) for tasks in phases)
    assert max(seen) == largest < npy_bytes(ref_root)
    a = store_tables(cfg.store, skip=("runs", "interventions", "intervention_outputs"))
    b = store_tables(cfg_ref.store, skip=("runs", "interventions", "intervention_outputs"))
    for name in a:
        x, y = (t.drop(columns="run_id", errors="ignore") for t in (a[name], b[name]))
        if name == "selections":  # random sets are seeded by the run id, which the evaluate settings change
            x, y = (t[t["kind"] != "random"].reset_index(drop=True) for t in (x, y))
        pd.testing.assert_frame_equal(x, y, check_exact=True, obj=name)


def test_a_remote_work_dir_holds_the_shards_and_the_statistics_folder_goes_after_the_store(tmp_path, tiny_bundle):
    """work_dir as an fsspec URL (memory://, in this process): shards there, float16, statistics files beside the store
    while running and gone once it is written."""
    import fsspec

    url = f"memory://lean-{tmp_path.name}/work"
    cfg = small_config(tmp_path, tasks=["t2tt"], steps=[2], work_dir=url, activation_dtype="float16",
                       keep_activations=False, evaluate={"enabled": False})
    result = run_precompute(cfg, progress=False, bundle=tiny_bundle)
    fs = fsspec.filesystem("memory")
    root = f"/lean-{tmp_path.name}/work/{result.run_id}"
    assert result.work_dir == f"{url}/{result.run_id}" and result.stats_dir is None
    assert fs.glob(f"{root}/shards/t2tt/*/*/meta.json") and not fs.glob(f"{root}/**/*.npy")
    assert not list(tmp_path.glob(".*-stats"))
    con = duckdb.connect(str(cfg.store), read_only=True)
    assert con.execute("SELECT work_dir FROM runs").fetchone()[0] == result.work_dir
    assert con.execute("SELECT count(*) FROM unit_stats WHERE isnan(ap)").fetchone()[0] == 0
    assert con.execute("SELECT count(DISTINCT concept_id) FROM unit_stats").fetchone()[0] == len(LANGS) - 1
    con.close()


def test_reuse_keeps_a_store_that_already_holds_the_run(finished, tiny_bundle):
    cfg, ref = finished
    before = cfg.store.stat().st_mtime_ns
    again = run_precompute(cfg, progress=False, bundle=tiny_bundle, reuse=True)
    assert again.reused and again.run_id == ref.run_id
    assert cfg.store.stat().st_mtime_ns == before
