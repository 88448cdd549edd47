"""What fires on one input: every unit pooled as the recording pools it, and the strongest units per (stack, layer).

`input_activations` records one input exactly as a `clean` (or `faithful`) run records a corpus item (greedy
generation, then the teacher-forced decoder prefix of length `step`), so its values are comparable with a run's
activation arrays; `deviation` turns them into z-scores against per-unit corpus moments, and `top_per_group` picks
the n highest scores in every layer at once (one sort, no loop over units).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neuron_atlas.engine.example import Example
from neuron_atlas.engine.model.loading import ModelBundle
from neuron_atlas.engine.model.unit_sites import SiteRegistry
from neuron_atlas.engine.record import record_batch
from neuron_atlas.engine.tasks import PIVOT, TaskItem

#: The id the recorded input carries (it is no corpus example).
INPUT_ID = "input"


@dataclass
class InputActivations:
    """Pooled activations of one input: encoder stack name and [units] values, decoder [units] at `step`, output ids."""

    encoder_stack: str
    encoder: np.ndarray
    decoder: np.ndarray
    step: int
    generated: list[int]


def statistics_task(modality: str, src_lang: str | None, tgt_lang: str) -> str:
    """The recording task an input belongs to: X->en (`s2tt`/`t2tt`) unless it is English going elsewhere (en->X)."""
    base = "s2tt" if modality == "speech" else "t2tt"
    return f"en2x_{base}" if src_lang == PIVOT and tgt_lang != PIVOT else base


def input_activations(bundle: ModelBundle, registry: SiteRegistry, *, tgt_lang: str, step: int, mode: str = "clean",
                      text: str | None = None, src_lang: str | None = None, audio: np.ndarray | None = None) -> InputActivations:
    """Record every unit of the input's encoder and of the decoder (prefix length `step`) for one text or 16 kHz audio."""
    if (text is None) == (audio is None):
        raise ValueError("give exactly one of text (with src_lang) or audio")
    if step < 1:
        raise ValueError(f"step: a decoder prefix length >= 1, got {step}")
    modality = "speech" if audio is not None else "text"
    task = statistics_task(modality, src_lang, tgt_lang)
    example = Example(INPUT_ID, INPUT_ID, src_lang or "und", text or "", None, "")
    item = TaskItem(task, 0, example, src_lang or "und", tgt_lang, src_lang or "und", "")
    rec = record_batch(bundle, registry, [item], steps=[step], mode=mode,
                       audio={INPUT_ID: np.asarray(audio, dtype=np.float32)} if audio is not None else None)
    (stack, enc), = rec.encoder.items()
    return InputActivations(stack, enc[0], rec.decoder[step][0], step, rec.generated[0])


def deviation(values: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """z-scores (values - mean) / std; NaN where the corpus spread is zero or unknown."""
    std = np.asarray(std, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (np.asarray(values, dtype=np.float64) - mean) / np.where(std > 0, std, np.nan)
    return z


def top_per_group(scores: np.ndarray, groups: np.ndarray, n: int) -> np.ndarray:
    """Indices of the `n` highest finite scores within each group, ordered by group, then score (highest first)."""
    if n < 1:
        raise ValueError(f"n: at least 1, got {n}")
    scores = np.asarray(scores, dtype=np.float64)
    keep = np.flatnonzero(np.isfinite(scores))
    order = keep[np.lexsort((-scores[keep], groups[keep]))]
    if not len(order):
        return order
    g = groups[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    return order[rank < n]
