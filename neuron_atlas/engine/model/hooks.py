"""Named hook points over unit sites (record, overwrite), in the spirit of TransformerLens/nnsight: no model surgery.

`HookPoints` attaches one forward hook per site module and dispatches each call to the site it belongs to; modules
called more than once per stack forward (the adapter's shared GLU) are told apart by a per-forward call counter.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import contextmanager

import torch
from torch import nn

from neuron_atlas.engine.model.unit_sites import STACKS, SiteRegistry, UnitSite

SiteFn = Callable[[UnitSite, torch.Tensor], torch.Tensor | None]
#: A module forward hook: (module, args, output) -> replacement output or None.
SiteHook = Callable[[nn.Module, tuple, torch.Tensor], torch.Tensor | None]


def channels_last(site: UnitSite, out: torch.Tensor) -> torch.Tensor:
    """View a site's output as [batch, positions, channels] using the axis its registry entry names."""
    if site.channel_axis in (-1, out.dim() - 1):
        return out
    return out.movedim(site.channel_axis, -1)


class HookPoints:
    """Attach `fn(site, output) -> new output | None` to the given sites; detach with `remove()` or as a context.

    Instead of `fn`, `bind(site)` may return each site's own hook `(module, args, output) -> new output | None`: a
    module with one site then calls that closure directly, without the shared dispatcher (it matters where outputs
    are tiny and one hooked call costs microseconds, as in live interventions on small models).
    """

    def __init__(self, model: nn.Module, sites: Iterable[UnitSite], fn: SiteFn | None = None, *,
                 bind: Callable[[UnitSite], SiteHook] | None = None):
        if (fn is None) == (bind is None):
            raise ValueError("give exactly one of fn and bind")
        self.model = model
        self.fn = fn
        self.bind = bind if bind is not None else self._bind_fn
        by_module: dict[str, list[UnitSite]] = {}
        for site in sites:
            by_module.setdefault(site.module, []).append(site)
        self._calls: dict[str, int] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        modules = dict(model.named_modules())
        multi = {name for name, ss in by_module.items() if len(ss) > 1 or ss[0].call > 0}
        for name, ss in by_module.items():
            if name in multi:
                hook = self._make_counted_hook(name, {s.call: self.bind(s) for s in ss})
            else:
                hook = self.bind(ss[0])
            self._handles.append(modules[name].register_forward_hook(hook))
        if multi:
            for stack in STACKS:
                if stack in modules:
                    self._handles.append(modules[stack].register_forward_pre_hook(self._reset_calls))

    def _bind_fn(self, site: UnitSite) -> SiteHook:
        fn = self.fn

        def hook(module, args, output):
            return fn(site, output)

        return hook

    def _reset_calls(self, module, args):
        self._calls.clear()

    def _make_counted_hook(self, name: str, by_call: dict[int, SiteHook]) -> SiteHook:
        def hook(module, args, output):
            call = self._calls.get(name, 0)
            self._calls[name] = call + 1
            site_hook = by_call.get(call)
            return None if site_hook is None else site_hook(module, args, output)

        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __enter__(self) -> HookPoints:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def adapter_lengths(model: nn.Module, frame_mask: torch.Tensor) -> torch.Tensor:
    """Valid positions after the speech length adapter, by the model's own formula."""
    return model._compute_sub_sample_lengths_from_attention_mask(frame_mask).long()


