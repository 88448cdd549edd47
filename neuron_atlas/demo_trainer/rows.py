"""Decoder rows of a training batch: `[</s>, __lang__, tokens...]` inputs and their labels, padded to one width."""
from __future__ import annotations

import torch

#: Label of positions that take no loss.
IGNORE = -100


def pad_decoder_rows(seqs: list[list[int]], first_labels: list[int], eos: int,
                     pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """seqs: `[__lang__, tokens...]` per row -> (inputs `[</s>, *seq]`, attention mask, labels `[first, tokens...,
    </s>]`), padded; `first_labels` is each row's label of the `</s>` position (IGNORE for none)."""
    width = max(len(s) for s in seqs) + 1
    dec = torch.full((len(seqs), width), pad, dtype=torch.long)
    lab = torch.full((len(seqs), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (s, first) in enumerate(zip(seqs, first_labels)):
        dec[i, : len(s) + 1] = torch.tensor([eos] + s)
        lab[i, : len(s) + 1] = torch.tensor([first] + s[1:] + [eos])
        mask[i, : len(s) + 1] = 1
    return dec, mask, lab
