"""Tests of the demo model: its template grammar, data split and augmentation, a smoke training run, the
`train-demo` command, and the shipped model itself (loading, size, card, quality, language structure)."""
from __future__ import annotations

import argparse
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import SeamlessM4Tv2Model

from neuron_atlas.engine.audio import load_audio_file
from neuron_atlas.engine.model.loading import DEMO_MODEL_DIR, load_model
from neuron_atlas.engine.example import CORPUS_LANGUAGES, CorpusError
from neuron_atlas.engine.sentences import SENTENCES, SENTENCES_BY_ID
from neuron_atlas.demo_trainer import data as data_mod
from neuron_atlas.demo_trainer import grammar as g
from neuron_atlas.demo_trainer.data import (
    HELDOUT_VARIANT,
    DataConfig,
    augment,
    plan_clips,
    select_sentences,
)
from neuron_atlas.demo_trainer.train import QUICK_TRAIN, TrainConfig, train_demo_model

KANA = re.compile("^[\u3041-\u309f\u30a0-\u30ff、。？！]+$")
HANZI = re.compile("^[\u4e00-\u9fff，。？！]+$")


# ------------------------------------------------------------------------------------------------------ grammar


def _thing(en: str) -> g.Thing:
    return next(t for t in g.THINGS if t.en == en)


def _colour(en: str) -> g.Colour:
    return next(c for c in g.COLOURS if c.en == en)


def _subject(en: str) -> g.Subject:
    return next(s for s in g.SUBJECTS if s.en == en)


def _place(en: str) -> g.Place:
    return next(p for p in g.PLACES if p.en == en)


def _row(table, en: str):
    return next(row for row in table if row[0] == en)


def _activity(en_verb: str, en_obj: str) -> g.Activity:
    return next(a for a in g.ACTIVITIES if a.en[0] == en_verb and a.en_obj == en_obj)


#: Grammar renderings that must equal built-in sentences, which were written by hand independently of the grammar.
BUILTIN_TWINS = {
    "s000": lambda: g._vehicle(_row(g.VEHICLES, "train"), g.VEHICLE_MODS[0], True, _row(g.HOURS, "seven")),
    "s002": lambda: g._weather(_row(g.WEATHER, "it is raining"), _row(g.WEATHER_TIMES, "today")),
    "s005": lambda: g._activity(_subject("my father"), _activity("drinks", "coffee"), _row(g.TIMES, "every morning")),
    "s008": lambda: g._colour_of("the", _thing("apple"), _colour("red")),
    "s009": lambda: g._works(_subject("my mother"), _place("hospital")),
    "s012": lambda: g._opening(_place("shop"), True, _row(g.HOURS, "nine")),
    "s027": lambda: g._event(_row(g.EVENTS, "meeting"), True, _row(g.HOURS, "ten")),
    "s030": lambda: g._where(_place("train station")),
    "s032": lambda: g._age(_subject("my father"), _row(g.AGES, "forty")),
    "s066": lambda: g._distance(_place("airport"), True),
    "s051": lambda: g._colour_of("the", _thing("door"), _colour("green")),
    "s061": lambda: g._age(_subject("my son"), _row(g.AGES, "seven")),
    "s071": lambda: g._weather(_row(g.WEATHER, "the weather is nice"), _row(g.WEATHER_TIMES, "today")),
    "s088": lambda: g._opening(_place("library"), False, _row(g.HOURS, "five")),
    "s127": lambda: g._price(_thing("bag")),
}


@pytest.mark.parametrize("sentence_id", sorted(BUILTIN_TWINS))
def test_grammar_reproduces_hand_written_builtin_sentences(sentence_id):
    rendered = g._sentence(sentence_id, BUILTIN_TWINS[sentence_id]())
    builtin = SENTENCES_BY_ID[sentence_id]
    for lang in CORPUS_LANGUAGES:
        assert rendered.text(lang) == builtin.text(lang), lang
        assert rendered.speech_text(lang) == builtin.speech_text(lang), lang


