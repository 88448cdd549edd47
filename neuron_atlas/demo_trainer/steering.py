"""Steerability objective of the demo model: teach the decoder to follow median replacement of its own most
target-language-selective units, as the paper's steering experiment does on SeamlessM4T v2.

A small decoder trained only on translation reads the target language from the `__tgt__` token through many
redundant paths, so forcing a few hundred units to another language's median changes nothing (measured on the
first demo model: +0.05 probability over random units). The paper's effect exists in the full-size model; to make
the demo model a faithful *teaching* model of it, each training step repeats the experiment on a small batch and
trains on its outcome:

1. record every decoder-position unit, pooled over the prefix `</s> __tgt__` (the analysis run's step 2), for a
   few English sentences translated towards every other language (no gradient);
2. for one language M, rank units by how well they separate M from the other targets (mean rank of M's rows, a
   vectorised AUC), take the top k and bottom k, and their medians over M's rows;
3. decode those sentences towards the other targets L with those units forced to M's medians at every position,
   and train on M's translation; decode them again with as many *random* units forced, and train on L's own
   translation, so only selective units steer and random ones do not disturb.

Which units are selected is not fixed: it is re-measured from the model every step, so the objective shapes where
the model keeps the target language rather than planting given channels. The objective exists only in training.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import SeamlessM4Tv2Model

from neuron_atlas.engine.model.unit_sites import SiteRegistry
from neuron_atlas.demo_trainer.rows import IGNORE, pad_decoder_rows


@dataclass(frozen=True)
class SteeringConfig:
    """How many sentences each step repeats the experiment on, and the set sizes k it draws from."""

    sentences: int = 6
    ks: tuple[int, ...] = (100, 250, 500)


class _SiteHooks:
    """Forward hooks on the decoder's decoder-position unit sites: capture prefix-pooled outputs, or force channels."""

    def __init__(self, model: SeamlessM4Tv2Model):
        registry = SiteRegistry.from_model(model)
        modules = dict(model.named_modules())
        self.sites = [s for s in registry.stack_sites("text_decoder") if s.domain == "decoder"]
        self.bounds: list[tuple[int, int]] = []
        start = 0
        for site in self.sites:
            self.bounds.append((start, start + site.width))
            start += site.width
        self.n_units = start
        self.mode: str | None = None
        self.captured: dict[int, torch.Tensor] = {}
        self.mask: torch.Tensor | None = None
        self.fill: torch.Tensor | None = None
        self._handles = [modules[s.module].register_forward_hook(self._hook(i)) for i, s in enumerate(self.sites)]

    def _hook(self, index: int):
        lo, hi = self.bounds[index]

        def hook(module, args, output):
            if self.mode == "capture":
                self.captured[index] = output.float().mean(dim=1)
            elif self.mode == "force":
                mask = self.mask[:, None, lo:hi]
                return torch.where(mask, self.fill[None, None, lo:hi].to(output.dtype), output)
            return None

        return hook

    def capture(self) -> torch.Tensor:
        """Concatenated [rows, units] of the last captured forward, in registry order (the order `bounds` and forcing
        use; modules are called in another order: pre-norms before their sub-layer, q before k and v)."""
        out = torch.cat([self.captured[i] for i in range(len(self.sites))], dim=1)
        self.captured = {}
        return out

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def selective_units(pooled: torch.Tensor, positive: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k units whose values rank `positive` rows highest and the k that rank them lowest (AUC by
    mean rank, all units at once)."""
    ranks = pooled.argsort(dim=0).argsort(dim=0).float()
    score = ranks[positive].mean(dim=0)
    order = score.argsort(descending=True)
    return torch.cat([order[:k], order[-k:]])


class SteeringObjective:
    """The per-step steering experiment and its loss (see the module docstring)."""

    def __init__(self, model: SeamlessM4Tv2Model, batcher, cfg: SteeringConfig, seed: int):
        self.model, self.batcher, self.cfg = model, batcher, cfg
        self.hooks = _SiteHooks(model)
        self.rng = random.Random(f"steering-{seed}")
        self.targets = list(batcher.others)

    def _rows(self, sids: list[str], token_langs: list[str], content_langs: list[str]):
        """Decoder rows `</s> __token_lang__ content...` with content's labels (none for the `</s>` position)."""
        b = self.batcher
        seqs = [[b.lang_id[t]] + b.content[(sid, c)] for sid, t, c in zip(sids, token_langs, content_langs)]
        return pad_decoder_rows(seqs, [IGNORE] * len(seqs), b.eos, b.pad)

    def loss(self) -> torch.Tensor:
        """One repetition of the experiment on fresh sentences: steered loss (towards M) + random-control loss."""
        b, model, hooks = self.batcher, self.model, self.hooks
        sentences = self.rng.sample(b.text_sentences, self.cfg.sentences)
        sids = [s.id for s in sentences]
        enc_ids = [[b.lang_id["eng"]] + b.content[(sid, "eng")] + [b.eos] for sid in sids]
        width = max(len(s) for s in enc_ids)
        ids = torch.full((len(enc_ids), width), b.pad, dtype=torch.long)
        attn = torch.zeros_like(ids)
        for i, s in enumerate(enc_ids):
            ids[i, : len(s)] = torch.tensor(s)
            attn[i, : len(s)] = 1
        states = model.text_encoder(input_ids=ids, attention_mask=attn).last_hidden_state

        n, targets = len(sids), self.targets
        prefix = torch.tensor([[b.eos, b.lang_id[t]] for t in targets for _ in range(n)])
        source = torch.arange(n).repeat(len(targets))
        with torch.no_grad():
            hooks.mode = "capture"
            model.text_decoder(input_ids=prefix, encoder_hidden_states=states.detach()[source],
                               encoder_attention_mask=attn[source])
            hooks.mode = None
            pooled = hooks.capture()
        m = self.rng.randrange(len(targets))
        positive = torch.zeros(len(prefix), dtype=torch.bool)
        positive[m * n: (m + 1) * n] = True
        k = self.rng.choice(self.cfg.ks)
        chosen = selective_units(pooled, positive, k)
        fill = pooled[positive].median(dim=0).values
        generator = torch.Generator().manual_seed(self.rng.randrange(2**31))
        random_units = torch.randperm(hooks.n_units, generator=generator)[: 2 * k]

        others = [t for i, t in enumerate(targets) if i != m]
        row_sids = [sid for _ in others for sid in sids] * 2
        token_langs = [t for t in others for _ in sids] * 2
        content_langs = [targets[m]] * (len(others) * n) + token_langs[: len(others) * n]
        dec, dmask, labels = self._rows(row_sids, token_langs, content_langs)
        rows = len(row_sids)
        mask = torch.zeros((rows, hooks.n_units), dtype=torch.bool)
        mask[: rows // 2, chosen] = True
        mask[rows // 2:, random_units] = True
        row_source = torch.arange(n).repeat(2 * len(others))
        hooks.mode, hooks.mask, hooks.fill = "force", mask, fill
        try:
            out = model.text_decoder(input_ids=dec, attention_mask=dmask, encoder_hidden_states=states[row_source],
                                     encoder_attention_mask=attn[row_source])
        finally:
            hooks.mode, hooks.mask, hooks.fill = None, None, None
        logits = model.lm_head(out.last_hidden_state).float()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE)

    def remove(self) -> None:
        self.hooks.remove()
