"""GET /text-fit: a text's length in tokens and unknown tokens under the loaded model's tokenizer, and for the
built-in models whether it lies far outside the built-in sentences they know (with the reasons in words)."""
from __future__ import annotations

from neuron_atlas.engine.model.loading import builtin_corpus_texts
from tests.backend.api_support import assert_error, client_for, make_settings


def test_a_corpus_sentence_fits_and_a_long_or_foreign_text_does_not(tiny_bundle, tmp_path):
    with client_for(make_settings(tmp_path / "no-store.duckdb", tmp_path), tiny_bundle) as c:
        sentence = builtin_corpus_texts()[0]
        ok = c.get("/text-fit", params={"text": sentence, "src_lang": "eng"}).json()
        assert ok["model"] == "tiny-random" and ok["far_outside"] is False and ok["reasons"] == []
        assert 0 < ok["n_tokens"] <= ok["reference"]["max_tokens"] and ok["n_chars"] == len(sentence)
        long = c.get("/text-fit", params={"text": (sentence + " ") * 40, "src_lang": "eng"}).json()
        assert long["far_outside"] is True and "longest sentence" in long["reasons"][0]
        assert long["n_tokens"] > 3 * long["reference"]["max_tokens"]
        foreign = c.get("/text-fit", params={"text": "이것은 한국어 문장입니다 정말로", "src_lang": "eng"}).json()
        assert foreign["unknown_tokens"] > 0 and foreign["far_outside"] is True
        assert any("unknown" in r for r in foreign["reasons"])
        assert_error(c.get("/text-fit", params={"text": "x", "src_lang": "kor"}), 422, "src_lang")
        assert_error(c.get("/text-fit", params={"text": "x" * 2001, "src_lang": "eng"}), 422, "limit is 2000")
