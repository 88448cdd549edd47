"""Evaluation metrics for interventions and transcription, all computed offline from libraries.

Output-language probability (py3langid by default, fastText lid.176 pluggable), BLEU and chrF++ (sacrebleu),
WER/CER (jiwer) and Latin/CJK code-mixing indices (M-index, I-index) of steered outputs.
"""
from __future__ import annotations

import copy
import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Protocol, runtime_checkable

import jiwer
import numpy as np
from sacrebleu.metrics import BLEU, CHRF

from neuron_atlas.engine.example import CORPUS_LANGUAGES


class MetricsError(ValueError):
    """A metric was given unusable input; the message names the argument or entry."""


# ---------------------------------------------------------------------------------------------------------------
# Language identification
# ---------------------------------------------------------------------------------------------------------------

#: ISO 639-1 codes (as py3langid and fastText emit them) -> SeamlessM4T v2 three-letter codes.
ISO1_TO_SEAMLESS: dict[str, str] = {
    "af": "afr", "am": "amh", "ar": "arb", "as": "asm", "az": "azj", "be": "bel", "bg": "bul", "bn": "ben",
    "bs": "bos", "ca": "cat", "cs": "ces", "cy": "cym", "da": "dan", "de": "deu", "el": "ell", "en": "eng",
    "es": "spa", "et": "est", "eu": "eus", "fa": "pes", "fi": "fin", "fr": "fra", "ga": "gle", "gl": "glg",
    "gu": "guj", "he": "heb", "hi": "hin", "hr": "hrv", "hu": "hun", "hy": "hye", "id": "ind", "ig": "ibo",
    "is": "isl", "it": "ita", "ja": "jpn", "jv": "jav", "ka": "kat", "kk": "kaz", "km": "khm", "kn": "kan",
    "ko": "kor", "ky": "kir", "lg": "lug", "lo": "lao", "lt": "lit", "lv": "lvs", "mk": "mkd", "ml": "mal",
    "mn": "khk", "mr": "mar", "ms": "zsm", "mt": "mlt", "my": "mya", "ne": "npi", "nl": "nld", "nn": "nno",
    "no": "nob", "om": "gaz", "or": "ory", "pa": "pan", "pl": "pol", "ps": "pbt", "pt": "por", "ro": "ron",
    "ru": "rus", "sk": "slk", "sl": "slv", "sn": "sna", "so": "som", "sr": "srp", "sv": "swe", "sw": "swh",
    "ta": "tam", "te": "tel", "tg": "tgk", "th": "tha", "tl": "tgl", "tr": "tur", "uk": "ukr", "ur": "urd",
    "uz": "uzn", "vi": "vie", "yo": "yor", "zh": "cmn", "zu": "zul",
}
SEAMLESS_TO_ISO1: dict[str, str] = {v: k for k, v in ISO1_TO_SEAMLESS.items()}


def to_seamless(code: str) -> str:
    """Seamless code for an identifier's language code; codes without a mapping are returned unchanged."""
    return ISO1_TO_SEAMLESS.get(code, code)


