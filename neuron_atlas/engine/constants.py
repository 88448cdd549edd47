"""Names and numbers every layer shares (store, API, specs, dashboard): one definition each.

The dashboard keeps its own copies (it imports nothing of the engine); `tests/app/test_constants.py` checks them
against the backend's `/capabilities`, which reports these values.
"""
from __future__ import annotations

#: Stacks in the order the model runs them.
STACKS: tuple[str, ...] = ("speech_encoder", "text_encoder", "text_decoder")
#: Components of a unit site (docs/store.md, table `sites`).
COMPONENTS: tuple[str, ...] = ("self-attn", "cross-attn", "ffn", "conv", "norm", "adapter")
#: Sample rate of every waveform the engine reads, synthesises or feeds the model (SeamlessM4T v2 expects 16 kHz).
SAMPLE_RATE = 16_000
#: Per-unit statistics of a concept that an intervention can write (the paper's median replacement is `on_p50`).
STATISTICS: tuple[str, ...] = ("on_p50", "on_p90", "off_mean", "off_p50")
#: Unit-set kinds of a concept: top-k, bottom-k, both (2k) by AP, or a seeded random k (control).
SET_KINDS: tuple[str, ...] = ("top", "bottom", "both", "random")
#: Decoder positions read by decoding step 0 of `generate`: `</s>` and the forced target-language token. A recorded
#: `step` (decoder prefix length) of 2 therefore means "before content token 1".
DECODER_PROMPT_LENGTH = 2
#: Decoder prefix lengths recorded by default (the paper's steps).
DEFAULT_STEPS: tuple[int, ...] = (2, 7, 12)
#: Recording modes stored with a run.
MODES: tuple[str, ...] = ("clean", "faithful")
