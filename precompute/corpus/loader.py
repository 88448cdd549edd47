"""One entry point that turns a CorpusConfig into Examples, whatever the source."""
from __future__ import annotations

from pathlib import Path

from precompute.corpus.builtin import load_builtin
from precompute.corpus.config import KNOWN_LANGUAGES, CorpusConfig, default_cache_dir
from neuron_atlas.engine.example import CorpusError, Example
from precompute.corpus.fleurs import load_fleurs
from precompute.corpus.manifest import load_manifest


def _from_manifest(config: CorpusConfig) -> list[Example]:
    examples = load_manifest(config.manifest, KNOWN_LANGUAGES)
    wanted = set(config.languages)
    present = {example.lang for example in examples}
    absent = [lang for lang in config.languages if lang not in present]
    if absent:
        raise CorpusError(f"{config.manifest}: no rows for requested language(s) {absent} (manifest has "
                          f"{sorted(present)}; set `languages` to choose among them)")
    examples = [example for example in examples if example.lang in wanted]
    if config.max_sentences is not None:
        keep = list(dict.fromkeys(example.sentence_id for example in examples))[:config.max_sentences]
        examples = [example for example in examples if example.sentence_id in set(keep)]
    return examples


def load_corpus(config: CorpusConfig, cache_dir: Path | None = None, progress: bool = True) -> list[Example]:
    """Build the corpus `config` describes; `cache_dir` overrides `config.cache_dir` (default: default_cache_dir())."""
    cache = Path(cache_dir or config.cache_dir or default_cache_dir())
    if config.source == "builtin":
        examples = load_builtin(cache, languages=config.languages, voices=config.voices,
                                max_sentences=config.max_sentences, sentence_ids=config.sentence_ids,
                                workers=config.workers, progress=progress)
    elif config.source == "manifest":
        examples = _from_manifest(config)
    else:
        examples = load_fleurs(cache, languages=config.languages, dataset=config.fleurs_dataset,
                               split=config.fleurs_split, max_sentences=config.max_sentences, progress=progress,
                               text_column=config.fleurs_text)
    if not examples:
        raise CorpusError(f"empty corpus: source {config.source!r} with languages {config.languages} "
                          "produced no examples")
    return examples
