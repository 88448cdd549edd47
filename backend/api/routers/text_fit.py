"""How far a typed text lies from what the loaded model can handle: its length in tokens against the built-in corpus
sentences the built-in models' tokenizers (and the demo model) were trained on, and its share of unknown tokens.

The lab shows the answer next to its text box, so that the demo model "translating" a 2,000-character paragraph into
one short sentence is read as what it is: an input far outside the model, not a finding.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Query

from backend.api.deps import get_state
from backend.api.errors import ApiProblem
from backend.api.routers import errors
from backend.api.state import AtlasState
from neuron_atlas.engine.model.loading import builtin_corpus_texts

router = APIRouter(tags=["interventions"])

#: Models whose tokenizer was trained on the built-in corpus, so that its sentences are what they know.
BUILTIN_MODELS = ("demo", "tiny-random")
#: Far outside: longer than this many times the longest built-in sentence, or more than this share unknown.
LENGTH_FACTOR = 3.0
UNKNOWN_SHARE = 0.2

_references: dict[str, dict[str, Any]] = {}
_lock = threading.Lock()


def _content_lengths(tokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per text: (content tokens, unknown tokens), special tokens (language tag, </s>) left out."""
    special = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    lengths = np.array([sum(1 for i in row if i not in special) for row in ids], dtype=np.int64)
    unknown = np.array([sum(1 for i in row if i == tokenizer.unk_token_id) for row in ids], dtype=np.int64)
    return lengths, unknown


def reference(checksum: str, tokenizer) -> dict[str, Any]:
    """Token lengths of the built-in corpus sentences under this model's tokenizer (computed once per model)."""
    with _lock:
        hit = _references.get(checksum)
    if hit is not None:
        return hit
    lengths, _ = _content_lengths(tokenizer, builtin_corpus_texts())
    ref = {"what": "the built-in corpus sentences (what this model's tokenizer and training data are made of)",
           "n_sentences": int(len(lengths)), "max_tokens": int(lengths.max()), "p95_tokens": int(np.percentile(lengths, 95))}
    with _lock:
        _references[checksum] = ref
    return ref


@router.get("/text-fit", responses=errors(422, 503),
            summary="How far a text lies from what the loaded model handles (length in tokens, unknown tokens)")
def text_fit(
    text: str = Query(min_length=1, max_length=100_000, description="the input text"),
    src_lang: str = Query(min_length=1, max_length=16, description="its language (Seamless code)"),
    state: AtlasState = Depends(get_state),
) -> dict[str, Any]:
    """`n_tokens` and `unknown_tokens` of the text under the loaded model's tokenizer; for the built-in models
    (`demo`, `tiny-random`) also `reference` (the built-in sentences' token lengths), `far_outside` and `reasons` in
    words; other models have no reference here and `far_outside` false."""
    bundle, _ = state.host.require()
    if src_lang not in bundle.languages:
        raise ApiProblem(422, f"src_lang: {src_lang!r} is not a language of the loaded model; it has "
                              f"{', '.join(bundle.languages)}", "src_lang")
    limit = state.settings.max_text_chars
    if len(text) > limit:
        raise ApiProblem(422, f"text: {len(text)} characters; the limit is {limit}", "text")
    lengths, unknown = _content_lengths(bundle.tokenizer, [text])
    n_tokens, n_unknown = int(lengths[0]), int(unknown[0])
    share = n_unknown / n_tokens if n_tokens else 0.0
    ref = reference(bundle.checksum, bundle.tokenizer) if bundle.spec in BUILTIN_MODELS else None
    reasons = []
    if ref is not None:
        if n_tokens > LENGTH_FACTOR * ref["max_tokens"]:
            reasons.append(f"it is {n_tokens:,} tokens long, {n_tokens / ref['max_tokens']:.0f}× the longest sentence the "
                           f"{bundle.spec} model knows ({ref['max_tokens']} tokens; 95 % are at most {ref['p95_tokens']})")
        if share > UNKNOWN_SHARE:
            reasons.append(f"{share:.0%} of its tokens ({n_unknown} of {n_tokens}) are unknown to the {bundle.spec} "
                           "model's vocabulary")
    return {"model": bundle.spec, "n_chars": len(text), "n_tokens": n_tokens, "unknown_tokens": n_unknown,
            "unknown_share": share, "reference": ref, "far_outside": bool(reasons), "reasons": reasons}
