"""The atlas.duckdb schema (documented column by column in docs/store.md). One store may hold several runs."""
from __future__ import annotations

import duckdb

from neuron_atlas.engine.versions import ENGINE_VERSION, STORE_VERSION, store_compatible

DDL = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY, name VARCHAR, created_at TIMESTAMP, engine_version VARCHAR,
    model_spec VARCHAR, model_checksum VARCHAR, model JSON, mode VARCHAR, tasks VARCHAR[], steps INTEGER[],
    languages VARCHAR[], corpus_source VARCHAR, corpus_hash VARCHAR, n_examples INTEGER, config JSON,
    library_versions JSON, work_dir VARCHAR, elapsed_s DOUBLE
);
CREATE TABLE IF NOT EXISTS sites (
    run_id VARCHAR, site VARCHAR, module VARCHAR, call INTEGER, stack VARCHAR, layer INTEGER, component VARCHAR,
    kind VARCHAR, width INTEGER, channel_axis INTEGER, domain VARCHAR, unit_offset BIGINT
);
CREATE TABLE IF NOT EXISTS units (
    run_id VARCHAR, unit_id INTEGER, site VARCHAR, channel INTEGER, stack VARCHAR, layer SMALLINT,
    component VARCHAR, kind VARCHAR
);
CREATE TABLE IF NOT EXISTS examples (
    run_id VARCHAR, example_id VARCHAR, sentence_id VARCHAR, lang VARCHAR, text VARCHAR, reference VARCHAR,
    voice VARCHAR, duration_s DOUBLE, has_audio BOOLEAN
);
CREATE TABLE IF NOT EXISTS example_audio (run_id VARCHAR, example_id VARCHAR, flac BLOB);
CREATE TABLE IF NOT EXISTS items (
    run_id VARCHAR, task VARCHAR, item INTEGER, example_id VARCHAR, sentence_id VARCHAR, label VARCHAR,
    src_lang VARCHAR, tgt_lang VARCHAR, modality VARCHAR, reference VARCHAR, output_ids INTEGER[], output_text VARCHAR,
    prefix_lengths INTEGER[]
);
CREATE TABLE IF NOT EXISTS dropped (
    run_id VARCHAR, task VARCHAR, item INTEGER, example_id VARCHAR, site VARCHAR, reason VARCHAR
);
CREATE TABLE IF NOT EXISTS concepts (
    run_id VARCHAR, concept_id INTEGER, kind VARCHAR, role VARCHAR, task VARCHAR, step INTEGER, language VARCHAR,
    modality VARCHAR, positives INTEGER, negatives INTEGER, stacks VARCHAR[], description VARCHAR
);
CREATE TABLE IF NOT EXISTS unit_stats (
    run_id VARCHAR, concept_id INTEGER, unit_id INTEGER, ap DOUBLE, on_p50 REAL, on_p90 REAL, off_mean REAL, off_p50 REAL
);
CREATE TABLE IF NOT EXISTS selections (
    run_id VARCHAR, concept_id INTEGER, kind VARCHAR, scope VARCHAR, k_requested INTEGER, k INTEGER,
    matches VARCHAR, unit_id INTEGER, rank INTEGER
);
CREATE TABLE IF NOT EXISTS concentration (
    run_id VARCHAR, task VARCHAR, language VARCHAR, modality VARCHAR, step INTEGER, stack VARCHAR, layer SMALLINT,
    n_units INTEGER, gini DOUBLE, top1_share DOUBLE, total DOUBLE
);
CREATE TABLE IF NOT EXISTS overlap (
    run_id VARCHAR, role VARCHAR, step INTEGER, set_kind VARCHAR, k INTEGER, scope VARCHAR, text_lang VARCHAR,
    speech_lang VARCHAR, text_concept INTEGER, speech_concept INTEGER, count INTEGER, c_over_k DOUBLE, jaccard DOUBLE,
    chance_count DOUBLE, chance_c_over_k DOUBLE, chance_jaccard DOUBLE, n_total INTEGER
);
CREATE TABLE IF NOT EXISTS spearman (
    run_id VARCHAR, role VARCHAR, step INTEGER, scope VARCHAR, layer SMALLINT, text_lang VARCHAR, speech_lang VARCHAR,
    text_concept INTEGER, speech_concept INTEGER, rho DOUBLE, n_units INTEGER
);
CREATE TABLE IF NOT EXISTS unit_distributions (
    run_id VARCHAR, task VARCHAR, step INTEGER, language VARCHAR, unit_id INTEGER, n INTEGER, mean REAL, std REAL,
    mean_abs DOUBLE, min REAL, p05 REAL, p25 REAL, p50 REAL, p75 REAL, p95 REAL, max REAL
);
CREATE TABLE IF NOT EXISTS unit_examples (
    run_id VARCHAR, task VARCHAR, step INTEGER, unit_id INTEGER, top_items INTEGER[], top_values REAL[],
    bottom_items INTEGER[], bottom_values REAL[]
);
CREATE TABLE IF NOT EXISTS interventions (
    run_id VARCHAR, experiment_id INTEGER, experiment VARCHAR, input_task VARCHAR, step INTEGER, concept_id INTEGER,
    concept_task VARCHAR, language VARCHAR, unit_source VARCHAR, set_kind VARCHAR, k INTEGER, n_units INTEGER,
    spec JSON, spec_digest VARCHAR, n_items INTEGER, skipped VARCHAR, mean_p_concept_lang DOUBLE,
    mean_p_tgt_lang DOUBLE, mean_combined DOUBLE, mean_cer DOUBLE, mean_m_index DOUBLE, corpus_bleu DOUBLE,
    corpus_chrfpp DOUBLE, corpus_combined DOUBLE
);
CREATE TABLE IF NOT EXISTS intervention_outputs (
    run_id VARCHAR, experiment_id INTEGER, item INTEGER, tgt_lang VARCHAR, reference VARCHAR, output_text VARCHAR,
    p_concept_lang DOUBLE, p_tgt_lang DOUBLE, lang_probs JSON, wer DOUBLE, cer DOUBLE, bleu DOUBLE, chrfpp DOUBLE,
    combined DOUBLE, m_index DOUBLE, i_index DOUBLE
);
"""

#: Quantile levels of `unit_distributions`, with their column names.
UNIT_QUANTILES: tuple[tuple[str, float], ...] = (
    ("min", 0.0), ("p05", 0.05), ("p25", 0.25), ("p50", 0.5), ("p75", 0.75), ("p95", 0.95), ("max", 1.0))
#: Highest and lowest items `unit_examples` keeps per (unit, task, step).
TOP_EXAMPLES = 50

#: Tables whose rows belong to one run (deleted and rewritten when that run is written again).
RUN_TABLES = (
    "runs", "sites", "units", "examples", "example_audio", "items", "dropped", "concepts", "unit_stats", "selections",
    "concentration", "overlap", "spearman", "interventions", "intervention_outputs", "unit_distributions",
    "unit_examples",
)


class StoreVersionError(RuntimeError):
    """The store was written by an incompatible schema version."""


#: Columns added by minor schema versions, added to an older store of the same major version when a run is written
#: into it (its older runs read NULL there): 1.1 stores corpus-level translation scores per condition; 1.2 the text
#: token ids fed to the model and which sites the reference code records (and adds the `dropped` table); 1.3 adds the
#: tables `unit_distributions` and `unit_examples` (created empty in an older store: its older runs have no rows there,
#: and the unit page says to re-run them).
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("interventions", "corpus_bleu", "DOUBLE"),
    ("interventions", "corpus_chrfpp", "DOUBLE"),
    ("interventions", "corpus_combined", "DOUBLE"),
    ("items", "input_ids", "INTEGER[]"),
    ("sites", "in_reference", "BOOLEAN"),
)


def create_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every table (idempotent), add columns of newer minor versions, and stamp the store and engine versions."""
    con.execute(DDL)
    for table, column, kind in ADDED_COLUMNS:
        con.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}")
    con.execute("INSERT OR REPLACE INTO meta VALUES ('store_version', ?), ('engine_version', ?)", [STORE_VERSION, ENGINE_VERSION])


def check_version(con: duckdb.DuckDBPyConnection) -> str:
    """Return the store's schema version, or raise naming both versions when this engine cannot read it."""
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'store_version'").fetchone()
    except duckdb.CatalogException as exc:
        raise StoreVersionError("not a Neuron Atlas store: it has no meta table") from exc
    found = row[0] if row else "unknown"
    if not store_compatible(found):
        raise StoreVersionError(
            f"store schema version {found} is incompatible with this engine's store version {STORE_VERSION}; "
            "re-run `neuron-atlas precompute` with this version"
        )
    return found
