"""Tests of the parallel corpus package: sentences, espeak-ng synthesis, built-in corpus, manifests, FLEURS, config."""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import datasets
import numpy as np
import pydantic
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

import espeakng_loader
from precompute.corpus import CorpusConfig, load_corpus
from precompute.corpus import fleurs as fleurs_mod
from precompute.corpus import loader as loader_mod
from neuron_atlas.engine import tts
from precompute.corpus.builtin import load_builtin
from precompute.corpus.config import KNOWN_LANGUAGES
from neuron_atlas.engine.example import CORPUS_LANGUAGES, CorpusError, Example
from precompute.corpus.fleurs import FLEURS_CONFIGS, NOT_SEAMLESS_TEXT, SEAMLESS_FLEURS_LANGUAGES, load_fleurs
from precompute.corpus.manifest import load_manifest
from neuron_atlas.engine.sentences import SENTENCES, SENTENCES_BY_ID

SR = 16_000
CJK_IDEOGRAPH = re.compile("[\u4e00-\u9fff]")
KANA_OR_PUNCT = re.compile("^[\u3041-\u309f\u30a0-\u30ff、。？！]+$")


def longest_zero_run(x: np.ndarray) -> int:
    padded = np.concatenate(([0], (x == 0).astype(np.int8), [0]))
    edges = np.diff(padded)
    runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    return int(runs.max()) if runs.size else 0


