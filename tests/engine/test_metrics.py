"""Tests for neuron_atlas.engine.metrics: language ID, sacrebleu scores, WER/CER and code-mixing closed forms."""
from __future__ import annotations

import socket
import sys
import types
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import sacrebleu

from neuron_atlas.engine import metrics
from neuron_atlas.engine.example import CORPUS_LANGUAGES
from neuron_atlas.engine.metrics import (
    FastTextIdentifier,
    LangIdIdentifier,
    LanguageIdentifier,
    MetricsError,
    asr_scores,
    bleu,
    cer,
    chrfpp,
    code_mixing,
    code_mixing_many,
    corpus_scores,
    make_identifier,
    normalize_transcript,
    script_tokens,
    sentence_scores,
    target_language_probability,
    to_seamless,
    tokenizer_for,
    wer,
)

SENTENCES = {
    "eng": "The weather is very nice today, so we are going for a walk in the park.",
    "deu": "Das Wetter ist heute sehr schön, deshalb gehen wir im Park spazieren.",
    "spa": "Hoy hace muy buen tiempo, así que vamos a dar un paseo por el parque.",
    "fra": "Il fait très beau aujourd'hui, alors nous allons nous promener dans le parc.",
    "jpn": "きょうはとてもいいてんきなので、こうえんをさんぽします。",
    "cmn": "今天天气很好，所以我们去公园散步。",
}


@pytest.fixture(scope="module")
def langid() -> LangIdIdentifier:
    return LangIdIdentifier()


# --------------------------------------------------------------------------------------------- language ID


def test_langid_identifies_each_corpus_language(langid: LangIdIdentifier) -> None:
    langs = list(SENTENCES)
    probs = langid.probabilities([SENTENCES[lang] for lang in langs])
    for lang, p in zip(langs, probs):
        assert set(p) == set(CORPUS_LANGUAGES)
        assert sum(p.values()) <= 1.0 + 1e-6
        assert max(p, key=p.get) == lang, (lang, p)
        assert p[lang] > 0.9


def test_scope_all_leaves_other_languages_and_gibberish_outside_the_candidates() -> None:
    """The reference reads fastText's posterior over all its languages: Italian is not 'mostly Spanish', and
    letters without a language are not 'mostly German', as renormalising over the six candidates would claim."""
    texts = ["Questo è un libro molto bello e lo leggo ogni sera.", "xq zzv rrk", SENTENCES["fra"]]
    closed = LangIdIdentifier(scope="candidates").probabilities(texts)
    open_ = LangIdIdentifier().probabilities(texts)
    assert LangIdIdentifier().scope == "all"
    for p in closed:
        assert sum(p.values()) == pytest.approx(1.0, abs=1e-5)
    assert max(closed[0].values()) > 0.5 and max(open_[0].values()) < 0.1
    assert sum(open_[1].values()) < sum(closed[1].values())
    assert max(open_[2], key=open_[2].get) == "fra" and open_[2]["fra"] <= closed[2]["fra"] + 1e-9
    with pytest.raises(MetricsError, match="language scope must be one of"):
        LangIdIdentifier(scope="six")


@pytest.mark.parametrize(
    "text, lang",
    [
        ("ひらがなとカタカナだけのぶんしょうです", "jpn"),
        ("コーヒーをください", "jpn"),
        ("今日は天気がいいですね", "jpn"),
        ("我们今天去公园散步", "cmn"),
        ("天气很好", "cmn"),
    ],
)
def test_kana_is_japanese_and_hanzi_is_chinese(langid: LangIdIdentifier, text: str, lang: str) -> None:
    p = langid.probabilities([text])[0]
    assert max(p, key=p.get) == lang


def test_texts_without_letters_get_zero_probabilities(langid: LangIdIdentifier) -> None:
    for p in langid.probabilities(["", "   \n", "12345 !?", "。、"]):
        assert p == dict.fromkeys(CORPUS_LANGUAGES, 0.0)


def test_candidates_restrict_and_map_codes() -> None:
    ident = LangIdIdentifier(["ita", "eng", "nld"], scope="candidates")
    assert ident.languages == ("ita", "eng", "nld")
    p_it, p_nl = ident.probabilities(["Il gatto dorme sul divano della nonna.", "De kat slaapt op de bank van oma."])
    assert set(p_it) == {"ita", "eng", "nld"}
    assert max(p_it, key=p_it.get) == "ita" and max(p_nl, key=p_nl.get) == "nld"
    assert sum(p_it.values()) == pytest.approx(1.0, abs=1e-5)
    single = LangIdIdentifier(["fra"], scope="candidates").probabilities(["The cat is sleeping."])[0]
    assert single == {"fra": pytest.approx(1.0)}
    assert LangIdIdentifier(["fra"]).probabilities(["The cat is sleeping."])[0]["fra"] < 0.1