def test_grammar_agreement_elision_and_word_order():
    brother, we, i = _subject("my little brother"), _subject("we"), _subject("I")
    t = g._has_coloured(i, _thing("car"), _colour("white"))
    assert t["deu"] == "Ich habe ein weißes Auto."
    assert t["spa"] == "Tengo un coche blanco."
    assert t["fra"] == "J'ai une voiture blanche."
    assert t["jpn"] == "わたし{wa}しろいくるまをもっています。"
    assert t["cmn"] == "我有一辆白色的车。"
    t = g._has_coloured(brother, _thing("dog"), _colour("black"))
    assert t["deu"] == "Mein kleiner Bruder hat einen schwarzen Hund."
    assert t["jpn"].endswith("くろいいぬをかっています。")
    t = g._likes(we, _row(g.FOODS, "apples"), plural=True)
    assert (t["eng"], t["deu"], t["spa"], t["fra"]) == (
        "We like apples.", "Wir mögen Äpfel.", "Nos gustan las manzanas.", "Nous aimons les pommes.")
    t = g._lives(i, _row(g.DESTINATIONS, "Japan"))
    assert (t["deu"], t["spa"], t["fra"]) == ("Ich wohne in Japan.", "Vivo en Japón.", "J'habite au Japon.")
    t = g._colour_of("my", _thing("bird"), _colour("grey"))
    assert (t["deu"], t["spa"], t["fra"]) == ("Mein Vogel ist grau.", "Mi pájaro es gris.", "Mon oiseau est gris.")
    assert g._colour_of("the", _thing("bird"), _colour("blue"))["fra"] == "L'oiseau est bleu."
    t = g._travels(_subject("my aunt"), _row(g.DESTINATIONS, "Spain"), _row(g.MONTHS, "July"))
    assert t["deu"] == "Meine Tante reist im Juli nach Spanien."
    assert g._sentence("x", t).speech_text("jpn") == "おばわしちがつにスペインえりょこうします。"
    assert g._sentence("x", t).text("jpn") == "おばはしちがつにスペインへりょこうします。"


def test_generated_sentences_are_well_formed_unique_and_seeded():
    sentences = g.generate_sentences(600, seed=3)
    assert len(sentences) == 600
    assert [s.id for s in sentences] == [f"g{i:05d}" for i in range(600)]
    builtin_texts = {lang: {s.text(lang) for s in SENTENCES} for lang in CORPUS_LANGUAGES}
    for lang in CORPUS_LANGUAGES:
        texts = [s.text(lang) for s in sentences]
        assert len(set(texts)) == len(texts), f"{lang}: a text has two translations"
        assert not set(texts) & builtin_texts[lang], f"{lang}: a grammar sentence duplicates a built-in one"
        assert all("{" not in t and "}" not in t and "  " not in t for t in texts)
    for s in sentences:
        assert KANA.match(s.text("jpn")), s.text("jpn")
        assert HANZI.match(s.text("cmn")), s.text("cmn")
        for lang in ("eng", "deu", "spa", "fra"):
            assert s.text(lang)[0].isupper() or s.text(lang)[0] == "¿", s.text(lang)
            assert s.text(lang)[-1] in ".?", s.text(lang)
    again = g.generate_sentences(600, seed=3)
    assert [s.texts["eng"] for s in again] == [s.texts["eng"] for s in sentences]
    other = g.generate_sentences(600, seed=4)
    assert [s.texts["eng"] for s in other] != [s.texts["eng"] for s in sentences]
    patterns_hit = {name for name, (enum, _) in g.PATTERNS.items()
                    if {t["eng"] for t in enum()} & {s.text("eng") for s in sentences}}
    assert patterns_hit == set(g.PATTERNS)


def test_generate_sentences_rejects_bad_counts():
    for bad in (0, -3, 2.5, True):
        with pytest.raises(CorpusError, match="positive integer"):
            g.generate_sentences(bad)
    with pytest.raises(CorpusError, match="at most"):
        g.generate_sentences(10**7)
    with pytest.raises(CorpusError, match="unknown grammar pattern 'nope'"):
        g.pattern_size("nope")


# --------------------------------------------------------------------------------------------------------- data


