"""Language-evidence objective of the demo model: every source language must be signalled by decoder units that
fire, not by the silence of the others.

The decoder learns to name the language it reads at its first position (the `</s>` label, see `train.Batcher`).
A softmax over six languages can be met with five detectors and one *default* language that is simply the absence
of the other five: on the first demo model German speech was coded that way (its best unit fired LOW for German,
AP 0.97 flipped, 0.86 as the paper measures it), which the paper's AP, counting units that fire high, does not
read as selectivity. This objective adds a training-only head that must name the source language from the
decoder's feed-forward activations (after the ReLU) at the positions before the first content token, through
non-negative, bias-free weights: a language that no unit fires for gets a zero logit and cannot win, so each
language needs units of its own. Which units is left to training; the head is not part of the saved model.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import SeamlessM4Tv2Model

#: Decoder positions the head reads: `</s>` and `__tgt__`, the prefix before the first content token.
PREFIX_POSITIONS = 2


class LanguageEvidenceHead(torch.nn.Module):
    """Non-negative, bias-free readout of the source language from the decoder's post-ReLU FFN activations."""

    def __init__(self, model: SeamlessM4Tv2Model, n_languages: int):
        super().__init__()
        layers = model.text_decoder.layers
        width = sum(layer.ffn.fc1.out_features for layer in layers)
        self.raw = torch.nn.Parameter(torch.full((n_languages, width), -4.0))
        self._captured: list[torch.Tensor | None] = [None] * len(layers)
        self._handles = [layer.ffn.fc1.register_forward_hook(self._keep(i)) for i, layer in enumerate(layers)]

    def _keep(self, index: int):
        def hook(module, args, output):
            self._captured[index] = output[:, :PREFIX_POSITIONS]
        return hook

    def loss(self, languages: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the source language (index per decoder row) from the last decoder forward's prefix."""
        evidence = torch.cat([torch.relu(c.float()).mean(dim=1) for c in self._captured], dim=1)
        self._captured = [None] * len(self._captured)
        logits = evidence @ F.softplus(self.raw).T
        return F.cross_entropy(logits, languages)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