def test_unmapped_codes_pass_through() -> None:
    assert to_seamless("it") == "ita" and to_seamless("zh") == "cmn" and to_seamless("ar") == "arb"
    assert to_seamless("la") == "la"
    p = LangIdIdentifier(["la", "eng"]).probabilities(["Gallia est omnis divisa in partes tres."])[0]
    assert max(p, key=p.get) == "la"


def test_bad_candidates() -> None:
    with pytest.raises(MetricsError, match="'xyz' is not known to py3langid"):
        LangIdIdentifier(["eng", "xyz"])
    with pytest.raises(MetricsError, match="repeat"):
        LangIdIdentifier(["eng", "eng"])
    with pytest.raises(MetricsError, match="same language"):
        LangIdIdentifier(["ita", "it"])
    with pytest.raises(MetricsError, match="at least one"):
        LangIdIdentifier([])


def test_langid_needs_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    metrics._langid_model.cache_clear()
    p = LangIdIdentifier(["eng", "deu"]).probabilities(["Guten Morgen, wie geht es dir?"])[0]
    assert max(p, key=p.get) == "deu"


def test_target_language_probability(langid: LangIdIdentifier) -> None:
    texts = [SENTENCES["fra"], SENTENCES["eng"], ""]
    got = target_language_probability(langid, texts, "fra")
    expected = [p["fra"] for p in langid.probabilities(texts)]
    assert got.dtype == np.float64 and got.shape == (3,)
    np.testing.assert_allclose(got, expected)
    assert got[0] > 0.9 and got[1] < 0.1 and got[2] == 0.0
    with pytest.raises(MetricsError, match="'fr' is not among"):
        target_language_probability(langid, texts, "fr")
    assert isinstance(langid, LanguageIdentifier)


def test_make_identifier(tmp_path: Path) -> None:
    assert isinstance(make_identifier("langid"), LangIdIdentifier)
    assert make_identifier("langid", ["eng", "fra"]).languages == ("eng", "fra")
    with pytest.raises(MetricsError, match="nope.bin: fastText language-ID model not found"):
        make_identifier(f"fasttext:{tmp_path / 'nope.bin'}")
    for spec in ("fasttext", "fasttext:", "cld3", ""):
        with pytest.raises(MetricsError, match="unknown language identifier spec"):
            make_identifier(spec)


def test_fasttext_missing_package_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "lid.176.ftz"
    model.write_bytes(b"not really a model")
    monkeypatch.setitem(sys.modules, "fasttext", None)
    with pytest.raises(ImportError, match="pip install fasttext"):
        FastTextIdentifier(model)


def test_fasttext_restricts_and_renormalises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    class FakeModel:
        def get_labels(self) -> list[str]:
            return ["__label__en", "__label__fr", "__label__it", "__label__ja"]

        def predict(self, lines: list[str], k: int) -> tuple[list[list[str]], list[np.ndarray]]:
            assert isinstance(lines, list) and k == -1
            seen.append(lines)
            labels = [["__label__en", "__label__fr", "__label__it", "__label__ja"]] * len(lines)
            return labels, [np.array([0.5, 0.3, 0.15, 0.05])] * len(lines)

    fake = types.ModuleType("fasttext")
    fake.load_model = lambda path: FakeModel()
    monkeypatch.setitem(sys.modules, "fasttext", fake)
    model = tmp_path / "lid.176.bin"
    model.write_bytes(b"x")
    ident = make_identifier(f"fasttext:{model}", ["eng", "fra"], scope="candidates")
    assert isinstance(ident, FastTextIdentifier)
    probs = ident.probabilities(["two\nlines", "  ", "one"])
    assert seen == [["two lines", "one"]]
    assert probs[0] == {"eng": pytest.approx(0.625), "fra": pytest.approx(0.375)}
    assert probs[1] == {"eng": 0.0, "fra": 0.0}
    raw = make_identifier(f"fasttext:{model}", ["eng", "fra"]).probabilities(["one"])[0]
    assert raw == {"eng": pytest.approx(0.5), "fra": pytest.approx(0.3)}
    with pytest.raises(MetricsError, match="'deu' is not known to the fastText model"):
        FastTextIdentifier(model, ["deu"])


# ------------------------------------------------------------------------------------------ BLEU / chrF++