def lengths_to_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def solo_frame_lengths(features: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    """Frames each utterance of a batch has when the feature extractor processes it alone.

    The extractor pads an odd count of 10 ms filterbank frames to an even one before stacking them in pairs, so an
    utterance alone ends with one masked frame that still holds its last real filterbank frame (the pad half is
    zeros); batch padding frames are all zeros. An utterance's own length is thus its valid frames, plus one when
    the next frame holds any non-zero feature.
    """
    valid = frame_mask.long().sum(1)
    size = frame_mask.shape[-1]
    nxt = features[torch.arange(features.shape[0], device=features.device), valid.clamp(max=size - 1)]
    half = (valid < size) & (nxt.abs().amax(-1) > 0)
    return valid + half.long()


class AdapterPaddingGuard:
    """Zero, at the inputs of the speech adapter's strided convolutions, the frames an utterance would not have alone.

    Batched speech input leaks padding into the adapter's last frame: its pooling convolution (kernel 8, stride 8,
    padding 4) reads frames past the utterance's end, which hold layer-normed padding in a batch but the
    convolution's zero padding when the utterance runs alone. Alone, an utterance of an odd number of filterbank
    frames keeps one masked frame that the model reads (see `solo_frame_lengths`); only frames past that length are
    zeroed. A batch of one is left exactly as the unmodified model computes it, and a padded batch computes what each
    utterance computes alone. Used in clean mode for generation and recording alike.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.solo_mask: torch.Tensor | None = None
        self._handles = []
        enc = getattr(model, "speech_encoder", None)
        if enc is None:
            return
        self._handles.append(enc.register_forward_pre_hook(self._capture, with_kwargs=True))
        if enc.adapter is not None:
            for layer in enc.adapter.layers:
                for conv in (layer.residual_conv, layer.self_attn_conv):
                    self._handles.append(conv.register_forward_pre_hook(self._mask_input))

    def _capture(self, module, args, kwargs):
        frame_mask = kwargs.get("attention_mask")
        features = kwargs.get("input_features", args[0] if args else None)
        self.solo_mask = None
        if frame_mask is not None and features is not None:
            self.solo_mask = lengths_to_mask(solo_frame_lengths(features, frame_mask), frame_mask.shape[-1])

    def _mask_input(self, module, args):
        if self.solo_mask is None:
            return None
        x = args[0]
        if self.solo_mask.shape[-1] != x.shape[-1] or bool(self.solo_mask.all()):
            return None
        return (x * self.solo_mask[:, None, :].to(x.dtype),) + tuple(args[1:])

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __enter__(self) -> AdapterPaddingGuard:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


#: How a Recorder pools: `masked` (clean mode) or `reference` (faithful mode, see `reference_pool`).
POOLINGS = ("masked", "reference")


def reference_pool(site: UnitSite, out: torch.Tensor) -> torch.Tensor:
    """The reference code's pooling of one module output: `np.mean(arr, axis=1)` over everything the module output.

    For speech-encoder modules it first swaps the two last axes when the second is longer than the third (it meant
    to turn [batch, channels, frames] convolution outputs into [batch, frames, channels]). When an utterance has
    more frames than the site has channels this averages over the wrong axis: the result then has one value per
    frame instead of one per channel (or, for a convolution whose frame count equals its width, the right length
    but per-frame values).
    """
    x = out
    if site.stack == "speech_encoder" and x.dim() == 3 and x.shape[1] > x.shape[2]:
        x = x.transpose(1, 2)
    return x.float().mean(1)


class Recorder:
    """Mean-pool every unit of the given stacks over the positions of one forward pass.

    `masked` pooling (clean mode): set `masks` (domain -> [batch, positions] bool) before the forward pass;
    `speech_adapter` is derived from `speech_frames` and `encoder_out` from whichever encoder ran.
    `reference` pooling (faithful mode): every position a module outputs, as `reference_pool`; a site whose pooled
    vector does not have the site's width is left NaN and its length noted in `mismatched` (site key -> length).
    After the pass `pooled[stack]` is a float32 [batch, units-of-stack] tensor in registry order.
    """

    def __init__(self, model: nn.Module, registry: SiteRegistry, stacks: Iterable[str], pooling: str = "masked"):
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
        self.model = model
        self.registry = registry
        self.stacks = [s for s in STACKS if s in set(stacks)]
        self.pooling = pooling
        self.masks: dict[str, torch.Tensor] = {}
        self.pooled: dict[str, torch.Tensor] = {}
        self.mismatched: dict[str, int] = {}
        self._hooks: HookPoints | None = None

    def prepare(self, batch: int, masks: dict[str, torch.Tensor], encoder: str) -> None:
        """Allocate outputs and fix the pooling masks for the next forward pass."""
        self.masks = dict(masks)
        self.mismatched = {}
        self.encoder_domain = "speech_adapter" if encoder == "speech_encoder" else "text_tokens"
        device = next(iter(masks.values())).device
        self.pooled = {s: torch.full((batch, self.registry.stack_width(s)), float("nan"), device=device) for s in self.stacks}

    def _mask_for(self, site: UnitSite, positions: int) -> torch.Tensor:
        if self.pooling == "reference":
            batch = next(iter(self.masks.values())).shape[0]
            return torch.ones(batch, positions, dtype=torch.bool, device=next(iter(self.masks.values())).device)
        domain = "speech_adapter" if site.domain == "speech_adapter" else site.domain
        if domain == "encoder_out":
            domain = self.encoder_domain
        if domain == "speech_adapter" and "speech_adapter" not in self.masks:
            lengths = adapter_lengths(self.model, self.masks["speech_frames"])
            self.masks["speech_adapter"] = lengths_to_mask(lengths, positions)
        mask = self.masks.get(domain)
        if mask is None:
            raise RuntimeError(f"no pooling mask for domain {domain!r} (site {site.key})")
        if mask.shape[-1] != positions:
            raise RuntimeError(f"{site.key}: output has {positions} positions but the {domain} mask has {mask.shape[-1]}")
        return mask

    def _record(self, site: UnitSite, out: torch.Tensor) -> None:
        start = site.offset - self.registry.stack_ranges[site.stack].start
        if self.pooling == "reference":
            pooled = reference_pool(site, out)
            if pooled.shape[1] != site.width:
                self.mismatched[site.key] = int(pooled.shape[1])
                return None
        else:
            x = channels_last(site, out)
            mask = self._mask_for(site, x.shape[1]).to(torch.float32)
            total = torch.einsum("btc,bt->bc", x.float(), mask)
            pooled = total / mask.sum(1, keepdim=True).clamp_min(1.0)
        self.pooled[site.stack][:, start : start + site.width] = pooled
        return None

    @contextmanager
    def active(self):
        """Record while inside the block."""
        hooks = HookPoints(self.model, self.registry.select(self.stacks), self._record)
        try:
            yield self
        finally:
            hooks.remove()
