"""Build a SeamlessM4T-compatible BPE tokenizer locally (no hub), with Seamless language tokens."""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import SeamlessM4TTokenizer

SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<unk>", "<s>", "</s>")


def lang_token(lang: str) -> str:
    """The tokenizer's token for a Seamless language code: `fra` -> `__fra__`."""
    return lang if lang.startswith("__") else f"__{lang}__"


def train_tokenizer(texts: Iterable[str], languages: Sequence[str], vocab_size: int = 1000) -> SeamlessM4TTokenizer:
    """Train a byte-free BPE on `texts` (Metaspace, as Seamless does) and wrap it as a `SeamlessM4TTokenizer`.

    Ids 0-3 are `<pad> <unk> <s> </s>` like the real model; language tokens follow the learned vocabulary.
    Every character seen in `texts` is in the initial alphabet, so corpus text never maps to `<unk>`.
    """
    texts = list(texts)
    alphabet = sorted({ch for t in texts for ch in t if not ch.isspace()})
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.normalizer = normalizers.NFKC()
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), initial_alphabet=alphabet, show_progress=False
    )
    bpe.train_from_iterator(texts, trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    lang_tokens = [lang_token(lang) for lang in languages]
    first = languages[0] if languages else "eng"
    return SeamlessM4TTokenizer(
        vocab=model["vocab"],
        merges=merges,
        additional_special_tokens=lang_tokens,
        src_lang=first,
        tgt_lang=first,
    )