@runtime_checkable
class LanguageIdentifier(Protocol):
    """Anything that gives, per text, a probability for each of its candidate languages (Seamless codes)."""

    def probabilities(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """One dict per text, keyed by Seamless code: each candidate's probability (summing to at most 1, exactly 1
        when the scope is `candidates`; all zeros for a text without letters)."""
        ...


#: How an identifier's posterior is read: `all`, the posterior over every language the identifier knows, read off at
#: the candidates (the reference's fastText reading: output in another language, or gibberish, keeps its mass
#: outside the candidates); `candidates`, renormalised over the candidates only (a closed-set "which of these").
LANGUAGE_SCOPES = ("all", "candidates")


def _check_scope(scope: str) -> str:
    if scope not in LANGUAGE_SCOPES:
        raise MetricsError(f"language scope must be one of {LANGUAGE_SCOPES}, got {scope!r}")
    return scope


def _check_texts(texts: Sequence[str], name: str) -> list[str]:
    if isinstance(texts, (str, bytes)):
        raise MetricsError(f"{name} must be a sequence of strings, got a single {type(texts).__name__}")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise MetricsError(f"{name}[{i}] must be a str, got {type(t).__name__}")
    return out


def _check_candidates(candidates: Sequence[str] | None) -> tuple[str, ...]:
    langs = tuple(CORPUS_LANGUAGES if candidates is None else _check_texts(candidates, "candidates"))
    if not langs:
        raise MetricsError("candidates must name at least one language")
    dupes = sorted({c for c in langs if langs.count(c) > 1})
    if dupes:
        raise MetricsError(f"candidates repeat {dupes}")
    return langs


def _has_letters(text: str) -> bool:
    return any(ch.isalpha() for ch in text)


def _native_codes(languages: tuple[str, ...], known: set[str], owner: str) -> dict[str, str]:
    """Map each candidate (Seamless code) to the identifier's own code, refusing unknown or colliding ones."""
    native: dict[str, str] = {}
    for lang in languages:
        code = SEAMLESS_TO_ISO1.get(lang, lang)
        if code not in known:
            raise MetricsError(f"candidate language {lang!r} is not known to {owner}")
        if code in native:
            raise MetricsError(f"candidates {native[code]!r} and {lang!r} are the same language for {owner}")
        native[code] = lang
    return native


def _restrict(scores: dict[str, float], native: dict[str, str], languages: tuple[str, ...], scope: str) -> dict[str, float]:
    """Posterior of the candidate languages (native code -> Seamless code); renormalised only for scope `candidates`."""
    picked = {native[code]: float(p) for code, p in scores.items() if code in native}
    total = sum(picked.values()) if scope == "candidates" else 1.0
    if total <= 0.0:
        return dict.fromkeys(languages, 0.0)
    return {lang: picked.get(lang, 0.0) / total for lang in languages}


@lru_cache(maxsize=1)
def _langid_model():
    """py3langid's bundled model (ships inside the wheel; nothing is downloaded), loaded once per process."""
    from py3langid.langid import MODEL_FILE
    from py3langid.langid import LanguageIdentifier as _PyLangId

    return _PyLangId.from_model_file(MODEL_FILE, norm_probs=True)


class LangIdIdentifier:
    """Language identifier backed by py3langid, reporting candidate languages (default: the corpus six).

    Probabilities are py3langid's normalised posterior over its 97 languages read off at the candidates (scope `all`),
    or over the candidates alone (scope `candidates`). A text with no letters at all (empty, whitespace, digits or
    punctuation only) carries no language evidence and gets all-zero probabilities.
    """

    def __init__(self, candidates: Sequence[str] | None = None, scope: str = "all") -> None:
        self.languages = _check_candidates(candidates)
        self.scope = _check_scope(scope)
        base = _langid_model()
        self._native = _native_codes(self.languages, set(base.labels), "py3langid")
        self._model = base
        if scope == "candidates":
            self._model = copy.copy(base)
            self._model.set_languages(list(self._native))

    def probabilities(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """Per text, the probability of each candidate language (zeros for texts without letters)."""
        out = []
        for text in _check_texts(texts, "texts"):
            if not _has_letters(text):
                out.append(dict.fromkeys(self.languages, 0.0))
                continue
            out.append(_restrict(dict(self._model.rank(text)), self._native, self.languages, self.scope))
        return out


class FastTextIdentifier:
    """Language identifier backed by a local fastText lid.176.bin/.ftz model (needs the `fasttext` package).

    fastText's softmax over its 176 languages, read off at the candidates (default: the corpus six), or renormalised
    over them with scope `candidates`; texts without letters get all-zero probabilities, as with `LangIdIdentifier`.
    """

    def __init__(self, model_path: Path, candidates: Sequence[str] | None = None, scope: str = "all") -> None:
        self.languages = _check_candidates(candidates)
        self.scope = _check_scope(scope)
        path = Path(model_path)
        if not path.is_file():
            raise MetricsError(
                f"{path}: fastText language-ID model not found (lid.176.bin or lid.176.ftz from "
                "https://fasttext.cc/docs/en/language-identification.html)"
            )
        try:
            import fasttext
        except ImportError as exc:
            raise ImportError(
                "FastTextIdentifier needs the 'fasttext' package: pip install fasttext-wheel (prebuilt) or fasttext"
            ) from exc
        self._model = fasttext.load_model(str(path))
        known = {label.removeprefix("__label__") for label in self._model.get_labels()}
        self._native = _native_codes(self.languages, known, f"the fastText model {path}")

    def probabilities(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """Per text, the probability of each candidate language (zeros for texts without letters)."""
        lines = [" ".join(t.split()) for t in _check_texts(texts, "texts")]
        out = [dict.fromkeys(self.languages, 0.0) for _ in lines]
        idx = [i for i, line in enumerate(lines) if _has_letters(line)]
        if not idx:
            return out
        # list input goes through fastText's multilinePredict, which avoids its numpy-2-incompatible single path
        labels, probs = self._model.predict([lines[i] for i in idx], k=-1)
        for i, lab, pr in zip(idx, labels, probs):
            scores = {label.removeprefix("__label__"): float(p) for label, p in zip(lab, pr)}
            out[i] = _restrict(scores, self._native, self.languages, self.scope)
        return out


def make_identifier(spec: str, candidates: Sequence[str] | None = None, scope: str = "all") -> LanguageIdentifier:
    """Build an identifier from a spec: "langid" or "fasttext:/path/to/lid.176.bin" (scope: see `LANGUAGE_SCOPES`)."""
    if not isinstance(spec, str):
        raise MetricsError(f"identifier spec must be a str, got {type(spec).__name__}")
    if spec == "langid":
        return LangIdIdentifier(candidates, scope)
    if spec.startswith("fasttext:") and spec.removeprefix("fasttext:"):
        return FastTextIdentifier(Path(spec.removeprefix("fasttext:")).expanduser(), candidates, scope)
    raise MetricsError(f"unknown language identifier spec {spec!r}; use 'langid' or 'fasttext:/path/to/lid.176.bin'")


def target_language_probability(identifier: LanguageIdentifier, texts: Sequence[str], target: str) -> np.ndarray:
    """Probability that each text is in `target` (Seamless code), as a float64 array aligned with `texts`."""
    texts = _check_texts(texts, "texts")
    probs = identifier.probabilities(texts)
    if texts and all(target not in p for p in probs):
        raise MetricsError(f"target language {target!r} is not among the identifier's languages")
    return np.array([p.get(target, 0.0) for p in probs], dtype=np.float64)


# ---------------------------------------------------------------------------------------------------------------
# Translation quality (sacrebleu)
# ---------------------------------------------------------------------------------------------------------------

#: chrF++ as defined by Popović (2017) and sacrebleu: character n-grams up to 6 plus word n-grams up to 2.
CHRF_CHAR_ORDER = 6
CHRF_WORD_ORDER = 2
#: Weights of the combined translation score 0.6 * BLEU + 0.4 * chrF++ (both on sacrebleu's 0-100 scale).
BLEU_WEIGHT = 0.6
CHRF_WEIGHT = 0.4

_CHINESE = frozenset({"cmn", "cmn_Hant", "yue", "zho", "zh"})
_JAPANESE = frozenset({"jpn", "ja"})


def tokenizer_for(lang: str | None) -> str:
    """sacrebleu tokenizer for a target language: 'zh' for Chinese, 'char' for Japanese, otherwise '13a'."""
    if lang in _CHINESE:
        return "zh"
    if lang in _JAPANESE:
        return "char"
    return "13a"


def _check_pairs(hyps: Sequence[str], refs: Sequence[str]) -> tuple[list[str], list[str]]:
    h, r = _check_texts(hyps, "hyps"), _check_texts(refs, "refs")
    if len(h) != len(r):
        raise MetricsError(f"hyps has {len(h)} entries but refs has {len(r)}")
    if not h:
        raise MetricsError("hyps and refs are empty")
    return h, r


def _bleu_metric(tokenize: str | None, lang: str | None, sentence: bool) -> BLEU:
    tok = tokenize if tokenize is not None else tokenizer_for(lang)
    try:
        return BLEU(tokenize=tok, effective_order=sentence)
    except KeyError as exc:
        raise MetricsError(f"unknown sacrebleu tokenizer {tok!r}") from exc


def _chrf_metric() -> CHRF:
    return CHRF(char_order=CHRF_CHAR_ORDER, word_order=CHRF_WORD_ORDER)


def combine(bleu_score: float, chrfpp_score: float) -> float:
    """The combined translation score 0.6 * BLEU + 0.4 * chrF++."""
    return BLEU_WEIGHT * bleu_score + CHRF_WEIGHT * chrfpp_score


def bleu(hyps: Sequence[str], refs: Sequence[str], tokenize: str | None = None, *, lang: str | None = None) -> float:
    """Corpus BLEU (sacrebleu defaults; tokenizer `tokenize`, else `tokenizer_for(lang)`), one reference each."""
    h, r = _check_pairs(hyps, refs)
    return float(_bleu_metric(tokenize, lang, sentence=False).corpus_score(h, [r]).score)


def chrfpp(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Corpus chrF++ (sacrebleu CHRF with char_order=6, word_order=2), one reference per hypothesis."""
    h, r = _check_pairs(hyps, refs)
    return float(_chrf_metric().corpus_score(h, [r]).score)


def corpus_scores(
    hyps: Sequence[str], refs: Sequence[str], tokenize: str | None = None, *, lang: str | None = None
) -> dict[str, float]:
    """Corpus-level {bleu, chrfpp, combined} for one system output against one reference per sentence."""
    b = bleu(hyps, refs, tokenize, lang=lang)
    c = chrfpp(hyps, refs)
    return {"bleu": b, "chrfpp": c, "combined": combine(b, c)}


def sentence_scores(
    hyps: Sequence[str], refs: Sequence[str], tokenize: str | None = None, *, lang: str | None = None
) -> list[dict[str, float]]:
    """Per-sentence {bleu, chrfpp, combined}; sentence BLEU uses effective order, as sacrebleu.sentence_bleu."""
    h, r = _check_pairs(hyps, refs)
    bleu_metric, chrf_metric = _bleu_metric(tokenize, lang, sentence=True), _chrf_metric()
    out = []
    for hyp, ref in zip(h, r):
        b = float(bleu_metric.sentence_score(hyp, [ref]).score)
        c = float(chrf_metric.sentence_score(hyp, [ref]).score)
        out.append({"bleu": b, "chrfpp": c, "combined": combine(b, c)})
    return out


# ---------------------------------------------------------------------------------------------------------------
# ASR (jiwer)
# ---------------------------------------------------------------------------------------------------------------

#: Languages written without word spaces: their WER is computed over characters.
CHARACTER_LANGUAGES = frozenset({"jpn", "cmn", "cmn_Hant", "yue"})

_APOSTROPHES = str.maketrans("", "", "'\u2019\u02bc")


def normalize_transcript(text: str) -> str:
    """Light ASR normalisation: NFKC, lowercase, drop apostrophes, other punctuation (incl. CJK) to spaces, collapse."""
    text = unicodedata.normalize("NFKC", text).lower().translate(_APOSTROPHES)
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)
    return " ".join(text.split())


def _asr_inputs(hyps: Sequence[str], refs: Sequence[str], lang: str | None, unit: str) -> tuple[list[str], list[str]]:
    h, r = _check_pairs(hyps, refs)
    h, r = [normalize_transcript(t) for t in h], [normalize_transcript(t) for t in r]
    if not any(r):
        raise MetricsError("every reference is empty after normalisation; WER/CER are undefined")
    if lang in CHARACTER_LANGUAGES:
        h, r = ["".join(t.split()) for t in h], ["".join(t.split()) for t in r]
        if unit == "word":
            h, r = [" ".join(t) for t in h], [" ".join(t) for t in r]
    return h, r


def wer(hyps: Sequence[str], refs: Sequence[str], lang: str | None = None) -> float:
    """Corpus word error rate after `normalize_transcript`; over characters for jpn/cmn (no word spaces)."""
    h, r = _asr_inputs(hyps, refs, lang, "word")
    return float(jiwer.wer(reference=r, hypothesis=h))


def cer(hyps: Sequence[str], refs: Sequence[str], lang: str | None = None) -> float:
    """Corpus character error rate after `normalize_transcript` (spaces ignored for jpn/cmn)."""
    h, r = _asr_inputs(hyps, refs, lang, "char")
    return float(jiwer.cer(reference=r, hypothesis=h))


def asr_scores(hyps: Sequence[str], refs: Sequence[str], lang: str) -> dict[str, float]:
    """{wer, cer} of transcripts `hyps` against `refs` in language `lang` (Seamless code)."""
    return {"wer": wer(hyps, refs, lang), "cer": cer(hyps, refs, lang)}


# ---------------------------------------------------------------------------------------------------------------
# Code-mixing (Latin vs CJK)
# ---------------------------------------------------------------------------------------------------------------

_LATIN = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff"
_CJK = (
    "\u3005\u3007\u3021-\u3029\u3038-\u303b"  # iteration mark, ideographic zero, Hangzhou numerals
    "\u3041-\u3096\u309d-\u309f"  # hiragana
    "\u30a1-\u30fa\u30fc-\u30ff\u31f0-\u31ff"  # katakana (without the middle dot), phonetic extensions
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"  # Han
)
_SCRIPT_TOKEN = re.compile(f"(?P<latin>[{_LATIN}]+(?:['\u2019\\-][{_LATIN}]+)*)|(?P<cjk>[{_CJK}])")


def script_tokens(text: str) -> list[tuple[str, str]]:
    """(token, script) pairs: Latin words, and each Han/Hiragana/Katakana character on its own (NFKC first).

    Digits, punctuation and other scripts are ignored.
    """
    if not isinstance(text, str):
        raise MetricsError(f"text must be a str, got {type(text).__name__}")
    return [(m.group(), m.lastgroup) for m in _SCRIPT_TOKEN.finditer(unicodedata.normalize("NFKC", text))]


def code_mixing_many(texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Latin/CJK code-mixing indices for many texts, as arrays aligned with `texts`.

    M-index (Barnett et al. 2000, "The LIDES Coding Manual", Int. J. Bilingualism 4(2)):
    (1 - sum_j p_j^2) / ((k - 1) * sum_j p_j^2) with k = 2 scripts and p_j the share of tokens in script j;
    0 for a monolingual text, 1 for a perfectly balanced one. I-index (Guzmán et al. 2017, "Metrics for
    modeling code-switching across corpora", Interspeech): script switch points between adjacent tokens
    / (n_tokens - 1), 0 below two tokens. Texts without tokens get 0 for every index and share.
    """
    texts = _check_texts(texts, "texts")
    n_latin = np.zeros(len(texts), dtype=np.int64)
    n_cjk = np.zeros(len(texts), dtype=np.int64)
    switches = np.zeros(len(texts), dtype=np.int64)
    for i, text in enumerate(texts):
        is_cjk = np.array([script == "cjk" for _, script in script_tokens(text)], dtype=bool)
        n_cjk[i] = is_cjk.sum()
        n_latin[i] = is_cjk.size - n_cjk[i]
        switches[i] = np.count_nonzero(is_cjk[1:] != is_cjk[:-1])
    n = n_latin + n_cjk
    k = 2
    safe_n = np.maximum(n, 1)
    latin_share, cjk_share = n_latin / safe_n, n_cjk / safe_n
    sum_sq = latin_share**2 + cjk_share**2
    m_index = np.where(n > 0, (1.0 - sum_sq) / ((k - 1) * np.where(n > 0, sum_sq, 1.0)), 0.0)
    i_index = np.where(n >= 2, switches / np.maximum(n - 1, 1), 0.0)
    return {
        "m_index": m_index,
        "i_index": i_index,
        "latin_share": latin_share,
        "cjk_share": cjk_share,
        "n_tokens": n,
    }


def code_mixing(text: str) -> dict[str, float]:
    """Latin/CJK code-mixing of one text: {m_index, i_index, latin_share, cjk_share, n_tokens}; see code_mixing_many."""
    if not isinstance(text, str):
        raise MetricsError(f"text must be a str, got {type(text).__name__}")
    many = code_mixing_many([text])
    out = {key: float(values[0]) for key, values in many.items()}
    out["n_tokens"] = int(many["n_tokens"][0])
    return out
