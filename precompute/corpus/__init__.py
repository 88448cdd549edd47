"""Parallel speech+text corpora: built-in (espeak-ng), user manifests and FLEURS."""
from precompute.corpus.example import CORPUS_LANGUAGES, CorpusError, Example

__all__ = ["CORPUS_LANGUAGES", "CorpusError", "Example"]
