"""The built-in demo corpus: the parallel sentences of `sentences.py` spoken by bundled espeak-ng voices."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from neuron_atlas.engine.example import CORPUS_LANGUAGES, CorpusError, Example
from neuron_atlas.engine.sentences import SENTENCES, SENTENCES_BY_ID, Sentence
from neuron_atlas.engine.tts import VOICES, Voice, synthesize_many


def _select_sentences(max_sentences: int | None, sentence_ids: Sequence[str] | None) -> list[Sentence]:
    if sentence_ids is not None:
        unknown = [sid for sid in sentence_ids if sid not in SENTENCES_BY_ID]
        if unknown:
            raise CorpusError(f"unknown built-in sentence ids {unknown}; known ids are "
                              f"{SENTENCES[0].id}..{SENTENCES[-1].id}")
        duplicates = sorted({sid for sid in sentence_ids if list(sentence_ids).count(sid) > 1})
        if duplicates:
            raise CorpusError(f"duplicate built-in sentence ids {duplicates}")
        chosen = [SENTENCES_BY_ID[sid] for sid in sentence_ids]
    else:
        chosen = list(SENTENCES)
    if max_sentences is not None:
        if isinstance(max_sentences, bool) or not isinstance(max_sentences, int) or max_sentences < 1:
            raise CorpusError(f"max_sentences must be a positive integer, got {max_sentences!r}")
        chosen = chosen[:max_sentences]
    return chosen


def _select_voices(lang: str, voices: str | int) -> list[Voice]:
    available = VOICES[lang]
    if voices == "all":
        return list(available)
    if isinstance(voices, bool) or not isinstance(voices, int):
        raise CorpusError(f"voices must be a voice index or 'all', got {voices!r}")
    if not 0 <= voices < len(available):
        raise CorpusError(f"voice index {voices} out of range for {lang!r}: it has {len(available)} voices "
                          f"({', '.join(v.name for v in available)})")
    return [available[voices]]


def load_builtin(cache_dir: Path, languages: Sequence[str] = CORPUS_LANGUAGES, voices: str | int = 0,
                 max_sentences: int | None = None, sentence_ids: Sequence[str] | None = None, workers: int = 2,
                 progress: bool = True) -> list[Example]:
    """Synthesise (through the cache under `cache_dir`/tts) and return the built-in corpus.

    One Example per (sentence, language, voice), ordered by sentence, then language, then voice; `voices` is a
    voice index per language or "all" for every variant.
    """
    languages = list(languages)
    unknown = [lang for lang in languages if lang not in VOICES]
    if unknown:
        raise CorpusError(f"built-in corpus has no language {', '.join(map(repr, unknown))}; "
                          f"known languages: {', '.join(CORPUS_LANGUAGES)}")
    if not languages:
        raise CorpusError("built-in corpus: no languages requested")
    duplicates = sorted({lang for lang in languages if languages.count(lang) > 1})
    if duplicates:
        raise CorpusError(f"built-in corpus: duplicate languages {duplicates}")
    sentences = _select_sentences(max_sentences, sentence_ids)
    chosen_voices = {lang: _select_voices(lang, voices) for lang in languages}
    entries = [(sentence, lang, voice) for sentence in sentences for lang in languages
               for voice in chosen_voices[lang]]
    paths = synthesize_many([(sentence.speech_text(lang), voice) for sentence, lang, voice in entries],
                            Path(cache_dir).resolve() / "tts", workers=workers, progress=progress)
    return [
        Example(id=f"builtin:{sentence.id}:{lang}:{voice.name}", sentence_id=sentence.id, lang=lang,
                text=sentence.text(lang), audio_path=path, reference=sentence.text("eng"), voice=voice.name,
                meta={"source": "builtin"})
        for (sentence, lang, voice), path in zip(entries, paths)
    ]