HYPS = ["The cat sat on the mat.", "A dog barked loudly at night.", "It is raining today."]
REFS = ["The cat sat on the mat.", "The dog barked loudly during the night.", "Today it rains."]


def test_bleu_and_chrfpp_match_sacrebleu() -> None:
    assert bleu(HYPS, REFS) == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS], tokenize="13a").score)
    expected_chrf = sacrebleu.corpus_chrf(HYPS, [REFS], char_order=6, word_order=2).score
    assert chrfpp(HYPS, REFS) == pytest.approx(expected_chrf)
    assert chrfpp(HYPS, REFS) != pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS]).score)
    scores = corpus_scores(HYPS, REFS)
    assert scores["combined"] == pytest.approx(0.6 * scores["bleu"] + 0.4 * scores["chrfpp"])


def test_tokenizer_choice() -> None:
    assert tokenizer_for("cmn") == "zh" and tokenizer_for("jpn") == "char"
    assert tokenizer_for("eng") == "13a" and tokenizer_for(None) == "13a"
    hyp, ref = ["我们今天去公园散步了"], ["我们今天去公园散步"]
    zh = sacrebleu.corpus_bleu(hyp, [ref], tokenize="zh").score
    assert bleu(hyp, ref, lang="cmn") == pytest.approx(zh)
    assert zh != pytest.approx(sacrebleu.corpus_bleu(hyp, [ref], tokenize="13a").score)
    hyp, ref = ["今日はとても良い天気です"], ["今日はとてもいい天気です"]
    assert bleu(hyp, ref, lang="jpn") == pytest.approx(sacrebleu.corpus_bleu(hyp, [ref], tokenize="char").score)
    assert bleu(hyp, ref, tokenize="char", lang="eng") == pytest.approx(bleu(hyp, ref, lang="jpn"))


def test_perfect_hypothesis_scores_100() -> None:
    refs = ["The quick brown fox jumps over the lazy dog.", "Colorless green ideas sleep furiously."]
    scores = corpus_scores(refs, refs)
    assert scores == {"bleu": pytest.approx(100), "chrfpp": pytest.approx(100), "combined": pytest.approx(100)}
    for s in sentence_scores(refs, refs):
        assert s["bleu"] == pytest.approx(100) and s["chrfpp"] == pytest.approx(100)


def test_sentence_scores_match_sacrebleu() -> None:
    got = sentence_scores(HYPS, REFS)
    assert len(got) == 3
    for g, h, r in zip(got, HYPS, REFS):
        b = sacrebleu.sentence_bleu(h, [r]).score
        c = sacrebleu.sentence_chrf(h, [r], char_order=6, word_order=2).score
        assert g["bleu"] == pytest.approx(b) and g["chrfpp"] == pytest.approx(c)
        assert g["combined"] == pytest.approx(0.6 * b + 0.4 * c)


def test_translation_input_errors() -> None:
    with pytest.raises(MetricsError, match="hyps has 1 entries but refs has 2"):
        bleu(["a"], ["a", "b"])
    with pytest.raises(MetricsError, match="hyps must be a sequence of strings"):
        chrfpp("a", ["a"])  # type: ignore[arg-type]
    with pytest.raises(MetricsError, match=r"refs\[1\] must be a str"):
        sentence_scores(["a", "b"], ["a", None])  # type: ignore[list-item]
    with pytest.raises(MetricsError, match="unknown sacrebleu tokenizer 'bogus'"):
        bleu(["a"], ["a"], tokenize="bogus")
    with pytest.raises(MetricsError, match="empty"):
        bleu([], [])


# ------------------------------------------------------------------------------------------------ WER / CER


def test_wer_known_cases() -> None:
    # one substitution (sat->sit) and one deletion (the) over six reference words
    assert wer(["the cat sit on mat"], ["the cat sat on the mat"]) == pytest.approx(2 / 6)
    # hypothesis/reference order matters: two deletions over four words, not two insertions over two
    assert wer(["a b"], ["a b c d"]) == pytest.approx(0.5)
    # corpus level: (0 + 1) errors over (2 + 3) reference words
    assert wer(["hello world", "good morning all"], ["Hello, World!", "good morning, y'all"]) == pytest.approx(1 / 5)


def test_normalisation_is_applied_to_both_sides() -> None:
    assert normalize_transcript("  Hello,   WORLD! “Don’t” ") == "hello world dont"
    assert normalize_transcript("我们，走吧！「好」") == "我们 走吧 好"
    assert wer(["HELLO WORLD"], ["hello, world."]) == 0.0
    assert cer(["Ｈｅｌｌｏ"], ["hello"]) == 0.0


