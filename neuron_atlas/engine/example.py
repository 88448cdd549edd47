"""The unit of a parallel corpus: one sentence in one language, with its text and (optionally) its speech."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: Seamless language codes the built-in corpus and the demo model know, in display order.
CORPUS_LANGUAGES: tuple[str, ...] = ("eng", "deu", "spa", "fra", "jpn", "cmn")


class CorpusError(ValueError):
    """A corpus entry or source is unusable; the message names the entry and the problem."""


@dataclass(frozen=True)
class Example:
    """One sentence in one language: its text, its speech (a 16 kHz mono audio file) and the English reference.

    `id` is unique within a corpus; `sentence_id` is shared by the translations of one sentence, which is
    what aligns languages (FLEURS's shared `id`, the built-in corpus's sentence number).
    """

    id: str
    sentence_id: str
    lang: str
    text: str
    audio_path: Path | None
    reference: str
    voice: str | None = None
    meta: dict = field(default_factory=dict, compare=False, hash=False)