def test_split_holds_out_a_tenth_and_the_heldout_voice_is_never_trained_on():
    cfg = DataConfig(n_grammar=200)
    train, heldout = select_sentences(cfg)
    assert len(heldout) == round(len(SENTENCES) * 0.1) + round(200 * 0.1)
    assert not {s.id for s in train} & {s.id for s in heldout}
    assert len(train) + len(heldout) == len(SENTENCES) + 200
    clips = plan_clips(cfg, train, heldout)
    trained = [c for c in clips if c.split == "train"]
    held = [c for c in clips if c.split == "heldout"]
    assert {c.sentence_id for c in trained} == {s.id for s in train}
    assert {(c.sentence_id, c.lang) for c in held} == {(s.id, lang) for s in heldout for lang in CORPUS_LANGUAGES}
    assert all(c.voice.variant == HELDOUT_VARIANT and c.speed == 1.0 and c.snr_db is None for c in held)
    assert HELDOUT_VARIANT not in {c.voice.variant for c in trained}
    builtin_voices = {v.name for voices in data_mod.VOICES.values() for v in voices}
    assert builtin_voices <= {c.voice.name for c in trained}
    random_voiced = [c for c in trained if c.voice.name not in builtin_voices]
    assert 0.2 < np.mean([c.speed != 1.0 for c in random_voiced]) < 0.4
    assert 0.4 < np.mean([c.snr_db is not None for c in random_voiced]) < 0.6
    assert len({c.voice for c in random_voiced}) > 0.9 * len(random_voiced)
    assert plan_clips(cfg, train, heldout) == clips


def test_augment_changes_speed_and_adds_noise_at_the_requested_snr():
    t = np.arange(16000) / 16000
    x = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    assert np.array_equal(augment(x, 1.0, None, 0), x)
    fast = augment(x, 1.1, None, 0)
    assert abs(len(fast) - len(x) / 1.1) <= 2
    noisy = augment(x, 1.0, 20.0, 7)
    snr = 10 * np.log10(np.mean(x**2) / np.mean((noisy - x) ** 2))
    assert abs(snr - 20.0) < 0.3
    assert np.array_equal(noisy, augment(x, 1.0, 20.0, 7))


@pytest.mark.parametrize("bad, message", [
    (dict(heldout_fraction=0.0), "heldout_fraction"),
    (dict(voices_per_sentence=0), "voices_per_sentence"),
    (dict(noise_prob=1.5), "probabilities"),
    (dict(max_builtin=1), "max_builtin"),
    (dict(languages=("deu", "fra")), "must include 'eng'"),
])
def test_data_config_rejects_bad_values(bad, message):
    with pytest.raises(CorpusError, match=message):
        DataConfig(**bad)


def test_train_config_rejects_bad_values():
    with pytest.raises(CorpusError, match="steps must be >= 1"):
        TrainConfig(steps=0)
    with pytest.raises(CorpusError, match="speech_batch"):
        TrainConfig(speech_batch=0)
    with pytest.raises(CorpusError, match="evidence_weight must be >= 0"):
        TrainConfig(evidence_weight=-1.0)


# ------------------------------------------------------------------------------------------------ smoke training


