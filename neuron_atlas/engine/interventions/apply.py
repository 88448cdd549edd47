"""`intervene`: forward hooks that write a resolved intervention, restricted to the spec's decoder positions and steps,
at the spec's strength: each chosen channel becomes out + strength * (value - out), one vectorised `lerp` per site."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from neuron_atlas.engine.constants import DECODER_PROMPT_LENGTH
from neuron_atlas.engine.interventions.resolve import ResolvedIntervention, check_output
from neuron_atlas.engine.model.hooks import HookPoints
from neuron_atlas.engine.model.loading import ModelBundle
from neuron_atlas.engine.model.unit_sites import SiteRegistry, UnitSite


def decoder_step_of_positions(positions: np.ndarray) -> np.ndarray:
    """Decoding step each absolute decoder position belongs to: 0 for the prompt (`</s>`, target language), then p - 1."""
    return np.maximum(positions - (DECODER_PROMPT_LENGTH - 1), 0)


class _Applier:
    """Forward hooks that write one resolved intervention; a text-decoder pre-hook tracks absolute positions."""

    def __init__(self, bundle: ModelBundle, resolved: ResolvedIntervention):
        model = bundle.model
        self.tensors = resolved.site_tensors(bundle.device, bundle.dtype)
        scope = resolved.spec.scope
        self.decode_steps = None if scope.decode_steps == "all" else np.asarray(scope.decode_steps, dtype=np.int64)
        self.last_only = scope.positions == "last"
        self.position_range = None if isinstance(scope.positions, str) else (scope.positions.start, scope.positions.stop)
        self.strength = resolved.strength
        self.scoped = resolved.scoped and any(t.decoder_positions for t in self.tensors.values())
        self.device = bundle.device
        self.positions: torch.Tensor | None = None
        self.skip = False
        self._handles = []
        if self.scoped:
            self._handles.append(model.text_decoder.register_forward_pre_hook(self._on_decoder, with_kwargs=True))
        self.hooks = HookPoints(model, [w.site for w in resolved.sites.values()], bind=self._hook_for)

    def _hook_for(self, site: UnitSite):
        """The site's forward hook: a closure that only overwrites when every position is written with values
        (the common case, and the one whose per-call cost the intervention benchmark measures), else `_write`."""
        t = self.tensors[site.key]
        if t.scale or self.strength != 1.0 or (self.scoped and t.decoder_positions):
            return lambda module, args, out: self._write(site, out)
        mask, fill = t.mask, t.fill

        def overwrite(module, args, out):
            check_output(site, out)
            return torch.where(mask, fill, out, out=None if out.requires_grad else out)

        return overwrite

    def _on_decoder(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        length = ids.shape[-1] if ids is not None else kwargs["inputs_embeds"].shape[1]
        past = kwargs.get("past_key_values")
        start = past.get_seq_length() if past is not None else 0
        pos = np.arange(start, start + length)
        active = np.ones(length, dtype=bool)
        if self.decode_steps is not None:
            active &= np.isin(decoder_step_of_positions(pos), self.decode_steps)
        if self.last_only:
            active &= pos >= DECODER_PROMPT_LENGTH - 1
        if self.position_range is not None:
            start, stop = self.position_range
            active &= (pos >= start) & (pos < (stop if stop is not None else np.iinfo(np.int64).max))
        self.skip = not active.any()
        self.positions = None if active.all() else torch.from_numpy(active).to(self.device)[:, None]

    def _write(self, site: UnitSite, out: torch.Tensor) -> torch.Tensor | None:
        """Overwrite the chosen channels: in place when autograd is not tracking the output, else into a new tensor."""
        t = self.tensors[site.key]
        check_output(site, out)
        mask = t.mask
        if self.scoped and t.decoder_positions:
            if self.skip:
                return None
            if self.positions is not None:
                mask = mask & self.positions
        target = None if out.requires_grad else out
        if t.scale:
            if mask is t.mask:
                return out * t.fill if target is None else out.mul_(t.fill)
            return torch.where(mask, out * t.fill, out, out=target)
        if self.strength != 1.0:
            return torch.where(mask, torch.lerp(out, t.fill.expand_as(out), self.strength), out, out=target)
        return torch.where(mask, t.fill, out, out=target)

    def remove(self) -> None:
        self.hooks.remove()
        for h in self._handles:
            h.remove()
        self._handles.clear()


@contextmanager
def intervene(bundle: ModelBundle, registry: SiteRegistry, resolved: ResolvedIntervention | None) -> Iterator[None]:
    """Apply a resolved intervention to `bundle.model` inside the block (hooks only on the sites it writes).

    Hooks live on the shared model: callers serving concurrent requests must serialise generation per model.
    """
    if resolved is None or resolved.is_empty:
        yield
        return
    if resolved.model_units != registry.n_units:
        raise ValueError(f"the intervention was resolved for a model with {resolved.model_units} units, this one has {registry.n_units}")
    applier = _Applier(bundle, resolved)
    try:
        yield
    finally:
        applier.remove()
