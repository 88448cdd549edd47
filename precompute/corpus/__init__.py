"""Parallel speech+text corpora: built-in (espeak-ng), user manifests and FLEURS.

`CorpusConfig` and `load_corpus` are imported on first use, so importing `Example` stays cheap (the loaders pull
in torch, datasets and the speech engine).
"""
from typing import Any

from neuron_atlas.engine.example import CORPUS_LANGUAGES, CorpusError, Example

__all__ = ["CORPUS_LANGUAGES", "CorpusConfig", "CorpusError", "Example", "load_corpus"]


def __getattr__(name: str) -> Any:
    """Resolve the heavy exports lazily (PEP 562)."""
    if name == "CorpusConfig":
        from precompute.corpus.config import CorpusConfig
        return CorpusConfig
    if name == "load_corpus":
        from precompute.corpus.loader import load_corpus
        return load_corpus
    raise AttributeError(f"module 'precompute.corpus' has no attribute {name!r}")