@pytest.mark.slow
def test_quick_training_learns_saves_reloads_and_evaluates(tmp_path):
    data_cfg = DataConfig(n_grammar=6, max_builtin=3, builtin_extra_voices=0, english_voices=1,
                          languages=("eng", "deu", "fra"), workers=1)
    train_cfg = replace(QUICK_TRAIN, steps=40, minutes=2.0, log_every=1, speech_batch=6, text_batch=12, text_phase=0.0,
                        steer_weight=0.5, evidence_weight=0.5)
    out = tmp_path / "model"
    report = train_demo_model(out, train_cfg, data_cfg, cache_dir=tmp_path / "cache", progress=False,
                              evaluate_limit=2)
    losses = [h["loss_speech"] + h["loss_text"] + h["loss_ctc"] for h in report["train"]["history"]]
    assert report["train"]["steps"] == 40 and report["train"]["stopped_by"] == "steps"
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 1.0
    assert all(np.isfinite(h["loss_steer"]) and np.isfinite(h["loss_evidence_speech"])
               for h in report["train"]["history"])
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "README.md",
                 "training_report.json"):
        assert (out / name).is_file(), name
    bundle = load_model(str(out), device="cpu")
    assert isinstance(bundle.model, SeamlessM4Tv2Model) and not bundle.model.training
    assert bundle.dtype == torch.float32 and next(bundle.model.parameters()).dtype == torch.float32
    assert bundle.languages == ("eng", "deu", "fra")
    assert bundle.model.config.speech_decoder_trained is False
    assert bundle.model.config.dropout == 0.0
    enc = bundle.tokenizer(["Ich habe zwei Brüder."], src_lang="deu", return_tensors="pt")
    seq = bundle.model.generate(**enc, tgt_lang="eng", generate_speech=False, max_new_tokens=4).sequences
    assert seq[0, :2].tolist() == [bundle.tokenizer.eos_token_id, bundle.tokenizer.convert_tokens_to_ids("__eng__")]
    metrics = json.loads((out / "training_report.json").read_text())["metrics"]
    assert set(metrics["tasks"]) == {"asr", "s2tt", "t2tt", "en2x_s2tt", "en2x_t2tt"}
    assert set(metrics["tasks"]["asr"]) == {"eng", "deu", "fra"}
    assert set(metrics["tasks"]["en2x_t2tt"]) == {"deu", "fra"}
    assert "not seamlessm4t v2" in (out / "README.md").read_text().replace("**", "").lower()


def test_train_demo_command_is_registered_with_its_options():
    from neuron_atlas.demo_trainer.commands import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train-demo", "--quick", "--minutes", "2", "--seed", "5", "--out", "/tmp/x"])
    assert (args.quick, args.minutes, args.seed, args.out) == (True, 2.0, 5, Path("/tmp/x"))
    assert parser.parse_args(["train-demo"]).out == DEMO_MODEL_DIR
    assert parser.parse_args(["train-demo"]).first_label == "source"
    weights = parser.parse_args(["train-demo", "--steer-weight", "1", "--evidence-weight", "0.5"])
    assert (weights.steer_weight, weights.evidence_weight) == (1.0, 0.5)
    bad = parser.parse_args(["train-demo", "--init-from", str(Path("/nonexistent/model")), "--out", "/tmp/x"])
    with pytest.raises(SystemExit, match="--init-from /nonexistent/model is not a model folder written by train-demo"):
        bad.func(bad)


@pytest.mark.slow
def test_continued_training_keeps_the_tokenizer_and_records_the_earlier_run(tmp_path):
    data_cfg = DataConfig(n_grammar=6, max_builtin=3, builtin_extra_voices=0, english_voices=1,
                          languages=("eng", "deu", "fra"), workers=1)
    first_cfg = replace(QUICK_TRAIN, steps=6, minutes=2.0, speech_batch=4, text_batch=8, text_phase=0.0,
                        source_language_labels=False)
    first = train_demo_model(tmp_path / "run1", first_cfg, data_cfg, cache_dir=tmp_path / "cache", progress=False,
                             evaluate_limit=1)
    second = train_demo_model(tmp_path / "run2", replace(first_cfg, steps=4, source_language_labels=True), data_cfg,
                              cache_dir=tmp_path / "cache", progress=False, evaluate_limit=1,
                              init_from=tmp_path / "run1")
    assert (tmp_path / "run2" / "tokenizer.json").read_text() == (tmp_path / "run1" / "tokenizer.json").read_text()
    saved = json.loads((tmp_path / "run1" / "training_report.json").read_text())
    assert second["earlier_runs"] == [{"train": saved["train"], "train_config": saved["train_config"]}]
    assert saved["train"]["steps"] == first["train"]["steps"] == 6 and second["train"]["steps"] == 4
    card = (tmp_path / "run2" / "README.md").read_text()
    assert "Trained in 2 runs" in card and "--first-label target" in card and "--init-from run1" in card


# ------------------------------------------------------------------------------------------ the shipped model