def median_f0(x: np.ndarray, sr: int = SR) -> float:
    """Median autocorrelation pitch (Hz) over loud 40 ms frames."""
    n, found = 640, []
    for start in range(0, len(x) - n, n // 2):
        frame = x[start:start + n] - x[start:start + n].mean()
        if np.sqrt((frame ** 2).mean()) < 0.05:
            continue
        ac = np.correlate(frame, frame, "full")[n - 1:]
        lo, hi = sr // 400, sr // 60
        found.append(sr / (lo + int(np.argmax(ac[lo:hi]))))
    return float(np.median(found))


# ----------------------------------------------------------------------------------------------- sentences


def test_sentences_cover_every_language_with_stable_ids():
    assert len(SENTENCES) >= 120
    assert [s.id for s in SENTENCES] == [f"s{i:03d}" for i in range(len(SENTENCES))]
    assert set(SENTENCES_BY_ID) == {s.id for s in SENTENCES}
    for sentence in SENTENCES:
        assert set(sentence.texts) == set(CORPUS_LANGUAGES), sentence.id
        for lang in CORPUS_LANGUAGES:
            assert sentence.text(lang).strip(), (sentence.id, lang)
            assert "{" not in sentence.text(lang) and "}" not in sentence.speech_text(lang)
    english = [s.text("eng") for s in SENTENCES]
    assert len(set(english)) == len(english)
    assert all(4 <= len(text.split()) <= 10 for text in english)


def test_japanese_is_kana_only_and_chinese_is_hanzi():
    for sentence in SENTENCES:
        jpn, cmn = sentence.text("jpn"), sentence.text("cmn")
        assert not CJK_IDEOGRAPH.search(jpn), (sentence.id, jpn)
        assert KANA_OR_PUNCT.match(jpn), (sentence.id, jpn)
        assert CJK_IDEOGRAPH.search(cmn) and not re.search("[\u3040-\u30ffA-Za-z]", cmn), (sentence.id, cmn)


def test_japanese_speech_text_only_respells_particles():
    respelled = 0
    for sentence in SENTENCES:
        written, spoken = sentence.text("jpn"), sentence.speech_text("jpn")
        assert len(written) == len(spoken)
        diffs = {(a, b) for a, b in zip(written, spoken) if a != b}
        assert diffs <= {("は", "わ"), ("へ", "え")}, sentence.id
        respelled += bool(diffs)
        for lang in ("eng", "deu", "spa", "fra", "cmn"):
            assert sentence.speech_text(lang) == sentence.text(lang)
    assert respelled > 50
    assert SENTENCES_BY_ID["s000"].text("jpn") == "でんしゃはしちじにでます。"
    assert SENTENCES_BY_ID["s000"].speech_text("jpn") == "でんしゃわしちじにでます。"
    with pytest.raises(CorpusError, match="ita"):
        SENTENCES[0].text("ita")


# ----------------------------------------------------------------------------------------------- synthesis


def test_voice_registry_uses_voices_present_in_bundled_data():
    data = Path(espeakng_loader.get_data_path())
    voice_files = {p.name.lower() for p in (data / "lang").rglob("*") if p.is_file()}
    variants = {p.name for p in (data / "voices" / "!v").iterdir()}
    assert set(tts.VOICES) == set(CORPUS_LANGUAGES)
    names = [voice.name for voices in tts.VOICES.values() for voice in voices]
    assert len(names) == len(set(names))
    for lang, voices in tts.VOICES.items():
        assert len(voices) >= 3
        assert len({(v.variant, v.rate, v.pitch) for v in voices}) == len(voices)
        for voice in voices:
            assert voice.lang == lang and voice.name.startswith(f"{lang}-")
            assert voice.espeak.lower() in voice_files and voice.variant in variants
    assert re.fullmatch(r"espeak-ng \d+\.\d+(\.\d+)?.*", tts.ENGINE_VERSION)


def test_voice_rejects_out_of_range_parameters():
    with pytest.raises(CorpusError, match="pitch"):
        tts.Voice("x", "eng", "en-us", "m1", 160, 120)
    with pytest.raises(CorpusError, match="rate"):
        tts.Voice("x", "eng", "en-us", "m1", 20, 50)


@pytest.mark.parametrize("lang", CORPUS_LANGUAGES)
def test_synthesis_is_16k_float_trimmed_normalised_and_dithered(lang):
    sentence = SENTENCES_BY_ID["s005"]
    audio = tts.synthesize(sentence.speech_text(lang), tts.VOICES[lang][0])
    assert audio.dtype == np.float32 and audio.ndim == 1
    duration = len(audio) / SR
    chars = len(re.sub(r"\W", "", sentence.text(lang)))
    assert 0.8 < duration < 6.0
    assert duration / chars > (0.05 if lang not in ("jpn", "cmn") else 0.08)
    assert abs(np.abs(audio).max() - 0.9) < 0.005
    assert longest_zero_run(audio) <= 100
    loud = np.flatnonzero(np.abs(audio) > 0.01 * np.abs(audio).max())
    assert loud[0] < 0.05 * SR and len(audio) - loud[-1] < 0.05 * SR
    assert np.sqrt(np.mean(audio ** 2)) > 0.05


def test_unknown_espeak_voice_and_silent_text_raise():
    with pytest.raises(CorpusError, match="no voice xx-none"):
        tts.synthesize("hello", tts.Voice("bad", "eng", "xx-none", "m1", 160, 50))
    with pytest.raises(CorpusError, match="empty text"):
        tts.synthesize("   ", tts.VOICES["eng"][0])


def test_voices_differ_in_pitch_and_timing():
    text = SENTENCES_BY_ID["s005"].text("eng")
    male, female, fast = (tts.synthesize(text, tts.VOICES["eng"][i]) for i in (0, 1, 2))
    assert median_f0(female) > 1.5 * median_f0(male)
    assert 70 < median_f0(male) < 160
    assert len(fast) < len(male)


def test_rate_and_pitch_parameters_reach_the_engine():
    text = "My grandfather reads the newspaper every morning."
    slow, quick = (tts.synthesize(text, tts.Voice("t", "eng", "en-us", "m1", rate, 50)) for rate in (110, 260))
    assert len(slow) > 1.6 * len(quick)
    low, high = (tts.synthesize(text, tts.Voice("t", "eng", "en-us", "m1", 165, pitch)) for pitch in (10, 90))
    assert median_f0(high) > 1.2 * median_f0(low)


def test_postprocess_trims_silence_normalises_and_is_seeded():
    burst = (8000 * np.sin(2 * np.pi * 300 * np.arange(22050) / 22050)).astype(np.int16)
    padded = np.concatenate([np.zeros(22050, np.int16), burst, np.zeros(44100, np.int16)])
    out = tts.postprocess(padded, 22050, seed=7)
    margin = int(tts.TRIM_MARGIN_S * SR)
    assert abs(len(out) - (SR + 2 * margin)) <= 4
    assert abs(np.abs(out).max() - 0.9) < 0.002
    np.testing.assert_array_equal(out, tts.postprocess(padded, 22050, seed=7))
    assert not np.array_equal(out, tts.postprocess(padded, 22050, seed=8))
    assert 0.5e-4 < np.std(out[:margin // 2]) < 2e-4
    with pytest.raises(CorpusError, match="silence"):
        tts.postprocess(np.zeros(100, np.int16), 22050, seed=0)


def test_resample_matches_torchaudio_functional():
    x = np.random.default_rng(0).normal(0, 0.3, 22050).astype(np.float32)
    expected = AF.resample(torch.from_numpy(x), 22050, SR).numpy()
    np.testing.assert_allclose(tts.resample(x, 22050), expected, atol=5e-5)
    np.testing.assert_array_equal(tts.resample(x, SR), x)


def test_cache_key_depends_on_text_voice_engine_and_pipeline(monkeypatch):
    voice = tts.VOICES["fra"][0]
    key = tts.cache_key("Bonjour.", voice)
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert tts.cache_key("Bonjour.", voice) == key
    assert tts.cache_key("Bonsoir.", voice) != key
    assert tts.cache_key("Bonjour.", tts.VOICES["fra"][1]) != key
    other = tts.Voice(voice.name, voice.lang, voice.espeak, voice.variant, voice.rate + 1, voice.pitch)
    assert tts.cache_key("Bonjour.", other) != key
    monkeypatch.setattr(tts, "ENGINE_VERSION", "espeak-ng 9.9")
    assert tts.cache_key("Bonjour.", voice) != key
    monkeypatch.undo()
    monkeypatch.setattr(tts, "PIPELINE_VERSION", "tts-test")
    assert tts.cache_key("Bonjour.", voice) != key


@pytest.fixture(scope="module")
def small_builtin(tmp_path_factory):
    """Two sentences in all six languages with the default voice, synthesised by a 2-process pool."""
    cache = tmp_path_factory.mktemp("builtin")
    return cache, load_builtin(cache, sentence_ids=["s000", "s005"], workers=2, progress=False)


def test_pool_writes_16k_mono_wavs_atomically(small_builtin):
    cache, examples = small_builtin
    assert len(examples) == 12
    for example in examples:
        info = sf.info(str(example.audio_path))
        assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
        audio, _ = sf.read(str(example.audio_path), dtype="float32")
        assert abs(np.abs(audio).max() - 0.9) < 0.005 and longest_zero_run(audio) <= 100
        spoken = SENTENCES_BY_ID[example.sentence_id].speech_text(example.lang)
        assert example.audio_path.name == f"{tts.cache_key(spoken, tts.VOICES[example.lang][0])}.wav"
    assert not [p for p in (cache / "tts").iterdir() if not p.name.endswith(".wav")]


def test_cache_hit_does_not_resynthesise(small_builtin, monkeypatch):
    cache, examples = small_builtin
    mtimes = {e.audio_path: e.audio_path.stat().st_mtime_ns for e in examples}

    def forbidden(*args):
        raise AssertionError("cache miss")

    monkeypatch.setattr(tts, "_synthesize_to", forbidden)
    again = load_builtin(cache, sentence_ids=["s000", "s005"], workers=2, progress=False)
    assert [e.audio_path for e in again] == [e.audio_path for e in examples]
    assert {e.audio_path: e.audio_path.stat().st_mtime_ns for e in again} == mtimes


def test_only_missing_items_are_synthesised(tmp_path, monkeypatch):
    voice = tts.VOICES["deu"][0]
    first = tts.synthesize_many([("Der Himmel ist blau.", voice)], tmp_path, workers=1, progress=False)
    calls = []
    real = tts._synthesize_to
    monkeypatch.setattr(tts, "_synthesize_to", lambda *a: calls.append(a[0]) or real(*a))
    paths = tts.synthesize_many([("Der Himmel ist blau.", voice), ("Der Apfel ist rot.", voice),
                                 ("Der Apfel ist rot.", voice)], tmp_path, workers=1, progress=False)
    assert calls == ["Der Apfel ist rot."]
    assert paths[0] == first[0] and paths[1] == paths[2] != paths[0]


def test_pool_propagates_worker_errors(tmp_path):
    voice = tts.VOICES["eng"][0]
    with pytest.raises(CorpusError, match="empty text"):
        tts.synthesize_many([("Hello there.", voice), ("  ", voice)], tmp_path, workers=2, progress=False)


# ----------------------------------------------------------------------------------------------- built-in


def test_builtin_ids_alignment_and_reference(small_builtin):
    _, examples = small_builtin
    assert [e.id for e in examples[:6]] == [f"builtin:s000:{lang}:{lang}-m1" for lang in CORPUS_LANGUAGES]
    for example in examples:
        sentence = SENTENCES_BY_ID[example.sentence_id]
        assert example.text == sentence.text(example.lang)
        assert example.reference == sentence.text("eng")
        assert example.voice == tts.VOICES[example.lang][0].name
    by_sentence = {sid: {e.lang for e in examples if e.sentence_id == sid} for sid in ("s000", "s005")}
    assert by_sentence == {"s000": set(CORPUS_LANGUAGES), "s005": set(CORPUS_LANGUAGES)}
    assert examples[4].text == "でんしゃはしちじにでます。"


def test_builtin_all_voices_and_limits(tmp_path):
    examples = load_builtin(tmp_path, languages=["fra", "cmn"], voices="all", max_sentences=1, workers=1,
                            progress=False)
    assert len(examples) == len(tts.VOICES["fra"]) + len(tts.VOICES["cmn"])
    assert [e.voice for e in examples if e.lang == "fra"] == [v.name for v in tts.VOICES["fra"]]
    assert {e.sentence_id for e in examples} == {"s000"}
    assert len({e.audio_path for e in examples}) == len(examples)


def test_builtin_rejects_bad_arguments(tmp_path):
    with pytest.raises(CorpusError, match=r"'xyz'.*known languages: eng, deu, spa, fra, jpn, cmn"):
        load_builtin(tmp_path, languages=["eng", "xyz"])
    with pytest.raises(CorpusError, match="voice index 9 out of range"):
        load_builtin(tmp_path, languages=["eng"], voices=9)
    with pytest.raises(CorpusError, match="voice index or 'all'"):
        load_builtin(tmp_path, languages=["eng"], voices="some")
    with pytest.raises(CorpusError, match="s999"):
        load_builtin(tmp_path, sentence_ids=["s999"])
    with pytest.raises(CorpusError, match="max_sentences"):
        load_builtin(tmp_path, max_sentences=0)


# ----------------------------------------------------------------------------------------------- manifest


def write_wav(path: Path, seconds: float = 0.25, sr: int = SR) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr)
    return path


def manifest_rows(folder: Path) -> list[dict]:
    (folder / "audio").mkdir(exist_ok=True)
    for name in ("e1", "f1", "e2", "f2"):
        write_wav(folder / "audio" / f"{name}.wav")
    return [
        {"id": "a", "sentence_id": "1", "lang": "eng", "text": "The sky is blue.", "audio": "audio/e1.wav"},
        {"id": "b", "sentence_id": "1", "lang": "fra", "text": "Le ciel est bleu.", "audio": "audio/f1.wav",
         "speaker": "spk7"},
        {"id": "c", "sentence_id": "2", "lang": "fra", "text": "La pomme est rouge.",
         "audio": str(folder / "audio" / "f2.wav"), "reference": "The apple is red.", "voice": "v2"},
        {"id": "d", "sentence_id": "2", "lang": "eng", "text": "The apple is red.", "audio": "audio/e2.wav"},
    ]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    columns = columns or ["id", "sentence_id", "lang", "text", "audio", "reference", "voice"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_manifest_happy_path(tmp_path, fmt):
    rows = manifest_rows(tmp_path)
    path = (write_jsonl if fmt == "jsonl" else write_csv)(tmp_path / f"corpus.{fmt}", rows)
    examples = load_manifest(path, KNOWN_LANGUAGES)
    assert [e.id for e in examples] == ["a", "b", "c", "d"]
    assert examples[0].audio_path == (tmp_path / "audio" / "e1.wav").resolve()
    assert examples[0].reference == "The sky is blue."
    assert examples[1].reference == "The sky is blue."
    assert examples[2].reference == "The apple is red." and examples[2].voice == "v2"
    assert examples[1].voice is None
    assert [e.sentence_id for e in examples] == ["1", "1", "2", "2"]
    if fmt == "jsonl":
        assert examples[1].meta["speaker"] == "spk7"


def manifest_error(tmp_path: Path, edit) -> str:
    rows = manifest_rows(tmp_path)
    rows = edit(rows, tmp_path) or rows
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    with pytest.raises(CorpusError) as info:
        load_manifest(path, KNOWN_LANGUAGES)
    message = str(info.value)
    assert "m.jsonl" in message
    return message


def test_manifest_missing_column(tmp_path):
    message = manifest_error(tmp_path, lambda rows, _: rows[2].pop("text") and None)
    assert "line 3" in message and "text" in message


def test_manifest_duplicate_id(tmp_path):
    message = manifest_error(tmp_path, lambda rows, _: rows[3].update(id="a"))
    assert "line 4" in message and "duplicate id 'a'" in message and "line 1" in message


def test_manifest_unknown_language(tmp_path):
    message = manifest_error(tmp_path, lambda rows, _: rows[1].update(lang="klingon"))
    assert "line 2" in message and "'lang'" in message and "klingon" in message and "eng" in message


def test_manifest_missing_audio_file(tmp_path):
    message = manifest_error(tmp_path, lambda rows, _: rows[0].update(audio="audio/nope.wav"))
    assert "line 1" in message and "'audio'" in message and "not found" in message and "nope.wav" in message


def test_manifest_corrupt_audio_file(tmp_path):
    def corrupt(rows, folder):
        (folder / "audio" / "bad.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
        rows[1]["audio"] = "audio/bad.wav"
    message = manifest_error(tmp_path, corrupt)
    assert "line 2" in message and "corrupt" in message and "bad.wav" in message


def test_manifest_audio_without_frames(tmp_path):
    def empty(rows, folder):
        sf.write(str(folder / "audio" / "empty.wav"), np.zeros(0, dtype=np.float32), SR)
        rows[3]["audio"] = "audio/empty.wav"
    message = manifest_error(tmp_path, empty)
    assert "line 4" in message and "no frames" in message


def test_manifest_empty_text(tmp_path):
    message = manifest_error(tmp_path, lambda rows, _: rows[2].update(text="   "))
    assert "line 3" in message and "'text' is empty" in message


def test_manifest_reference_required_without_english_row(tmp_path):
    message = manifest_error(tmp_path, lambda rows, _: [rows[0], rows[1]] + [dict(rows[2], reference=""),
                                                                              dict(rows[3], lang="deu")])
    assert "line 3" in message and "'reference'" in message and "'2'" in message


def test_manifest_invalid_json_and_empty_and_type(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"id": "a"}\n{not json}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"bad.jsonl: line 1: missing column\(s\) sentence_id"):
        load_manifest(tmp_path / "bad.jsonl", KNOWN_LANGUAGES)
    (tmp_path / "bad2.jsonl").write_text("{not json}\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="bad2.jsonl: line 1: invalid JSON"):
        load_manifest(tmp_path / "bad2.jsonl", KNOWN_LANGUAGES)
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="empty.jsonl: empty corpus"):
        load_manifest(tmp_path / "empty.jsonl", KNOWN_LANGUAGES)
    write_csv(tmp_path / "header_only.csv", [])
    with pytest.raises(CorpusError, match="header_only.csv: empty corpus"):
        load_manifest(tmp_path / "header_only.csv", KNOWN_LANGUAGES)
    (tmp_path / "m.txt").write_text("x", encoding="utf-8")
    with pytest.raises(CorpusError, match="unsupported manifest type"):
        load_manifest(tmp_path / "m.txt", KNOWN_LANGUAGES)
    with pytest.raises(CorpusError, match="manifest not found"):
        load_manifest(tmp_path / "absent.jsonl", KNOWN_LANGUAGES)


def test_manifest_csv_missing_header_column(tmp_path):
    rows = manifest_rows(tmp_path)
    path = write_csv(tmp_path / "m.csv", rows, columns=["id", "sentence_id", "lang", "text"])
    with pytest.raises(CorpusError, match=r"m.csv: line 1: missing column\(s\) audio"):
        load_manifest(path, KNOWN_LANGUAGES)


# ----------------------------------------------------------------------------------------------- FLEURS

FLEURS_FEATURES = datasets.Features({
    "id": datasets.Value("int32"), "num_samples": datasets.Value("int32"), "path": datasets.Value("string"),
    "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
    "transcription": datasets.Value("string"), "raw_transcription": datasets.Value("string"),
    "gender": datasets.ClassLabel(names=["male", "female", "other"]),
    "lang_id": datasets.Value("int32"), "language": datasets.Value("string"),
    "lang_group_id": datasets.Value("int32"),
})

#: config -> (sample rate, channels, [(id, path, raw_transcription, tone Hz)])
FLEURS_FIXTURE = {
    "en_us": (SR, 1, [(7, "/d/en/b7.wav", "Seven, second take.", 300), (7, "/d/en/a7.wav", "Seven.", 200),
                      (3, "/d/en/c3.wav", "Three.", 250), (11, "/d/en/d11.wav", "Eleven.", 260),
                      (5, "/d/en/e5.wav", "Five.", 270)]),
    "fr_fr": (8000, 2, [(7, "/d/fr/z7.wav", "Sept.", 310), (3, "/d/fr/y3.wav", "Trois.", 320),
                        (11, "/d/fr/x11.wav", "Onze.", 330)]),
    "cmn_hans_cn": (22050, 1, [(3, "/d/zh/q3.wav", "三。", 340), (7, "/d/zh/p7.wav", "七。", 350),
                               (9, "/d/zh/r9.wav", "九。", 360)]),
    "ja_jp": (SR, 1, [(4, "/d/ja/j4.wav", "四。", 370)]),
}


def fleurs_table(config: str) -> datasets.Dataset:
    rate, channels, rows = FLEURS_FIXTURE[config]
    columns = {name: [] for name in FLEURS_FEATURES}
    for sid, path, text, tone in rows:
        t = np.arange(int(0.5 * rate)) / rate
        wave = (0.5 * np.sin(2 * np.pi * tone * t)).astype(np.float32)
        buffer = io.BytesIO()
        sf.write(buffer, np.stack([wave] * channels, axis=1), rate, format="WAV", subtype="PCM_16")
        for name, value in (("id", sid), ("num_samples", len(t)), ("path", path),
                            ("audio", {"bytes": buffer.getvalue(), "path": Path(path).name}),
                            ("transcription", text.lower()), ("raw_transcription", text), ("gender", 1),
                            ("lang_id", 0), ("language", config), ("lang_group_id", 0)):
            columns[name].append(value)
    table = datasets.Dataset.from_dict(columns, features=FLEURS_FEATURES)
    return table.cast_column("audio", datasets.Audio(sampling_rate=rate))


@pytest.fixture(scope="module")
def fleurs_root(tmp_path_factory):
    """A local FLEURS copy with one config per supported layout; ja_jp's train file must not leak into test."""
    root = tmp_path_factory.mktemp("fleurs")
    datasets.DatasetDict({"test": fleurs_table("en_us")}).save_to_disk(str(root / "en_us"))
    (root / "fr_fr" / "test").mkdir(parents=True)
    fleurs_table("fr_fr").to_parquet(str(root / "fr_fr" / "test" / "0000.parquet"))
    fleurs_table("cmn_hans_cn").save_to_disk(str(root / "cmn_hans_cn" / "test"))
    (root / "ja_jp").mkdir()
    fleurs_table("ja_jp").to_parquet(str(root / "ja_jp" / "fleurs-test.parquet"))
    fleurs_table("en_us").to_parquet(str(root / "ja_jp" / "fleurs-train.parquet"))
    return root


def tone_hz(path: Path) -> float:
    audio, sr = sf.read(str(path), dtype="float32")
    spectrum = np.abs(np.fft.rfft(audio))
    return float(np.fft.rfftfreq(len(audio), 1 / sr)[np.argmax(spectrum)])


def test_fleurs_join_reference_and_codes(fleurs_root, tmp_path):
    examples = load_fleurs(tmp_path, languages=["eng", "fra", "cmn"], dataset=str(fleurs_root), progress=False)
    assert [e.id for e in examples] == [f"fleurs:{sid}:{lang}" for sid in (3, 7) for lang in ("eng", "fra", "cmn")]
    assert [e.sentence_id for e in examples[::3]] == ["fleurs-3", "fleurs-7"]
    texts = {e.id: e.text for e in examples}
    assert texts["fleurs:7:eng"] == "Seven." and texts["fleurs:7:fra"] == "Sept." and texts["fleurs:3:cmn"] == "三。"
    assert {e.reference for e in examples if e.sentence_id == "fleurs-7"} == {"Seven."}
    assert {e.reference for e in examples if e.sentence_id == "fleurs-3"} == {"Three."}
    assert {e.lang: e.meta["config"] for e in examples} == {"eng": "en_us", "fra": "fr_fr", "cmn": "cmn_hans_cn"}
    assert examples[3].meta["fleurs_path"] == "/d/en/a7.wav"
    for example in examples:
        info = sf.info(str(example.audio_path))
        assert (info.samplerate, info.channels) == (SR, 1)
        assert abs(info.frames - SR // 2) <= 2
    tones = {e.id: tone_hz(e.audio_path) for e in examples}
    assert abs(tones["fleurs:7:eng"] - 200) < 4 and abs(tones["fleurs:7:fra"] - 310) < 4
    assert abs(tones["fleurs:7:cmn"] - 350) < 4
    assert FLEURS_CONFIGS["en_us"] == "eng" and FLEURS_CONFIGS["cmn_hans_cn"] == "cmn"
    assert FLEURS_CONFIGS["es_419"] == "spa" and FLEURS_CONFIGS["ja_jp"] == "jpn"


def test_fleurs_text_column_is_a_choice(fleurs_root, tmp_path):
    """`transcription` (FLEURS's normalised text) instead of `raw_transcription`, for text and reference alike."""
    examples = load_fleurs(tmp_path, languages=["eng", "fra"], dataset=str(fleurs_root), progress=False,
                           text_column="transcription")
    texts = {e.id: (e.text, e.reference) for e in examples}
    assert texts["fleurs:7:fra"] == ("sept.", "seven.") and examples[0].meta["text_column"] == "transcription"
    with pytest.raises(CorpusError, match="text column must be one of"):
        load_fleurs(tmp_path, languages=["fra"], dataset=str(fleurs_root), text_column="normalized_text")


def test_fleurs_without_english_requested_max_sentences_and_cache(fleurs_root, tmp_path):
    examples = load_fleurs(tmp_path, languages=["fra"], dataset=str(fleurs_root), max_sentences=2, progress=False)
    assert [e.id for e in examples] == ["fleurs:3:fra", "fleurs:7:fra"]
    assert [e.reference for e in examples] == ["Three.", "Seven."]
    mtimes = [e.audio_path.stat().st_mtime_ns for e in examples]
    again = load_fleurs(tmp_path, languages=["fra"], dataset=str(fleurs_root), max_sentences=1, progress=False)
    assert [e.id for e in again] == ["fleurs:3:fra"] and again[0].audio_path.stat().st_mtime_ns == mtimes[0]


def test_fleurs_errors(fleurs_root, tmp_path):
    with pytest.raises(CorpusError, match="de_de.*not found"):
        load_fleurs(tmp_path, languages=["deu"], dataset=str(fleurs_root), progress=False)
    with pytest.raises(CorpusError, match=r"no sentence id is present in all of ja_jp, en_us \(ids per config: "
                                          r"ja_jp: 1, en_us: 4\)"):
        load_fleurs(tmp_path, languages=["jpn"], dataset=str(fleurs_root), progress=False)
    with pytest.raises(CorpusError, match="no configured language 'xyz'"):
        load_fleurs(tmp_path, languages=["xyz"], dataset=str(fleurs_root), progress=False)
    with pytest.raises(CorpusError, match="no split 'validation'"):
        load_fleurs(tmp_path, languages=["fra"], dataset=str(fleurs_root), split="validation", progress=False)
    with pytest.raises(CorpusError, match="folder not found"):
        load_fleurs(tmp_path, languages=["fra"], dataset=str(tmp_path / "absent"), progress=False)


def test_every_fleurs_language_is_mapped_and_those_seamless_cannot_read_are_refused(fleurs_root, tmp_path):
    """All 102 FLEURS configs map to distinct SeamlessM4T v2 codes; the 13 it has no text for are refused by name, at
    config validation and by the loader."""
    assert len(FLEURS_CONFIGS) == 102 and len(set(FLEURS_CONFIGS.values())) == 102
    assert set(NOT_SEAMLESS_TEXT) <= set(FLEURS_CONFIGS.values()) and len(NOT_SEAMLESS_TEXT) == 13
    assert len(SEAMLESS_FLEURS_LANGUAGES) == 89 and not set(SEAMLESS_FLEURS_LANGUAGES) & set(NOT_SEAMLESS_TEXT)
    assert (FLEURS_CONFIGS["ms_my"], FLEURS_CONFIGS["fa_ir"], FLEURS_CONFIGS["ar_eg"], FLEURS_CONFIGS["yue_hant_hk"],
            FLEURS_CONFIGS["fil_ph"]) == ("zsm", "pes", "arb", "yue", "tgl")
    assert set(CORPUS_LANGUAGES) <= set(SEAMLESS_FLEURS_LANGUAGES) <= KNOWN_LANGUAGES
    assert CorpusConfig(source="fleurs", languages=list(SEAMLESS_FLEURS_LANGUAGES)).languages[0] == "afr"
    with pytest.raises(pydantic.ValidationError, match=r"language 'hau' \(FLEURS ha_ng\): not a SeamlessM4T v2 language"):
        CorpusConfig(source="fleurs", languages=["eng", "hau"])
    with pytest.raises(pydantic.ValidationError, match=r"'xho' \(FLEURS xh_za\): .*speech input only"):
        CorpusConfig(source="fleurs", languages=["xho"])
    with pytest.raises(CorpusError, match=r"FLEURS language 'ful' \(config ff_sn\) cannot be used: .*fuv"):
        load_fleurs(tmp_path, languages=["ful"], dataset=str(fleurs_root), progress=False)


def test_fleurs_missing_column(tmp_path):
    root = tmp_path / "broken"
    datasets.DatasetDict({"test": fleurs_table("en_us").remove_columns("raw_transcription")}).save_to_disk(
        str(root / "en_us"))
    with pytest.raises(CorpusError, match="en_us.*missing column.*raw_transcription"):
        load_fleurs(tmp_path / "cache", languages=["eng"], dataset=str(root), progress=False)


def test_fleurs_hub_id_uses_load_dataset(monkeypatch, tmp_path):
    calls = []

    def fake_load_dataset(name, config, split):
        calls.append((name, config, split))
        return fleurs_table(config)

    monkeypatch.setattr(fleurs_mod.datasets, "load_dataset", fake_load_dataset)
    examples = load_fleurs(tmp_path, languages=["cmn"], dataset="google/fleurs", split="test", progress=False)
    assert sorted(calls) == [("google/fleurs", "cmn_hans_cn", "test"), ("google/fleurs", "en_us", "test")]
    assert [e.id for e in examples] == ["fleurs:3:cmn", "fleurs:7:cmn"]

    def offline(name, config, split):
        raise ConnectionError("hub unreachable")

    monkeypatch.setattr(fleurs_mod.datasets, "load_dataset", offline)
    with pytest.raises(CorpusError, match="cannot open FLEURS config 'en_us'.*hub unreachable.*local folder"):
        load_fleurs(tmp_path, languages=["eng"], dataset="google/fleurs", progress=False)


# ----------------------------------------------------------------------------------------------- config + loader


def test_config_defaults_and_validation():
    config = CorpusConfig()
    assert config.source == "builtin" and config.languages == list(CORPUS_LANGUAGES) and config.voices == 0
    assert CorpusConfig(source="fleurs", languages=["ita", "eng"]).languages == ["ita", "eng"]
    assert CorpusConfig(voices="all").voices == "all"
    with pytest.raises(pydantic.ValidationError, match="unknown language.*klingon"):
        CorpusConfig(languages=["eng", "klingon"])
    with pytest.raises(pydantic.ValidationError, match="extra"):
        CorpusConfig(langauges=["eng"])
    with pytest.raises(pydantic.ValidationError, match="built-in corpus has no language"):
        CorpusConfig(languages=["ita"])
    with pytest.raises(pydantic.ValidationError, match="needs `manifest`"):
        CorpusConfig(source="manifest")
    with pytest.raises(pydantic.ValidationError, match="duplicate"):
        CorpusConfig(languages=["eng", "eng"])
    with pytest.raises(pydantic.ValidationError):
        CorpusConfig(voices=-1)
    with pytest.raises(pydantic.ValidationError):
        CorpusConfig(max_sentences=0)
    with pytest.raises(pydantic.ValidationError):
        CorpusConfig(source="youtube")
    assert CorpusConfig.model_validate_json(CorpusConfig(max_sentences=3).model_dump_json()).max_sentences == 3


def test_load_corpus_dispatches_to_each_source(tmp_path, fleurs_root):
    built = load_corpus(CorpusConfig(languages=["eng", "jpn"], sentence_ids=["s001"], workers=1),
                        cache_dir=tmp_path, progress=False)
    assert [e.id for e in built] == ["builtin:s001:eng:eng-m1", "builtin:s001:jpn:jpn-m1"]
    assert all(isinstance(e, Example) and e.audio_path.is_file() for e in built)

    manifest = write_jsonl(tmp_path / "m.jsonl", manifest_rows(tmp_path))
    rows = load_corpus(CorpusConfig(source="manifest", manifest=manifest, languages=["fra"], max_sentences=1),
                       progress=False)
    assert [e.id for e in rows] == ["b"] and rows[0].reference == "The sky is blue."
    with pytest.raises(CorpusError, match=r"no rows for requested language\(s\) \['deu'\]"):
        load_corpus(CorpusConfig(source="manifest", manifest=manifest, languages=["fra", "deu"]), progress=False)

    fleurs = load_corpus(CorpusConfig(source="fleurs", fleurs_dataset=str(fleurs_root), languages=["eng", "fra"],
                                      cache_dir=tmp_path / "fc"), progress=False)
    assert [e.id for e in fleurs] == ["fleurs:3:eng", "fleurs:3:fra", "fleurs:7:eng", "fleurs:7:fra",
                                      "fleurs:11:eng", "fleurs:11:fra"]
    assert all(str(e.audio_path).startswith(str(tmp_path / "fc")) for e in fleurs)


def test_load_corpus_rejects_empty_corpus(monkeypatch, tmp_path):
    monkeypatch.setattr(loader_mod, "load_builtin", lambda *a, **k: [])
    with pytest.raises(CorpusError, match="empty corpus"):
        load_corpus(CorpusConfig(), cache_dir=tmp_path, progress=False)