def test_cer_known_cases() -> None:
    assert cer(["abxd"], ["abcd"]) == pytest.approx(1 / 4)
    # "ab cd" vs "ab": three deleted characters (space, c, d) over five
    assert cer(["ab"], ["ab cd"]) == pytest.approx(3 / 5)


def test_cjk_wer_is_over_characters() -> None:
    # 今日は晴れです (7 chars) vs 今日は雨です: 晴->雨 substitution, れ deleted
    scores = asr_scores(["今日は雨です"], ["今日は晴れです。"], "jpn")
    assert scores == {"wer": pytest.approx(2 / 7), "cer": pytest.approx(2 / 7)}
    # as whitespace-free words the same pair would be one wrong word out of one
    assert wer(["今日は雨です"], ["今日は晴れです。"]) == pytest.approx(1.0)
    assert asr_scores(["我们 走吧"], ["我们，走吧！"], "cmn") == {"wer": 0.0, "cer": 0.0}
    eng = asr_scores(["the cat sit on mat"], ["the cat sat on the mat"], "eng")
    assert eng["wer"] == pytest.approx(2 / 6) and eng["cer"] == pytest.approx(5 / 22)


def test_asr_errors() -> None:
    with pytest.raises(MetricsError, match="every reference is empty"):
        wer(["a"], ["?!"])
    with pytest.raises(MetricsError, match="hyps has 2 entries but refs has 1"):
        cer(["a", "b"], ["a"])


# ------------------------------------------------------------------------------------------- code-mixing


def test_code_mixing_closed_forms() -> None:
    assert code_mixing("hello world") == {
        "m_index": 0.0, "i_index": 0.0, "latin_share": 1.0, "cjk_share": 0.0, "n_tokens": 2,
    }
    mixed = code_mixing("hello 世界")
    # tokens [hello, 世, 界]: p = (1/3, 2/3), sum p^2 = 5/9, M = (4/9) / (5/9); one switch over two gaps
    assert mixed["m_index"] == pytest.approx(0.8)
    assert mixed["i_index"] == pytest.approx(0.5)
    assert mixed["latin_share"] == pytest.approx(1 / 3) and mixed["cjk_share"] == pytest.approx(2 / 3)
    assert mixed["n_tokens"] == 3
    balanced = code_mixing("a 世 b 界")
    assert balanced["m_index"] == pytest.approx(1.0) and balanced["i_index"] == pytest.approx(1.0)
    # [東, 京, Tokyo, タ, ワ, ー]: p = (1/6, 5/6), sum p^2 = 26/36, M = 10/26; two switches over five gaps
    tokyo = code_mixing("東京 Tokyo タワー 123 !")
    assert tokyo["n_tokens"] == 6
    assert tokyo["m_index"] == pytest.approx(10 / 26) and tokyo["i_index"] == pytest.approx(2 / 5)


def test_code_mixing_degenerate() -> None:
    assert code_mixing("") == {"m_index": 0.0, "i_index": 0.0, "latin_share": 0.0, "cjk_share": 0.0, "n_tokens": 0}
    one = code_mixing("世")
    assert one["m_index"] == 0.0 and one["i_index"] == 0.0 and one["cjk_share"] == 1.0
    assert code_mixing("Привет 123 ... !")["n_tokens"] == 0


def test_script_tokens() -> None:
    assert script_tokens("Don't stop, 東京へ！ ＡＢＣ well-known・テスト") == [
        ("Don't", "latin"), ("stop", "latin"), ("東", "cjk"), ("京", "cjk"), ("へ", "cjk"),
        ("ABC", "latin"), ("well-known", "latin"), ("テ", "cjk"), ("ス", "cjk"), ("ト", "cjk"),
    ]
    assert script_tokens("Ça été déjà") == [("Ça", "latin"), ("été", "latin"), ("déjà", "latin")]


def test_code_mixing_many_matches_single() -> None:
    texts = ["hello world", "hello 世界", "", "東京 Tokyo タワー", "我们 go 公园 now"]
    many = code_mixing_many(texts)
    assert set(many) == {"m_index", "i_index", "latin_share", "cjk_share", "n_tokens"}
    for key, values in many.items():
        assert values.shape == (len(texts),)
        np.testing.assert_allclose(values, [code_mixing(t)[key] for t in texts])
    with pytest.raises(MetricsError, match=r"texts\[1\] must be a str"):
        code_mixing_many(["ok", 3])  # type: ignore[list-item]