#: k of the control-unit sets in the steering check (both = 2k decoder units, about 5 % of the decoder).
STEER_K = 250
STEER_SENTENCES = 12


@pytest.fixture(scope="module")
def demo():
    from neuron_atlas.engine.model.loading import configure_cpu_threads

    bundle = load_model("demo", device="cpu")
    configure_cpu_threads(bundle)
    return bundle


def test_shipped_model_loads_offline_as_demo_and_by_folder(demo):
    assert demo.spec == "demo" and isinstance(demo.model, SeamlessM4Tv2Model) and not demo.model.training
    assert demo.languages == CORPUS_LANGUAGES
    assert next(demo.model.parameters()).dtype == torch.float32
    cfg = demo.model.config
    assert cfg.speech_decoder_trained is False
    assert cfg.add_adapter and cfg.adaptor_stride == 8 and cfg.speech_encoder_layers >= 2
    assert cfg.encoder_layers >= 2 and cfg.decoder_layers >= 2
    assert type(demo.feature_extractor).__name__ == "SeamlessM4TFeatureExtractor"
    again = load_model(str(DEMO_MODEL_DIR), device="cpu")
    assert again.checksum == demo.checksum
    a = dict(demo.model.named_parameters())
    b = dict(again.model.named_parameters())
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_shipped_model_size_card_and_report_agree():
    files = [p for p in DEMO_MODEL_DIR.iterdir() if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 20_000_000
    report = json.loads((DEMO_MODEL_DIR / "training_report.json").read_text())
    card = (DEMO_MODEL_DIR / "README.md").read_text()
    assert "not seamlessm4t v2" in card.replace("**", "").lower()
    assert "Speech output is not trained" in card.replace("**", "")
    summary = report["metrics"]["summary"]
    assert f"{100 * summary['asr_cer_max']:.1f} %" in card
    assert f"{summary['x2en_chrfpp_min']:.1f}" in card
    assert report["train"]["seconds"] <= 65 * 60
    ids = report["data"]["heldout_builtin_ids"]
    assert ids and set(ids) <= set(SENTENCES_BY_ID)


def test_shipped_model_translates_and_transcribes_builtin_sentences(demo):
    from precompute.corpus.builtin import load_builtin
    from precompute.corpus.config import default_cache_dir
    from neuron_atlas.demo_trainer.evaluate import translate_speech, translate_text
    from neuron_atlas.engine.metrics import cer, chrfpp

    heldout = set(json.loads((DEMO_MODEL_DIR / "training_report.json").read_text())["data"]["heldout_builtin_ids"])
    ids = [s.id for s in SENTENCES if s.id not in heldout][:8]
    english = [SENTENCES_BY_ID[i].text("eng") for i in ids]
    hyps = translate_text(demo, [SENTENCES_BY_ID[i].text("deu") for i in ids], "deu", "eng")
    assert chrfpp(hyps, english) >= 80
    examples = load_builtin(default_cache_dir(), languages=["fra"], sentence_ids=ids, progress=False)
    feats = [demo.feature_extractor(load_audio_file(e.audio_path), sampling_rate=16000,
                                    return_tensors="np")["input_features"][0] for e in examples]
    transcripts = translate_speech(demo, feats, "fra")
    assert cer(transcripts, [e.text for e in examples], lang="fra") <= 0.1


@pytest.fixture(scope="module")
def structure_run(demo, tmp_path_factory):
    """The analysis run of the structure check: the whole built-in corpus in every language, the X->en tasks and
    en->X text, decoder step 2 (no batch experiments: the steering test runs its own)."""
    from precompute.config import AnalysisConfig, EvaluateConfig, RunConfig
    from precompute.corpus.config import CorpusConfig
    from precompute.pipeline import run_precompute

    tmp = tmp_path_factory.mktemp("demo-structure")
    cfg = RunConfig(name="structure", model="demo", device="cpu", tasks=["s2tt", "t2tt", "en2x_t2tt"],
                    steps=[2], batch_size=32, store=tmp / "atlas.duckdb", work_dir=tmp / "work",
                    corpus=CorpusConfig(source="builtin"),
                    analysis=AnalysisConfig(ks=[STEER_K]), evaluate=EvaluateConfig(enabled=False))
    return run_precompute(cfg, progress=False, bundle=demo)


def _language_concepts(store: Path, run_id: str, tasks: tuple[str, ...]) -> list[dict]:
    import duckdb

    with duckdb.connect(str(store), read_only=True) as con:
        rows = con.execute(
            "SELECT c.concept_id, c.task, c.language, c.positives, c.negatives, max(s.ap) AS best "
            "FROM concepts c JOIN unit_stats s ON s.run_id = c.run_id AND s.concept_id = c.concept_id "
            "JOIN units u ON u.run_id = s.run_id AND u.unit_id = s.unit_id "
            "WHERE c.run_id = ? AND c.kind = 'language' AND c.step = 2 AND u.stack = 'text_decoder' "
            f"AND c.task IN ({', '.join('?' for _ in tasks)}) "
            "GROUP BY c.concept_id, c.task, c.language, c.positives, c.negatives ORDER BY c.task, c.language",
            [run_id, *tasks]).fetchall()
    return [dict(zip(("concept_id", "task", "language", "positives", "negatives", "best"), r)) for r in rows]


def test_shipped_model_has_language_selective_decoder_units(structure_run):
    """The issue's bar: for every source language of s2tt and t2tt, some decoder unit that fires HIGH for it (the
    paper's AP, sign included) reaches AP >= 0.9, far above chance (the positive rate, 0.2)."""
    concepts = _language_concepts(structure_run.store, structure_run.run_id, ("s2tt", "t2tt"))
    assert {(c["task"], c["language"]) for c in concepts} == {
        (t, lang) for t in ("s2tt", "t2tt") for lang in CORPUS_LANGUAGES if lang != "eng"}
    for c in concepts:
        chance = c["positives"] / (c["positives"] + c["negatives"])
        assert chance < 0.25 and c["positives"] == len(SENTENCES)
        assert c["best"] >= 0.9, c


def test_shipped_model_control_units_steer_the_output_language(demo, structure_run):
    """The issue's bar: L's en2x control units (top + bottom k=250, ~5 % of the decoder) forced to their medians
    while translating English towards another language raise p(L) by >= 0.3 over as many random units (0.63 on the
    shipped model with the identifier's full posterior, 0.80 renormalised over the six languages; the steerability
    objective of its second training run is what makes this hold)."""
    from neuron_atlas.engine.interventions import ConceptUnits, InterventionSpec, generate_with, prepare_inputs, resolve
    from neuron_atlas.engine.model.unit_sites import SiteRegistry
    from backend.store.reader import StoreReader, StoreStats
    from neuron_atlas.engine.metrics import LangIdIdentifier, target_language_probability

    concepts = {c["language"]: c["concept_id"]
                for c in _language_concepts(structure_run.store, structure_run.run_id, ("en2x_t2tt",))}
    stats = StoreStats(StoreReader(structure_run.store), structure_run.run_id)
    registry = SiteRegistry.from_model(demo.model)
    identifier = LangIdIdentifier()
    others = [lang for lang in CORPUS_LANGUAGES if lang != "eng"]
    inputs = prepare_inputs(demo, text=[s.text("eng") for s in SENTENCES[:STEER_SENTENCES]], src_lang="eng")
    gains = {}
    for i, lang in enumerate(others):
        target = others[(i + 1) % len(others)]
        p_lang = {}
        for kind, k in (("both", STEER_K), ("random", 2 * STEER_K)):
            spec = InterventionSpec(units=ConceptUnits(concept_id=concepts[lang], set=kind, k=k, stack="text_decoder"))
            out = generate_with(demo, registry, resolve(spec, registry, stats), inputs, tgt_lang=target,
                                max_new_tokens=24)
            p_lang[kind] = float(target_language_probability(identifier, out.texts, lang).mean())
        gains[lang] = p_lang["both"] - p_lang["random"]
    assert np.mean(list(gains.values())) >= 0.3, gains
