"""Typed configuration of which corpus to load (built-in, manifest or FLEURS), validated up front."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from neuron_atlas.engine.example import CORPUS_LANGUAGES
from precompute.corpus.fleurs import FLEURS_CONFIGS, NOT_SEAMLESS_TEXT, SEAMLESS_FLEURS_LANGUAGES

#: Every language code a corpus may use: the built-in six plus every FLEURS language SeamlessM4T v2 reads as text.
KNOWN_LANGUAGES: frozenset[str] = frozenset(CORPUS_LANGUAGES) | frozenset(SEAMLESS_FLEURS_LANGUAGES)


def default_cache_dir() -> Path:
    """`$NEURON_ATLAS_CACHE/corpus`, else `~/.cache/neuron-atlas/corpus`: synthesised and converted audio."""
    root = os.environ.get("NEURON_ATLAS_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "neuron-atlas") / "corpus"


class CorpusConfig(BaseModel):
    """Which corpus to build: its source, languages, size, voices and where audio is cached."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["builtin", "manifest", "fleurs"] = "builtin"
    languages: list[str] = Field(default_factory=lambda: list(CORPUS_LANGUAGES))
    max_sentences: int | None = Field(default=None, ge=1)
    voices: int | Literal["all"] = 0
    sentence_ids: list[str] | None = None
    cache_dir: Path | None = None
    manifest: Path | None = None
    fleurs_dataset: str = "google/fleurs"
    fleurs_split: str = "test"
    fleurs_text: Literal["raw_transcription", "transcription"] = Field(
        "raw_transcription", description="FLEURS text column: raw_transcription (cased, punctuated) or transcription "
                                         "(FLEURS's normalised lowercase text)")
    workers: int = Field(default=2, ge=1)

    @field_validator("languages")
    @classmethod
    def _known_languages(cls, languages: list[str]) -> list[str]:
        if not languages:
            raise ValueError("languages must not be empty")
        refused = [lang for lang in languages if lang in NOT_SEAMLESS_TEXT]
        if refused:
            config = {lang: c for c, lang in FLEURS_CONFIGS.items()}
            raise ValueError("; ".join(f"language {lang!r} (FLEURS {config[lang]}): {NOT_SEAMLESS_TEXT[lang]}"
                                       for lang in refused))
        unknown = [lang for lang in languages if lang not in KNOWN_LANGUAGES]
        if unknown:
            raise ValueError(f"unknown language(s) {unknown}; known: {sorted(KNOWN_LANGUAGES)}")
        duplicates = sorted({lang for lang in languages if languages.count(lang) > 1})
        if duplicates:
            raise ValueError(f"duplicate language(s) {duplicates}")
        return languages

    @field_validator("voices")
    @classmethod
    def _voice_index(cls, voices: int | str) -> int | str:
        if isinstance(voices, int) and voices < 0:
            raise ValueError(f"voice index must be >= 0, got {voices}")
        return voices

    @model_validator(mode="after")
    def _source_fields(self) -> CorpusConfig:
        if self.source == "builtin":
            outside = [lang for lang in self.languages if lang not in CORPUS_LANGUAGES]
            if outside:
                raise ValueError(f"the built-in corpus has no language(s) {outside}; it has {list(CORPUS_LANGUAGES)}")
        if self.source == "manifest" and self.manifest is None:
            raise ValueError("source 'manifest' needs `manifest` (path to a .jsonl or .csv file)")
        if self.source != "manifest" and self.manifest is not None:
            raise ValueError(f"`manifest` is only used with source 'manifest', not {self.source!r}")
        if self.source != "builtin" and self.sentence_ids is not None:
            raise ValueError(f"`sentence_ids` is only used with source 'builtin', not {self.source!r}")
        return self
